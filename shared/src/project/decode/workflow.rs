//! Reading `*.workflow.yaml` files (config.md §2.1–§2.2).

use super::common::{
    bare_expr, env_decls, opt_literal, req_literal, schema_field, schema_wrapper, template_field,
    templated, templated_map, SchemaRole,
};
use crate::project::model::{
    AgentStep, AuthScheme, ForEach, HttpMethod, InvokeAuth, ModelPolicy, OpKind, SortOrder, Step,
    StepKind, SubWorkflowStep, TransformInput, TransformOp, TransformStep, Visibility, WebhookMode,
    WebhookStep, Workflow,
};
use crate::project::read::{index_path, key_path, Obj, Reader, Spanned};
use crate::template::Template;
use crate::yaml::Node;

const WORKFLOW_FIELDS: &[&str] = &[
    "kind",
    "name",
    "version",
    "description",
    "visibility",
    "webhooks",
    "env",
    "params",
    "invoke",
    "pipeline",
    "output",
    "model_policy",
];

const STEP_FIELDS: &[&str] = &[
    "id",
    "depends_on",
    "condition",
    "timeout_s",
    "output",
    "agent",
    "params",
    "model",
    "confidence_threshold",
    "for_each",
    "transform",
    "webhook",
    "on",
    "workflow",
    "input",
    "webhooks",
];

const STEP_TYPES: [&str; 4] = ["agent", "transform", "webhook", "workflow"];

/// Fields allowed only on some step types (config.md §2.2 "Allowed on").
const TYPED_FIELDS: &[(&str, &[&str])] = &[
    ("params", &["agent", "workflow"]),
    ("model", &["agent"]),
    ("confidence_threshold", &["agent"]),
    ("for_each", &["agent"]),
    ("on", &["webhook"]),
    ("input", &["workflow"]),
    ("webhooks", &["workflow"]),
];

/// `^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$`
pub fn is_workflow_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && s.len() <= 128
        && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

/// `^[A-Za-z0-9_-]{1,64}$`
pub fn is_step_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// An absolute `http`/`https` URL with a host.
pub fn is_http_url(s: &str) -> bool {
    let rest = s
        .strip_prefix("http://")
        .or_else(|| s.strip_prefix("https://"));
    match rest {
        Some(rest) => {
            let host = rest.split(['/', '?', '#']).next().unwrap_or("");
            !host.is_empty() && !host.starts_with(':') && !s.chars().any(char::is_whitespace)
        }
        None => false,
    }
}

/// The ids of steps that could not be read well enough to type them: later checks must not
/// report references to them as unknown.
#[derive(Debug, Default, Clone)]
pub struct WorkflowExtras {
    pub invalid_step_ids: Vec<String>,
}

