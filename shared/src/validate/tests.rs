//! One broken project (or snippet) per check code, asserting the code, the file and the line,
//! plus accepted counterparts. Fixtures are written to temporary directories.

use super::*;
use std::collections::HashMap;
use std::fs;
use std::path::Path;

const WORKFLOW: &str = r#"kind: workflow
name: main
env:
  - { name: API_KEY, secret: true }
  - { name: REGION, default: eu }
params:
  schema:
    type: object
    properties:
      q: { type: string }
pipeline:
  - id: call
    agent: agents/caller.agent.yaml
    params: { api_key: "{{ env.API_KEY }}", q: "{{ params.q }}" }
"#;

const AGENT: &str = r#"name: caller
model: standard
params:
  schema:
    type: object
    properties:
      api_key: { type: string, secret: true }
      q: { type: string }
prompt:
  system: You help.
  user: "Question: {{ params.q }}"
servers:
  - path: ../servers/svc.server.yaml
    params: { token: "{{ params.api_key }}" }
output:
  schema:
    type: object
    properties:
      a: { type: string }
"#;

const SERVER: &str = r#"name: svc
url: http://127.0.0.1:9/mcp
params:
  token: { secret: true }
auth: { secret: "{{ params.token }}" }
"#;

const GATEWAY: &str = r#"providers:
  - { name: mock, type: mock }
model_groups:
  - { name: standard, models: [mock/default] }
"#;

/// A project on disk: the base files with some replaced, added or removed (empty content).
struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new(overrides: &[(&str, &str)]) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let mut files: Vec<(&str, &str)> = vec![
            ("workflows/main.workflow.yaml", WORKFLOW),
            ("agents/caller.agent.yaml", AGENT),
            ("servers/svc.server.yaml", SERVER),
            ("gateway.yaml", GATEWAY),
        ];
        for (path, content) in overrides {
            files.retain(|(p, _)| p != path);
            files.push((path, content));
        }
        for (path, content) in files {
            if content.is_empty() {
                continue;
            }
            let full = dir.path().join(path);
            fs::create_dir_all(full.parent().unwrap()).unwrap();
            fs::write(full, content).unwrap();
        }
        Fixture { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn options(&self) -> LoadOptions {
        let gateway = self.path().join("gateway.yaml");
        LoadOptions {
            project_dir: self.path().to_path_buf(),
            gateway_config: gateway.is_file().then_some(gateway),
            ..LoadOptions::default()
        }
    }

    fn check_with(&self, load: &LoadOptions, mode: EnvMode, env: &[(&str, &str)]) -> Report {
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        check_project(
            load,
            &ValidateOptions {
                env_mode: mode,
                env: &env,
            },
        )
        .unwrap()
    }

    fn check(&self) -> Report {
        self.check_with(
            &self.options(),
            EnvMode::Lenient,
            &[("API_KEY", "secret-value")],
        )
    }
}

/// The 1-based line of the first line of `content` containing `marker`.
fn line_of(content: &str, marker: &str) -> u32 {
    let i = content
        .lines()
        .position(|l| l.contains(marker))
        .unwrap_or_else(|| panic!("marker {marker:?} not in fixture"));
    u32::try_from(i + 1).unwrap()
}

