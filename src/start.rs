//! `ktsu start gateway|orchestrator|runtime` and `ktsu start --all` (cli-and-ops.md §1.3, §3):
//! settings from flags and environment, startup in the documented order, graceful shutdown on
//! SIGTERM/SIGINT (exit 0; a second signal exits at once with 130/143).

use crate::exit;
use clap::{Args as ClapArgs, ValueEnum};
use ktsu_shared::logging;
use ktsu_shared::service::notify;
use ktsu_shared::service::settings::Env;
use std::future::Future;
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Service {
    Gateway,
    Orchestrator,
    Runtime,
}

#[derive(Debug, ClapArgs)]
pub struct Args {
    /// The service to start (or `--all`).
    pub service: Option<Service>,
    /// Start gateway, orchestrator and runtime in this process (hosts default to 127.0.0.1).
    #[arg(long)]
    pub all: bool,
    #[arg(long, value_name = "ADDR")]
    pub host: Option<String>,
    #[arg(long, value_name = "PORT")]
    pub port: Option<String>,
    /// Orchestrator: base of callback URLs.
    #[arg(long, value_name = "URL")]
    pub own_url: Option<String>,
    /// Orchestrator: fallback runtime.
    #[arg(long, value_name = "URL")]
    pub runtime_url: Option<String>,
    /// Orchestrator: gateway probed by /health.
    #[arg(long, value_name = "URL")]
    pub gateway_url: Option<String>,
    #[arg(long, value_name = "DIR")]
    pub project_dir: Option<PathBuf>,
    #[arg(long, value_name = "DIR")]
    pub workflow_dir: Option<PathBuf>,
    /// memory or sqlite.
    #[arg(long, value_name = "TYPE")]
    pub store_type: Option<String>,
    #[arg(long, value_name = "FILE")]
    pub db_path: Option<String>,
    #[arg(long, value_name = "SECONDS")]
    pub heartbeat_timeout_s: Option<String>,
    /// Environment file (values for declared env vars; gateway provider overrides).
    #[arg(long = "env", value_name = "FILE")]
    pub env_file: Option<PathBuf>,
    #[arg(long = "workspace", value_name = "DIR")]
    pub workspaces: Vec<PathBuf>,
    #[arg(long)]
    pub no_hub_lock: bool,
    /// Runtime: the orchestrator URL (registration and heartbeats; "" disables them).
    #[arg(long, value_name = "URL")]
    pub orchestrator: Option<String>,
    /// Runtime: the gateway URL.
    #[arg(long, value_name = "URL")]
    pub gateway: Option<String>,
    /// Gateway: the gateway file.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Gateway: serve every provider with the built-in mock.
    #[arg(long)]
    pub mock: bool,
    #[arg(long, value_name = "ADDR")]
    pub orchestrator_host: Option<String>,
    #[arg(long, value_name = "PORT")]
    pub orchestrator_port: Option<String>,
    #[arg(long, value_name = "ADDR")]
    pub runtime_host: Option<String>,
    #[arg(long, value_name = "PORT")]
    pub runtime_port: Option<String>,
    #[arg(long, value_name = "ADDR")]
    pub gateway_host: Option<String>,
    #[arg(long, value_name = "PORT")]
    pub gateway_port: Option<String>,
    /// --all: the gateway file (default <project-dir>/gateway.yaml).
    #[arg(long, value_name = "FILE")]
    pub gateway_config: Option<PathBuf>,
}

