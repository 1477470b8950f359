//! Strict typed reading of [`Node`] trees with diagnostics instead of early returns.
//!
//! Each reader function either returns a value or records exactly one diagnostic (with the
//! check code, position and YAML path of config.md §6.3) and returns `None`, so one pass over a
//! file reports every problem in it (config.md §0 rules for `string`, `int`, `number`, `bool`,
//! `duration` fields; unknown keys with a "did you mean" hint).

use crate::diag::{Diagnostic, Pos, Severity};
use crate::yaml::{Entry, Node, NodeKind, ScalarValue};
use std::time::Duration;

/// A value with the place it was written.
#[derive(Debug, Clone, PartialEq)]
pub struct Spanned<T> {
    pub value: T,
    pub pos: Pos,
    /// YAML path, e.g. `pipeline[2].agent`.
    pub path: String,
}

impl<T> Spanned<T> {
    pub fn new(value: T, pos: Pos, path: impl Into<String>) -> Self {
        Spanned {
            value,
            pos,
            path: path.into(),
        }
    }
}

impl<T> std::ops::Deref for Spanned<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

/// Appends a key to a YAML path.
pub fn key_path(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

/// Appends an index to a YAML path.
pub fn index_path(parent: &str, index: usize) -> String {
    format!("{parent}[{index}]")
}

/// Collects the diagnostics of one file.
#[derive(Debug)]
pub struct Reader {
    /// Display path of the file (config.md §6.3 `file`).
    pub file: String,
    pub diags: Vec<Diagnostic>,
}

/// A mapping whose keys were checked against the allowed set.
#[derive(Debug, Clone, Copy)]
pub struct Obj<'n> {
    pub node: &'n Node,
    entries: &'n [Entry],
}

impl<'n> Obj<'n> {
    pub fn entry(&self, key: &str) -> Option<&'n Entry> {
        self.entries.iter().find(|e| e.key == key)
    }

    pub fn get(&self, key: &str) -> Option<&'n Node> {
        self.entry(key).map(|e| &e.value)
    }

    pub fn has(&self, key: &str) -> bool {
        self.entry(key).is_some()
    }

    pub fn entries(&self) -> &'n [Entry] {
        self.entries
    }
}

impl Reader {
    pub fn new(file: impl Into<String>) -> Self {
        Reader {
            file: file.into(),
            diags: Vec::new(),
        }
    }

    pub fn has_errors(&self) -> bool {
        self.diags.iter().any(Diagnostic::is_error)
    }

    pub fn push(
        &mut self,
        code: &'static str,
        severity: Severity,
        pos: Option<Pos>,
        path: &str,
        message: impl Into<String>,
        hint: Option<String>,
    ) {
        self.diags.push(Diagnostic {
            code,
            severity,
            message: message.into(),
            file: self.file.clone(),
            line: pos.map(|p| p.line),
            column: pos.map(|p| p.column),
            path: if path.is_empty() {
                None
            } else {
                Some(path.to_string())
            },
            hint,
        });
    }

    pub fn error(&mut self, code: &'static str, pos: Pos, path: &str, message: impl Into<String>) {
        self.push(code, Severity::Error, Some(pos), path, message, None);
    }

    pub fn warn(&mut self, code: &'static str, pos: Pos, path: &str, message: impl Into<String>) {
        self.push(code, Severity::Warning, Some(pos), path, message, None);
    }

    /// `duplicate_name`: `what` (e.g. "provider") named `name` was declared before, at `first`.
    pub fn duplicate_name(&mut self, what: &str, name: &Spanned<String>, first: Pos) {
        self.error(
            "duplicate_name",
            name.pos,
            &name.path,
            format!(
                "{what} `{}` is declared twice (first at line {})",
                name.value, first.line
            ),
        );
    }

    pub fn type_mismatch(&mut self, node: &Node, path: &str, expected: &str) {
        self.error(
            "type_mismatch",
            node.pos,
            path,
            format!(
                "`{}` must be {expected}, found {}",
                display_path(path),
                node.type_name()
            ),
        );
    }