pub fn read_workflow(r: &mut Reader, root: &Node) -> Option<(Workflow, WorkflowExtras)> {
    let obj = r.object(root, "", "workflow", WORKFLOW_FIELDS)?;
    let mut extras = WorkflowExtras::default();
    match obj.get("kind") {
        None => r.missing(&obj, "", "kind", "workflow"),
        Some(node) => {
            r.one_of(node, "kind", &["workflow"]);
        }
    }
    let name = req_literal(r, &obj, "", "name", "workflow");
    let name = name
        .filter(|n| r.check_pattern(n, is_workflow_name, "`^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$`"));
    let version = opt_literal(r, &obj, "", "version");
    let description = r.opt_string(&obj, "", "description").map(|s| s.value);
    let visibility_node = obj.get("visibility");
    let visibility = match r.opt_one_of(&obj, "", "visibility", &["root", "sub-workflow"]) {
        Some(v) if v.value == "sub-workflow" => Visibility::SubWorkflow,
        _ => Visibility::Root,
    };
    let webhooks = read_webhook_mode(r, &obj, "");
    let env_node = obj.get("env");
    let env = env_node.map(|n| env_decls(r, n, "env")).unwrap_or_default();
    if visibility == Visibility::SubWorkflow {
        if let Some(e) = obj.entry("env") {
            r.error(
                "env_in_subworkflow",
                e.key_pos,
                "env",
                "a sub-workflow cannot declare `env:`; pass values to it through params",
            );
        }
    }
    let params_schema = schema_wrapper(r, &obj, "", "params", SchemaRole::Params);
    let invoke_auth = obj.entry("invoke").and_then(|e| {
        if visibility == Visibility::SubWorkflow {
            r.warn(
                "ignored_field",
                e.key_pos,
                "invoke",
                "`invoke.auth` has no effect on a sub-workflow (it cannot be invoked over HTTP)",
            );
        }
        read_invoke(r, &e.value)
    });
    let pipeline = match obj.get("pipeline") {
        None => {
            r.missing(&obj, "", "pipeline", "workflow");
            Vec::new()
        }
        Some(node) => read_pipeline(r, node, &mut extras),
    };
    let (output_map, output_schema) = match obj.get("output") {
        None => (None, None),
        Some(node) => match r.object(node, "output", "workflow `output`", &["map", "schema"]) {
            None => (None, None),
            Some(out) => (
                out.get("map").map(|m| templated_map(r, m, "output.map")),
                out.get("schema")
                    .and_then(|s| schema_field(r, s, "output.schema", SchemaRole::Output)),
            ),
        },
    };
    let model_policy = obj
        .get("model_policy")
        .and_then(|n| read_model_policy(r, n));
    if visibility == Visibility::SubWorkflow {
        if let Some(e) = obj.entry("model_policy") {
            r.warn(
                "ignored_field",
                e.key_pos,
                "model_policy",
                "`model_policy` of a sub-workflow has no effect: the root workflow's policy applies",
            );
        }
    }
    Some((
        Workflow {
            name: name?,
            version,
            description,
            visibility,
            visibility_pos: visibility_node.map(|n| n.pos),
            webhooks,
            env,
            env_pos: env_node.map(|n| n.pos),
            params_schema,
            invoke_auth,
            pipeline,
            output_map,
            output_schema,
            model_policy,
        },
        extras,
    ))
}

fn read_webhook_mode(r: &mut Reader, obj: &Obj<'_>, path: &str) -> WebhookMode {
    match r.opt_one_of(obj, path, "webhooks", &["execute", "suppress"]) {
        Some(v) if v.value == "execute" => WebhookMode::Execute,
        _ => WebhookMode::Suppress,
    }
}

fn read_auth_scheme(r: &mut Reader, obj: &Obj<'_>, path: &str) -> AuthScheme {
    match r.opt_one_of(obj, path, "scheme", &["bearer", "raw"]) {
        Some(v) if v.value == "raw" => AuthScheme::Raw,
        _ => AuthScheme::Bearer,
    }
}

/// A header name: an HTTP token (RFC 9110 `tchar`s).
pub fn is_header_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c))
}

/// Reads `auth.header` / `auth.scheme` common to `invoke.auth` and server `auth`.
pub fn read_auth_header(r: &mut Reader, obj: &Obj<'_>, path: &str) -> String {
    match opt_literal(r, obj, path, "header") {
        Some(h) => {
            if r.check_pattern(&h, is_header_name, "an HTTP header name") {
                h.value
            } else {
                "Authorization".into()
            }
        }
        None => "Authorization".into(),
    }
}

fn read_invoke(r: &mut Reader, node: &Node) -> Option<InvokeAuth> {
    let obj = r.object(node, "invoke", "`invoke`", &["auth"])?;
    let auth_node = obj.get("auth")?;
    let auth = r.object(
        auth_node,
        "invoke.auth",
        "`invoke.auth`",
        &["header", "scheme", "secret"],
    )?;
    let header = read_auth_header(r, &auth, "invoke.auth");
    let scheme = read_auth_scheme(r, &auth, "invoke.auth");
    let secret = match auth.get("secret") {
        None => {
            r.missing(&auth, "invoke.auth", "secret", "`invoke.auth`");
            None
        }
        Some(n) => template_field(r, n, "invoke.auth.secret"),
    };
    Some(InvokeAuth {
        pos: auth_node.pos,
        header,
        scheme,
        secret,
    })
}

