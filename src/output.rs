//! Output conventions shared by every command (cli-and-ops.md §1.1): results on stdout,
//! errors on stderr as `error: <message>`, pretty JSON with a trailing newline, colour only on
//! a terminal with `NO_COLOR` unset and `TERM` not `dumb`.

use std::io::{IsTerminal, Write};

/// Whether stdout may be coloured.
pub fn stdout_colour() -> bool {
    std::io::stdout().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
        && std::env::var("TERM").map_or(true, |t| t != "dumb")
}

/// ANSI styles; all no-ops when colour is off.
#[derive(Debug, Clone, Copy)]
pub struct Style {
    pub enabled: bool,
}

impl Style {
    fn paint(&self, code: &str, text: &str) -> String {
        if self.enabled {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }

    pub fn red(&self, text: &str) -> String {
        self.paint("31", text)
    }

    pub fn green(&self, text: &str) -> String {
        self.paint("32", text)
    }

    pub fn yellow(&self, text: &str) -> String {
        self.paint("33", text)
    }

    pub fn bold(&self, text: &str) -> String {
        self.paint("1", text)
    }

    pub fn dim(&self, text: &str) -> String {
        self.paint("2", text)
    }

    /// A run, step, item or approval status in its colour: `complete`/`approved` green,
    /// `failed`/`rejected` red, `needs_human_review`/`pending_approval`/`pending` (approvals)
    /// yellow, `cancelled`/`skipped` dim.
    pub fn status(&self, status: &str) -> String {
        match status {
            "complete" | "approved" => self.green(status),
            "failed" | "rejected" | "timeout" => self.red(status),
            "needs_human_review" | "pending_approval" => self.yellow(status),
            "cancelled" | "skipped" => self.dim(status),
            other => other.to_string(),
        }
    }
}

/// Whether a progress line may be drawn: stderr is a terminal and output is neither JSON nor
/// quiet (cli-and-ops.md §1.1).
pub fn progress_allowed(json: bool, quiet: bool) -> bool {
    !json
        && !quiet
        && std::io::stderr().is_terminal()
        && std::env::var("TERM").map_or(true, |t| t != "dumb")
}

/// Prints one JSON document: pretty, 2-space indent, trailing newline.
pub fn print_json(value: &serde_json::Value) {
    let text = serde_json::to_string_pretty(value).unwrap_or_else(|_| "null".into());
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}");
}

/// `error: <message>` on stderr.
pub fn error(message: impl std::fmt::Display) {
    eprintln!("error: {message}");
}
