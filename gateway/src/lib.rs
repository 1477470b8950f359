//! The ktsu LLM gateway (runtime-gateway.md Part B): the only holder of provider credentials.
//! One normalised `POST /invoke` in; group strategy, retries, fallback, circuit breaker,
//! provider pool, budgets and pricing in the middle; Anthropic, OpenAI-compatible or mock
//! providers out.
//!
//! What the CLI (`ktsu start gateway`) needs:
//!
//! ```no_run
//! # async fn start() -> u8 {
//! use ktsu_gateway::{Application, Flags, Settings};
//! let flags = Flags { config: Some("gateway.yaml".into()), ..Flags::default() };
//! let settings = match Settings::from_flags(&flags, &ktsu_shared::service::settings::Env) {
//!     Ok(s) => s,
//!     Err(e) => { eprintln!("error: {e}"); return ktsu_gateway::exit::USAGE; }
//! };
//! let app = match Application::build(settings).await {
//!     Ok(app) => app,
//!     Err(e) => { eprintln!("error: {e}"); return e.exit_code(); }
//! };
//! let stop = app.stop_handle(); // call `stop.stop().await` on SIGTERM/SIGINT
//! match app.run().await {
//!     Ok(()) => 0,
//!     Err(e) => e.exit_code(),
//! }
//! # }
//! ```
//!
//! Layout: [`settings`] (flags and env), [`config`] (gateway file → resolved providers and
//! groups), [`startup`] (build/run/stop), `api/` (routes), `router` (strategies, retries,
//! fallback), `breaker`, `pool`, `budget`, `pricing`, [`providers`] (anthropic, openai, mock),
//! `logs` (call records).

pub mod api;
mod breaker;
mod budget;
pub mod config;
pub mod error;
mod logs;
mod pool;
pub mod pricing;
pub mod providers;
mod router;
pub mod settings;
pub mod startup;
mod state;
mod waitlist;

pub use error::{exit, InvokeError, StartError};
pub use settings::{Flags, GatewayFile, Settings};
pub use startup::{Application, StopHandle};