/// Flags that belong to some modes only: `(flag, given, modes)`.
fn misplaced(a: &Args) -> Option<String> {
    let mode = match (a.all, a.service) {
        (true, _) => "--all",
        (false, Some(Service::Gateway)) => "gateway",
        (false, Some(Service::Orchestrator)) => "orchestrator",
        (false, Some(Service::Runtime)) => "runtime",
        (false, None) => return None,
    };
    let checks: [(&str, bool, &[&str]); 21] = [
        (
            "--host",
            a.host.is_some(),
            &["gateway", "orchestrator", "runtime"],
        ),
        (
            "--port",
            a.port.is_some(),
            &["gateway", "orchestrator", "runtime"],
        ),
        ("--own-url", a.own_url.is_some(), &["orchestrator", "--all"]),
        ("--runtime-url", a.runtime_url.is_some(), &["orchestrator"]),
        ("--gateway-url", a.gateway_url.is_some(), &["orchestrator"]),
        (
            "--project-dir",
            a.project_dir.is_some(),
            &["orchestrator", "--all"],
        ),
        (
            "--workflow-dir",
            a.workflow_dir.is_some(),
            &["orchestrator", "--all"],
        ),
        (
            "--store-type",
            a.store_type.is_some(),
            &["orchestrator", "--all"],
        ),
        ("--db-path", a.db_path.is_some(), &["orchestrator", "--all"]),
        (
            "--heartbeat-timeout-s",
            a.heartbeat_timeout_s.is_some(),
            &["orchestrator", "--all"],
        ),
        (
            "--env",
            a.env_file.is_some(),
            &["orchestrator", "gateway", "--all"],
        ),
        (
            "--workspace",
            !a.workspaces.is_empty(),
            &["orchestrator", "--all"],
        ),
        ("--no-hub-lock", a.no_hub_lock, &["orchestrator", "--all"]),
        ("--orchestrator", a.orchestrator.is_some(), &["runtime"]),
        ("--gateway", a.gateway.is_some(), &["runtime"]),
        ("--config", a.config.is_some(), &["gateway"]),
        ("--mock", a.mock, &["gateway", "--all"]),
        (
            "--orchestrator-host/-port",
            a.orchestrator_host.is_some() || a.orchestrator_port.is_some(),
            &["--all"],
        ),
        (
            "--runtime-host/-port",
            a.runtime_host.is_some() || a.runtime_port.is_some(),
            &["--all"],
        ),
        (
            "--gateway-host/-port",
            a.gateway_host.is_some() || a.gateway_port.is_some(),
            &["--all"],
        ),
        ("--gateway-config", a.gateway_config.is_some(), &["--all"]),
    ];
    checks
        .iter()
        .find(|(_, given, modes)| *given && !modes.contains(&mode))
        .map(|(flag, _, _)| format!("{flag} is not a flag of `ktsu start {mode}`"))
}

pub fn run(args: &Args, log_format: Option<&str>) -> u8 {
    if args.all == args.service.is_some() {
        crate::output::error(
            "give exactly one of a service (gateway, orchestrator, runtime) or --all",
        );
        return exit::USAGE;
    }
    if let Some(problem) = misplaced(args) {
        crate::output::error(problem);
        return exit::USAGE;
    }
    let service = match (args.all, args.service) {
        (true, _) => "ktsu",
        (_, Some(Service::Gateway)) => "gateway",
        (_, Some(Service::Orchestrator)) => "orchestrator",
        _ => "runtime",
    };
    // actix-server's own start/stop chatter carries no `event`; operators see ours instead.
    let settings =
        match logging::LogSettings::from_env(service, log_format, "info,actix_server=warn") {
            Ok(s) => s,
            Err(e) => {
                crate::output::error(e);
                return exit::USAGE;
            }
        };
    if let Err(e) = logging::init(&settings) {
        crate::output::error(e);
        return exit::FAILURE;
    }
    let system = actix_rt::System::new();
    system.block_on(async move {
        match (args.all, args.service) {
            (true, _) => crate::embedded::start_all(args).await,
            (_, Some(Service::Gateway)) => gateway(args).await,
            (_, Some(Service::Orchestrator)) => orchestrator(args).await,
            _ => runtime(args).await,
        }
    })
}

/// Logs `config.error` records for each diagnostic (cli-and-ops.md §3.1).
pub fn log_config_errors(diags: &[ktsu_shared::diag::Diagnostic]) {
    for d in diags {
        log::error!(
            target: "ktsu",
            event = "config.error",
            file = d.file.as_str(),
            line = d.line.unwrap_or(0),
            column = d.column.unwrap_or(0),
            code = d.code;
            "{}: {}", d.location_prefix(), d.message
        );
    }
}

async fn gateway(a: &Args) -> u8 {
    let flags = ktsu_gateway::Flags {
        config: a.config.clone(),
        host: a.host.clone(),
        port: a.port.clone(),
        env_file: a.env_file.clone(),
        mock: a.mock,
    };
    let settings = match ktsu_gateway::Settings::from_flags(&flags, &Env) {
        Ok(s) => s,
        Err(e) => {
            crate::output::error(e);
            return exit::USAGE;
        }
    };
    let app = match ktsu_gateway::Application::build(settings).await {
        Ok(app) => app,
        Err(e) => {
            log::error!(target: "ktsu", event = "gateway.start_failed", error = e.to_string().as_str(); "{e}");
            return e.exit_code();
        }
    };
    let stop = app.stop_handle();
    let addr = app.local_addr();
    let run = async move {
        match app.run().await {
            Ok(()) => exit::OK,
            Err(e) => e.exit_code(),
        }
    };
    serve(
        Some(addr),
        move || {
            let stop = stop.clone();
            async move { stop.stop().await }
        },
        run,
    )
    .await
}

