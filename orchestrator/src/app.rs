//! Startup and shutdown (orchestrator.md §1.2–§1.3): load and validate the project, open the
//! store, start the actors, recover unfinished runs held, bind, serve, release, ready; on a
//! signal, drain within the bound and close the store.

use crate::actors::manager::{Drain, Recover, Release, RunManager, SetSupervisor};
use crate::actors::registry::RuntimeRegistry;
use crate::actors::supervisor::StepSupervisor;
use crate::api::{self, AppState, ReloadState};
use crate::engine::EngineConfig;
use crate::settings::{Settings, StoreChoice};
use crate::snapshot::{Snapshot, SnapshotError};
use crate::steps::Outbound;
use crate::store::{MemoryStore, SqliteOptions, SqliteStore, Store};
use actix::prelude::*;
use actix_web::dev::ServerHandle;
use actix_web::{middleware, web, App, HttpServer};
use ktsu_shared::api_error;
use ktsu_shared::diag::Diagnostic;
use ktsu_shared::http::ClientSettings;
use ktsu_shared::service::lifecycle::Lifecycle;
use ktsu_shared::service::{access_log, notify};
use ktsu_shared::validate::ProcessEnv;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

const TARGET: &str = "ktsu_orchestrator::app";

/// Why the orchestrator did not start; [`StartError::exit_code`] maps it (cli-and-ops.md §1.2).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A missing project directory or other usage-level problem (exit 2).
    #[error("{0}")]
    Usage(String),
    /// The project is invalid: every diagnostic (exit 3).
    #[error("the project has {} error(s)", .0.len())]
    Config(Vec<Diagnostic>),
    /// The store schema is newer than this build (exit 3).
    #[error("{0}")]
    StoreTooNew(String),
    /// The store could not be opened or the lease taken (exit 1).
    #[error("{0}")]
    Store(String),
    /// The listener could not be bound (exit 1).
    #[error("cannot bind {addr}: {cause}")]
    Bind { addr: String, cause: String },
    #[error("{0}")]
    Other(String),
}

impl StartError {
    pub fn exit_code(&self) -> u8 {
        match self {
            StartError::Usage(_) => 2,
            StartError::Config(_) | StartError::StoreTooNew(_) => 3,
            _ => 1,
        }
    }
}

/// A built orchestrator: bound, serving, ready.
pub struct Application {
    addr: SocketAddr,
    server: actix_web::dev::Server,
    state: web::Data<AppState>,
    lease_owner: String,
    _arbiter: Arbiter,
}

/// Opens the configured store (the SQLite store takes its lease for `lease_owner` as it opens).
async fn open_store(settings: &Settings, lease_owner: &str) -> Result<Store, StartError> {
    match &settings.store {
        StoreChoice::Memory { max_runs } => {
            Ok(Store::Memory(Arc::new(MemoryStore::new(*max_runs))))
        }
        StoreChoice::Sqlite { path, pool_size } => {
            let mut opts = SqliteOptions::new(path.clone());
            opts.pool_size = u32::try_from(*pool_size).unwrap_or(8);
            opts.lease_owner = lease_owner.to_string();
            let opened = web::block(move || SqliteStore::open(opts))
                .await
                .map_err(|e| StartError::Store(e.to_string()))?;
            match opened {
                Ok(s) => Ok(Store::Sqlite(Arc::new(s))),
                Err(e) if e.exit_code() == 3 => Err(StartError::StoreTooNew(e.to_string())),
                Err(e) => Err(StartError::Store(e.to_string())),
            }
        }
    }
}

/// The URL peers use to reach us: `KTSU_OWN_URL`, else `http://<host>:<bound port>` with
/// `localhost` for a wildcard host.
fn own_url(settings: &Settings, addr: SocketAddr) -> String {
    if let Some(u) = &settings.own_url {
        return u.clone();
    }
    let host = match settings.host.as_str() {
        "" | "0.0.0.0" | "::" | "[::]" => "localhost".to_string(),
        h if h.contains(':') && !h.starts_with('[') => format!("[{h}]"),
        h => h.to_string(),
    };
    format!("http://{host}:{}", addr.port())
}

