//! End-to-end tests: gateway, orchestrator and runtime as three separate processes of the real
//! `ktsu` binary, driven over HTTP.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod cluster;
mod fixtures;
mod ops;
mod scenarios;
mod triage;
