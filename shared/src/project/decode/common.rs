//! Readers shared by every file kind: templates and bare expressions (compiled here, once per
//! load), literal-only fields, env declarations and JSON Schema blocks.

use crate::diag::{Pos, Severity};
use crate::project::model::{EnvDecl, SchemaField, Templated, TemplatedEntry};
use crate::project::read::{index_path, key_path, Obj, Reader, Spanned};
use crate::schema::{is_reserved_field, CompiledSchema, RESERVED_PREFIX};
use crate::template::{Expr, TValue, Template};
use crate::yaml::{Node, NodeKind, ScalarValue};
use std::sync::Arc;

/// `^[A-Za-z_][A-Za-z0-9_]*$`: env var and param names.
pub fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Reports `legacy_syntax` for a value starting with `env:` or `param:` (config.md §6.2).
pub fn check_legacy(r: &mut Reader, text: &str, pos: Pos, path: &str) {
    let trimmed = text.trim_start();
    let (prefix, ns) = if let Some(rest) = trimmed.strip_prefix("env:") {
        (rest, "env")
    } else if let Some(rest) = trimmed.strip_prefix("param:") {
        (rest, "params")
    } else {
        return;
    };
    let name = prefix.trim();
    let legacy = if ns == "env" { "env:" } else { "param:" };
    r.push(
        "legacy_syntax",
        Severity::Error,
        Some(pos),
        path,
        format!("legacy `{legacy}{name}` is not supported; write \"{{{{ {ns}.{name} }}}}\""),
        Some(format!(
            "to keep the literal text, write \"{{{{ '{}' }}}}\"",
            trimmed.replace('\'', "\\'")
        )),
    );
}

/// `^(step|params|env|item)(\.[A-Za-z0-9_"-]+)+$` or `item_index`: a literal that was probably
/// meant as a `{{ … }}` reference.
fn looks_like_path(text: &str) -> bool {
    if text == "item_index" {
        return true;
    }
    let Some((head, rest)) = text.split_once('.') else {
        return false;
    };
    matches!(head, "step" | "params" | "env" | "item")
        && rest.split('.').all(|seg| {
            !seg.is_empty()
                && seg
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_\"-".contains(c))
        })
}

/// Warnings that apply to the literal text of a templated field.
fn check_literal_template(r: &mut Reader, text: &str, pos: Pos, path: &str) {
    if looks_like_path(text) {
        r.push(
            "literal_looks_like_path",
            Severity::Warning,
            Some(pos),
            path,
            format!("`{text}` is literal text, not a reference"),
            Some(format!("write \"{{{{ {text} }}}}\" to use the value")),
        );
    }
    if text.len() >= 2 && text.starts_with('`') && text.ends_with('`') {
        r.warn(
            "legacy_backtick",
            pos,
            path,
            format!(
                "{text} is literal text, backticks included (backticks no longer mark literals)"
            ),
        );
    }
}

/// Compiles one template string, reporting `template_syntax` and the literal-text checks.
pub fn compile_template(r: &mut Reader, text: &str, pos: Pos, path: &str) -> Option<Template> {
    check_legacy(r, text, pos, path);
    match Template::parse(text) {
        Ok(t) => {
            if t.literal().is_some() {
                check_literal_template(r, text, pos, path);
            }
            Some(t)
        }
        Err(e) => {
            r.error(
                "template_syntax",
                pos,
                path,
                format!("invalid template: {} (at offset {})", e.message, e.offset),
            );
            None
        }
    }
}

/// A templated field whose value is text: the node must be a scalar string (numbers and
/// booleans are taken as their source text).
pub fn template_field(r: &mut Reader, node: &Node, path: &str) -> Option<Spanned<Template>> {
    let s = r.string(node, path)?;
    let t = compile_template(r, &s.value, s.pos, path)?;
    Some(Spanned::new(t, s.pos, path))
}

pub fn opt_template(
    r: &mut Reader,
    obj: &Obj<'_>,
    path: &str,
    key: &str,
) -> Option<Spanned<Template>> {
    let node = obj.get(key)?;
    template_field(r, node, &key_path(path, key))
}

/// A bare-expression field (`condition`, `for_each.from`, transform `expr`/`field`).
pub fn bare_expr(r: &mut Reader, node: &Node, path: &str) -> Option<Spanned<Expr>> {
    let s = r.string(node, path)?;
    check_legacy(r, &s.value, s.pos, path);
    match Expr::parse_bare(&s.value) {
        Ok(e) => Some(Spanned::new(e, s.pos, path)),
        Err(e) => {
            r.error(
                "template_syntax",
                s.pos,
                path,
                format!("invalid expression: {} (at offset {})", e.message, e.offset),
            );
            None
        }
    }
}

