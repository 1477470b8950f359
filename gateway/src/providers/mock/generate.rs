//! Schema-valid value generation (runtime-gateway.md §8.4): depth-first and deterministic, the
//! same schema always gives the same value. The caller validates the result against the whole
//! schema; a value this generator cannot make valid becomes `mock_unsatisfiable_schema`.

use ktsu_shared::schema::CompiledSchema;
use serde_json::{Map, Number, Value};

/// Beyond this depth of nesting, values are the smallest valid ones (`{}` with required
/// properties only, `[]`, `null` when allowed).
const MAX_DEPTH: usize = 8;
/// A hard stop for `$ref` chains and pathological nesting.
const HARD_DEPTH: usize = 64;

/// Generates values for one schema document (`$ref`s resolve against its root).
pub struct Generator<'a> {
    root: &'a Value,
}

/// Where a value goes, for the default string (`mock-<property name>`, `mock` elsewhere).
#[derive(Clone, Copy)]
enum Place<'a> {
    Root,
    Property(&'a str),
    Item,
}

impl<'a> Generator<'a> {
    pub fn new(root: &'a Value) -> Self {
        Generator { root }
    }

    /// The value for the whole schema.
    pub fn generate(&self) -> Value {
        self.value(self.root, Place::Root, 0)
    }

    fn value(&self, node: &Value, place: Place<'_>, depth: usize) -> Value {
        self.value_via(node, place, depth, 0)
    }

    /// `hops`: `$ref`s followed to reach `node` without nesting (a ref cycle stops here).
    fn value_via(&self, node: &Value, place: Place<'_>, depth: usize, hops: usize) -> Value {
        if depth > HARD_DEPTH || hops > HARD_DEPTH {
            return Value::Null;
        }
        let obj = match node {
            Value::Object(obj) => obj,
            // `true` accepts anything; `false` nothing (validation reports it).
            Value::Bool(true) => return Value::String("mock".into()),
            _ => return Value::Null,
        };
        if let Some(target) = obj.get("$ref").and_then(Value::as_str) {
            return match self.resolve(target) {
                Some(resolved) => self.value_via(resolved, place, depth, hops + 1),
                None => Value::Null,
            };
        }
        if let Some(c) = obj.get("const") {
            return c.clone();
        }
        if let Some(first) = obj
            .get("enum")
            .and_then(Value::as_array)
            .and_then(|e| e.first())
        {
            return first.clone();
        }
        for candidate in [
            obj.get("default"),
            obj.get("examples")
                .and_then(Value::as_array)
                .and_then(|e| e.first()),
        ]
        .into_iter()
        .flatten()
        {
            if self.valid(node, candidate) {
                return candidate.clone();
            }
        }
        if let Some(branches) = obj.get("allOf").and_then(Value::as_array) {
            let mut merged = without(obj, "allOf");
            for branch in branches {
                if let Some(branch) = self.deref(branch).as_object() {
                    merge_into(&mut merged, branch);
                }
            }
            return self.value(&Value::Object(merged), place, depth);
        }
        for key in ["anyOf", "oneOf"] {
            if let Some(branches) = obj.get(key).and_then(Value::as_array) {
                let rest = without(obj, key);
                let mut first = None;
                for branch in branches {
                    let mut candidate_schema = rest.clone();
                    if let Some(branch) = self.deref(branch).as_object() {
                        merge_into(&mut candidate_schema, branch);
                    }
                    let candidate = self.value(&Value::Object(candidate_schema), place, depth);
                    if self.valid(node, &candidate) {
                        return candidate;
                    }
                    first.get_or_insert(candidate);
                }
                return first.unwrap_or(Value::Null);
            }
        }
        let shallow = depth > MAX_DEPTH;
        match schema_type(obj) {
            Some("null") => Value::Null,
            Some("boolean") => Value::Bool(false),
            Some("object") => {
                if shallow && allows_null(obj) {
                    Value::Null
                } else {
                    self.object(obj, depth, shallow)
                }
            }
            Some("array") => {
                if shallow {
                    if allows_null(obj) {
                        Value::Null
                    } else {
                        Value::Array(Vec::new())
                    }
                } else {
                    self.array(obj, depth)
                }
            }
            Some("string") => self.string(node, obj, place),
            Some("integer") => integer(obj),
            Some("number") => number(obj),
            _ => Value::String("mock".into()),
        }
    }

