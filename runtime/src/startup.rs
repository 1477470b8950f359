//! Bind, run, drain (cli-and-ops.md §3, runtime-gateway.md §3.12).
//!
//! [`Application::build`] binds the listener (port 0 allowed), starts the invocation manager,
//! the leg arbiters and the HTTP server, and registers with the orchestrator in the background.
//! [`Application::run`] serves until [`StopHandle::stop`] starts the graceful drain:
//!
//! 1. `/health` answers 503 `draining`, `/invoke` 503 `shutting_down`; the next heartbeat (sent
//!    at once) says `"draining": true`.
//! 2. Running legs get `KTSU_RUNTIME_SHUTDOWN_GRACE_S` to finish and deliver their callbacks.
//! 3. The rest stop with `failed` / `runtime_shutdown`; their callbacks get one more
//!    `KTSU_RUNTIME_CALLBACK_TIMEOUT_S` + 5 s (session close), then delivery is abandoned.
//! 4. The HTTP server stops; `run` returns `Ok(())` (exit 0).
//!
//! The library never installs signal handlers or talks to systemd: the CLI maps SIGTERM/SIGINT
//! to [`StopHandle::stop`] (and a second signal to an immediate exit), and sends `READY=1`,
//! `STOPPING=1` and watchdog pings as its mode requires.

use crate::api::{self, AppState};
use crate::heartbeat::{BeatNow, HeartbeatActor};
use crate::manager::{Counters, Drain, LegArbiters, LegPool, Manager, StopAll, WaitIdle};
use crate::settings::Settings;
use actix::{Actor, Addr};
use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpServer};
use ktsu_shared::api_error;
use ktsu_shared::service::access_log;
use ktsu_shared::service::lifecycle::Lifecycle;
use ktsu_shared::service::settings::SettingError;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Exit status for a setting that does not parse (usage error).
pub const EXIT_USAGE: i32 = 2;
/// Exit status for a bind failure or a runtime failure.
pub const EXIT_FAILURE: i32 = 1;

/// Extra time the shutdown gives stopped legs for closing their MCP sessions.
const SESSION_CLOSE_ALLOWANCE: Duration = Duration::from_secs(5);
/// Time legs get to report after their delivery was abandoned.
const FINAL_REPORT_ALLOWANCE: Duration = Duration::from_secs(2);

/// Why the runtime could not start or keep running.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A flag or variable that does not parse (exit 2).
    #[error(transparent)]
    Setting(#[from] SettingError),
    /// `cannot bind <addr>: <cause>` (exit 1).
    #[error("cannot bind {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    /// The HTTP server failed (exit 1).
    #[error("runtime failed: {0}")]
    Runtime(String),
}

impl StartError {
    /// The process exit status for this error: [`EXIT_USAGE`] or [`EXIT_FAILURE`].
    pub fn exit_code(&self) -> i32 {
        match self {
            StartError::Setting(_) => EXIT_USAGE,
            StartError::Bind { .. } | StartError::Runtime(_) => EXIT_FAILURE,
        }
    }
}

/// Starts the graceful drain; cheap to clone and `Send`.
#[derive(Clone)]
pub struct StopHandle {
    request: Arc<watch::Sender<bool>>,
    done: watch::Receiver<bool>,
}

impl StopHandle {
    /// Begins the drain (idempotent); [`Application::run`] returns when it is complete.
    pub fn stop(&self) {
        self.request.send_replace(true);
    }

    /// Waits until the drain is complete and the server has stopped.
    pub async fn stopped(&self) {
        let mut done = self.done.clone();
        let _ = done.wait_for(|done| *done).await;
    }
}

/// A bound, serving runtime.
pub struct Application {
    server: actix_web::dev::Server,
    local_addr: SocketAddr,
    advertise_url: String,
    settings: Arc<Settings>,
    lifecycle: Lifecycle,
    manager: Addr<Manager>,
    counters: Arc<Counters>,
    heartbeat: Option<Addr<HeartbeatActor>>,
    arbiters: LegArbiters,
    stop: StopHandle,
    stop_requests: watch::Receiver<bool>,
    done: watch::Sender<bool>,
    abandon: watch::Sender<bool>,
}

