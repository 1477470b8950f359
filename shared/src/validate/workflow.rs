//! Checks of one workflow: references and namespaces of every template, dependencies and
//! cycles, approval hooks, secrets, and the cross-file checks of its agent and sub-workflow
//! steps; plus `workflow:` cycles across files.

use super::params;
use super::scope::{Allowed, Scope};
use super::secrets::Sources;
use super::Sinks;
use crate::diag::{Pos, Severity};
use crate::project::decode::common::for_each_template;
use crate::project::deps::{step_dependencies, visit_sites};
use crate::project::read::Reader;
use crate::project::resolve::split_version;
use crate::project::{
    FileId, OpKind, Project, Step, StepKind, TemplatedEntry, TransformInput, WebhookMode, Workflow,
};
use std::collections::{HashMap, HashSet};

/// Whether any template of the workflow references `env`, or it declares `env:`.
pub(crate) fn uses_env(wf: &Workflow) -> bool {
    if !wf.env.is_empty() {
        return true;
    }
    let mut found = false;
    visit_sites(wf, &mut |v| {
        if !v.element
            && v.site
                .exprs()
                .iter()
                .any(|e| e.refs().iter().any(|r| r.name == "env"))
        {
            found = true;
        }
    });
    found
}

pub(crate) fn check_workflow(project: &Project, id: FileId, sinks: &mut Sinks<'_>) {
    let Some(lw) = project.workflow(id) else {
        return;
    };
    let wf = &lw.workflow;
    let step_ids: Vec<&str> = wf
        .pipeline
        .iter()
        .filter(|s| !s.is_approval_hook())
        .map(|s| s.id.value.as_str())
        .collect();
    let hook_ids: Vec<&str> = wf
        .pipeline
        .iter()
        .filter(|s| s.is_approval_hook())
        .map(|s| s.id.value.as_str())
        .collect();
    let root = wf.is_root();
    let sources = Sources {
        env: if root { &wf.env } else { &[] },
        params: wf.params_schema.as_ref(),
        params_noun: "param",
    };
    let scope = |allowed: Allowed| Scope {
        allowed,
        root_workflow: root,
        params: wf.params_schema.as_ref(),
        env: &wf.env,
        steps: &step_ids,
        hooks: &hook_ids,
        invalid_steps: &lw.invalid_step_ids,
        self_id: None,
        agent_file: false,
    };
    let r = sinks.file(id);

    for (position, step) in wf.pipeline.iter().enumerate() {
        let hook = step.is_approval_hook();
        let allowed = Allowed {
            approval: hook,
            ..Allowed::WORKFLOW
        };
        let sc = Scope {
            self_id: Some(step.id.value.as_str()),
            ..scope(allowed)
        };
        if hook {
            check_hook(r, wf, step);
        } else {
            for d in &step.depends_on {
                sc.check_step_id(r, &d.value, d.pos, &d.path);
            }
        }
        if let Some(c) = &step.condition {
            sc.check_expr(r, &c.value, c.pos, &c.path);
        }
        let check_map = |r: &mut Reader, sc: &Scope<'_>, entries: &[TemplatedEntry]| {
            for e in entries {
                for_each_template(&e.value, &e.key.path, &mut |t, pos, path| {
                    sc.check_template(r, t, pos, path);
                });
            }
        };
        let target = lw.step_targets.get(position).copied().flatten();
        match &step.kind {
            StepKind::Agent(a) => {
                let item_scope = Scope {
                    allowed: Allowed {
                        item: a.for_each.is_some(),
                        ..allowed
                    },
                    ..sc
                };
                check_map(r, &item_scope, &a.params);
                if let Some(fe) = &a.for_each {
                    let (e, pos, path) = (&fe.from.value, fe.from.pos, &fe.from.path);
                    sc.check_expr(r, e, pos, path);
                    sources.check_no_leak_expr(r, e, pos, path, "`for_each.from`");
                }
                if let Some(agent) = target.and_then(|t| project.agent(t)) {
                    params::check_agent_step(r, step, a, &agent.agent, &sources);
                }
                if let Some(g) = &a.model_group {
                    params::check_group(r, project, g);
                }
            }
            StepKind::Workflow(w) => {
                check_map(r, &sc, &w.params);
                check_map(r, &sc, &w.input);
                if let Some(child) = target.and_then(|t| project.workflow(t)) {
                    check_subworkflow_step(r, step, w, &child.workflow, &sources);
                }
            }
            StepKind::Transform(t) => {
                for input in &t.inputs {
                    match input {
                        TransformInput::Step(s) => {
                            sc.check_step_id(r, &s.value, s.pos, &s.path);
                        }
                        TransformInput::Template(tm) => {
                            sc.check_template(r, &tm.value, tm.pos, &tm.path);
                            let slot = "`transform.inputs`";
                            sources.check_no_leak(r, &tm.value, tm.pos, &tm.path, slot);
                        }
                    }
                }
                for op in &t.ops {
                    if let OpKind::Merge(ids) = &op.kind {
                        for s in ids {
                            sc.check_step_id(r, &s.value, s.pos, &s.path);
                        }
                    }
                }
            }
            StepKind::Webhook(w) => {
                sc.check_template(r, &w.url.value, w.url.pos, &w.url.path);
                check_map(r, &sc, &w.headers);
                if let Some(body) = &w.body {
                    let path = format!("{}.webhook.body", step.path);
                    for_each_template(body, &path, &mut |t, pos, p| {
                        sc.check_template(r, t, pos, p);
                    });
                }
            }
        }
    }

    // output.map is evaluated after every step: no dependency, no self, no secrets.
    let out_scope = scope(Allowed::WORKFLOW);
    for entry in wf.output_map.iter().flatten() {
        for_each_template(&entry.value, &entry.key.path, &mut |t, pos, path| {
            out_scope.check_template(r, t, pos, path);
            sources.check_no_leak(r, t, pos, path, "`output.map`");
        });
    }

    check_invoke_auth(r, wf);
    check_cycles(r, wf);
    if let (Some(mp), true) = (&wf.model_policy, root) {
        for group in mp
            .force_group
            .iter()
            .chain(mp.group_map.iter().map(|(_, to)| to))
        {
            params::check_group(r, project, group);
        }
    }
}

