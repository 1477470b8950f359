//! Reading each file kind from its YAML tree into the typed model, with every per-file check
//! (config.md §0, §2, §6.2): unknown keys, types, ranges, patterns, step types, templates.

pub mod agent;
pub mod common;
pub mod gateway;
pub mod server;
pub mod workflow;
