//! Reference resolution: one rule for `agent:`, `workflow:` and `servers[].path`
//! (config.md §1.2), independent of the current directory.

use super::model::FileKind;
use std::path::{Component, Path, PathBuf};

/// What a reference names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefKind {
    Agent,
    Workflow,
    Server,
}

impl RefKind {
    pub fn file_kind(self) -> FileKind {
        match self {
            RefKind::Agent => FileKind::Agent,
            RefKind::Workflow => FileKind::Workflow,
            RefKind::Server => FileKind::Server,
        }
    }

    pub fn noun(self) -> &'static str {
        match self {
            RefKind::Agent => "agent",
            RefKind::Workflow => "workflow",
            RefKind::Server => "tool server",
        }
    }
}

/// The outcome of resolving one reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// An existing regular file. `ambiguous_with` is the other candidate when both exist and
    /// differ (warning `ambiguous_ref`).
    File {
        path: PathBuf,
        version: Option<String>,
        ambiguous_with: Option<PathBuf>,
    },
    /// A `servers.yaml` entry named by a bare name (servers only).
    ManifestEntry { name: String },
    /// The reference is empty (`missing_field`).
    Empty,
    /// Neither candidate exists (`unresolved_ref`).
    Missing { candidates: Vec<PathBuf> },
    /// The target has another kind's suffix or is `servers.yaml` (`wrong_file_kind`).
    WrongKind {
        path: PathBuf,
        found: Option<FileKind>,
    },
}

/// Splits `R@V` when the text after the last `@` is non-empty and has no `/`.
pub fn split_version(reference: &str) -> (&str, Option<&str>) {
    match reference.rfind('@') {
        Some(i) => {
            let version = &reference[i + 1..];
            if !version.is_empty() && !version.contains('/') {
                (&reference[..i], Some(version))
            } else {
                (reference, None)
            }
        }
        None => (reference, None),
    }
}