impl Application {
    /// Everything up to ready (orchestrator.md §1.2). Logging must be initialised.
    pub async fn build(settings: Settings) -> Result<Application, StartError> {
        let settings = Arc::new(settings);
        // 3. the project
        let load = settings.load.clone();
        let snapshot = web::block(move || Snapshot::load(&load, &ProcessEnv))
            .await
            .map_err(|e| StartError::Other(e.to_string()))?
            .map_err(|e| match e {
                SnapshotError::Load(l) => StartError::Usage(l.to_string()),
                SnapshotError::Invalid(d) => StartError::Config(d),
            })?;
        let mut secrets = snapshot.secrets.clone();
        for s in [&settings.api_key, &settings.internal_token]
            .into_iter()
            .flatten()
        {
            secrets.push(s.expose().to_string());
        }
        ktsu_shared::logging::extend_scrubber(secrets);
        // 4. the store and its lease
        let lease_owner = format!(
            "orchestrator-{}",
            ktsu_shared::ids::random_hex(8).unwrap_or_default()
        );
        let store = open_store(&settings, &lease_owner).await?;
        store
            .acquire_lease(&lease_owner)
            .await
            .map_err(|e| StartError::Store(e.to_string()))?;
        // 7 (bound first, served later): the listener, so that the callback base is known.
        let bind_host = if settings.host.is_empty() {
            "0.0.0.0"
        } else {
            settings.host.as_str()
        };
        let bind_addr = format!("{bind_host}:{}", settings.port);
        let listener = TcpListener::bind(&bind_addr).map_err(|e| StartError::Bind {
            addr: bind_addr.clone(),
            cause: e.to_string(),
        })?;
        let addr = listener.local_addr().map_err(|e| StartError::Bind {
            addr: bind_addr.clone(),
            cause: e.to_string(),
        })?;
        let own = own_url(&settings, addr);
        let config = Arc::new(EngineConfig {
            own_url: own.clone(),
            max_parallel_steps: settings.run_max_parallel_steps,
            fanout_max_items: settings.fanout_max_items,
        });
        // 5. the actors, on their own arbiter (one thread for every run's state machine)
        let arbiter = Arbiter::new();
        let snapshot_shared = Arc::new(RwLock::new(Arc::new(snapshot)));
        let draining = Arc::new(AtomicBool::new(false));
        let live_for = settings
            .heartbeat_timeout
            .unwrap_or(Duration::from_secs(30));
        let registry = RuntimeRegistry::start_in_arbiter(&arbiter.handle(), {
            let fallback = settings.runtime_url.clone();
            move |_| RuntimeRegistry::new(live_for, fallback)
        });
        let manager = RunManager::start_in_arbiter(&arbiter.handle(), {
            let store = store.clone();
            let snapshot = Arc::clone(&snapshot_shared);
            let config = Arc::clone(&config);
            let settings = Arc::clone(&settings);
            let registry = registry.clone();
            let draining = Arc::clone(&draining);
            move |_| {
                let out_store = store.clone();
                let max_active = settings.max_active_runs;
                let make_out = Box::new(move || {
                    let internal = ClientSettings::new(settings.dispatch_timeout)
                        .bearer_token(settings.internal_token.clone())
                        .build()
                        .ok()?;
                    let web = ClientSettings::new(Duration::from_secs(300)).build().ok()?;
                    Some(Outbound {
                        internal,
                        web,
                        registry: registry.clone(),
                        store: out_store.clone(),
                        dispatch_timeout: settings.dispatch_timeout,
                        dispatch_retry: settings.dispatch_retry,
                    })
                });
                RunManager::new(store, snapshot, config, max_active, make_out, draining)
            }
        });
        let supervisor = StepSupervisor::start_in_arbiter(&arbiter.handle(), {
            let timeout = settings.heartbeat_timeout;
            let lost = manager.clone().recipient();
            move |_| StepSupervisor::new(timeout, lost)
        });
        manager
            .send(SetSupervisor(supervisor.clone()))
            .await
            .map_err(|e| StartError::Other(e.to_string()))?;
        // 6. recovery, held
        let recovered = manager
            .send(Recover)
            .await
            .map_err(|e| StartError::Other(e.to_string()))?
            .map_err(StartError::Store)?;
        let lifecycle = Lifecycle::new();
        let state = web::Data::new(AppState {
            settings: Arc::clone(&settings),
            store: store.clone(),
            snapshot: snapshot_shared,
            manager: manager.clone(),
            registry,
            supervisor,
            lifecycle: lifecycle.clone(),
            config,
            reload: Mutex::new(ReloadState {
                last_check: Instant::now(),
                failed: None,
            }),
        });
        let data = state.clone();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .app_data(api_error::query_config())
                .wrap(api_error::json_error_bodies())
                .wrap(middleware::from_fn(access_log::log_requests))
                .configure(api::configure)
                .default_service(web::to(api_error::unknown_route))
        })
        .listen(listener)
        .map_err(|e| StartError::Bind {
            addr: bind_addr.clone(),
            cause: e.to_string(),
        })?
        .disable_signals()
        .shutdown_timeout(settings.shutdown_timeout.as_secs())
        .run();
        // 8. release held runs; 9. ready
        manager.do_send(Release);
        lifecycle.set_ready();
        let workflows = crate::actors::manager::current(&state.snapshot).workflow_count();
        log::info!(
            target: TARGET,
            event = "orchestrator.ready",
            addr = addr.to_string().as_str(),
            store = settings.store_name(),
            version = ktsu_shared::VERSION,
            workflows = workflows,
            recovered = recovered;
            "orchestrator ready on {addr}"
        );
        notify::ready(&addr.to_string());
        Ok(Application {
            addr,
            server,
            state,
            lease_owner,
            _arbiter: arbiter,
        })
    }

    /// The bound address.
    pub fn address(&self) -> SocketAddr {
        self.addr
    }

    /// The URL runtimes call back (`KTSU_OWN_URL` or derived).
    pub fn own_url(&self) -> String {
        self.state.config.own_url.clone()
    }

    pub fn server_handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// Serves until stopped; renews the store lease and pings the systemd watchdog meanwhile.
    pub async fn run(self) -> std::io::Result<()> {
        let store = self.state.store.clone();
        let owner = self.lease_owner.clone();
        let renew = actix_rt::spawn(async move {
            loop {
                actix_rt::time::sleep(Duration::from_secs(5)).await;
                if let Err(e) = store.renew_lease(&owner).await {
                    log::error!(target: TARGET, event = "store.lease_failed", error = e.to_string().as_str(); "cannot renew the store lease");
                }
            }
        });
        let watchdog = notify::watchdog_interval().map(|period| {
            actix_rt::spawn(async move {
                loop {
                    notify::watchdog();
                    actix_rt::time::sleep(period).await;
                }
            })
        });
        let server = self.server;
        let result = server.await;
        renew.abort();
        if let Some(w) = watchdog {
            w.abort();
        }
        let _ = self.state.store.release_lease(&self.lease_owner).await;
        let _ = self.state.store.close().await;
        log::info!(target: TARGET, event = "orchestrator.stopped"; "orchestrator stopped");
        result
    }

    /// A handle that stops the orchestrator gracefully from a signal handler.
    pub fn stop_handle(&self) -> StopHandle {
        StopHandle {
            state: self.state.clone(),
            server: self.server.handle(),
        }
    }

    /// The shared state (in-process tests and the all-in-one modes).
    pub fn state(&self) -> web::Data<AppState> {
        self.state.clone()
    }
}

/// Stops a running orchestrator (orchestrator.md §1.3).
#[derive(Clone)]
pub struct StopHandle {
    state: web::Data<AppState>,
    server: ServerHandle,
}

impl StopHandle {
    /// Graceful shutdown: `/health` draining and `POST /invoke` 503 `shutting_down`; RunActors
    /// start no new work; in-flight commits land; then the server stops (ending
    /// [`Application::run`], which releases the lease and closes the store).
    pub async fn stop(&self) {
        let state = &self.state;
        state.lifecycle.set_draining();
        notify::stopping();
        let active = state.manager.send(Drain).await.unwrap_or(0);
        log::info!(target: TARGET, event = "orchestrator.stopping", active_runs = active; "orchestrator draining");
        if state.store.kind() == "memory" && active > 0 {
            log::warn!(target: TARGET, event = "run.abandoned", active_runs = active; "the memory store loses {active} active run(s) at shutdown");
        }
        // Commits are awaited inside the actors; a short grace lets in-flight ones land.
        let grace = state
            .settings
            .shutdown_timeout
            .min(Duration::from_millis(500));
        actix_rt::time::sleep(grace).await;
        self.server.stop(true).await;
    }
}
