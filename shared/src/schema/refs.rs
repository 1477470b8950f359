//! `$ref` may only point into the same schema document (config.md §4.1).
//!
//! Checked before compilation so that the error names the offending reference; the validator is
//! also built offline, so even a reference this check missed could never be fetched.

use std::collections::HashSet;

use jsonschema::{uri, Uri};
use serde_json::Value;

use super::{escape_pointer_token, Dialect, SchemaError};

/// The base URI the validator gives a document without a root `$id`.
const DEFAULT_BASE: &str = "json-schema:///";

/// Keywords whose value is one subschema.
const SINGLE: &[&str] = &[
    "additionalItems",
    "additionalProperties",
    "contains",
    "contentSchema",
    "else",
    "if",
    "items",
    "not",
    "propertyNames",
    "then",
    "unevaluatedItems",
    "unevaluatedProperties",
];
/// Keywords whose value is an array of subschemas (`items` also, in its array form).
const ARRAY: &[&str] = &["allOf", "anyOf", "oneOf", "prefixItems", "items"];
/// Keywords whose value maps names to subschemas (`dependencies` also maps to arrays of names).
const MAP: &[&str] = &[
    "$defs",
    "definitions",
    "dependentSchemas",
    "dependencies",
    "patternProperties",
    "properties",
];

/// Rejects every `$ref` (and `$dynamicRef`/`$recursiveRef`) whose target, resolved against the
/// enclosing `$id`s, is not a resource of this document.
///
/// Only real subschema positions are walked, so a `"$ref"` key inside `enum`, `const`,
/// `default`, `examples` or an unknown keyword is data, not a reference.
///
/// # Errors
/// The first remote or unparsable reference, or an unparsable `$id`.
pub(super) fn check_local_refs(schema: &Value, dialect: Dialect) -> Result<(), SchemaError> {
    let root = uri::from_str(DEFAULT_BASE).map_err(|e| SchemaError::new(e.to_string()))?;
    let mut scan = Scan {
        dialect,
        resources: HashSet::from([DEFAULT_BASE.to_string()]),
        refs: Vec::new(),
    };
    scan.walk(schema, &root, &mut String::new())?;
    match scan
        .refs
        .into_iter()
        .find(|r| !scan.resources.contains(&r.target))
    {
        None => Ok(()),
        Some(r) => Err(remote_ref_error(&r)),
    }
}

struct FoundRef {
    keyword: &'static str,
    raw: String,
    /// The absolute URI of the referenced document, without fragment.
    target: String,
    /// Where the reference sits in the schema, as a JSON pointer.
    at: String,
}

struct Scan {
    dialect: Dialect,
    /// Absolute URIs (without fragment) of the document and of every embedded resource.
    resources: HashSet<String>,
    refs: Vec<FoundRef>,
}

impl Scan {
    fn walk(
        &mut self,
        node: &Value,
        base: &Uri<String>,
        at: &mut String,
    ) -> Result<(), SchemaError> {
        let Some(object) = node.as_object() else {
            return Ok(());
        };
        let base = self.enter_resource(object, base, at)?;
        for keyword in ["$ref", "$dynamicRef", "$recursiveRef"] {
            if let Some(raw) = object.get(keyword).and_then(Value::as_str) {
                let target = resolve(&base, raw).map_err(|reason| {
                    SchemaError::at(
                        format!(
                            "invalid {keyword} \"{raw}\" at {}: {reason}",
                            display_at(at)
                        ),
                        join(at, keyword),
                    )
                })?;
                self.refs.push(FoundRef {
                    keyword,
                    raw: raw.to_string(),
                    target: target.strip_fragment().as_str().to_string(),
                    at: join(at, keyword),
                });
            }
        }
        for (keyword, value) in object {
            let len = at.len();
            at.push('/');
            at.push_str(&escape_pointer_token(keyword));
            let keyword = keyword.as_str();
            let result = match value {
                Value::Object(map) if MAP.contains(&keyword) => {
                    map.iter().try_for_each(|(name, sub)| {
                        let len = at.len();
                        at.push('/');
                        at.push_str(&escape_pointer_token(name));
                        let result = self.walk(sub, &base, at);
                        at.truncate(len);
                        result
                    })
                }
                Value::Object(_) if SINGLE.contains(&keyword) => self.walk(value, &base, at),
                Value::Array(items) if ARRAY.contains(&keyword) => {
                    items.iter().enumerate().try_for_each(|(i, sub)| {
                        let len = at.len();
                        at.push_str(&format!("/{i}"));
                        let result = self.walk(sub, &base, at);
                        at.truncate(len);
                        result
                    })
                }
                _ => Ok(()),
            };
            at.truncate(len);
            result?;
        }
        Ok(())
    }

