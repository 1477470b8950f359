//! Diagnostics: one finding of validation, with its stable check code and location.
//!
//! The shape is the one of config.md §6.3; `ktsu validate --json`, the orchestrator's
//! `POST /reload` (422 `project_invalid`) and startup `config.error` records all use it.

use serde::Serialize;
use std::fmt;

/// Error or warning (config.md §6.2 "Sev").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// A 1-based line and column in a source file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Pos {
    pub line: u32,
    pub column: u32,
}

impl Pos {
    pub const fn new(line: u32, column: u32) -> Self {
        Pos { line, column }
    }
}

/// One diagnostic (config.md §6.3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// Stable check code (`unknown_field`, `cycle`, …).
    pub code: &'static str,
    pub severity: Severity,
    pub message: String,
    /// Display path of the file: relative to its workspace root with `/`, else absolute.
    pub file: String,
    pub line: Option<u32>,
    pub column: Option<u32>,
    /// YAML path (`pipeline[3].dependson`), when the finding concerns one value.
    pub path: Option<String>,
    pub hint: Option<String>,
}

impl Diagnostic {
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// `<file>:<line>:<col>: <message>` (or `<file>: <message>` without a location), as
    /// printed by `ktsu validate` and logged in `config.error` records.
    pub fn location_prefix(&self) -> String {
        match (self.line, self.column) {
            (Some(l), Some(c)) => format!("{}:{}:{}", self.file, l, c),
            (Some(l), None) => format!("{}:{}", self.file, l),
            _ => self.file.clone(),
        }
    }

    /// Sort key of config.md §6.1 step 4: file, line, column, code.
    pub fn sort_key(&self) -> (&str, u32, u32, &'static str) {
        (
            self.file.as_str(),
            self.line.unwrap_or(0),
            self.column.unwrap_or(0),
            self.code,
        )
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} [{}]",
            self.location_prefix(),
            self.message,
            self.code
        )
    }
}
