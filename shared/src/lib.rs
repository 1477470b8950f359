//! `ktsu-shared`: what two or more ktsu services need, and nothing else.
//!
//! - [`yaml`]: a strict, position-aware YAML loader (every diagnostic has file:line:column).
//! - [`project`]: the typed project model, discovery and reference resolution.
//! - [`template`]: the `{{ expr }}` template and JMESPath expression engine.
//! - [`schema`]: JSON Schema compilation, defaults and validation.
//! - [`validate`]: every check of the configuration spec, with stable check codes.
//! - [`wire`]: payloads exchanged between the services.
//! - [`logging`], [`http`], [`ids`], [`time`], [`api_error`], [`secret`]: common service pieces.

pub mod api_error;
pub mod diag;
pub mod http;
pub mod ids;
pub mod logging;
pub mod project;
pub mod schema;
pub mod secret;
pub mod service;
pub mod template;
pub mod time;
pub mod validate;
pub mod wire;
pub mod yaml;

/// The version of every ktsu crate and binary.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