    fn object(&self, obj: &Map<String, Value>, depth: usize, shallow: bool) -> Value {
        let required: Vec<&str> = obj
            .get("required")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let mut out = Map::new();
        if let Some(props) = obj.get("properties").and_then(Value::as_object) {
            for (name, schema) in props {
                let is_required = required.contains(&name.as_str());
                if shallow && !is_required {
                    continue;
                }
                if let Some(value) = self.reserved_field(name, schema, is_required) {
                    if let Some(value) = value {
                        out.insert(name.clone(), value);
                    }
                    continue;
                }
                out.insert(
                    name.clone(),
                    self.value(schema, Place::Property(name), depth + 1),
                );
            }
        }
        let extra_schema = match obj.get("additionalProperties") {
            Some(Value::Object(_)) => obj.get("additionalProperties"),
            _ => None,
        };
        let fill = |out: &mut Map<String, Value>, name: &str| {
            let value = match extra_schema {
                Some(s) => self.value(s, Place::Property(name), depth + 1),
                None => Value::String("mock".into()),
            };
            out.insert(name.to_string(), value);
        };
        for name in &required {
            if !out.contains_key(*name) {
                fill(&mut out, name);
            }
        }
        let min = obj
            .get("minProperties")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        let mut i = 1;
        while (out.len() as u64) < min && i <= min + 1 {
            let name = format!("mock_{i}");
            if !out.contains_key(&name) {
                fill(&mut out, &name);
            }
            i += 1;
        }
        Value::Object(out)
    }

    /// The reserved `ktsu_*` output fields: `Some(None)` = omit, `Some(Some(v))` = this value,
    /// `None` = generate as usual.
    fn reserved_field(&self, name: &str, schema: &Value, required: bool) -> Option<Option<Value>> {
        let rest = name.strip_prefix("ktsu_")?;
        let schema = self.deref(schema).as_object();
        match rest {
            "confidence" => {
                let max = schema
                    .and_then(|s| s.get("maximum"))
                    .and_then(Value::as_f64)
                    .unwrap_or(1.0);
                Some(Some(json_number(max.min(1.0))))
            }
            "skip_reason" => Some(required.then(|| Value::String(String::new()))),
            "flags" => Some(Some(Value::Array(Vec::new()))),
            _ if schema.and_then(schema_type) == Some("boolean") => Some(Some(Value::Bool(false))),
            _ => None,
        }
    }

    fn array(&self, obj: &Map<String, Value>, depth: usize) -> Value {
        let (prefix, rest): (&[Value], Option<&Value>) =
            match (obj.get("prefixItems"), obj.get("items")) {
                (Some(Value::Array(prefix)), items) => (prefix, items),
                // Before 2020-12 an `items` array is the tuple form, `additionalItems` the rest.
                (_, Some(Value::Array(prefix))) => (prefix, obj.get("additionalItems")),
                (_, items) => (&[], items),
            };
        let max = obj.get("maxItems").and_then(Value::as_u64);
        if max == Some(0) {
            return Value::Array(Vec::new());
        }
        let min = obj
            .get("minItems")
            .and_then(Value::as_u64)
            .unwrap_or(0)
            .max(1);
        let unique = obj.get("uniqueItems").and_then(Value::as_bool) == Some(true);
        let mut out: Vec<Value> = prefix
            .iter()
            .map(|s| self.value(s, Place::Item, depth + 1))
            .collect();
        let may_extend = !matches!(rest, Some(Value::Bool(false)));
        let want = usize::try_from(max.map_or(min, |m| min.min(m))).unwrap_or(usize::MAX);
        let mut index = out.len();
        while may_extend && out.len() < want {
            let item = match rest {
                Some(schema) => self.value(schema, Place::Item, depth + 1),
                None => Value::String("mock".into()),
            };
            out.push(if unique { distinct(item, index) } else { item });
            index += 1;
        }
        Value::Array(out)
    }

