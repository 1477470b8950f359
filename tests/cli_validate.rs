//! `ktsu validate`, `ktsu workflow tree`, `ktsu version` and the checks of `ktsu run`, driven
//! through the real binary.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn ktsu(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ktsu"))
        .args(args)
        .env_remove("KTSU_PROJECT_DIR")
        .env_remove("KTSU_WORKFLOW_DIR")
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn project(files: &[(&str, &[u8])]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (path, content) in files {
        let full = dir.path().join(path);
        fs::create_dir_all(full.parent().unwrap()).unwrap();
        fs::write(full, content).unwrap();
    }
    dir
}

#[test]
fn examples_are_valid() {
    for name in ["hello", "support-triage"] {
        let dir = examples().join(name);
        let out = ktsu(&["validate", dir.to_str().unwrap()]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{name}: {}{}",
            stdout(&out),
            stderr(&out)
        );
        assert!(stdout(&out).contains("Summary:"), "{}", stdout(&out));
    }
    let dir = examples().join("support-triage");
    let env = dir.join("environments/dev.env.yaml");
    let out = ktsu(&[
        "validate",
        dir.to_str().unwrap(),
        "--env",
        env.to_str().unwrap(),
        "--deny-warnings",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
}

#[test]
fn human_report_groups_files_and_lists_errors() {
    let dir = project(&[
        (
            "workflows/a.workflow.yaml",
            b"kind: workflow\nname: a\npipeline:\n  - id: x\n    agent: agents/g.agent.yaml\n    dependson: [y]\n",
        ),
        (
            "agents/g.agent.yaml",
            b"name: g\nmodel: m\nprompt: { system: Hi }\noutput: { schema: { type: object, properties: { a: { type: string } } } }\n",
        ),
    ]);
    let out = ktsu(&["validate", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let text = stdout(&out);
    assert!(
        text.starts_with(&format!("Project {}\n", dir.path().display())),
        "{text}"
    );
    assert!(
        text.contains("\nWorkflows\n  FAIL workflows/a.workflow.yaml\n"),
        "{text}"
    );
    assert!(
        text.contains("    - workflows/a.workflow.yaml:6:5: unknown field `dependson` in step `x` [unknown_field]\n      hint: did you mean `depends_on`?\n"),
        "{text}"
    );
    assert!(
        text.contains("\nAgents\n  OKAY agents/g.agent.yaml\n"),
        "{text}"
    );
    assert!(
        text.ends_with("Summary: 2 total, 1 valid, 1 invalid\n"),
        "{text}"
    );
}

#[test]
fn json_report_is_one_document() {
    let dir = project(&[(
        "workflows/a.workflow.yaml",
        b"kind: workflow\nname: a\npipeline: []\nbogus: 1\n",
    )]);
    let out = ktsu(&["validate", dir.path().to_str().unwrap(), "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let doc: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(doc["valid"], false);
    assert_eq!(
        doc["summary"],
        serde_json::json!({"total": 1, "valid": 0, "invalid": 1})
    );
    let file = &doc["files"][0];
    assert_eq!(file["kind"], "workflow");
    assert_eq!(file["path"], "workflows/a.workflow.yaml");
    let err = &file["errors"][0];
    assert_eq!(err["code"], "unknown_field");
    assert_eq!(err["severity"], "error");
    assert_eq!(err["line"], 4);
    assert_eq!(err["column"], 1);
    assert_eq!(err["path"], "bogus");
    assert!(stdout(&out).ends_with("}\n"));
    assert!(
        stdout(&out).contains("\n  \"project_dir\""),
        "2-space indent"
    );
}

#[test]
fn warnings_fail_only_with_deny_warnings() {
    let dir = project(&[(
        "workflows/a.workflow.yaml",
        b"kind: workflow\nname: a\nenv: [ { name: UNSET_FOR_TEST_KTSU } ]\npipeline: []\n",
    )]);
    let out = ktsu(&["validate", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("! workflows/a.workflow.yaml:3:"),
        "{}",
        stdout(&out)
    );
    let out = ktsu(&["validate", dir.path().to_str().unwrap(), "--deny-warnings"]);
    assert_eq!(out.status.code(), Some(1));
    let out = ktsu(&["validate", dir.path().to_str().unwrap(), "--check-env"]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn usage_errors_exit_2() {
    let dir = examples().join("hello");
    let d = dir.to_str().unwrap();
    for args in [
        vec!["validate", "/no/such/dir"],
        vec!["validate", d, "--json", "--graph"],
        vec!["validate", d, "extra"],
        vec!["validate", d, "--no-such-flag"],
        vec!["validate", d, "--env", "/no/such.env.yaml"],
        vec!["validate", d, "--gateway-config", "/no/gateway.yaml"],
        vec!["validate", d, "--workflow-dir", "/no/workflows"],
        vec!["lock"],
    ] {
        let out = ktsu(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stdout(&out).is_empty(), "{args:?}: {}", stdout(&out));
    }
    let out = Command::new(env!("CARGO_BIN_EXE_ktsu")).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("Usage"), "{}", stderr(&out));
}

#[test]
fn project_dir_precedence() {
    let dir = examples().join("hello");
    // positional DIR wins over --project-dir and KTSU_PROJECT_DIR
    let out = Command::new(env!("CARGO_BIN_EXE_ktsu"))
        .args(["validate", dir.to_str().unwrap(), "--project-dir", "/nope"])
        .env("KTSU_PROJECT_DIR", "/nope")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // the env var is used when no flag is given; empty counts as unset
    let out = Command::new(env!("CARGO_BIN_EXE_ktsu"))
        .args(["validate"])
        .env("KTSU_PROJECT_DIR", dir.to_str().unwrap())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = Command::new(env!("CARGO_BIN_EXE_ktsu"))
        .args(["validate"])
        .env("KTSU_PROJECT_DIR", "")
        .current_dir(&dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn malformed_files_give_clear_errors_never_panics() {
    let huge = vec![b'#'; 50 * 1024 * 1024];
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "workflows/a.workflow.yaml",
            b"kind: workflow\nname: [x\n".to_vec(),
            "yaml_syntax",
        ),
        (
            "workflows/a.workflow.yaml",
            b"kind: workflow\nname: 5\npipeline: 7\n".to_vec(),
            "type_mismatch",
        ),
        (
            "workflows/a.workflow.yaml",
            b"\x00\xff\xfe\x80binary\x01\x02".to_vec(),
            "yaml_syntax",
        ),
        ("workflows/a.workflow.yaml", huge, "io_error"),
    ];
    for (path, content, code) in cases {
        let dir = project(&[(path, &content)]);
        let out = ktsu(&["validate", dir.path().to_str().unwrap(), "--json"]);
        assert_eq!(out.status.code(), Some(1), "{code}: {}", stderr(&out));
        let doc: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
        let codes: Vec<&str> = doc["files"][0]["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["code"].as_str().unwrap())
            .collect();
        assert!(codes.contains(&code), "{code}: {codes:?}");
        assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
    }
}

#[test]
fn graph_output() {
    let dir = examples().join("support-triage");
    let out = ktsu(&["validate", dir.to_str().unwrap(), "--graph"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.starts_with("%% workflows/support-triage.workflow.yaml\ngraph TD\n"),
        "{text}"
    );
    assert!(text.contains("  parse[\"parse [agent]\"]\n"), "{text}");
    assert!(
        text.contains("  page-oncall[\"page-oncall [approval]\"]\n"),
        "{text}"
    );
    assert!(text.contains("  parse --> score-links\n"), "{text}");
    assert!(text.contains("  score-links --> top\n"), "{text}");
    assert!(text.contains("  notify --> archive\n"), "{text}");
}

#[test]
fn workflow_tree() {
    let file = examples().join("support-triage/workflows/support-triage.workflow.yaml");
    let out = ktsu(&["workflow", "tree", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.starts_with("support-triage.workflow.yaml (workflow)\n"),
        "{text}"
    );
    assert!(text.contains("├── parser.agent.yaml (agent)\n│   ├── wiki.server.yaml (server)\n│   └── servers.yaml#crm (server)\n"), "{text}");
    assert!(
        text.contains(
            "└── archive.workflow.yaml (workflow)\n    └── archivist.agent.yaml (agent)\n"
        ),
        "{text}"
    );

    let out = ktsu(&["workflow", "tree", file.to_str().unwrap(), "--json"]);
    let doc: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(doc["kind"], "workflow");
    assert!(doc["path"]
        .as_str()
        .unwrap()
        .ends_with("support-triage.workflow.yaml"));
    assert_eq!(doc["children"][0]["kind"], "agent");

    let dir = project(&[(
        "workflows/a.workflow.yaml",
        b"kind: workflow\nname: a\npipeline:\n  - { id: x, agent: missing.agent.yaml }\n",
    )]);
    let out = ktsu(&[
        "workflow",
        "tree",
        dir.path()
            .join("workflows/a.workflow.yaml")
            .to_str()
            .unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        stdout(&out).contains("└── missing.agent.yaml (unresolved)\n"),
        "{}",
        stdout(&out)
    );

    let out = ktsu(&["workflow", "tree", "/no/such.workflow.yaml"]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn version() {
    let out = ktsu(&["version"]);
    assert_eq!(out.status.code(), Some(0));
    let text = stdout(&out);
    assert!(
        text.starts_with(&format!(
            "Version:  {}\nCommit:   ",
            env!("CARGO_PKG_VERSION")
        )),
        "{text}"
    );
    let out = ktsu(&["version", "--json"]);
    let doc: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(doc["version"], env!("CARGO_PKG_VERSION"));
    assert!(doc["commit"].is_string() && doc["built"].is_string());
    let out = ktsu(&["--version"]);
    assert_eq!(
        stdout(&out).trim(),
        format!("ktsu {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn run_checks_project_and_input() {
    let wf = examples().join("hello/workflows/hello.workflow.yaml");
    let w = wf.to_str().unwrap();
    let out = ktsu(&["run", w, "--input", r#"{"name":"Ada"}"#]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = ktsu(&["run", w, "--input", "{}"]);
    assert_eq!(out.status.code(), Some(8), "{}", stderr(&out));
    assert!(stderr(&out).contains("/name"), "{}", stderr(&out));
    let out = ktsu(&["run", w, "--input", "[1]"]);
    assert_eq!(out.status.code(), Some(2));
    let out = ktsu(&["run", w, "--input", "{bad"]);
    assert_eq!(out.status.code(), Some(2));

    let dir = project(&[(
        "workflows/a.workflow.yaml",
        b"kind: workflow\nname: a\npipeline: 3\n",
    )]);
    let out = ktsu(&[
        "run",
        dir.path()
            .join("workflows/a.workflow.yaml")
            .to_str()
            .unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("a.workflow.yaml:3:11: `pipeline` must be a sequence"),
        "{}",
        stderr(&out)
    );
}
