//! Reading `*.agent.yaml` files (config.md §2.4).

use super::common::{
    opt_literal, opt_template, req_literal, schema_wrapper, template_field, SchemaRole,
};
use crate::diag::Severity;
use crate::project::model::{
    Agent, AllowEntry, ApprovalPolicy, OnReject, ServerRef, TimeoutBehavior,
};
use crate::project::read::{index_path, key_path, Reader, Spanned};
use crate::yaml::Node;

const AGENT_FIELDS: &[&str] = &[
    "kind",
    "name",
    "description",
    "model",
    "max_turns",
    "params",
    "prompt",
    "servers",
    "output",
];

/// Whether `pattern` is a valid allowlist entry: an exact name without `*`, `prefix*` with a
/// non-empty prefix, or `*` alone; no `?`, `[`, `]` or whitespace (config.md §2.4).
pub fn is_allow_pattern(pattern: &str) -> bool {
    if pattern.is_empty()
        || pattern
            .chars()
            .any(|c| c == '?' || c == '[' || c == ']' || c.is_whitespace())
    {
        return false;
    }
    if pattern == "*" {
        return true;
    }
    match pattern.find('*') {
        None => true,
        Some(i) => i == pattern.len() - 1 && i > 0,
    }
}

pub fn read_agent(r: &mut Reader, root: &Node) -> Option<Agent> {
    let obj = r.object(root, "", "agent", AGENT_FIELDS)?;
    if let Some(node) = obj.get("kind") {
        r.one_of(node, "kind", &["agent"]);
    }
    let name = req_literal(r, &obj, "", "name", "agent");
    let description = r.opt_string(&obj, "", "description").map(|s| s.value);
    let model = req_literal(r, &obj, "", "model", "agent");
    let max_turns_pos = obj.get("max_turns").map(|n| n.pos);
    let max_turns = r
        .opt_int(&obj, "", "max_turns", 1, 100)
        .and_then(|v| u32::try_from(v).ok())
        .unwrap_or(10);
    let params_schema = schema_wrapper(r, &obj, "", "params", SchemaRole::Params);

    let (system, user, reflect) = match obj.get("prompt") {
        None => {
            r.missing(&obj, "", "prompt", "agent");
            (None, None, None)
        }
        Some(node) => match r.object(
            node,
            "prompt",
            "agent `prompt`",
            &["system", "user", "reflect"],
        ) {
            None => (None, None, None),
            Some(p) => {
                let system = match p.get("system") {
                    None => {
                        r.missing(&p, "prompt", "system", "agent `prompt`");
                        None
                    }
                    Some(n) => r.string(n, "prompt.system"),
                };
                let system = system.and_then(|s| {
                    if s.value.contains("{{") {
                        r.error(
                            "dynamic_system_prompt",
                            s.pos,
                            "prompt.system",
                            "`prompt.system` must be static: it cannot contain `{{` (put dynamic text in `prompt.user`)",
                        );
                        None
                    } else if s.value.trim().is_empty() {
                        r.error("blank_prompt", s.pos, "prompt.system", "`prompt.system` must not be empty or blank");
                        None
                    } else {
                        Some(s)
                    }
                });
                let user = opt_template(r, &p, "prompt", "user");
                let reflect = opt_template(r, &p, "prompt", "reflect");
                if let Some(rf) = &reflect {
                    if rf.value.source().trim().is_empty() {
                        r.error(
                            "blank_prompt",
                            rf.pos,
                            "prompt.reflect",
                            "`prompt.reflect` must not be blank",
                        );
                    } else if max_turns == 1 {
                        r.warn(
                            "reflect_single_turn",
                            rf.pos,
                            "prompt.reflect",
                            "prompt.reflect with max_turns: 1 reflects on single-turn output",
                        );
                    }
                }
                (system, user, reflect)
            }
        },
    };

    let servers = obj
        .get("servers")
        .map(|n| read_server_refs(r, n))
        .unwrap_or_default();
    let output_schema = match obj.get("output") {
        None => {
            r.push(
                "missing_field",
                Severity::Error,
                Some(root.pos),
                "output",
                "agent has no output schema (`output.schema` is required)",
                None,
            );
            None
        }
        Some(node) => {
            let empty = node
                .get("schema")
                .is_none_or(|s| s.as_map().is_some_and(<[_]>::is_empty) || s.is_null());
            if empty && node.as_map().is_some() {
                r.push(
                    "missing_field",
                    Severity::Error,
                    Some(node.pos),
                    "output.schema",
                    "agent has no output schema (`output.schema` must be a non-empty mapping)",
                    None,
                );
                None
            } else {
                schema_wrapper(r, &obj, "", "output", SchemaRole::AgentOutput)
            }
        }
    };
    Some(Agent {
        name: name?,
        description,
        model: model?,
        max_turns,
        max_turns_pos,
        params_schema,
        system: system?,
        user,
        reflect,
        servers,
        output_schema,
    })
}

