//! Process settings of `ktsu start gateway` (runtime-gateway.md §5.1, cli-and-ops.md §2): flag >
//! environment variable > default; an empty variable counts as unset; a value that does not parse
//! is a [`SettingError`] naming the setting (exit 2, before anything binds).
//!
//! Everything about routing, retries, limits and providers lives in the gateway file, not here.

use ktsu_shared::secret::Secret;
use ktsu_shared::service::settings::{Reader, SettingError, Source};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const DEFAULT_PORT: u16 = 5052;
pub const DEFAULT_CONFIG: &str = "gateway.yaml";
pub const DEFAULT_SHUTDOWN_GRACE_S: u64 = 10;

pub const ENV_HOST: &str = "KTSU_GATEWAY_HOST";
pub const ENV_PORT: &str = "KTSU_GATEWAY_PORT";
pub const ENV_CONFIG: &str = "KTSU_GATEWAY_CONFIG";
pub const ENV_SHUTDOWN_GRACE: &str = "KTSU_GATEWAY_SHUTDOWN_GRACE_S";
pub const ENV_INTERNAL_TOKEN: &str = "KTSU_INTERNAL_TOKEN";

/// The flags of `ktsu start gateway`, as given (`None`: not on the command line). Values stay
/// text so that a bad one is reported by [`Settings::from_flags`] with the flag's name.
#[derive(Debug, Clone, Default)]
pub struct Flags {
    /// `--config FILE`
    pub config: Option<PathBuf>,
    /// `--host ADDR`
    pub host: Option<String>,
    /// `--port N`
    pub port: Option<String>,
    /// `--env FILE`
    pub env_file: Option<PathBuf>,
    /// `--mock`
    pub mock: bool,
}

/// Which gateway file to serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GatewayFile {
    /// This file; it must exist and be readable (else exit 2).
    Path(PathBuf),
    /// No file (only with `--mock`): every group name is served by `mock/default`.
    MockOnly,
}

/// Everything the gateway process needs besides the gateway file's content.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Bind address; `""` = all interfaces.
    pub host: String,
    /// `0` = a port chosen by the OS ([`crate::Application::local_addr`] tells which).
    pub port: u16,
    pub file: GatewayFile,
    /// `--env FILE`: fallback values for declared env vars, and providers that replace or join
    /// the file's providers.
    pub env_file: Option<PathBuf>,
    /// `--mock`: every provider is replaced by the built-in mock provider.
    pub mock: bool,
    /// `KTSU_INTERNAL_TOKEN`: required on `POST /invoke` when set.
    pub internal_token: Option<Secret>,
    /// `KTSU_GATEWAY_SHUTDOWN_GRACE_S`: how long in-flight calls get to finish on stop.
    pub shutdown_grace: Duration,
    /// HTTP worker threads; `None` = one per CPU core (actix-web's default). Not a spec
    /// setting: embedding processes and tests use it.
    pub workers: Option<usize>,
}

impl Settings {
    /// Settings for an embedded or test gateway: loopback, OS-assigned port, no token, one
    /// worker, default grace.
    pub fn local(file: GatewayFile) -> Self {
        Settings {
            host: "127.0.0.1".into(),
            port: 0,
            file,
            env_file: None,
            mock: false,
            internal_token: None,
            shutdown_grace: Duration::from_secs(DEFAULT_SHUTDOWN_GRACE_S),
            workers: Some(1),
        }
    }

    /// Reads flags and the environment (`source`: the process environment, or a map in tests).
    ///
    /// The config path is the flag, else `KTSU_GATEWAY_CONFIG`, else `gateway.yaml`; with
    /// `--mock` a *default* path that does not exist means "no file" ([`GatewayFile::MockOnly`]).
    /// Whether a named file exists is checked by [`crate::Application::build`] (exit 2).
    pub fn from_flags(flags: &Flags, source: &dyn Source) -> Result<Settings, SettingError> {
        let reader = Reader::new(source);
        let host = reader.string(ENV_HOST, flags.host.as_deref(), "");
        let port = reader.port(ENV_PORT, flags.port.as_deref(), DEFAULT_PORT)?;
        let shutdown_grace =
            reader.seconds(ENV_SHUTDOWN_GRACE, None, DEFAULT_SHUTDOWN_GRACE_S, 0)?;
        let named = flags
            .config
            .clone()
            .or_else(|| reader.opt_string(ENV_CONFIG, None).map(PathBuf::from));
        let file = match named {
            Some(path) => GatewayFile::Path(path),
            None if flags.mock && !Path::new(DEFAULT_CONFIG).exists() => GatewayFile::MockOnly,
            None => GatewayFile::Path(PathBuf::from(DEFAULT_CONFIG)),
        };
        let internal_token = reader.opt_string(ENV_INTERNAL_TOKEN, None).map(Secret::new);
        Ok(Settings {
            host,
            port,
            file,
            env_file: flags.env_file.clone(),
            mock: flags.mock,
            internal_token,
            shutdown_grace,
            workers: None,
        })
    }