fn read_model_policy(r: &mut Reader, node: &Node) -> Option<ModelPolicy> {
    let p = "model_policy";
    let obj = r.object(
        node,
        p,
        "`model_policy`",
        &["cost_budget_usd", "timeout_s", "force_group", "group_map"],
    )?;
    let cost_budget_usd = obj.get("cost_budget_usd").and_then(|n| {
        let v = r.number(n, "model_policy.cost_budget_usd", 0.0, f64::MAX)?;
        if v <= 0.0 {
            r.error(
                "invalid_value",
                n.pos,
                "model_policy.cost_budget_usd",
                "`model_policy.cost_budget_usd` must be greater than 0",
            );
            return None;
        }
        Some(v)
    });
    let timeout_s = r.opt_u64(&obj, p, "timeout_s", 1);
    let force_group = opt_literal(r, &obj, p, "force_group");
    let mut group_map = Vec::new();
    if let Some(gm) = obj.get("group_map") {
        match gm.as_map() {
            Some(entries) => {
                for e in entries {
                    let path = key_path("model_policy.group_map", &e.key);
                    if let Some(v) = super::common::literal(r, &e.value, &path) {
                        group_map.push((Spanned::new(e.key.clone(), e.key_pos, path), v));
                    }
                }
            }
            None => r.type_mismatch(gm, "model_policy.group_map", "a mapping"),
        }
    }
    Some(ModelPolicy {
        pos: node.pos,
        cost_budget_usd,
        timeout_s,
        force_group,
        group_map,
    })
}

fn read_pipeline(r: &mut Reader, node: &Node, extras: &mut WorkflowExtras) -> Vec<Step> {
    let Some(items) = r.seq(node, "pipeline") else {
        return Vec::new();
    };
    let mut steps: Vec<Step> = Vec::with_capacity(items.len());
    let mut seen: Vec<(String, u32)> = Vec::new();
    for (index, item) in items.iter().enumerate() {
        let path = index_path("pipeline", index);
        let label = match item.get("id").and_then(Node::as_scalar) {
            Some(id) => format!("step `{}`", id.text),
            None => format!("step {index}"),
        };
        let Some(obj) = r.object(item, &path, &label, STEP_FIELDS) else {
            continue;
        };
        let id = req_literal(r, &obj, &path, "id", "pipeline step")
            .filter(|id| r.check_pattern(id, is_step_id, "`^[A-Za-z0-9_-]{1,64}$`"));
        if let Some(id) = &id {
            if let Some((_, line)) = seen.iter().find(|(s, _)| *s == id.value) {
                r.error(
                    "duplicate_step_id",
                    id.pos,
                    &id.path,
                    format!(
                        "step id `{}` is already used by the step at line {line}",
                        id.value
                    ),
                );
            } else {
                seen.push((id.value.clone(), id.pos.line));
            }
        }
        match read_step(r, &obj, &path, &label, index, id.clone()) {
            Some(step) => steps.push(step),
            None => {
                if let Some(id) = id {
                    extras.invalid_step_ids.push(id.value);
                }
            }
        }
    }
    steps
}

