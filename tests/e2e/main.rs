//! End-to-end tests: gateway, orchestrator and runtime as three separate processes of the real
//! `ktsu` binary, driven over HTTP.

mod cluster;
mod fixtures;
mod scenarios;
