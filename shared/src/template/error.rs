//! The two error kinds: a template that cannot be compiled, and one that fails at run time.

use thiserror::Error;

/// A template or expression that does not compile (`template_syntax`).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{message} (at offset {offset})")]
pub struct TemplateError {
    pub message: String,
    /// Byte offset in the string given to `parse`, pointing at (or near) the problem.
    pub offset: usize,
}

impl TemplateError {
    pub(super) fn new(message: impl Into<String>, offset: usize) -> Self {
        TemplateError {
            message: message.into(),
            offset,
        }
    }
}

/// A run-time evaluation failure (`template_error`, or `condition_error` for conditions).
///
/// The message names the expression and the problem, never a data value, so it is safe to
/// log after the usual secret scrubbing.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{message}")]
pub struct EvalError {
    pub message: String,
}

impl EvalError {
    pub(super) fn new(message: impl Into<String>) -> Self {
        EvalError {
            message: message.into(),
        }
    }
}
