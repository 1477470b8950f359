//! The README/CI contract (cli-and-ops.md §8): `.ci/run` runs exactly the README's test
//! command, and the README's first code block holds exactly the two commands.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::path::Path;

fn read(rel: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)).unwrap()
}

/// The commands of the README's first code block.
fn readme_commands() -> Vec<String> {
    let readme = read("README.md");
    let start = readme.find("```sh\n").expect("a ```sh block") + 6;
    let end = start + readme[start..].find("```").expect("closing fence");
    readme[start..end]
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

#[test]
fn readme_has_exactly_two_commands() {
    let cmds = readme_commands();
    assert_eq!(cmds.len(), 2, "{cmds:?}");
    assert!(
        cmds[0].starts_with("cargo run --release -- run examples/hello/"),
        "{}",
        cmds[0]
    );
}

#[test]
fn ci_runs_the_readme_test_command() {
    let ci = read(".ci/run");
    let last = ci
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty() && !l.starts_with('#'))
        .unwrap()
        .to_string();
    assert_eq!(last, readme_commands()[1]);
    assert!(ci.starts_with("#!/usr/bin/env bash"));
    assert!(ci.contains("set -euo pipefail"));
}