impl Application {
    /// Binds and starts serving; must be called inside an actix system
    /// (`#[actix_web::main]`, `actix_rt::System`).
    pub async fn build(settings: Settings) -> Result<Application, StartError> {
        let (host, port) = settings.bind_address();
        let listener = std::net::TcpListener::bind((host.as_str(), port)).map_err(|source| {
            StartError::Bind {
                addr: format!("{}:{port}", settings.host),
                source,
            }
        })?;
        let local_addr = listener.local_addr().map_err(|source| StartError::Bind {
            addr: format!("{}:{port}", settings.host),
            source,
        })?;
        if let Some(token) = &settings.internal_token {
            ktsu_shared::logging::extend_scrubber([token.expose()]);
        }
        let advertise_url = settings.advertise_url(local_addr);
        let settings = Arc::new(settings);
        let runtime_id: Arc<str> = Arc::from(settings.runtime_id.as_str());
        let lifecycle = Lifecycle::new();
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
        let (pool, arbiters) = LegPool::start(threads, &settings);
        let counters = Arc::new(Counters::default());
        let (abandon, abandon_receiver) = watch::channel(false);
        let manager = Manager::new(
            Arc::clone(&settings),
            Arc::clone(&runtime_id),
            pool,
            Arc::clone(&counters),
            abandon_receiver,
        )
        .start();
        let state = web::Data::new(AppState {
            settings: Arc::clone(&settings),
            runtime_id: Arc::clone(&runtime_id),
            lifecycle: lifecycle.clone(),
            manager: manager.clone(),
            counters: Arc::clone(&counters),
        });
        // Built before anything serves, so that a failure leaves nothing running.
        let heartbeat = match &settings.orchestrator_url {
            Some(url) => Some(
                HeartbeatActor::new(
                    url.clone(),
                    Arc::clone(&runtime_id),
                    advertise_url.clone(),
                    Arc::clone(&settings),
                    manager.clone(),
                    lifecycle.clone(),
                )
                .map_err(|err| StartError::Runtime(err.to_string()))?,
            ),
            None => None,
        };
        let routes = api::configure(settings.max_body_bytes);
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .app_data(api_error::query_config())
                .configure(routes.clone())
                .default_service(web::to(api_error::unknown_route))
                .wrap(api_error::json_error_bodies())
                .wrap(from_fn(access_log::log_requests))
        })
        .workers(threads.min(4))
        .disable_signals()
        .shutdown_timeout(5)
        .listen(listener)
        .map_err(|source| StartError::Bind {
            addr: local_addr.to_string(),
            source,
        })?
        .run();

        let heartbeat = heartbeat.map(Actor::start);
        lifecycle.set_ready();
        log::info!(event = "runtime.started", addr = local_addr.to_string().as_str(),
            runtime_id = &*runtime_id, advertise_url = advertise_url.as_str(),
            version = ktsu_shared::VERSION, max_concurrency = settings.max_concurrency,
            max_queue = settings.max_queue; "runtime started");
        if !local_addr.ip().is_loopback() && settings.internal_token.is_none() {
            log::warn!(event = "runtime.open_internal_routes", addr = local_addr.to_string().as_str();
                "listening beyond loopback without KTSU_INTERNAL_TOKEN: /invoke and /cancel are open");
        }
        let (request, stop_requests) = watch::channel(false);
        let (done, done_receiver) = watch::channel(false);
        Ok(Application {
            server,
            local_addr,
            advertise_url,
            settings,
            lifecycle,
            manager,
            counters,
            heartbeat,
            arbiters,
            stop: StopHandle {
                request: Arc::new(request),
                done: done_receiver,
            },
            stop_requests,
            done,
            abandon,
        })
    }

    /// The bound address (the real port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The URL given to the orchestrator.
    pub fn advertise_url(&self) -> &str {
        &self.advertise_url
    }

    pub fn runtime_id(&self) -> &str {
        &self.settings.runtime_id
    }

    pub fn stop_handle(&self) -> StopHandle {
        self.stop.clone()
    }

    /// Serves until a stop request has drained the runtime.
    pub async fn run(self) -> Result<(), StartError> {
        let Application {
            server,
            settings,
            lifecycle,
            manager,
            counters,
            heartbeat,
            arbiters,
            mut stop_requests,
            done,
            abandon,
            ..
        } = self;
        let server_handle = server.handle();
        let drain_manager = manager.clone();
        let drain_heartbeat = heartbeat.clone();
        actix_rt::spawn(async move {
            if stop_requests.wait_for(|stop| *stop).await.is_err() {
                // Every stop handle is gone: the runtime serves until the system stops.
                return;
            }
            drain(
                &settings,
                &lifecycle,
                &drain_manager,
                drain_heartbeat.as_ref(),
                &counters,
                &abandon,
            )
            .await;
            server_handle.stop(true).await;
        });
        let served = server.await;
        if let Some(heartbeat) = heartbeat {
            heartbeat.do_send(crate::heartbeat::Halt);
        }
        manager.do_send(crate::manager::Halt);
        arbiters.stop();
        done.send_replace(true);
        served.map_err(|err| StartError::Runtime(err.to_string()))
    }
}

async fn drain(
    settings: &Settings,
    lifecycle: &Lifecycle,
    manager: &Addr<Manager>,
    heartbeat: Option<&Addr<HeartbeatActor>>,
    counters: &Counters,
    abandon: &watch::Sender<bool>,
) {
    lifecycle.set_draining();
    log::info!(event = "runtime.draining", running = counters.running(), queued = counters.queued();
        "runtime draining");
    let _ = manager.send(Drain).await;
    if let Some(heartbeat) = heartbeat {
        heartbeat.do_send(BeatNow);
    }
    if !wait_idle(manager, settings.shutdown_grace).await {
        let _ = manager.send(StopAll).await;
        let delivery = settings.callback_timeout + SESSION_CLOSE_ALLOWANCE;
        if !wait_idle(manager, delivery).await {
            abandon.send_replace(true);
            wait_idle(manager, FINAL_REPORT_ALLOWANCE).await;
        }
    }
    log::info!(event = "runtime.stopped", running = counters.running(), queued = counters.queued();
        "runtime stopped");
}

/// Whether the registry emptied within `bound`.
async fn wait_idle(manager: &Addr<Manager>, bound: Duration) -> bool {
    match manager.send(WaitIdle).await {
        Ok(idle) => actix_rt::time::timeout(bound, idle).await.is_ok(),
        Err(_) => true,
    }
}