    fn string(&self, node: &Value, obj: &Map<String, Value>, place: Place<'_>) -> Value {
        let base = match obj.get("format").and_then(Value::as_str) {
            Some("date-time") => "2024-01-01T00:00:00Z".to_string(),
            Some("date") => "2024-01-01".to_string(),
            Some("time") => "00:00:00Z".to_string(),
            Some("email") => "mock@example.com".to_string(),
            Some("uri" | "url") => "https://example.com/".to_string(),
            Some("uuid") => "00000000-0000-4000-8000-000000000000".to_string(),
            Some("ipv4") => "192.0.2.1".to_string(),
            Some("ipv6") => "2001:db8::1".to_string(),
            Some("hostname") => "example.com".to_string(),
            _ => match place {
                Place::Property(name) => format!("mock-{name}"),
                Place::Root | Place::Item => "mock".to_string(),
            },
        };
        let value = fit_length(base, obj);
        if !obj.contains_key("pattern") {
            return Value::String(value);
        }
        let candidates = [value.as_str(), "mock", "a", "A", "0", ""];
        candidates
            .iter()
            .map(|c| Value::String(fit_length((*c).to_string(), obj)))
            .find(|c| self.valid(node, c))
            .unwrap_or(Value::String(value))
    }

    /// `#/…` pointers into the root document.
    fn resolve(&self, reference: &str) -> Option<&'a Value> {
        let pointer = reference.strip_prefix('#')?;
        if pointer.is_empty() {
            return Some(self.root);
        }
        let decoded: String = pointer
            .split('/')
            .map(|t| percent_decode(t).replace("~1", "/").replace("~0", "~"))
            .collect::<Vec<_>>()
            .join("/");
        self.root.pointer(&decoded)
    }

    /// A schema with its `$ref` followed (one level is enough for merging).
    fn deref<'v>(&self, node: &'v Value) -> &'v Value
    where
        'a: 'v,
    {
        match node.get("$ref").and_then(Value::as_str) {
            Some(r) => self.resolve(r).unwrap_or(node),
            None => node,
        }
    }

    /// Whether `value` is valid against `node`, evaluated as a schema of its own with the
    /// root's definitions and dialect (so local `$ref`s still resolve).
    fn valid(&self, node: &Value, value: &Value) -> bool {
        let mut schema = match node {
            Value::Object(o) => o.clone(),
            other => return other.as_bool().unwrap_or(false),
        };
        if let Some(root) = self.root.as_object() {
            for key in ["$schema", "$defs", "definitions"] {
                if let Some(v) = root.get(key) {
                    schema.entry(key.to_string()).or_insert_with(|| v.clone());
                }
            }
        }
        CompiledSchema::compile(&Value::Object(schema)).is_ok_and(|c| c.is_valid(value))
    }
}

/// The first non-null type (`null` only when it is the only one); inferred from the keywords
/// when `type` is absent.
fn schema_type(obj: &Map<String, Value>) -> Option<&str> {
    match obj.get("type") {
        Some(Value::String(t)) => Some(t.as_str()),
        Some(Value::Array(types)) => {
            let names: Vec<&str> = types.iter().filter_map(Value::as_str).collect();
            names
                .iter()
                .find(|t| **t != "null")
                .or(names.first())
                .copied()
        }
        _ => {
            let has = |keys: &[&str]| keys.iter().any(|k| obj.contains_key(*k));
            if has(&[
                "properties",
                "required",
                "additionalProperties",
                "minProperties",
            ]) {
                Some("object")
            } else if has(&[
                "items",
                "prefixItems",
                "minItems",
                "maxItems",
                "uniqueItems",
            ]) {
                Some("array")
            } else if has(&["minLength", "maxLength", "pattern", "format"]) {
                Some("string")
            } else if has(&[
                "minimum",
                "maximum",
                "exclusiveMinimum",
                "exclusiveMaximum",
                "multipleOf",
            ]) {
                Some("number")
            } else {
                None
            }
        }
    }
}

fn allows_null(obj: &Map<String, Value>) -> bool {
    match obj.get("type") {
        Some(Value::Array(types)) => types.iter().any(|t| t == "null"),
        Some(Value::String(t)) => t == "null",
        _ => false,
    }
}

fn without(obj: &Map<String, Value>, key: &str) -> Map<String, Value> {
    let mut copy = obj.clone();
    copy.remove(key);
    copy
}

