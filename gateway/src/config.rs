//! The configuration the gateway serves (runtime-gateway.md §5.2, §5.3; config.md §2.7, §2.8):
//! the gateway file checked by the shared validator (every error at once, with
//! `file:line:column`), `--env` file providers merged in by name, `--mock` applied, and every
//! `{{ env.NAME }}` placeholder substituted into a resolved copy (the loaded model is never
//! mutated).

use crate::error::StartError;
use crate::settings::{GatewayFile, Settings};
use ktsu_shared::diag::{Diagnostic, Pos, Severity};
use ktsu_shared::project::decode::gateway::read_mock_script;
use ktsu_shared::project::read::Reader;
use ktsu_shared::project::{
    EnvDecl, EnvFile, FileKind, GatewaySettings, LoadOptions, MockScript, ModelGroup, Project,
    Provider, ProviderType, Spanned, Strategy,
};
use ktsu_shared::validate::{
    check_project, resolve_env_value, substitute, EnvLookup, EnvMode, ValidateOptions,
};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// The model every group name resolves to under `--mock` without a gateway file.
pub const MOCK_DEFAULT_MODEL: &str = "mock/default";

/// A secret shorter than this is not scrubbed: it would corrupt unrelated text (config.md §5.1
/// `weak_secret` uses the same bound).
const MIN_SCRUB_LEN: usize = 4;

/// One provider `config` value after substitution, with where it was written (for startup
/// diagnostics about the resolved value).
#[derive(Debug, Clone)]
pub struct ResolvedValue {
    pub key: String,
    pub value: String,
    pub pos: Pos,
    pub path: String,
}

/// A provider as served.
#[derive(Debug, Clone)]
pub struct ProviderSpec {
    pub name: String,
    pub kind: ProviderType,
    pub values: Vec<ResolvedValue>,
    pub timeout_s: u64,
    pub max_concurrency: u64,
    pub max_queue: u64,
    /// The mock script named by `script`, loaded and validated.
    pub script: Option<MockScript>,
    /// Display path of the file the provider was declared in (gateway or env file).
    pub file: String,
}

impl ProviderSpec {
    /// The resolved value of a config key.
    pub fn value(&self, key: &str) -> Option<&ResolvedValue> {
        self.values.iter().find(|v| v.key == key)
    }

    /// The built-in mock with its defaults (`--mock`, and the provider of a file-less gateway).
    fn default_mock(name: &str, file: &str) -> Self {
        ProviderSpec {
            name: name.to_string(),
            kind: ProviderType::Mock,
            values: Vec::new(),
            timeout_s: 120,
            max_concurrency: 32,
            max_queue: 256,
            script: None,
            file: file.to_string(),
        }
    }

    /// A startup error about the value of `key`.
    pub fn error_at(&self, value: &ResolvedValue, message: String) -> Diagnostic {
        config_error(&self.file, value.pos, &value.path, "invalid_value", message)
    }
}

/// Everything the gateway serves, resolved.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    pub settings: GatewaySettings,
    pub providers: Vec<ProviderSpec>,
    pub groups: Vec<ModelGroup>,
    /// `--mock` without a gateway file: any group name is served by [`MOCK_DEFAULT_MODEL`].
    pub any_group_is_mock: bool,
    /// Values to scrub from every log line and error body: secret env values, provider keys.
    pub secrets: Vec<String>,
    /// Warnings worth logging at startup (they never stop it).
    pub warnings: Vec<Diagnostic>,
}

/// An error diagnostic of a startup check the shared validator cannot do (resolved values).
pub fn config_error(
    file: &str,
    pos: Pos,
    path: &str,
    code: &'static str,
    message: String,
) -> Diagnostic {
    Diagnostic {
        code,
        severity: Severity::Error,
        message,
        file: file.to_string(),
        line: Some(pos.line),
        column: Some(pos.column),
        path: (!path.is_empty()).then(|| path.to_string()),
        hint: None,
    }
}

/// Loads, validates and resolves the configuration named by `settings`.
pub fn load(settings: &Settings, env: &dyn EnvLookup) -> Result<LoadedConfig, StartError> {
    if let Some(env_file) = &settings.env_file {
        readable(env_file).map_err(|cause| StartError::EnvFileUnreadable {
            path: env_file.display().to_string(),
            cause,
        })?;
    }
    match &settings.file {
        GatewayFile::MockOnly => Ok(mock_only()),
        GatewayFile::Path(path) => load_file(path, settings, env),
    }
}