/// The orchestrator's flags from the CLI.
pub fn orchestrator_flags(a: &Args) -> ktsu_orchestrator::Flags {
    ktsu_orchestrator::Flags {
        host: a.host.clone(),
        port: a.port.clone(),
        own_url: a.own_url.clone(),
        runtime_url: a.runtime_url.clone(),
        gateway_url: a.gateway_url.clone(),
        project_dir: a.project_dir.clone(),
        workflow_dir: a.workflow_dir.clone(),
        store_type: a.store_type.clone(),
        db_path: a.db_path.clone(),
        heartbeat_timeout_s: a.heartbeat_timeout_s.clone(),
        env_file: a.env_file.clone(),
        workspaces: a.workspaces.clone(),
        no_hub_lock: a.no_hub_lock,
    }
}

/// Maps an orchestrator start failure to logs and an exit code.
pub fn orchestrator_failed(e: &ktsu_orchestrator::StartError) -> u8 {
    match e {
        ktsu_orchestrator::StartError::Config(diags) => log_config_errors(diags),
        other => {
            log::error!(target: "ktsu", event = "orchestrator.start_failed", error = other.to_string().as_str(); "{other}")
        }
    }
    e.exit_code()
}

async fn orchestrator(a: &Args) -> u8 {
    let settings = match ktsu_orchestrator::Settings::resolve(&orchestrator_flags(a), &Env) {
        Ok(s) => s,
        Err(e) => {
            crate::output::error(e);
            return exit::USAGE;
        }
    };
    let app = match ktsu_orchestrator::Application::build(settings).await {
        Ok(app) => app,
        Err(e) => return orchestrator_failed(&e),
    };
    let stop = app.stop_handle();
    let run = async move {
        match app.run().await {
            Ok(()) => exit::OK,
            Err(e) => {
                log::error!(target: "ktsu", event = "orchestrator.failed", error = e.to_string().as_str(); "{e}");
                exit::FAILURE
            }
        }
    };
    // The orchestrator announces readiness and pings the watchdog itself (after recovery).
    serve(
        None,
        move || {
            let stop = stop.clone();
            async move { stop.stop().await }
        },
        run,
    )
    .await
}

async fn runtime(a: &Args) -> u8 {
    let flags = ktsu_runtime::Flags {
        host: a.host.clone(),
        port: a.port.clone(),
        orchestrator: a.orchestrator.clone(),
        gateway: a.gateway.clone(),
    };
    let settings = match ktsu_runtime::Settings::from_env(&flags) {
        Ok(s) => s,
        Err(e) => {
            crate::output::error(e);
            return exit::USAGE;
        }
    };
    let app = match ktsu_runtime::Application::build(settings).await {
        Ok(app) => app,
        Err(e) => {
            log::error!(target: "ktsu", event = "runtime.start_failed", error = e.to_string().as_str(); "{e}");
            return u8::try_from(e.exit_code()).unwrap_or(exit::FAILURE);
        }
    };
    let stop = app.stop_handle();
    let addr = app.local_addr();
    let run = async move {
        match app.run().await {
            Ok(()) => exit::OK,
            Err(e) => u8::try_from(e.exit_code()).unwrap_or(exit::FAILURE),
        }
    };
    serve(
        Some(addr),
        move || {
            let stop = stop.clone();
            async move { stop.stop() }
        },
        run,
    )
    .await
}

/// Serves until `run` ends: readiness announced for `announce` (see [`announce_ready`]), and
/// the first SIGTERM/SIGINT sends `STOPPING=1` and calls `stop`.
async fn serve<S, F>(
    announce: Option<std::net::SocketAddr>,
    stop: S,
    run: impl Future<Output = u8>,
) -> u8
where
    S: Fn() -> F + 'static,
    F: Future<Output = ()> + 'static,
{
    let watchdog = announce.and_then(announce_ready);
    let signals = crate::signals::on_shutdown(move || async move {
        notify::stopping();
        stop().await
    });
    let code = run.await;
    signals.abort();
    if let Some(w) = watchdog {
        w.abort();
    }
    code
}

/// `READY=1` and, when systemd asks for it, `WATCHDOG=1` every half period from this (the main)
/// arbiter, so a wedged event loop stops the pings (cli-and-ops.md §3.3). The orchestrator
/// does the same inside its crate.
fn announce_ready(addr: std::net::SocketAddr) -> Option<actix_rt::task::JoinHandle<()>> {
    notify::ready(&addr.to_string());
    notify::watchdog_interval().map(|period| {
        actix_rt::spawn(async move {
            loop {
                notify::watchdog();
                actix_rt::time::sleep(period).await;
            }
        })
    })
}
