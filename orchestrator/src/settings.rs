//! Orchestrator settings (orchestrator.md §1.1, cli-and-ops.md §2): flag > environment >
//! default; a value that does not parse names its setting (exit 2 before anything binds).

use ktsu_shared::project::LoadOptions;
use ktsu_shared::secret::Secret;
use ktsu_shared::service::settings::{Reader, SettingError, Source};
use std::path::PathBuf;
use std::time::Duration;

/// Values given as command-line flags (`ktsu start orchestrator`, `ktsu start --all`).
#[derive(Debug, Clone, Default)]
pub struct Flags {
    pub host: Option<String>,
    pub port: Option<String>,
    pub own_url: Option<String>,
    pub runtime_url: Option<String>,
    pub gateway_url: Option<String>,
    pub project_dir: Option<PathBuf>,
    pub workflow_dir: Option<PathBuf>,
    pub store_type: Option<String>,
    pub db_path: Option<String>,
    pub heartbeat_timeout_s: Option<String>,
    /// `--env FILE` (no env var).
    pub env_file: Option<PathBuf>,
    /// `--workspace DIR` (repeatable, no env var).
    pub workspaces: Vec<PathBuf>,
    pub no_hub_lock: bool,
}

/// Which store to open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreChoice {
    Memory { max_runs: usize },
    Sqlite { path: PathBuf, pool_size: usize },
}

/// Every orchestrator setting, resolved.
#[derive(Debug, Clone)]
pub struct Settings {
    pub host: String,
    pub port: u16,
    /// `None`: derived from the bound address once the listener exists.
    pub own_url: Option<String>,
    pub runtime_url: Option<String>,
    pub gateway_url: Option<String>,
    pub load: LoadOptions,
    pub store: StoreChoice,
    /// `None` disables heartbeat supervision (`KTSU_HEARTBEAT_TIMEOUT_S=0`).
    pub heartbeat_timeout: Option<Duration>,
    pub api_key: Option<Secret>,
    pub internal_token: Option<Secret>,
    pub run_max_parallel_steps: usize,
    /// `0` = unlimited.
    pub max_active_runs: usize,
    pub max_queued_runs: usize,
    pub fanout_max_items: usize,
    pub max_body_bytes: usize,
    pub max_callback_bytes: usize,
    pub idempotency_ttl: Duration,
    pub max_wait: Duration,
    pub dispatch_timeout: Duration,
    pub dispatch_retry: Duration,
    pub shutdown_timeout: Duration,
}

/// The `state:` of an `--env` file, when it has one (the store defaults of config.md §2.8).
fn env_file_state(path: &std::path::Path) -> Option<(String, String)> {
    let bytes = std::fs::read(path).ok()?;
    let doc = ktsu_shared::yaml::parse_bytes(&bytes).ok()?;
    let mut reader = ktsu_shared::project::read::Reader::new(path.display().to_string());
    let file = ktsu_shared::project::decode::gateway::read_env_file(&mut reader, &doc.root)?;
    file.state.map(|s| (s.driver, s.dsn))
}