/// `--mock` without a file: one mock provider named `mock`, any group name accepted.
fn mock_only() -> LoadedConfig {
    LoadedConfig {
        settings: GatewaySettings::default(),
        providers: vec![ProviderSpec::default_mock("mock", "(--mock)")],
        groups: Vec::new(),
        any_group_is_mock: true,
        secrets: Vec::new(),
        warnings: Vec::new(),
    }
}

/// The file can be opened for reading; else the OS's reason.
fn readable(path: &Path) -> Result<(), String> {
    if path.is_dir() {
        return Err("is a directory".into());
    }
    std::fs::File::open(path)
        .map(drop)
        .map_err(|e| e.to_string())
}

fn load_file(
    path: &Path,
    settings: &Settings,
    env: &dyn EnvLookup,
) -> Result<LoadedConfig, StartError> {
    readable(path).map_err(|cause| StartError::ConfigUnreadable {
        path: path.display().to_string(),
        cause,
    })?;
    // The shared loader wants a project directory: the gateway file's own, so diagnostics name
    // the file relative to it. Findings about other project files are not the gateway's.
    let project_dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let load = LoadOptions {
        project_dir: project_dir.clone(),
        gateway_config: Some(path.to_path_buf()),
        env_file: settings.env_file.clone(),
        no_hub_lock: true,
        ..LoadOptions::default()
    };
    let report = check_project(
        &load,
        &ValidateOptions {
            env_mode: EnvMode::Startup,
            env,
        },
    )
    .map_err(|e| StartError::ConfigUnreadable {
        path: path.display().to_string(),
        cause: e.to_string(),
    })?;
    let project = report.project;
    let mut diagnostics = own_diagnostics(&project, report.diagnostics);
    let Some((gateway_id, gateway)) = project.gateway.as_ref() else {
        return Err(StartError::InvalidConfig(errors_only(diagnostics)));
    };
    let gateway_file = project.file(*gateway_id).display.clone();
    let env_file = project
        .env_file
        .as_ref()
        .map(|(id, f)| (project.file(*id).display.clone(), f));

    let mut providers: Vec<(&Provider, String)> = gateway
        .providers
        .iter()
        .map(|p| (p, gateway_file.clone()))
        .collect();
    if let Some((display, file)) = &env_file {
        for p in &file.providers {
            match providers
                .iter_mut()
                .find(|(q, _)| q.name.value == p.name.value)
            {
                Some(slot) => *slot = (p, display.clone()),
                None => providers.push((p, display.clone())),
            }
        }
    }
    if settings.mock {
        downgrade_for_mock(&mut diagnostics, &providers, &gateway_file);
    }
    if diagnostics.iter().any(Diagnostic::is_error) {
        return Err(StartError::InvalidConfig(errors_only(diagnostics)));
    }

    let env_values = EnvValues::resolve(&gateway.env, env, env_file.map(|(_, f)| f));
    let mut secrets = env_values.secrets();
    let script_dir = absolute(&project_dir);
    let mut script_errors = Vec::new();
    let mut specs = Vec::with_capacity(providers.len());
    for (provider, file) in providers {
        if settings.mock && provider.kind != ProviderType::Mock {
            let mut spec = ProviderSpec::default_mock(&provider.name.value, &file);
            spec.timeout_s = provider.timeout_s;
            spec.max_concurrency = provider.max_concurrency;
            spec.max_queue = provider.max_queue;
            specs.push(spec);
            continue;
        }
        let values: Vec<ResolvedValue> = provider
            .config
            .iter()
            .map(|c| ResolvedValue {
                key: c.key.value.clone(),
                value: if c.env_refs.is_empty() {
                    c.value.value.clone()
                } else {
                    substitute(&c.value.value, |name| env_values.value(name))
                },
                pos: c.value.pos,
                path: c.value.path.clone(),
            })
            .collect();
        if provider.kind != ProviderType::Mock {
            secrets.extend(
                values
                    .iter()
                    .filter(|v| v.key == "api_key" && v.value.chars().count() >= MIN_SCRUB_LEN)
                    .map(|v| v.value.clone()),
            );
        }
        let mut spec = ProviderSpec {
            name: provider.name.value.clone(),
            kind: provider.kind,
            values,
            timeout_s: provider.timeout_s,
            max_concurrency: provider.max_concurrency,
            max_queue: provider.max_queue,
            script: None,
            file,
        };
        if let Some(script) = spec.value("script").cloned() {
            match find_script(&project, &script_dir, &script.value, &spec.file) {
                Ok(s) => spec.script = Some(s),
                Err(mut errors) => {
                    if errors.is_empty() {
                        errors.push(config_error(
                            &spec.file,
                            script.pos,
                            &script.path,
                            "unresolved_ref",
                            format!("mock script {} cannot be read", script.value),
                        ));
                    }
                    script_errors.extend(errors);
                }
            }
        }
        specs.push(spec);
    }
    if !script_errors.is_empty() {
        return Err(StartError::InvalidConfig(script_errors));
    }
    secrets.sort();
    secrets.dedup();
    Ok(LoadedConfig {
        settings: gateway.settings.clone(),
        providers: specs,
        groups: gateway.model_groups.clone(),
        any_group_is_mock: false,
        secrets,
        warnings: diagnostics,
    })
}

