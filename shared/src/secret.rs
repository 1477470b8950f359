//! Secret values: a wrapper that never prints, and the scrubber that replaces secret values by
//! `[REDACTED]` in every string a service logs, stores, returns or emits.

use aho_corasick::{AhoCorasick, MatchKind};
use serde::Deserialize;
use serde_json::Value;
use std::borrow::Cow;
use std::collections::BTreeSet;
use std::fmt;

/// What every occurrence of a secret value becomes.
pub const REDACTED: &str = "[REDACTED]";

/// A secret string (API key, token, credential). `Debug` and `Display` print `[REDACTED]`, so a
/// secret inside a config struct or an error cannot leak through formatting; read the value
/// with [`Secret::expose`] only where it is sent.
#[derive(Clone, Default, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret value itself. Every call site is a place the secret goes out: keep them few.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Compares `candidate` with the secret in time independent of where they differ (the
    /// length may leak, the content does not), for credential checks.
    pub fn matches(&self, candidate: &str) -> bool {
        constant_time_eq(self.0.as_bytes(), candidate.as_bytes())
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret(value)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

/// Byte-wise equality whose running time depends only on the lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// Replaces every occurrence of a set of secret values by `[REDACTED]`.
///
/// Each non-empty value is searched both as written and in its JSON-escaped form (as it appears
/// inside a JSON string literal, e.g. in a transcript that carries JSON text), leftmost-longest,
/// in one linear pass (Aho-Corasick, built once). Clones share the automaton; wrap it in an
/// `Arc` to hand it around.
#[derive(Clone)]
pub struct Scrubber {
    /// The distinct secret values, kept so that [`Scrubber::with_values`] can rebuild.
    values: BTreeSet<String>,
    /// Values and their escaped forms, longest first.
    patterns: Vec<String>,
    /// `None` when there is nothing to scrub or the automaton could not be built; the naive
    /// search over `patterns` then takes over, so scrubbing never fails open.
    automaton: Option<AhoCorasick>,
}

impl Scrubber {
    /// A scrubber for `values`; empty values are ignored.
    pub fn new<I, S>(values: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let values: BTreeSet<String> = values
            .into_iter()
            .map(|v| v.as_ref().to_owned())
            .filter(|v| !v.is_empty())
            .collect();
        Self::from_set(values)
    }

    /// A scrubber that changes nothing.
    pub fn empty() -> Self {
        Self::from_set(BTreeSet::new())
    }

    /// A new scrubber for this one's values plus `more`.
    pub fn with_values<I, S>(&self, more: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut values = self.values.clone();
        values.extend(
            more.into_iter()
                .map(|v| v.as_ref().to_owned())
                .filter(|v| !v.is_empty()),
        );
        Self::from_set(values)
    }

    /// A new scrubber for the values of both.
    pub fn merge(&self, other: &Scrubber) -> Self {
        self.with_values(&other.values)
    }

    /// True when no value is scrubbed.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The number of distinct secret values.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// True when `text` contains a secret value (raw or JSON-escaped).
    pub fn finds_secret_in(&self, text: &str) -> bool {
        matches!(self.scrub_str(text), Cow::Owned(_))
    }

    /// `text` with every secret occurrence replaced; borrows (no allocation) when none occurs.
    pub fn scrub_str<'a>(&self, text: &'a str) -> Cow<'a, str> {
        if self.patterns.is_empty() {
            return Cow::Borrowed(text);
        }
        let spans = match self.automaton.as_ref().map(|ac| ac.try_find_iter(text)) {
            Some(Ok(matches)) => matches.map(|m| (m.start(), m.end())).collect(),
            _ => naive_spans(&self.patterns, text),
        };
        if spans.is_empty() {
            return Cow::Borrowed(text);
        }
        let mut out = String::with_capacity(text.len());
        let mut last = 0;
        for (start, end) in spans {
            out.push_str(&text[last..start]);
            out.push_str(REDACTED);
            last = end;
        }
        out.push_str(&text[last..]);
        Cow::Owned(out)
    }

    /// Scrubs an owned string in place (no allocation when nothing matches).
    pub fn scrub_string(&self, text: &mut String) {
        if let Cow::Owned(scrubbed) = self.scrub_str(text) {
            *text = scrubbed;
        }
    }

    /// Scrubs every string value and every object key of `value`, at any depth.
    pub fn scrub_value(&self, value: &mut Value) {
        if self.patterns.is_empty() {
            return;
        }
        // An explicit stack: JSON built in code can be deeper than the call stack allows.
        let mut pending = vec![value];
        while let Some(value) = pending.pop() {
            match value {
                Value::String(text) => self.scrub_string(text),
                Value::Array(items) => pending.extend(items.iter_mut()),
                Value::Object(map) => {
                    self.scrub_keys(map);
                    pending.extend(map.values_mut());
                }
                Value::Null | Value::Bool(_) | Value::Number(_) => {}
            }
        }
    }

    /// Rebuilds the map only when a key contains a secret, keeping the key order.
    fn scrub_keys(&self, map: &mut serde_json::Map<String, Value>) {
        if !map.keys().any(|key| self.finds_secret_in(key)) {
            return;
        }
        let entries = std::mem::take(map);
        for (key, value) in entries {
            map.insert(self.scrub_str(&key).into_owned(), value);
        }
    }

    fn from_set(values: BTreeSet<String>) -> Self {
        let mut patterns: Vec<String> = values
            .iter()
            .flat_map(|value| [value.clone(), json_escaped(value)])
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        patterns.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        let automaton = if patterns.is_empty() {
            None
        } else {
            AhoCorasick::builder()
                .match_kind(MatchKind::LeftmostLongest)
                .build(&patterns)
                .ok()
        };
        Scrubber {
            values,
            patterns,
            automaton,
        }
    }
}

