//! One compiled expression: pre-pass, parse, checks and analysis at compile time; a cheap
//! walk at evaluation time.

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;

use jmespath::ast::Ast;
use jmespath::{JmespathError, Rcvar};
use serde_json::Value;

use super::analyze::{root_refs, single_path, RootRef};
use super::check::{check, check_size};
use super::context::Context;
use super::convert::{to_value, to_variable};
use super::error::{EvalError, TemplateError};
use super::format::is_truthy;
use super::lex::find_unquoted;
use super::messages::{parse_message, runtime_message};
use super::path::{steps_of, walk, Step};
use super::prepass::rewrite;
use super::scan::{scan, Piece};

/// One compiled JMESPath expression (after the hyphen pre-pass).
#[derive(Clone)]
pub struct Expr {
    /// As written, trimmed.
    source: String,
    /// After the pre-pass: the text jmespath.rs parsed, which its offsets refer to.
    text: String,
    ast: Ast,
    plan: Plan,
    refs: Vec<RootRef>,
}

/// How an expression is evaluated, chosen once at compile time.
#[derive(Debug, Clone)]
enum Plan {
    /// A literal: its value, converted once.
    Literal(Value),
    /// A plain path, read directly from the JSON data.
    Path(Vec<Step>),
    /// Anything else goes through the JMESPath interpreter.
    Query,
}

impl Plan {
    fn of(ast: &Ast) -> Plan {
        if let Ast::Literal { value, .. } = ast {
            if let Ok(v) = to_value(value) {
                return Plan::Literal(v);
            }
        }
        steps_of(ast).map_or(Plan::Query, Plan::Path)
    }
}

impl Expr {
    /// Compiles expression text (surrounding whitespace is ignored; empty is an error).
    pub fn parse(expr: &str) -> Result<Expr, TemplateError> {
        Expr::parse_at(expr, 0)
    }

    /// Compiles a bare-expression field (§3.1): the whole value is one expression, and a
    /// value that is exactly one `{{ … }}` placeholder stands for its expression.
    pub fn parse_bare(value: &str) -> Result<Expr, TemplateError> {
        let lead = value.len() - value.trim_start().len();
        if !value.trim_start().starts_with("{{") {
            if let Some(at) = find_unquoted(value, "{{") {
                return Err(TemplateError::new(
                    "`{{` inside a bare expression; write either `expr` or exactly `{{ expr }}`",
                    at,
                ));
            }
            return Expr::parse(value);
        }
        let mut placeholder = None;
        for piece in scan(value)? {
            match piece {
                Piece::Text(r) if value[r.clone()].trim().is_empty() => {}
                Piece::Text(r) => {
                    let at = r.start + (r.len() - value[r].trim_start().len());
                    return Err(TemplateError::new(
                        "text outside `{{ … }}`; a bare expression is either `expr` or exactly `{{ expr }}`",
                        at,
                    ));
                }
                Piece::Placeholder { open, .. } if placeholder.is_some() => {
                    return Err(TemplateError::new(
                        "a bare expression holds one expression, not several `{{ … }}`",
                        open,
                    ));
                }
                Piece::Placeholder { open, inner } => placeholder = Some((open, inner)),
            }
        }
        match placeholder {
            Some((open, inner)) => Expr::from_placeholder(value, open, inner),
            None => Err(TemplateError::new("empty expression", lead)),
        }
    }

    /// Compiles the placeholder of `src` opened at `open`, whose expression is `src[inner]`.
    pub(super) fn from_placeholder(
        src: &str,
        open: usize,
        inner: Range<usize>,
    ) -> Result<Expr, TemplateError> {
        let text = &src[inner.clone()];
        if text.trim().is_empty() {
            return Err(TemplateError::new("empty `{{ }}` placeholder", open));
        }
        Expr::parse_at(text, inner.start)
    }

