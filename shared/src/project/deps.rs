//! Step dependencies (config.md §3.8): explicit `depends_on` plus every `step.<id>` reference
//! in a step's templates and expressions, plus bare step ids of transform inputs and `merge`.
//! The orchestrator builds its DAG from this; `ktsu validate --graph` draws it.

use super::{OpKind, Step, StepKind, TransformInput, Workflow};
use crate::template::{Expr, Next, Template};

/// One templated or expression site of a workflow, for checks that look at all of them.
pub enum Site<'a> {
    Template(&'a Template),
    Expr(&'a Expr),
}

impl<'a> Site<'a> {
    /// The expressions of the site (every placeholder of a template).
    pub fn exprs(&self) -> Vec<&'a Expr> {
        match self {
            Site::Template(t) => t.exprs().collect(),
            Site::Expr(e) => vec![*e],
        }
    }
}

/// What [`visit_sites`] reports for each site.
pub struct Visit<'a> {
    /// The owning step; `None` for `invoke.auth` and `output.map`.
    pub step: Option<&'a Step>,
    pub site: Site<'a>,
    /// A transform op expression, evaluated against each data element rather than the context.
    pub element: bool,
}

/// Calls `f` for every template and expression of the workflow.
pub fn visit_sites<'a>(wf: &'a Workflow, f: &mut dyn FnMut(Visit<'a>)) {
    let mut emit = |step: Option<&'a Step>, site: Site<'a>, element: bool| {
        f(Visit {
            step,
            site,
            element,
        })
    };
    if let Some(s) = wf.invoke_auth.as_ref().and_then(|a| a.secret.as_ref()) {
        emit(None, Site::Template(&s.value), false);
    }
    for step in &wf.pipeline {
        let here = Some(step);
        if let Some(c) = &step.condition {
            emit(here, Site::Expr(&c.value), false);
        }
        match &step.kind {
            StepKind::Agent(a) => {
                if let Some(fe) = &a.for_each {
                    emit(here, Site::Expr(&fe.from.value), false);
                }
                for p in &a.params {
                    p.value
                        .value
                        .for_each_template(&mut |t| emit(here, Site::Template(t), false));
                }
            }
            StepKind::Workflow(w) => {
                for p in w.params.iter().chain(&w.input) {
                    p.value
                        .value
                        .for_each_template(&mut |t| emit(here, Site::Template(t), false));
                }
            }
            StepKind::Transform(t) => {
                for input in &t.inputs {
                    if let TransformInput::Template(tm) = input {
                        emit(here, Site::Template(&tm.value), false);
                    }
                }
                for op in &t.ops {
                    match &op.kind {
                        OpKind::Filter(e)
                        | OpKind::Map(e)
                        | OpKind::Deduplicate(e)
                        | OpKind::Sort { field: e, .. } => emit(here, Site::Expr(&e.value), true),
                        OpKind::Merge(_) | OpKind::Flatten => {}
                    }
                }
            }
            StepKind::Webhook(w) => {
                emit(here, Site::Template(&w.url.value), false);
                for h in &w.headers {
                    h.value
                        .value
                        .for_each_template(&mut |t| emit(here, Site::Template(t), false));
                }
                if let Some(body) = &w.body {
                    body.value
                        .for_each_template(&mut |t| emit(here, Site::Template(t), false));
                }
            }
        }
    }
    for entry in wf.output_map.iter().flatten() {
        entry
            .value
            .value
            .for_each_template(&mut |t| emit(None, Site::Template(t), false));
    }
}

/// The effective dependencies of every DAG step (approval hooks excluded), in pipeline order:
/// explicit ∪ inferred, each list in pipeline order, unknown ids and self references dropped
/// (validation reports them).
pub fn step_dependencies(wf: &Workflow) -> Vec<(&str, Vec<&str>)> {
    let ids: Vec<&str> = wf
        .pipeline
        .iter()
        .filter(|s| !s.is_approval_hook())
        .map(|s| s.id.value.as_str())
        .collect();
    let mut referenced: Vec<Vec<String>> = vec![Vec::new(); wf.pipeline.len()];
    let index_of = |step: &Step| wf.pipeline.iter().position(|s| std::ptr::eq(s, step));
    visit_sites(wf, &mut |v| {
        let (Some(step), false) = (v.step, v.element) else {
            return;
        };
        let Some(i) = index_of(step) else { return };
        for e in v.site.exprs() {
            for r in e.refs() {
                if let ("step", Next::Field(id)) = (r.name.as_str(), &r.next) {
                    referenced[i].push(id.clone());
                }
            }
        }
    });
    wf.pipeline
        .iter()
        .enumerate()
        .filter(|(_, s)| !s.is_approval_hook())
        .map(|(i, step)| {
            let mut wanted: Vec<&str> = step.depends_on.iter().map(|d| d.value.as_str()).collect();
            wanted.extend(referenced[i].iter().map(String::as_str));
            if let StepKind::Transform(t) = &step.kind {
                for input in &t.inputs {
                    if let TransformInput::Step(s) = input {
                        wanted.push(&s.value);
                    }
                }
                for op in &t.ops {
                    if let OpKind::Merge(list) = &op.kind {
                        wanted.extend(list.iter().map(|s| s.value.as_str()));
                    }
                }
            }
            let deps: Vec<&str> = ids
                .iter()
                .copied()
                .filter(|id| *id != step.id.value && wanted.contains(id))
                .collect();
            (step.id.value.as_str(), deps)
        })
        .collect()
}

/// The final steps of a workflow: steps no other step depends on (approval hooks excluded),
/// pipeline order (config.md §2.2.6).
pub fn final_steps(wf: &Workflow) -> Vec<&str> {
    let deps = step_dependencies(wf);
    deps.iter()
        .map(|(id, _)| *id)
        .filter(|id| !deps.iter().any(|(_, d)| d.contains(id)))
        .collect()
}
