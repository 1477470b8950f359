//! What `ktsu run` checks and decides before anything starts (cli-and-ops.md §1.4 steps 1–3):
//! the project, validated as `ktsu validate` does at startup; the workflow (a root one); the
//! input against its params schema; the gateway (the file, or the built-in mock); and the
//! settings of the three embedded services on loopback ports, independent of host, port, URL
//! and store variables.

use crate::embedded::{EmbeddedEnv, Plan};
use crate::exit;
use crate::output;
use crate::run::Args;
use crate::validate::env_path;
use awc::http::header::{HeaderName, HeaderValue};
use ktsu_shared::project::{AuthScheme, Project, Workflow};
use ktsu_shared::schema::apply_defaults;
use ktsu_shared::validate::{
    check_project, resolve_env_value, EnvMode, ProcessEnv, ValidateOptions,
};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// Variables the embedded services must not see: the wiring, the listeners and the store are
/// decided by `ktsu run` itself so that the main job stays self-contained.
const HIDDEN: &[&str] = &[
    "KTSU_ORCHESTRATOR_HOST",
    "KTSU_ORCHESTRATOR_PORT",
    "KTSU_RUNTIME_HOST",
    "KTSU_RUNTIME_PORT",
    "KTSU_GATEWAY_HOST",
    "KTSU_GATEWAY_PORT",
    "KTSU_OWN_URL",
    "KTSU_RUNTIME_URL",
    "KTSU_GATEWAY_URL",
    "KTSU_ORCHESTRATOR_URL",
    "KTSU_RUNTIME_ADVERTISE_URL",
    "KTSU_GATEWAY_CONFIG",
    "KTSU_STORE_TYPE",
    "KTSU_DB_PATH",
];

const LOOPBACK: &str = "127.0.0.1";
const ANY_PORT: &str = "0";

/// The request that starts the run.
pub struct Invocation {
    /// The workflow's `name:`.
    pub workflow: String,
    pub input: Value,
    /// The workflow's own `invoke.auth` header, when it declares one.
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

pub struct Prepared {
    pub plan: Plan,
    pub invocation: Invocation,
    /// Whether a gateway file (not the built-in mock) is served.
    pub uses_gateway_file: bool,
}

/// Everything before the services start; `Err` is the exit code (the reason is printed).
pub fn prepare(args: &Args, input: Value) -> Result<Prepared, u8> {
    let as_path = Path::new(&args.workflow);
    let is_path = args.workflow.ends_with(".workflow.yaml") || as_path.is_file();
    let file = if is_path {
        if !as_path.is_file() {
            output::error(format!("workflow file {} does not exist", args.workflow));
            return Err(exit::USAGE);
        }
        Some(std::fs::canonicalize(as_path).unwrap_or_else(|_| as_path.to_path_buf()))
    } else {
        None
    };
    // --project-dir wins; a path argument implies its project; a name uses the environment.
    let project_dir = args
        .project
        .project_dir
        .clone()
        .or_else(|| file.as_deref().map(crate::workflow::project_root_of))
        .or_else(|| env_path("KTSU_PROJECT_DIR"))
        .unwrap_or_else(|| PathBuf::from("."));
    let gateway_file = gateway_file(args, &project_dir);
    let mut load = args
        .project
        .load_options(Some(&project_dir), gateway_file.clone());
    // The mock serves any model group: a gateway file that is not served is not checked.
    load.gateway_config.clone_from(&gateway_file);
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
            return Err(exit::USAGE);
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
        if let Some(gateway) = &gateway_file {
            let name = gateway
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if report.errors().any(|d| d.file.ends_with(&name)) {
                eprintln!("hint: run with --mock to serve every model group with the built-in mock provider");
            }
        }
        return Err(exit::CONFIG);
    }
    let project = &report.project;
    let found = match &file {
        Some(path) => project.files.iter().position(|f| &f.path == path),
        None => project.find_workflow(&args.workflow),
    };
    let Some(wf) = found
        .and_then(|id| project.workflow(id))
        .map(|w| &w.workflow)
    else {
        match &file {
            Some(_) => output::error(format!(
                "workflow file {} is not part of the project {} (give --project-dir)",
                args.workflow,
                project_dir.display()
            )),
            None => output::error(format!("workflow \"{}\" not found", args.workflow)),
        }
        return Err(exit::USAGE);
    };
    if !wf.is_root() {
        output::error(format!(
            "workflow \"{}\" is a sub-workflow and cannot be run directly",
            wf.name.value
        ));
        return Err(exit::USAGE);
    }
    // Flag and setting problems are usage errors, reported before the input is judged.
    let plan = service_plan(args, load.clone(), gateway_file.as_deref())?;
    check_params(wf, &input)?;
    let headers = invoke_auth_header(wf, project)?;
    Ok(Prepared {
        plan,
        invocation: Invocation {
            workflow: wf.name.value.clone(),
            input,
            headers,
        },
        uses_gateway_file: gateway_file.is_some(),
    })
}

