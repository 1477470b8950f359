//! Params across layers (config.md §4.2): step `params`/`input` against the target's schema,
//! `servers[].params` against the server's declarations, the secret chain at each link, and the
//! checks of agent files (prompts, servers, model group).

use super::scope::{Allowed, Scope};
use super::secrets::Sources;
use super::Sinks;
use crate::diag::Pos;
use crate::project::read::{Reader, Spanned};
use crate::project::{Agent, AgentStep, FileId, Project, SchemaField, Step, TemplatedEntry};
use crate::template::TValue;

/// The JSON value of a templated value that holds no placeholder at all (a literal).
fn literal_json(v: &TValue) -> Option<serde_json::Value> {
    use serde_json::Value;
    Some(match v {
        TValue::Null => Value::Null,
        TValue::Bool(b) => Value::Bool(*b),
        TValue::Number(n) => Value::Number(n.clone()),
        TValue::Str(t) => Value::String(t.literal()?.to_string()),
        TValue::Seq(items) => Value::Array(items.iter().map(literal_json).collect::<Option<_>>()?),
        TValue::Map(entries) => Value::Object(
            entries
                .iter()
                .map(|(k, v)| Some((k.clone(), literal_json(v)?)))
                .collect::<Option<_>>()?,
        ),
    })
}

/// Checks the `params` (and `input`) entries a step passes to a target layer.
pub(crate) fn check_param_entries(
    r: &mut Reader,
    entries: &[&TemplatedEntry],
    schema: Option<&SchemaField>,
    sources: &Sources<'_>,
    step: &Step,
    target: &str,
    slot_noun: &str,
) {
    let open = schema.is_some_and(SchemaField::allows_additional);
    let mut literals = serde_json::Map::new();
    let mut literal_pos: Vec<(String, Pos, String)> = Vec::new();
    for entry in entries {
        let key = &entry.key.value;
        let declared = schema.is_some_and(|s| s.has_property(key));
        if !declared && !open {
            let hint = schema.and_then(|s| {
                let names = s.property_names();
                crate::project::read::suggest(key, &names).map(|n| format!("did you mean `{n}`?"))
            });
            r.push(
                "unknown_param",
                crate::diag::Severity::Error,
                Some(entry.key.pos),
                &entry.key.path,
                format!("`{key}` is not a param of {target}"),
                hint,
            );
            continue;
        }
        if schema.is_some_and(|s| s.is_secret(key)) {
            sources.check_secret_slot(
                r,
                &entry.value.value,
                entry.value.node.pos,
                &entry.key.path,
                &format!("{slot_noun} `{key}`"),
            );
        } else {
            sources.check_value_no_leak(
                r,
                &entry.value,
                &entry.key.path,
                &format!("non-secret {slot_noun} `{key}`"),
            );
        }
        if declared {
            if let Some(v) = literal_json(&entry.value.value) {
                literals.insert(key.clone(), v);
                literal_pos.push((key.clone(), entry.value.node.pos, entry.key.path.clone()));
            }
        }
    }
    let Some(schema) = schema else { return };
    // Required params without a default that the step does not supply.
    for req in schema.required() {
        if !schema.has_default(req) && !entries.iter().any(|e| e.key.value == req) {
            r.error(
                "missing_param",
                step.id.pos,
                &step.path,
                format!(
                    "step `{}` does not supply the required param `{req}` of {target}",
                    step.id.value
                ),
            );
        }
    }
    // Literal values checked against their property schemas.
    if literals.is_empty() {
        return;
    }
    let Some(compiled) = &schema.compiled else {
        return;
    };
    let instance = serde_json::Value::Object(literals);
    for v in compiled.violations(&instance) {
        if v.keyword == "required" || v.keyword == "additionalProperties" {
            continue;
        }
        let Some((key, pos, path)) = literal_pos.iter().find(|(k, _, _)| {
            let prefix = format!("/{}", k.replace('~', "~0").replace('/', "~1"));
            v.pointer == prefix || v.pointer.starts_with(&format!("{prefix}/"))
        }) else {
            continue;
        };
        r.error(
            "param_schema",
            *pos,
            path,
            format!(
                "value of `{key}` does not match the param schema of {target}: {}",
                v.message
            ),
        );
    }
}