/// An approval hook: `depends_on` non-empty and naming agent steps only; no `condition` or
/// `timeout_s` (config.md §2.2.5).
fn check_hook(r: &mut Reader, wf: &Workflow, step: &Step) {
    let bad = |r: &mut Reader, pos: Pos, path: &str, message: String| {
        r.error("invalid_approval_hook", pos, path, message);
    };
    if step.depends_on.is_empty() {
        bad(
            r,
            step.id.pos,
            &step.path,
            format!(
                "approval hook `{}` must list the agent steps it watches in `depends_on`",
                step.id.value
            ),
        );
    }
    for d in &step.depends_on {
        match wf.step(&d.value) {
            Some(target)
                if matches!(target.kind, StepKind::Agent(_)) && !target.is_approval_hook() => {}
            Some(_) => bad(
                r,
                d.pos,
                &d.path,
                format!(
                    "approval hook `{}` can only watch agent steps; `{}` is not one",
                    step.id.value, d.value
                ),
            ),
            None => r.error(
                "unknown_step",
                d.pos,
                &d.path,
                format!("unknown step `{}`", d.value),
            ),
        }
    }
    if let Some(c) = &step.condition {
        bad(
            r,
            c.pos,
            &c.path,
            format!(
                "approval hook `{}` cannot have a `condition`",
                step.id.value
            ),
        );
    }
    if step.timeout_s.is_some() {
        bad(
            r,
            step.id.pos,
            &format!("{}.timeout_s", step.path),
            format!(
                "approval hook `{}` cannot have a `timeout_s`",
                step.id.value
            ),
        );
    }
}

