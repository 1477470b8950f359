//! SQLite store behaviour beyond the shared contract: durability, the file, pragmas,
//! migrations, the lease, and failures of the file under a running store.

use super::*;
use crate::store::OpenError;
use rusqlite::Connection;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn temp_db() -> (TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ktsu.db");
    (dir, path)
}

fn open(path: &Path) -> Result<SqliteStore, OpenError> {
    SqliteStore::open(SqliteOptions::new(path))
}

fn open_store(path: &Path) -> Store {
    Store::Sqlite(Arc::new(open(path).unwrap()))
}

/// A plain connection, as an operator's `sqlite3` shell would have.
fn raw(path: &Path) -> Connection {
    let conn = Connection::open(path).unwrap();
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    conn
}

fn this_host() -> String {
    super::super::sqlite::this_host()
}

/// Writes a lease row as another process would have left it.
fn set_lease(path: &Path, owner: &str, host: &str, pid: u32, renewed: Timestamp) {
    raw(path)
        .execute(
            "INSERT INTO lease (id, owner, host, pid, acquired_at, renewed_at) VALUES (1, ?1, ?2, ?3, ?4, ?4) \
             ON CONFLICT (id) DO UPDATE SET owner = ?1, host = ?2, pid = ?3, renewed_at = ?4",
            rusqlite::params![owner, host, pid, renewed.to_string()],
        )
        .unwrap();
}

fn lease_row(path: &Path) -> Option<(String, String, u32)> {
    use rusqlite::OptionalExtension;
    raw(path)
        .query_row(
            "SELECT owner, host, pid FROM lease WHERE id = 1",
            [],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
        )
        .optional()
        .unwrap()
}

/// A store with one run holding some of everything, closed again; returns the run id.
async fn populated(path: &Path) -> String {
    let store = open_store(path);
    let r = run("run_00000000000000d1", "durable", 0);
    create(&store, r.clone()).await;
    let changes = ChangeSet {
        run: Some(with_status(r.clone(), RunStatus::Running)),
        items: vec![("a".into(), item(0))],
        approvals: vec![approval(&r.id, "a.0", "t1", 1)],
        checkpoints: vec![("a.0".into(), Some(json!(["m"])))],
        events: vec![event("run.running", 1), event("item.running", 2)],
        ..ChangeSet::default()
    };
    store.commit(&r.id, 1, changes).await.unwrap();
    r.id
}

#[actix_rt::test]
async fn commits_survive_reopening_the_file() {
    let (_dir, path) = temp_db();
    let run_id = populated(&path).await;
    // `populated` dropped its store without `close`, as a crash would.
    let reopened = open_store(&path);
    let after_crash = snapshot(&reopened, &run_id).await;
    assert_eq!(after_crash.full.as_ref().unwrap().run.version, 2);
    assert_eq!(after_crash.events.len(), 2);
    assert_eq!(after_crash.approvals.len(), 1);
    assert_eq!(after_crash.checkpoints.len(), 1);
    reopened.close().await.unwrap();
    drop(reopened);
    let again = open_store(&path);
    assert_eq!(snapshot(&again, &run_id).await, after_crash);
    // And it keeps going where it was: version and event sequence continue.
    let more = ChangeSet {
        events: vec![event("run.complete", 3)],
        ..ChangeSet::default()
    };
    assert_eq!(again.commit(&run_id, 2, more).await, Ok(3));
    assert_eq!(again.events_after(&run_id, 2, 10).await.unwrap()[0].seq, 3);
}

#[actix_rt::test]
async fn close_checkpoints_the_wal_and_refuses_later_calls() {
    let (_dir, path) = temp_db();
    let store = open_store(&path);
    create(&store, run("run_00000000000000d2", "w", 0)).await;
    let wal = path.with_file_name("ktsu.db-wal");
    assert!(
        std::fs::metadata(&wal).unwrap().len() > 0,
        "the commit is in the WAL"
    );
    store.close().await.unwrap();
    assert_eq!(
        std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0),
        0,
        "WAL truncated"
    );
    assert!(matches!(
        store.get_run("run_00000000000000d2").await,
        Err(StoreError::Unavailable(_))
    ));
    assert!(matches!(
        store
            .commit("run_00000000000000d2", 1, ChangeSet::default())
            .await,
        Err(StoreError::Unavailable(_))
    ));
    assert_eq!(store.close().await, Ok(()), "closing twice is harmless");
    // Everything is in the main file now: a raw reader sees the run without any WAL.
    let count: i64 = raw(&path)
        .query_row("SELECT COUNT(*) FROM runs", [], |row| row.get(0))
        .unwrap();
    assert_eq!(count, 1);
}

