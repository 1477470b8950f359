//! Runtime settings (runtime-gateway.md §1, cli-and-ops.md §2.2): flag > environment variable >
//! default; an empty variable counts as unset, except `KTSU_ORCHESTRATOR_URL`, where an empty
//! value disables registration and heartbeats. A value that does not parse or is out of range is
//! a [`SettingError`] naming the setting (exit 2 before anything binds).

use ktsu_shared::ids;
use ktsu_shared::secret::Secret;
use ktsu_shared::service::settings::{Env, Reader, SettingError, Source};
use std::net::SocketAddr;
use std::time::Duration;

const ORCHESTRATOR_URL: &str = "KTSU_ORCHESTRATOR_URL";
const DEFAULT_ORCHESTRATOR_URL: &str = "http://localhost:5050";
const DEFAULT_GATEWAY_URL: &str = "http://localhost:5052";
/// Ten years: the largest duration a `*_S` setting accepts.
const MAX_SECONDS: f64 = 10.0 * 365.0 * 24.0 * 3600.0;

/// The command-line flags of `ktsu start runtime` (`--host --port --orchestrator --gateway`),
/// as given. `None` = not given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Flags {
    pub host: Option<String>,
    pub port: Option<String>,
    /// `--orchestrator ""` disables registration and heartbeats, like an empty variable.
    pub orchestrator: Option<String>,
    pub gateway: Option<String>,
}

/// Which URL the runtime gives the orchestrator for reaching it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Advertise {
    /// `http://<H>:<bound port>`: H = the bind host unless it is a wildcard, else the OS host
    /// name, else `localhost`.
    Derived,
    /// `http://127.0.0.1:<bound port>`: the in-process modes (`ktsu start --all`, `ktsu run`).
    Loopback,
    /// `KTSU_RUNTIME_ADVERTISE_URL`.
    Fixed(String),
}

/// Everything the runtime reads at startup.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Bind address; `""` = all interfaces.
    pub host: String,
    /// `0` = chosen by the OS.
    pub port: u16,
    /// Registration and heartbeat target; `None` disables both.
    pub orchestrator_url: Option<String>,
    /// LLM gateway base URL, without a trailing `/`.
    pub gateway_url: String,
    pub runtime_id: String,
    pub advertise: Advertise,
    /// Agent loops running at once (≥ 1).
    pub max_concurrency: u32,
    /// Accepted invocations waiting for a slot.
    pub max_queue: u32,
    /// `ZERO` disables heartbeats.
    pub heartbeat_interval: Duration,
    /// Ceiling on one invocation's wall time, queue wait included.
    pub step_timeout: Duration,
    /// Default total timeout of one gateway call.
    pub llm_timeout: Duration,
    /// Default per-request MCP timeout.
    pub mcp_timeout: Duration,
    /// Timeout of one callback POST.
    pub callback_timeout: Duration,
    /// Total time callback delivery keeps retrying.
    pub callback_retry: Duration,
    /// Extra no-tools calls after an invalid last answer.
    pub output_grace_turns: u32,
    /// Cap on the text of one tool result given to the model.
    pub max_tool_result_bytes: usize,
    /// Body limit of `/invoke` and `/cancel`.
    pub max_body_bytes: usize,
    /// Time running legs get on shutdown.
    pub shutdown_grace: Duration,
    /// `KTSU_INTERNAL_TOKEN`; `None` = internal routes open and no header sent.
    pub internal_token: Option<Secret>,
}

impl Settings {
    /// The process environment and `flags`.
    pub fn from_env(flags: &Flags) -> Result<Settings, SettingError> {
        Self::from_source(flags, &Env)
    }