impl Default for Scrubber {
    fn default() -> Self {
        Scrubber::empty()
    }
}

impl fmt::Debug for Scrubber {
    /// Never prints the values it guards.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scrubber")
            .field("values", &self.values.len())
            .finish_non_exhaustive()
    }
}

/// The text of `value` as it appears between the quotes of a JSON string literal.
fn json_escaped(value: &str) -> String {
    let quoted = Value::String(value.to_owned()).to_string();
    quoted
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .map_or_else(|| value.to_owned(), str::to_owned)
}

/// Leftmost-longest matching without an automaton (`patterns` sorted longest first).
fn naive_spans(patterns: &[String], text: &str) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    let mut at = 0;
    while at < text.len() {
        let rest = &text[at..];
        match patterns.iter().find(|p| rest.starts_with(p.as_str())) {
            Some(pattern) => {
                spans.push((at, at + pattern.len()));
                at += pattern.len();
            }
            None => at += rest.chars().next().map_or(1, char::len_utf8),
        }
    }
    spans
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secret_never_prints() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret}"), "[REDACTED]");
        assert_eq!(format!("{secret:?}"), "[REDACTED]");
        #[derive(Debug)]
        #[allow(dead_code)]
        struct Config {
            key: Secret,
        }
        let shown = format!(
            "{:?}",
            Config {
                key: secret.clone()
            }
        );
        assert!(!shown.contains("hunter2"), "{shown}");
        assert_eq!(secret.expose(), "hunter2");
        assert!(!secret.is_empty());
        let parsed: Secret = serde_json::from_str("\"abc\"").unwrap();
        assert_eq!(parsed.expose(), "abc");
    }

    #[test]
    fn secret_matches_in_constant_time() {
        let secret = Secret::new("token-123");
        assert!(secret.matches("token-123"));
        assert!(!secret.matches("token-124"));
        assert!(!secret.matches("token-12"));
        assert!(!secret.matches(""));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn scrubs_every_occurrence() {
        let s = Scrubber::new(["sk-live-1", "pw"]);
        assert_eq!(
            s.scrub_str("key=sk-live-1, again sk-live-1; pw!"),
            "key=[REDACTED], again [REDACTED]; [REDACTED]!"
        );
    }

    #[test]
    fn borrows_when_nothing_matches() {
        let s = Scrubber::new(["secret"]);
        assert!(matches!(s.scrub_str("nothing here"), Cow::Borrowed(_)));
        assert!(matches!(
            Scrubber::empty().scrub_str("secret"),
            Cow::Borrowed(_)
        ));
        assert!(!s.finds_secret_in("nothing"));
        assert!(s.finds_secret_in("a secret"));
    }

    #[test]
    fn empty_values_are_ignored() {
        let s = Scrubber::new(["", "x1"]);
        assert_eq!(s.len(), 1);
        assert_eq!(s.scrub_str("ax1b"), "a[REDACTED]b");
        assert!(Scrubber::new([""]).is_empty());
        assert!(Scrubber::empty().is_empty());
    }

    #[test]
    fn leftmost_longest() {
        let s = Scrubber::new(["abc", "abcdef", "cde"]);
        assert_eq!(s.scrub_str("xabcdefx"), "x[REDACTED]x");
        assert_eq!(s.scrub_str("xabcdex"), "x[REDACTED]dex");
        assert_eq!(s.scrub_str("xcdex"), "x[REDACTED]x");
    }

    #[test]
    fn scrubs_json_escaped_form() {
        let secret = "pa\"ss\\word\n";
        let s = Scrubber::new([secret]);
        // The secret inside JSON text, as a transcript or a raw body carries it.
        let json_text = serde_json::to_string(&json!({"auth": secret})).unwrap();
        assert!(!json_text.contains(secret));
        assert_eq!(s.scrub_str(&json_text), r#"{"auth":"[REDACTED]"}"#);
        assert_eq!(
            s.scrub_str(&format!("raw {secret} end")),
            "raw [REDACTED] end"
        );
    }

    #[test]
    fn scrubs_nested_values_and_keys() {
        let s = Scrubber::new(["tok"]);
        let mut value = json!({
            "a": "Bearer tok",
            "tok-key": {"list": ["tok", 1, true, null, {"deep": "xtokx"}]},
            "n": 5,
            "z": "keep"
        });
        s.scrub_value(&mut value);
        assert_eq!(
            value,
            json!({
                "a": "Bearer [REDACTED]",
                "[REDACTED]-key": {"list": ["[REDACTED]", 1, true, null, {"deep": "x[REDACTED]x"}]},
                "n": 5,
                "z": "keep"
            })
        );
        let keys: Vec<&String> = value.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["a", "[REDACTED]-key", "n", "z"], "key order kept");
    }

    #[test]
    fn scrubs_very_deep_values() {
        let s = Scrubber::new(["deep-secret"]);
        let mut value = json!("deep-secret");
        for _ in 0..100_000 {
            value = Value::Array(vec![value]);
        }
        s.scrub_value(&mut value);
        let mut cursor = &value;
        while let Value::Array(items) = cursor {
            cursor = &items[0];
        }
        assert_eq!(cursor, &json!("[REDACTED]"));
        // Dropping a deep value recurses in serde_json; unwind it iteratively.
        let mut cursor = value;
        while let Value::Array(mut items) = cursor {
            cursor = items.pop().unwrap_or(Value::Null);
        }
    }

    #[test]
    fn with_values_and_merge_build_new_scrubbers() {
        let base = Scrubber::new(["one"]);
        let more = base.with_values(["two", ""]);
        assert_eq!(base.scrub_str("one two"), "[REDACTED] two");
        assert_eq!(more.scrub_str("one two"), "[REDACTED] [REDACTED]");
        let merged = Scrubber::new(["three"]).merge(&more);
        assert_eq!(merged.len(), 3);
        assert_eq!(
            merged.scrub_str("one two three"),
            "[REDACTED] [REDACTED] [REDACTED]"
        );
    }

    #[test]
    fn debug_hides_values() {
        let shown = format!("{:?}", Scrubber::new(["hidden-value"]));
        assert!(!shown.contains("hidden-value"), "{shown}");
    }

    #[test]
    fn naive_fallback_agrees_with_automaton() {
        let s = Scrubber::new(["abc", "abcdef", "cde", "é1", "x\"y"]);
        for text in [
            "xabcdefx",
            "xabcdex",
            "é1é1 abc",
            "none",
            "",
            "\"x\\\"y\"",
            "ééabcé",
        ] {
            let automaton = s.scrub_str(text).into_owned();
            let naive = Scrubber {
                automaton: None,
                ..s.clone()
            }
            .scrub_str(text)
            .into_owned();
            assert_eq!(automaton, naive, "{text}");
        }
    }
}