/// A literal-only field (config.md §3.4 last row): `{{` is `template_not_allowed`.
pub fn literal(r: &mut Reader, node: &Node, path: &str) -> Option<Spanned<String>> {
    let s = r.string(node, path)?;
    if !check_literal_text(r, &s.value, s.pos, path) {
        return None;
    }
    Some(s)
}

/// Checks literal text for `{{` and legacy forms; false when an error was reported.
pub fn check_literal_text(r: &mut Reader, text: &str, pos: Pos, path: &str) -> bool {
    if text.contains("{{") {
        r.error(
            "template_not_allowed",
            pos,
            path,
            format!("`{path}` is a literal field; templates (`{{{{`) are not allowed here"),
        );
        return false;
    }
    let before = r.diags.len();
    check_legacy(r, text, pos, path);
    r.diags.len() == before
}

pub fn opt_literal(
    r: &mut Reader,
    obj: &Obj<'_>,
    path: &str,
    key: &str,
) -> Option<Spanned<String>> {
    let node = obj.get(key)?;
    literal(r, node, &key_path(path, key))
}

pub fn req_literal(
    r: &mut Reader,
    obj: &Obj<'_>,
    path: &str,
    key: &str,
    what: &str,
) -> Option<Spanned<String>> {
    let s = r.req_string(obj, path, key, what)?;
    if !check_literal_text(r, &s.value, s.pos, &s.path) {
        return None;
    }
    Some(s)
}

/// A value of any shape whose string leaves are templates (config.md §0 `template`).
pub fn templated(r: &mut Reader, node: &Node, path: &str) -> Option<Templated> {
    let mut ok = true;
    let value = templated_value(r, node, path, &mut ok);
    ok.then(|| Templated {
        node: node.clone(),
        value,
    })
}

fn templated_value(r: &mut Reader, node: &Node, path: &str, ok: &mut bool) -> TValue {
    match &node.kind {
        NodeKind::Scalar(s) => match s.value {
            ScalarValue::Null => TValue::Null,
            ScalarValue::Bool(b) => TValue::Bool(b),
            ScalarValue::Int(i) => TValue::Number(i.into()),
            ScalarValue::Float(f) => match serde_json::Number::from_f64(f) {
                Some(n) => TValue::Number(n),
                None => {
                    r.error(
                        "invalid_value",
                        node.pos,
                        path,
                        "`.inf` and `.nan` are not allowed in values",
                    );
                    *ok = false;
                    TValue::Null
                }
            },
            ScalarValue::Str => match compile_template(r, &s.text, node.pos, path) {
                Some(t) => TValue::Str(t),
                None => {
                    *ok = false;
                    TValue::Null
                }
            },
        },
        NodeKind::Seq(items) => TValue::Seq(
            items
                .iter()
                .enumerate()
                .map(|(i, item)| templated_value(r, item, &index_path(path, i), ok))
                .collect(),
        ),
        NodeKind::Map(entries) => TValue::Map(
            entries
                .iter()
                .map(|e| {
                    (
                        e.key.clone(),
                        templated_value(r, &e.value, &key_path(path, &e.key), ok),
                    )
                })
                .collect(),
        ),
    }
}

/// A `name → template` mapping (step `params`, `input`, webhook `headers`, `output.map`).
pub fn templated_map(r: &mut Reader, node: &Node, path: &str) -> Vec<TemplatedEntry> {
    let Some(entries) = node.as_map() else {
        if !node.is_null() {
            r.type_mismatch(node, path, "a mapping");
        }
        return Vec::new();
    };
    entries
        .iter()
        .filter_map(|e| {
            let p = key_path(path, &e.key);
            let value = templated(r, &e.value, &p)?;
            Some(TemplatedEntry {
                key: Spanned::new(e.key.clone(), e.key_pos, p),
                value,
            })
        })
        .collect()
}

/// Every template of a [`Templated`] value with its position and path, in document order.
pub fn for_each_template<'a>(
    t: &'a Templated,
    path: &str,
    f: &mut dyn FnMut(&'a Template, Pos, &str),
) {
    walk(&t.node, &t.value, path, f);
}

fn walk<'a>(
    node: &Node,
    value: &'a TValue,
    path: &str,
    f: &mut dyn FnMut(&'a Template, Pos, &str),
) {
    match (&node.kind, value) {
        (NodeKind::Scalar(_), TValue::Str(t)) => f(t, node.pos, path),
        (NodeKind::Seq(nodes), TValue::Seq(values)) => {
            for (i, (n, v)) in nodes.iter().zip(values).enumerate() {
                walk(n, v, &index_path(path, i), f);
            }
        }
        (NodeKind::Map(entries), TValue::Map(values)) => {
            for (e, (_, v)) in entries.iter().zip(values) {
                walk(&e.value, v, &key_path(path, &e.key), f);
            }
        }
        _ => {}
    }
}

