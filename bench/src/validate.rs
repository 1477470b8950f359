//! Validation benchmark: how long `ktsu validate` takes on a large project.
//!
//! Generates a project of 200 workflows and 400 agents (each workflow: two agent steps, a
//! fan-out, a transform, a conditional webhook; each agent: a params schema, prompts, a tool
//! server with an allowlist, an output schema) in a temporary directory, then loads and
//! validates it repeatedly with the same function the services call at startup.
//!
//!     cargo run --release -p ktsu-bench --bin bench-validate [-- --workflows 200 --agents 400 --runs 20]

use ktsu_bench::number;
use ktsu_shared::project::LoadOptions;
use ktsu_shared::validate::{check_project, EnvMode, ValidateOptions};
use std::collections::HashMap;
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

fn write(root: &Path, rel: &str, content: &str) -> std::io::Result<()> {
    let path = root.join(rel);
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)?;
    }
    fs::write(path, content)
}

fn generate(root: &Path, workflows: usize, agents: usize) -> std::io::Result<()> {
    write(
        root,
        "gateway.yaml",
        "providers:\n  - { name: mock, type: mock }\nmodel_groups:\n  - { name: standard, models: [mock/default] }\n  - { name: economy, models: [mock/fast] }\n",
    )?;
    write(
        root,
        "servers/tools.server.yaml",
        "name: tools\nurl: http://127.0.0.1:9/mcp\nparams:\n  token: { secret: true }\n  region: { default: eu }\nauth: { header: X-Key, scheme: raw, secret: \"{{ params.token }}\" }\n",
    )?;
    for a in 0..agents {
        write(
            root,
            &format!("agents/agent-{a}.agent.yaml"),
            &format!(
                "kind: agent\nname: agent-{a}\nmodel: {}\nmax_turns: 6\nparams:\n  schema:\n    type: object\n    required: [text]\n    properties:\n      text: {{ type: string, minLength: 1 }}\n      token: {{ type: string, secret: true }}\n      style: {{ type: string, enum: [short, long], default: short }}\n      limit: {{ type: integer, minimum: 1, default: 5 }}\nprompt:\n  system: |\n    You are agent {a}. Answer with one JSON object only.\n  user: |\n    Style: {{{{ params.style }}}} (limit {{{{ params.limit }}}})\n    Text: {{{{ params.text }}}}\n  reflect: Check your answer again.\nservers:\n  - path: ../servers/tools.server.yaml\n    params: {{ token: \"{{{{ params.token }}}}\" }}\n    access:\n      allowlist:\n        - search\n        - read_*\n        - name: delete_*\n          require_approval: {{ on_reject: recover, timeout: 10m }}\noutput:\n  schema:\n    type: object\n    required: [label, items]\n    properties:\n      label: {{ type: string, enum: [a, b, c] }}\n      items: {{ type: array, items: {{ type: object, required: [url], properties: {{ url: {{ type: string }}, score: {{ type: number }} }} }} }}\n      ktsu_confidence: {{ type: number, minimum: 0, maximum: 1 }}\n",
                if a % 2 == 0 { "standard" } else { "economy" }
            ),
        )?;
    }
    for w in 0..workflows {
        let a1 = (2 * w) % agents;
        let a2 = (2 * w + 1) % agents;
        write(
            root,
            &format!("workflows/flow-{w}.workflow.yaml"),
            &format!(
                "kind: workflow\nname: flow-{w}\nversion: \"1.0.{w}\"\nenv:\n  - {{ name: TOOL_TOKEN, secret: true }}\n  - {{ name: HOOK_URL, default: \"http://127.0.0.1:9/hook\" }}\nparams:\n  schema:\n    type: object\n    required: [text]\n    properties:\n      text: {{ type: string }}\n      mode: {{ type: string, default: fast }}\npipeline:\n  - id: first\n    agent: agents/agent-{a1}.agent.yaml\n    params: {{ text: \"{{{{ params.text }}}}\", token: \"{{{{ env.TOOL_TOKEN }}}}\" }}\n    confidence_threshold: 0.5\n  - id: each-item\n    agent: agents/agent-{a2}.agent.yaml\n    for_each: {{ from: step.first.items, max_items: 10, concurrency: 4 }}\n    params: {{ text: \"{{{{ item.url }}}}\", limit: \"{{{{ item_index }}}}\", token: \"{{{{ env.TOOL_TOKEN }}}}\" }}\n  - id: best\n    transform:\n      inputs: [ {{ from: \"{{{{ step.each-item.results }}}}\" }} ]\n      ops:\n        - filter: {{ expr: \"label == 'a'\" }}\n        - sort: {{ field: label, order: desc }}\n  - id: notify\n    condition: \"step.first.label != 'c'\"\n    webhook:\n      url: \"{{{{ env.HOOK_URL }}}}\"\n      body: {{ text: \"Flow {w}: {{{{ step.first.label }}}}\", best: \"{{{{ step.best.result }}}}\" }}\noutput:\n  map: {{ label: \"{{{{ step.first.label }}}}\", best: \"{{{{ step.best.result }}}}\" }}\n"
            ),
        )?;
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    let workflows = number("--workflows", 200);
    let agents = number("--agents", 400);
    let runs = number("--runs", 20).max(1);
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: cannot create a temporary directory: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    if let Err(e) = generate(dir.path(), workflows, agents) {
        eprintln!("error: cannot write the project: {e}");
        return std::process::ExitCode::FAILURE;
    }
    let load = LoadOptions {
        project_dir: dir.path().to_path_buf(),
        gateway_config: Some(dir.path().join("gateway.yaml")),
        ..LoadOptions::default()
    };
    let env: HashMap<String, String> =
        [("TOOL_TOKEN".to_string(), "bench-token".to_string())].into();
    let opts = ValidateOptions {
        env_mode: EnvMode::Strict,
        env: &env,
    };
    let mut times: Vec<Duration> = Vec::with_capacity(runs);
    let mut files = 0;
    for _ in 0..runs {
        let start = Instant::now();
        let report = match check_project(&load, &opts) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("error: {e}");
                return std::process::ExitCode::FAILURE;
            }
        };
        times.push(start.elapsed());
        if report.has_errors() {
            for d in report.errors().take(5) {
                eprintln!("unexpected: {d}");
            }
            return std::process::ExitCode::FAILURE;
        }
        files = report.project.files.len();
    }
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "validate: {workflows} workflows, {agents} agents, {files} files; {runs} runs: min {:.1} ms, median {:.1} ms, max {:.1} ms",
        ms(times[0]),
        ms(times[times.len() / 2]),
        ms(times[times.len() - 1])
    );
    std::process::ExitCode::SUCCESS
}