/// Merges a branch into a schema: properties and required united, other keywords kept from the
/// schema when it has them.
fn merge_into(target: &mut Map<String, Value>, branch: &Map<String, Value>) {
    for (key, value) in branch {
        match (key.as_str(), target.get_mut(key)) {
            ("properties", Some(Value::Object(props))) => {
                if let Value::Object(more) = value {
                    for (k, v) in more {
                        props.entry(k.clone()).or_insert_with(|| v.clone());
                    }
                }
            }
            ("required", Some(Value::Array(required))) => {
                if let Value::Array(more) = value {
                    for name in more {
                        if !required.contains(name) {
                            required.push(name.clone());
                        }
                    }
                }
            }
            (_, Some(_)) => {}
            (_, None) => {
                target.insert(key.clone(), value.clone());
            }
        }
    }
}

/// `-<i>` on strings, `+i` on numbers, for `uniqueItems`.
fn distinct(item: Value, index: usize) -> Value {
    match item {
        Value::String(s) => Value::String(format!("{s}-{index}")),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i.saturating_add(i64::try_from(index).unwrap_or(i64::MAX)))
            } else {
                json_number(n.as_f64().unwrap_or(0.0) + index as f64)
            }
        }
        other => other,
    }
}

/// Padded with `x` to `minLength`, cut to `maxLength` (in characters).
fn fit_length(mut value: String, obj: &Map<String, Value>) -> String {
    let len = value.chars().count() as u64;
    if let Some(min) = obj.get("minLength").and_then(Value::as_u64) {
        if len < min {
            value.extend(std::iter::repeat_n(
                'x',
                usize::try_from(min - len).unwrap_or(0),
            ));
        }
    }
    if let Some(max) = obj.get("maxLength").and_then(Value::as_u64) {
        let max = usize::try_from(max).unwrap_or(usize::MAX);
        if value.chars().count() > max {
            value = value.chars().take(max).collect();
        }
    }
    value
}

fn bound(obj: &Map<String, Value>, key: &str) -> Option<f64> {
    obj.get(key).and_then(Value::as_f64)
}

/// A numeric bound and whether it is exclusive.
type Bound = Option<(f64, bool)>;

/// Lower and upper bounds with exclusivity, draft-04 boolean exclusives included.
fn bounds(obj: &Map<String, Value>) -> (Bound, Bound) {
    let draft4_exclusive = |key: &str| obj.get(key).and_then(Value::as_bool) == Some(true);
    let lower = match (bound(obj, "minimum"), bound(obj, "exclusiveMinimum")) {
        (Some(m), Some(e)) => Some(if e >= m { (e, true) } else { (m, false) }),
        (Some(m), None) => Some((m, draft4_exclusive("exclusiveMinimum"))),
        (None, Some(e)) => Some((e, true)),
        (None, None) => None,
    };
    let upper = match (bound(obj, "maximum"), bound(obj, "exclusiveMaximum")) {
        (Some(m), Some(e)) => Some(if e <= m { (e, true) } else { (m, false) }),
        (Some(m), None) => Some((m, draft4_exclusive("exclusiveMaximum"))),
        (None, Some(e)) => Some((e, true)),
        (None, None) => None,
    };
    (lower, upper)
}

fn integer(obj: &Map<String, Value>) -> Value {
    let (lower, upper) = bounds(obj);
    let lo = lower.map(|(v, exclusive)| if exclusive { v.floor() + 1.0 } else { v.ceil() });
    let hi = upper.map(|(v, exclusive)| if exclusive { v.ceil() - 1.0 } else { v.floor() });
    let mut value = 1.0f64;
    if let Some(lo) = lo {
        value = value.max(lo);
    }
    if let Some(hi) = hi {
        value = value.min(hi);
    }
    if let Some(m) = bound(obj, "multipleOf").filter(|m| *m > 0.0) {
        value = multiple(value, m, hi, true);
    }
    json_number(value)
}

