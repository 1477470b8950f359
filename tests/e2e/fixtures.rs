//! A small project written to a temporary directory, with workflows shaped for the end-to-end
//! scenarios: a three-agent chain whose middle step is slow (recovery), a step that never
//! answers in time (supervision, cancel), a priced model with a tiny budget, and a secret that
//! flows env → workflow → agent param and into a webhook header (the canary).

use std::path::Path;
use tempfile::TempDir;

/// The secret value the canary test looks for in every log line and record.
pub const CANARY: &str = "canary-7f3e9d1c5b2a4e80-s3cret";

const GATEWAY: &str = r#"kind: gateway
env:
  - { name: CANARY_SECRET, secret: true }
providers:
  - name: leaky
    type: openai
    config: { base_url: "http://127.0.0.1:9/v1", api_key: "{{ env.CANARY_SECRET }}" }
  - name: mock
    type: mock
    config: { script: mock-script.yaml }
model_groups:
  - name: standard
    models: [mock/default]
  - name: unreachable
    models: [leaky/gpt-4.1-mini]
  - name: priced
    models: [mock/priced]
    pricing:
      - { model: priced, input_per_million: 100000, output_per_million: 100000 }
"#;

const SCRIPT: &str = r#"rules:
  - match: { step_id: slow }
    reply: { generate: true, latency_ms: 3000 }
  - match: { step_id: stuck }
    reply: { generate: true, latency_ms: 60000 }
"#;

const WORKER: &str = r#"kind: agent
name: worker
model: standard
max_turns: 2
params:
  schema:
    type: object
    properties:
      n: { type: integer }
      key: { type: string, secret: true }
prompt:
  system: You do one unit of work. Answer with one JSON object only.
  user: "Unit {{ params.n }}"
output:
  schema:
    type: object
    required: [done]
    properties:
      done: { type: string }
"#;

const CHAIN: &str = r#"kind: workflow
name: chain
params: { schema: { type: object } }
pipeline:
  - id: first
    agent: agents/worker.agent.yaml
    params: { n: 1 }
  - id: slow
    agent: agents/worker.agent.yaml
    params: { n: 2 }
    depends_on: [first]
  - id: last
    agent: agents/worker.agent.yaml
    params: { n: 3 }
    depends_on: [slow]
"#;

const STUCK: &str = r#"kind: workflow
name: stuck
params: { schema: { type: object } }
pipeline:
  - id: stuck
    agent: agents/worker.agent.yaml
    params: { n: 1 }
"#;

const BUDGET: &str = r#"kind: workflow
name: budget
params: { schema: { type: object } }
pipeline:
  - id: spend
    agent: agents/worker.agent.yaml
    params: { n: 1 }
    model: { group: priced }
model_policy: { cost_budget_usd: 0.000001 }
"#;

const CANARY_WF: &str = r#"kind: workflow
name: canary
env:
  - { name: CANARY_SECRET, secret: true }
params:
  schema:
    type: object
    required: [hook]
    properties:
      hook: { type: string }
pipeline:
  - id: use-secret
    agent: agents/worker.agent.yaml
    params: { n: 1, key: "{{ env.CANARY_SECRET }}" }
  - id: notify
    webhook:
      url: "{{ params.hook }}?key={{ env.CANARY_SECRET }}"
      headers: { Authorization: "Bearer {{ env.CANARY_SECRET }}" }
      body: { done: "{{ step.use-secret.done }}" }
"#;

const CANARY_FAIL: &str = r#"kind: workflow
name: canary-fail
env:
  - { name: CANARY_SECRET, secret: true }
params: { schema: { type: object } }
pipeline:
  - id: leak
    webhook:
      url: "http://127.0.0.1:9/hook/{{ env.CANARY_SECRET }}"
      body: { x: 1 }
      max_attempts: 1
      timeout_s: 2
"#;

/// Writes the project; the directory lives as long as the returned handle.
pub fn project() -> TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let files = [
        ("gateway.yaml", GATEWAY),
        ("mock-script.yaml", SCRIPT),
        ("agents/worker.agent.yaml", WORKER),
        ("workflows/chain.workflow.yaml", CHAIN),
        ("workflows/stuck.workflow.yaml", STUCK),
        ("workflows/budget.workflow.yaml", BUDGET),
        ("workflows/canary.workflow.yaml", CANARY_WF),
        ("workflows/canary-fail.workflow.yaml", CANARY_FAIL),
    ];
    for (name, text) in files {
        write(dir.path(), name, text);
    }
    dir
}

fn write(root: &Path, name: &str, text: &str) {
    let path = root.join(name);
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, text).expect("write fixture");
}
