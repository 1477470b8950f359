//! The project: discovery of its files (config.md §1), the typed model of each file (§2),
//! and reference resolution (§1.2).
//!
//! [`Project::load`] reads every file once (identity = canonical path), reporting per-file
//! diagnostics; [`crate::validate`] then runs the cross-file checks on the loaded project.

pub mod decode;
pub mod deps;
mod load;
pub mod model;
pub mod read;
pub mod resolve;

pub use load::{LoadError, LoadOptions};
pub use model::*;
pub use read::Spanned;

use std::collections::HashMap;
use std::path::PathBuf;

/// Index of a file in [`Project::files`].
pub type FileId = usize;

/// One file that was found or referenced.
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// Canonical absolute path (the file's identity).
    pub path: PathBuf,
    /// Relative to its workspace root with `/` separators, else absolute (config.md §6.3).
    pub display: String,
    pub kind: FileKind,
    /// Index into [`Project::roots`] of the workspace whose registry or scan led to the file.
    pub workspace: usize,
    /// Found by a directory scan (as opposed to only through a reference).
    pub scanned: bool,
}

/// A workflow file and the resolved targets of its steps.
#[derive(Debug, Clone)]
pub struct LoadedWorkflow {
    pub workflow: Workflow,
    /// Ids of steps too broken to type (references to them are not reported again).
    pub invalid_step_ids: Vec<String>,
    /// Per pipeline step (same index): the agent or sub-workflow file it references.
    pub step_targets: Vec<Option<FileId>>,
}

/// Where a `servers[]` entry of an agent points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerTarget {
    File(FileId),
    /// Entry `index` of the `servers.yaml` of workspace `workspace`.
    Manifest {
        workspace: usize,
        index: usize,
    },
}

/// An agent file and the resolved targets of its server references.
#[derive(Debug, Clone)]
pub struct LoadedAgent {
    pub agent: Agent,
    /// Per `servers[]` entry (same index).
    pub server_targets: Vec<Option<ServerTarget>>,
}

/// A loaded `servers.yaml`.
#[derive(Debug, Clone)]
pub struct LoadedManifest {
    pub file: FileId,
    pub manifest: ServersManifest,
}

/// Everything read from a project directory, its workspaces, and the optional gateway and env
/// files. Files that could not be read are listed in `files` but have no model.
#[derive(Debug, Clone, Default)]
pub struct Project {
    /// Workspace roots, canonical: the primary project first.
    pub roots: Vec<PathBuf>,
    pub files: Vec<SourceFile>,
    pub workflows: HashMap<FileId, LoadedWorkflow>,
    pub agents: HashMap<FileId, LoadedAgent>,
    pub servers: HashMap<FileId, ToolServer>,
    /// Per workspace (same index as `roots`).
    pub manifests: Vec<Option<LoadedManifest>>,
    /// Registry workflows (invocable by name), in registry order.
    pub registry: Vec<FileId>,
    pub gateway: Option<(FileId, GatewayConfig)>,
    pub env_file: Option<(FileId, EnvFile)>,
    pub mock_scripts: Vec<(FileId, MockScript)>,
}

impl Project {
    pub fn file(&self, id: FileId) -> &SourceFile {
        &self.files[id]
    }

    pub fn workflow(&self, id: FileId) -> Option<&LoadedWorkflow> {
        self.workflows.get(&id)
    }

    pub fn agent(&self, id: FileId) -> Option<&LoadedAgent> {
        self.agents.get(&id)
    }

    /// The tool server a `servers[]` entry resolved to.
    pub fn server(&self, target: ServerTarget) -> Option<&ToolServer> {
        match target {
            ServerTarget::File(id) => self.servers.get(&id),
            ServerTarget::Manifest { workspace, index } => self
                .manifests
                .get(workspace)?
                .as_ref()?
                .manifest
                .servers
                .get(index),
        }
    }

    /// The file that declares a server target (for diagnostics about it).
    pub fn server_file(&self, target: ServerTarget) -> Option<FileId> {
        match target {
            ServerTarget::File(id) => Some(id),
            ServerTarget::Manifest { workspace, .. } => {
                self.manifests.get(workspace)?.as_ref().map(|m| m.file)
            }
        }
    }

    /// Finds the workflow serving `POST /invoke/{name}` (config.md §1.4): the first registry
    /// workflow whose `name` matches, else the first whose file stem matches. Sub-workflows are
    /// returned too; callers answer them with the same 404 as an unknown name.
    pub fn find_workflow(&self, name: &str) -> Option<FileId> {
        self.registry
            .iter()
            .copied()
            .find(|id| {
                self.workflows
                    .get(id)
                    .is_some_and(|w| w.workflow.name.value == name)
            })
            .or_else(|| {
                self.registry
                    .iter()
                    .copied()
                    .find(|id| file_stem(&self.files[*id].path) == Some(name))
            })
    }
}

/// The file name minus `.workflow.yaml`.
pub fn file_stem(path: &std::path::Path) -> Option<&str> {
    path.file_name()?.to_str()?.strip_suffix(".workflow.yaml")
}
