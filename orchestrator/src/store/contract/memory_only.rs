//! Memory store behaviour the SQLite store does not have: bounded size by eviction, and a
//! poisoned lock that does not take the store down.

use super::*;

fn finished(run: RunRecord) -> ChangeSet {
    ChangeSet {
        run: Some(with_status(run, RunStatus::Complete)),
        ..ChangeSet::default()
    }
}

#[actix_rt::test]
async fn oldest_terminal_root_is_evicted_with_its_sub_runs() {
    let fx = Fixture::memory_with(3);
    let store = &fx.store;
    let oldest = with_status(run("run_0000000000000001", "w", 0), RunStatus::Complete);
    let key = idempotency("k-oldest", &oldest.id, 0, 86_400_000);
    store
        .create_run(new_run(oldest.clone(), Vec::new()), Some(key))
        .await
        .unwrap();
    let done = with_status(run("run_0000000000000002", "w", 10), RunStatus::Running);
    create(store, done.clone()).await;
    let child = child_of(&done, "sub", 11);
    let grandchild = child_of(&child, "deeper", 12);
    add_child(store, 1, &child, Vec::new()).await;
    add_child(store, 1, &grandchild, Vec::new()).await;
    let active = run("run_0000000000000003", "w", 20);
    create(store, active.clone()).await;
    // Three roots: at the bound, nothing goes; sub-runs do not count.
    assert!(store.get_run(&oldest.id).await.unwrap().is_some());

    let fourth = run("run_0000000000000004", "w", 30);
    create(store, fourth.clone()).await;
    assert_eq!(
        store.get_run(&oldest.id).await,
        Ok(None),
        "oldest terminal root evicted"
    );
    assert_eq!(
        store.get_idempotency("k-oldest", at(0)).await,
        Ok(None),
        "its key goes with it: a replay never names a missing run"
    );

    // `done` is the oldest root now, but running: the bound is exceeded and nothing else is
    // terminal, so nothing is evicted.
    let fifth = run("run_0000000000000005", "w", 40);
    create(store, fifth.clone()).await;
    for r in [&done, &active, &fourth, &fifth] {
        assert!(
            store.get_run(&r.id).await.unwrap().is_some(),
            "{} kept",
            r.id
        );
    }
    // A finished root whose sub-run still runs is not evicted either.
    store
        .commit(&done.id, 2, finished(done.clone()))
        .await
        .unwrap();
    store
        .commit(&child.id, 2, finished(child.clone()))
        .await
        .unwrap();
    assert!(
        store.get_run(&done.id).await.unwrap().is_some(),
        "grandchild still running"
    );

    // The last active member finishes: the tree goes at that commit, all of it.
    store
        .commit(&grandchild.id, 1, finished(grandchild.clone()))
        .await
        .unwrap();
    for r in [&done, &child, &grandchild] {
        assert_eq!(store.get_run(&r.id).await, Ok(None), "{} evicted", r.id);
    }
    assert_eq!(store.tree_spend(&done.id).await, Ok(0.0));
    let roots = store
        .list_runs(&RunFilter::default(), None, 10)
        .await
        .unwrap();
    let kept: Vec<&str> = roots.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(
        kept,
        [fifth.id.as_str(), fourth.id.as_str(), active.id.as_str()]
    );
    let Store::Memory(memory) = store else {
        unreachable!()
    };
    assert_eq!(memory.run_count(), 3, "no sub-run left behind");
}

#[actix_rt::test]
async fn active_runs_are_never_evicted() {
    let fx = Fixture::memory_with(2);
    let store = &fx.store;
    for i in 0..6u64 {
        create(store, run(&format!("run_{i:016}"), "w", i)).await;
    }
    assert_eq!(store.list_active_runs().await.unwrap().len(), 6);
    // Finishing the runs one by one evicts down to the bound, oldest first.
    for i in 0..4u64 {
        let r = run(&format!("run_{i:016}"), "w", i);
        store.commit(&r.id, 1, finished(r.clone())).await.unwrap();
    }
    let left = store
        .list_runs(&RunFilter::default(), None, 10)
        .await
        .unwrap();
    let left: Vec<&str> = left.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(left, ["run_0000000000000005", "run_0000000000000004"]);
}

#[actix_rt::test]
async fn a_poisoned_lock_is_recovered() {
    let store = Arc::new(MemoryStore::new(10));
    let poisoner = Arc::clone(&store);
    let outcome = std::thread::spawn(move || poisoner.panic_while_locked()).join();
    assert!(
        outcome.is_err(),
        "the helper thread panicked holding the lock"
    );
    let store = Store::Memory(store);
    create(&store, run("run_0000000000000001", "w", 0)).await;
    assert!(store
        .get_run("run_0000000000000001")
        .await
        .unwrap()
        .is_some());
}