    /// The base URI inside `object`: changed by its `$id` (`id` in draft-04), which also makes it
    /// a resource that references may target.
    fn enter_resource(
        &mut self,
        object: &serde_json::Map<String, Value>,
        base: &Uri<String>,
        at: &str,
    ) -> Result<Uri<String>, SchemaError> {
        let id_keyword = self.dialect.id_keyword();
        let Some(id) = object.get(id_keyword).and_then(Value::as_str) else {
            return Ok(base.clone());
        };
        // Drafts 4–7: `$ref` hides its siblings, and an `$id` of the form `#name` is an anchor.
        if self.dialect.is_legacy() && (object.contains_key("$ref") || id.starts_with('#')) {
            return Ok(base.clone());
        }
        let resolved = resolve(base, id).map_err(|reason| {
            SchemaError::at(
                format!(
                    "invalid {id_keyword} \"{id}\" at {}: {reason}",
                    display_at(at)
                ),
                join(at, id_keyword),
            )
        })?;
        self.resources
            .insert(resolved.strip_fragment().as_str().to_string());
        Ok(resolved)
    }
}

fn resolve(base: &Uri<String>, reference: &str) -> Result<Uri<String>, String> {
    uri::resolve_against(&base.borrow(), reference).map_err(|e| e.to_string())
}

fn join(at: &str, keyword: &str) -> String {
    format!("{at}/{}", escape_pointer_token(keyword))
}

fn display_at(at: &str) -> &str {
    if at.is_empty() {
        "(root)"
    } else {
        at
    }
}