    /// Every setting at its default (no flag, no variable), for tests and embedding.
    pub fn defaults() -> Settings {
        struct Nothing;
        impl Source for Nothing {
            fn get(&self, _name: &str) -> Option<String> {
                None
            }
        }
        // Defaults always parse; the fallback below only exists to avoid a panic path.
        Self::from_source(&Flags::default(), &Nothing).unwrap_or_else(|_| Settings {
            host: String::new(),
            port: 5051,
            orchestrator_url: Some(DEFAULT_ORCHESTRATOR_URL.to_owned()),
            gateway_url: DEFAULT_GATEWAY_URL.to_owned(),
            runtime_id: ids::new_runtime_id(),
            advertise: Advertise::Derived,
            max_concurrency: 64,
            max_queue: 256,
            heartbeat_interval: Duration::from_secs(5),
            step_timeout: Duration::from_secs(3600),
            llm_timeout: Duration::from_secs(330),
            mcp_timeout: Duration::from_secs(60),
            callback_timeout: Duration::from_secs(10),
            callback_retry: Duration::from_secs(60),
            output_grace_turns: 1,
            max_tool_result_bytes: 100_000,
            max_body_bytes: 16 * 1024 * 1024,
            shutdown_grace: Duration::from_secs(30),
            internal_token: None,
        })
    }

    /// `flags` over any variable source (tests pass a map).
    pub fn from_source(flags: &Flags, source: &dyn Source) -> Result<Settings, SettingError> {
        let reader = Reader::new(source);
        let host = reader.string("KTSU_RUNTIME_HOST", flags.host.as_deref(), "");
        let port = reader.port("KTSU_RUNTIME_PORT", flags.port.as_deref(), 5051)?;
        let orchestrator_url = orchestrator_url(&reader, source, flags.orchestrator.as_deref())?;
        let gateway_url = reader
            .url("KTSU_GATEWAY_URL", flags.gateway.as_deref())?
            .unwrap_or_else(|| DEFAULT_GATEWAY_URL.to_owned());
        let runtime_id = match reader.raw("KTSU_RUNTIME_ID", None) {
            Some((value, _)) if ids::is_runtime_id(&value) => value,
            Some((value, setting)) => {
                return Err(SettingError {
                    setting,
                    value,
                    reason: "expected [A-Za-z0-9._-], 1 to 64 characters".into(),
                })
            }
            None => ids::new_runtime_id(),
        };
        let advertise = match reader.url("KTSU_RUNTIME_ADVERTISE_URL", None)? {
            Some(url) => Advertise::Fixed(url),
            None => Advertise::Derived,
        };
        let count = |env: &str, default: u64, min: u64| {
            reader
                .u64(env, None, default, min, u64::from(u32::MAX))
                .map(|n| u32::try_from(n).unwrap_or(u32::MAX))
        };
        let bytes = |env: &str, default: u64| {
            reader
                .u64(env, None, default, 1, u64::from(u32::MAX))
                .map(|n| usize::try_from(n).unwrap_or(usize::MAX))
        };
        let internal_token = match reader.raw("KTSU_INTERNAL_TOKEN", None) {
            // The token travels in a header: a value HTTP cannot carry would fail every call.
            Some((value, setting)) if !value.bytes().all(|b| b.is_ascii_graphic()) => {
                return Err(SettingError {
                    setting,
                    value: "[REDACTED]".into(),
                    reason: "expected visible ASCII characters only".into(),
                })
            }
            Some((value, _)) => Some(Secret::new(value)),
            None => None,
        };
        Ok(Settings {
            host,
            port,
            orchestrator_url,
            gateway_url,
            runtime_id,
            advertise,
            max_concurrency: count("KTSU_RUNTIME_MAX_CONCURRENCY", 64, 1)?,
            max_queue: count("KTSU_RUNTIME_MAX_QUEUE", 256, 0)?,
            heartbeat_interval: seconds(&reader, "KTSU_HEARTBEAT_INTERVAL_S", 5.0)?,
            step_timeout: positive(&reader, "KTSU_RUNTIME_STEP_TIMEOUT_S", 3600.0)?,
            llm_timeout: positive(&reader, "KTSU_RUNTIME_LLM_TIMEOUT_S", 330.0)?,
            mcp_timeout: positive(&reader, "KTSU_RUNTIME_MCP_TIMEOUT_S", 60.0)?,
            callback_timeout: positive(&reader, "KTSU_RUNTIME_CALLBACK_TIMEOUT_S", 10.0)?,
            callback_retry: seconds(&reader, "KTSU_RUNTIME_CALLBACK_RETRY_S", 60.0)?,
            output_grace_turns: count("KTSU_RUNTIME_OUTPUT_GRACE_TURNS", 1, 0)?,
            max_tool_result_bytes: bytes("KTSU_RUNTIME_MAX_TOOL_RESULT_BYTES", 100_000)?,
            max_body_bytes: bytes("KTSU_RUNTIME_MAX_BODY_BYTES", 16 * 1024 * 1024)?,
            shutdown_grace: seconds(&reader, "KTSU_RUNTIME_SHUTDOWN_GRACE_S", 30.0)?,
            internal_token,
        })
    }

