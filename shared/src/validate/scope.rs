//! Namespace checks of templates and expressions (config.md §3.3, §3.4): which root
//! identifiers a field may use, `step.<id>` references, declared params and env vars.

use crate::diag::{Pos, Severity};
use crate::project::read::Reader;
use crate::project::{EnvDecl, SchemaField};
use crate::template::{Expr, Next, RootRef, Template};

/// Namespaces a field may use.
#[derive(Debug, Clone, Copy, Default)]
pub struct Allowed {
    pub params: bool,
    pub env: bool,
    pub step: bool,
    pub item: bool,
    pub approval: bool,
}

impl Allowed {
    /// `params`, `env` and `step`: conditions, webhooks, sub-workflow input, output.map, …
    pub const WORKFLOW: Allowed = Allowed {
        params: true,
        env: true,
        step: true,
        item: false,
        approval: false,
    };

    /// Agent file fields: the agent's own params only.
    pub const AGENT: Allowed = Allowed {
        params: true,
        env: false,
        step: false,
        item: false,
        approval: false,
    };

    fn names(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.params {
            v.push("params");
        }
        if self.env {
            v.push("env");
        }
        if self.step {
            v.push("step");
        }
        if self.item {
            v.push("item");
            v.push("item_index");
        }
        if self.approval {
            v.push("approval");
        }
        v
    }
}

/// What an expression may see in one file layer.
pub struct Scope<'a> {
    pub allowed: Allowed,
    /// The workflow is `visibility: root` (else `env` is `env_in_subworkflow`).
    pub root_workflow: bool,
    /// The layer's params schema (`None`: the default `{"type":"object"}`).
    pub params: Option<&'a SchemaField>,
    /// Declared env vars of the workflow.
    pub env: &'a [EnvDecl],
    /// Step ids of the workflow (approval hooks excluded).
    pub steps: &'a [&'a str],
    /// Approval hook ids (never referencable).
    pub hooks: &'a [&'a str],
    /// Ids of steps too broken to type: references to them are not reported.
    pub invalid_steps: &'a [String],
    /// The step owning the field, if any (self references).
    pub self_id: Option<&'a str>,
    /// Whether the agent file layer is being checked (changes the wording of messages).
    pub agent_file: bool,
}

impl Scope<'_> {
    /// Checks every reference of `expr`; returns the referenced step ids (dependencies).
    pub fn check_expr(&self, r: &mut Reader, expr: &Expr, pos: Pos, path: &str) -> Vec<String> {
        let mut deps = Vec::new();
        for rf in expr.refs() {
            if rf.name == "step"
                && !matches!(rf.next, Next::Field(_))
                && expr.source().contains("!step")
            {
                // `!` binds tighter than `.` in JMESPath: `!step.a.b` is `(!step).a.b`.
                r.push(
                    "dynamic_step_ref",
                    Severity::Error,
                    Some(pos),
                    path,
                    "`!step…` negates `step` itself (`!` binds tighter than `.`)",
                    Some("write `!(step.<id>.<field>)`".into()),
                );
                continue;
            }
            if let Some(dep) = self.check_ref(r, rf, pos, path) {
                if !deps.contains(&dep) {
                    deps.push(dep);
                }
            }
        }
        deps
    }

    pub fn check_template(
        &self,
        r: &mut Reader,
        t: &Template,
        pos: Pos,
        path: &str,
    ) -> Vec<String> {
        let mut deps = Vec::new();
        for e in t.exprs() {
            for d in self.check_expr(r, e, pos, path) {
                if !deps.contains(&d) {
                    deps.push(d);
                }
            }
        }
        deps
    }

    fn not_allowed(&self, r: &mut Reader, name: &str, pos: Pos, path: &str, hint: Option<String>) {
        let allowed = self.allowed.names();
        let message = if self.agent_file {
            format!("`{name}` is not available here: agent files can use `params` only")
        } else if allowed.is_empty() {
            format!("`{name}` is not available here: this field takes no references")
        } else {
            format!(
                "`{name}` is not available here; this field can use {}",
                allowed
                    .iter()
                    .map(|a| format!("`{a}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        r.push(
            "namespace_not_allowed",
            Severity::Error,
            Some(pos),
            path,
            message,
            hint,
        );
    }

    fn check_ref(&self, r: &mut Reader, rf: &RootRef, pos: Pos, path: &str) -> Option<String> {
        match rf.name.as_str() {
            "@" => {
                self.not_allowed(
                    r,
                    "@",
                    pos,
                    path,
                    Some("start paths with a namespace such as `params.` or `step.`".into()),
                );
                None
            }
            "params" if self.allowed.params => {
                if let Next::Field(name) = &rf.next {
                    let declared = self.params.is_some_and(|s| s.has_property(name));
                    let open = self.params.is_some_and(SchemaField::allows_additional);
                    if !declared && !open {
                        r.error(
                            "unknown_param",
                            pos,
                            path,
                            format!("`params.{name}` is not declared in the params schema"),
                        );
                    }
                }
                None
            }
            "env" if self.allowed.env => {
                if !self.root_workflow {
                    r.error(
                        "env_in_subworkflow",
                        pos,
                        path,
                        "a sub-workflow cannot use `env`; pass values to it through params",
                    );
                    return None;
                }
                if let Next::Field(name) = &rf.next {
                    if !self.env.iter().any(|d| d.name.value == *name) {
                        r.error(
                            "undeclared_env",
                            pos,
                            path,
                            format!(
                                "env var `{name}` is not declared in the workflow's `env:` list"
                            ),
                        );
                    }
                }
                None
            }
            "step" if self.allowed.step => match &rf.next {
                Next::Field(id) => self.check_step_id(r, id, pos, path),
                _ => {
                    r.error(
                        "dynamic_step_ref",
                        pos,
                        path,
                        "`step` must be followed by a step id (`step.<id>`)",
                    );
                    None
                }
            },
            "item" | "item_index" if self.allowed.item => None,
            "approval" if self.allowed.approval => None,
            name => {
                let hint = if self.allowed.step && self.steps.contains(&name) {
                    Some(format!(
                        "did you mean `step.{name}{}`?",
                        next_suffix(&rf.next)
                    ))
                } else if name == "item" || name == "item_index" {
                    Some("`item` and `item_index` are only available in the params of a `for_each` step".into())
                } else {
                    None
                };
                self.not_allowed(r, name, pos, path, hint);
                None
            }
        }
    }

    /// Checks a referenced step id; returns it when it is a valid dependency.
    pub fn check_step_id(&self, r: &mut Reader, id: &str, pos: Pos, path: &str) -> Option<String> {
        if self.self_id == Some(id) {
            r.error(
                "self_reference",
                pos,
                path,
                format!("step `{id}` refers to itself"),
            );
            return None;
        }
        if self.hooks.contains(&id) {
            r.error(
                "unknown_step",
                pos,
                path,
                format!("`{id}` is an approval hook (`on: approval`); no step can reference it"),
            );
            return None;
        }
        if !self.steps.contains(&id) {
            if !self.invalid_steps.iter().any(|s| s == id) {
                let hint = crate::project::read::suggest(id, self.steps)
                    .map(|s| format!("did you mean `{s}`?"));
                r.push(
                    "unknown_step",
                    Severity::Error,
                    Some(pos),
                    path,
                    format!("unknown step `{id}`"),
                    hint,
                );
            }
            return None;
        }
        Some(id.to_string())
    }
}

fn next_suffix(next: &Next) -> String {
    match next {
        Next::Field(f) => format!(".{f}"),
        _ => String::new(),
    }
}
