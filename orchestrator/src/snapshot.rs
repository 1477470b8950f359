//! The project snapshot (orchestrator.md §1.4, config.md §1.5): a validated project turned into
//! immutable execution plans, the resolved env values of root workflows, the `invoke.auth`
//! secrets and the secret set. A run keeps the snapshot that was current at its creation.

use ktsu_shared::diag::Diagnostic;
use ktsu_shared::project::deps::{final_steps, step_dependencies};
use ktsu_shared::project::{
    Agent, AuthScheme, FileId, LoadOptions, Project, ServerRef, StepKind, ToolServer, Workflow,
};
use ktsu_shared::secret::Secret;
use ktsu_shared::validate::{
    check_project, resolve_env_value, EnvLookup, EnvMode, ValidateOptions,
};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

/// A tool server reference of an agent with its resolved server.
#[derive(Debug, Clone)]
pub struct ServerPlan {
    pub reference: ServerRef,
    pub server: ToolServer,
}

/// An agent with its resolved tool servers.
#[derive(Debug, Clone)]
pub struct AgentPlan {
    pub agent: Agent,
    pub servers: Vec<ServerPlan>,
    /// The Air-Lock schema (a): the output schema without reserved `ktsu_*` names, compiled once.
    pub airlock: Option<Arc<ktsu_shared::schema::CompiledSchema>>,
}

/// How `invoke.auth` is checked for a workflow (orchestrator.md §2.1).
#[derive(Debug, Clone)]
pub struct InvokeAuthPlan {
    pub header: String,
    pub scheme: AuthScheme,
    pub secret: Secret,
}

/// One workflow ready to run: its definition, the DAG and the resolved references of its steps.
#[derive(Debug)]
pub struct WorkflowPlan {
    pub file: FileId,
    pub workflow: Workflow,
    /// Pipeline indexes of the DAG steps (approval hooks excluded), pipeline order.
    pub dag: Vec<usize>,
    /// Per DAG step (same order as `dag`): positions in `dag` of its dependencies.
    pub deps: Vec<Vec<usize>>,
    /// Per DAG step: positions in `dag` of the steps that depend on it.
    pub dependents: Vec<Vec<usize>>,
    /// Pipeline indexes of the approval hooks.
    pub hooks: Vec<usize>,
    /// Positions in `dag` of the final steps (nothing depends on them).
    pub finals: Vec<usize>,
    /// Agent steps: pipeline index → agent.
    pub agents: HashMap<usize, Arc<AgentPlan>>,
    /// Sub-workflow steps: pipeline index → child plan.
    pub children: HashMap<usize, Arc<WorkflowPlan>>,
    /// Top-level params declared `secret: true`.
    pub secret_params: Vec<String>,
}

impl WorkflowPlan {
    pub fn name(&self) -> &str {
        &self.workflow.name.value
    }

    /// Position in `dag` of a step id.
    pub fn dag_position(&self, step_id: &str) -> Option<usize> {
        self.dag
            .iter()
            .position(|i| self.workflow.pipeline[*i].id.value == step_id)
    }

    pub fn dag_step(&self, position: usize) -> &ktsu_shared::project::Step {
        &self.workflow.pipeline[self.dag[position]]
    }
}

/// What makes the snapshot stale: (path, mtime, size) of every file and the listing of every
/// scanned directory (config.md §1.5).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Fingerprint(
    Vec<(PathBuf, Option<SystemTime>, u64)>,
    Vec<(PathBuf, Vec<PathBuf>)>,
);

impl Fingerprint {
    /// Computes the fingerprint of a loaded project (its files and scanned directories).
    pub fn of(project: &Project, opts: &LoadOptions) -> Fingerprint {
        let mut files: Vec<(PathBuf, Option<SystemTime>, u64)> = project
            .files
            .iter()
            .map(|f| {
                let meta = std::fs::metadata(&f.path).ok();
                (
                    f.path.clone(),
                    meta.as_ref().and_then(|m| m.modified().ok()),
                    meta.map_or(0, |m| m.len()),
                )
            })
            .collect();
        files.sort();
        let mut dirs = Vec::new();
        for (i, root) in project.roots.iter().enumerate() {
            let registry = match (&opts.workflow_dir, i) {
                (Some(dir), 0) => std::fs::canonicalize(dir).unwrap_or_else(|_| dir.clone()),
                _ => root.join("workflows"),
            };
            for dir in [
                registry,
                root.join("agents"),
                root.join("servers"),
                root.clone(),
            ] {
                let mut listing: Vec<PathBuf> = std::fs::read_dir(&dir)
                    .map(|entries| entries.filter_map(Result::ok).map(|e| e.path()).collect())
                    .unwrap_or_default();
                listing.sort();
                dirs.push((dir, listing));
            }
        }
        Fingerprint(files, dirs)
    }