fn remote_ref_error(r: &FoundRef) -> SchemaError {
    let hint = if r.raw.starts_with('/') {
        format!(" (did you mean \"#{}\"?)", r.raw)
    } else {
        String::new()
    };
    SchemaError::at(
        format!(
            "remote {} \"{}\" at {} not allowed: a reference may only point into the same schema{hint}",
            r.keyword, r.raw, r.at
        ),
        r.at.clone(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(schema: &Value) -> Result<(), SchemaError> {
        check_local_refs(schema, Dialect::detect(schema)?)
    }

    fn assert_remote(schema: &Value, raw: &str, at: &str) {
        let err = check(schema).expect_err("must be rejected");
        assert!(err.message.starts_with("remote "), "{}", err.message);
        assert!(
            err.message
                .contains(&format!("\"{raw}\" at {at} not allowed")),
            "{}",
            err.message
        );
    }

    #[test]
    fn absolute_and_relative_refs_are_remote() {
        assert_remote(
            &json!({"$ref": "http://example.com/s.json"}),
            "http://example.com/s.json",
            "/$ref",
        );
        assert_remote(
            &json!({"properties": {"a": {"$ref": "other.json#/x"}}}),
            "other.json#/x",
            "/properties/a/$ref",
        );
        assert_remote(
            &json!({"items": {"allOf": [{"$ref": "https://json-schema.org/draft/2020-12/schema"}]}}),
            "https://json-schema.org/draft/2020-12/schema",
            "/items/allOf/0/$ref",
        );
        assert_remote(
            &json!({"$dynamicRef": "https://example.com/x#meta"}),
            "https://example.com/x#meta",
            "/$dynamicRef",
        );
    }

    #[test]
    fn slash_ref_gets_a_hint() {
        let err = check(&json!({"$ref": "/$defs/a", "$defs": {"a": {}}})).expect_err("remote");
        assert!(
            err.message.ends_with("(did you mean \"#/$defs/a\"?)"),
            "{}",
            err.message
        );
    }

    #[test]
    fn fragment_refs_are_local() {
        assert_eq!(
            check(&json!({"$ref": "#/$defs/a", "$defs": {"a": {"$ref": "#"}}})),
            Ok(())
        );
        assert_eq!(
            check(&json!({"$ref": "#anchor", "$defs": {"a": {"$anchor": "anchor"}}})),
            Ok(())
        );
        assert_eq!(check(&json!({"$ref": ""})), Ok(()));
    }

    #[test]
    fn refs_resolved_against_ids_inside_the_document_are_local() {
        let schema = json!({
            "$id": "https://example.com/root.json",
            "properties": {
                "a": {"$ref": "https://example.com/root.json#/$defs/a"},
                "b": {"$ref": "root.json#/$defs/a"},
                "c": {"$ref": "item.json"},
            },
            "$defs": {"a": {"type": "string"}, "item": {"$id": "item.json", "type": "integer"}},
        });
        assert_eq!(check(&schema), Ok(()));
        let schema = json!({"$id": "https://example.com/root.json", "$ref": "https://example.com/other.json"});
        assert_remote(&schema, "https://example.com/other.json", "/$ref");
    }

    #[test]
    fn draft4_uses_id_and_legacy_rules() {
        let schema = json!({
            "$schema": "http://json-schema.org/draft-04/schema#",
            "id": "http://example.com/root.json",
            "properties": {"a": {"$ref": "http://example.com/root.json#/definitions/a"}},
            "definitions": {"a": {"type": "string"}},
        });
        assert_eq!(check(&schema), Ok(()));
        // In draft-07 an `$id` next to `$ref` is ignored, so it cannot make its own target local.
        let schema = json!({
            "$schema": "http://json-schema.org/draft-07/schema#",
            "properties": {"a": {"$id": "http://example.com/a.json", "$ref": "http://example.com/a.json"}},
        });
        assert_remote(&schema, "http://example.com/a.json", "/properties/a/$ref");
    }

    #[test]
    fn ref_like_data_is_not_a_reference() {
        let schema = json!({
            "enum": [{"$ref": "http://example.com"}],
            "const": {"$ref": "http://example.com"},
            "default": {"$ref": "http://example.com"},
            "examples": [{"$ref": "http://example.com"}],
            "x-extension": {"$ref": "http://example.com"},
            "properties": {"$ref": {"type": "string"}},
        });
        assert_eq!(check(&schema), Ok(()));
    }

    #[test]
    fn refs_in_every_subschema_position_are_checked() {
        let remote = json!({"$ref": "https://example.com/x"});
        for (keyword, value) in [
            ("additionalProperties", remote.clone()),
            ("not", remote.clone()),
            ("then", remote.clone()),
            ("prefixItems", json!([{}, remote.clone()])),
            ("patternProperties", json!({"^a": remote.clone()})),
            ("dependentSchemas", json!({"a": remote.clone()})),
            ("definitions", json!({"a": remote.clone()})),
        ] {
            let schema = json!({ keyword: value });
            let err = check(&schema).expect_err(keyword);
            assert!(
                err.message.contains(&format!("at /{keyword}/")),
                "{}",
                err.message
            );
        }
    }

    #[test]
    fn pointer_tokens_are_escaped_in_messages() {
        let schema = json!({"properties": {"a/b~c": {"$ref": "x.json"}}});
        assert_remote(&schema, "x.json", "/properties/a~1b~0c/$ref");
    }
}