fn dump(report: &Report) -> String {
    report
        .diagnostics
        .iter()
        .map(|d| format!("  {d}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Asserts a diagnostic with `code` in `file` at the line holding `marker`.
#[track_caller]
fn expect(report: &Report, code: &str, file: &str, content: &str, marker: &str) {
    let line = line_of(content, marker);
    assert!(
        report
            .diagnostics
            .iter()
            .any(|d| d.code == code && d.file == file && d.line == Some(line)),
        "expected [{code}] in {file}:{line}; got:\n{}",
        dump(report)
    );
}

/// Asserts a diagnostic with `code` in `file` (file-level findings have no line).
#[track_caller]
fn expect_in_file(report: &Report, code: &str, file: &str) {
    assert!(
        report
            .diagnostics
            .iter()
            .any(|d| d.code == code && d.file == file),
        "expected [{code}] in {file}; got:\n{}",
        dump(report)
    );
}

#[track_caller]
fn expect_clean(report: &Report) {
    assert!(
        report.diagnostics.is_empty(),
        "expected no diagnostics; got:\n{}",
        dump(report)
    );
}

#[track_caller]
fn expect_no(report: &Report, code: &str) {
    assert!(
        !report.diagnostics.iter().any(|d| d.code == code),
        "did not expect [{code}]; got:\n{}",
        dump(report)
    );
}

const WF: &str = "workflows/main.workflow.yaml";
const AG: &str = "agents/caller.agent.yaml";
const SV: &str = "servers/svc.server.yaml";

/// A workflow fixture with the given pipeline (and the base header).
fn workflow_with(pipeline: &str) -> String {
    format!(
        "kind: workflow\nname: main\nenv:\n  - {{ name: API_KEY, secret: true }}\n  - {{ name: REGION, default: eu }}\nparams:\n  schema:\n    type: object\n    properties:\n      q: {{ type: string }}\npipeline:\n{pipeline}"
    )
}

const CALL: &str = "  - id: call\n    agent: agents/caller.agent.yaml\n    params: { api_key: \"{{ env.API_KEY }}\", q: \"{{ params.q }}\" }\n";

#[test]
fn the_base_project_is_clean() {
    expect_clean(&Fixture::new(&[]).check());
}

#[test]
fn examples_validate() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    for name in ["hello", "support-triage"] {
        let dir = root.join(name);
        let load = LoadOptions {
            gateway_config: Some(dir.join("gateway.yaml")),
            env_file: (name == "support-triage").then(|| dir.join("environments/dev.env.yaml")),
            project_dir: dir,
            ..LoadOptions::default()
        };
        let report = check_project(
            &load,
            &ValidateOptions {
                env_mode: EnvMode::Strict,
                env: &HashMap::new(),
            },
        )
        .unwrap();
        expect_clean(&report);
    }
}

// ---- file-level checks -------------------------------------------------------------------

#[test]
fn io_error_for_an_oversized_file() {
    let f = Fixture::new(&[]);
    let big = "# padding\n".repeat(1_100_000);
    fs::write(f.path().join("agents/big.agent.yaml"), big).unwrap();
    let r = f.check();
    let d = r
        .diagnostics
        .iter()
        .find(|d| d.code == "io_error")
        .expect("io_error");
    assert_eq!(d.file, "agents/big.agent.yaml");
    assert_eq!(d.line, None);
}

#[test]
fn yaml_syntax_empty_multi_document_and_binary() {
    let bad = "kind: workflow\nname: a: b\npipeline: []\n";
    let r = Fixture::new(&[(WF, bad)]).check();
    expect(&r, "yaml_syntax", WF, bad, "name: a: b");
    // only that diagnostic for the file: no cascades
    assert_eq!(
        r.diagnostics.iter().filter(|d| d.file == WF).count(),
        1,
        "{}",
        dump(&r)
    );

    let r = Fixture::new(&[(AG, "# nothing here\n")]).check();
    expect_in_file(&r, "yaml_syntax", AG);

    let two = format!("{AGENT}---\nname: other\n");
    let r = Fixture::new(&[(AG, &two)]).check();
    expect(&r, "yaml_syntax", AG, &two, "---");

    let f = Fixture::new(&[]);
    fs::write(f.path().join(SV), b"name: svc\nurl: \xff\xfe\x00\x01\n").unwrap();
    let r = f.check();
    let d = r
        .diagnostics
        .iter()
        .find(|d| d.code == "yaml_syntax" && d.file == SV)
        .expect("binary");
    assert_eq!(d.line, Some(2));
}

#[test]
fn duplicate_key() {
    let wf = WORKFLOW.replace("name: main\n", "name: main\nname: again\n");
    let r = Fixture::new(&[(WF, &wf)]).check();
    expect(&r, "duplicate_key", WF, &wf, "name: again");
}

#[test]
fn unknown_field_with_hint() {
    let wf = workflow_with(&format!("{CALL}    dependson: [x]\n"));
    let r = Fixture::new(&[(WF, &wf)]).check();
    expect(&r, "unknown_field", WF, &wf, "dependson");
    let d = r
        .diagnostics
        .iter()
        .find(|d| d.code == "unknown_field")
        .unwrap();
    assert_eq!(d.hint.as_deref(), Some("did you mean `depends_on`?"));
    assert_eq!(d.path.as_deref(), Some("pipeline[0].dependson"));
    assert_eq!(d.column, Some(5));
}

#[test]
fn missing_field_and_agent_without_output_schema() {
    let wf = "kind: workflow\npipeline: []\n";
    let r = Fixture::new(&[(WF, wf)]).check();
    expect(&r, "missing_field", WF, wf, "kind: workflow");

    let agent = AGENT.replace(
        "output:\n  schema:\n    type: object\n    properties:\n      a: { type: string }\n",
        "",
    );
    let r = Fixture::new(&[(AG, &agent)]).check();
    let d = r
        .diagnostics
        .iter()
        .find(|d| d.code == "missing_field" && d.file == AG)
        .expect("missing output");
    assert!(d.message.contains("no output schema"), "{}", d.message);
}

#[test]
fn type_mismatch_and_invalid_value() {
    let wf = workflow_with(&format!(
        "{CALL}    timeout_s: \"10\"\n    model: {{ max_tokens: 1.5 }}\n"
    ));
    let r = Fixture::new(&[(WF, &wf)]).check();
    expect(&r, "type_mismatch", WF, &wf, "timeout_s: \"10\"");
    expect(&r, "type_mismatch", WF, &wf, "max_tokens: 1.5");

    let wf = WORKFLOW
        .replace("kind: workflow", "kind: workflw")
        .replace("name: main", "name: main\nvisibility: public");
    let r = Fixture::new(&[(WF, &wf)]).check();
    expect(&r, "invalid_value", WF, &wf, "kind: workflw");
    expect(&r, "invalid_value", WF, &wf, "visibility: public");

    let wf = workflow_with(&format!("{CALL}    confidence_threshold: 1.5\n"));
    let r = Fixture::new(&[(WF, &wf)]).check();
    expect(&r, "invalid_value", WF, &wf, "confidence_threshold");
}

#[test]
fn version_as_number_is_a_string() {
    let wf = WORKFLOW.replace("name: main", "name: main\nversion: 1.0");
    expect_clean(&Fixture::new(&[(WF, &wf)]).check());
}

#[test]
fn duplicate_names() {
    let wf = WORKFLOW.replace(
        "  - { name: REGION, default: eu }",
        "  - { name: REGION, default: eu }\n  - { name: REGION }",
    );
    let r = Fixture::new(&[(WF, &wf)]).check();
    expect(&r, "duplicate_name", WF, &wf, "  - { name: REGION }");

    let other = WORKFLOW.replace("kind: workflow", "kind: workflow # twin");
    let r = Fixture::new(&[("workflows/other.workflow.yaml", &other)]).check();
    expect(
        &r,
        "duplicate_name",
        "workflows/other.workflow.yaml",
        &other,
        "name: main",
    );

    let gw = "providers:\n  - { name: mock, type: mock }\n  - { name: mock, type: mock, timeout_s: 5 }\nmodel_groups:\n  - { name: standard, models: [mock/a] }\n  - { name: standard, models: [mock/b] }\n";
    let r = Fixture::new(&[("gateway.yaml", gw)]).check();
    expect(&r, "duplicate_name", "gateway.yaml", gw, "timeout_s: 5");
    expect(&r, "duplicate_name", "gateway.yaml", gw, "mock/b");
    assert_eq!(
        r.diagnostics
            .iter()
            .filter(|d| d.code == "duplicate_name")
            .count(),
        2,
        "{}",
        dump(&r)
    );

    let agent = AGENT.replace(
        "servers:\n  - path: ../servers/svc.server.yaml\n    params: { token: \"{{ params.api_key }}\" }\n",
        "servers:\n  - name: s\n    path: ../servers/svc.server.yaml\n    params: { token: \"{{ params.api_key }}\" }\n  - name: s\n    path: ../servers/svc.server.yaml\n    params: { token: \"{{ params.api_key }}\" }\n",
    );
    let r = Fixture::new(&[(AG, &agent)]).check();
    let line = agent
        .lines()
        .enumerate()
        .filter(|(_, l)| l.contains("name: s"))
        .nth(1)
        .unwrap()
        .0
        + 1;
    assert!(
        r.diagnostics
            .iter()
            .any(|d| d.code == "duplicate_name" && d.file == AG && d.line == Some(line as u32)),
        "{}",
        dump(&r)
    );

    let manifest = "servers:\n  - { name: crm, url: \"http://x/mcp\" }\n  - { name: crm, url: \"http://y/mcp\" }\n";
    let r = Fixture::new(&[("servers.yaml", manifest)]).check();
    expect(
        &r,
        "duplicate_name",
        "servers.yaml",
        manifest,
        "http://y/mcp",
    );
}

#[test]
fn duplicate_step_id_and_step_type_and_field_not_allowed() {
    let wf = workflow_with(&format!(
        "{CALL}  - id: call\n    transform: {{ ops: [ {{ flatten: {{}} }} ] }}\n"
    ));
    let r = Fixture::new(&[(WF, &wf)]).check();
    let line = wf
        .lines()
        .enumerate()
        .filter(|(_, l)| l.contains("- id: call"))
        .nth(1)
        .unwrap()
        .0
        + 1;
    assert!(
        r.diagnostics
            .iter()
            .any(|d| d.code == "duplicate_step_id" && d.line == Some(line as u32)),
        "{}",
        dump(&r)
    );

    let wf = workflow_with(&format!("{CALL}  - id: both\n    agent: agents/caller.agent.yaml\n    workflow: ./x.workflow.yaml\n  - id: none\n    params: {{}}\n"));
    let r = Fixture::new(&[(WF, &wf)]).check();
    expect(&r, "step_type", WF, &wf, "- id: both");
    expect(&r, "step_type", WF, &wf, "- id: none");

    let wf = workflow_with(&format!("{CALL}  - id: t\n    transform: {{ ops: [ {{ flatten: {{}} }} ] }}\n    for_each: {{ from: step.call.a }}\n"));
    let r = Fixture::new(&[(WF, &wf)]).check();
    expect(&r, "field_not_allowed", WF, &wf, "for_each:");
}

#[test]
fn legacy_syntax_everywhere() {
    let wf = WORKFLOW.replace("q: \"{{ params.q }}\"", "q: \"param:q\"");
    let r = Fixture::new(&[(WF, &wf)]).check();
    expect(&r, "legacy_syntax", WF, &wf, "param:q");
    let d = r
        .diagnostics
        .iter()
        .find(|d| d.code == "legacy_syntax")
        .unwrap();
    assert!(d.message.contains("{{ params.q }}"), "{}", d.message);

    let wf = WORKFLOW.replace(
        "q: { type: string }",
        "q: { type: string, default: \"env:HOME\" }",
    );
    let r = Fixture::new(&[(WF, &wf)]).check();
    expect(&r, "legacy_syntax", WF, &wf, "env:HOME");

    let gw = "env:\n  - { name: KEY, secret: true }\nproviders:\n  - name: a\n    type: anthropic\n    config: { api_key: \"env:KEY\" }\nmodel_groups:\n  - { name: standard, models: [a/claude-haiku-4-5] }\n";
    let r = Fixture::new(&[("gateway.yaml", gw)]).check();
    expect(&r, "legacy_syntax", "gateway.yaml", gw, "env:KEY");
}

#[test]
fn template_syntax_and_template_not_allowed() {
    let wf = WORKFLOW.replace("q: \"{{ params.q }}\"", "q: \"{{ params.q \"");
    let r = Fixture::new(&[(WF, &wf)]).check();
    expect(&r, "template_syntax", WF, &wf, "q: \"{{ params.q \"");

    for bad in [
        "\"{{ }}\"",
        "\"{{ nosuchfn(params.q) }}\"",
        "\"{{ length(params.q, params.q) }}\"",
        "\"{{ `x` }}\"",
    ] {
        let wf = WORKFLOW.replace("\"{{ params.q }}\"", bad);
        let r = Fixture::new(&[(WF, &wf)]).check();
        expect(&r, "template_syntax", WF, &wf, bad);
    }

    let wf = workflow_with(&format!("{CALL}  - id: t\n    condition: \"x {{{{ step.call.a }}}}\"\n    transform: {{ ops: [ {{ flatten: {{}} }} ] }}\n"));
    let r = Fixture::new(&[(WF, &wf)]).check();
    expect(&r, "template_syntax", WF, &wf, "condition:");

    let wf = WORKFLOW.replace(
        "agent: agents/caller.agent.yaml",
        "agent: \"agents/{{ params.q }}.agent.yaml\"",
    );
    let r = Fixture::new(&[(WF, &wf)]).check();
    expect(&r, "template_not_allowed", WF, &wf, "agent: \"agents/");

    let gw = GATEWAY.replace("name: standard", "name: \"{{ env.X }}\"");
    let r = Fixture::new(&[("gateway.yaml", &gw)]).check();
    expect(
        &r,
        "template_not_allowed",
        "gateway.yaml",
        &gw,
        "{{ env.X }}",
    );
}

#[test]
fn system_prompt_rules() {
    let agent = AGENT.replace("system: You help.", "system: \"You help {{ params.q }}.\"");
    let r = Fixture::new(&[(AG, &agent)]).check();
    expect(&r, "dynamic_system_prompt", AG, &agent, "system:");

    let agent = AGENT.replace("system: You help.", "system: \"   \"");
    let r = Fixture::new(&[(AG, &agent)]).check();
    expect(&r, "blank_prompt", AG, &agent, "system:");

    let agent = AGENT.replace(
        "  user: \"Question: {{ params.q }}\"",
        "  user: \"Question: {{ params.q }}\"\n  reflect: \" \"",
    );
    let r = Fixture::new(&[(AG, &agent)]).check();
    expect(&r, "blank_prompt", AG, &agent, "reflect:");
}

#[test]
fn namespaces() {
    let wf = workflow_with(&format!("{CALL}  - id: t\n    condition: \"call.a\"\n    transform: {{ ops: [ {{ flatten: {{}} }} ] }}\n"));
    let r = Fixture::new(&[(WF, &wf)]).check();
    expect(
        &r,
        "namespace_not_allowed",
        WF,
        &wf,
        "condition: \"call.a\"",
    );
    let d = r
        .diagnostics
        .iter()
        .find(|d| d.code == "namespace_not_allowed")
        .unwrap();
    assert_eq!(d.hint.as_deref(), Some("did you mean `step.call.a`?"));

    let wf = WORKFLOW.replace("q: \"{{ params.q }}\"", "q: \"{{ item }}\"");
    let r = Fixture::new(&[(WF, &wf)]).check();
    expect(&r, "namespace_not_allowed", WF, &wf, "{{ item }}");

    let wf = WORKFLOW.replace("q: \"{{ params.q }}\"", "q: \"{{ @ }}\"");
    let r = Fixture::new(&[(WF, &wf)]).check();
    expect(&r, "namespace_not_allowed", WF, &wf, "{{ @ }}");

    let agent = AGENT.replace(
        "user: \"Question: {{ params.q }}\"",
        "user: \"Region {{ env.REGION }}\"",
    );
    let r = Fixture::new(&[(AG, &agent)]).check();
    expect(&r, "namespace_not_allowed", AG, &agent, "env.REGION");

    // accepted: item in a for_each step's params
    let wf = workflow_with(&format!(
        "{CALL}  - id: fan\n    agent: agents/caller.agent.yaml\n    for_each: {{ from: \"step.call.items\" }}\n    params: {{ api_key: \"{{{{ env.API_KEY }}}}\", q: \"{{{{ item }}}}\" }}\n"
    ));
    expect_clean(&Fixture::new(&[(WF, &wf)]).check());
}

#[test]
fn dynamic_step_ref_and_unknown_step_and_self_reference() {
    for (expr, code) in [
        ("step", "dynamic_step_ref"),
        ("keys(step)", "dynamic_step_ref"),
        ("step.*", "dynamic_step_ref"),
        ("step.nope.x", "unknown_step"),
        ("step.t.x", "self_reference"),
    ] {
        let wf = workflow_with(&format!("{CALL}  - id: t\n    condition: \"{expr}\"\n    transform: {{ ops: [ {{ flatten: {{}} }} ] }}\n"));
        let r = Fixture::new(&[(WF, &wf)]).check();
        expect(&r, code, WF, &wf, "condition:");
    }
    let wf = workflow_with(&format!("{CALL}  - id: t\n    depends_on: [nope, t]\n    transform: {{ inputs: [{{ from: missing }}], ops: [ {{ merge: [ghost] }} ] }}\n"));
    let r = Fixture::new(&[(WF, &wf)]).check();
    expect(&r, "unknown_step", WF, &wf, "depends_on: [nope");
    expect(&r, "self_reference", WF, &wf, "depends_on: [nope");
    assert_eq!(
        r.diagnostics
            .iter()
            .filter(|d| d.code == "unknown_step")
            .count(),
        3,
        "{}",
        dump(&r)
    );
}

#[test]
fn cycles_within_a_workflow() {
    let wf = workflow_with(&format!(
        "{CALL}  - id: a\n    condition: \"step.b.x\"\n    transform: {{ ops: [ {{ flatten: {{}} }} ] }}\n  - id: b\n    depends_on: [a]\n    transform: {{ ops: [ {{ flatten: {{}} }} ] }}\n"
    ));
    let r = Fixture::new(&[(WF, &wf)]).check();
    expect(&r, "cycle", WF, &wf, "- id: a");
    let d = r.diagnostics.iter().find(|d| d.code == "cycle").unwrap();
    assert!(d.message.contains("a → b → a"), "{}", d.message);
    assert_eq!(
        r.diagnostics.iter().filter(|d| d.code == "cycle").count(),
        1
    );
}

#[test]
fn workflow_cycle_across_files() {
    let a = "kind: workflow\nname: a\npipeline:\n  - id: go\n    workflow: ./b.workflow.yaml\n";
    let b = "kind: workflow\nname: b\npipeline:\n  - id: back\n    workflow: ./a.workflow.yaml\n";
    let r = Fixture::new(&[
        ("workflows/a.workflow.yaml", a),
        ("workflows/b.workflow.yaml", b),
    ])
    .check();
    let d = r
        .diagnostics
        .iter()
        .find(|d| d.code == "workflow_cycle")
        .unwrap_or_else(|| panic!("{}", dump(&r)));
    assert!(
        d.message.contains(
            "workflows/a.workflow.yaml → workflows/b.workflow.yaml → workflows/a.workflow.yaml"
        ),
        "{}",
        d.message
    );
    assert_eq!(d.file, "workflows/a.workflow.yaml");
    assert_eq!(d.line, Some(line_of(a, "workflow: ./b")));
    assert_eq!(
        r.diagnostics
            .iter()
            .filter(|d| d.code == "workflow_cycle")
            .count(),
        1
    );
}

#[test]
fn references() {
    let wf = WORKFLOW.replace("agents/caller.agent.yaml", "agents/nope.agent.yaml");
    let r = Fixture::new(&[(WF, &wf)]).check();
    expect(&r, "unresolved_ref", WF, &wf, "agents/nope.agent.yaml");

    let wf = WORKFLOW.replace("agents/caller.agent.yaml", "main.workflow.yaml");
    let r = Fixture::new(&[(WF, &wf)]).check();
    expect(&r, "wrong_file_kind", WF, &wf, "agent: main.workflow.yaml");

    // both candidates exist: file-relative wins, warning
    let r = Fixture::new(&[(
        "workflows/agents/caller.agent.yaml",
        AGENT.replace("../servers", "../../servers").as_str(),
    )])
    .check();
    expect(
        &r,
        "ambiguous_ref",
        WF,
        WORKFLOW,
        "agent: agents/caller.agent.yaml",
    );
    assert!(!r.has_errors(), "{}", dump(&r));

    let agent = AGENT.replace("../servers/svc.server.yaml", "crm");
    let r = Fixture::new(&[(AG, &agent)]).check();
    expect(&r, "unresolved_ref", AG, &agent, "path: crm");
}

#[test]
fn manifest_entries_resolve_by_name() {
    let manifest = "kind: servers\nservers:\n  - name: crm\n    url: http://127.0.0.1:9/crm\n    params: { token: { secret: true } }\n    auth: { secret: \"{{ params.token }}\" }\n";
    let agent = AGENT.replace("../servers/svc.server.yaml", "crm");
    expect_clean(&Fixture::new(&[(AG, &agent), ("servers.yaml", manifest)]).check());
}

fn sub(extra: &str) -> String {
    format!("kind: workflow\nname: child\nversion: \"2.0\"\nvisibility: sub-workflow\n{extra}params:\n  schema:\n    type: object\n    required: [x]\n    properties:\n      x: {{ type: integer }}\n      key: {{ type: string, secret: true }}\npipeline: []\n")
}

const CHILD: &str = "workflows/sub/child.workflow.yaml";

#[test]
fn sub_workflow_checks() {
    let step = "  - id: kid\n    workflow: ./sub/child.workflow.yaml@1.0\n    params: { x: \"{{ params.q }}\" }\n    input: { x: 2, key: \"{{ env.API_KEY }}\" }\n    webhooks: execute\n";
    let wf = workflow_with(&format!("{CALL}{step}"));
    let r = Fixture::new(&[(WF, &wf), (CHILD, &sub(""))]).check();
    expect(&r, "duplicate_param", WF, &wf, "input: { x: 2");
    expect(&r, "webhook_optin_conflict", WF, &wf, "webhooks: execute");
    expect(&r, "version_mismatch", WF, &wf, "child.workflow.yaml@1.0");

    let step =
        "  - id: kid\n    workflow: ./sub/child.workflow.yaml\n    input: { y: 1, x: \"three\" }\n";
    let wf = workflow_with(&format!("{CALL}{step}"));
    let r = Fixture::new(&[(WF, &wf), (CHILD, &sub(""))]).check();
    expect(&r, "unknown_param", WF, &wf, "input: { y: 1");
    expect(&r, "param_schema", WF, &wf, "input: { y: 1");

    let step = "  - id: kid\n    workflow: ./sub/child.workflow.yaml\n    input: { key: \"{{ env.API_KEY }}\" }\n";
    let wf = workflow_with(&format!("{CALL}{step}"));
    let r = Fixture::new(&[(WF, &wf), (CHILD, &sub(""))]).check();
    expect(&r, "missing_param", WF, &wf, "- id: kid");
    expect_no(&r, "secret_source");

    // env in a sub-workflow, and a root workflow that uses env as a target
    let r = Fixture::new(&[(CHILD, &sub("env:\n  - { name: X }\n")), (WF, &workflow_with(&format!("{CALL}  - id: kid\n    workflow: ./sub/child.workflow.yaml\n    input: {{ x: 1 }}\n")))]).check();
    let child = sub("env:\n  - { name: X }\n");
    expect(&r, "env_in_subworkflow", CHILD, &child, "env:");
    let wf2 = workflow_with(&format!(
        "{CALL}  - id: kid\n    workflow: ./other.workflow.yaml\n"
    ));
    let r = Fixture::new(&[
        (WF, &wf2),
        (
            "workflows/other.workflow.yaml",
            "kind: workflow\nname: other\nenv: [ { name: Y, default: y } ]\npipeline: []\n",
        ),
    ])
    .check();
    expect(&r, "env_in_subworkflow", WF, &wf2, "workflow: ./other");
}

#[test]
fn approval_hooks() {
    let hook = "  - id: hook\n    on: approval\n    condition: \"step.call.a\"\n    timeout_s: 5\n    webhook: { url: \"http://127.0.0.1:9/h\" }\n  - id: hook2\n    on: approval\n    depends_on: [later]\n    webhook: { url: \"http://127.0.0.1:9/h\", body: { t: \"{{ approval.tool_name }}\" } }\n  - id: later\n    depends_on: [hook]\n    transform: { ops: [ { flatten: {} } ] }\n";
    let wf = workflow_with(&format!("{CALL}{hook}"));
    let r = Fixture::new(&[(WF, &wf)]).check();
    expect(&r, "invalid_approval_hook", WF, &wf, "- id: hook");
    expect(
        &r,
        "invalid_approval_hook",
        WF,
        &wf,
        "condition: \"step.call.a\"",
    );
    expect(&r, "invalid_approval_hook", WF, &wf, "depends_on: [later]");
    expect(&r, "unknown_step", WF, &wf, "depends_on: [hook]");

    let ok = "  - id: hook\n    on: approval\n    depends_on: [call]\n    webhook: { url: \"http://127.0.0.1:9/h\", body: { t: \"{{ approval.tool_name }} {{ step.call.a }}\" } }\n";
    expect_clean(&Fixture::new(&[(WF, &workflow_with(&format!("{CALL}{ok}")))]).check());
}

#[test]
fn params_across_layers() {
    let wf = WORKFLOW.replace(
        "q: \"{{ params.q }}\" }",
        "q: \"{{ params.q }}\", extra: 1 }",
    );
    let r = Fixture::new(&[(WF, &wf)]).check();
    expect(&r, "unknown_param", WF, &wf, "extra: 1");

    let wf = WORKFLOW.replace("\"{{ params.q }}\"", "\"{{ params.nope }}\"");
    let r = Fixture::new(&[(WF, &wf)]).check();
    expect(&r, "unknown_param", WF, &wf, "params.nope");

    let agent = AGENT.replace(
        "      q: { type: string }",
        "      q: { type: string }\n      n: { type: integer }\n    required: [n]",
    );
    let r = Fixture::new(&[(AG, &agent)]).check();
    expect(&r, "missing_param", WF, WORKFLOW, "- id: call");

    let agent = AGENT.replace(
        "      q: { type: string }",
        "      q: { type: string, maxLength: 2 }",
    );
    let wf = WORKFLOW.replace("q: \"{{ params.q }}\"", "q: \"too long\"");
    let r = Fixture::new(&[(AG, &agent), (WF, &wf)]).check();
    expect(&r, "param_schema", WF, &wf, "too long");

    let agent = AGENT.replace(
        "params: { token: \"{{ params.api_key }}\" }",
        "params: { token: \"{{ params.api_key }}\", nope: x }",
    );
    let r = Fixture::new(&[(AG, &agent)]).check();
    expect(&r, "unknown_param", AG, &agent, "nope: x");

    let agent = AGENT.replace("    params: { token: \"{{ params.api_key }}\" }\n", "");
    let r = Fixture::new(&[(AG, &agent)]).check();
    expect(&r, "missing_param", AG, &agent, "path: ../servers");

    // additionalProperties present and not false: undeclared keys are accepted
    let agent = AGENT.replace(
        "    type: object\n    properties:\n      api_key",
        "    type: object\n    additionalProperties: true\n    properties:\n      api_key",
    );
    let wf = WORKFLOW.replace(
        "q: \"{{ params.q }}\" }",
        "q: \"{{ params.q }}\", extra: 1 }",
    );
    expect_clean(&Fixture::new(&[(AG, &agent), (WF, &wf)]).check());
}

#[test]
fn schema_invalid() {
    for (bad, marker) in [
        ("params:\n  schema:\n    type: array\n", "type: array"),
        ("params:\n  schema:\n    properties:\n      a: { type: 12 }\n", "a: { type: 12 }"),
        ("params:\n  schema:\n    $schema: \"http://example.com/schema\"\n", "$schema"),
        ("params:\n  schema:\n    properties:\n      a: { $ref: \"http://example.com/x.json\" }\n", "$ref"),
        ("params:\n  schema:\n    properties:\n      a: { minLength: -1 }\n", "minLength"),
    ] {
        let wf = format!("kind: workflow\nname: main\n{bad}pipeline: []\n");
        let r = Fixture::new(&[(WF, &wf), (AG, ""), (SV, "")]).check();
        expect(&r, "schema_invalid", WF, &wf, marker);
    }
}

#[test]
fn secret_chain_accepted() {
    // The spec's accepted chain is the base project.
    expect_clean(&Fixture::new(&[]).check());
}

#[test]
fn secret_chain_rejected_cases_of_the_spec() {
    // env var not secret
    let wf = WORKFLOW.replace("{ name: API_KEY, secret: true }", "{ name: API_KEY }");
    let r = Fixture::new(&[(WF, &wf)]).check();
    expect(&r, "secret_source", WF, &wf, "api_key:");
    let d = r
        .diagnostics
        .iter()
        .find(|d| d.code == "secret_source")
        .unwrap();
    assert!(
        d.message.contains("non-secret env var `API_KEY`"),
        "{}",
        d.message
    );

    // literal
    let wf = WORKFLOW.replace("\"{{ env.API_KEY }}\"", "\"sk-123\"");
    let r = Fixture::new(&[(WF, &wf)]).check();
    expect(&r, "secret_source", WF, &wf, "sk-123");
    assert!(
        r.diagnostics
            .iter()
            .any(|d| d.message.contains("not a literal")),
        "{}",
        dump(&r)
    );

    // mixed text
    let wf = WORKFLOW.replace("\"{{ env.API_KEY }}\"", "\"Bearer {{ env.API_KEY }}\"");
    let r = Fixture::new(&[(WF, &wf)]).check();
    expect(&r, "secret_source", WF, &wf, "Bearer");
    assert!(
        r.diagnostics
            .iter()
            .any(|d| d.message.contains("mixed text")),
        "{}",
        dump(&r)
    );

    // legacy form
    let wf = WORKFLOW.replace("\"{{ env.API_KEY }}\"", "\"env:API_KEY\"");
    let r = Fixture::new(&[(WF, &wf)]).check();
    expect(&r, "legacy_syntax", WF, &wf, "env:API_KEY");

    // the agent param loses `secret: true`
    let agent = AGENT.replace(
        "api_key: { type: string, secret: true }",
        "api_key: { type: string }",
    );
    let r = Fixture::new(&[(AG, &agent)]).check();
    expect(&r, "secret_leak", WF, WORKFLOW, "api_key:");
    let d = r
        .diagnostics
        .iter()
        .find(|d| d.code == "secret_leak")
        .unwrap();
    assert!(
        d.message
            .contains("secret env var `API_KEY` flows into non-secret agent param `api_key`"),
        "{}",
        d.message
    );
    expect(&r, "secret_source", AG, &agent, "token:");
    let d = r
        .diagnostics
        .iter()
        .find(|d| d.code == "secret_source")
        .unwrap();
    assert_eq!(d.path.as_deref(), Some("servers[0].params.token"));

    // the server param loses `secret: true`
    let server = SERVER.replace("token: { secret: true }", "token: {}");
    let r = Fixture::new(&[(SV, &server)]).check();
    expect(&r, "secret_leak", AG, AGENT, "token:");
    expect(&r, "auth_secret_ref", SV, &server, "auth:");

    // auth.secret literal
    let server = SERVER.replace("secret: \"{{ params.token }}\"", "secret: \"tok-123\"");
    let r = Fixture::new(&[(SV, &server)]).check();
    expect(&r, "auth_secret_ref", SV, &server, "auth:");

    // secret in a prompt
    let agent = AGENT.replace(
        "user: \"Question: {{ params.q }}\"",
        "user: \"Key: {{ params.api_key }}\"",
    );
    let r = Fixture::new(&[(AG, &agent)]).check();
    expect(&r, "secret_in_prompt", AG, &agent, "Key:");

    // secret param with a default
    let agent = AGENT.replace(
        "api_key: { type: string, secret: true }",
        "api_key: { type: string, secret: true, default: abc }",
    );
    let r = Fixture::new(&[(AG, &agent)]).check();
    expect(&r, "secret_default", AG, &agent, "default: abc");

    // env inside an agent file
    let agent = AGENT.replace(
        "user: \"Question: {{ params.q }}\"",
        "user: \"{{ env.API_KEY }}\"",
    );
    let r = Fixture::new(&[(AG, &agent)]).check();
    expect(&r, "namespace_not_allowed", AG, &agent, "env.API_KEY");

    // secret env into output.map
    let wf = format!("{WORKFLOW}output:\n  map: {{ k: \"{{{{ env.API_KEY }}}}\" }}\n");
    let r = Fixture::new(&[(WF, &wf)]).check();
    expect(&r, "secret_leak", WF, &wf, "map:");
}

#[test]
fn secrets_in_webhooks_and_conditions_are_allowed_but_not_in_inputs() {
    let steps = format!("{CALL}  - id: w\n    condition: \"env.API_KEY != ''\"\n    webhook:\n      url: \"http://127.0.0.1:9/{{{{ env.API_KEY }}}}\"\n      headers: {{ X-Key: \"{{{{ env.API_KEY }}}}\" }}\n      body: {{ k: \"{{{{ env.API_KEY }}}}\" }}\n");
    expect_clean(&Fixture::new(&[(WF, &workflow_with(&steps))]).check());

    let steps = format!("{CALL}  - id: t\n    transform: {{ inputs: [ {{ from: \"{{{{ env.API_KEY }}}}\" }} ], ops: [ {{ flatten: {{}} }} ] }}\n  - id: f\n    agent: agents/caller.agent.yaml\n    for_each: {{ from: \"env\" }}\n    params: {{ api_key: \"{{{{ env.API_KEY }}}}\" }}\n");
    let wf = workflow_with(&steps);
    let r = Fixture::new(&[(WF, &wf)]).check();
    expect(&r, "secret_leak", WF, &wf, "inputs: [");
    expect(&r, "secret_leak", WF, &wf, "for_each:");
}

#[test]
fn invoke_auth() {
    let wf = WORKFLOW.replace(
        "pipeline:",
        "invoke:\n  auth: { secret: \"{{ env.REGION }}\" }\npipeline:",
    );
    let r = Fixture::new(&[(WF, &wf)]).check();
    expect(&r, "auth_secret_ref", WF, &wf, "auth:");

    let wf = WORKFLOW.replace(
        "pipeline:",
        "invoke:\n  auth: { header: X-Key, scheme: raw, secret: \"{{ env.API_KEY }}\" }\npipeline:",
    );
    expect_clean(&Fixture::new(&[(WF, &wf)]).check());

    // empty_auth_secret: checked with --check-env / at startup
    let f = Fixture::new(&[(WF, &wf)]);
    let r = f.check_with(&f.options(), EnvMode::Startup, &[("API_KEY", "")]);
    expect(&r, "empty_auth_secret", WF, &wf, "auth:");
}

#[test]
fn allowlists_and_approval_policies() {
    let agent = AGENT.replace(
        "    params: { token: \"{{ params.api_key }}\" }\n",
        "    params: { token: \"{{ params.api_key }}\" }\n    access:\n      allowlist:\n        - good_*\n        - \"a*b\"\n        - name: del_*\n          require_approval: { on_reject: retry, timeout_behavior: reject }\n",
    );
    let r = Fixture::new(&[(AG, &agent)]).check();
    expect(&r, "allowlist_syntax", AG, &agent, "a*b");
    expect(&r, "invalid_value", AG, &agent, "on_reject: retry");
    expect(&r, "ignored_field", AG, &agent, "on_reject: retry");

    let agent = AGENT.replace(
        "    params: { token: \"{{ params.api_key }}\" }\n",
        "    params: { token: \"{{ params.api_key }}\" }\n    access: { allowlist: [] }\n",
    );
    let r = Fixture::new(&[(AG, &agent)]).check();
    expect(&r, "empty_allowlist", AG, &agent, "allowlist: []");
}

#[test]
fn model_groups_and_providers() {
    let agent = AGENT.replace("model: standard", "model: premium");
    let r = Fixture::new(&[(AG, &agent)]).check();
    expect(&r, "unknown_model_group", AG, &agent, "model: premium");

    // no gateway file known: not checked
    let r = Fixture::new(&[(AG, &agent), ("gateway.yaml", "")]).check();
    expect_no(&r, "unknown_model_group");

    // renamed by a group_map: accepted
    let wf = format!("{WORKFLOW}model_policy: {{ group_map: {{ premium: standard }} }}\n");
    expect_clean(&Fixture::new(&[(AG, &agent), (WF, &wf)]).check());

    let wf = format!("{WORKFLOW}model_policy: {{ force_group: nope }}\n");
    let r = Fixture::new(&[(WF, &wf)]).check();
    expect(&r, "unknown_model_group", WF, &wf, "force_group: nope");

    let gw = "providers:\n  - { name: mock, type: mock }\nmodel_groups:\n  - { name: standard, models: [mock/default, other/x, noslash, \"mock/\"] }\n";
    let r = Fixture::new(&[("gateway.yaml", gw)]).check();
    assert_eq!(
        r.diagnostics
            .iter()
            .filter(|d| d.code == "unknown_provider")
            .count(),
        3,
        "{}",
        dump(&r)
    );
    expect(&r, "unknown_provider", "gateway.yaml", gw, "other/x");
}

#[test]
fn gateway_file_checks() {
    let gw = "env:\n  - { name: KEY, secret: true }\nproviders:\n  - name: a\n    type: anthropic\n    config: { api_key: \"{{ env.KEY }}\", base_url: \"{{ env.URL }}\", beta: \"{{ params.x }}\", organization: x }\n  - { name: o, type: openai }\n  - { name: m, type: mock, config: { tool_mode: sometimes } }\n  - { name: t, type: azure }\nmodel_groups:\n  - { name: standard, models: [a/claude-haiku-4-5], strategy: random }\n";
    let r = Fixture::new(&[("gateway.yaml", gw)]).check_with(
        &Fixture::new(&[]).options(),
        EnvMode::Lenient,
        &[],
    );
    let _ = r;
    let f = Fixture::new(&[("gateway.yaml", gw)]);
    let r = f.check();
    expect(&r, "undeclared_env", "gateway.yaml", gw, "base_url:");
    expect(&r, "template_syntax", "gateway.yaml", gw, "beta:");
    expect(&r, "unknown_field", "gateway.yaml", gw, "organization: x");
    expect(&r, "missing_field", "gateway.yaml", gw, "name: o");
    expect(
        &r,
        "invalid_value",
        "gateway.yaml",
        gw,
        "tool_mode: sometimes",
    );
    expect(&r, "invalid_value", "gateway.yaml", gw, "type: azure");
    expect(&r, "invalid_value", "gateway.yaml", gw, "strategy: random");
    expect(&r, "env_unset", "gateway.yaml", gw, "name: KEY");
}

#[test]
fn env_unset_severity_follows_the_mode() {
    let f = Fixture::new(&[]);
    let r = f.check_with(&f.options(), EnvMode::Lenient, &[]);
    expect(&r, "env_unset", WF, WORKFLOW, "name: API_KEY");
    assert!(!r.has_errors(), "{}", dump(&r));
    let r = f.check_with(&f.options(), EnvMode::Startup, &[]);
    assert!(r.errors().any(|d| d.code == "env_unset"), "{}", dump(&r));

    // an env file supplies the value
    let f = Fixture::new(&[(
        "environments/dev.env.yaml",
        "name: dev\nvariables: { API_KEY: from-file }\n",
    )]);
    let mut load = f.options();
    load.env_file = Some(f.path().join("environments/dev.env.yaml"));
    expect_clean(&f.check_with(&load, EnvMode::Strict, &[]));

    // weak secrets
    let r = f.check_with(&f.options(), EnvMode::Lenient, &[("API_KEY", "abc")]);
    expect(&r, "weak_secret", WF, WORKFLOW, "name: API_KEY");
}

#[test]
fn env_file_checks() {
    let env = "kind: env\nname: dev\nvariables: { A: \"{{ x }}\", B: \"env:C\", 1bad: x }\nstate: { driver: postgres }\n";
    let f = Fixture::new(&[("environments/dev.env.yaml", env)]);
    let mut load = f.options();
    load.env_file = Some(f.path().join("environments/dev.env.yaml"));
    let r = f.check_with(&load, EnvMode::Strict, &[("API_KEY", "secret-value")]);
    let file = "environments/dev.env.yaml";
    expect(&r, "template_not_allowed", file, env, "variables:");
    expect(&r, "legacy_syntax", file, env, "variables:");
    expect(&r, "invalid_value", file, env, "variables:");
    expect(&r, "invalid_value", file, env, "driver: postgres");
}

#[test]
fn env_file_providers_join_and_replace_gateway_providers() {
    // `local` is declared only in the env file; `anthropic` is replaced by a mock there, so its
    // unset key no longer matters for `missing_field` (runtime-gateway.md §5.2).
    let gw = "env:\n  - { name: KEY, secret: true, default: \"\" }\nproviders:\n  - { name: anthropic, type: anthropic, config: { api_key: \"{{ env.KEY }}\" } }\nmodel_groups:\n  - { name: standard, models: [anthropic/claude-haiku-4-5, local/qwen] }\n";
    let env = "name: dev\nproviders:\n  - { name: local, type: mock }\n  - { name: anthropic, type: mock }\n";
    let f = Fixture::new(&[("gateway.yaml", gw), ("environments/dev.env.yaml", env)]);
    let r = f.check_with(
        &f.options(),
        EnvMode::Startup,
        &[("API_KEY", "secret-value")],
    );
    expect(&r, "unknown_provider", "gateway.yaml", gw, "local/qwen");
    expect(&r, "missing_field", "gateway.yaml", gw, "api_key:");

    let mut load = f.options();
    load.env_file = Some(f.path().join("environments/dev.env.yaml"));
    let r = f.check_with(&load, EnvMode::Startup, &[("API_KEY", "secret-value")]);
    expect_no(&r, "unknown_provider");
    expect_no(&r, "missing_field");
    let (_, gateway) = r.project.gateway.as_ref().unwrap();
    assert_eq!(gateway.model_groups[0].models.len(), 2);
}

#[test]
fn undeclared_env_in_a_workflow() {
    let wf = WORKFLOW.replace("q: \"{{ params.q }}\"", "q: \"{{ env.NOPE }}\"");
    let r = Fixture::new(&[(WF, &wf)]).check();
    expect(&r, "undeclared_env", WF, &wf, "env.NOPE");
}

#[test]
fn registry_shadowing() {
    let ws = tempfile::tempdir().unwrap();
    fs::create_dir_all(ws.path().join("workflows")).unwrap();
    let other = "kind: workflow\nname: main\npipeline: []\n";
    fs::write(ws.path().join("workflows/dup.workflow.yaml"), other).unwrap();
    let f = Fixture::new(&[]);
    let mut load = f.options();
    load.workspaces = vec![ws.path().to_path_buf()];
    let r = f.check_with(&load, EnvMode::Lenient, &[("API_KEY", "secret-value")]);
    expect(
        &r,
        "shadowed_workflow",
        "workflows/dup.workflow.yaml",
        other,
        "name: main",
    );

    // a file stem equal to another workflow's name
    let x = "kind: workflow\nname: other-name\npipeline: []\n";
    let r = Fixture::new(&[
        (
            "workflows/main2.workflow.yaml",
            "kind: workflow\nname: main2x\npipeline: []\n",
        ),
        ("workflows/main2x.workflow.yaml", x),
    ])
    .check();
    let _ = r;
    let y = "kind: workflow\nname: x\npipeline: []\n";
    let r = Fixture::new(&[
        (
            "workflows/main.workflow.yaml",
            "kind: workflow\nname: main\npipeline: []\n",
        ),
        ("workflows/x.workflow.yaml", y),
        (
            "workflows/z.workflow.yaml",
            "kind: workflow\nname: x2\npipeline: []\n",
        ),
        (AG, ""),
        (SV, ""),
    ])
    .check();
    expect_no(&r, "alias_shadowed");
    let stem = "kind: workflow\nname: renamed\npipeline: []\n";
    let r = Fixture::new(&[
        (
            "workflows/main.workflow.yaml",
            "kind: workflow\nname: other\npipeline: []\n",
        ),
        ("workflows/other.workflow.yaml", stem),
        (AG, ""),
        (SV, ""),
    ])
    .check();
    expect(
        &r,
        "alias_shadowed",
        "workflows/other.workflow.yaml",
        stem,
        "name: renamed",
    );
}

#[test]
fn warnings() {
    let wf = WORKFLOW.replace("q: \"{{ params.q }}\"", "q: step.call.out");
    let r = Fixture::new(&[(WF, &wf)]).check();
    expect(&r, "literal_looks_like_path", WF, &wf, "step.call.out");

    let wf = WORKFLOW.replace("q: \"{{ params.q }}\"", "q: \"`literal`\"");
    let r = Fixture::new(&[(WF, &wf)]).check();
    expect(&r, "legacy_backtick", WF, &wf, "`literal`");

    let agent = AGENT
        .replace("model: standard", "model: standard\nmax_turns: 1")
        .replace(
            "  user: \"Question: {{ params.q }}\"",
            "  user: \"Question: {{ params.q }}\"\n  reflect: Check again.",
        );
    let r = Fixture::new(&[(AG, &agent)]).check();
    expect(&r, "reflect_single_turn", AG, &agent, "reflect:");

    let agent = AGENT.replace("      a: { type: string }", "      a: { type: string }\n      ktsu_score: { type: number }\n      ktsu_confidence: { type: number }");
    let r = Fixture::new(&[(AG, &agent)]).check();
    expect(&r, "reserved_prefix", AG, &agent, "ktsu_score");
    assert_eq!(
        r.diagnostics
            .iter()
            .filter(|d| d.code == "reserved_prefix")
            .count(),
        1
    );

    let wf = workflow_with(&format!("{CALL}  - id: g\n    webhook: {{ url: \"http://127.0.0.1:9/x\", method: get, body: {{ a: 1 }} }}\n"));
    let r = Fixture::new(&[(WF, &wf)]).check();
    expect(&r, "ignored_field", WF, &wf, "method: get");

    let wf = WORKFLOW.replace(
        "      q: { type: string }",
        "      q: { type: string, properties: { z: { type: string, secret: true } } }",
    );
    let r = Fixture::new(&[(WF, &wf)]).check();
    expect(&r, "ignored_field", WF, &wf, "secret: true } } }");

    let r = Fixture::new(&[(WF, ""), (AG, ""), (SV, "")]).check();
    expect_in_file(&r, "no_workflows", "workflows");
}

#[test]
fn sub_workflow_ignored_fields() {
    let child = "kind: workflow\nname: child\nvisibility: sub-workflow\ninvoke:\n  auth: { secret: \"{{ env.X }}\" }\nmodel_policy: { timeout_s: 5 }\npipeline: []\n";
    let wf = workflow_with(&format!(
        "{CALL}  - id: c\n    workflow: ./sub/child.workflow.yaml\n"
    ));
    let r = Fixture::new(&[(CHILD, child), (WF, &wf)]).check();
    expect(&r, "ignored_field", CHILD, child, "invoke:");
    expect(&r, "ignored_field", CHILD, child, "model_policy:");
}

#[test]
fn hub_lock() {
    let f = Fixture::new(&[("ktsuhub.lock.yaml", "entries: [ { cache: [1] } ]\n")]);
    let r = f.check();
    expect_in_file(&r, "hub_lock_invalid", "ktsuhub.lock.yaml");
    assert!(!r.has_errors());

    let hub = tempfile::tempdir().unwrap();
    fs::create_dir_all(hub.path().join("workflows")).unwrap();
    fs::write(
        hub.path().join("workflows/hub.workflow.yaml"),
        "kind: workflow\nname: from-hub\npipeline: []\n",
    )
    .unwrap();
    let lock = format!(
        "entries:\n  - {{ name: x, cache: \"{}\" }}\n",
        hub.path().display()
    );
    let f = Fixture::new(&[("ktsuhub.lock.yaml", &lock)]);
    let r = f.check();
    expect_clean(&r);
    assert!(r.project.find_workflow("from-hub").is_some());
    let mut load = f.options();
    load.no_hub_lock = true;
    let r = f.check_with(&load, EnvMode::Lenient, &[("API_KEY", "secret-value")]);
    assert!(r.project.find_workflow("from-hub").is_none());
}

#[test]
fn missing_directories_are_load_errors() {
    let load = LoadOptions {
        project_dir: "/definitely/not/here".into(),
        ..LoadOptions::default()
    };
    assert!(matches!(
        check_project(
            &load,
            &ValidateOptions {
                env_mode: EnvMode::Lenient,
                env: &HashMap::new()
            }
        ),
        Err(LoadError::MissingProjectDir(_))
    ));
}

#[test]
fn diagnostics_are_sorted_and_files_reported_once() {
    // the agent is referenced by two steps and scanned: it is loaded and reported once
    let wf = workflow_with(&format!("{CALL}  - id: second\n    agent: ./../agents/caller.agent.yaml\n    params: {{ api_key: \"{{{{ env.API_KEY }}}}\" }}\n"));
    let agent = AGENT.replace("model: standard", "model: standard\nbogus: 1");
    let r = Fixture::new(&[(WF, &wf), (AG, &agent)]).check();
    assert_eq!(
        r.diagnostics
            .iter()
            .filter(|d| d.code == "unknown_field")
            .count(),
        1,
        "{}",
        dump(&r)
    );
    assert_eq!(
        r.project.files.iter().filter(|f| f.display == AG).count(),
        1
    );
    let keys: Vec<_> = r.diagnostics.iter().map(Diagnostic::sort_key).collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted);
}

#[test]
fn wrong_types_and_garbage_never_panic() {
    for content in [
        "[]\n",
        "42\n",
        "kind: workflow\nname: x\npipeline: {}\n",
        "kind: workflow\nname: x\npipeline: [1, [], null]\n",
        "\u{0}\u{1}\u{2}binary",
        "kind: workflow\nname: x\npipeline:\n  - {id: a, agent: [1]}\n",
    ] {
        let r = Fixture::new(&[(WF, content)]).check();
        assert!(r.has_errors(), "{content:?}: {}", dump(&r));
    }
}

#[test]
fn negated_step_paths_get_a_precise_hint() {
    let wf = workflow_with(&format!("{CALL}  - id: t\n    condition: \"!step.call.failed\"\n    transform: {{ ops: [ {{ flatten: {{}} }} ] }}\n"));
    let r = Fixture::new(&[(WF, &wf)]).check();
    expect(&r, "dynamic_step_ref", WF, &wf, "condition:");
    let d = r
        .diagnostics
        .iter()
        .find(|d| d.code == "dynamic_step_ref")
        .unwrap();
    assert_eq!(d.hint.as_deref(), Some("write `!(step.<id>.<field>)`"));
    let wf = workflow_with(&format!("{CALL}  - id: t\n    condition: \"!(step.call.failed)\"\n    transform: {{ ops: [ {{ flatten: {{}} }} ] }}\n"));
    expect_clean(&Fixture::new(&[(WF, &wf)]).check());
}
