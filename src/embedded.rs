//! The three services in one process, for `ktsu start --all` and `ktsu run` (cli-and-ops.md
//! §1.3, §1.4, §3.2, §3.4): started gateway → orchestrator → runtime, each after the previous
//! one's listener is bound, wired to each other's loopback addresses with a shared internal
//! token; stopped in reverse order so finishing agent loops can still reach the gateway and
//! deliver their callbacks.

use crate::exit;
use crate::signals;
use ktsu_shared::secret::Secret;
use ktsu_shared::service::settings::{Env, Source};
use std::future::{poll_fn, Future};
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::Poll;
use std::time::{Duration, Instant};

type ServiceTask = actix_rt::task::JoinHandle<Result<(), String>>;

/// The environment as the embedded services see it: some variables hidden (the wiring decides
/// them), some defaults replaced (hosts default to loopback).
pub struct EmbeddedEnv {
    pub hidden: &'static [&'static str],
    pub defaults: Vec<(&'static str, String)>,
}

impl Source for EmbeddedEnv {
    fn get(&self, name: &str) -> Option<String> {
        if self.hidden.contains(&name) {
            return None;
        }
        Env.get(name).filter(|v| !v.is_empty()).or_else(|| {
            self.defaults
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.clone())
        })
    }
}

/// Settings of the three services before wiring (URLs and token are filled in by [`start`]).
pub struct Plan {
    pub gateway: ktsu_gateway::Settings,
    pub orchestrator: ktsu_orchestrator::Settings,
    pub runtime: ktsu_runtime::Settings,
}