fn number(obj: &Map<String, Value>) -> Value {
    let (lower, upper) = bounds(obj);
    let breaks_lower =
        lower.is_some_and(|(v, exclusive)| if exclusive { 1.0 <= v } else { 1.0 < v });
    let breaks_upper =
        upper.is_some_and(|(v, exclusive)| if exclusive { 1.0 >= v } else { 1.0 > v });
    let mut value = 1.0;
    if breaks_lower || breaks_upper {
        value = match (lower, upper) {
            (Some((lo, _)), Some((hi, _))) => (lo + hi) / 2.0,
            (Some((lo, exclusive)), None) => {
                if exclusive {
                    lo + 1.0
                } else {
                    lo
                }
            }
            (None, Some((hi, exclusive))) => {
                if exclusive {
                    hi - 1.0
                } else {
                    hi
                }
            }
            (None, None) => 1.0,
        };
    }
    if let Some(m) = bound(obj, "multipleOf").filter(|m| *m > 0.0) {
        value = multiple(value, m, upper.map(|(v, _)| v), false);
    }
    json_number(value)
}

/// The smallest multiple of `m` ≥ `value`, or the largest ≤ `upper` if that overshoots; for
/// integers, the multiple must be integral too.
fn multiple(value: f64, m: f64, upper: Option<f64>, integral: bool) -> f64 {
    let start = (value / m).ceil();
    for k in 0..1000 {
        let candidate = (start + f64::from(k)) * m;
        if upper.is_some_and(|u| candidate > u) {
            break;
        }
        if !integral || candidate.fract() == 0.0 {
            return candidate;
        }
    }
    if let Some(u) = upper {
        let top = (u / m).floor();
        for k in 0..1000 {
            let candidate = (top - f64::from(k)) * m;
            if !integral || candidate.fract() == 0.0 {
                return candidate;
            }
        }
    }
    value
}

/// Integral values as JSON integers, others as floats.
fn json_number(value: f64) -> Value {
    if value.fract() == 0.0 && value.abs() < 9.0e15 {
        Value::from(value as i64)
    } else {
        Number::from_f64(value).map_or(Value::Null, Value::Number)
    }
}

