//! Build → run → stop (cli-and-ops.md §3): [`Application::build`] loads and validates the
//! configuration and binds the listener (nothing is bound when the configuration is invalid);
//! [`Application::run`] serves until [`StopHandle::stop`] drains it.

use crate::api;
use crate::config;
use crate::error::StartError;
use crate::settings::Settings;
use crate::state::{Gateway, Upstreams};
use actix_web::dev::{Server, ServerHandle};
use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpServer};
use ktsu_shared::api_error::json_error_bodies;
use ktsu_shared::diag::Diagnostic;
use ktsu_shared::logging;
use ktsu_shared::service::access_log::log_requests;
use ktsu_shared::validate::{EnvLookup, ProcessEnv};
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

/// A built gateway: configuration valid, listener bound, ready to [`run`](Application::run).
pub struct Application {
    server: Server,
    addr: SocketAddr,
    stop: StopHandle,
    gateway: Arc<Gateway>,
}

/// Stops a running gateway gracefully; cheap to clone, usable from any task of the process.
#[derive(Clone)]
pub struct StopHandle {
    server: ServerHandle,
    gateway: Arc<Gateway>,
    grace: Duration,
}

impl Application {
    /// Loads the configuration with the process environment and binds.
    ///
    /// Errors and their exit codes ([`StartError::exit_code`]): an unreadable gateway or env
    /// file → 2; an invalid configuration → 3, after one `config.error` record per problem; a
    /// port that cannot be bound → 1.
    pub async fn build(settings: Settings) -> Result<Application, StartError> {
        Self::build_with_env(settings, &ProcessEnv).await
    }

    /// [`Application::build`] with another source of env values (tests, embedding processes).
    pub async fn build_with_env(
        settings: Settings,
        env: &dyn EnvLookup,
    ) -> Result<Application, StartError> {
        // Exactly one crypto provider is compiled in; installing it explicitly keeps TLS working
        // even if another crate in the process enables a second one.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let loaded = config::load(&settings, env).inspect_err(log_config_errors)?;
        for warning in &loaded.warnings {
            log::warn!(
                event = "config.warning",
                file = warning.file.as_str(),
                line = warning.line,
                column = warning.column,
                code = warning.code;
                "{}: {}", warning.location_prefix(), warning.message
            );
        }
        let mut secrets = loaded.secrets.clone();
        if let Some(token) = settings.internal_token.as_ref().filter(|t| !t.is_empty()) {
            secrets.push(token.expose().to_string());
        }
        logging::extend_scrubber(secrets);
        let gateway = Arc::new(
            Gateway::build(loaded, settings.internal_token.clone())
                .inspect_err(log_config_errors)?,
        );

        let bind = settings.bind_addr();
        let listener = TcpListener::bind(&bind).map_err(|e| StartError::Bind {
            addr: bind.clone(),
            cause: e.to_string(),
        })?;
        let addr = listener.local_addr().map_err(|e| StartError::Bind {
            addr: bind.clone(),
            cause: e.to_string(),
        })?;
        let data = web::Data::from(Arc::clone(&gateway));
        let grace = settings.shutdown_grace;
        let mut server = HttpServer::new(move || {
            // awc clients are bound to their thread: one set per worker.
            let upstreams = web::Data::new(Upstreams::new(&data));
            App::new()
                .app_data(data.clone())
                .app_data(upstreams)
                .wrap(json_error_bodies())
                .wrap(from_fn(log_requests))
                .configure(api::configure)
                .default_service(web::to(api::not_found))
        })
        .disable_signals()
        // A client that closes its side (a cancelled runtime leg) ends the handler at once, so
        // its pool slot and budget reservation come back immediately.
        .h1_allow_half_closed(false)
        .shutdown_timeout(grace.as_secs().max(1));
        if let Some(workers) = settings.workers {
            server = server.workers(workers.max(1));
        }
        let server = server
            .listen(listener)
            .map_err(|e| StartError::Bind {
                addr: bind,
                cause: e.to_string(),
            })?
            .run();
        let stop = StopHandle {
            server: server.handle(),
            gateway: Arc::clone(&gateway),
            grace,
        };
        gateway.lifecycle.set_ready();
        Ok(Application {
            server,
            addr,
            stop,
            gateway,
        })
    }

    /// The bound address (the OS-chosen port when the setting was `0`).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn stop_handle(&self) -> StopHandle {
        self.stop.clone()
    }

    /// Serves until stopped. Logs `gateway.started` first and `gateway.stopped` last.
    pub async fn run(self) -> Result<(), StartError> {
        log::info!(
            event = "gateway.started",
            addr = self.addr.to_string(),
            providers = self.gateway.providers.len(),
            groups = self.gateway.group_count(),
            version = ktsu_shared::VERSION;
            "gateway started"
        );
        if !self.addr.ip().is_loopback() && self.gateway.internal_token.is_none() {
            log::warn!(
                event = "gateway.unprotected",
                addr = self.addr.to_string();
                "listening beyond loopback without KTSU_INTERNAL_TOKEN: POST /invoke is open"
            );
        }
        let result = self.server.await;
        log::info!(event = "gateway.stopped"; "gateway stopped");
        result.map_err(|e| StartError::Runtime(e.to_string()))
    }
}

impl StopHandle {
    /// Drains and stops: `/health` answers 503 `draining` at once; calls in flight (and calls
    /// that still arrive, e.g. from agent loops finishing elsewhere) get up to
    /// `KTSU_GATEWAY_SHUTDOWN_GRACE_S` to finish; then the server closes every connection.
    pub async fn stop(&self) {
        self.gateway.lifecycle.set_draining();
        let _ = tokio::time::timeout(self.grace, self.gateway.in_flight.idle()).await;
        self.server.stop(false).await;
    }

    /// Calls currently being handled.
    pub fn in_flight(&self) -> usize {
        self.gateway.in_flight.count()
    }
}

/// One `config.error` record per problem (cli-and-ops.md §3.1).
fn log_config_errors(error: &StartError) {
    if let StartError::InvalidConfig(diagnostics) = error {
        for d in diagnostics.iter().filter(|d| d.is_error()) {
            log_config_error(d);
        }
    }
}

fn log_config_error(d: &Diagnostic) {
    log::error!(
        event = "config.error",
        file = d.file.as_str(),
        line = d.line,
        column = d.column,
        code = d.code;
        "{}: {}", d.location_prefix(), d.message
    );
}