fn count(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

impl Settings {
    /// Resolves the settings from flags and the environment.
    pub fn resolve(flags: &Flags, source: &dyn Source) -> Result<Settings, SettingError> {
        let r = Reader::new(source);
        let host = r.string("KTSU_ORCHESTRATOR_HOST", flags.host.as_deref(), "");
        let port = r.port("KTSU_ORCHESTRATOR_PORT", flags.port.as_deref(), 5050)?;
        let own_url = r.url("KTSU_OWN_URL", flags.own_url.as_deref())?;
        let runtime_url = r.url("KTSU_RUNTIME_URL", flags.runtime_url.as_deref())?;
        let gateway_url = r.url("KTSU_GATEWAY_URL", flags.gateway_url.as_deref())?;
        let project_dir = flags
            .project_dir
            .clone()
            .or_else(|| r.opt_string("KTSU_PROJECT_DIR", None).map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from("."));
        let workflow_dir = flags
            .workflow_dir
            .clone()
            .or_else(|| r.opt_string("KTSU_WORKFLOW_DIR", None).map(PathBuf::from));
        let env_state = flags.env_file.as_deref().and_then(env_file_state);
        let store_type = match r.raw("KTSU_STORE_TYPE", flags.store_type.as_deref()) {
            Some((value, setting)) => match value.as_str() {
                "memory" | "sqlite" => value,
                "postgres" => {
                    return Err(SettingError {
                        setting,
                        value,
                        reason: "store type \"postgres\" is not available in this release".into(),
                    })
                }
                _ => {
                    return Err(SettingError {
                        setting,
                        value,
                        reason: "expected memory or sqlite".into(),
                    })
                }
            },
            None => env_state
                .as_ref()
                .map_or_else(|| "memory".to_string(), |(d, _)| d.clone()),
        };
        let store = if store_type == "sqlite" {
            let path = r
                .opt_string("KTSU_DB_PATH", flags.db_path.as_deref())
                .or_else(|| env_state.as_ref().map(|(_, dsn)| dsn.clone()))
                .unwrap_or_else(|| "ktsu.db".to_string());
            StoreChoice::Sqlite {
                path: PathBuf::from(path),
                pool_size: count(r.u64("KTSU_DB_POOL_SIZE", None, 8, 1, 64)?),
            }
        } else {
            StoreChoice::Memory {
                max_runs: count(r.u64("KTSU_MEMORY_MAX_RUNS", None, 10_000, 1, u64::MAX)?),
            }
        };
        let heartbeat = r.u64(
            "KTSU_HEARTBEAT_TIMEOUT_S",
            flags.heartbeat_timeout_s.as_deref(),
            30,
            0,
            86_400,
        )?;
        let secret = |name: &str| r.opt_string(name, None).map(Secret::new);
        Ok(Settings {
            host,
            port,
            own_url,
            runtime_url,
            gateway_url,
            load: LoadOptions {
                project_dir,
                workflow_dir,
                workspaces: flags.workspaces.clone(),
                no_hub_lock: flags.no_hub_lock,
                gateway_config: None,
                env_file: flags.env_file.clone(),
            },
            store,
            heartbeat_timeout: (heartbeat > 0).then(|| Duration::from_secs(heartbeat)),
            api_key: secret("KTSU_API_KEY"),
            internal_token: secret("KTSU_INTERNAL_TOKEN"),
            run_max_parallel_steps: count(r.u64(
                "KTSU_RUN_MAX_PARALLEL_STEPS",
                None,
                16,
                1,
                10_000,
            )?),
            max_active_runs: count(r.u64("KTSU_MAX_ACTIVE_RUNS", None, 1000, 0, u64::MAX)?),
            max_queued_runs: count(r.u64("KTSU_MAX_QUEUED_RUNS", None, 10_000, 0, u64::MAX)?),
            fanout_max_items: count(r.u64("KTSU_FANOUT_MAX_ITEMS", None, 10_000, 1, u64::MAX)?),
            max_body_bytes: count(r.u64("KTSU_MAX_BODY_BYTES", None, 1_048_576, 1, u64::MAX)?),
            max_callback_bytes: count(r.u64(
                "KTSU_MAX_CALLBACK_BYTES",
                None,
                16_777_216,
                1,
                u64::MAX,
            )?),
            idempotency_ttl: r.seconds("KTSU_IDEMPOTENCY_TTL_S", None, 86_400, 1)?,
            max_wait: r.seconds("KTSU_MAX_WAIT_S", None, 300, 0)?,
            dispatch_timeout: r.seconds("KTSU_DISPATCH_TIMEOUT_S", None, 10, 1)?,
            dispatch_retry: r.seconds("KTSU_DISPATCH_RETRY_S", None, 60, 0)?,
            shutdown_timeout: r.seconds("KTSU_SHUTDOWN_TIMEOUT_S", None, 30, 0)?,
        })
    }

    /// The store's name for health and logs.
    pub fn store_name(&self) -> &'static str {
        match self.store {
            StoreChoice::Memory { .. } => "memory",
            StoreChoice::Sqlite { .. } => "sqlite",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults() {
        let s = Settings::resolve(&Flags::default(), &env(&[])).unwrap();
        assert_eq!(s.port, 5050);
        assert_eq!(s.store, StoreChoice::Memory { max_runs: 10_000 });
        assert_eq!(s.heartbeat_timeout, Some(Duration::from_secs(30)));
        assert_eq!(s.run_max_parallel_steps, 16);
        assert!(s.api_key.is_none());
    }

    #[test]
    fn flags_win_and_bad_values_name_the_setting() {
        let e = env(&[
            ("KTSU_ORCHESTRATOR_PORT", "6000"),
            ("KTSU_STORE_TYPE", "sqlite"),
            ("KTSU_DB_PATH", "/tmp/x.db"),
            ("KTSU_HEARTBEAT_TIMEOUT_S", "0"),
        ]);
        let flags = Flags {
            port: Some("7000".into()),
            ..Flags::default()
        };
        let s = Settings::resolve(&flags, &e).unwrap();
        assert_eq!(s.port, 7000);
        assert_eq!(
            s.store,
            StoreChoice::Sqlite {
                path: "/tmp/x.db".into(),
                pool_size: 8
            }
        );
        assert_eq!(s.heartbeat_timeout, None);
        let err = Settings::resolve(
            &Flags::default(),
            &env(&[("KTSU_ORCHESTRATOR_PORT", "abc")]),
        )
        .unwrap_err();
        assert_eq!(err.setting, "KTSU_ORCHESTRATOR_PORT");
        let err = Settings::resolve(&Flags::default(), &env(&[("KTSU_STORE_TYPE", "postgres")]))
            .unwrap_err();
        assert!(err.reason.contains("not available in this release"));
        assert!(Settings::resolve(&Flags::default(), &env(&[("KTSU_OWN_URL", "nope")])).is_err());
    }
}
