//! Discovery and loading (config.md §1): scan the registry and component directories of every
//! workspace, follow references, read each file exactly once.

use super::decode::{agent, gateway, server, workflow};
use super::model::FileKind;
use super::read::Reader;
use super::resolve::{resolve, RefKind, Resolution};
use super::{
    FileId, LoadedAgent, LoadedManifest, LoadedWorkflow, Project, ServerTarget, SourceFile,
};
use crate::diag::{Diagnostic, Pos, Severity};
use crate::yaml;
use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};

/// Configuration files larger than this are refused with `io_error` rather than parsed: no real
/// workflow is that big, and a stray multi-megabyte file must not stall startup.
pub const MAX_FILE_BYTES: u64 = 10 * 1024 * 1024;

/// Where to look (config.md §1.1, §1.3). Paths are taken as given (relative = CWD-relative).
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    pub project_dir: PathBuf,
    /// `--workflow-dir`; default `<project>/workflows`.
    pub workflow_dir: Option<PathBuf>,
    /// `--workspace` values (a leading `~/` is expanded).
    pub workspaces: Vec<PathBuf>,
    pub no_hub_lock: bool,
    /// The gateway file to validate with the project, when one is known.
    pub gateway_config: Option<PathBuf>,
    /// The `--env` file.
    pub env_file: Option<PathBuf>,
}

/// Conditions that stop loading before any check runs (usage errors: exit 2).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LoadError {
    #[error("project directory {0} does not exist")]
    MissingProjectDir(String),
    #[error("workflow directory {0} does not exist")]
    MissingWorkflowDir(String),
    #[error("env file {0} does not exist")]
    MissingEnvFile(String),
    #[error("gateway config {0} does not exist")]
    MissingGatewayConfig(String),
}

/// Expands a leading `~/` with `$HOME`.
pub fn expand_home(path: &Path) -> PathBuf {
    match path.to_str().and_then(|s| s.strip_prefix("~/")) {
        Some(rest) => match std::env::var_os("HOME") {
            Some(home) => PathBuf::from(home).join(rest),
            None => path.to_path_buf(),
        },
        None => path.to_path_buf(),
    }
}

fn absolute(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| {
        std::env::current_dir()
            .map(|cwd| super::resolve::normalize(&cwd.join(path)))
            .unwrap_or_else(|_| path.to_path_buf())
    })
}

/// A file waiting to be read.
struct Pending {
    id: FileId,
}

struct Loader {
    project: Project,
    diags: Vec<Diagnostic>,
    by_path: HashMap<PathBuf, FileId>,
    queue: VecDeque<Pending>,
}

impl Project {
    /// Loads the project. Per-file diagnostics (syntax, schema of each file, references) are
    /// returned with it; cross-file checks are [`crate::validate::validate`].
    pub fn load(opts: &LoadOptions) -> Result<(Project, Vec<Diagnostic>), LoadError> {
        if !opts.project_dir.is_dir() {
            return Err(LoadError::MissingProjectDir(
                opts.project_dir.display().to_string(),
            ));
        }
        if let Some(w) = &opts.workflow_dir {
            if !w.is_dir() {
                return Err(LoadError::MissingWorkflowDir(w.display().to_string()));
            }
        }
        if let Some(e) = &opts.env_file {
            if !e.is_file() {
                return Err(LoadError::MissingEnvFile(e.display().to_string()));
            }
        }
        if let Some(g) = &opts.gateway_config {
            if !g.is_file() {
                return Err(LoadError::MissingGatewayConfig(g.display().to_string()));
            }
        }
        let mut loader = Loader {
            project: Project::default(),
            diags: Vec::new(),
            by_path: HashMap::new(),
            queue: VecDeque::new(),
        };
        let primary = absolute(&opts.project_dir);
        loader.project.roots.push(primary.clone());
        for w in &opts.workspaces {
            let root = absolute(&expand_home(w));
            if !loader.project.roots.contains(&root) {
                loader.project.roots.push(root);
            }
        }
        if !opts.no_hub_lock {
            for root in loader.hub_lock_roots(&primary) {
                if !loader.project.roots.contains(&root) {
                    loader.project.roots.push(root);
                }
            }
        }
        loader.project.manifests = vec![None; loader.project.roots.len()];
        let roots = loader.project.roots.clone();
        for (ws, root) in roots.iter().enumerate() {
            let registry_dir = match (&opts.workflow_dir, ws) {
                (Some(dir), 0) => absolute(dir),
                _ => root.join("workflows"),
            };
            for path in scan(&registry_dir, ".workflow.yaml") {
                let id = loader.add_file(path, FileKind::Workflow, ws, true);
                loader.project.registry.push(id);
            }
            for path in scan(&root.join("agents"), ".agent.yaml") {
                loader.add_file(path, FileKind::Agent, ws, true);
            }
            for path in scan(&root.join("servers"), ".server.yaml") {
                loader.add_file(path, FileKind::Server, ws, true);
            }
            let manifest = root.join("servers.yaml");
            if manifest.is_file() {
                loader.add_file(absolute(&manifest), FileKind::ServersManifest, ws, true);
            }
        }
        if let Some(g) = &opts.gateway_config {
            loader.add_file(absolute(g), FileKind::Gateway, 0, false);
        }
        if let Some(e) = &opts.env_file {
            loader.add_file(absolute(e), FileKind::Env, 0, false);
        }
        // Manifests first: agents resolve manifest names against them.
        loader.load_kind(FileKind::ServersManifest);
        // The env file before the gateway file: its `providers` replace or join the gateway's,
        // so the gateway's model strings may name them (runtime-gateway.md §5.2).
        loader.load_kind(FileKind::Env);
        while let Some(p) = loader.queue.pop_front() {
            loader.load(p.id);
        }
        if loader.project.registry.is_empty() {
            let dir = opts
                .workflow_dir
                .as_ref()
                .map_or_else(|| primary.join("workflows"), |w| absolute(w));
            loader.diags.push(Diagnostic {
                code: "no_workflows",
                severity: Severity::Warning,
                message: format!("no `*.workflow.yaml` files found in {}", dir.display()),
                file: loader.display(&dir, 0),
                line: None,
                column: None,
                path: None,
                hint: None,
            });
        }
        Ok((loader.project, loader.diags))
    }
}