    /// `sha256:<hex>` of the fingerprint (the `digest` of `POST /reload`).
    pub fn digest(&self) -> String {
        let mut hasher = Sha256::new();
        for (path, mtime, size) in &self.0 {
            hasher.update(path.to_string_lossy().as_bytes());
            let t = mtime
                .and_then(|m| m.duration_since(SystemTime::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos());
            hasher.update(t.to_le_bytes());
            hasher.update(size.to_le_bytes());
        }
        for (dir, listing) in &self.1 {
            hasher.update(dir.to_string_lossy().as_bytes());
            for p in listing {
                hasher.update(p.to_string_lossy().as_bytes());
            }
        }
        let hex: String = hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        format!("sha256:{hex}")
    }
}

/// An immutable, validated project.
#[derive(Debug)]
pub struct Snapshot {
    pub project: Project,
    pub plans: HashMap<FileId, Arc<WorkflowPlan>>,
    /// Resolved env values of each root workflow (by workflow file).
    pub env: HashMap<FileId, Arc<HashMap<String, String>>>,
    /// Root workflows' `invoke.auth`, resolved.
    pub invoke_auth: HashMap<FileId, InvokeAuthPlan>,
    /// Every secret env value of the root workflows (the static part of the secret set).
    pub secrets: Vec<String>,
    pub fingerprint: Fingerprint,
    pub digest: String,
}

/// Why a project could not become a snapshot.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// A usage-level problem (missing directory): exit 2.
    #[error("{0}")]
    Load(#[from] ktsu_shared::project::LoadError),
    /// The project has errors: every diagnostic (exit 3 at startup).
    #[error("the project has {} error(s)", .0.len())]
    Invalid(Vec<Diagnostic>),
}

impl Snapshot {
    /// Loads, validates (startup rules: unset env vars and empty auth secrets are errors) and
    /// plans the project.
    pub fn load(opts: &LoadOptions, env: &dyn EnvLookup) -> Result<Snapshot, SnapshotError> {
        let report = check_project(
            opts,
            &ValidateOptions {
                env_mode: EnvMode::Startup,
                env,
            },
        )?;
        if report.has_errors() {
            return Err(SnapshotError::Invalid(report.errors().cloned().collect()));
        }
        let project = report.project;
        let fingerprint = Fingerprint::of(&project, opts);
        let digest = fingerprint.digest();
        let mut plans = HashMap::new();
        let mut ids: Vec<FileId> = project.workflows.keys().copied().collect();
        ids.sort_unstable();
        for id in &ids {
            plan_workflow(&project, *id, &mut plans);
        }
        let env_file = project.env_file.as_ref().map(|(_, f)| f);
        let mut env_values = HashMap::new();
        let mut invoke_auth = HashMap::new();
        let mut secrets = Vec::new();
        for id in &ids {
            let Some(lw) = project.workflow(*id) else {
                continue;
            };
            let wf = &lw.workflow;
            if !wf.is_root() {
                continue;
            }
            let mut values = HashMap::new();
            for decl in &wf.env {
                if let Some(v) = resolve_env_value(decl, env, env_file) {
                    if decl.secret && !v.is_empty() {
                        secrets.push(v.clone());
                    }
                    values.insert(decl.name.value.clone(), v);
                }
            }
            if let Some(auth) = &wf.invoke_auth {
                if let Some(value) = auth.secret_env().and_then(|n| values.get(n)) {
                    invoke_auth.insert(
                        *id,
                        InvokeAuthPlan {
                            header: auth.header.clone(),
                            scheme: auth.scheme,
                            secret: Secret::new(value.clone()),
                        },
                    );
                }
            }
            env_values.insert(*id, Arc::new(values));
        }
        secrets.sort();
        secrets.dedup();
        Ok(Snapshot {
            project,
            plans,
            env: env_values,
            invoke_auth,
            secrets,
            fingerprint,
            digest,
        })
    }