/// `%XX` escapes of a JSON-pointer fragment (URI form).
fn percent_decode(token: &str) -> String {
    let bytes = token.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push(u8::try_from(h * 16 + l).unwrap_or(b'?'));
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap_or_else(|_| token.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn gen(schema: Value) -> Value {
        Generator::new(&schema).generate()
    }

    fn assert_valid(schema: &Value) -> Value {
        let value = Generator::new(schema).generate();
        let compiled = CompiledSchema::compile(schema).unwrap();
        assert!(
            compiled.is_valid(&value),
            "{value} is not valid against {schema}: {:?}",
            compiled.violations(&value)
        );
        value
    }

    #[test]
    fn table_of_the_spec() {
        assert_eq!(gen(json!({"const": {"a": 1}})), json!({"a": 1}));
        assert_eq!(gen(json!({"enum": ["x", "y"]})), json!("x"));
        assert_eq!(gen(json!({"type": "string", "default": "d"})), json!("d"));
        assert_eq!(
            gen(json!({"type": "string", "default": 3, "examples": ["e"]})),
            json!("e")
        );
        assert_eq!(gen(json!({"type": ["null", "integer"]})), json!(1));
        assert_eq!(gen(json!({"type": ["null"]})), json!(null));
        assert_eq!(gen(json!({"type": "boolean"})), json!(false));
        assert_eq!(gen(json!({})), json!("mock"));
        assert_eq!(gen(json!({"type": "string"})), json!("mock"));
        assert_eq!(
            gen(
                json!({"type": "object", "properties": {"name": {"type": "string"}, "when": {"type": "string", "format": "date-time"}}})
            ),
            json!({"name": "mock-name", "when": "2024-01-01T00:00:00Z"})
        );
        assert_eq!(
            gen(json!({"type": "string", "minLength": 7})),
            json!("mockxxx")
        );
        assert_eq!(gen(json!({"type": "string", "maxLength": 2})), json!("mo"));
        assert_eq!(
            gen(json!({"type": "string", "pattern": "^[A-Z]$"})),
            json!("A")
        );
        assert_eq!(gen(json!({"type": "integer", "minimum": 5})), json!(5));
        assert_eq!(
            gen(json!({"type": "integer", "exclusiveMaximum": 0})),
            json!(-1)
        );
        assert_eq!(
            gen(json!({"type": "integer", "minimum": 3, "multipleOf": 4})),
            json!(4)
        );
        assert_eq!(
            gen(json!({"type": "number", "minimum": 2, "maximum": 4})),
            json!(3)
        );
        assert_eq!(
            gen(json!({"type": "number", "exclusiveMinimum": 1})),
            json!(2)
        );
        assert_eq!(gen(json!({"type": "number", "maximum": 0.5})), json!(0.5));
        assert_eq!(
            gen(json!({"type": "number", "minimum": 0, "maximum": 1.5, "multipleOf": 0.25})),
            json!(1)
        );
        assert_eq!(
            gen(json!({"type": "array", "items": {"type": "integer"}})),
            json!([1])
        );
        assert_eq!(gen(json!({"type": "array", "maxItems": 0})), json!([]));
        assert_eq!(
            gen(
                json!({"type": "array", "minItems": 3, "uniqueItems": true, "items": {"type": "string"}})
            ),
            json!(["mock-0", "mock-1", "mock-2"])
        );
        assert_eq!(
            gen(
                json!({"type": "array", "prefixItems": [{"type": "boolean"}, {"const": 7}], "items": false})
            ),
            json!([false, 7])
        );
    }

    #[test]
    fn reserved_fields() {
        let schema = json!({"type": "object", "required": ["category"], "properties": {
            "category": {"type": "string"},
            "ktsu_confidence": {"type": "number", "maximum": 0.9},
            "ktsu_needs_human": {"type": "boolean"},
            "ktsu_skip_reason": {"type": "string"},
            "ktsu_flags": {"type": "array", "items": {"type": "string"}}
        }});
        assert_eq!(
            assert_valid(&schema),
            json!({"category": "mock-category", "ktsu_confidence": 0.9, "ktsu_needs_human": false, "ktsu_flags": []})
        );
        let required = json!({"type": "object", "required": ["ktsu_skip_reason"], "properties": {"ktsu_skip_reason": {"type": "string"}}});
        assert_eq!(assert_valid(&required), json!({"ktsu_skip_reason": ""}));
    }

    #[test]
    fn combinators_and_refs() {
        let schema = json!({
            "$defs": {"tag": {"type": "string", "minLength": 5}, "node": {"type": "object", "properties": {"next": {"$ref": "#/$defs/node"}}}},
            "type": "object",
            "properties": {
                "tag": {"$ref": "#/$defs/tag"},
                "either": {"anyOf": [{"type": "integer", "minimum": 10, "maximum": 5}, {"type": "string"}]},
                "one": {"oneOf": [{"type": "integer"}, {"type": "string"}]},
                "both": {"allOf": [{"properties": {"a": {"type": "integer"}}, "required": ["a"]}, {"properties": {"b": {"type": "boolean"}}, "required": ["b"]}]},
                "tree": {"$ref": "#/$defs/node"}
            }
        });
        let value = assert_valid(&schema);
        assert_eq!(value["tag"], "mock-tag");
        assert_eq!(value["either"], "mock-either");
        assert_eq!(value["one"], 1);
        assert_eq!(value["both"], json!({"a": 1, "b": false}));
        // Recursion stops: deep levels get the smallest value.
        let mut depth = 0;
        let mut at = &value["tree"];
        while let Some(next) = at.get("next") {
            at = next;
            depth += 1;
        }
        assert_eq!(depth, 8, "levels below 8 get the smallest value");

        let draft7 = json!({"$schema": "http://json-schema.org/draft-07/schema#", "definitions": {"n": {"type": "integer", "minimum": 3}},
            "type": "array", "items": [{"$ref": "#/definitions/n"}], "additionalItems": false});
        assert_eq!(assert_valid(&draft7), json!([3]));
    }

    #[test]
    fn deterministic() {
        let schema = json!({"type": "object", "properties": {"a": {"type": "array", "items": {"type": "object", "properties": {"b": {"type": "string", "format": "uuid"}}}}}});
        assert_eq!(gen(schema.clone()), gen(schema));
    }

    // ---- property test: values validate against a range of satisfiable schemas ----------

    fn leaf() -> impl Strategy<Value = Value> {
        prop_oneof![
            (
                0u64..6,
                0u64..6,
                prop::option::of(prop::sample::select(vec![
                    "date-time",
                    "date",
                    "email",
                    "uri",
                    "uuid",
                    "ipv4",
                    "hostname"
                ]))
            )
                .prop_map(|(min, extra, format)| {
                    let mut s =
                        json!({"type": "string", "minLength": min, "maxLength": min + extra + 1});
                    if let Some(f) = format {
                        s = json!({"type": "string", "format": f});
                    }
                    s
                }),
            prop::sample::select(vec!["^[a-z-]+$", "^mock", "^[A-Z]$", "^[0-9]?$", "^$|^a$"])
                .prop_map(|p| json!({"type": "string", "pattern": p})),
            (
                -50i64..50,
                0i64..20,
                prop::sample::select(vec![1i64, 2, 3, 5]),
                any::<bool>(),
                any::<bool>()
            )
                .prop_map(|(lo, span, m, exclusive_lo, exclusive_hi)| {
                    let hi = lo + span + m + 2;
                    let mut s = json!({"type": "integer", "multipleOf": m});
                    s[if exclusive_lo {
                        "exclusiveMinimum"
                    } else {
                        "minimum"
                    }] = json!(lo);
                    s[if exclusive_hi {
                        "exclusiveMaximum"
                    } else {
                        "maximum"
                    }] = json!(hi);
                    s
                }),
            (-100.0f64..100.0, 0.5f64..50.0, any::<bool>()).prop_map(|(lo, span, exclusive)| {
                if exclusive {
                    json!({"type": "number", "exclusiveMinimum": lo, "exclusiveMaximum": lo + span})
                } else {
                    json!({"type": "number", "minimum": lo, "maximum": lo + span})
                }
            }),
            prop::sample::select(vec![0.25f64, 0.5, 2.0])
                .prop_map(|m| json!({"type": "number", "multipleOf": m, "minimum": 0.1})),
            Just(json!({"type": "boolean"})),
            Just(json!({"type": "null"})),
            Just(json!({"type": ["string", "null"]})),
            Just(json!({"enum": ["red", "green", 3]})),
            Just(json!({"const": {"fixed": [1, 2]}})),
            Just(json!({"type": "string", "default": "dflt"})),
            Just(json!({})),
        ]
    }

    fn schema() -> impl Strategy<Value = Value> {
        leaf().prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                (prop::collection::vec(("[a-z]{1,6}", inner.clone()), 0..6), any::<bool>(), any::<bool>()).prop_map(
                    |(props, all_required, closed)| {
                        let mut properties = Map::new();
                        for (name, s) in props {
                            properties.insert(name, s);
                        }
                        let required: Vec<Value> = if all_required {
                            properties.keys().map(|k| Value::String(k.clone())).collect()
                        } else {
                            Vec::new()
                        };
                        json!({"type": "object", "properties": properties, "required": required, "additionalProperties": !closed})
                    }
                ),
                (inner.clone(), 0u64..4, 0u64..3).prop_map(|(items, min, extra)| {
                    json!({"type": "array", "items": items, "minItems": min, "maxItems": min + extra})
                }),
                (0u64..4).prop_map(|min| json!({"type": "array", "items": {"type": "string"}, "minItems": min, "uniqueItems": true})),
                (inner.clone(), inner.clone()).prop_map(|(a, b)| json!({"anyOf": [a, b]})),
                // Always satisfiable: either the const (when `a` rejects it) or `a`'s value.
                (inner, any::<u32>()).prop_map(|(a, n)| json!({"oneOf": [{"const": format!("__none_{n}__")}, a]})),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn generated_values_validate(
            inner in schema(),
            other in schema(),
            with_defs in any::<bool>(),
        ) {
            // Definitions live at the document root, where `#/$defs/…` points.
            let schema = if with_defs {
                json!({"$defs": {"a": inner, "b": other}, "type": "object", "required": ["x", "y"],
                       "properties": {"x": {"$ref": "#/$defs/a"}, "y": {"$ref": "#/$defs/b"}}})
            } else {
                inner
            };
            let compiled = CompiledSchema::compile(&schema).unwrap();
            let value = Generator::new(&schema).generate();
            prop_assert!(compiled.is_valid(&value), "{} invalid against {}: {:?}", value, schema, compiled.violations(&value));
            prop_assert_eq!(&value, &Generator::new(&schema).generate());
        }
    }
}
