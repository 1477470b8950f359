//! `ktsu workflow tree <file>` (cli-and-ops.md §1.9): the workflow and, recursively, its
//! sub-workflows, agents and tool servers, resolved with the rule of config.md §1.2.

use crate::exit;
use crate::output;
use clap::{Args as ClapArgs, Subcommand};
use ktsu_shared::project::decode::{agent, workflow};
use ktsu_shared::project::read::Reader;
use ktsu_shared::project::resolve::{resolve, RefKind, Resolution};
use ktsu_shared::project::StepKind;
use ktsu_shared::yaml;
use serde_json::json;
use std::collections::HashSet;
use std::path::{Path, PathBuf};

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print a workflow's tree of sub-workflows, agents and tool servers.
    Tree(TreeArgs),
}

#[derive(Debug, ClapArgs)]
pub struct TreeArgs {
    /// A `*.workflow.yaml` file.
    pub file: PathBuf,
    /// Project root used to resolve references (default: parent of the file's `workflows/`
    /// directory, else the file's directory).
    #[arg(long, value_name = "DIR")]
    pub project_dir: Option<PathBuf>,
    /// Print the tree as nested JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(cmd: &Command) -> u8 {
    match cmd {
        Command::Tree(args) => tree(args),
    }
}

/// One node of the tree.
#[derive(Debug)]
struct Node {
    label: String,
    path: Option<PathBuf>,
    kind: &'static str,
    unresolved: bool,
    children: Vec<Node>,
}

impl Node {
    /// `workflow`, `agent`, `server`, or `unresolved` for a reference that cannot be loaded.
    fn tag(&self) -> &'static str {
        if self.unresolved {
            "unresolved"
        } else {
            self.kind
        }
    }
}

/// The project root implied by a workflow file path (cli-and-ops.md §1.4).
pub fn project_root_of(file: &Path) -> PathBuf {
    let dir = file.parent().map(Path::to_path_buf).unwrap_or_default();
    if dir.file_name().is_some_and(|n| n == "workflows") {
        dir.parent().map(Path::to_path_buf).unwrap_or(dir)
    } else {
        dir
    }
}

fn tree(args: &TreeArgs) -> u8 {
    let Ok(file) = std::fs::canonicalize(&args.file) else {
        output::error(format!(
            "workflow file {} does not exist",
            args.file.display()
        ));
        return exit::FAILURE;
    };
    let root_dir = args
        .project_dir
        .as_ref()
        .and_then(|p| std::fs::canonicalize(p).ok())
        .unwrap_or_else(|| project_root_of(&file));
    let mut seen = HashSet::new();
    let Some(node) = build(&file, "workflow", &root_dir, &mut seen, true) else {
        output::error(format!("cannot load workflow {}", args.file.display()));
        return exit::FAILURE;
    };
    if args.json {
        output::print_json(&to_json(&node));
    } else {
        let mut out = format!("{} ({})\n", node.label, node.tag());
        print_children(&node.children, "", &mut out);
        print!("{out}");
    }
    exit::OK
}

fn print_children(children: &[Node], indent: &str, out: &mut String) {
    for (i, child) in children.iter().enumerate() {
        let last = i + 1 == children.len();
        out.push_str(&format!(
            "{indent}{}{} ({})\n",
            if last { "└── " } else { "├── " },
            child.label,
            child.tag()
        ));
        let next = format!("{indent}{}", if last { "    " } else { "│   " });
        print_children(&child.children, &next, out);
    }
}

fn to_json(node: &Node) -> serde_json::Value {
    let mut v = json!({
        "path": node.path.as_ref().map_or_else(|| node.label.clone(), |p| p.display().to_string()),
        "kind": node.kind,
    });
    if node.unresolved {
        v["unresolved"] = json!(true);
    }
    if !node.children.is_empty() {
        v["children"] = node.children.iter().map(to_json).collect();
    }
    v
}

fn basename(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Loads `path` as `kind` and builds its node; None when the file cannot be read.
fn build(
    path: &Path,
    kind: &'static str,
    root: &Path,
    seen: &mut HashSet<PathBuf>,
    is_root: bool,
) -> Option<Node> {
    let mut node = Node {
        label: basename(path),
        path: Some(path.to_path_buf()),
        kind,
        unresolved: false,
        children: Vec::new(),
    };
    // A node seen before is printed again without children.
    if !seen.insert(path.to_path_buf()) {
        return Some(node);
    }
    let bytes = std::fs::read(path).ok()?;
    let doc = yaml::parse_bytes(&bytes).ok()?;
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut reader = Reader::new(path.display().to_string());
    match kind {
        "workflow" => {
            let Some((wf, _)) = workflow::read_workflow(&mut reader, &doc.root) else {
                return if is_root { None } else { Some(node) };
            };
            for step in &wf.pipeline {
                let (reference, ref_kind, child_kind) = match &step.kind {
                    StepKind::Agent(a) => (&a.agent.value, RefKind::Agent, "agent"),
                    StepKind::Workflow(w) => (&w.workflow.value, RefKind::Workflow, "workflow"),
                    _ => continue,
                };
                node.children
                    .push(child(reference, ref_kind, child_kind, &dir, root, seen));
            }
        }
        "agent" => {
            if let Some(a) = agent::read_agent(&mut reader, &doc.root) {
                for s in &a.servers {
                    node.children.push(child(
                        &s.path.value,
                        RefKind::Server,
                        "server",
                        &dir,
                        root,
                        seen,
                    ));
                }
            }
        }
        _ => {}
    }
    Some(node)
}

fn child(
    reference: &str,
    ref_kind: RefKind,
    kind: &'static str,
    dir: &Path,
    root: &Path,
    seen: &mut HashSet<PathBuf>,
) -> Node {
    let unresolved = || Node {
        label: reference.to_string(),
        path: None,
        kind,
        unresolved: true,
        children: Vec::new(),
    };
    match resolve(reference, ref_kind, dir, root) {
        Resolution::File { path, .. } => {
            build(&path, kind, root, seen, false).unwrap_or_else(unresolved)
        }
        Resolution::ManifestEntry { name } => {
            let manifest = root.join("servers.yaml");
            if manifest.is_file() {
                Node {
                    label: format!("servers.yaml#{name}"),
                    path: Some(manifest),
                    kind,
                    unresolved: false,
                    children: Vec::new(),
                }
            } else {
                unresolved()
            }
        }
        _ => unresolved(),
    }
}