/// `--gateway-config`, else `<project>/gateway.yaml` when it exists; none with `--mock`.
fn gateway_file(args: &Args, project_dir: &Path) -> Option<PathBuf> {
    if args.mock {
        return None;
    }
    args.gateway_config.clone().or_else(|| {
        let default = project_dir.join("gateway.yaml");
        default.is_file().then_some(default)
    })
}

/// The params schema, checked here so that bad input needs no services (the orchestrator
/// checks it again and would answer the same 422).
fn check_params(wf: &Workflow, input: &Value) -> Result<(), u8> {
    let Some(schema) = &wf.params_schema else {
        return Ok(());
    };
    // The orchestrator applies defaults to its own copy; the input is sent as given.
    let mut with_defaults = input.clone();
    apply_defaults(&schema.value, &mut with_defaults);
    let Some(compiled) = &schema.compiled else {
        return Ok(());
    };
    let violations = compiled.violations(&with_defaults);
    if violations.is_empty() {
        return Ok(());
    }
    output::error(format!(
        "input does not match params.schema of workflow \"{}\" (params_invalid)",
        wf.name.value
    ));
    for v in violations {
        let pointer = if v.pointer.is_empty() {
            "(root)"
        } else {
            &v.pointer
        };
        eprintln!("  {pointer}: {}", v.message);
    }
    Err(exit::REFUSED)
}

/// The workflow's own `invoke.auth` credential, resolved like the orchestrator resolves it.
/// `ktsu run` holds the project and its secrets, so the caller's credential does not apply
/// (cli-and-ops.md §1.4 step 4): the CLI presents the workflow's.
fn invoke_auth_header(
    wf: &Workflow,
    project: &Project,
) -> Result<Vec<(HeaderName, HeaderValue)>, u8> {
    let Some(auth) = &wf.invoke_auth else {
        return Ok(Vec::new());
    };
    let env_file = project.env_file.as_ref().map(|(_, f)| f);
    let secret = auth
        .secret_env()
        .and_then(|name| wf.env.iter().find(|d| d.name.value == name))
        .and_then(|decl| resolve_env_value(decl, &ProcessEnv, env_file));
    let Some(secret) = secret else {
        return Ok(Vec::new());
    };
    let text = match auth.scheme {
        AuthScheme::Bearer => format!("Bearer {secret}"),
        AuthScheme::Raw => secret,
    };
    let header = HeaderName::from_bytes(auth.header.as_bytes()).ok();
    let value = HeaderValue::from_str(&text).ok();
    match (header, value) {
        (Some(name), Some(mut value)) => {
            value.set_sensitive(true);
            Ok(vec![(name, value)])
        }
        _ => {
            output::error(format!(
                "invoke.auth of workflow \"{}\" cannot be sent as an HTTP header",
                wf.name.value
            ));
            Err(exit::CONFIG)
        }
    }
}

/// Settings of the three services: loopback, OS-assigned ports, the validated project, the
/// gateway file or the mock, the store of `--store-type`/`--db-path` (memory by default).
fn service_plan(
    args: &Args,
    load: ktsu_shared::project::LoadOptions,
    gateway_file: Option<&Path>,
) -> Result<Plan, u8> {
    let env = EmbeddedEnv {
        hidden: HIDDEN,
        defaults: Vec::new(),
    };
    let usage = |e: ktsu_shared::service::settings::SettingError| {
        output::error(e);
        exit::USAGE
    };
    let flags = ktsu_orchestrator::Flags {
        host: Some(LOOPBACK.into()),
        port: Some(ANY_PORT.into()),
        project_dir: Some(load.project_dir.clone()),
        workflow_dir: load.workflow_dir.clone(),
        store_type: Some(args.store_type.clone().unwrap_or_else(|| "memory".into())),
        db_path: args.db_path.clone(),
        env_file: load.env_file.clone(),
        workspaces: load.workspaces.clone(),
        no_hub_lock: load.no_hub_lock,
        ..ktsu_orchestrator::Flags::default()
    };
    let mut orchestrator = ktsu_orchestrator::Settings::resolve(&flags, &env).map_err(usage)?;
    // Exactly the project that was just validated, gateway file included.
    orchestrator.load = load;
    let gateway_flags = ktsu_gateway::Flags {
        config: gateway_file.map(Path::to_path_buf),
        host: Some(LOOPBACK.into()),
        port: Some(ANY_PORT.into()),
        env_file: args.project.env_file.clone(),
        mock: args.mock,
    };
    let mut gateway = ktsu_gateway::Settings::from_flags(&gateway_flags, &env).map_err(usage)?;
    if gateway_file.is_none() {
        // Every model group the agents name is served by mock/default.
        gateway.file = ktsu_gateway::GatewayFile::MockOnly;
    }
    // One run needs no worker per core.
    gateway.workers = Some(1);
    let runtime_flags = ktsu_runtime::Flags {
        host: Some(LOOPBACK.into()),
        port: Some(ANY_PORT.into()),
        orchestrator: None,
        gateway: None,
    };
    let runtime = ktsu_runtime::Settings::from_source(&runtime_flags, &env).map_err(usage)?;
    Ok(Plan {
        gateway,
        orchestrator,
        runtime,
    })
}
