//! `ktsu run` end to end through the real binary (cli-and-ops.md §1.4, §1.2, §9 items 1–3):
//! the services start in-process on loopback ports, the record is printed, the exit code
//! follows the run's status.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod cli_support;

use cli_support::*;
use std::time::Duration;

#[test]
fn hello_example_completes() {
    let wf = examples().join("hello/workflows/hello.workflow.yaml");
    let wf = wf.to_str().unwrap();
    let out = ktsu(&["run", wf, "--input", r#"{"name":"Ada"}"#]);
    assert_exit(&out, 0);
    let text = stdout(&out);
    let first = text.lines().next().unwrap();
    assert!(first.starts_with("Run       run_"), "{text}");
    assert!(first.ends_with("  hello  complete"), "{text}");
    assert!(text.contains("\nTotals    1 LLM call · "), "{text}");
    assert!(
        text.contains("\nSTEP   TYPE   STATUS    DURATION  TOKENS  COST\n"),
        "{text}"
    );
    assert!(text.contains("\ngreet  agent  complete  "), "{text}");
    assert!(
        text.contains("\nOutput\n{\n  \"greet\": {\n    \"greeting\": "),
        "{text}"
    );

    let out = ktsu(&["run", wf, "--input", r#"{"name":"Ada"}"#, "--json"]);
    assert_exit(&out, 0);
    let doc = json(&out);
    assert_eq!(doc["run"]["status"], "complete");
    assert_eq!(doc["run"]["workflow_name"], "hello");
    assert_eq!(doc["steps"][0]["id"], "greet");
}

#[test]
fn exit_codes_follow_the_run_status() {
    let project = lab_project("http://127.0.0.1:9/mcp");
    let dir = project.path();
    let run = |name: &str, extra: &[&str]| {
        let wf = workflow_file(dir, name);
        let mut args = vec!["run", wf.as_str()];
        args.extend_from_slice(extra);
        ktsu(&args)
    };

    // failed: an Air-Lock violation after a flagged step; the record explains both.
    let out = run("triage", &[]);
    assert_exit(&out, 1);
    let text = stdout(&out);
    assert!(
        text.lines().next().unwrap().ends_with("  triage  failed"),
        "{text}"
    );
    assert!(text.contains("\nError     airlock_violation: "), "{text}");
    assert!(text.contains("  (step check)\n"), "{text}");
    assert!(
        text.contains("classify\n  flags      low_risk, billing\n  rationale  Invoice words, no urgency.\n  output     {\"label\":\"billing\"}\n"),
        "{text}"
    );
    assert!(
        text.contains("check\n  error      airlock_violation: "),
        "{text}"
    );
    assert!(
        text.contains("\n  violations /approved: missing required property \"approved\"\n"),
        "{text}"
    );
    assert!(
        text.contains("\n  raw output {\"verdict\":\"no\"}\n"),
        "{text}"
    );
    assert!(text.contains("\narchive   workflow  skipped"), "{text}");

    // needs_human_review
    let out = run("review", &["--json"]);
    assert_exit(&out, 4);
    assert_eq!(json(&out)["run"]["status"], "needs_human_review");

    // params invalid: every violation, exit 8
    let out = run("hello", &["--input", "{}"]);
    assert_exit(&out, 8);
    assert!(
        stderr(&out).contains("  /name: missing required property \"name\""),
        "{}",
        stderr(&out)
    );

    // bad --input, sub-workflow: usage
    assert_exit(&run("hello", &["--input", "[1]"]), 2);
    assert_exit(&run("hello", &["--input", "{bad"]), 2);
    let out = run("archive", &[]);
    assert_exit(&out, 2);
    assert!(
        stderr(&out).contains("is a sub-workflow"),
        "{}",
        stderr(&out)
    );

    // --timeout: the CLI cancels the run, prints it, exits 6
    let out = run("slow", &["--timeout", "1s"]);
    assert_exit(&out, 6);
    assert!(
        stdout(&out)
            .lines()
            .next()
            .unwrap()
            .ends_with("  slow  cancelled"),
        "{}",
        stdout(&out)
    );
    assert!(
        stderr(&out).contains("--timeout 1.0s elapsed"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn invalid_project_is_a_configuration_error() {
    let dir = tempfile::tempdir().unwrap();
    write_files(
        dir.path(),
        &[(
            "workflows/a.workflow.yaml",
            "kind: workflow\nname: a\npipeline:\n  - id: x\n    agent: agents/missing.agent.yaml\n"
                .into(),
        )],
    );
    let out = ktsu(&["run", &workflow_file(dir.path(), "a")]);
    assert_exit(&out, 3);
    assert!(
        stderr(&out).contains("a.workflow.yaml:"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn gateway_file_or_mock() {
    let dir = tempfile::tempdir().unwrap();
    write_files(
        dir.path(),
        &[
            (
                "gateway.yaml",
                "kind: gateway\nenv:\n  - { name: KTSU_TEST_UNSET_PROVIDER_KEY, secret: true }\nproviders:\n  - name: anthropic\n    type: anthropic\n    config: { api_key: \"{{ env.KTSU_TEST_UNSET_PROVIDER_KEY }}\" }\nmodel_groups:\n  - name: standard\n    models: [anthropic/claude-haiku-4-5]\n".into(),
            ),
            (
                "agents/g.agent.yaml",
                "kind: agent\nname: g\nmodel: standard\nprompt:\n  system: Be brief.\n  user: hi\noutput:\n  schema: { type: object, required: [text], properties: { text: { type: string } } }\n".into(),
            ),
            (
                "workflows/w.workflow.yaml",
                "kind: workflow\nname: w\npipeline:\n  - id: s\n    agent: agents/g.agent.yaml\n".into(),
            ),
        ],
    );
    let wf = workflow_file(dir.path(), "w");
    let out = ktsu(&["run", &wf]);
    assert_exit(&out, 3);
    assert!(
        stderr(&out).contains("hint: run with --mock"),
        "{}",
        stderr(&out)
    );

    // --mock serves the groups without the file; service variables do not leak in.
    let out = command(&["run", &wf, "--mock", "--json"])
        .env("KTSU_ORCHESTRATOR_PORT", "abc")
        .env("KTSU_STORE_TYPE", "postgres")
        .env("KTSU_GATEWAY_URL", "http://127.0.0.1:1")
        .output()
        .unwrap();
    assert_exit(&out, 0);
    assert_eq!(json(&out)["run"]["status"], "complete");
}

#[test]
fn sqlite_store_keeps_the_record() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("runs.db");
    let wf = examples().join("hello/workflows/hello.workflow.yaml");
    let out = ktsu(&[
        "run",
        wf.to_str().unwrap(),
        "--input",
        r#"{"name":"Ada"}"#,
        "--store-type",
        "sqlite",
        "--db-path",
        db.to_str().unwrap(),
    ]);
    assert_exit(&out, 0);
    assert!(db.is_file());
    let out = ktsu(&[
        "run",
        wf.to_str().unwrap(),
        "--input",
        r#"{"name":"Ada"}"#,
        "--store-type",
        "postgres",
    ]);
    assert_exit(&out, 2);
}

#[test]
fn first_interrupt_cancels_the_run() {
    let project = lab_project("http://127.0.0.1:9/mcp");
    let wf = workflow_file(project.path(), "slow");
    let mut cmd = command(&["run", &wf, "--log-format", "json"]);
    // Info logs tell the test when the run is under way.
    cmd.env("KTSU_LOG", "info");
    let run = Spawned::start(cmd);
    run.wait_for_log("\"step.running\"", Duration::from_secs(60));
    run.signal("INT");
    let (code, out, err) = run.finish(Duration::from_secs(30));
    assert_eq!(code, Some(130), "{out}\n{err}");
    assert!(
        out.lines()
            .next()
            .unwrap_or("")
            .ends_with("  slow  cancelled"),
        "{out}\n{err}"
    );
    assert!(out.contains("interrupted (SIGINT)"), "{out}");
}

#[test]
fn the_workflows_own_credential_is_presented() {
    let dir = tempfile::tempdir().unwrap();
    write_files(
        dir.path(),
        &[
            (
                "agents/g.agent.yaml",
                "kind: agent\nname: g\nmodel: standard\nprompt:\n  system: Be brief.\n  user: hi\noutput:\n  schema: { type: object }\n".into(),
            ),
            (
                "workflows/guarded.workflow.yaml",
                "kind: workflow\nname: guarded\nenv:\n  - { name: KTSU_TEST_GUARD_TOKEN, secret: true }\ninvoke:\n  auth: { header: X-Api-Secret, scheme: raw, secret: \"{{ env.KTSU_TEST_GUARD_TOKEN }}\" }\npipeline:\n  - id: s\n    agent: agents/g.agent.yaml\n".into(),
            ),
            (
                "test.env.yaml",
                "kind: env\nname: test\nvariables:\n  KTSU_TEST_GUARD_TOKEN: guard-token-123\n".into(),
            ),
        ],
    );
    let env_file = dir.path().join("test.env.yaml");
    // invoke.auth and KTSU_API_KEY do not stand in the way of the caller who holds the project.
    let out = command(&[
        "run",
        &workflow_file(dir.path(), "guarded"),
        "--env",
        env_file.to_str().unwrap(),
    ])
    .env("KTSU_API_KEY", "some-management-key")
    .output()
    .unwrap();
    assert_exit(&out, 0);
    assert!(
        stdout(&out).contains("  guarded  complete\n"),
        "{}",
        stdout(&out)
    );
}