/// Running services.
pub struct Services {
    pub orchestrator_url: String,
    pub runtime_url: String,
    pub gateway_url: String,
    gateway_stop: ktsu_gateway::StopHandle,
    orchestrator_stop: ktsu_orchestrator::StopHandle,
    runtime_stop: ktsu_runtime::StopHandle,
    tasks: [(&'static str, ServiceTask); 3],
}

/// A service start failure: the exit code and a one-line message naming the service.
pub struct StartFailure {
    pub code: u8,
    pub message: String,
}

fn failure(service: &str, code: u8, message: String) -> StartFailure {
    StartFailure {
        code,
        message: format!("{service} did not start: {message}"),
    }
}

impl StartFailure {
    /// The `ktsu.start_failed` log record.
    pub fn log(&self) {
        log::error!(target: "ktsu", event = "ktsu.start_failed", error = self.message.as_str(); "{}", self.message);
    }
}

/// `http://<ip>:<port>` for a bound address; a wildcard bind is reached over loopback.
fn url_of(addr: SocketAddr) -> String {
    let ip = addr.ip();
    let host = if ip.is_unspecified() {
        "127.0.0.1".to_string()
    } else if ip.is_ipv6() {
        format!("[{ip}]")
    } else {
        ip.to_string()
    };
    format!("http://{host}:{}", addr.port())
}

fn is_wildcard(host: &str) -> bool {
    matches!(host, "" | "0.0.0.0" | "::" | "[::]")
}

/// A random internal token, or the configured one.
pub fn internal_token() -> Result<Secret, StartFailure> {
    if let Some(token) = Env.get("KTSU_INTERNAL_TOKEN").filter(|t| !t.is_empty()) {
        return Ok(Secret::new(token));
    }
    ktsu_shared::ids::random_hex(32)
        .map(Secret::new)
        .map_err(|e| {
            failure(
                "ktsu",
                exit::FAILURE,
                format!("cannot generate the internal token: {e}"),
            )
        })
}

/// Starts gateway, orchestrator and runtime in this order; on a failure the started ones are
/// stopped and the failure's exit code returned.
pub async fn start(mut plan: Plan, token: Secret) -> Result<Services, StartFailure> {
    plan.gateway.internal_token = Some(token.clone());
    let gateway = ktsu_gateway::Application::build(plan.gateway)
        .await
        .map_err(|e| failure("gateway", e.exit_code(), e.to_string()))?;
    let gateway_url = url_of(gateway.local_addr());
    let gateway_stop = gateway.stop_handle();
    let gateway_task: ServiceTask =
        actix_rt::spawn(async move { gateway.run().await.map_err(|e| e.to_string()) });

    let runtime_host = plan.runtime.host.clone();
    // The runtime binds after the orchestrator; with a fixed port its URL is known now, with
    // port 0 the orchestrator learns it from the runtime's registration.
    plan.orchestrator.runtime_url = (plan.runtime.port != 0).then(|| {
        let host = if is_wildcard(&runtime_host) {
            "127.0.0.1"
        } else {
            runtime_host.as_str()
        };
        format!("http://{host}:{}", plan.runtime.port)
    });
    plan.orchestrator.gateway_url = Some(gateway_url.clone());
    plan.orchestrator.internal_token = Some(token.clone());
    let orchestrator = match ktsu_orchestrator::Application::build(plan.orchestrator).await {
        Ok(app) => app,
        Err(e) => {
            if let ktsu_orchestrator::StartError::Config(diags) = &e {
                crate::start::log_config_errors(diags);
            }
            let code = e.exit_code();
            gateway_stop.stop().await;
            let _ = gateway_task.await;
            return Err(failure("orchestrator", code, e.to_string()));
        }
    };
    let orchestrator_url = url_of(orchestrator.address());
    let orchestrator_stop = orchestrator.stop_handle();
    let orchestrator_task: ServiceTask =
        actix_rt::spawn(async move { orchestrator.run().await.map_err(|e| e.to_string()) });

    plan.runtime.orchestrator_url = Some(orchestrator_url.clone());
    plan.runtime.gateway_url = gateway_url.clone();
    plan.runtime.internal_token = Some(token);
    plan.runtime.advertise = if is_wildcard(&runtime_host) {
        ktsu_runtime::Advertise::Loopback
    } else {
        ktsu_runtime::Advertise::Derived
    };
    let runtime = match ktsu_runtime::Application::build(plan.runtime).await {
        Ok(app) => app,
        Err(e) => {
            let code = u8::try_from(e.exit_code()).unwrap_or(exit::FAILURE);
            orchestrator_stop.stop().await;
            let _ = orchestrator_task.await;
            gateway_stop.stop().await;
            let _ = gateway_task.await;
            return Err(failure("runtime", code, e.to_string()));
        }
    };
    let runtime_url = url_of(runtime.local_addr());
    let runtime_stop = runtime.stop_handle();
    let runtime_task: ServiceTask =
        actix_rt::spawn(async move { runtime.run().await.map_err(|e| e.to_string()) });
    Ok(Services {
        orchestrator_url,
        runtime_url,
        gateway_url,
        gateway_stop,
        orchestrator_stop,
        runtime_stop,
        tasks: [
            ("gateway", gateway_task),
            ("orchestrator", orchestrator_task),
            ("runtime", runtime_task),
        ],
    })
}

impl Services {
    /// Waits until the orchestrator reports itself and both peers healthy (the runtime has
    /// registered). `false` when `within` elapses first.
    pub async fn wait_ready(&self, within: Duration) -> bool {
        let client = awc::Client::builder()
            .timeout(Duration::from_secs(2))
            .finish();
        let url = format!("{}/health", self.orchestrator_url);
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(res) = client.get(&url).send().await {
                if res.status().is_success() {
                    return true;
                }
            }
            actix_rt::time::sleep(Duration::from_millis(25)).await;
        }
        false
    }

    /// Resolves with the name and outcome of the first service that ends on its own.
    pub async fn first_exit(&mut self) -> (&'static str, Result<(), String>) {
        poll_fn(|cx| {
            for (name, task) in self.tasks.iter_mut() {
                if let Poll::Ready(result) = Pin::new(task).poll(cx) {
                    let outcome = result.unwrap_or_else(|e| Err(format!("task failed: {e}")));
                    return Poll::Ready((*name, outcome));
                }
            }
            Poll::Pending
        })
        .await
    }

    /// Graceful stop in reverse start order: runtime, orchestrator, gateway.
    pub async fn stop(self) {
        let [gateway, orchestrator, runtime] = self.tasks;
        self.runtime_stop.stop();
        if !runtime.1.is_finished() {
            let _ = runtime.1.await;
        }
        self.orchestrator_stop.stop().await;
        let _ = orchestrator.1.await;
        self.gateway_stop.stop().await;
        let _ = gateway.1.await;
    }
}

/// Waits on a future or a shutdown signal, whichever comes first.
pub async fn or_signal<T>(
    future: impl Future<Output = T>,
    signal: &mut Pin<Box<dyn Future<Output = signals::Signal>>>,
) -> Result<T, signals::Signal> {
    let mut future = std::pin::pin!(future);
    poll_fn(|cx| {
        if let Poll::Ready(s) = signal.as_mut().poll(cx) {
            return Poll::Ready(Err(s));
        }
        future.as_mut().poll(cx).map(Ok)
    })
    .await
}

/// `ktsu start --all`.
pub async fn start_all(args: &crate::start::Args) -> u8 {
    let plan = match plan_all(args) {
        Ok(plan) => plan,
        Err(message) => {
            crate::output::error(message);
            return exit::USAGE;
        }
    };
    let started = match internal_token() {
        Ok(token) => start(plan, token).await,
        Err(f) => Err(f),
    };
    let mut services = match started {
        Ok(s) => s,
        Err(f) => {
            f.log();
            return f.code;
        }
    };
    let mut signal: Pin<Box<dyn Future<Output = signals::Signal>>> = Box::pin(signals::first());
    match or_signal(services.wait_ready(Duration::from_secs(30)), &mut signal).await {
        Ok(true) => {
            log::info!(target: "ktsu", event = "ktsu.ready", orchestrator = services.orchestrator_url.as_str(), runtime = services.runtime_url.as_str(), gateway = services.gateway_url.as_str(); "ready");
            ktsu_shared::service::notify::ready(&services.orchestrator_url);
        }
        Ok(false) => {
            log::warn!(target: "ktsu", event = "ktsu.not_ready", orchestrator = services.orchestrator_url.as_str(); "the orchestrator did not report ready within 30s; serving anyway");
        }
        Err(s) => return stop_on_signal(services, s).await,
    }
    let code = match or_signal(services.first_exit(), &mut signal).await {
        Err(s) => return stop_on_signal(services, s).await,
        Ok((name, outcome)) => {
            let error = outcome
                .err()
                .unwrap_or_else(|| "stopped unexpectedly".into());
            log::error!(target: "ktsu", event = "ktsu.service_failed", service = name, error = error.as_str(); "{name} ended: {error}");
            services.stop().await;
            exit::FAILURE
        }
    };
    log::info!(target: "ktsu", event = "ktsu.stopped", exit_code = code; "stopped");
    code
}

async fn stop_on_signal(services: Services, signal: signals::Signal) -> u8 {
    log::info!(target: "ktsu", event = "ktsu.stopping", signal = signal.name(); "stopping");
    services.stop().await;
    log::info!(target: "ktsu", event = "ktsu.stopped", exit_code = exit::OK; "stopped");
    exit::OK
}

/// The `--all` settings: each service's own variables apply, hosts default to loopback, and
/// the URLs that wire the services to each other are decided here, not by the environment.
fn plan_all(a: &crate::start::Args) -> Result<Plan, String> {
    let hosts = |var: &'static str| (var, "127.0.0.1".to_string());
    let env = EmbeddedEnv {
        hidden: &[
            "KTSU_RUNTIME_URL",
            "KTSU_GATEWAY_URL",
            "KTSU_ORCHESTRATOR_URL",
            "KTSU_RUNTIME_ADVERTISE_URL",
        ],
        defaults: vec![
            hosts("KTSU_ORCHESTRATOR_HOST"),
            hosts("KTSU_RUNTIME_HOST"),
            hosts("KTSU_GATEWAY_HOST"),
        ],
    };
    let mut orchestrator_flags = crate::start::orchestrator_flags(a);
    orchestrator_flags.host = a.orchestrator_host.clone();
    orchestrator_flags.port = a.orchestrator_port.clone();
    let orchestrator = ktsu_orchestrator::Settings::resolve(&orchestrator_flags, &env)
        .map_err(|e| e.to_string())?;
    let project_dir = orchestrator.load.project_dir.clone();
    let gateway_flags = ktsu_gateway::Flags {
        config: Some(
            a.gateway_config
                .clone()
                .unwrap_or_else(|| project_dir.join("gateway.yaml")),
        ),
        host: a.gateway_host.clone(),
        port: a.gateway_port.clone(),
        env_file: a.env_file.clone(),
        mock: a.mock,
    };
    let mut gateway =
        ktsu_gateway::Settings::from_flags(&gateway_flags, &env).map_err(|e| e.to_string())?;
    if a.mock && a.gateway_config.is_none() && !project_dir.join("gateway.yaml").exists() {
        gateway.file = ktsu_gateway::GatewayFile::MockOnly;
    }
    let mut orchestrator = orchestrator;
    // Model groups are checked against the gateway file the embedded gateway serves.
    if let ktsu_gateway::GatewayFile::Path(path) = &gateway.file {
        orchestrator.load.gateway_config = Some(path.clone());
    }
    let runtime_flags = ktsu_runtime::Flags {
        host: a.runtime_host.clone(),
        port: a.runtime_port.clone(),
        orchestrator: None,
        gateway: None,
    };
    let runtime =
        ktsu_runtime::Settings::from_source(&runtime_flags, &env).map_err(|e| e.to_string())?;
    Ok(Plan {
        gateway,
        orchestrator,
        runtime,
    })
}
