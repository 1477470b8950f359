//! `ktsu validate` (config.md §6.4): the human report, the `--json` document and `--graph`.

use crate::exit;
use crate::output::{self, Style};
use clap::Args as ClapArgs;
use ktsu_shared::diag::{Diagnostic, Severity};
use ktsu_shared::project::deps::step_dependencies;
use ktsu_shared::project::{FileKind, LoadOptions, Project, StepKind};
use ktsu_shared::validate::{check_project, EnvMode, ProcessEnv, Report, ValidateOptions};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Debug, ClapArgs)]
pub struct Args {
    /// Project directory (takes precedence over --project-dir and KTSU_PROJECT_DIR).
    pub dir: Option<PathBuf>,
    #[command(flatten)]
    pub project: ProjectArgs,
    /// Gateway file to validate with the project (default: <project>/gateway.yaml if it exists).
    #[arg(long, value_name = "FILE")]
    pub gateway_config: Option<PathBuf>,
    /// Resolve every declared env var against the current environment; unset ones are errors.
    #[arg(long)]
    pub check_env: bool,
    /// Fail (exit 1) on warnings too.
    #[arg(long)]
    pub deny_warnings: bool,
    /// One JSON document on stdout.
    #[arg(long, conflicts_with = "graph")]
    pub json: bool,
    /// A Mermaid graph of each registry workflow instead of the report.
    #[arg(long)]
    pub graph: bool,
}

/// Project location flags shared by `validate`, `run` and `start`.
#[derive(Debug, Clone, ClapArgs)]
pub struct ProjectArgs {
    /// Project root (env KTSU_PROJECT_DIR; default `.`).
    #[arg(long, value_name = "DIR")]
    pub project_dir: Option<PathBuf>,
    /// Workflow registry directory (env KTSU_WORKFLOW_DIR; default <project>/workflows).
    #[arg(long, value_name = "DIR")]
    pub workflow_dir: Option<PathBuf>,
    /// Environment file: fallback values for declared env vars.
    #[arg(long = "env", value_name = "FILE")]
    pub env_file: Option<PathBuf>,
    /// Extra workspace root (repeatable; `~/` is expanded).
    #[arg(long = "workspace", value_name = "DIR")]
    pub workspaces: Vec<PathBuf>,
    /// Ignore <project>/ktsuhub.lock.yaml.
    #[arg(long)]
    pub no_hub_lock: bool,
}