/// The `env:` list of a workflow or gateway file (EnvDecl of config.md §2.1).
pub fn env_decls(r: &mut Reader, node: &Node, path: &str) -> Vec<EnvDecl> {
    let Some(items) = r.seq(node, path) else {
        return Vec::new();
    };
    let mut decls: Vec<EnvDecl> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let p = index_path(path, i);
        let Some(obj) = r.object(
            item,
            &p,
            "env declaration",
            &["name", "secret", "default", "description"],
        ) else {
            continue;
        };
        let Some(name) = req_literal(r, &obj, &p, "name", "env declaration") else {
            continue;
        };
        if !r.check_pattern(&name, is_identifier, "`^[A-Za-z_][A-Za-z0-9_]*$`") {
            continue;
        }
        if let Some(first) = decls.iter().find(|d| d.name.value == name.value) {
            r.duplicate_name("env var", &name, first.name.pos);
            continue;
        }
        let secret = r.opt_bool(&obj, &p, "secret").unwrap_or(false);
        let default = obj.get("default").and_then(|n| {
            let dp = key_path(&p, "default");
            let v = r.nullable_string(n, &dp)??;
            check_legacy(r, &v.value, v.pos, &dp);
            Some(v.value)
        });
        let description = r.opt_string(&obj, &p, "description").map(|s| s.value);
        decls.push(EnvDecl {
            name,
            secret,
            default,
            description,
        });
    }
    decls
}

/// Which rules apply to a JSON Schema block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaRole {
    /// `params.schema`: object at the top level, `secret` keyword, defaults checked.
    Params,
    /// `output.schema` of an agent: reserved `ktsu_*` property names checked.
    AgentOutput,
    /// Any other `output.schema`.
    Output,
}

/// Reads and compiles a JSON Schema block (config.md §4.1).
pub fn schema_field(
    r: &mut Reader,
    node: &Node,
    path: &str,
    role: SchemaRole,
) -> Option<SchemaField> {
    if node.as_map().is_none() {
        r.type_mismatch(node, path, "a JSON Schema mapping");
        return None;
    }
    let value = match node.to_json() {
        Ok(v) => v,
        Err(pos) => {
            r.error(
                "invalid_value",
                pos,
                path,
                "`.inf` and `.nan` are not allowed in a JSON Schema",
            );
            return None;
        }
    };
    let mut valid = true;
    if role == SchemaRole::Params {
        if let Some(t) = node.get("type") {
            if t.as_str() != Some("object") {
                r.error(
                    "schema_invalid",
                    t.pos,
                    &key_path(path, "type"),
                    "the params schema must describe an object (`type: object`)",
                );
                valid = false;
            }
        }
        check_params_schema_extras(r, node, path);
    }
    if role == SchemaRole::AgentOutput {
        if let Some(props) = node.get("properties").and_then(Node::as_map) {
            for e in props {
                if e.key.starts_with(RESERVED_PREFIX) && !is_reserved_field(&e.key) {
                    r.warn(
                        "reserved_prefix",
                        e.key_pos,
                        &key_path(&key_path(path, "properties"), &e.key),
                        format!(
                            "`{}` uses the reserved `ktsu_` prefix but is not a reserved field; it is stripped from the output before the Air-Lock",
                            e.key
                        ),
                    );
                }
            }
        }
    }
    // A params schema whose `type` is wrong was reported above; compiling it would only
    // repeat the same finding.
    let compiled = if !valid {
        None
    } else {
        match CompiledSchema::compile(&value) {
            Ok(c) => Some(Arc::new(c)),
            Err(e) => {
                let (pos, at) = match e.pointer.as_deref().and_then(|p| node_at_pointer(node, p)) {
                    Some((n, suffix)) => (n.pos, format!("{path}{suffix}")),
                    None => (node.pos, path.to_string()),
                };
                r.error(
                    "schema_invalid",
                    pos,
                    &at,
                    format!("invalid JSON Schema: {}", e.message),
                );
                valid = false;
                None
            }
        }
    };
    Some(SchemaField {
        value,
        pos: node.pos,
        path: path.to_string(),
        compiled: if valid { compiled } else { None },
    })
}

/// The node a JSON Pointer designates inside a YAML tree, with the YAML path suffix that leads
/// there (`.properties.a.type`).
fn node_at_pointer<'n>(root: &'n Node, pointer: &str) -> Option<(&'n Node, String)> {
    let mut node = root;
    let mut suffix = String::new();
    for token in pointer.split('/').skip(1) {
        let token = token.replace("~1", "/").replace("~0", "~");
        node = match &node.kind {
            NodeKind::Map(_) => {
                suffix = key_path(&suffix, &token);
                node.get(&token)?
            }
            NodeKind::Seq(items) => {
                let i: usize = token.parse().ok()?;
                suffix = index_path(&suffix, i);
                items.get(i)?
            }
            NodeKind::Scalar(_) => return None,
        };
    }
    let suffix = if suffix.is_empty() || suffix.starts_with('[') {
        suffix
    } else {
        format!(".{suffix}")
    };
    Some((node, suffix))
}

