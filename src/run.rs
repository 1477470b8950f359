//! `ktsu run <workflow>` (cli-and-ops.md §1.4): resolve the project, validate it with the
//! validator of `ktsu validate`, check the input against the workflow's params schema.
//!
//! The embedded services (gateway, orchestrator, runtime) are separate crates; until they are
//! part of this binary the command stops after these checks and says so.

use crate::exit;
use crate::output;
use crate::validate::{env_path, ProjectArgs};
use clap::Args as ClapArgs;
use ktsu_shared::schema::apply_defaults;
use ktsu_shared::validate::{check_project, EnvMode, ProcessEnv, ValidateOptions};
use std::path::{Path, PathBuf};

#[derive(Debug, ClapArgs)]
pub struct Args {
    /// Path of a `*.workflow.yaml` file, or a workflow name looked up in the workflow dir.
    pub workflow: String,
    /// Run input: JSON text, `@path` or `@-` (stdin). Must be a JSON object.
    #[arg(long, default_value = "{}")]
    pub input: String,
    #[command(flatten)]
    pub project: ProjectArgs,
    /// Gateway file (default: <project>/gateway.yaml if it exists).
    #[arg(long, value_name = "FILE")]
    pub gateway_config: Option<PathBuf>,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Reads `--input` (cli-and-ops.md §1.1): JSON text, `@path` or `@-`; must be an object.
pub fn read_input(input: &str) -> Result<serde_json::Value, String> {
    let text = match input.strip_prefix('@') {
        Some("-") => {
            let mut buf = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut buf)
                .map_err(|e| format!("cannot read --input from stdin: {e}"))?;
            buf
        }
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read --input file {path}: {e}"))?,
        None => input.to_string(),
    };
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
        format!(
            "--input is not valid JSON (line {}, column {}): {e}",
            e.line(),
            e.column()
        )
    })?;
    if !value.is_object() {
        return Err("--input must be a JSON object".into());
    }
    Ok(value)
}

pub fn run(args: &Args, quiet: bool) -> u8 {
    let mut input = match read_input(&args.input) {
        Ok(v) => v,
        Err(e) => {
            output::error(e);
            return exit::USAGE;
        }
    };
    let as_path = Path::new(&args.workflow);
    let is_path = args.workflow.ends_with(".workflow.yaml") || as_path.is_file();
    let dir = if is_path {
        if !as_path.is_file() {
            output::error(format!("workflow file {} does not exist", args.workflow));
            return exit::USAGE;
        }
        let file = std::fs::canonicalize(as_path).unwrap_or_else(|_| as_path.to_path_buf());
        Some(crate::workflow::project_root_of(&file))
    } else {
        None
    };
    let dir = dir
        .or_else(|| args.project.project_dir.clone())
        .or_else(|| env_path("KTSU_PROJECT_DIR"));
    let load = args
        .project
        .load_options(dir.as_ref(), args.gateway_config.clone());
    let report = match check_project(
        &load,
        &ValidateOptions {
            env_mode: EnvMode::Startup,
            env: &ProcessEnv,
        },
    ) {
        Ok(r) => r,
        Err(e) => {
            output::error(e);
            return exit::USAGE;
        }
    };
    if report.has_errors() {
        for d in report.errors() {
            eprintln!("{d}");
        }
        output::error(format!(
            "the project has {} error(s); fix them or run `ktsu validate` for the full report",
            report.errors().count()
        ));
        return exit::CONFIG;
    }
    let project = &report.project;
    let found = if is_path {
        std::fs::canonicalize(as_path)
            .ok()
            .and_then(|p| project.files.iter().position(|f| f.path == p))
    } else {
        project.find_workflow(&args.workflow)
    };
    let Some(wf) = found
        .and_then(|id| project.workflow(id))
        .map(|w| &w.workflow)
    else {
        output::error(format!("workflow \"{}\" not found", args.workflow));
        return exit::USAGE;
    };
    if !wf.is_root() {
        output::error(format!(
            "workflow \"{}\" is a sub-workflow and cannot be run directly",
            wf.name.value
        ));
        return exit::USAGE;
    }
    if let Some(schema) = &wf.params_schema {
        apply_defaults(&schema.value, &mut input);
        if let Some(compiled) = &schema.compiled {
            let violations = compiled.violations(&input);
            if !violations.is_empty() {
                output::error(format!(
                    "params of workflow \"{}\" are invalid (params_invalid)",
                    wf.name.value
                ));
                for v in violations {
                    eprintln!(
                        "  {}: {}",
                        if v.pointer.is_empty() {
                            "(root)"
                        } else {
                            &v.pointer
                        },
                        v.message
                    );
                }
                return exit::REFUSED;
            }
        }
    }
    if args.json {
        output::print_json(&serde_json::json!({
            "workflow": wf.name.value,
            "valid": true,
            "params": input,
            "executed": false,
        }));
    } else {
        println!("Workflow  {}  valid", wf.name.value);
        println!(
            "Params    {}",
            serde_json::to_string(&input).unwrap_or_default()
        );
        println!(
            "Steps     {}",
            wf.pipeline
                .iter()
                .map(|s| s.id.value.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if !quiet {
        eprintln!("note: project and input are valid; executing runs needs the ktsu services, which this build does not include yet");
    }
    exit::OK
}
