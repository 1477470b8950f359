//! JSON Schema for ktsu: compile once, validate many times, report every violation.
//!
//! - [`CompiledSchema`]: dialect selection (2020-12 unless `$schema` names draft-04, -06, -07 or
//!   2019-09), local `$ref`s only, `format` as an annotation, never any fetching.
//! - [`Violation`]: `{pointer, keyword, message}` entries for 422 `params_invalid`, step errors,
//!   the Air-Lock and the runtime's correction turns.
//! - [`apply_defaults`], [`secret_properties`], [`redact_secret_params`]: params handling.
//! - [`airlock_agent_schema`], [`RESERVED_FIELDS`]: the reserved `ktsu_*` output fields.

mod defaults;
mod dialect;
mod ktsu;
mod refs;
mod violation;

use std::collections::HashSet;

use serde_json::Value;

pub use defaults::apply_defaults;
pub use dialect::Dialect;
pub use ktsu::{
    airlock_agent_schema, is_reserved_field, redact_secret_params, secret_properties, REDACTED,
    RESERVED_FIELDS, RESERVED_PREFIX,
};
pub use violation::{format_violations, json_type_name, Violation};

/// A schema that cannot be used: check code `schema_invalid` (config.md §6.2).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SchemaError {
    /// What is wrong, in one line; the caller adds the location of the schema.
    pub message: String,
    /// JSON Pointer of the offending keyword inside the schema, when known, so that the
    /// validator can report at its line instead of at the top of the schema.
    pub pointer: Option<String>,
}

impl SchemaError {
    fn new(message: impl Into<String>) -> Self {
        SchemaError {
            message: message.into(),
            pointer: None,
        }
    }

    fn at(message: impl Into<String>, pointer: impl Into<String>) -> Self {
        let pointer = pointer.into();
        SchemaError {
            message: message.into(),
            pointer: (!pointer.is_empty()).then_some(pointer),
        }
    }

    /// A compilation failure of the validator. For a schema that breaks its meta-schema, the
    /// error's instance path is the location inside the schema.
    fn from_build(error: &jsonschema::ValidationError<'_>) -> Self {
        if let jsonschema::error::ValidationErrorKind::Referencing(inner) = error.kind() {
            return SchemaError::new(format!("unresolvable $ref: {inner}"));
        }
        let at = error.instance_path().as_str();
        if at.is_empty() {
            SchemaError::new(error.to_string())
        } else {
            SchemaError::at(format!("{at}: {error}"), at)
        }
    }
}

/// A compiled JSON Schema, compiled once and used many times (`Send + Sync`; share it with an
/// `Arc`).
pub struct CompiledSchema {
    schema: Value,
    dialect: Dialect,
    validator: jsonschema::Validator,
}

impl std::fmt::Debug for CompiledSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledSchema")
            .field("dialect", &self.dialect)
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

impl CompiledSchema {
    /// Compiles `schema` under the dialect its `$schema` names (2020-12 when absent).
    ///
    /// `format` is an annotation and is never asserted, in every dialect (draft-04 to -07 would
    /// otherwise assert it). Unknown keywords, such as ktsu's `secret`, are ignored. Nothing is
    /// ever fetched or read from disk: remote `$ref`s are rejected up front, and the validator
    /// is built offline.
    ///
    /// # Errors
    /// An unsupported `$schema`, a remote `$ref`, or a schema that breaks its meta-schema or
    /// does not compile (a local `$ref` to nothing, an invalid regular expression, …).
    pub fn compile(schema: &Value) -> Result<CompiledSchema, SchemaError> {
        if !matches!(schema, Value::Object(_) | Value::Bool(_)) {
            return Err(SchemaError::new(format!(
                "a JSON Schema must be an object or a boolean, got {}",
                json_type_name(schema)
            )));
        }
        let dialect = Dialect::detect(schema)?;
        refs::check_local_refs(schema, dialect)?;
        let validator = jsonschema::options()
            .with_draft(dialect.draft())
            .should_validate_formats(false)
            .offline()
            .build(schema)
            .map_err(|e| SchemaError::from_build(&e))?;
        Ok(CompiledSchema {
            schema: schema.clone(),
            dialect,
            validator,
        })
    }