/// Diagnostics about the gateway file, the env file and mock scripts; warnings are kept for
/// the log, findings about workflows and agents beside the gateway file are dropped.
fn own_diagnostics(project: &Project, diagnostics: Vec<Diagnostic>) -> Vec<Diagnostic> {
    let own: HashSet<&str> = project
        .files
        .iter()
        .filter(|f| {
            matches!(
                f.kind,
                FileKind::Gateway | FileKind::Env | FileKind::MockScript
            )
        })
        .map(|f| f.display.as_str())
        .collect();
    diagnostics
        .into_iter()
        .filter(|d| own.contains(d.file.as_str()) && d.code != "no_workflows")
        .collect()
}

fn errors_only(diagnostics: Vec<Diagnostic>) -> Vec<Diagnostic> {
    diagnostics
        .into_iter()
        .filter(Diagnostic::is_error)
        .collect()
}

/// Under `--mock` no real provider is called, so unset or weak keys and unusable config values
/// of the replaced providers do not stop the gateway: they become warnings.
fn downgrade_for_mock(
    diagnostics: &mut [Diagnostic],
    providers: &[(&Provider, String)],
    gateway_file: &str,
) {
    let replaced: Vec<String> = providers
        .iter()
        .enumerate()
        .filter(|(_, (p, file))| p.kind != ProviderType::Mock && file == gateway_file)
        .map(|(i, _)| format!("providers[{i}].config"))
        .collect();
    for d in diagnostics.iter_mut() {
        let in_replaced = d.file == gateway_file
            && d.path
                .as_deref()
                .is_some_and(|p| replaced.iter().any(|r| p.starts_with(r.as_str())));
        if matches!(d.code, "env_unset" | "weak_secret") || in_replaced {
            d.severity = Severity::Warning;
        }
    }
}

/// The resolved values of the gateway file's `env` declarations (config.md §5.1).
struct EnvValues<'a> {
    decls: &'a [EnvDecl],
    values: Vec<Option<String>>,
}

impl<'a> EnvValues<'a> {
    fn resolve(decls: &'a [EnvDecl], env: &dyn EnvLookup, file: Option<&EnvFile>) -> Self {
        let values = decls
            .iter()
            .map(|d| resolve_env_value(d, env, file))
            .collect();
        EnvValues { decls, values }
    }

    /// The value of a declared name (`""` when it has none, only possible under `--mock`).
    fn value(&self, name: &str) -> String {
        self.decls
            .iter()
            .position(|d| d.name.value == name)
            .and_then(|i| self.values[i].clone())
            .unwrap_or_default()
    }

    fn secrets(&self) -> Vec<String> {
        self.decls
            .iter()
            .zip(&self.values)
            .filter(|(d, _)| d.secret)
            .filter_map(|(_, v)| v.clone())
            .filter(|v| v.chars().count() >= MIN_SCRUB_LEN)
            .collect()
    }
}

fn absolute(dir: &Path) -> PathBuf {
    std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf())
}

/// The script a mock provider names (relative to the gateway file's directory): the one the
/// shared loader already read and validated, else read here (a script path with a placeholder,
/// or one named by an env-file provider).
fn find_script(
    project: &Project,
    dir: &Path,
    value: &str,
    file: &str,
) -> Result<MockScript, Vec<Diagnostic>> {
    let full = dir.join(value);
    let canonical = std::fs::canonicalize(&full).map_err(|e| {
        vec![Diagnostic {
            code: "unresolved_ref",
            severity: Severity::Error,
            message: format!("mock script {} cannot be read: {e}", full.display()),
            file: file.to_string(),
            line: None,
            column: None,
            path: None,
            hint: None,
        }]
    })?;
    let loaded = project.mock_scripts.iter().find(|(id, _)| {
        let f = project.file(*id);
        f.kind == FileKind::MockScript && f.path == canonical
    });
    if let Some((_, script)) = loaded {
        return Ok(script.clone());
    }
    read_script_file(&canonical)
}