    /// Compiles `raw`, which starts at offset `base` of the string the caller was given, so
    /// that error and reference offsets point into that string.
    fn parse_at(raw: &str, base: usize) -> Result<Expr, TemplateError> {
        let source = raw.trim();
        let base = base + (raw.len() - raw.trim_start().len());
        if source.is_empty() {
            return Err(TemplateError::new("empty expression", base));
        }
        check_size(source).map_err(|(m, at)| TemplateError::new(m, base + at))?;
        let rewritten = rewrite(source);
        let at = |offset: usize| base + rewritten.original_offset(offset.min(rewritten.text.len()));
        let ast = jmespath::parse(&rewritten.text)
            .map_err(|e| TemplateError::new(parse_message(&e.reason), at(e.offset)))?;
        check(&ast, &rewritten.text).map_err(|(m, o)| TemplateError::new(m, at(o)))?;
        let refs = root_refs(&ast)
            .into_iter()
            .map(|r| RootRef {
                offset: at(r.offset),
                ..r
            })
            .collect();
        Ok(Expr {
            source: source.to_string(),
            plan: Plan::of(&ast),
            text: rewritten.text,
            ast,
            refs,
        })
    }

    /// The expression as written (trimmed, before the pre-pass).
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The context paths the expression reads, in source order (computed at compile time).
    pub fn refs(&self) -> &[RootRef] {
        &self.refs
    }

    /// `Some((a, b))` iff the expression is exactly `a.b`: one field of one root, with no
    /// sub-path, function or operator (the form a secret must be passed in).
    pub fn single_path(&self) -> Option<(&str, &str)> {
        single_path(&self.ast, &self.text)
    }

    /// Evaluates against a context. A missing path yields null.
    pub fn eval(&self, ctx: &Context) -> Result<Value, EvalError> {
        self.eval_cow(ctx).map(Cow::into_owned)
    }

    /// Evaluates against arbitrary data (transform ops evaluate against each element).
    pub fn eval_on(&self, data: &Value) -> Result<Value, EvalError> {
        match &self.plan {
            Plan::Literal(v) => Ok(v.clone()),
            Plan::Path(steps) => Ok(walk(data, steps).clone()),
            Plan::Query => self.query(&to_variable(data)),
        }
    }

    /// The truthiness (§3.7) of the result against a context, for conditions.
    pub fn is_true(&self, ctx: &Context) -> Result<bool, EvalError> {
        self.eval_cow(ctx).map(|v| is_truthy(&v))
    }

    /// The truthiness (§3.7) of the result against arbitrary data, for transform filters.
    pub fn is_true_on(&self, data: &Value) -> Result<bool, EvalError> {
        match &self.plan {
            Plan::Path(steps) => Ok(is_truthy(walk(data, steps))),
            _ => self.eval_on(data).map(|v| is_truthy(&v)),
        }
    }

    /// Evaluates without copying when the result is a literal or a part of the context.
    pub(super) fn eval_cow<'a>(&'a self, ctx: &'a Context) -> Result<Cow<'a, Value>, EvalError> {
        match &self.plan {
            Plan::Literal(v) => Ok(Cow::Borrowed(v)),
            Plan::Path(steps) => Ok(ctx.lookup(steps)),
            Plan::Query => self.query(ctx.variable()).map(Cow::Owned),
        }
    }

    fn query(&self, data: &Rcvar) -> Result<Value, EvalError> {
        let mut jctx = jmespath::Context::new(&self.text, &jmespath::DEFAULT_RUNTIME);
        let result =
            jmespath::interpret(data, &self.ast, &mut jctx).map_err(|e| self.runtime_error(&e))?;
        to_value(&result).map_err(|_| {
            self.eval_error("the result is an `&expression`, which has no value".to_string())
        })
    }

    fn eval_error(&self, detail: String) -> EvalError {
        EvalError::new(format!("cannot evaluate `{}`: {detail}", self.source))
    }

    fn runtime_error(&self, e: &JmespathError) -> EvalError {
        self.eval_error(runtime_message(&self.ast, e))
    }
}

impl fmt::Debug for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Expr").field(&self.source).finish()
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}