fn read_server_refs(r: &mut Reader, node: &Node) -> Vec<ServerRef> {
    let mut refs: Vec<ServerRef> = Vec::new();
    for (i, item) in r
        .seq(node, "servers")
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let p = index_path("servers", i);
        let Some(obj) = r.object(
            item,
            &p,
            "server reference",
            &["name", "path", "params", "access"],
        ) else {
            continue;
        };
        let name = opt_literal(r, &obj, &p, "name");
        if let Some(n) = &name {
            if let Some(first) = refs
                .iter()
                .filter_map(|s| s.name.as_ref())
                .find(|f| f.value == n.value)
            {
                r.duplicate_name("server name", n, first.pos);
            }
        }
        let Some(path) = req_literal(r, &obj, &p, "path", "server reference") else {
            continue;
        };
        let mut params = Vec::new();
        if let Some(pn) = obj.get("params") {
            let pp = key_path(&p, "params");
            match pn.as_map() {
                Some(entries) => {
                    for e in entries {
                        let ep = key_path(&pp, &e.key);
                        if let Some(t) = template_field(r, &e.value, &ep) {
                            params.push((Spanned::new(e.key.clone(), e.key_pos, ep), t));
                        }
                    }
                }
                None => r.type_mismatch(pn, &pp, "a mapping"),
            }
        }
        let allowlist = obj
            .get("access")
            .and_then(|n| read_access(r, n, &key_path(&p, "access")));
        refs.push(ServerRef {
            pos: item.pos,
            path_prefix: p,
            name,
            path,
            params,
            allowlist,
        });
    }
    refs
}

fn read_access(r: &mut Reader, node: &Node, path: &str) -> Option<Vec<AllowEntry>> {
    let obj = r.object(node, path, "`access`", &["allowlist"])?;
    let Some(list) = obj.get("allowlist") else {
        r.missing(&obj, path, "allowlist", "`access`");
        return Some(Vec::new());
    };
    let lp = key_path(path, "allowlist");
    let items = r.seq(list, &lp)?;
    if items.is_empty() {
        r.warn(
            "empty_allowlist",
            list.pos,
            &lp,
            "`allowlist: []` allows no tools; the server is never contacted",
        );
    }
    let mut entries = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let ip = index_path(&lp, i);
        let (pattern, approval) = if item.as_map().is_some() {
            let Some(o) = r.object(item, &ip, "allowlist entry", &["name", "require_approval"])
            else {
                continue;
            };
            let Some(name) = req_literal(r, &o, &ip, "name", "allowlist entry") else {
                continue;
            };
            let approval = o
                .get("require_approval")
                .and_then(|n| read_approval(r, n, &key_path(&ip, "require_approval")));
            (name, approval)
        } else {
            let Some(s) = super::common::literal(r, item, &ip) else {
                continue;
            };
            (s, None)
        };
        if !is_allow_pattern(&pattern.value) {
            r.error(
                "allowlist_syntax",
                pattern.pos,
                &pattern.path,
                format!(
                    "`{}` is not a valid allowlist pattern (use an exact tool name, `prefix*` or `*`)",
                    pattern.value
                ),
            );
            continue;
        }
        entries.push(AllowEntry { pattern, approval });
    }
    Some(entries)
}

fn read_approval(r: &mut Reader, node: &Node, path: &str) -> Option<ApprovalPolicy> {
    // `require_approval: {}` (or null) means "approval with the defaults".
    if node.is_null() {
        return Some(ApprovalPolicy {
            on_reject: OnReject::Fail,
            timeout: None,
            timeout_behavior: TimeoutBehavior::Fail,
        });
    }
    let obj = r.object(
        node,
        path,
        "`require_approval`",
        &["on_reject", "timeout", "timeout_behavior"],
    )?;
    let on_reject = match r.opt_one_of(&obj, path, "on_reject", &["fail", "recover"]) {
        Some(v) if v.value == "recover" => OnReject::Recover,
        _ => OnReject::Fail,
    };
    let timeout = obj
        .get("timeout")
        .and_then(|n| r.duration(n, &key_path(path, "timeout")))
        .map(|d| d.value);
    let timeout_behavior = match r.opt_one_of(&obj, path, "timeout_behavior", &["fail", "reject"]) {
        Some(v) if v.value == "reject" => TimeoutBehavior::Reject,
        _ => TimeoutBehavior::Fail,
    };
    if obj.has("timeout_behavior") && !obj.has("timeout") {
        if let Some(e) = obj.entry("timeout_behavior") {
            r.warn(
                "ignored_field",
                e.key_pos,
                &key_path(path, "timeout_behavior"),
                "`timeout_behavior` has no effect without `timeout`",
            );
        }
    }
    Some(ApprovalPolicy {
        on_reject,
        timeout,
        timeout_behavior,
    })
}

#[cfg(test)]
mod tests {
    use super::is_allow_pattern;

    #[test]
    fn allowlist_patterns() {
        for ok in ["wiki_search", "wiki_read_*", "*", "a-b.c"] {
            assert!(is_allow_pattern(ok), "{ok}");
        }
        for bad in ["", "*_x", "a*b", "a**", "wiki?", "[a]", "a b", "**"] {
            assert!(!is_allow_pattern(bad), "{bad}");
        }
    }
}