#[actix_rt::test]
async fn every_connection_has_the_required_pragmas() {
    let fx = Fixture::sqlite();
    let Store::Sqlite(store) = &fx.store else {
        unreachable!()
    };
    let [writer, reader] = store.pragmas().await.unwrap();
    // synchronous FULL = 2.
    assert_eq!(writer, ("wal".to_string(), 2, 5000, 1));
    assert_eq!(reader, ("wal".to_string(), 2, 5000, 1));
}

#[actix_rt::test]
async fn new_files_are_private_to_their_owner() {
    use std::os::unix::fs::PermissionsExt;
    let (_dir, path) = temp_db();
    let store = open_store(&path);
    create(&store, run("run_00000000000000d3", "w", 0)).await;
    for file in ["ktsu.db", "ktsu.db-wal", "ktsu.db-shm"] {
        let mode = std::fs::metadata(path.with_file_name(file))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{file}");
    }
}

#[actix_rt::test]
async fn the_schema_is_migration_one_applied_once() {
    let (_dir, path) = temp_db();
    let store = open_store(&path);
    let conn = raw(&path);
    let applied = || -> Vec<(u32, String, String)> {
        let mut stmt = conn
            .prepare("SELECT version, name, applied_at FROM schema_migrations")
            .unwrap();
        stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    let first = applied();
    assert_eq!(first.len(), 1);
    assert_eq!((first[0].0, first[0].1.as_str()), (1, "init"));
    assert!(Timestamp::parse(&first[0].2).is_ok());
    let mut names: Vec<String> = conn
        .prepare("SELECT type || ' ' || name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY 1")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "index approvals_status",
            "index idempotency_expiry",
            "index runs_created",
            "index runs_parent",
            "index runs_root",
            "index runs_status",
            "index runs_workflow",
            "table approvals",
            "table events",
            "table idempotency_keys",
            "table lease",
            "table runs",
            "table schema_migrations",
            "table step_items",
            "table steps",
        ]
    );
    store.close().await.unwrap();
    drop(store);
    let _reopened = open_store(&path);
    assert_eq!(applied(), first, "reopening applies nothing again");
}

#[actix_rt::test]
async fn a_newer_schema_is_refused_with_exit_status_3() {
    let (_dir, path) = temp_db();
    drop(open_store(&path));
    raw(&path)
        .execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (2, 'future', '2030-01-01T00:00:00.000000Z')",
            [],
        )
        .unwrap();
    let err = open(&path).err().unwrap();
    assert_eq!(
        err,
        OpenError::NewerSchema {
            found: 2,
            supported: 1
        }
    );
    assert_eq!(
        err.to_string(),
        "store schema version 2 is newer than this build (1)"
    );
    assert_eq!(err.exit_code(), 3);
    let versions: i64 = raw(&path)
        .query_row("SELECT COUNT(*) FROM schema_migrations", [], |row| {
            row.get(0)
        })
        .unwrap();
    assert_eq!(versions, 2, "nothing touched");
}