    /// The address to bind: `host:port`, all IPv4 interfaces when the host is empty.
    pub fn bind_address(&self) -> (String, u16) {
        let host = match self.host.as_str() {
            "" => "0.0.0.0",
            // `[::1]` is how URLs write it; the socket API wants the bare address.
            bracketed if bracketed.starts_with('[') && bracketed.ends_with(']') => {
                &bracketed[1..bracketed.len() - 1]
            }
            host => host,
        };
        (host.to_owned(), self.port)
    }

    /// The URL the orchestrator reaches this runtime at, once bound to `bound`.
    pub fn advertise_url(&self, bound: SocketAddr) -> String {
        let port = bound.port();
        match &self.advertise {
            Advertise::Fixed(url) => url.clone(),
            Advertise::Loopback => format!("http://127.0.0.1:{port}"),
            Advertise::Derived => {
                let host = self.host.trim_start_matches('[').trim_end_matches(']');
                let host = if host.is_empty() || host == "0.0.0.0" || host == "::" {
                    os_hostname().unwrap_or_else(|| "localhost".to_owned())
                } else {
                    host.to_owned()
                };
                if host.contains(':') {
                    format!("http://[{host}]:{port}")
                } else {
                    format!("http://{host}:{port}")
                }
            }
        }
    }
}

/// `--orchestrator` / `KTSU_ORCHESTRATOR_URL`: empty (flag or variable) = disabled.
fn orchestrator_url(
    reader: &Reader<'_>,
    source: &dyn Source,
    flag: Option<&str>,
) -> Result<Option<String>, SettingError> {
    let explicitly_empty = match flag {
        Some(value) => value.is_empty(),
        None => source.get(ORCHESTRATOR_URL).is_some_and(|v| v.is_empty()),
    };
    if explicitly_empty {
        return Ok(None);
    }
    Ok(Some(
        reader
            .url(ORCHESTRATOR_URL, flag)?
            .unwrap_or_else(|| DEFAULT_ORCHESTRATOR_URL.to_owned()),
    ))
}

/// A `*_S` setting: a non-negative number of seconds, fractions allowed (runtime-gateway.md §0).
fn seconds(reader: &Reader<'_>, env: &str, default: f64) -> Result<Duration, SettingError> {
    let Some((value, setting)) = reader.raw(env, None) else {
        return Ok(Duration::from_secs_f64(default));
    };
    value
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|n| n.is_finite() && (0.0..=MAX_SECONDS).contains(n))
        .map(Duration::from_secs_f64)
        .ok_or_else(|| SettingError {
            setting,
            value,
            reason: "expected a non-negative number of seconds".into(),
        })
}

/// A `*_S` timeout that must be above zero (a zero timeout would fail every call).
fn positive(reader: &Reader<'_>, env: &str, default: f64) -> Result<Duration, SettingError> {
    let duration = seconds(reader, env, default)?;
    if duration.is_zero() {
        let (value, setting) = reader.raw(env, None).unwrap_or_default();
        return Err(SettingError {
            setting,
            value,
            reason: "expected a number of seconds above 0".into(),
        });
    }
    Ok(duration)
}