/// `*.<suffix>` files of a directory (not recursive), sorted for a stable registry order.
fn scan(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.is_file()
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.ends_with(suffix))
        })
        .map(|p| absolute(&p))
        .collect();
    files.sort();
    files
}

impl Loader {
    fn display(&self, path: &Path, workspace: usize) -> String {
        let root = &self.project.roots[workspace];
        match path.strip_prefix(root) {
            Ok(rel) => rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy())
                .collect::<Vec<_>>()
                .join("/"),
            Err(_) => path.display().to_string(),
        }
    }

    /// Registers a file (once per canonical path) and queues it for loading.
    fn add_file(
        &mut self,
        path: PathBuf,
        kind: FileKind,
        workspace: usize,
        scanned: bool,
    ) -> FileId {
        if let Some(id) = self.by_path.get(&path) {
            return *id;
        }
        let id = self.project.files.len();
        let display = self.display(&path, workspace);
        self.project.files.push(SourceFile {
            path: path.clone(),
            display,
            kind,
            workspace,
            scanned,
        });
        self.by_path.insert(path, id);
        // Manifests and the env file are loaded ahead of the queue (see `Project::load`).
        if kind != FileKind::ServersManifest && kind != FileKind::Env {
            self.queue.push_back(Pending { id });
        }
        id
    }

    fn load_kind(&mut self, kind: FileKind) {
        let ids: Vec<FileId> = (0..self.project.files.len())
            .filter(|id| self.project.files[*id].kind == kind)
            .collect();
        for id in ids {
            self.load(id);
        }
    }

    /// Reads and parses one file; returns its reader (for decoding) and the YAML root.
    fn read(&mut self, id: FileId) -> Option<(Reader, yaml::Node)> {
        let file = &self.project.files[id];
        let mut reader = Reader::new(file.display.clone());
        let io_error = |reader: &mut Reader, message: String| {
            reader.push("io_error", Severity::Error, None, "", message, None);
        };
        match std::fs::metadata(&file.path) {
            Ok(meta) if meta.len() > MAX_FILE_BYTES => {
                io_error(
                    &mut reader,
                    format!(
                        "the file is too large ({} bytes; configuration files are limited to {} bytes)",
                        meta.len(),
                        MAX_FILE_BYTES
                    ),
                );
                self.diags.append(&mut reader.diags);
                return None;
            }
            Ok(_) => {}
            Err(e) => {
                io_error(&mut reader, format!("cannot read the file: {e}"));
                self.diags.append(&mut reader.diags);
                return None;
            }
        }
        let bytes = match std::fs::read(&file.path) {
            Ok(b) => b,
            Err(e) => {
                io_error(&mut reader, format!("cannot read the file: {e}"));
                self.diags.append(&mut reader.diags);
                return None;
            }
        };
        match yaml::parse_bytes(&bytes) {
            Ok(doc) => {
                for dup in doc.duplicate_keys {
                    let path = if dup.path.is_empty() {
                        dup.key.clone()
                    } else {
                        format!("{}.{}", dup.path, dup.key)
                    };
                    reader.error(
                        "duplicate_key",
                        dup.pos,
                        &path,
                        format!(
                            "key `{}` is repeated (first at line {})",
                            dup.key, dup.first.line
                        ),
                    );
                }
                Some((reader, doc.root))
            }
            Err(e) => {
                reader.push(
                    "yaml_syntax",
                    Severity::Error,
                    e.pos,
                    "",
                    format!("invalid YAML: {}", e.message),
                    None,
                );
                self.diags.append(&mut reader.diags);
                None
            }
        }
    }

    fn load(&mut self, id: FileId) {
        let kind = self.project.files[id].kind;
        let Some((mut r, root)) = self.read(id) else {
            return;
        };
        match kind {
            FileKind::Workflow => {
                if let Some((wf, extras)) = workflow::read_workflow(&mut r, &root) {
                    let step_targets = wf
                        .pipeline
                        .iter()
                        .map(|step| {
                            let (reference, kind) = match &step.kind {
                                super::StepKind::Agent(a) => (&a.agent, RefKind::Agent),
                                super::StepKind::Workflow(w) => (&w.workflow, RefKind::Workflow),
                                _ => return None,
                            };
                            self.follow(&mut r, id, reference, kind)
                                .and_then(|t| match t {
                                    ServerTarget::File(f) => Some(f),
                                    ServerTarget::Manifest { .. } => None,
                                })
                        })
                        .collect();
                    self.project.workflows.insert(
                        id,
                        LoadedWorkflow {
                            workflow: wf,
                            invalid_step_ids: extras.invalid_step_ids,
                            step_targets,
                        },
                    );
                }
            }
            FileKind::Agent => {
                if let Some(a) = agent::read_agent(&mut r, &root) {
                    let server_targets = a
                        .servers
                        .iter()
                        .map(|s| self.follow(&mut r, id, &s.path, RefKind::Server))
                        .collect();
                    self.project.agents.insert(
                        id,
                        LoadedAgent {
                            agent: a,
                            server_targets,
                        },
                    );
                }
            }
            FileKind::Server => {
                if let Some(s) = server::read_server_file(&mut r, &root) {
                    self.project.servers.insert(id, s);
                }
            }
            FileKind::ServersManifest => {
                if let Some(m) = server::read_manifest(&mut r, &root) {
                    let ws = self.project.files[id].workspace;
                    self.project.manifests[ws] = Some(LoadedManifest {
                        file: id,
                        manifest: m,
                    });
                }
            }
            FileKind::Gateway => {
                let env_providers = self
                    .project
                    .env_file
                    .as_ref()
                    .map(|(_, e)| e.providers.as_slice())
                    .unwrap_or_default();
                if let Some(g) =
                    gateway::read_gateway_with_env_providers(&mut r, &root, env_providers)
                {
                    let scripts: Vec<(PathBuf, Pos, String)> = g
                        .providers
                        .iter()
                        .filter_map(|p| p.config_value("script"))
                        .filter(|c| c.env_refs.is_empty())
                        .map(|c| {
                            (
                                PathBuf::from(&c.value.value),
                                c.value.pos,
                                c.value.path.clone(),
                            )
                        })
                        .collect();
                    let dir = self.project.files[id]
                        .path
                        .parent()
                        .map(Path::to_path_buf)
                        .unwrap_or_default();
                    for (script, pos, path) in scripts {
                        let full = dir.join(&script);
                        if full.is_file() {
                            let sid =
                                self.add_file(absolute(&full), FileKind::MockScript, 0, false);
                            let _ = sid;
                        } else {
                            r.error(
                                "unresolved_ref",
                                pos,
                                &path,
                                format!("mock script {} does not exist", full.display()),
                            );
                        }
                    }
                    self.project.gateway = Some((id, g));
                }
            }
            FileKind::Env => {
                if let Some(e) = gateway::read_env_file(&mut r, &root) {
                    self.project.env_file = Some((id, e));
                }
            }
            FileKind::MockScript => {
                if let Some(s) = gateway::read_mock_script(&mut r, &root) {
                    self.project.mock_scripts.push((id, s));
                }
            }
        }
        self.diags.append(&mut r.diags);
    }

    /// Resolves a reference written in file `from`, reporting at the referencing value, and
    /// queues the target.
    fn follow(
        &mut self,
        r: &mut Reader,
        from: FileId,
        reference: &super::Spanned<String>,
        kind: RefKind,
    ) -> Option<ServerTarget> {
        let file = &self.project.files[from];
        let workspace = file.workspace;
        let dir = file
            .path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let root = self.project.roots[workspace].clone();
        match resolve(&reference.value, kind, &dir, &root) {
            Resolution::Empty => {
                r.error(
                    "missing_field",
                    reference.pos,
                    &reference.path,
                    format!("the {} reference is empty", kind.noun()),
                );
                None
            }
            Resolution::ManifestEntry { name } => {
                let index = self.project.manifests[workspace]
                    .as_ref()
                    .and_then(|m| m.manifest.servers.iter().position(|s| s.name.value == name));
                match index {
                    Some(index) => Some(ServerTarget::Manifest { workspace, index }),
                    None => {
                        let why = if self.project.manifests[workspace].is_some() {
                            "servers.yaml has no entry with that name"
                        } else {
                            "the project has no servers.yaml"
                        };
                        r.error(
                            "unresolved_ref",
                            reference.pos,
                            &reference.path,
                            format!("server `{name}` not found: {why}"),
                        );
                        None
                    }
                }
            }
            Resolution::Missing { candidates } => {
                let tried = candidates
                    .iter()
                    .map(|c| c.display().to_string())
                    .collect::<Vec<_>>()
                    .join(" or ");
                let builtin = if reference.value.starts_with("ktsu/") {
                    " (there are no built-in components: `ktsu/` refs are ordinary paths)"
                } else {
                    ""
                };
                r.error(
                    "unresolved_ref",
                    reference.pos,
                    &reference.path,
                    format!(
                        "{} `{}` not found: tried {tried}{builtin}",
                        kind.noun(),
                        reference.value
                    ),
                );
                None
            }
            Resolution::WrongKind { path, found } => {
                let what = match found {
                    Some(k) => format!("a {} file", k.as_str()),
                    None => {
                        "servers.yaml (reference a manifest entry by its name instead)".to_string()
                    }
                };
                r.error(
                    "wrong_file_kind",
                    reference.pos,
                    &reference.path,
                    format!("`{}` is {what}, not a {} file", path.display(), kind.noun()),
                );
                None
            }
            Resolution::File {
                path,
                version: _,
                ambiguous_with,
            } => {
                if let Some(other) = ambiguous_with {
                    r.push(
                        "ambiguous_ref",
                        Severity::Warning,
                        Some(reference.pos),
                        &reference.path,
                        format!(
                            "`{}` matches both {} (used) and {}",
                            reference.value,
                            path.display(),
                            other.display()
                        ),
                        Some("write a path that names one file only".into()),
                    );
                }
                let id = self.add_file(path, kind.file_kind(), workspace, false);
                Some(ServerTarget::File(id))
            }
        }
    }

    /// The extra roots listed in `<project>/ktsuhub.lock.yaml` (`entries[].cache`).
    fn hub_lock_roots(&mut self, primary: &Path) -> Vec<PathBuf> {
        let lock = primary.join("ktsuhub.lock.yaml");
        if !lock.is_file() {
            return Vec::new();
        }
        let warn = |loader: &mut Loader, message: String, pos: Option<Pos>| {
            loader.diags.push(Diagnostic {
                code: "hub_lock_invalid",
                severity: Severity::Warning,
                message,
                file: "ktsuhub.lock.yaml".into(),
                line: pos.map(|p| p.line),
                column: pos.map(|p| p.column),
                path: None,
                hint: Some("its entries are ignored".into()),
            });
        };
        let parsed = std::fs::read(&lock)
            .map_err(|e| (e.to_string(), None))
            .and_then(|b| yaml::parse_bytes(&b).map_err(|e| (e.message, e.pos)));
        let doc = match parsed {
            Ok(d) => d,
            Err((message, pos)) => {
                warn(
                    self,
                    format!("the hub lock file cannot be parsed: {message}"),
                    pos,
                );
                return Vec::new();
            }
        };
        let Some(entries) = doc.root.get("entries").and_then(yaml::Node::as_seq) else {
            warn(
                self,
                "the hub lock file has no `entries` list".into(),
                Some(doc.root.pos),
            );
            return Vec::new();
        };
        let mut roots = Vec::new();
        for entry in entries {
            match entry.get("cache").and_then(yaml::Node::as_str) {
                Some(cache) => {
                    let path = expand_home(Path::new(cache));
                    let path = if path.is_absolute() {
                        path
                    } else {
                        primary.join(path)
                    };
                    roots.push(absolute(&path));
                }
                None => {
                    warn(
                        self,
                        "a hub lock entry has no `cache` directory".into(),
                        Some(entry.pos),
                    );
                    return Vec::new();
                }
            }
        }
        roots
    }
}