#[actix_rt::test]
async fn a_foreign_database_is_refused_untouched() {
    let (_dir, path) = temp_db();
    raw(&path)
        .execute_batch(
            "CREATE TABLE customers (id INTEGER PRIMARY KEY); INSERT INTO customers VALUES (1);",
        )
        .unwrap();
    let err = open(&path).err().unwrap();
    assert!(matches!(err, OpenError::Unrecognised { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("unrecognised database"), "{message}");
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert_eq!(err.exit_code(), 1);
    let tables: Vec<String> = raw(&path)
        .prepare("SELECT name FROM sqlite_master")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(tables, ["customers"]);
}

#[actix_rt::test]
async fn unusable_files_are_refused_with_path_and_cause() {
    let (dir, path) = temp_db();
    std::fs::write(&path, b"this is not a database, it is a shopping list").unwrap();
    let err = open(&path).err().unwrap();
    let message = err.to_string();
    assert!(matches!(err, OpenError::Open { .. }), "{err:?}");
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(message.contains("not a database"), "{message}");

    let missing = dir.path().join("no-such-dir").join("ktsu.db");
    let err = open(&missing).err().unwrap();
    let message = err.to_string();
    assert!(
        message.contains(&missing.display().to_string()),
        "{message}"
    );
    assert!(message.contains("No such file or directory"), "{message}");

    let options = SqliteOptions {
        pool_size: 0,
        ..SqliteOptions::new(dir.path().join("other.db"))
    };
    let err = SqliteStore::open(options).err().unwrap();
    assert!(matches!(err, OpenError::InvalidOption(_)), "{err:?}");
    assert_eq!(err.exit_code(), 2);

    // An empty file is a new store.
    let empty = dir.path().join("empty.db");
    std::fs::write(&empty, b"").unwrap();
    let store = Store::Sqlite(Arc::new(open(&empty).unwrap()));
    create(&store, run("run_00000000000000d4", "w", 0)).await;
}

#[actix_rt::test]
async fn a_second_store_on_the_same_file_is_refused() {
    let (_dir, path) = temp_db();
    let first = open(&path).unwrap();
    let err = open(&path).err().unwrap();
    let expected = OpenError::InUse {
        path: path.clone(),
        host: this_host(),
        pid: std::process::id(),
    };
    assert_eq!(err, expected);
    assert_eq!(
        err.to_string(),
        format!(
            "store {} is in use by {}:{}",
            path.display(),
            this_host(),
            std::process::id()
        )
    );
    assert_eq!(err.exit_code(), 1);
    // Once the first releases, the next one gets in.
    first.release_lease(first.lease_owner()).await.unwrap();
    first.close().await.unwrap();
    drop(first);
    assert!(open(&path).is_ok());
}

#[actix_rt::test]
async fn a_live_foreign_lease_blocks_and_a_stale_one_is_taken_over() {
    let (_dir, path) = temp_db();
    drop(open(&path).unwrap());
    set_lease(&path, "remote", "other-host", 4242, Timestamp::now());
    let err = open(&path).err().unwrap();
    assert_eq!(
        err.to_string(),
        format!("store {} is in use by other-host:4242", path.display())
    );
    // Not renewed for more than 15 s: taken over.
    set_lease(
        &path,
        "remote",
        "other-host",
        4242,
        Timestamp::now() - Duration::from_secs(16),
    );
    let store = open(&path).unwrap();
    assert_eq!(
        lease_row(&path),
        Some((
            store.lease_owner().to_string(),
            this_host(),
            std::process::id()
        ))
    );
}

#[actix_rt::test]
async fn a_crashed_local_holder_is_taken_over_at_once() {
    let (_dir, path) = temp_db();
    drop(open(&path).unwrap());

    // A live process on this host holds it: refused even though the row is fresh.
    let mut live = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap();
    set_lease(&path, "live", &this_host(), live.id(), Timestamp::now());
    let err = open(&path).err().unwrap();
    assert!(
        matches!(err, OpenError::InUse { pid, .. } if pid == live.id()),
        "{err:?}"
    );

    // That process dies: the next start takes over without waiting 15 s.
    live.kill().unwrap();
    live.wait().unwrap();
    let store = open(&path).unwrap();
    store.release_lease(store.lease_owner()).await.unwrap();
    drop(store);

    // A predecessor with this very pid (a container restart, pid 1 again) is gone too.
    set_lease(
        &path,
        "predecessor",
        &this_host(),
        std::process::id(),
        Timestamp::now(),
    );
    let store = open(&path).unwrap();
    assert_eq!(lease_row(&path).unwrap().0, store.lease_owner());
}

#[actix_rt::test]
async fn a_lease_taken_over_is_reported_on_renewal_and_left_alone() {
    let (_dir, path) = temp_db();
    let store = open(&path).unwrap();
    let owner = store.lease_owner().to_string();
    assert_eq!(store.renew_lease(&owner).await, Ok(()));
    set_lease(&path, "intruder", "other-host", 7, Timestamp::now());
    assert_eq!(
        store.renew_lease(&owner).await,
        Err(StoreError::LeaseHeld(format!(
            "store {} is in use by other-host:7",
            path.display()
        )))
    );
    assert!(matches!(
        store.acquire_lease(&owner).await,
        Err(StoreError::LeaseHeld(_))
    ));
    store.release_lease(&owner).await.unwrap();
    assert_eq!(
        lease_row(&path).unwrap().0,
        "intruder",
        "another owner's lease is not released"
    );
}

#[actix_rt::test]
async fn concurrent_opens_of_a_new_file_admit_exactly_one() {
    for _ in 0..5 {
        let (_dir, path) = temp_db();
        let barrier = Arc::new(std::sync::Barrier::new(2));
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let path = path.clone();
                let barrier = Arc::clone(&barrier);
                std::thread::spawn(move || {
                    barrier.wait();
                    open(&path)
                })
            })
            .collect();
        let results: Vec<Result<SqliteStore, OpenError>> =
            handles.into_iter().map(|h| h.join().unwrap()).collect();
        let opened = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(
            opened,
            1,
            "{:?}",
            results.iter().map(|r| r.as_ref().err()).collect::<Vec<_>>()
        );
        let errors: Vec<&OpenError> = results.iter().filter_map(|r| r.as_ref().err()).collect();
        assert!(
            matches!(errors[..], [OpenError::InUse { .. }]),
            "{errors:?}"
        );
        let conn = raw(&path);
        let migrations: i64 = conn
            .query_row("SELECT COUNT(*) FROM schema_migrations", [], |row| {
                row.get(0)
            })
            .unwrap();
        assert_eq!(migrations, 1);
    }
}