/// Lexical normalisation: removes `.` and folds `..` without touching the file system.
pub fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// Resolves reference `reference` written in a file of directory `dir`, inside workspace root
/// `root` (both absolute).
pub fn resolve(reference: &str, kind: RefKind, dir: &Path, root: &Path) -> Resolution {
    let (target, version) = split_version(reference.trim());
    if target.is_empty() {
        return Resolution::Empty;
    }
    if kind == RefKind::Server && !target.contains('/') && !target.ends_with(".yaml") {
        return Resolution::ManifestEntry {
            name: target.to_string(),
        };
    }
    let version = version.map(str::to_string);
    let candidates: Vec<PathBuf> = if Path::new(target).is_absolute() {
        vec![normalize(Path::new(target))]
    } else {
        vec![normalize(&dir.join(target)), normalize(&root.join(target))]
    };
    let existing: Vec<&PathBuf> = candidates.iter().filter(|c| c.is_file()).collect();
    let Some(first) = existing.first() else {
        return Resolution::Missing { candidates };
    };
    let chosen = std::fs::canonicalize(first).unwrap_or_else(|_| (*first).clone());
    let ambiguous_with = existing.get(1).and_then(|second| {
        let other = std::fs::canonicalize(second).unwrap_or_else(|_| (*second).clone());
        (other != chosen).then_some(other)
    });
    let name = chosen
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let found = FileKind::from_file_name(&name);
    if name == "servers.yaml" || found.is_some_and(|f| f != kind.file_kind()) {
        return Resolution::WrongKind {
            path: chosen,
            found,
        };
    }
    Resolution::File {
        path: chosen,
        version,
        ambiguous_with,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn project() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        for f in [
            "agents/greeter.agent.yaml",
            "workflows/sub/archive.workflow.yaml",
            "servers/wiki.server.yaml",
            "workflows/hello.workflow.yaml",
            "workflows/main.workflow.yaml",
            "agents/parser.agent.yaml",
        ] {
            fs::create_dir_all(p.join(f).parent().unwrap()).unwrap();
            fs::write(p.join(f), "x: 1\n").unwrap();
        }
        dir
    }

    fn file(res: Resolution) -> PathBuf {
        match res {
            Resolution::File { path, .. } => path,
            other => panic!("expected a file, got {other:?}"),
        }
    }

    #[test]
    fn the_spec_table() {
        let dir = project();
        let p = fs::canonicalize(dir.path()).unwrap();
        let wf = p.join("workflows");
        let agents = p.join("agents");
        assert_eq!(
            file(resolve(
                "./agents/greeter.agent.yaml",
                RefKind::Agent,
                &wf,
                &p
            )),
            p.join("agents/greeter.agent.yaml")
        );
        match resolve(
            "../agents/greeter.agent.yaml@1.0.0",
            RefKind::Agent,
            &wf,
            &p,
        ) {
            Resolution::File { path, version, .. } => {
                assert_eq!(path, p.join("agents/greeter.agent.yaml"));
                assert_eq!(version.as_deref(), Some("1.0.0"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            file(resolve(
                "./sub/archive.workflow.yaml",
                RefKind::Workflow,
                &wf,
                &p
            )),
            p.join("workflows/sub/archive.workflow.yaml")
        );
        assert_eq!(
            file(resolve(
                "servers/wiki.server.yaml",
                RefKind::Server,
                &agents,
                &p
            )),
            p.join("servers/wiki.server.yaml")
        );
        assert_eq!(
            file(resolve(
                "../servers/wiki.server.yaml",
                RefKind::Server,
                &agents,
                &p
            )),
            p.join("servers/wiki.server.yaml")
        );
        assert_eq!(
            resolve("crm", RefKind::Server, &agents, &p),
            Resolution::ManifestEntry { name: "crm".into() }
        );
    }

    #[test]
    fn missing_empty_wrong_kind_and_ambiguous() {
        let dir = project();
        let p = fs::canonicalize(dir.path()).unwrap();
        let wf = p.join("workflows");
        match resolve("agents/nope.agent.yaml", RefKind::Agent, &wf, &p) {
            Resolution::Missing { candidates } => assert_eq!(candidates.len(), 2),
            other => panic!("{other:?}"),
        }
        assert_eq!(resolve("@1.0", RefKind::Agent, &wf, &p), Resolution::Empty);
        assert_eq!(resolve("", RefKind::Agent, &wf, &p), Resolution::Empty);
        assert!(matches!(
            resolve("hello.workflow.yaml", RefKind::Agent, &wf, &p),
            Resolution::WrongKind {
                found: Some(FileKind::Workflow),
                ..
            }
        ));
        fs::write(p.join("servers.yaml"), "servers: []\n").unwrap();
        assert!(matches!(
            resolve("servers.yaml", RefKind::Server, &wf, &p),
            Resolution::WrongKind { .. }
        ));
        // both candidates exist: the file-relative one wins, with a warning
        fs::create_dir_all(wf.join("agents")).unwrap();
        fs::write(wf.join("agents/parser.agent.yaml"), "x: 1\n").unwrap();
        match resolve("agents/parser.agent.yaml", RefKind::Agent, &wf, &p) {
            Resolution::File {
                path,
                ambiguous_with,
                ..
            } => {
                assert_eq!(path, wf.join("agents/parser.agent.yaml"));
                assert_eq!(ambiguous_with, Some(p.join("agents/parser.agent.yaml")));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn version_suffix_rules() {
        assert_eq!(
            split_version("a.agent.yaml@1.2.0"),
            ("a.agent.yaml", Some("1.2.0"))
        );
        assert_eq!(split_version("a.agent.yaml@"), ("a.agent.yaml@", None));
        assert_eq!(
            split_version("x@y/a.agent.yaml"),
            ("x@y/a.agent.yaml", None)
        );
        assert_eq!(split_version("a.agent.yaml"), ("a.agent.yaml", None));
    }
}