    /// Checks that `node` is a mapping whose keys are all in `allowed`; each other key is an
    /// `unknown_field` (at the key) with the closest allowed key as hint.
    pub fn object<'n>(
        &mut self,
        node: &'n Node,
        path: &str,
        what: &str,
        allowed: &[&str],
    ) -> Option<Obj<'n>> {
        let Some(entries) = node.as_map() else {
            self.type_mismatch(node, path, "a mapping");
            return None;
        };
        for e in entries {
            if !allowed.contains(&e.key.as_str()) {
                self.unknown_field(e, path, what, allowed);
            }
        }
        Some(Obj { node, entries })
    }

    pub fn unknown_field(&mut self, entry: &Entry, path: &str, what: &str, allowed: &[&str]) {
        let hint = suggest(&entry.key, allowed).map(|s| format!("did you mean `{s}`?"));
        self.push(
            "unknown_field",
            Severity::Error,
            Some(entry.key_pos),
            &key_path(path, &entry.key),
            format!("unknown field `{}` in {what}", entry.key),
            hint,
        );
    }

    /// Reports a required field that is absent (at the mapping) or empty (at the value).
    pub fn missing(&mut self, obj: &Obj<'_>, path: &str, key: &str, what: &str) {
        match obj.entry(key) {
            Some(e) => self.error(
                "missing_field",
                e.value.pos,
                &key_path(path, key),
                format!("`{key}` of {what} must not be empty"),
            ),
            None => self.error(
                "missing_field",
                obj.node.pos,
                path,
                format!("{what} is missing the required field `{key}`"),
            ),
        }
    }

    /// A `string` field: numbers and booleans are taken as their source text (config.md §0).
    pub fn string(&mut self, node: &Node, path: &str) -> Option<Spanned<String>> {
        match &node.kind {
            NodeKind::Scalar(s) if s.value != ScalarValue::Null => {
                Some(Spanned::new(s.text.clone(), node.pos, path))
            }
            _ => {
                self.type_mismatch(node, path, "a string");
                None
            }
        }
    }

    /// A nullable `string` field: null gives `Some(None)`.
    pub fn nullable_string(&mut self, node: &Node, path: &str) -> Option<Option<Spanned<String>>> {
        if node.is_null() {
            Some(None)
        } else {
            self.string(node, path).map(Some)
        }
    }

    /// An optional string field of `obj`.
    pub fn opt_string(&mut self, obj: &Obj<'_>, path: &str, key: &str) -> Option<Spanned<String>> {
        let node = obj.get(key)?;
        self.string(node, &key_path(path, key))
    }

    /// A required, non-empty string field of `obj`.
    pub fn req_string(
        &mut self,
        obj: &Obj<'_>,
        path: &str,
        key: &str,
        what: &str,
    ) -> Option<Spanned<String>> {
        match obj.get(key) {
            None => {
                self.missing(obj, path, key, what);
                None
            }
            Some(node) if node.is_null() => {
                self.missing(obj, path, key, what);
                None
            }
            Some(node) => {
                let s = self.string(node, &key_path(path, key))?;
                if s.value.trim().is_empty() {
                    self.missing(obj, path, key, what);
                    return None;
                }
                Some(s)
            }
        }
    }

    /// An `int` field: a YAML integer only (`"10"` and `1.5` are type mismatches), in range.
    pub fn int(&mut self, node: &Node, path: &str, min: i64, max: i64) -> Option<i64> {
        let value = match node.as_scalar().map(|s| s.value) {
            Some(ScalarValue::Int(i)) => i,
            _ => {
                self.type_mismatch(node, path, "an integer");
                return None;
            }
        };
        if value < min || value > max {
            self.error(
                "invalid_value",
                node.pos,
                path,
                format!(
                    "`{}` must be {}, found {value}",
                    display_path(path),
                    range_text(min, max)
                ),
            );
            return None;
        }
        Some(value)
    }

    pub fn opt_int(
        &mut self,
        obj: &Obj<'_>,
        path: &str,
        key: &str,
        min: i64,
        max: i64,
    ) -> Option<i64> {
        let node = obj.get(key)?;
        self.int(node, &key_path(path, key), min, max)
    }

    /// Like [`Reader::opt_int`] for non-negative settings.
    pub fn opt_u64(&mut self, obj: &Obj<'_>, path: &str, key: &str, min: u64) -> Option<u64> {
        let min = i64::try_from(min).unwrap_or(i64::MAX);
        self.opt_int(obj, path, key, min, i64::MAX)
            .and_then(|v| u64::try_from(v).ok())
    }

    /// A `number` field: integer or float; `.inf`/`.nan` are invalid values.
    pub fn number(&mut self, node: &Node, path: &str, min: f64, max: f64) -> Option<f64> {
        let value = match node.as_scalar().map(|s| s.value) {
            Some(ScalarValue::Int(i)) => i as f64,
            Some(ScalarValue::Float(f)) => f,
            _ => {
                self.type_mismatch(node, path, "a number");
                return None;
            }
        };
        if !value.is_finite() {
            self.error(
                "invalid_value",
                node.pos,
                path,
                format!("`{}` must be a finite number", display_path(path)),
            );
            return None;
        }
        if value < min || value > max {
            let range = if max == f64::MAX {
                format!("≥ {min}")
            } else {
                format!("between {min} and {max}")
            };
            self.error(
                "invalid_value",
                node.pos,
                path,
                format!("`{}` must be {range}, found {value}", display_path(path)),
            );
            return None;
        }
        Some(value)
    }

    pub fn opt_number(
        &mut self,
        obj: &Obj<'_>,
        path: &str,
        key: &str,
        min: f64,
        max: f64,
    ) -> Option<f64> {
        let node = obj.get(key)?;
        self.number(node, &key_path(path, key), min, max)
    }

    /// A `bool` field: `true` or `false` only.
    pub fn bool(&mut self, node: &Node, path: &str) -> Option<bool> {
        match node.as_scalar().map(|s| s.value) {
            Some(ScalarValue::Bool(b)) => Some(b),
            _ => {
                self.type_mismatch(node, path, "`true` or `false`");
                None
            }
        }
    }

    pub fn opt_bool(&mut self, obj: &Obj<'_>, path: &str, key: &str) -> Option<bool> {
        let node = obj.get(key)?;
        self.bool(node, &key_path(path, key))
    }

    /// A `duration` field: `500ms`, `90s`, `1h30m`; a bare number is a type mismatch.
    pub fn duration(&mut self, node: &Node, path: &str) -> Option<Spanned<Duration>> {
        let text = match node.as_str() {
            Some(t) => t,
            None => {
                self.type_mismatch(node, path, "a duration string such as `90s` or `1h30m`");
                return None;
            }
        };
        match parse_duration(text) {
            Some(d) => Some(Spanned::new(d, node.pos, path)),
            None => {
                self.error(
                    "invalid_value",
                    node.pos,
                    path,
                    format!(
                        "`{}` is not a duration (use `<digits><unit>` groups with unit ms, s, m or h, e.g. `1h30m`)",
                        text
                    ),
                );
                None
            }
        }
    }

    /// A string restricted to a fixed set of values (`invalid_value` otherwise).
    pub fn one_of(
        &mut self,
        node: &Node,
        path: &str,
        allowed: &[&'static str],
    ) -> Option<Spanned<&'static str>> {
        let s = self.string(node, path)?;
        match allowed.iter().find(|a| **a == s.value) {
            Some(a) => Some(Spanned::new(*a, s.pos, path)),
            None => {
                let hint = suggest(&s.value, allowed).map(|h| format!("did you mean `{h}`?"));
                self.push(
                    "invalid_value",
                    Severity::Error,
                    Some(s.pos),
                    path,
                    format!(
                        "`{}` must be one of {}, found `{}`",
                        display_path(path),
                        allowed
                            .iter()
                            .map(|a| format!("`{a}`"))
                            .collect::<Vec<_>>()
                            .join(", "),
                        s.value
                    ),
                    hint,
                );
                None
            }
        }
    }

    pub fn opt_one_of(
        &mut self,
        obj: &Obj<'_>,
        path: &str,
        key: &str,
        allowed: &[&'static str],
    ) -> Option<Spanned<&'static str>> {
        let node = obj.get(key)?;
        self.one_of(node, &key_path(path, key), allowed)
    }

    /// A sequence field (`type_mismatch` otherwise).
    pub fn seq<'n>(&mut self, node: &'n Node, path: &str) -> Option<&'n [Node]> {
        match node.as_seq() {
            Some(items) => Some(items),
            None => {
                self.type_mismatch(node, path, "a sequence");
                None
            }
        }
    }

    /// A list of strings.
    pub fn string_list(&mut self, node: &Node, path: &str) -> Option<Vec<Spanned<String>>> {
        let items = self.seq(node, path)?;
        Some(
            items
                .iter()
                .enumerate()
                .filter_map(|(i, item)| self.string(item, &index_path(path, i)))
                .collect(),
        )
    }

    /// Checks a string against a name pattern (`invalid_value` otherwise).
    pub fn check_pattern(
        &mut self,
        s: &Spanned<String>,
        ok: fn(&str) -> bool,
        pattern: &str,
    ) -> bool {
        if ok(&s.value) {
            return true;
        }
        self.error(
            "invalid_value",
            s.pos,
            &s.path,
            format!(
                "`{}` must match {pattern}, found `{}`",
                display_path(&s.path),
                s.value
            ),
        );
        false
    }
}

