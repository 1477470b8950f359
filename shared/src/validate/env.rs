//! Env declarations (config.md §5.1): every declared variable needs a value (process
//! environment, then the `--env` file's `variables`, then `default`), secrets must be long
//! enough to scrub, `invoke.auth` secrets must not be empty.

use super::{EnvMode, Sinks, ValidateOptions};
use crate::diag::Severity;
use crate::project::{EnvDecl, EnvFile, FileId, Project};

/// Where process environment values come from (a trait so tests need not touch the real
/// process environment).
pub trait EnvLookup {
    /// The value of a variable that is set (an empty value counts as set).
    fn get(&self, name: &str) -> Option<String>;
}

/// The real process environment.
pub struct ProcessEnv;

impl EnvLookup for ProcessEnv {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var_os(name).map(|v| v.to_string_lossy().into_owned())
    }
}

impl EnvLookup for std::collections::HashMap<String, String> {
    fn get(&self, name: &str) -> Option<String> {
        std::collections::HashMap::get(self, name).cloned()
    }
}

/// The value of a declared variable: process environment, else the env file, else `default`.
pub fn resolve_env_value(
    decl: &EnvDecl,
    env: &dyn EnvLookup,
    env_file: Option<&EnvFile>,
) -> Option<String> {
    env.get(&decl.name.value)
        .or_else(|| {
            env_file
                .and_then(|f| f.variable(&decl.name.value))
                .map(str::to_string)
        })
        .or_else(|| decl.default.clone())
}

/// A secret shorter than this cannot be scrubbed without corrupting unrelated text.
const MIN_SECRET_LEN: usize = 4;

pub(crate) fn check_env(project: &Project, opts: &ValidateOptions<'_>, sinks: &mut Sinks<'_>) {
    let severity = match opts.env_mode {
        EnvMode::Lenient => Severity::Warning,
        EnvMode::Strict | EnvMode::Startup => Severity::Error,
    };
    let env_file = project.env_file.as_ref().map(|(_, f)| f);
    let mut ids: Vec<FileId> = project.workflows.keys().copied().collect();
    ids.sort_unstable();
    for id in ids {
        let Some(lw) = project.workflow(id) else {
            continue;
        };
        let wf = &lw.workflow;
        if !wf.is_root() {
            continue;
        }
        let owner = format!("workflow `{}`", wf.name.value);
        for decl in &wf.env {
            let value = check_decl(sinks, id, decl, &owner, opts, env_file, severity);
            if opts.env_mode == EnvMode::Startup {
                if let (Some(auth), Some(value)) = (&wf.invoke_auth, &value) {
                    if auth.secret_env() == Some(decl.name.value.as_str()) && value.is_empty() {
                        let (pos, path) = auth
                            .secret
                            .as_ref()
                            .map_or((auth.pos, "invoke.auth".to_string()), |s| {
                                (s.pos, s.path.clone())
                            });
                        sinks.file(id).error(
                            "empty_auth_secret",
                            pos,
                            &path,
                            format!(
                                "invoke.auth secret `{}` resolves to an empty value",
                                decl.name.value
                            ),
                        );
                    }
                }
            }
        }
    }
    if let Some((gid, gateway)) = &project.gateway {
        for decl in &gateway.env {
            check_decl(
                sinks,
                *gid,
                decl,
                "the gateway config",
                opts,
                env_file,
                severity,
            );
        }
        if opts.env_mode == EnvMode::Startup {
            check_required_config(project, opts, sinks);
        }
    }
}

fn check_decl(
    sinks: &mut Sinks<'_>,
    file: FileId,
    decl: &EnvDecl,
    owner: &str,
    opts: &ValidateOptions<'_>,
    env_file: Option<&EnvFile>,
    severity: Severity,
) -> Option<String> {
    let value = resolve_env_value(decl, opts.env, env_file);
    match &value {
        None => sinks.file(file).push(
            "env_unset",
            severity,
            Some(decl.name.pos),
            &decl.name.path,
            format!("env var `{}` declared by {owner} has no value and no default", decl.name.value),
            Some(format!("set {} in the environment or in the --env file", decl.name.value)),
        ),
        Some(v) if decl.secret && !v.is_empty() && v.chars().count() < MIN_SECRET_LEN => sinks.file(file).push(
            "weak_secret",
            severity,
            Some(decl.name.pos),
            &decl.name.path,
            format!(
                "secret env var `{}` is shorter than {MIN_SECRET_LEN} characters; it could not be scrubbed from logs without corrupting unrelated text",
                decl.name.value
            ),
            None,
        ),
        Some(_) => {}
    }
    value
}

/// A required provider config key that resolves to an empty string is `missing_field` at
/// startup (config.md §2.7).
fn check_required_config(project: &Project, opts: &ValidateOptions<'_>, sinks: &mut Sinks<'_>) {
    let Some((gid, gateway)) = &project.gateway else {
        return;
    };
    let env_file = project.env_file.as_ref().map(|(_, f)| f);
    for provider in &gateway.providers {
        // A provider the env file replaces is never used (runtime-gateway.md §5.2).
        let replaced = env_file.is_some_and(|f| {
            f.providers
                .iter()
                .any(|p| p.name.value == provider.name.value)
        });
        if replaced {
            continue;
        }
        for cv in &provider.config {
            if cv.env_refs.is_empty() {
                continue;
            }
            let resolved = substitute(&cv.value.value, |name| {
                gateway
                    .env
                    .iter()
                    .find(|d| d.name.value == name)
                    .and_then(|d| resolve_env_value(d, opts.env, env_file))
                    .unwrap_or_default()
            });
            let required = matches!(
                (provider.kind, cv.key.value.as_str()),
                (crate::project::ProviderType::Anthropic, "api_key")
                    | (crate::project::ProviderType::OpenAi, "api_key" | "base_url")
            );
            if required && resolved.trim().is_empty() {
                sinks.file(*gid).error(
                    "missing_field",
                    cv.value.pos,
                    &cv.value.path,
                    format!(
                        "provider `{}` config `{}` resolves to an empty value",
                        provider.name.value, cv.key.value
                    ),
                );
            }
        }
    }
}

/// Replaces every `{{ env.NAME }}` placeholder of a provider config value
/// (runtime-gateway.md §5.3); the result is not scanned again.
pub fn substitute(text: &str, mut value_of: impl FnMut(&str) -> String) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find("}}") {
            Some(end) => {
                let inner = after[..end].trim();
                match inner.strip_prefix("env.") {
                    Some(name) => out.push_str(&value_of(name.trim())),
                    None => out.push_str(&rest[start..start + 2 + end + 2]),
                }
                rest = &after[end + 2..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}
