//! The ktsu agent runtime (runtime-gateway.md Part A): it accepts agent invocations from the
//! orchestrator (`POST /invoke`, 202), runs each as one *leg* of an agent reasoning loop against
//! the LLM gateway and the agent's MCP tool servers, and reports the result by callback.
//!
//! For the CLI (`ktsu start runtime`):
//!
//! ```no_run
//! # async fn start() -> Result<(), ktsu_runtime::StartError> {
//! use ktsu_runtime::{Application, Flags, Settings};
//! let flags = Flags { port: Some("0".into()), ..Flags::default() };
//! let settings = Settings::from_env(&flags)?;          // malformed value: exit 2
//! let app = Application::build(settings).await?;       // cannot bind: exit 1
//! let stop = app.stop_handle();                        // call `stop.stop()` on SIGTERM/SIGINT
//! app.run().await                                      // returns after the graceful drain
//! # }
//! ```
//!
//! [`StartError::exit_code`] gives the process exit status: 2 for a setting, 1 for a bind or
//! runtime failure. A clean drain returns `Ok(())` (exit 0).
//!
//! Layout: [`settings`] and [`startup`] (process), `api` (routes), `manager` (the invocation
//! manager actor and its pure registry), `leg` (one invocation from start to callback),
//! `agent` (the loop itself), `gateway_client`, `callback`, `heartbeat`, `mcp` (the MCP client)
//! and `allowlist`.

macro_rules! leg_log {
    ($level:expr, $ids:expr, $($key:ident $(:$capture:ident)? = $value:expr),* ; $($arg:tt)+) => {
        log::log!(
            $level,
            run_id = $ids.run_id.as_str(),
            step_id = $ids.step_id.as_str(),
            attempt = $ids.attempt,
            $($key $(:$capture)? = $value),* ;
            $($arg)+
        )
    };
}

mod agent;
mod allowlist;
mod api;
mod callback;
mod clients;
mod gateway_client;
mod heartbeat;
mod leg;
mod manager;
pub mod mcp;
mod schema_cache;
mod secrets;
pub mod settings;
pub mod startup;
mod units;

pub use settings::{Advertise, Flags, Settings};
pub use startup::{Application, StartError, StopHandle, EXIT_FAILURE, EXIT_USAGE};