/// The path as shown in messages: the last segment is usually enough to recognise a field, but
/// the full path removes all doubt.
pub fn display_path(path: &str) -> &str {
    if path.is_empty() {
        "(root)"
    } else {
        path
    }
}

fn range_text(min: i64, max: i64) -> String {
    match (min, max) {
        (min, i64::MAX) => format!("≥ {min}"),
        (min, max) => format!("between {min} and {max}"),
    }
}

/// `<digits><unit>` groups with unit `ms`, `s`, `m` or `h`.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let bytes = text.as_bytes();
    if bytes.is_empty() {
        return None;
    }
    let mut total = Duration::ZERO;
    let mut i = 0;
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return None;
        }
        let n: u64 = text[start..i].parse().ok()?;
        let unit = if text[i..].starts_with("ms") {
            i += 2;
            Duration::from_millis(n)
        } else {
            let d = match bytes.get(i) {
                Some(b's') => Duration::from_secs(n),
                Some(b'm') => Duration::from_secs(n.checked_mul(60)?),
                Some(b'h') => Duration::from_secs(n.checked_mul(3600)?),
                _ => return None,
            };
            i += 1;
            d
        };
        total = total.checked_add(unit)?;
    }
    Some(total)
}

/// The allowed key with the smallest edit distance, if that distance is ≤ 2 and smaller than
/// the key's length; ties go to alphabetical order (config.md §6.2 `unknown_field`).
pub fn suggest<'a>(key: &str, allowed: &[&'a str]) -> Option<&'a str> {
    let key_len = key.chars().count();
    let mut best: Option<(usize, &'a str)> = None;
    for candidate in allowed {
        let d = edit_distance(key, candidate);
        if d > 2 || d >= key_len {
            continue;
        }
        best = match best {
            Some((bd, bs)) if bd < d || (bd == d && bs <= *candidate) => Some((bd, bs)),
            _ => Some((d, candidate)),
        };
    }
    best.map(|(_, s)| s)
}