/// `invoke.auth.secret` must be exactly `{{ env.X }}` with X a secret env var.
fn check_invoke_auth(r: &mut Reader, wf: &Workflow) {
    let Some(auth) = &wf.invoke_auth else { return };
    let Some(secret) = &auth.secret else { return };
    let detail = match auth.secret_env() {
        Some(name) => match wf.env_decl(name) {
            Some(d) if d.secret => return,
            Some(_) => format!("env var `{name}` is not declared `secret: true`"),
            None => format!("env var `{name}` is not declared in `env:`"),
        },
        None => "it must be exactly `{{ env.X }}`".to_string(),
    };
    r.error(
        "auth_secret_ref",
        secret.pos,
        &secret.path,
        format!("invoke.auth.secret must reference a secret env var: {detail}"),
    );
}

/// Reports each dependency cycle once, at the first of its steps in pipeline order.
fn check_cycles(r: &mut Reader, wf: &Workflow) {
    let deps = step_dependencies(wf);
    let order: Vec<&str> = deps.iter().map(|(id, _)| *id).collect();
    let edges = |n: &str| -> Vec<&str> {
        deps.iter()
            .find(|(id, _)| *id == n)
            .map(|(_, d)| d.clone())
            .unwrap_or_default()
    };
    let mut reported: HashSet<Vec<&str>> = HashSet::new();
    for cycle in find_cycles(&order, edges) {
        let mut key = cycle.clone();
        key.sort_unstable();
        if !reported.insert(key) {
            continue;
        }
        let Some(first) = order.iter().copied().find(|id| cycle.contains(id)) else {
            continue;
        };
        let Some(step) = wf.step(first) else {
            continue;
        };
        // Rotate the cycle to start at its first step in pipeline order.
        let start = cycle.iter().position(|c| *c == first).unwrap_or(0);
        let mut chain: Vec<&str> = cycle[start..]
            .iter()
            .chain(&cycle[..start])
            .copied()
            .collect();
        chain.push(first);
        r.error(
            "cycle",
            step.id.pos,
            &format!("{}.id", step.path),
            format!("dependency cycle: {}", chain.join(" → ")),
        );
    }
}

/// Every elementary cycle found by a DFS from each node (one per back edge).
pub(crate) fn find_cycles<'a, F>(nodes: &[&'a str], edges: F) -> Vec<Vec<&'a str>>
where
    F: Fn(&str) -> Vec<&'a str>,
{
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Active,
        Done,
    }
    let mut marks: HashMap<&str, Mark> = nodes.iter().map(|n| (*n, Mark::New)).collect();
    let mut cycles = Vec::new();
    for start in nodes {
        if marks.get(start) != Some(&Mark::New) {
            continue;
        }
        // Iterative DFS: (node, its successors, next successor index).
        let mut stack: Vec<(&str, Vec<&str>, usize)> = vec![(start, edges(start), 0)];
        marks.insert(start, Mark::Active);
        while let Some((node, succ, i)) = stack.last_mut() {
            if *i >= succ.len() {
                marks.insert(node, Mark::Done);
                stack.pop();
                continue;
            }
            let next = succ[*i];
            *i += 1;
            match marks.get(next).copied() {
                Some(Mark::New) => {
                    marks.insert(next, Mark::Active);
                    let e = edges(next);
                    stack.push((next, e, 0));
                }
                Some(Mark::Active) => {
                    if let Some(pos) = stack.iter().position(|(n, _, _)| *n == next) {
                        cycles.push(stack[pos..].iter().map(|(n, _, _)| *n).collect());
                    }
                }
                _ => {}
            }
        }
    }
    cycles
}