/// The OS host name (Linux), for the derived advertise URL.
fn os_hostname() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let name = name.trim();
    (!name.is_empty()).then(|| name.to_owned())
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
    fn defaults_match_the_spec() {
        let s = Settings::defaults();
        assert_eq!(s.host, "");
        assert_eq!(s.port, 5051);
        assert_eq!(s.orchestrator_url.as_deref(), Some("http://localhost:5050"));
        assert_eq!(s.gateway_url, "http://localhost:5052");
        assert!(ids::is_runtime_id(&s.runtime_id) && s.runtime_id.starts_with("rt-"));
        assert_eq!(s.runtime_id.len(), 15);
        assert_eq!((s.max_concurrency, s.max_queue), (64, 256));
        assert_eq!(s.heartbeat_interval, Duration::from_secs(5));
        assert_eq!(s.step_timeout, Duration::from_secs(3600));
        assert_eq!(s.llm_timeout, Duration::from_secs(330));
        assert_eq!(s.mcp_timeout, Duration::from_secs(60));
        assert_eq!(s.callback_timeout, Duration::from_secs(10));
        assert_eq!(s.callback_retry, Duration::from_secs(60));
        assert_eq!(s.output_grace_turns, 1);
        assert_eq!(s.max_tool_result_bytes, 100_000);
        assert_eq!(s.max_body_bytes, 16_777_216);
        assert_eq!(s.shutdown_grace, Duration::from_secs(30));
        assert!(s.internal_token.is_none());
        assert_eq!(s.advertise, Advertise::Derived);
    }

    #[test]
    fn flags_beat_environment() {
        let e = env(&[
            ("KTSU_RUNTIME_PORT", "6000"),
            ("KTSU_GATEWAY_URL", "http://gw:1/"),
            ("KTSU_RUNTIME_HOST", "10.0.0.7"),
        ]);
        let s = Settings::from_source(&Flags::default(), &e).unwrap();
        assert_eq!((s.port, s.gateway_url.as_str()), (6000, "http://gw:1"));
        let flags = Flags {
            port: Some("0".into()),
            gateway: Some("https://g".into()),
            host: Some("127.0.0.1".into()),
            orchestrator: Some("http://o:9".into()),
        };
        let s = Settings::from_source(&flags, &e).unwrap();
        assert_eq!(s.port, 0);
        assert_eq!(s.gateway_url, "https://g");
        assert_eq!(s.host, "127.0.0.1");
        assert_eq!(s.orchestrator_url.as_deref(), Some("http://o:9"));
    }

    #[test]
    fn empty_orchestrator_url_disables_registration() {
        let s = Settings::from_source(&Flags::default(), &env(&[(ORCHESTRATOR_URL, "")])).unwrap();
        assert_eq!(s.orchestrator_url, None);
        let flags = Flags {
            orchestrator: Some(String::new()),
            ..Flags::default()
        };
        let s = Settings::from_source(&flags, &env(&[(ORCHESTRATOR_URL, "http://o")])).unwrap();
        assert_eq!(s.orchestrator_url, None);
    }

    #[test]
    fn every_number_setting_is_checked_and_named() {
        let cases = [
            ("KTSU_RUNTIME_PORT", "http"),
            ("KTSU_RUNTIME_PORT", "-1"),
            ("KTSU_RUNTIME_MAX_CONCURRENCY", "0"),
            ("KTSU_RUNTIME_MAX_QUEUE", "many"),
            ("KTSU_HEARTBEAT_INTERVAL_S", "-5"),
            ("KTSU_RUNTIME_STEP_TIMEOUT_S", "0"),
            ("KTSU_RUNTIME_LLM_TIMEOUT_S", "NaN"),
            ("KTSU_RUNTIME_MCP_TIMEOUT_S", "1e99"),
            ("KTSU_RUNTIME_CALLBACK_TIMEOUT_S", "x"),
            ("KTSU_RUNTIME_CALLBACK_RETRY_S", "-0.5"),
            ("KTSU_RUNTIME_OUTPUT_GRACE_TURNS", "1.5"),
            ("KTSU_RUNTIME_MAX_TOOL_RESULT_BYTES", "0"),
            ("KTSU_RUNTIME_MAX_BODY_BYTES", "lots"),
            ("KTSU_RUNTIME_SHUTDOWN_GRACE_S", "soon"),
            ("KTSU_GATEWAY_URL", "ftp://gw"),
            ("KTSU_ORCHESTRATOR_URL", "not a url"),
            ("KTSU_RUNTIME_ADVERTISE_URL", "10.0.0.7:5051"),
            ("KTSU_RUNTIME_ID", "has space"),
            ("KTSU_RUNTIME_ID", &"x".repeat(65)),
        ];
        for (name, value) in cases {
            let err =
                Settings::from_source(&Flags::default(), &env(&[(name, value)])).expect_err(name);
            assert_eq!(err.setting, name, "{name}={value}");
            assert!(err.to_string().contains(name), "{err}");
        }
        let flags = Flags {
            port: Some("x".into()),
            ..Flags::default()
        };
        let err = Settings::from_source(&flags, &env(&[])).unwrap_err();
        assert_eq!(err.setting, "KTSU_RUNTIME_PORT (flag)");
    }

    #[test]
    fn fractional_seconds_and_zero_heartbeat() {
        let s = Settings::from_source(
            &Flags::default(),
            &env(&[
                ("KTSU_HEARTBEAT_INTERVAL_S", "0"),
                ("KTSU_RUNTIME_CALLBACK_RETRY_S", "1.5"),
                ("KTSU_RUNTIME_ID", "rt-custom.1_a"),
                ("KTSU_INTERNAL_TOKEN", "tok"),
                ("KTSU_RUNTIME_MAX_QUEUE", "0"),
            ]),
        )
        .unwrap();
        assert_eq!(s.heartbeat_interval, Duration::ZERO);
        assert_eq!(s.callback_retry, Duration::from_millis(1500));
        assert_eq!(s.runtime_id, "rt-custom.1_a");
        assert_eq!(s.internal_token.unwrap().expose(), "tok");
        assert_eq!(s.max_queue, 0);
    }

    #[test]
    fn token_that_cannot_be_a_header_is_refused_without_echo() {
        let err = Settings::from_source(
            &Flags::default(),
            &env(&[("KTSU_INTERNAL_TOKEN", "line\nbreak")]),
        )
        .unwrap_err();
        assert_eq!(err.setting, "KTSU_INTERNAL_TOKEN");
        assert!(!err.to_string().contains("break"), "{err}");
    }

    #[test]
    fn advertise_urls() {
        let bound: SocketAddr = "0.0.0.0:40123".parse().unwrap();
        let mut s = Settings::defaults();
        s.host = "10.0.0.7".into();
        assert_eq!(s.advertise_url(bound), "http://10.0.0.7:40123");
        s.host = "::1".into();
        assert_eq!(s.advertise_url(bound), "http://[::1]:40123");
        s.advertise = Advertise::Loopback;
        assert_eq!(s.advertise_url(bound), "http://127.0.0.1:40123");
        s.advertise = Advertise::Fixed("http://rt.example:1".into());
        assert_eq!(s.advertise_url(bound), "http://rt.example:1");
        s.advertise = Advertise::Derived;
        s.host = "0.0.0.0".into();
        let derived = s.advertise_url(bound);
        assert!(derived.starts_with("http://") && derived.ends_with(":40123"));
        assert!(!derived.contains("0.0.0.0"), "{derived}");
    }

    #[test]
    fn bind_addresses() {
        let mut s = Settings::defaults();
        assert_eq!(s.bind_address(), ("0.0.0.0".to_owned(), 5051));
        s.host = "[::1]".into();
        assert_eq!(s.bind_address().0, "::1");
    }
}