    /// The schema as given to [`CompiledSchema::compile`].
    #[must_use]
    pub fn schema(&self) -> &Value {
        &self.schema
    }

    /// The dialect the schema was compiled under.
    #[must_use]
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// Whether `instance` is valid. Stops at the first failure, so it is the cheap check.
    #[must_use]
    pub fn is_valid(&self, instance: &Value) -> bool {
        self.validator.is_valid(instance)
    }

    /// Every violation of `instance`, in the validator's deterministic order (schema keyword
    /// order, then property order), without duplicates. Empty when the instance is valid.
    ///
    /// A missing `required` property is reported at the property's own location (`/user_id`,
    /// message `missing required property "user_id"`), one violation per name. A property
    /// rejected by `additionalProperties: false` is likewise reported at its own location
    /// (`/extra`), not at the enclosing object.
    #[must_use]
    pub fn violations(&self, instance: &Value) -> Vec<Violation> {
        // Valid instances are the common case: skip the costlier error collection.
        if self.validator.is_valid(instance) {
            return Vec::new();
        }
        let mut found = Vec::new();
        for error in self.validator.iter_errors(instance) {
            violation::collect(&error, &self.schema, &mut found);
        }
        let mut seen = HashSet::new();
        found.retain(|v| seen.insert(v.clone()));
        found
    }
}

