//! The workflow registry (config.md §1.4): unique names per workspace, shadowing across
//! workspaces, file stems hidden by names.

use super::Sinks;
use crate::diag::Severity;
use crate::project::{file_stem, FileId, Project};

pub(crate) fn check_registry(project: &Project, sinks: &mut Sinks<'_>) {
    let entries: Vec<(FileId, usize, &str)> = project
        .registry
        .iter()
        .filter_map(|id| {
            let wf = &project.workflow(*id)?.workflow;
            Some((*id, project.files[*id].workspace, wf.name.value.as_str()))
        })
        .collect();
    for (i, (id, ws, name)) in entries.iter().enumerate() {
        let Some(wf) = project.workflow(*id).map(|w| &w.workflow) else {
            continue;
        };
        if let Some((first, first_ws, _)) = entries[..i].iter().find(|(_, _, n)| n == name) {
            let first_file = &project.files[*first].display;
            if first_ws == ws {
                sinks.file(*id).error(
                    "duplicate_name",
                    wf.name.pos,
                    "name",
                    format!("workflow name `{name}` is already used by {first_file}"),
                );
            } else {
                sinks.file(*id).push(
                    "shadowed_workflow",
                    Severity::Warning,
                    Some(wf.name.pos),
                    "name",
                    format!(
                        "workflow `{name}` is shadowed by {first_file} of an earlier workspace; this one cannot be invoked by name"
                    ),
                    None,
                );
            }
        }
        if let Some(stem) = file_stem(&project.files[*id].path) {
            if stem != *name {
                if let Some((other, _, _)) = entries.iter().find(|(o, _, n)| o != id && *n == stem)
                {
                    sinks.file(*id).push(
                        "alias_shadowed",
                        Severity::Warning,
                        Some(wf.name.pos),
                        "name",
                        format!(
                            "the file stem `{stem}` is also the name of {}; `/invoke/{stem}` runs that workflow (the name wins)",
                            project.files[*other].display
                        ),
                        None,
                    );
                }
            }
        }
    }
}