/// An agent step's params against the agent's params schema.
pub(crate) fn check_agent_step(
    r: &mut Reader,
    step: &Step,
    a: &AgentStep,
    agent: &Agent,
    sources: &Sources<'_>,
) {
    let entries: Vec<&TemplatedEntry> = a.params.iter().collect();
    check_param_entries(
        r,
        &entries,
        agent.params_schema.as_ref(),
        sources,
        step,
        &format!("agent `{}`", agent.name.value),
        "agent param",
    );
}

/// `unknown_model_group`: a group name missing from the known gateway file. A name that some
/// workflow's `model_policy.group_map` renames is accepted: the map decides the real group.
pub(crate) fn check_group(r: &mut Reader, project: &Project, group: &Spanned<String>) {
    let Some((_, gateway)) = &project.gateway else {
        return;
    };
    if gateway.group(&group.value).is_some() {
        return;
    }
    let mapped = project.workflows.values().any(|w| {
        w.workflow.model_policy.as_ref().is_some_and(|mp| {
            mp.group_map
                .iter()
                .any(|(from, _)| from.value == group.value)
        })
    });
    if mapped {
        return;
    }
    let names: Vec<&str> = gateway
        .model_groups
        .iter()
        .map(|g| g.name.value.as_str())
        .collect();
    let hint =
        crate::project::read::suggest(&group.value, &names).map(|n| format!("did you mean `{n}`?"));
    r.push(
        "unknown_model_group",
        crate::diag::Severity::Error,
        Some(group.pos),
        &group.path,
        format!(
            "model group `{}` is not defined in the gateway config (groups: {})",
            group.value,
            if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            }
        ),
        hint,
    );
}

/// Checks of one agent file: prompt namespaces and secrets, server params, model group.
pub(crate) fn check_agent(project: &Project, id: FileId, sinks: &mut Sinks<'_>) {
    let Some(la) = project.agent(id) else { return };
    let agent = &la.agent;
    let schema = agent.params_schema.as_ref();
    let scope = Scope {
        allowed: Allowed::AGENT,
        root_workflow: false,
        params: schema,
        env: &[],
        steps: &[],
        hooks: &[],
        invalid_steps: &[],
        self_id: None,
        agent_file: true,
    };
    let sources = Sources {
        env: &[],
        params: schema,
        params_noun: "agent param",
    };
    {
        let r = sinks.file(id);
        check_group(r, project, &agent.model);
        for prompt in [&agent.user, &agent.reflect].into_iter().flatten() {
            scope.check_template(r, &prompt.value, prompt.pos, &prompt.path);
            for s in sources.referenced(&prompt.value) {
                let name = match s {
                    super::secrets::Source::Param(n) | super::secrets::Source::Env(n) => n,
                };
                r.error(
                    "secret_in_prompt",
                    prompt.pos,
                    &prompt.path,
                    format!(
                        "`{}` uses secret param `{name}`; secrets must never reach a prompt",
                        prompt.path
                    ),
                );
            }
        }
        for (sref, target) in agent.servers.iter().zip(&la.server_targets) {
            for (_, value) in &sref.params {
                scope.check_template(r, &value.value, value.pos, &value.path);
            }
            let Some(target) = target else { continue };
            let Some(server) = project.server(*target) else {
                continue;
            };
            let server_name = &server.name.value;
            for (key, value) in &sref.params {
                match server.param(&key.value) {
                    None => {
                        let names: Vec<&str> = server
                            .params
                            .iter()
                            .map(|p| p.name.value.as_str())
                            .collect();
                        let hint = crate::project::read::suggest(&key.value, &names)
                            .map(|n| format!("did you mean `{n}`?"));
                        r.push(
                            "unknown_param",
                            crate::diag::Severity::Error,
                            Some(key.pos),
                            &key.path,
                            format!("`{}` is not a param of server `{server_name}`", key.value),
                            hint,
                        );
                    }
                    Some(p) if p.secret => sources.check_secret_slot(
                        r,
                        &TValue::Str(value.value.clone()),
                        value.pos,
                        &value.path,
                        &format!("server param `{}`", key.value),
                    ),
                    Some(_) => {
                        sources.check_no_leak(
                            r,
                            &value.value,
                            value.pos,
                            &value.path,
                            &format!("non-secret server param `{}`", key.value),
                        );
                    }
                }
            }
            for p in &server.params {
                if p.default.is_none() && !sref.params.iter().any(|(k, _)| k.value == p.name.value)
                {
                    r.error(
                        "missing_param",
                        sref.path.pos,
                        &sref.path.path,
                        format!(
                            "server `{server_name}` needs a value for its param `{}` in `params`",
                            p.name.value
                        ),
                    );
                }
            }
        }
    }
}