#[actix_rt::test]
async fn writes_to_a_deleted_store_file_are_unavailable() {
    let (dir, path) = temp_db();
    let store = open_store(&path);
    create(&store, run("run_00000000000000d5", "w", 0)).await;
    std::fs::remove_dir_all(dir.path()).unwrap();
    let result = store
        .commit("run_00000000000000d5", 1, ChangeSet::default())
        .await;
    match result {
        Err(StoreError::Unavailable(cause)) => {
            assert!(cause.contains("deleted or replaced"), "{cause}");
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert!(matches!(
        store
            .create_run(
                new_run(run("run_00000000000000d6", "w", 0), Vec::new()),
                None
            )
            .await,
        Err(StoreError::Unavailable(_))
    ));
}

#[actix_rt::test]
async fn writes_to_a_replaced_store_file_are_unavailable() {
    let (_dir, path) = temp_db();
    let store = open_store(&path);
    create(&store, run("run_00000000000000d7", "w", 0)).await;
    let moved = path.with_file_name("moved.db");
    std::fs::rename(&path, &moved).unwrap();
    std::fs::write(&path, b"").unwrap();
    assert!(matches!(
        store
            .commit("run_00000000000000d7", 1, ChangeSet::default())
            .await,
        Err(StoreError::Unavailable(_))
    ));
}

/// Makes files immutable (`chattr +i`) for the guard's lifetime: even root cannot write them,
/// also through descriptors opened before.
struct Immutable(Vec<PathBuf>);

impl Immutable {
    fn set(files: &[PathBuf]) -> Option<Immutable> {
        let ok = std::process::Command::new("chattr")
            .arg("+i")
            .args(files)
            .output()
            .is_ok_and(|o| o.status.success());
        if ok {
            Some(Immutable(files.to_vec()))
        } else {
            // Undo a partial success.
            let _ = std::process::Command::new("chattr")
                .arg("-i")
                .args(files)
                .output();
            None
        }
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = std::process::Command::new("chattr")
            .arg("-i")
            .args(&self.0)
            .output();
    }
}

#[actix_rt::test]
async fn a_commit_on_a_read_only_file_is_unavailable_and_leaves_no_trace() {
    let (_dir, path) = temp_db();
    let store = open_store(&path);
    let r = run("run_00000000000000d8", "w", 0);
    create(&store, r.clone()).await;
    let before = snapshot(&store, &r.id).await;
    let files = [path.clone(), path.with_file_name("ktsu.db-wal")];
    let Some(guard) = Immutable::set(&files) else {
        println!("SKIPPED: chattr +i is not permitted here (needs CAP_LINUX_IMMUTABLE)");
        return;
    };
    let changes = || ChangeSet {
        run: Some(with_status(r.clone(), RunStatus::Running)),
        events: vec![event("run.running", 1)],
        ..ChangeSet::default()
    };
    let result = store.commit(&r.id, 1, changes()).await;
    assert!(
        matches!(result, Err(StoreError::Unavailable(_))),
        "{result:?}"
    );
    assert_eq!(
        snapshot(&store, &r.id).await,
        before,
        "readers still serve the old state"
    );
    drop(guard);
    // Writable again: the failed commit left nothing, so the same version commits now.
    assert_eq!(store.commit(&r.id, 1, changes()).await, Ok(2));
    assert_eq!(store.events_after(&r.id, 0, 10).await.unwrap().len(), 1);
}

#[actix_rt::test]
async fn a_commit_blocked_by_another_writer_times_out_without_blocking_the_runtime() {
    let (_dir, path) = temp_db();
    let store = open_store(&path);
    let r = run("run_00000000000000d9", "w", 0);
    create(&store, r.clone()).await;
    // An operator's shell holding a write transaction open.
    let foreign = raw(&path);
    foreign.execute_batch("BEGIN IMMEDIATE").unwrap();

    let started = Instant::now();
    let commit = {
        let store = store.clone();
        let run_id = r.id.clone();
        actix_rt::spawn(async move { store.commit(&run_id, 1, ChangeSet::default()).await })
    };
    // The single-threaded test runtime keeps ticking while the writer waits on SQLite.
    let mut ticks = 0u32;
    while !commit.is_finished() {
        actix_rt::time::sleep(Duration::from_millis(50)).await;
        ticks += 1;
    }
    let waited = started.elapsed();
    let result = commit.await.unwrap();
    match result {
        Err(StoreError::Unavailable(cause)) => assert!(cause.contains("locked"), "{cause}"),
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert!(
        waited >= Duration::from_millis(4_500),
        "busy_timeout honoured: {waited:?}"
    );
    assert!(
        ticks >= 50,
        "the runtime kept running ({ticks} ticks in {waited:?})"
    );
    // Reads are not blocked by a writer in WAL mode.
    assert!(store.get_run(&r.id).await.unwrap().is_some());

    foreign.execute_batch("ROLLBACK").unwrap();
    assert_eq!(store.commit(&r.id, 1, ChangeSet::default()).await, Ok(2));
}

#[test]
fn reads_outside_a_runtime_fail_instead_of_panicking() {
    use std::future::Future;
    use std::task::{Context, Poll, Waker};
    let (_dir, path) = temp_db();
    let store = open(&path).unwrap();
    let mut read = std::pin::pin!(store.get_run("run_00000000000000da"));
    let mut cx = Context::from_waker(Waker::noop());
    match read.as_mut().poll(&mut cx) {
        Poll::Ready(Err(StoreError::Unavailable(cause))) => {
            assert!(cause.contains("runtime"), "{cause}");
        }
        other => panic!("expected Unavailable at once, got {other:?}"),
    }
}

#[actix_rt::test]
async fn concurrent_writes_share_transactions() {
    let (_dir, path) = temp_db();
    let store = Arc::new(open(&path).unwrap());
    let before = store.write_stats();
    let tasks: Vec<_> = (0..32)
        .map(|i| {
            let store = Arc::clone(&store);
            actix_rt::spawn(async move {
                let r = run(&format!("run_{i:016x}"), "w", i);
                store.create_run(new_run(r, Vec::new()), None).await
            })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), Ok(Created::Created));
    }
    let after = store.write_stats();
    let writes = after.writes - before.writes;
    let transactions = after.transactions - before.transactions;
    assert_eq!(writes, 32);
    assert!(
        transactions < writes,
        "{transactions} transactions for {writes} writes"
    );
    let all = Store::Sqlite(store);
    assert_eq!(
        all.list_runs(&RunFilter::default(), None, 100)
            .await
            .unwrap()
            .len(),
        32
    );
}

mod round_trip {
    //! Arbitrary values through the SQLite codec: what goes in comes out, bit for bit.
    use super::*;
    use proptest::prelude::*;

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            any::<String>().prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 24, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::vec((any::<String>(), inner), 0..6)
                    .prop_map(|entries| Value::Object(entries.into_iter().collect())),
            ]
        })
    }

    proptest! {
        // Failures are reported with their inputs; no regression file is written into the tree.
        #![proptest_config(ProptestConfig {
            cases: 64,
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        #[test]
        fn records_round_trip(
            payload in json_value(),
            output in proptest::option::of(json_value()),
            error in proptest::option::of(any::<String>()),
            cost in any::<f64>().prop_filter("finite", |f| f.is_finite()),
            budget in proptest::option::of(any::<f64>().prop_filter("finite", |f| f.is_finite())),
            flags in prop::collection::vec(any::<String>(), 0..4),
            tokens in any::<u64>(),
        ) {
            let (_dir, path) = temp_db();
            actix_rt::System::new().block_on(async {
                let store = open_store(&path);
                let mut r = run("run_00000000000000e1", "w", 0);
                r.payload = payload.clone();
                r.output = output.clone();
                r.error = error.clone();
                r.budget_usd = budget;
                let mut s = step(&r.id, "a", 0, StepType::Agent);
                s.output = Some(payload.clone());
                s.flags = flags.clone();
                s.rationale = error.clone();
                s.metrics.cost_usd = cost;
                s.metrics.tokens_in = tokens;
                store.create_run(new_run(r.clone(), vec![s.clone()]), None).await.unwrap();
                let full = store.get_run_full(&r.id).await.unwrap().unwrap();
                prop_assert_eq!(&full.run, &RunRecord { version: 1, ..r });
                prop_assert_eq!(&full.steps, &vec![s]);
                prop_assert_eq!(full.steps[0].metrics.cost_usd.to_bits(), cost.to_bits());
                prop_assert_eq!(store.tree_spend("run_00000000000000e1").await.unwrap(), cost);
                Ok(())
            })?;
        }
    }
}
