//! Service settings from flags and environment (cli-and-ops.md §2.1): flag > env > default, an
//! empty env var counts as unset, and a value that does not parse or is out of range is an error
//! naming the setting (exit 2 before anything binds).

use std::time::Duration;

/// A setting that could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid value {value:?} for {setting}: {reason}")]
pub struct SettingError {
    pub setting: String,
    pub value: String,
    pub reason: String,
}

/// Where raw values come from: the process environment, or a map in tests.
pub trait Source {
    fn get(&self, name: &str) -> Option<String>;
}

/// The process environment.
pub struct Env;

impl Source for Env {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl Source for std::collections::HashMap<String, String> {
    fn get(&self, name: &str) -> Option<String> {
        std::collections::HashMap::get(self, name).cloned()
    }
}

/// Reads settings with flag > env > default precedence.
pub struct Reader<'a> {
    source: &'a dyn Source,
}

impl<'a> Reader<'a> {
    pub fn new(source: &'a dyn Source) -> Self {
        Reader { source }
    }

    /// The raw value: the flag when given, else the env var when non-empty.
    pub fn raw(&self, env: &str, flag: Option<&str>) -> Option<(String, String)> {
        match flag {
            Some(v) => Some((v.to_string(), format!("{env} (flag)"))),
            None => self
                .source
                .get(env)
                .filter(|v| !v.is_empty())
                .map(|v| (v, env.to_string())),
        }
    }

    pub fn string(&self, env: &str, flag: Option<&str>, default: &str) -> String {
        self.raw(env, flag)
            .map_or_else(|| default.to_string(), |(v, _)| v)
    }

    pub fn opt_string(&self, env: &str, flag: Option<&str>) -> Option<String> {
        self.raw(env, flag).map(|(v, _)| v)
    }

    /// An integer in `min..=max`.
    pub fn u64(
        &self,
        env: &str,
        flag: Option<&str>,
        default: u64,
        min: u64,
        max: u64,
    ) -> Result<u64, SettingError> {
        let Some((value, setting)) = self.raw(env, flag) else {
            return Ok(default);
        };
        let n: u64 = value.trim().parse().map_err(|_| SettingError {
            setting: setting.clone(),
            value: value.clone(),
            reason: "expected a non-negative integer".into(),
        })?;
        if n < min || n > max {
            return Err(SettingError {
                setting,
                value,
                reason: format!("expected a value between {min} and {max}"),
            });
        }
        Ok(n)
    }

    /// A port number (`0` = chosen by the OS).
    pub fn port(&self, env: &str, flag: Option<&str>, default: u16) -> Result<u16, SettingError> {
        let n = self.u64(env, flag, u64::from(default), 0, u64::from(u16::MAX))?;
        Ok(u16::try_from(n).unwrap_or(default))
    }

    /// Seconds as a duration.
    pub fn seconds(
        &self,
        env: &str,
        flag: Option<&str>,
        default: u64,
        min: u64,
    ) -> Result<Duration, SettingError> {
        self.u64(env, flag, default, min, 10 * 365 * 24 * 3600)
            .map(Duration::from_secs)
    }

    /// An absolute `http`/`https` URL, trailing `/` removed.
    pub fn url(&self, env: &str, flag: Option<&str>) -> Result<Option<String>, SettingError> {
        let Some((value, setting)) = self.raw(env, flag) else {
            return Ok(None);
        };
        let trimmed = value.trim_end_matches('/').to_string();
        if !crate::project::decode::workflow::is_http_url(&trimmed) {
            return Err(SettingError {
                setting,
                value,
                reason: "expected an absolute http(s) URL".into(),
            });
        }
        Ok(Some(trimmed))
    }

    /// One of a fixed set of words.
    pub fn choice(
        &self,
        env: &str,
        flag: Option<&str>,
        default: &'static str,
        allowed: &[&'static str],
    ) -> Result<&'static str, SettingError> {
        let Some((value, setting)) = self.raw(env, flag) else {
            return Ok(default);
        };
        allowed
            .iter()
            .find(|a| **a == value)
            .copied()
            .ok_or_else(|| SettingError {
                setting,
                value,
                reason: format!("expected one of {}", allowed.join(", ")),
            })
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
    fn precedence_and_empty_values() {
        let e = env(&[("P", "6000"), ("E", "")]);
        let r = Reader::new(&e);
        assert_eq!(r.port("P", None, 5050).unwrap(), 6000);
        assert_eq!(r.port("P", Some("7000"), 5050).unwrap(), 7000);
        assert_eq!(r.port("E", None, 5050).unwrap(), 5050);
        assert_eq!(r.port("MISSING", None, 5050).unwrap(), 5050);
    }

    #[test]
    fn errors_name_the_setting() {
        let e = env(&[
            ("KTSU_ORCHESTRATOR_PORT", "abc"),
            ("U", "ftp://x"),
            ("N", "70000"),
            ("S", "postgres"),
        ]);
        let r = Reader::new(&e);
        let err = r.port("KTSU_ORCHESTRATOR_PORT", None, 5050).unwrap_err();
        assert_eq!(err.setting, "KTSU_ORCHESTRATOR_PORT");
        assert!(err.to_string().contains("KTSU_ORCHESTRATOR_PORT"));
        assert!(r.url("U", None).is_err());
        assert!(r.port("N", None, 1).is_err());
        assert_eq!(
            r.choice("S", None, "memory", &["memory", "sqlite"])
                .unwrap_err()
                .value,
            "postgres"
        );
        assert_eq!(
            r.url("X", Some("http://a:1/")).unwrap().as_deref(),
            Some("http://a:1")
        );
        assert_eq!(r.port("P", Some("x"), 1).unwrap_err().setting, "P (flag)");
    }
}
