//! The `{{ expr }}` template and JMESPath expression engine (config spec §3).
//!
//! Everything is compiled once, when a project is loaded: [`Template::parse`] scans the
//! placeholders, [`Expr::parse`] applies the hyphen pre-pass, parses the JMESPath expression,
//! rejects unknown functions and wrong argument counts, and records the context paths the
//! expression reads ([`RootRef`]) for the validator. Evaluation then only walks the compiled
//! form against a [`Context`], which converts its data for JMESPath at most once.
//!
//! - [`Template`]: a string with placeholders; a *whole* placeholder keeps its JSON type (§3.5).
//! - [`Expr`]: one expression, also used on its own for bare-expression fields (§3.1).
//! - [`TValue`]: a YAML/JSON value whose string leaves are templates.
//! - [`format_text`] and [`is_truthy`]: the text form (§3.6) and truthiness (§3.7) of a value.

mod analyze;
mod check;
mod context;
mod convert;
mod error;
mod expr;
mod format;
mod functions;
mod lex;
mod messages;
mod path;
mod prepass;
mod scan;
mod string_template;
mod tvalue;

pub use analyze::{Next, RootRef};
pub use context::Context;
pub use error::{EvalError, TemplateError};
pub use expr::Expr;
pub use format::{format_text, is_truthy};
pub use functions::FUNCTIONS;
pub use string_template::Template;
pub use tvalue::{NullPolicy, TValue};

#[cfg(test)]
mod tests;
