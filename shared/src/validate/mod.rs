//! Validation of a whole project (config.md §6): every check, each with its stable code, file
//! and location; all diagnostics collected before anything is reported.
//!
//! This is the one function `ktsu validate`, orchestrator startup/reload and gateway startup
//! call, so a project that validates also starts (cli-and-ops.md §1.8).

mod env;
mod params;
mod registry;
mod scope;
mod secrets;
mod workflow;

pub use env::{resolve_env_value, substitute, EnvLookup, ProcessEnv};

use crate::diag::{Diagnostic, Severity};
use crate::project::read::Reader;
use crate::project::{FileId, FileKind, LoadError, LoadOptions, Project};
use std::collections::HashMap;

/// How strictly env declarations are checked (config.md §5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnvMode {
    /// `ktsu validate` without `--env`/`--check-env`: `env_unset` and `weak_secret` are warnings.
    Lenient,
    /// `ktsu validate --env`: they are errors.
    Strict,
    /// `--check-env` and service startup: errors, and empty `invoke.auth` secrets are checked.
    Startup,
}

/// Options of [`validate`].
pub struct ValidateOptions<'a> {
    pub env_mode: EnvMode,
    /// Where declared env vars get their values (process environment, then the `--env` file's
    /// variables are consulted by the validator itself).
    pub env: &'a dyn EnvLookup,
}

/// The outcome of loading and validating a project.
#[derive(Debug, Clone)]
pub struct Report {
    pub project: Project,
    /// Every diagnostic, sorted by file, line, column and code (config.md §6.1).
    pub diagnostics: Vec<Diagnostic>,
}

impl Report {
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }

    pub fn has_warnings(&self) -> bool {
        self.diagnostics
            .iter()
            .any(|d| d.severity == Severity::Warning)
    }

    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics.iter().filter(|d| d.is_error())
    }
}

/// Loads the project and runs every check.
pub fn check_project(load: &LoadOptions, opts: &ValidateOptions<'_>) -> Result<Report, LoadError> {
    let (project, mut diagnostics) = Project::load(load)?;
    diagnostics.extend(validate(&project, opts));
    sort_diagnostics(&mut diagnostics);
    Ok(Report {
        project,
        diagnostics,
    })
}

/// Sorts by file path, then line, column and code; exact duplicates are dropped.
pub fn sort_diagnostics(diags: &mut Vec<Diagnostic>) {
    diags.sort_by(|a, b| {
        a.sort_key()
            .cmp(&b.sort_key())
            .then_with(|| a.message.cmp(&b.message))
    });
    diags.dedup();
}

/// Per-file diagnostic sinks, so each finding is attributed to the file that must change.
pub(crate) struct Sinks<'p> {
    project: &'p Project,
    readers: HashMap<FileId, Reader>,
}

impl<'p> Sinks<'p> {
    fn new(project: &'p Project) -> Self {
        Sinks {
            project,
            readers: HashMap::new(),
        }
    }

    pub(crate) fn file(&mut self, id: FileId) -> &mut Reader {
        let display = &self.project.files[id].display;
        self.readers
            .entry(id)
            .or_insert_with(|| Reader::new(display.clone()))
    }

    fn into_diagnostics(self) -> Vec<Diagnostic> {
        let mut ids: Vec<FileId> = self.readers.keys().copied().collect();
        ids.sort_unstable();
        let mut readers = self.readers;
        ids.into_iter()
            .filter_map(|id| readers.remove(&id))
            .flat_map(|r| r.diags)
            .collect()
    }
}

/// The cross-file checks (everything [`Project::load`] could not check file by file).
pub fn validate(project: &Project, opts: &ValidateOptions<'_>) -> Vec<Diagnostic> {
    let mut sinks = Sinks::new(project);
    let mut ids: Vec<FileId> = project.workflows.keys().copied().collect();
    ids.sort_unstable();
    for id in &ids {
        workflow::check_workflow(project, *id, &mut sinks);
    }
    workflow::check_workflow_cycles(project, &mut sinks);
    let mut agent_ids: Vec<FileId> = project.agents.keys().copied().collect();
    agent_ids.sort_unstable();
    for id in agent_ids {
        params::check_agent(project, id, &mut sinks);
    }
    let mut server_ids: Vec<FileId> = project.servers.keys().copied().collect();
    server_ids.sort_unstable();
    for id in server_ids {
        if let Some(server) = project.servers.get(&id) {
            secrets::check_server_auth(server, "", sinks.file(id));
        }
    }
    for m in project.manifests.iter().flatten() {
        for (i, server) in m.manifest.servers.iter().enumerate() {
            secrets::check_server_auth(server, &format!("servers[{i}]"), sinks.file(m.file));
        }
    }
    registry::check_registry(project, &mut sinks);
    env::check_env(project, opts, &mut sinks);
    sinks.into_diagnostics()
}

/// The kind name of a file for reports.
pub fn kind_name(kind: FileKind) -> &'static str {
    kind.as_str()
}

#[cfg(test)]
mod tests;