/// Levenshtein distance over characters.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml;

    #[test]
    fn suggestions_follow_the_spec_rule() {
        let allowed = ["depends_on", "condition", "id", "agent", "params"];
        assert_eq!(suggest("dependson", &allowed), Some("depends_on"));
        assert_eq!(suggest("agnet", &allowed), Some("agent"));
        // distance must be smaller than the key's length
        assert_eq!(suggest("x", &["id"]), None);
        assert_eq!(suggest("zzzzzz", &allowed), None);
        // ties go to alphabetical order
        assert_eq!(suggest("ab", &["ac", "aa"]), Some("aa"));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("90s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("30m"), Some(Duration::from_secs(1800)));
        for bad in ["", "10", "1d", "s", "1h 30m", "-5s", "1.5s"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn typed_readers_report_with_codes() {
        let doc = yaml::parse("a: '10'\nb: 1.5\nc: 0\nd: yes\ne: 1.0\nf: [1]\n").unwrap();
        let mut r = Reader::new("f.yaml");
        let obj = r
            .object(&doc.root, "", "test", &["a", "b", "c", "d", "e", "f"])
            .unwrap();
        assert_eq!(r.opt_int(&obj, "", "a", 0, 10), None);
        assert_eq!(r.opt_int(&obj, "", "b", 0, 10), None);
        assert_eq!(r.opt_int(&obj, "", "c", 1, 10), None);
        assert_eq!(r.opt_bool(&obj, "", "d"), None);
        assert_eq!(r.opt_string(&obj, "", "e").unwrap().value, "1.0");
        assert!(r.opt_string(&obj, "", "f").is_none());
        let codes: Vec<_> = r.diags.iter().map(|d| (d.code, d.line)).collect();
        assert_eq!(
            codes,
            vec![
                ("type_mismatch", Some(1)),
                ("type_mismatch", Some(2)),
                ("invalid_value", Some(3)),
                ("type_mismatch", Some(4)),
                ("type_mismatch", Some(6)),
            ]
        );
    }

    #[test]
    fn unknown_fields_point_at_the_key_with_a_hint() {
        let doc = yaml::parse("id: a\ndependson: [b]\n").unwrap();
        let mut r = Reader::new("w.yaml");
        r.object(&doc.root, "pipeline[3]", "step `a`", &["id", "depends_on"]);
        let d = &r.diags[0];
        assert_eq!(d.code, "unknown_field");
        assert_eq!((d.line, d.column), (Some(2), Some(1)));
        assert_eq!(d.path.as_deref(), Some("pipeline[3].dependson"));
        assert_eq!(d.hint.as_deref(), Some("did you mean `depends_on`?"));
    }
}