/// An env var that counts as set only when non-empty (cli-and-ops.md §2.1).
pub fn env_path(name: &str) -> Option<PathBuf> {
    std::env::var_os(name)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

impl ProjectArgs {
    /// The load options, with flag > env > default precedence; `dir` (a positional argument)
    /// wins over both.
    pub fn load_options(&self, dir: Option<&PathBuf>, gateway: Option<PathBuf>) -> LoadOptions {
        let project_dir = dir
            .cloned()
            .or_else(|| self.project_dir.clone())
            .or_else(|| env_path("KTSU_PROJECT_DIR"))
            .unwrap_or_else(|| PathBuf::from("."));
        let gateway_config = gateway.or_else(|| {
            let default = project_dir.join("gateway.yaml");
            default.is_file().then_some(default)
        });
        LoadOptions {
            workflow_dir: self
                .workflow_dir
                .clone()
                .or_else(|| env_path("KTSU_WORKFLOW_DIR")),
            project_dir,
            workspaces: self.workspaces.clone(),
            no_hub_lock: self.no_hub_lock,
            gateway_config,
            env_file: self.env_file.clone(),
        }
    }
}

pub fn run(args: &Args) -> u8 {
    let load = args
        .project
        .load_options(args.dir.as_ref(), args.gateway_config.clone());
    let env_mode = if args.check_env {
        EnvMode::Startup
    } else if args.project.env_file.is_some() {
        EnvMode::Strict
    } else {
        EnvMode::Lenient
    };
    let report = match check_project(
        &load,
        &ValidateOptions {
            env_mode,
            env: &ProcessEnv,
        },
    ) {
        Ok(r) => r,
        Err(e) => {
            output::error(e);
            return exit::USAGE;
        }
    };
    let failed = report.has_errors() || (args.deny_warnings && report.has_warnings());
    let shown_dir = load.project_dir.display().to_string();
    if args.json {
        output::print_json(&json_report(&report, &shown_dir, !failed));
    } else if args.graph {
        print_graph(&report);
        for d in &report.diagnostics {
            eprintln!("{}", line(d, Style { enabled: false }));
        }
    } else {
        print_human(
            &report,
            &shown_dir,
            Style {
                enabled: output::stdout_colour(),
            },
        );
    }
    if failed {
        exit::FAILURE
    } else {
        exit::OK
    }
}

/// The report groups of config.md §6.4.
fn group_of(kind: FileKind) -> usize {
    match kind {
        FileKind::Workflow => 0,
        FileKind::Agent => 1,
        FileKind::Server => 2,
        FileKind::ServersManifest | FileKind::Gateway | FileKind::Env | FileKind::MockScript => 3,
    }
}

const GROUPS: [&str; 4] = ["Workflows", "Agents", "Servers", "Systems"];

/// `- <file>:<line>:<col>: <message> [<code>]` (`!` for warnings).
fn line(d: &Diagnostic, style: Style) -> String {
    let mark = if d.is_error() {
        style.red("-")
    } else {
        style.yellow("!")
    };
    format!("{mark} {}: {} [{}]", d.location_prefix(), d.message, d.code)
}

/// Diagnostics by file display path, plus the ones about no listed file.
fn by_file(report: &Report) -> (BTreeMap<&str, Vec<&Diagnostic>>, Vec<&Diagnostic>) {
    let mut map: BTreeMap<&str, Vec<&Diagnostic>> = BTreeMap::new();
    let mut loose = Vec::new();
    for d in &report.diagnostics {
        if report.project.files.iter().any(|f| f.display == d.file) {
            map.entry(d.file.as_str()).or_default().push(d);
        } else {
            loose.push(d);
        }
    }
    (map, loose)
}

fn print_human(report: &Report, shown_dir: &str, style: Style) {
    let (diags, loose) = by_file(report);
    let project = &report.project;
    let mut out = String::new();
    let (mut total, mut valid) = (0usize, 0usize);
    for (ws, root) in project.roots.iter().enumerate() {
        let title = if ws == 0 {
            format!("Project {shown_dir}")
        } else {
            format!("Workspace {}", root.display())
        };
        if ws > 0 && !project.files.iter().any(|f| f.workspace == ws) {
            continue;
        }
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(&style.bold(&title));
        out.push('\n');
        if ws == 0 {
            for d in &loose {
                out.push_str(&format!("  {}\n", line(d, style)));
                if let Some(h) = &d.hint {
                    out.push_str(&format!("    hint: {h}\n"));
                }
            }
        }
        out.push('\n');
        for (g, group) in GROUPS.iter().enumerate() {
            let mut files: Vec<_> = project
                .files
                .iter()
                .filter(|f| f.workspace == ws && group_of(f.kind) == g)
                .collect();
            if files.is_empty() {
                continue;
            }
            files.sort_by(|a, b| a.display.cmp(&b.display));
            out.push_str(group);
            out.push('\n');
            for f in files {
                let list = diags.get(f.display.as_str()).cloned().unwrap_or_default();
                let ok = !list.iter().any(|d| d.is_error());
                total += 1;
                valid += usize::from(ok);
                let status = if ok {
                    style.green("OKAY")
                } else {
                    style.red("FAIL")
                };
                out.push_str(&format!("  {status} {}\n", f.display));
                for d in list {
                    out.push_str(&format!("    {}\n", line(d, style)));
                    if let Some(h) = &d.hint {
                        out.push_str(&format!("      hint: {h}\n"));
                    }
                }
            }
        }
    }
    out.push_str(&format!(
        "\nSummary: {total} total, {valid} valid, {} invalid\n",
        total - valid
    ));
    print!("{out}");
}

fn json_report(report: &Report, shown_dir: &str, valid: bool) -> serde_json::Value {
    let (diags, loose) = by_file(report);
    let project = &report.project;
    let mut files: Vec<_> = project.files.iter().collect();
    files.sort_by(|a, b| (a.workspace, &a.display).cmp(&(b.workspace, &b.display)));
    let mut entries = Vec::new();
    let mut valid_count = 0;
    for f in &files {
        let list = diags.get(f.display.as_str()).cloned().unwrap_or_default();
        let errors: Vec<&Diagnostic> = list.iter().copied().filter(|d| d.is_error()).collect();
        let warnings: Vec<&Diagnostic> = list
            .iter()
            .copied()
            .filter(|d| d.severity == Severity::Warning)
            .collect();
        valid_count += usize::from(errors.is_empty());
        let mut entry = json!({
            "kind": f.kind.as_str(),
            "path": f.display,
            "valid": errors.is_empty(),
            "errors": errors,
            "warnings": warnings,
        });
        if f.workspace > 0 {
            entry["workspace"] = json!(project.roots[f.workspace].display().to_string());
        }
        entries.push(entry);
    }
    let mut doc = json!({
        "project_dir": shown_dir,
        "valid": valid,
        "summary": {"total": files.len(), "valid": valid_count, "invalid": files.len() - valid_count},
        "files": entries,
    });
    if !loose.is_empty() {
        doc["diagnostics"] = json!(loose);
    }
    doc
}

/// `--graph`: one Mermaid block per registry workflow.
fn print_graph(report: &Report) {
    let project: &Project = &report.project;
    let mut out = String::new();
    for id in &project.registry {
        let file = &project.files[*id];
        out.push_str(&format!("%% {}\ngraph TD\n", file.display));
        let Some(lw) = project.workflow(*id) else {
            out.push('\n');
            continue;
        };
        let failed: Vec<&str> = report
            .diagnostics
            .iter()
            .filter(|d| d.file == file.display && d.is_error())
            .filter_map(|d| d.path.as_deref())
            .collect();
        for step in &lw.workflow.pipeline {
            let kind = if step.is_approval_hook() {
                "approval"
            } else {
                match step.kind {
                    StepKind::Agent(_) => "agent",
                    StepKind::Transform(_) => "transform",
                    StepKind::Webhook(_) => "webhook",
                    StepKind::Workflow(_) => "workflow",
                }
            };
            let broken = failed
                .iter()
                .any(|p| *p == step.path || p.starts_with(&format!("{}.", step.path)));
            let id = &step.id.value;
            out.push_str(&format!(
                "  {id}[\"{id} [{kind}]\"]{}\n",
                if broken { ":::failed" } else { "" }
            ));
        }
        for (id, deps) in step_dependencies(&lw.workflow) {
            for dep in deps {
                out.push_str(&format!("  {dep} --> {id}\n"));
            }
        }
        for step in lw.workflow.pipeline.iter().filter(|s| s.is_approval_hook()) {
            for watched in &step.depends_on {
                out.push_str(&format!("  {} -.-> {}\n", watched.value, step.id.value));
            }
        }
        out.push('\n');
    }
    print!("{out}");
}
