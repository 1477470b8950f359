//! A template string: literal text with `{{ expr }}` placeholders, compiled once.

use std::fmt;
use std::ops::Range;

use serde_json::Value;

use super::context::Context;
use super::error::{EvalError, TemplateError};
use super::expr::Expr;
use super::format::write_text;
use super::scan::{scan, Piece};

/// A compiled template string.
#[derive(Clone)]
pub struct Template {
    source: String,
    parts: Vec<Part>,
    /// Index in `parts` of the single placeholder when the trimmed string is exactly one.
    whole: Option<usize>,
}

#[derive(Debug, Clone)]
enum Part {
    Text(Range<usize>),
    Expr(Expr),
}

impl Template {
    /// Compiles a template. Every placeholder must be closed and hold a valid expression.
    pub fn parse(src: &str) -> Result<Template, TemplateError> {
        let parts = scan(src)?
            .into_iter()
            .map(|piece| match piece {
                Piece::Text(range) => Ok(Part::Text(range)),
                Piece::Placeholder { open, inner } => {
                    Expr::from_placeholder(src, open, inner).map(Part::Expr)
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        let whole = whole_index(src, &parts);
        Ok(Template {
            source: src.to_string(),
            parts,
            whole,
        })
    }

    /// The template as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// `Some(text)` iff the template has no placeholder at all.
    pub fn literal(&self) -> Option<&str> {
        (!self.parts.iter().any(|p| matches!(p, Part::Expr(_)))).then_some(self.source.as_str())
    }

    /// `Some` iff the template, with surrounding whitespace trimmed, is exactly one
    /// placeholder, so that a typed field keeps the expression's JSON type (§3.5).
    pub fn whole(&self) -> Option<&Expr> {
        match self.parts.get(self.whole?) {
            Some(Part::Expr(e)) => Some(e),
            _ => None,
        }
    }

    /// Every placeholder's expression, in order.
    pub fn exprs(&self) -> impl Iterator<Item = &Expr> {
        self.parts.iter().filter_map(|p| match p {
            Part::Expr(e) => Some(e),
            Part::Text(_) => None,
        })
    }

    /// Evaluates for a typed field: a whole placeholder gives its value unchanged; anything
    /// else gives the rendered text as a string.
    pub fn eval(&self, ctx: &Context) -> Result<Value, EvalError> {
        match self.whole() {
            Some(e) => e.eval(ctx),
            None => self.render(ctx).map(Value::String),
        }
    }

    /// Renders for a string or text field: the literal parts in order, each placeholder
    /// replaced by its result formatted as text (§3.6). Surrounding whitespace is kept.
    pub fn render(&self, ctx: &Context) -> Result<String, EvalError> {
        if let Some(text) = self.literal() {
            return Ok(text.to_string());
        }
        let mut out = String::with_capacity(self.source.len());
        for part in &self.parts {
            match part {
                Part::Text(range) => out.push_str(&self.source[range.clone()]),
                Part::Expr(e) => write_text(&mut out, &*e.eval_cow(ctx)?),
            }
        }
        Ok(out)
    }
}

/// The index of the only placeholder, when everything around it is whitespace.
fn whole_index(src: &str, parts: &[Part]) -> Option<usize> {
    let mut found = None;
    for (i, part) in parts.iter().enumerate() {
        match part {
            Part::Text(range) if src[range.clone()].trim().is_empty() => {}
            Part::Text(_) => return None,
            Part::Expr(_) if found.is_some() => return None,
            Part::Expr(_) => found = Some(i),
        }
    }
    found
}

impl fmt::Debug for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Template").field(&self.source).finish()
    }
}