/// Cross-file checks of a `workflow:` step against its child workflow.
fn check_subworkflow_step(
    r: &mut Reader,
    step: &Step,
    w: &crate::project::SubWorkflowStep,
    child: &Workflow,
    sources: &Sources<'_>,
) {
    if w.webhooks == WebhookMode::Execute && child.webhooks == WebhookMode::Suppress {
        r.error(
            "webhook_optin_conflict",
            w.webhooks_pos.unwrap_or(step.id.pos),
            &format!("{}.webhooks", step.path),
            format!(
                "step `{}` says `webhooks: execute` but workflow `{}` says `webhooks: suppress`; both must opt in",
                step.id.value, child.name.value
            ),
        );
    }
    if uses_env(child) && child.is_root() {
        r.error(
            "env_in_subworkflow",
            w.workflow.pos,
            &w.workflow.path,
            format!(
                "workflow `{}` uses `env`, so it cannot run as a sub-workflow; pass the values as params",
                child.name.value
            ),
        );
    }
    if let (Some(v), Some(cv)) = (split_version(&w.workflow.value).1, &child.version) {
        if v != cv.value {
            r.push(
                "version_mismatch",
                Severity::Warning,
                Some(w.workflow.pos),
                &w.workflow.path,
                format!(
                    "reference asks for version {v} but `{}` declares version {}",
                    child.name.value, cv.value
                ),
                None,
            );
        }
    }
    let entries: Vec<_> = w.params.iter().chain(&w.input).collect();
    params::check_param_entries(
        r,
        &entries,
        child.params_schema.as_ref(),
        sources,
        step,
        &format!("sub-workflow `{}`", child.name.value),
        "sub-workflow param",
    );
}

/// `workflow:` refs forming a cycle (by canonical path), reported once per cycle with the chain.
pub(crate) fn check_workflow_cycles(project: &Project, sinks: &mut Sinks<'_>) {
    let mut ids: Vec<FileId> = project.workflows.keys().copied().collect();
    ids.sort_by(|a, b| project.files[*a].display.cmp(&project.files[*b].display));
    let names: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
    let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let edges = |n: &str| -> Vec<&str> {
        let Ok(id) = n.parse::<FileId>() else {
            return Vec::new();
        };
        let Some(lw) = project.workflow(id) else {
            return Vec::new();
        };
        lw.workflow
            .pipeline
            .iter()
            .zip(&lw.step_targets)
            .filter(|(s, _)| matches!(s.kind, StepKind::Workflow(_)))
            .filter_map(|(_, t)| *t)
            .filter_map(|t| name_refs.iter().find(|x| **x == t.to_string()).copied())
            .collect()
    };
    let mut seen: HashSet<Vec<String>> = HashSet::new();
    for cycle in find_cycles(&name_refs, edges) {
        let mut key: Vec<String> = cycle.iter().map(|s| s.to_string()).collect();
        key.sort();
        if !seen.insert(key) {
            continue;
        }
        let files: Vec<FileId> = cycle.iter().filter_map(|c| c.parse().ok()).collect();
        let Some(&first) = files.first() else {
            continue;
        };
        let next = files.get(1).copied().unwrap_or(first);
        let mut chain: Vec<String> = files
            .iter()
            .map(|f| project.files[*f].display.clone())
            .collect();
        chain.push(project.files[first].display.clone());
        let Some(lw) = project.workflow(first) else {
            continue;
        };
        let Some((step, _)) = lw
            .workflow
            .pipeline
            .iter()
            .zip(&lw.step_targets)
            .find(|(s, t)| matches!(s.kind, StepKind::Workflow(_)) && **t == Some(next))
        else {
            continue;
        };
        if let StepKind::Workflow(w) = &step.kind {
            sinks.file(first).error(
                "workflow_cycle",
                w.workflow.pos,
                &w.workflow.path,
                format!(
                    "sub-workflow references form a cycle: {}",
                    chain.join(" → ")
                ),
            );
        }
    }
}
