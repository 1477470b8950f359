//! The secret chain (config.md §5.2): secret slots are fed by exactly one whole reference to a
//! secret source, non-secret slots never see a secret, `auth.secret` names a secret param.
//! Checked on the parsed expressions, never by substring.

use crate::diag::Pos;
use crate::project::read::Reader;
use crate::project::{EnvDecl, SchemaField, ToolServer};
use crate::template::{Expr, Next, TValue, Template};

/// A secret value a template can reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Env(String),
    Param(String),
}

impl Source {
    pub fn describe(&self, params_noun: &str) -> String {
        match self {
            Source::Env(n) => format!("secret env var `{n}`"),
            Source::Param(n) => format!("secret {params_noun} `{n}`"),
        }
    }
}

/// The secret sources of one layer: the workflow's secret env vars (root workflows only) and
/// the layer's params declared `secret: true`.
#[derive(Clone, Copy)]
pub struct Sources<'a> {
    pub env: &'a [EnvDecl],
    pub params: Option<&'a SchemaField>,
    /// How a param of this layer is called in messages (`param`, `agent param`).
    pub params_noun: &'a str,
}

impl Sources<'_> {
    fn env_is_secret(&self, name: &str) -> bool {
        self.env.iter().any(|d| d.secret && d.name.value == name)
    }

    fn param_is_secret(&self, name: &str) -> bool {
        self.params.is_some_and(|s| s.is_secret(name))
    }

    /// Every secret source the template references; a bare `params` or `env` counts as all of
    /// its members.
    pub fn referenced(&self, t: &Template) -> Vec<Source> {
        self.referenced_exprs(t.exprs())
    }

    /// Like [`Sources::referenced`] for bare expressions.
    pub fn referenced_exprs<'e>(&self, exprs: impl Iterator<Item = &'e Expr>) -> Vec<Source> {
        let mut out = Vec::new();
        for e in exprs {
            for rf in e.refs() {
                match (rf.name.as_str(), &rf.next) {
                    ("env", Next::Field(n)) if self.env_is_secret(n) => {
                        out.push(Source::Env(n.clone()))
                    }
                    ("env", Next::None | Next::Other) => out.extend(
                        self.env
                            .iter()
                            .filter(|d| d.secret)
                            .map(|d| Source::Env(d.name.value.clone())),
                    ),
                    ("params", Next::Field(n)) if self.param_is_secret(n) => {
                        out.push(Source::Param(n.clone()))
                    }
                    ("params", Next::None | Next::Other) => {
                        if let Some(schema) = self.params {
                            out.extend(
                                schema
                                    .property_names()
                                    .into_iter()
                                    .filter(|p| schema.is_secret(p))
                                    .map(|p| Source::Param(p.to_string())),
                            );
                        }
                    }
                    _ => {}
                }
            }
        }
        out.dedup();
        out
    }

    /// Rule 2: a non-secret slot (or `for_each.from`, transform inputs, `output.map`) must not
    /// reference a secret source. `slot` names the receiving side, e.g. "non-secret agent param
    /// `api_key`".
    pub fn check_no_leak(
        &self,
        r: &mut Reader,
        t: &Template,
        pos: Pos,
        path: &str,
        slot: &str,
    ) -> bool {
        self.report_leaks(r, self.referenced(t), pos, path, slot)
    }

    /// Rule 2 for a bare expression (`for_each.from`).
    pub fn check_no_leak_expr(
        &self,
        r: &mut Reader,
        e: &Expr,
        pos: Pos,
        path: &str,
        slot: &str,
    ) -> bool {
        self.report_leaks(
            r,
            self.referenced_exprs(std::iter::once(e)),
            pos,
            path,
            slot,
        )
    }

    fn report_leaks(
        &self,
        r: &mut Reader,
        leaks: Vec<Source>,
        pos: Pos,
        path: &str,
        slot: &str,
    ) -> bool {
        for s in &leaks {
            r.error(
                "secret_leak",
                pos,
                path,
                format!("{} flows into {slot}", s.describe(self.params_noun)),
            );
        }
        leaks.is_empty()
    }

    /// Rule 2 over every template of a value.
    pub fn check_value_no_leak(
        &self,
        r: &mut Reader,
        v: &crate::project::Templated,
        path: &str,
        slot: &str,
    ) {
        crate::project::decode::common::for_each_template(v, path, &mut |t, pos, p| {
            self.check_no_leak(r, t, pos, p, slot);
        });
    }

    /// Rule 1: a secret slot must be fed by one whole `{{ env.X }}` / `{{ params.Y }}` naming a
    /// secret source. `slot` names the receiving param, e.g. "agent param `api_key`".
    pub fn check_secret_slot(
        &self,
        r: &mut Reader,
        value: &TValue,
        pos: Pos,
        path: &str,
        slot: &str,
    ) {
        // A non-string value or text without placeholders is a literal.
        let Some(t) = (match value {
            TValue::Str(t) if t.literal().is_none() => Some(t),
            _ => None,
        }) else {
            r.error(
                "secret_source",
                pos,
                path,
                format!("{slot} is secret: it needs `{{{{ env.NAME }}}}` or `{{{{ params.NAME }}}}` naming a secret source, not a literal"),
            );
            return;
        };
        let Some(expr) = t.whole() else {
            r.error(
                "secret_source",
                pos,
                path,
                format!("{slot} is secret: it must be fed by one whole reference; mixed text is not allowed"),
            );
            return;
        };
        match expr.single_path() {
            Some(("env", name)) => {
                if !self.env_is_secret(name) {
                    let what = if self.env.iter().any(|d| d.name.value == name) {
                        format!("non-secret env var `{name}`; mark it `secret: true`")
                    } else {
                        format!("env var `{name}`, which is not declared as a secret")
                    };
                    r.error("secret_source", pos, path, format!("{slot} is secret but is fed by {what}"));
                }
            }
            Some(("params", name)) => {
                if !self.param_is_secret(name) {
                    r.error(
                        "secret_source",
                        pos,
                        path,
                        format!(
                            "{slot} is secret but is fed by non-secret {} `{name}`; mark it `secret: true`",
                            self.params_noun
                        ),
                    );
                }
            }
            _ => r.error(
                "secret_source",
                pos,
                path,
                format!(
                    "{slot} is secret: it must be fed by exactly one whole reference such as `{{{{ env.NAME }}}}` or `{{{{ params.NAME }}}}` (no sub-path, function or other expression)"
                ),
            ),
        }
    }
}

/// Rule 3 for a tool server: `auth.secret` is exactly `{{ params.X }}` with X a secret param of
/// this server. `prefix` is the YAML path of the server (empty for a server file).
pub fn check_server_auth(server: &ToolServer, prefix: &str, r: &mut Reader) {
    let Some(auth) = &server.auth else { return };
    let Some(secret) = &auth.secret else { return };
    let ok = auth
        .secret_param()
        .and_then(|name| server.param(name))
        .is_some_and(|p| p.secret);
    if !ok {
        let detail = match auth.secret_param().map(|n| (n, server.param(n))) {
            Some((name, Some(_))) => {
                format!("server param `{name}` is not declared `secret: true`")
            }
            Some((name, None)) => format!("`{name}` is not a param of this server"),
            None => "it must be exactly `{{ params.X }}`".to_string(),
        };
        let path = if prefix.is_empty() {
            "auth.secret".to_string()
        } else {
            format!("{prefix}.auth.secret")
        };
        r.error(
            "auth_secret_ref",
            secret.pos,
            &path,
            format!("auth.secret must be `{{{{ params.X }}}}` with X a secret param of this server: {detail}"),
        );
    }
}