/// Escapes one RFC 6901 reference token (`~` → `~0`, `/` → `~1`).
fn escape_pointer_token(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;
    use std::sync::Arc;

    fn compile(schema: Value) -> CompiledSchema {
        CompiledSchema::compile(&schema).unwrap_or_else(|e| panic!("{schema} should compile: {e}"))
    }

    fn compile_err(schema: Value) -> String {
        match CompiledSchema::compile(&schema) {
            Ok(_) => panic!("{schema} should not compile"),
            Err(e) => e.message,
        }
    }

    fn v(pointer: &str, keyword: &str, message: &str) -> Violation {
        Violation::new(pointer, keyword, message)
    }

    // ---- compilation ------------------------------------------------------------------------

    #[test]
    fn compiled_schema_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<CompiledSchema>();
        let compiled = Arc::new(compile(json!({"type": "string"})));
        let worker = {
            let compiled = Arc::clone(&compiled);
            std::thread::spawn(move || compiled.is_valid(&json!("x")))
        };
        assert!(worker.join().unwrap());
    }

    #[test]
    fn every_schema_spelling_compiles_under_its_dialect() {
        let cases = [
            ("json-schema.org/draft-04/schema", Dialect::Draft4),
            ("json-schema.org/draft-06/schema", Dialect::Draft6),
            ("json-schema.org/draft-07/schema", Dialect::Draft7),
            ("json-schema.org/draft/2019-09/schema", Dialect::Draft201909),
            ("json-schema.org/draft/2020-12/schema", Dialect::Draft202012),
        ];
        for (rest, dialect) in cases {
            for scheme in ["http://", "https://"] {
                for suffix in ["", "#"] {
                    let uri = format!("{scheme}{rest}{suffix}");
                    let compiled = compile(json!({
                        "$schema": uri,
                        "type": "object",
                        "required": ["a"],
                        "properties": {"a": {"type": "string", "format": "email", "secret": true}},
                    }));
                    assert_eq!(compiled.dialect(), dialect, "{uri}");
                    assert!(compiled.is_valid(&json!({"a": "not an email"})), "{uri}");
                    assert_eq!(
                        compiled.violations(&json!({})),
                        vec![v("/a", "required", "missing required property \"a\"")],
                        "{uri}"
                    );
                }
            }
        }
    }

    #[test]
    fn dialect_changes_semantics() {
        // Draft-04: boolean exclusiveMaximum. 2020-12 rejects that form.
        let draft4 = compile(json!({
            "$schema": "http://json-schema.org/draft-04/schema#",
            "maximum": 5, "exclusiveMaximum": true,
        }));
        assert_eq!(draft4.dialect(), Dialect::Draft4);
        assert!(draft4.is_valid(&json!(4)));
        assert!(!draft4.is_valid(&json!(5)));
        assert!(!compile_err(json!({"maximum": 5, "exclusiveMaximum": true})).is_empty());
        // Draft-04: 1.0 is not an integer; later drafts accept it.
        let int4 = compile(
            json!({"$schema": "http://json-schema.org/draft-04/schema#", "type": "integer"}),
        );
        let int12 = compile(json!({"type": "integer"}));
        assert!(!int4.is_valid(&json!(1.0)));
        assert!(int12.is_valid(&json!(1.0)));
        // 2020-12 `items` is for all items; draft-07 array `items` is positional.
        let tuple7 = compile(json!({
            "$schema": "http://json-schema.org/draft-07/schema#",
            "items": [{"type": "string"}], "additionalItems": false,
        }));
        assert!(tuple7.is_valid(&json!(["a"])));
        assert_eq!(
            tuple7.violations(&json!(["a", 1, 2])),
            vec![
                v(
                    "/1",
                    "additionalItems",
                    "item is not allowed: at most 1 item allowed"
                ),
                v(
                    "/2",
                    "additionalItems",
                    "item is not allowed: at most 1 item allowed"
                ),
            ]
        );
    }

    #[test]
    fn schema_without_dollar_schema_is_2020_12() {
        let compiled = compile(json!({"prefixItems": [{"type": "string"}], "items": false}));
        assert_eq!(compiled.dialect(), Dialect::Draft202012);
        assert!(compiled.is_valid(&json!(["a"])));
        assert!(!compiled.is_valid(&json!(["a", "b"])));
        assert_eq!(compile(json!(true)).dialect(), Dialect::Draft202012);
    }

    #[test]
    fn unsupported_schema_is_rejected() {
        for uri in [
            "http://json-schema.org/draft-03/schema#",
            "https://example.com/meta",
            "https://json-schema.org/schema",
        ] {
            let message = compile_err(json!({"$schema": uri, "type": "object"}));
            assert!(
                message.starts_with(&format!("unsupported $schema \"{uri}\"")),
                "{message}"
            );
        }
    }

    #[test]
    fn remote_refs_are_rejected_and_never_fetched() {
        for (schema, raw) in [
            (
                json!({"$ref": "http://example.com/schema.json"}),
                "http://example.com/schema.json",
            ),
            (
                json!({"properties": {"a": {"$ref": "other.json#/x"}}}),
                "other.json#/x",
            ),
            (json!({"$ref": "file:///etc/passwd"}), "file:///etc/passwd"),
            (
                json!({"$schema": "http://json-schema.org/draft-07/schema#", "items": {"$ref": "https://example.com/d7"}}),
                "https://example.com/d7",
            ),
        ] {
            let message = compile_err(schema);
            assert!(
                message.starts_with(&format!("remote $ref \"{raw}\"")),
                "{message}"
            );
            assert!(message.contains("not allowed"), "{message}");
        }
    }

    #[test]
    fn local_refs_work() {
        let defs = compile(json!({
            "type": "object",
            "properties": {"user": {"$ref": "#/$defs/user"}},
            "$defs": {"user": {"type": "object", "required": ["id"], "properties": {"id": {"type": "integer"}}}},
        }));
        assert!(defs.is_valid(&json!({"user": {"id": 1}})));
        assert_eq!(
            defs.violations(&json!({"user": {"id": "x"}})),
            vec![v("/user/id", "type", "expected integer, got string")]
        );
        assert_eq!(
            defs.violations(&json!({"user": {}})),
            vec![v(
                "/user/id",
                "required",
                "missing required property \"id\""
            )]
        );

        let definitions = compile(json!({
            "$schema": "http://json-schema.org/draft-07/schema#",
            "items": {"$ref": "#/definitions/tag"},
            "definitions": {"tag": {"type": "string", "maxLength": 3}},
        }));
        assert_eq!(
            definitions.violations(&json!(["ok", "toolong"])),
            vec![v("/1", "maxLength", "expected at most 3 characters, got 7")]
        );

        let recursive = compile(json!({
            "$defs": {"node": {"type": "object", "properties": {"children": {"type": "array", "items": {"$ref": "#/$defs/node"}}}}},
            "$ref": "#/$defs/node",
        }));
        assert!(recursive.is_valid(&json!({"children": [{"children": []}]})));
        assert_eq!(
            recursive.violations(&json!({"children": [{"children": 3}]})),
            vec![v(
                "/children/0/children",
                "type",
                "expected array, got number"
            )]
        );

        let with_id = compile(json!({
            "$id": "https://example.com/root.json",
            "properties": {"a": {"$ref": "root.json#/$defs/a"}},
            "$defs": {"a": {"type": "boolean"}},
        }));
        assert!(with_id.is_valid(&json!({"a": true})));
        assert!(!with_id.is_valid(&json!({"a": 1})));
    }

    #[test]
    fn broken_schemas_do_not_compile() {
        for schema in [
            json!({"type": 12}),
            json!({"type": "strin"}),
            json!({"minLength": -1}),
            json!({"properties": []}),
            json!({"required": "a"}),
            json!({"$ref": "#/$defs/missing"}),
            json!({"pattern": "("}),
            json!({"$schema": "http://json-schema.org/draft-04/schema#", "required": []}),
            json!(12),
            json!("string"),
            json!(null),
        ] {
            let message = compile_err(schema.clone());
            assert!(!message.is_empty(), "{schema}");
        }
        assert!(compile_err(json!({"minLength": -1})).starts_with("/minLength: "));
        assert!(compile_err(json!({"properties": []})).starts_with("/properties: "));
        assert_eq!(
            compile_err(json!(12)),
            "a JSON Schema must be an object or a boolean, got number"
        );
        assert_eq!(
            compile_err(json!({"$ref": "#/$defs/missing"})),
            "unresolvable $ref: Pointer '/$defs/missing' does not exist"
        );
    }

    #[test]
    fn format_is_only_an_annotation() {
        for dialect in Dialect::ALL {
            let compiled = compile(json!({
                "$schema": dialect.meta_schema_uri(),
                "properties": {
                    "email": {"type": "string", "format": "email"},
                    "when": {"format": "date-time"},
                    "ip": {"format": "ipv4"},
                    "custom": {"format": "no-such-format"},
                },
            }));
            assert!(
                compiled.is_valid(
                    &json!({"email": "not an email", "when": "yesterday", "ip": "x", "custom": 1})
                ),
                "{dialect}"
            );
        }
    }

    #[test]
    fn secret_keyword_compiles() {
        let compiled = compile(json!({
            "type": "object",
            "properties": {"api_key": {"type": "string", "secret": true}, "b": {"secret": false}},
        }));
        assert!(compiled.is_valid(&json!({"api_key": "sk"})));
        assert_eq!(
            compiled.violations(&json!({"api_key": 1})),
            vec![v("/api_key", "type", "expected string, got number")]
        );
    }

    #[test]
    fn schema_accessor_returns_the_original() {
        let schema = json!({"$schema": "http://json-schema.org/draft-07/schema", "type": "object"});
        assert_eq!(compile(schema.clone()).schema(), &schema);
    }

    // ---- violations -------------------------------------------------------------------------

    fn ticket_schema() -> CompiledSchema {
        compile(json!({
            "type": "object",
            "required": ["priority", "category", "user_id"],
            "properties": {
                "priority": {"type": "integer"},
                "category": {"type": "string", "enum": ["billing", "technical", "general"]},
                "user_id": {"type": "string"},
                "a": {"type": "object", "properties": {"b": {"type": "array", "items": {"type": "string", "minLength": 2}}}},
            },
        }))
    }

    #[test]
    fn every_violation_is_reported() {
        let violations = ticket_schema().violations(&json!({
            "category": "shipping",
            "a": {"b": ["x", "ok", 3]},
        }));
        assert_eq!(
            violations,
            vec![
                v(
                    "/priority",
                    "required",
                    "missing required property \"priority\""
                ),
                v(
                    "/user_id",
                    "required",
                    "missing required property \"user_id\""
                ),
                v(
                    "/category",
                    "enum",
                    "\"shipping\" is not one of [\"billing\",\"technical\",\"general\"]"
                ),
                v(
                    "/a/b/0",
                    "minLength",
                    "expected at least 2 characters, got 1"
                ),
                v("/a/b/2", "type", "expected string, got number"),
            ]
        );
    }

    #[test]
    fn airlock_example_text() {
        let violations =
            ticket_schema().violations(&json!({"category": "shipping", "user_id": "u1"}));
        assert_eq!(
            format_violations(&violations),
            "/priority: missing required property \"priority\"; \
             /category: \"shipping\" is not one of [\"billing\",\"technical\",\"general\"]"
        );
    }

    #[test]
    fn violations_are_deterministic_and_empty_when_valid() {
        let compiled = ticket_schema();
        let valid = json!({"priority": 1, "category": "billing", "user_id": "u"});
        assert!(compiled.violations(&valid).is_empty());
        let invalid = json!({"priority": "high", "category": 3, "a": {"b": [1, 2, 3]}});
        let first = compiled.violations(&invalid);
        // required user_id; type of priority; type and enum of category; three item types.
        assert_eq!(first.len(), 7, "{first:#?}");
        for _ in 0..20 {
            assert_eq!(compiled.violations(&invalid), first);
        }
    }

    #[test]
    fn required_pointer_and_message() {
        let compiled = compile(json!({
            "required": ["user_id", "a/b", "t~"],
            "properties": {"nested": {"required": ["x"]}},
        }));
        assert_eq!(
            compiled.violations(&json!({"nested": {}})),
            vec![
                v(
                    "/user_id",
                    "required",
                    "missing required property \"user_id\""
                ),
                v("/a~1b", "required", "missing required property \"a/b\""),
                v("/t~0", "required", "missing required property \"t~\""),
                v("/nested/x", "required", "missing required property \"x\""),
            ]
        );
        // `required` is about objects: other types pass it.
        assert!(compiled.is_valid(&json!("text")));
    }

    #[test]
    fn root_type_violation_has_empty_pointer() {
        let compiled = compile(json!({"type": "object"}));
        let violations = compiled.violations(&json!([1]));
        assert_eq!(
            violations,
            vec![v("", "type", "expected object, got array")]
        );
        assert_eq!(
            format_violations(&violations),
            "(root): expected object, got array"
        );
    }

    #[test]
    fn additional_properties_are_reported_at_their_own_location() {
        let compiled = compile(json!({
            "properties": {"a": {}, "inner": {"properties": {"k": {}}, "additionalProperties": false}},
            "additionalProperties": false,
        }));
        assert_eq!(
            compiled.violations(&json!({"a": 1, "x": 2, "y/z": 3, "inner": {"k": 1, "q": 2}})),
            vec![
                // `properties` (and what it nests) is checked before `additionalProperties`.
                v(
                    "/inner/q",
                    "additionalProperties",
                    "property \"q\" is not allowed"
                ),
                v(
                    "/x",
                    "additionalProperties",
                    "property \"x\" is not allowed"
                ),
                v(
                    "/y~1z",
                    "additionalProperties",
                    "property \"y/z\" is not allowed"
                ),
            ]
        );
    }

    #[test]
    fn draft7_dependencies() {
        let compiled = compile(json!({
            "$schema": "http://json-schema.org/draft-07/schema#",
            "dependencies": {
                "credit_card": ["billing_address", "cvv"],
                "coupon": {"required": ["campaign"]},
            },
        }));
        assert!(compiled.is_valid(&json!({"name": "x"})));
        assert!(compiled.is_valid(&json!({"credit_card": 1, "billing_address": "a", "cvv": 1})));
        assert_eq!(
            compiled.violations(&json!({"credit_card": 1, "coupon": "c"})),
            vec![
                v(
                    "/billing_address",
                    "dependencies",
                    "missing property \"billing_address\", required when \"credit_card\" is present"
                ),
                v("/cvv", "dependencies", "missing property \"cvv\", required when \"credit_card\" is present"),
                v("/campaign", "required", "missing required property \"campaign\""),
            ]
        );
    }

    #[test]
    fn draft2019_dependent_required() {
        let compiled = compile(json!({
            "$schema": "https://json-schema.org/draft/2019-09/schema",
            "dependentRequired": {"credit_card": ["cvv"]},
            "dependentSchemas": {"coupon": {"properties": {"campaign": {"type": "string"}}}},
        }));
        assert_eq!(compiled.dialect(), Dialect::Draft201909);
        assert!(compiled.is_valid(&json!({"credit_card": 1, "cvv": 2})));
        assert_eq!(
            compiled.violations(&json!({"credit_card": 1, "coupon": 1, "campaign": 5})),
            vec![
                v(
                    "/cvv",
                    "dependentRequired",
                    "missing property \"cvv\", required when \"credit_card\" is present"
                ),
                v("/campaign", "type", "expected string, got number"),
            ]
        );
        // Draft-07 predates dependentRequired: ignored there.
        let ignored = compile(json!({
            "$schema": "http://json-schema.org/draft-07/schema#",
            "dependentRequired": {"credit_card": ["cvv"]},
        }));
        assert!(ignored.is_valid(&json!({"credit_card": 1})));
    }

    #[test]
    fn messages_for_common_keywords() {
        let compiled = compile(json!({
            "properties": {
                "s": {"type": ["string", "null"]},
                "t": {"type": ["integer", "boolean", "null"]},
                "c": {"const": "fixed"},
                "n": {"minimum": 1, "maximum": 10, "multipleOf": 2},
                "x": {"exclusiveMinimum": 0, "exclusiveMaximum": 5},
                "p": {"pattern": "^[0-9]+$"},
                "arr": {"minItems": 2, "uniqueItems": true},
                "few": {"maxItems": 1},
                "o": {"minProperties": 1},
                "no": {"not": {"type": "string"}},
                "any": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
                "one": {"oneOf": [{"minimum": 0}, {"maximum": 10}]},
                "never": false,
                "names": {"propertyNames": {"maxLength": 2}},
                "has": {"contains": {"type": "string"}},
            },
        }));
        let instance = json!({
            "s": 1, "t": "x", "c": "other", "n": 11, "x": 5, "p": "12a",
            "arr": [1], "few": [1, 2], "o": {}, "no": "s", "any": [], "one": 5, "never": 1,
            "names": {"ok": 1, "toolong": 2}, "has": [1],
        });
        let messages: Vec<(String, String, String)> = compiled
            .violations(&instance)
            .into_iter()
            .map(|v| (v.pointer, v.keyword, v.message))
            .collect();
        let expected = [
            ("/s", "type", "expected string or null, got number"),
            (
                "/t",
                "type",
                "expected integer, boolean or null, got string",
            ),
            ("/c", "const", "expected \"fixed\", got \"other\""),
            ("/n", "maximum", "11 is greater than the maximum 10"),
            ("/n", "multipleOf", "11 is not a multiple of 2"),
            (
                "/x",
                "exclusiveMaximum",
                "5 is not less than the exclusive maximum 5",
            ),
            (
                "/p",
                "pattern",
                "\"12a\" does not match the pattern \"^[0-9]+$\"",
            ),
            ("/arr", "minItems", "expected at least 2 items, got 1"),
            ("/few", "maxItems", "expected at most 1 item, got 2"),
            ("/o", "minProperties", "expected at least 1 property, got 0"),
            ("/no", "not", "value must not match the \"not\" schema"),
            (
                "/any",
                "anyOf",
                "value does not match any of the \"anyOf\" schemas",
            ),
            (
                "/one",
                "oneOf",
                "value matches more than one of the \"oneOf\" schemas",
            ),
            (
                "/never",
                "false",
                "no value is allowed here (the schema is false)",
            ),
            (
                "/names/toolong",
                "propertyNames",
                "invalid property name \"toolong\": expected at most 2 characters, got 7",
            ),
            (
                "/has",
                "contains",
                "no item matches the \"contains\" schema",
            ),
        ];
        for (pointer, keyword, message) in expected {
            assert!(
                messages.contains(&(
                    pointer.to_string(),
                    keyword.to_string(),
                    message.to_string()
                )),
                "missing ({pointer}, {keyword}, {message}) in {messages:#?}"
            );
        }
        assert_eq!(messages.len(), expected.len(), "{messages:#?}");
    }

    #[test]
    fn long_values_are_not_quoted() {
        let secret = "s".repeat(100);
        let compiled =
            compile(json!({"properties": {"k": {"enum": ["a"]}, "p": {"pattern": "^x"}}}));
        let violations = compiled.violations(&json!({"k": secret, "p": secret}));
        assert_eq!(
            violations,
            vec![
                v("/k", "enum", "value is not one of [\"a\"]"),
                v("/p", "pattern", "value does not match the pattern \"^x\""),
            ]
        );
    }

    #[test]
    fn duplicate_violations_are_merged() {
        let compiled = compile(
            json!({"allOf": [{"required": ["a"]}, {"required": ["a"]}], "required": ["a"]}),
        );
        assert_eq!(
            compiled.violations(&json!({})),
            vec![v("/a", "required", "missing required property \"a\"")]
        );
    }

    #[test]
    fn unevaluated_properties_are_reported_at_their_location() {
        let compiled = compile(json!({
            "allOf": [{"properties": {"a": {}}}],
            "unevaluatedProperties": false,
        }));
        assert_eq!(
            compiled.violations(&json!({"a": 1, "b": 2})),
            vec![v(
                "/b",
                "unevaluatedProperties",
                "property \"b\" is not allowed (unevaluated)"
            )]
        );
    }

    #[test]
    fn compile_once_validate_many() {
        let compiled = ticket_schema();
        let valid =
            json!({"priority": 1, "category": "billing", "user_id": "u", "a": {"b": ["xy"]}});
        for _ in 0..10_000 {
            assert!(compiled.violations(&valid).is_empty());
        }
    }

    proptest! {
        #[test]
        fn violations_agree_with_is_valid(
            priority in prop_oneof![Just(json!(1)), Just(json!("x")), Just(json!(null))],
            category in prop_oneof![Just(json!("billing")), Just(json!("shipping")), Just(json!(2))],
            user_id in prop::option::of(prop_oneof![Just(json!("u")), Just(json!([]))]),
            items in prop::collection::vec(prop_oneof![Just(json!("ab")), Just(json!("a")), Just(json!(1))], 0..4),
        ) {
            let compiled = ticket_schema();
            let mut instance = json!({"priority": priority, "category": category, "a": {"b": items}});
            if let Some(user_id) = user_id {
                instance["user_id"] = user_id;
            }
            let violations = compiled.violations(&instance);
            prop_assert_eq!(compiled.is_valid(&instance), violations.is_empty());
            for violation in &violations {
                // Every pointer is either present in the instance or names a missing property.
                let present = instance.pointer(&violation.pointer).is_some();
                prop_assert!(present || violation.keyword == "required", "{:?}", violation);
            }
        }
    }
}