/// `secret` is recognised only at `properties.<name>.secret` (else `ignored_field`); a secret
/// property must not have a default (`secret_default`); string defaults must not use the legacy
/// `env:`/`param:` forms.
fn check_params_schema_extras(r: &mut Reader, node: &Node, path: &str) {
    if let Some(props) = node.get("properties").and_then(Node::as_map) {
        for e in props {
            let prop_path = key_path(&key_path(path, "properties"), &e.key);
            let Some(fields) = e.value.as_map() else {
                continue;
            };
            let mut secret = false;
            for f in fields {
                match f.key.as_str() {
                    "secret" => match f.value.as_scalar().map(|s| s.value) {
                        Some(ScalarValue::Bool(b)) => secret = b,
                        _ => r.type_mismatch(
                            &f.value,
                            &key_path(&prop_path, "secret"),
                            "`true` or `false`",
                        ),
                    },
                    "default" => {
                        if let Some(text) = f.value.as_str() {
                            check_legacy(r, text, f.value.pos, &key_path(&prop_path, "default"));
                        }
                    }
                    _ => {}
                }
            }
            if secret {
                if let Some(d) = fields.iter().find(|f| f.key == "default") {
                    r.error(
                        "secret_default",
                        d.key_pos,
                        &key_path(&prop_path, "default"),
                        format!("secret param `{}` must not have a default", e.key),
                    );
                }
            }
            walk_schema_for_secret(r, &e.value, &prop_path, false);
        }
    }
    for f in node.as_map().unwrap_or_default() {
        if f.key != "properties" {
            walk_keyword(r, &f.key, &f.value, &key_path(path, &f.key));
        }
    }
    if let Some(f) = node
        .as_map()
        .and_then(|m| m.iter().find(|f| f.key == "secret"))
    {
        r.warn(
            "ignored_field",
            f.key_pos,
            &key_path(path, "secret"),
            "`secret` only has an effect at `properties.<name>.secret`",
        );
    }
}

/// Keywords whose value is a schema, a list of schemas, or a map of schemas.
const SCHEMA_KEYWORDS: &[&str] = &[
    "items",
    "additionalItems",
    "additionalProperties",
    "contains",
    "propertyNames",
    "not",
    "if",
    "then",
    "else",
    "unevaluatedItems",
    "unevaluatedProperties",
];
const SCHEMA_LIST_KEYWORDS: &[&str] = &["allOf", "anyOf", "oneOf", "prefixItems", "items"];
const SCHEMA_MAP_KEYWORDS: &[&str] = &[
    "properties",
    "patternProperties",
    "$defs",
    "definitions",
    "dependentSchemas",
];

/// Warns about `secret` keywords below the top-level properties (`ignored_field`).
fn walk_schema_for_secret(r: &mut Reader, schema: &Node, path: &str, report_here: bool) {
    let Some(fields) = schema.as_map() else {
        return;
    };
    for f in fields {
        if f.key == "secret" && report_here {
            r.warn(
                "ignored_field",
                f.key_pos,
                &key_path(path, "secret"),
                "`secret` only has an effect at the top level (`properties.<name>.secret`)",
            );
        }
        walk_keyword(r, &f.key, &f.value, &key_path(path, &f.key));
    }
}

fn walk_keyword(r: &mut Reader, key: &str, value: &Node, path: &str) {
    if SCHEMA_MAP_KEYWORDS.contains(&key) {
        for e in value.as_map().unwrap_or_default() {
            walk_schema_for_secret(r, &e.value, &key_path(path, &e.key), true);
        }
    } else if SCHEMA_LIST_KEYWORDS.contains(&key) && value.as_seq().is_some() {
        for (i, s) in value.as_seq().unwrap_or_default().iter().enumerate() {
            walk_schema_for_secret(r, s, &index_path(path, i), true);
        }
    } else if SCHEMA_KEYWORDS.contains(&key) {
        walk_schema_for_secret(r, value, path, true);
    }
}

/// Reads an optional schema under `obj[key]` (`params.schema`, `output.schema`): the wrapper
/// object (`params`/`output`) has `schema` as its only key.
pub fn schema_wrapper(
    r: &mut Reader,
    obj: &Obj<'_>,
    path: &str,
    key: &str,
    role: SchemaRole,
) -> Option<SchemaField> {
    let node = obj.get(key)?;
    let p = key_path(path, key);
    let wrapper = r.object(node, &p, &format!("`{key}`"), &["schema"])?;
    wrapper
        .get("schema")
        .and_then(|s| schema_field(r, s, &key_path(&p, "schema"), role))
}