/// Reads and strictly validates one mock script (runtime-gateway.md §8.3).
pub fn read_script_file(path: &Path) -> Result<MockScript, Vec<Diagnostic>> {
    let display = path.display().to_string();
    let mut reader = Reader::new(display.clone());
    let bytes = std::fs::read(path).map_err(|e| {
        vec![Diagnostic {
            code: "io_error",
            severity: Severity::Error,
            message: format!("cannot read the file: {e}"),
            file: display.clone(),
            line: None,
            column: None,
            path: None,
            hint: None,
        }]
    })?;
    let document = match ktsu_shared::yaml::parse_bytes(&bytes) {
        Ok(d) => d,
        Err(e) => {
            reader.push("yaml_syntax", Severity::Error, e.pos, "", e.message, None);
            return Err(reader.diags);
        }
    };
    for dup in &document.duplicate_keys {
        reader.error(
            "duplicate_key",
            dup.pos,
            &dup.path,
            format!("key `{}` is repeated", dup.key),
        );
    }
    let script = read_mock_script(&mut reader, &document.root);
    match script {
        Some(s) if !reader.has_errors() => Ok(s),
        _ => Err(reader.diags),
    }
}

/// A group of the file-less `--mock` gateway: `mock/default`, round robin, no pricing.
pub fn mock_group(name: &str) -> ModelGroup {
    let pos = Pos::new(1, 1);
    ModelGroup {
        name: Spanned::new(name.to_string(), pos, ""),
        models: vec![Spanned::new(MOCK_DEFAULT_MODEL.to_string(), pos, "")],
        strategy: Strategy::RoundRobin,
        default_temperature: None,
        default_max_tokens: None,
        retry: Default::default(),
        pricing: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::fs;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).unwrap();
        }
        fs::write(&path, text).unwrap();
        path
    }

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect()
    }

    fn settings(path: &Path) -> Settings {
        Settings::local(GatewayFile::Path(path.to_path_buf()))
    }

    const GATEWAY: &str = r#"
env:
  - { name: ANTHROPIC_API_KEY, secret: true }
  - { name: REGION, default: eu }
providers:
  - name: anthropic
    type: anthropic
    config: { api_key: "{{ env.ANTHROPIC_API_KEY }}", beta: "x-{{ env.REGION }}-{{env.REGION}}" }
  - { name: mock, type: mock, config: { script: scripts/mock.yaml } }
model_groups:
  - { name: standard, models: [anthropic/claude-sonnet-4-5, mock/default], strategy: fallback }
