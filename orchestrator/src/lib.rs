//! The ktsu orchestrator: the kernel. It holds the workflow DAG, validates every step output
//! against its declared JSON Schema (the Air-Lock), acts on reserved `ktsu_*` output fields,
//! supervises steps through runtime heartbeats, enforces budgets and timeouts, keeps approvals,
//! and persists all run state in a store (orchestrator.md).

pub mod actors;
pub mod api;
mod app;
pub mod engine;
mod logs;
pub mod model;
pub mod settings;
pub mod snapshot;
pub mod steps;
pub mod store;

pub use app::{Application, StartError, StopHandle};
pub use settings::{Flags, Settings};