    /// The address to bind: `host:port`, all interfaces when the host is empty.
    pub fn bind_addr(&self) -> String {
        let host = if self.host.is_empty() {
            "0.0.0.0"
        } else {
            self.host.as_str()
        };
        if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]:{}", self.port)
        } else {
            format!("{host}:{}", self.port)
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
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect()
    }

    #[test]
    fn defaults() {
        let s = Settings::from_flags(&Flags::default(), &env(&[])).unwrap();
        assert_eq!(s.host, "");
        assert_eq!(s.port, 5052);
        assert_eq!(s.file, GatewayFile::Path(PathBuf::from("gateway.yaml")));
        assert_eq!(s.shutdown_grace, Duration::from_secs(10));
        assert!(s.internal_token.is_none() && !s.mock && s.env_file.is_none());
        assert_eq!(s.bind_addr(), "0.0.0.0:5052");
    }

    #[test]
    fn flag_beats_env_beats_default() {
        let e = env(&[
            (ENV_HOST, "10.0.0.1"),
            (ENV_PORT, "6000"),
            (ENV_CONFIG, "/etc/ktsu/gw.yaml"),
            (ENV_SHUTDOWN_GRACE, "3"),
            (ENV_INTERNAL_TOKEN, "tok-123"),
        ]);
        let s = Settings::from_flags(&Flags::default(), &e).unwrap();
        assert_eq!((s.host.as_str(), s.port), ("10.0.0.1", 6000));
        assert_eq!(
            s.file,
            GatewayFile::Path(PathBuf::from("/etc/ktsu/gw.yaml"))
        );
        assert_eq!(s.shutdown_grace, Duration::from_secs(3));
        assert_eq!(s.internal_token.as_ref().unwrap().expose(), "tok-123");
        let flags = Flags {
            host: Some("::1".into()),
            port: Some("0".into()),
            config: Some(PathBuf::from("x.yaml")),
            ..Flags::default()
        };
        let s = Settings::from_flags(&flags, &e).unwrap();
        assert_eq!(s.bind_addr(), "[::1]:0");
        assert_eq!(s.file, GatewayFile::Path(PathBuf::from("x.yaml")));
    }

    #[test]
    fn bad_values_name_the_setting() {
        let err = Settings::from_flags(&Flags::default(), &env(&[(ENV_PORT, "http")])).unwrap_err();
        assert_eq!(err.setting, ENV_PORT);
        let flags = Flags {
            port: Some("99999".into()),
            ..Flags::default()
        };
        let err = Settings::from_flags(&flags, &env(&[])).unwrap_err();
        assert_eq!(err.setting, "KTSU_GATEWAY_PORT (flag)");
        let err = Settings::from_flags(&Flags::default(), &env(&[(ENV_SHUTDOWN_GRACE, "-1")]))
            .unwrap_err();
        assert_eq!(err.setting, ENV_SHUTDOWN_GRACE);
        // An empty variable counts as unset.
        let s = Settings::from_flags(
            &Flags::default(),
            &env(&[(ENV_PORT, ""), (ENV_INTERNAL_TOKEN, "")]),
        )
        .unwrap();
        assert_eq!(s.port, 5052);
        assert!(s.internal_token.is_none());
    }

    #[test]
    fn mock_without_a_file() {
        let flags = Flags {
            mock: true,
            ..Flags::default()
        };
        // The test's working directory (the crate) has no gateway.yaml.
        let s = Settings::from_flags(&flags, &env(&[])).unwrap();
        assert_eq!(s.file, GatewayFile::MockOnly);
        // A named file is always required, mock or not.
        let s = Settings::from_flags(&flags, &env(&[(ENV_CONFIG, "named.yaml")])).unwrap();
        assert_eq!(s.file, GatewayFile::Path(PathBuf::from("named.yaml")));
    }
}