"#;

    const SCRIPT: &str = "rules:\n  - match: { call: 1 }\n    reply: { content: hello }\n";

    #[test]
    fn resolves_placeholders_secrets_and_scripts() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "gateway.yaml", GATEWAY);
        write(dir.path(), "scripts/mock.yaml", SCRIPT);
        // A broken workflow beside the gateway file is not the gateway's business.
        write(dir.path(), "workflows/bad.workflow.yaml", "kind: nope\n");
        let cfg = load(
            &settings(&path),
            &env(&[("ANTHROPIC_API_KEY", "sk-ant-secret")]),
        )
        .unwrap();
        let anthropic = &cfg.providers[0];
        assert_eq!(anthropic.value("api_key").unwrap().value, "sk-ant-secret");
        assert_eq!(anthropic.value("beta").unwrap().value, "x-eu-eu");
        assert_eq!(cfg.secrets, vec!["sk-ant-secret".to_string()]);
        let script = cfg.providers[1].script.as_ref().unwrap();
        assert_eq!(script.rules.len(), 1);
        assert_eq!(cfg.groups[0].models.len(), 2);
        assert!(!cfg.any_group_is_mock);
    }

    #[test]
    fn every_error_is_reported_with_its_location() {
        let dir = tempfile::tempdir().unwrap();
        let bad = "providers:\n  - { name: a, type: anthropic }\n  - { name: a, type: mock }\nmodel_groups:\n  - { name: g, models: [b/x], strategy: random }\n";
        let path = write(dir.path(), "gateway.yaml", bad);
        let err = load(&settings(&path), &env(&[])).unwrap_err();
        let StartError::InvalidConfig(diags) = &err else {
            panic!("{err:?}");
        };
        let codes: Vec<&str> = diags.iter().map(|d| d.code).collect();
        assert!(codes.contains(&"missing_field"), "{codes:?}");
        assert!(codes.contains(&"duplicate_name"), "{codes:?}");
        assert!(codes.contains(&"unknown_provider"), "{codes:?}");
        assert!(codes.contains(&"invalid_value"), "{codes:?}");
        assert!(diags
            .iter()
            .all(|d| d.file == "gateway.yaml" && d.line.is_some()));
        assert_eq!(err.exit_code(), 3);
    }

    #[test]
    fn unset_secret_is_fatal_unless_mocked() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "gateway.yaml", GATEWAY);
        write(dir.path(), "scripts/mock.yaml", SCRIPT);
        let err = load(&settings(&path), &env(&[])).unwrap_err();
        let StartError::InvalidConfig(diags) = err else {
            panic!("expected invalid config");
        };
        assert!(diags.iter().any(|d| d.code == "env_unset"));

        let mut mocked = settings(&path);
        mocked.mock = true;
        let cfg = load(&mocked, &env(&[])).unwrap();
        assert!(cfg.providers.iter().all(|p| p.kind == ProviderType::Mock));
        assert_eq!(cfg.providers[0].name, "anthropic");
        // The existing mock provider keeps its script.
        assert!(cfg.providers[1].script.is_some());
        assert!(cfg.warnings.iter().any(|d| d.code == "env_unset"));
    }

    #[test]
    fn env_file_providers_replace_and_join() {
        let dir = tempfile::tempdir().unwrap();
        let gw = "providers:\n  - { name: anthropic, type: anthropic, config: { api_key: sk-live-1234 } }\nmodel_groups:\n  - { name: g, models: [anthropic/claude-haiku-4-5, local/qwen] }\n";
        let path = write(dir.path(), "gateway.yaml", gw);
        let envf = write(
            dir.path(),
            "environments/dev.env.yaml",
            "name: dev\nproviders:\n  - { name: anthropic, type: mock }\n  - { name: local, type: openai, config: { base_url: \"http://127.0.0.1:1/v1\", api_key: unused } }\n",
        );
        let mut s = settings(&path);
        s.env_file = Some(envf);
        let cfg = load(&s, &env(&[])).unwrap();
        let names: Vec<(&str, ProviderType)> = cfg
            .providers
            .iter()
            .map(|p| (p.name.as_str(), p.kind))
            .collect();
        assert_eq!(
            names,
            vec![
                ("anthropic", ProviderType::Mock),
                ("local", ProviderType::OpenAi)
            ]
        );
        assert_eq!(cfg.providers[1].file, "environments/dev.env.yaml");
    }

    #[test]
    fn missing_files_are_usage_errors() {
        let dir = tempfile::tempdir().unwrap();
        let err = load(&settings(&dir.path().join("nope.yaml")), &env(&[])).unwrap_err();
        assert!(
            matches!(err, StartError::ConfigUnreadable { .. }),
            "{err:?}"
        );
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().starts_with("gateway config "), "{err}");
        let err = load(&settings(dir.path()), &env(&[])).unwrap_err();
        assert_eq!(err.exit_code(), 2, "a directory is not a config file");
        let path = write(dir.path(), "gateway.yaml", GATEWAY);
        let mut s = settings(&path);
        s.env_file = Some(dir.path().join("missing.env.yaml"));
        assert_eq!(load(&s, &env(&[])).unwrap_err().exit_code(), 2);
    }

    #[test]
    fn mock_only_serves_any_group() {
        let cfg = load(&Settings::local(GatewayFile::MockOnly), &env(&[])).unwrap();
        assert!(cfg.any_group_is_mock);
        assert_eq!(cfg.providers.len(), 1);
        assert_eq!(mock_group("anything").models[0].value, MOCK_DEFAULT_MODEL);
    }

    #[test]
    fn broken_scripts_are_config_errors() {
        let dir = tempfile::tempdir().unwrap();
        let gw = "env:\n  - { name: SCRIPT, default: s.yaml }\nproviders:\n  - { name: mock, type: mock, config: { script: \"{{ env.SCRIPT }}\" } }\nmodel_groups:\n  - { name: g, models: [mock/x] }\n";
        let path = write(dir.path(), "gateway.yaml", gw);
        write(
            dir.path(),
            "s.yaml",
            "rules:\n  - { reply: { content: a, json: {} } }\n",
        );
        let err = load(&settings(&path), &env(&[])).unwrap_err();
        assert_eq!(err.exit_code(), 3, "{err:?}");
        write(dir.path(), "s.yaml", SCRIPT);
        let cfg = load(&settings(&path), &env(&[])).unwrap();
        assert!(cfg.providers[0].script.is_some());
        fs::remove_file(dir.path().join("s.yaml")).unwrap();
        assert_eq!(
            load(&settings(&path), &env(&[])).unwrap_err().exit_code(),
            3
        );
    }
}