fn read_step(
    r: &mut Reader,
    obj: &Obj<'_>,
    path: &str,
    what: &str,
    index: usize,
    id: Option<Spanned<String>>,
) -> Option<Step> {
    let types: Vec<&str> = STEP_TYPES.iter().copied().filter(|t| obj.has(t)).collect();
    if types.len() != 1 {
        let message = if types.is_empty() {
            format!("{what} has no type: give exactly one of `agent`, `transform`, `webhook` or `workflow`")
        } else {
            format!(
                "{what} has several types ({}): give exactly one",
                types
                    .iter()
                    .map(|t| format!("`{t}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        r.error("step_type", obj.node.pos, path, message);
        return None;
    }
    let step_type = types[0];
    for (field, allowed) in TYPED_FIELDS {
        if let Some(e) = obj.entry(field) {
            if !allowed.contains(&step_type) {
                r.error(
                    "field_not_allowed",
                    e.key_pos,
                    &key_path(path, field),
                    format!("`{field}` is not allowed on a {step_type} step ({what})"),
                );
            }
        }
    }
    let depends_on = obj
        .get("depends_on")
        .and_then(|n| r.string_list(n, &key_path(path, "depends_on")))
        .unwrap_or_default();
    let condition = obj
        .get("condition")
        .and_then(|n| bare_expr(r, n, &key_path(path, "condition")));
    let timeout_s = r.opt_u64(obj, path, "timeout_s", 1);
    let output_schema = schema_wrapper(r, obj, path, "output", SchemaRole::Output);
    let kind = match step_type {
        "agent" => StepKind::Agent(read_agent_step(r, obj, path, what)?),
        "transform" => StepKind::Transform(read_transform(r, obj, path, what)?),
        "webhook" => StepKind::Webhook(read_webhook_step(r, obj, path, what)?),
        _ => StepKind::Workflow(read_subworkflow_step(r, obj, path, what)?),
    };
    Some(Step {
        id: id?,
        pos: obj.node.pos,
        path: path.to_string(),
        index,
        depends_on,
        condition,
        timeout_s,
        output_schema,
        kind,
    })
}

fn read_agent_step(r: &mut Reader, obj: &Obj<'_>, path: &str, what: &str) -> Option<AgentStep> {
    let agent = req_literal(r, obj, path, "agent", what);
    let params = obj
        .get("params")
        .map(|n| templated_map(r, n, &key_path(path, "params")))
        .unwrap_or_default();
    let (model_group, max_tokens) = match obj.get("model") {
        None => (None, None),
        Some(n) => {
            let mp = key_path(path, "model");
            match r.object(n, &mp, "step `model`", &["group", "max_tokens"]) {
                None => (None, None),
                Some(m) => (
                    opt_literal(r, &m, &mp, "group"),
                    r.opt_u64(&m, &mp, "max_tokens", 1),
                ),
            }
        }
    };
    let confidence_threshold = r.opt_number(obj, path, "confidence_threshold", 0.0, 1.0);
    let for_each = obj
        .get("for_each")
        .and_then(|n| read_for_each(r, n, &key_path(path, "for_each")));
    Some(AgentStep {
        agent: agent?,
        params,
        model_group,
        max_tokens,
        confidence_threshold,
        for_each,
    })
}

fn read_for_each(r: &mut Reader, node: &Node, path: &str) -> Option<ForEach> {
    let obj = r.object(
        node,
        path,
        "`for_each`",
        &["from", "max_items", "concurrency", "max_failures"],
    )?;
    let from = match obj.get("from") {
        None => {
            r.missing(&obj, path, "from", "`for_each`");
            None
        }
        Some(n) => bare_expr(r, n, &key_path(path, "from")),
    };
    let max_items = r.opt_u64(&obj, path, "max_items", 0).unwrap_or(0);
    let concurrency = r.opt_u64(&obj, path, "concurrency", 0).unwrap_or(0);
    let max_failures = r
        .opt_int(&obj, path, "max_failures", -1, i64::MAX)
        .unwrap_or(0);
    Some(ForEach {
        from: from?,
        max_items,
        concurrency,
        max_failures,
    })
}

const OPS: &[&str] = &["merge", "filter", "map", "sort", "flatten", "deduplicate"];

fn read_transform(r: &mut Reader, obj: &Obj<'_>, path: &str, what: &str) -> Option<TransformStep> {
    let tp = key_path(path, "transform");
    let node = obj.get("transform")?;
    let t = r.object(
        node,
        &tp,
        &format!("`transform` of {what}"),
        &["inputs", "ops"],
    )?;
    let mut inputs = Vec::new();
    if let Some(n) = t.get("inputs") {
        let ip = key_path(&tp, "inputs");
        for (i, item) in r.seq(n, &ip).unwrap_or_default().iter().enumerate() {
            let p = index_path(&ip, i);
            let Some(io) = r.object(item, &p, "transform input", &["from"]) else {
                continue;
            };
            let Some(from) = r.req_string(&io, &p, "from", "transform input") else {
                continue;
            };
            if from.value.contains("{{") {
                if let Some(tmpl) =
                    super::common::compile_template(r, &from.value, from.pos, &from.path)
                {
                    inputs.push(TransformInput::Template(Spanned::new(
                        tmpl, from.pos, from.path,
                    )));
                }
            } else if super::common::check_literal_text(r, &from.value, from.pos, &from.path) {
                inputs.push(TransformInput::Step(from));
            }
        }
    }
    let ops = match t.get("ops") {
        None => {
            r.missing(&t, &tp, "ops", "`transform`");
            return None;
        }
        Some(n) => read_ops(r, n, &key_path(&tp, "ops")),
    };
    Some(TransformStep { inputs, ops })
}

fn read_ops(r: &mut Reader, node: &Node, path: &str) -> Vec<TransformOp> {
    let mut ops = Vec::new();
    for (i, item) in r.seq(node, path).unwrap_or_default().iter().enumerate() {
        let p = index_path(path, i);
        let Some(entries) = item.as_map() else {
            r.type_mismatch(item, &p, "a mapping with one op");
            continue;
        };
        if entries.len() != 1 {
            r.error(
                "invalid_value",
                item.pos,
                &p,
                format!(
                    "a transform op must be a mapping with exactly one key (one of {}), found {}",
                    OPS.join(", "),
                    entries.len()
                ),
            );
            continue;
        }
        let e = &entries[0];
        let op_path = key_path(&p, &e.key);
        let kind = match e.key.as_str() {
            "merge" => r.string_list(&e.value, &op_path).map(OpKind::Merge),
            "filter" => op_expr(r, &e.value, &op_path, "expr").map(OpKind::Filter),
            "map" => op_expr(r, &e.value, &op_path, "expr").map(OpKind::Map),
            "deduplicate" => op_expr(r, &e.value, &op_path, "field").map(OpKind::Deduplicate),
            "sort" => read_sort(r, &e.value, &op_path),
            "flatten" => {
                if !e.value.is_null() {
                    r.object(&e.value, &op_path, "`flatten`", &[]);
                }
                Some(OpKind::Flatten)
            }
            _ => {
                r.unknown_field(e, &p, "transform op", OPS);
                None
            }
        };
        if let Some(kind) = kind {
            ops.push(TransformOp {
                pos: item.pos,
                path: p,
                kind,
            });
        }
    }
    ops
}

fn op_expr(
    r: &mut Reader,
    node: &Node,
    path: &str,
    field: &str,
) -> Option<Spanned<crate::template::Expr>> {
    let obj = r.object(node, path, "transform op", &[field])?;
    match obj.get(field) {
        None => {
            r.missing(&obj, path, field, "transform op");
            None
        }
        Some(n) => bare_expr(r, n, &key_path(path, field)),
    }
}

fn read_sort(r: &mut Reader, node: &Node, path: &str) -> Option<OpKind> {
    let obj = r.object(node, path, "`sort`", &["field", "order"])?;
    let order = match r.opt_one_of(&obj, path, "order", &["asc", "desc"]) {
        Some(o) if o.value == "desc" => SortOrder::Desc,
        _ => SortOrder::Asc,
    };
    let field = match obj.get("field") {
        None => {
            r.missing(&obj, path, "field", "`sort`");
            None
        }
        Some(n) => bare_expr(r, n, &key_path(path, "field")),
    };
    Some(OpKind::Sort {
        field: field?,
        order,
    })
}

fn read_webhook_step(r: &mut Reader, obj: &Obj<'_>, path: &str, what: &str) -> Option<WebhookStep> {
    let on_approval = match r.opt_one_of(obj, path, "on", &["approval"]) {
        Some(_) => true,
        None => obj.has("on"),
    };
    let wp = key_path(path, "webhook");
    let node = obj.get("webhook")?;
    let w = r.object(
        node,
        &wp,
        &format!("`webhook` of {what}"),
        &[
            "url",
            "method",
            "headers",
            "body",
            "timeout_s",
            "max_attempts",
        ],
    )?;
    let url = match w.get("url") {
        None => {
            r.missing(&w, &wp, "url", "`webhook`");
            None
        }
        Some(n) => template_field(r, n, &key_path(&wp, "url")),
    };
    if let Some(u) = &url {
        check_literal_url(r, &u.value, u.pos, &u.path);
    }
    let method = match w.get("method") {
        None => HttpMethod::Post,
        Some(n) => read_method(r, n, &key_path(&wp, "method")).unwrap_or(HttpMethod::Post),
    };
    let headers = w
        .get("headers")
        .map(|n| templated_map(r, n, &key_path(&wp, "headers")))
        .unwrap_or_default();
    for h in &headers {
        if !is_header_name(&h.key.value) {
            r.error(
                "invalid_value",
                h.key.pos,
                &h.key.path,
                format!("`{}` is not a valid HTTP header name", h.key.value),
            );
        }
    }
    let body = w
        .get("body")
        .and_then(|n| templated(r, n, &key_path(&wp, "body")));
    if body.is_some() && !method.has_body() {
        if let Some(e) = w.entry("body") {
            r.warn(
                "ignored_field",
                e.key_pos,
                &key_path(&wp, "body"),
                format!(
                    "a {} webhook sends no body; `body` is ignored",
                    method.as_str()
                ),
            );
        }
    }
    let timeout_s = r.opt_u64(&w, &wp, "timeout_s", 1).unwrap_or(30);
    let max_attempts = r
        .opt_int(&w, &wp, "max_attempts", 1, 10)
        .and_then(|v| u32::try_from(v).ok())
        .unwrap_or(3);
    Some(WebhookStep {
        on_approval,
        url: url?,
        method,
        headers,
        body,
        timeout_s,
        max_attempts,
    })
}

/// A literal URL (no placeholder) is checked during validation (config.md §2.2.3).
fn check_literal_url(r: &mut Reader, t: &Template, pos: crate::diag::Pos, path: &str) {
    if let Some(text) = t.literal() {
        if !is_http_url(text) {
            r.error(
                "invalid_value",
                pos,
                path,
                format!("`{text}` is not an absolute http(s) URL"),
            );
        }
    }
}

fn read_method(r: &mut Reader, node: &Node, path: &str) -> Option<HttpMethod> {
    let s = super::common::literal(r, node, path)?;
    let method = match s.value.to_ascii_uppercase().as_str() {
        "GET" => HttpMethod::Get,
        "POST" => HttpMethod::Post,
        "PUT" => HttpMethod::Put,
        "PATCH" => HttpMethod::Patch,
        "DELETE" => HttpMethod::Delete,
        _ => {
            r.error(
                "invalid_value",
                s.pos,
                path,
                format!(
                    "`method` must be one of GET, POST, PUT, PATCH, DELETE, found `{}`",
                    s.value
                ),
            );
            return None;
        }
    };
    Some(method)
}

fn read_subworkflow_step(
    r: &mut Reader,
    obj: &Obj<'_>,
    path: &str,
    what: &str,
) -> Option<SubWorkflowStep> {
    let workflow = req_literal(r, obj, path, "workflow", what);
    let params = obj
        .get("params")
        .map(|n| templated_map(r, n, &key_path(path, "params")))
        .unwrap_or_default();
    let input = obj
        .get("input")
        .map(|n| templated_map(r, n, &key_path(path, "input")))
        .unwrap_or_default();
    for entry in &input {
        if let Some(p) = params.iter().find(|p| p.key.value == entry.key.value) {
            r.error(
                "duplicate_param",
                entry.key.pos,
                &entry.key.path,
                format!(
                    "`{}` is given both in `params` (line {}) and in `input`",
                    entry.key.value, p.key.pos.line
                ),
            );
        }
    }
    let webhooks = read_webhook_mode(r, obj, path);
    Some(SubWorkflowStep {
        workflow: workflow?,
        params,
        input,
        webhooks,
        webhooks_pos: obj.get("webhooks").map(|n| n.pos),
    })
}