    /// The registry workflow serving `POST /invoke/{name}`; sub-workflows count as not found.
    pub fn find_invocable(&self, name: &str) -> Option<(FileId, &Arc<WorkflowPlan>)> {
        let id = self.project.find_workflow(name)?;
        let plan = self.plans.get(&id)?;
        plan.workflow.is_root().then_some((id, plan))
    }

    /// The root workflow plan of a run by its recorded `workflow_name` (recovery).
    pub fn root_plan_by_name(&self, name: &str) -> Option<(FileId, &Arc<WorkflowPlan>)> {
        self.project
            .registry
            .iter()
            .find(|id| {
                self.plans
                    .get(id)
                    .is_some_and(|p| p.workflow.name.value == name && p.workflow.is_root())
            })
            .and_then(|id| self.plans.get(id).map(|p| (*id, p)))
    }

    /// Number of invocable workflows.
    pub fn workflow_count(&self) -> usize {
        self.project
            .registry
            .iter()
            .filter(|id| self.plans.get(id).is_some_and(|p| p.workflow.is_root()))
            .count()
    }

    /// Whether the files on disk still match this snapshot.
    pub fn is_current(&self, opts: &LoadOptions) -> bool {
        // A reload rescans the directories; compare with a fresh scan of the same files and
        // listings.
        Fingerprint::of(&self.project, opts) == self.fingerprint
    }
}

/// Plans a workflow (memoised by file; `workflow:` cycles are validation errors, so the
/// recursion ends).
fn plan_workflow(
    project: &Project,
    id: FileId,
    plans: &mut HashMap<FileId, Arc<WorkflowPlan>>,
) -> Option<Arc<WorkflowPlan>> {
    if let Some(p) = plans.get(&id) {
        return Some(Arc::clone(p));
    }
    let lw = project.workflow(id)?;
    let wf = &lw.workflow;
    let dag: Vec<usize> = (0..wf.pipeline.len())
        .filter(|i| !wf.pipeline[*i].is_approval_hook())
        .collect();
    let hooks: Vec<usize> = (0..wf.pipeline.len())
        .filter(|i| wf.pipeline[*i].is_approval_hook())
        .collect();
    let position = |step_id: &str| dag.iter().position(|i| wf.pipeline[*i].id.value == step_id);
    let dependencies = step_dependencies(wf);
    let deps: Vec<Vec<usize>> = dependencies
        .iter()
        .map(|(_, d)| d.iter().filter_map(|id| position(id)).collect())
        .collect();
    let mut dependents = vec![Vec::new(); dag.len()];
    for (i, ds) in deps.iter().enumerate() {
        for d in ds {
            dependents[*d].push(i);
        }
    }
    let finals: Vec<usize> = final_steps(wf)
        .iter()
        .filter_map(|id| position(id))
        .collect();
    let mut agents = HashMap::new();
    let mut children = HashMap::new();
    for (i, step) in wf.pipeline.iter().enumerate() {
        let Some(target) = lw.step_targets.get(i).copied().flatten() else {
            continue;
        };
        match &step.kind {
            StepKind::Agent(_) => {
                if let Some(la) = project.agent(target) {
                    let servers = la
                        .agent
                        .servers
                        .iter()
                        .zip(&la.server_targets)
                        .filter_map(|(r, t)| {
                            Some(ServerPlan {
                                reference: r.clone(),
                                server: project.server((*t)?)?.clone(),
                            })
                        })
                        .collect();
                    let airlock = la
                        .agent
                        .output_schema
                        .as_ref()
                        .and_then(|s| crate::engine::agent_airlock_schema(&s.value))
                        .map(Arc::new);
                    agents.insert(
                        i,
                        Arc::new(AgentPlan {
                            agent: la.agent.clone(),
                            servers,
                            airlock,
                        }),
                    );
                }
            }
            StepKind::Workflow(_) => {
                if let Some(child) = plan_workflow(project, target, plans) {
                    children.insert(i, child);
                }
            }
            _ => {}
        }
    }
    let secret_params = wf
        .params_schema
        .as_ref()
        .map(|s| {
            s.property_names()
                .into_iter()
                .filter(|p| s.is_secret(p))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let plan = Arc::new(WorkflowPlan {
        file: id,
        workflow: wf.clone(),
        dag,
        deps,
        dependents,
        hooks,
        finals,
        agents,
        children,
        secret_params,
    });
    plans.insert(id, Arc::clone(&plan));
    Some(plan)
}
