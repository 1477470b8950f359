//! Schema defaults (config.md §4.1, orchestrator.md §2.5), applied before validation.

use serde_json::Value;

/// Inserts a deep copy of `default` for every `properties` entry missing from `instance`, then
/// descends into each property value (present or just inserted) whose subschema has
/// `properties`.
///
/// Descending into inserted defaults too makes the operation idempotent: a second call finds
/// nothing left to add. Only `properties` is followed: `$ref`, `allOf`, `anyOf`, `oneOf`,
/// `if`/`then`/`else`, `items` and `additionalProperties` are not, because a default behind
/// them would depend on which branch applies. A non-object instance is left alone.
pub fn apply_defaults(schema: &Value, instance: &mut Value) {
    let Some(properties) = schema.get("properties").and_then(Value::as_object) else {
        return;
    };
    let Some(object) = instance.as_object_mut() else {
        return;
    };
    for (name, subschema) in properties {
        if !object.contains_key(name) {
            if let Some(default) = subschema.get("default") {
                object.insert(name.clone(), default.clone());
            }
        }
        if let Some(value) = object.get_mut(name) {
            apply_defaults(subschema, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::CompiledSchema;
    use proptest::prelude::*;
    use serde_json::{json, Map};

    fn with_defaults(schema: &Value, mut instance: Value) -> Value {
        apply_defaults(schema, &mut instance);
        instance
    }

    #[test]
    fn missing_properties_get_their_default() {
        let schema = json!({"properties": {
            "region": {"type": "string", "default": "us-east-1"},
            "style": {"default": {"tone": ["concise"]}},
            "plain": {"type": "string"},
        }});
        assert_eq!(
            with_defaults(&schema, json!({})),
            json!({"region": "us-east-1", "style": {"tone": ["concise"]}})
        );
    }

    #[test]
    fn present_values_are_untouched() {
        let schema =
            json!({"properties": {"a": {"default": 1}, "b": {"default": 2}, "c": {"default": 3}}});
        assert_eq!(
            with_defaults(&schema, json!({"a": null, "b": "x"})),
            json!({"a": null, "b": "x", "c": 3})
        );
    }

    #[test]
    fn nested_objects_are_filled() {
        let schema = json!({"properties": {"outer": {
            "type": "object",
            "properties": {
                "inner": {"properties": {"leaf": {"default": true}}},
                "n": {"default": 5},
            },
        }}});
        assert_eq!(
            with_defaults(&schema, json!({"outer": {"inner": {}}})),
            json!({"outer": {"inner": {"leaf": true}, "n": 5}})
        );
        // An absent parent without a default stays absent.
        assert_eq!(with_defaults(&schema, json!({})), json!({}));
        // A present parent that is not an object is not touched.
        assert_eq!(
            with_defaults(&schema, json!({"outer": "text"})),
            json!({"outer": "text"})
        );
    }

    #[test]
    fn inserted_defaults_are_filled_too() {
        let schema =
            json!({"properties": {"opts": {"default": {}, "properties": {"x": {"default": 1}}}}});
        assert_eq!(with_defaults(&schema, json!({})), json!({"opts": {"x": 1}}));
    }

    #[test]
    fn refs_and_combinators_are_not_followed() {
        let schema = json!({
            "$defs": {"d": {"properties": {"x": {"default": 1}}}},
            "properties": {
                "via_ref": {"$ref": "#/$defs/d"},
                "via_all_of": {"allOf": [{"properties": {"x": {"default": 1}}}]},
                "via_any_of": {"anyOf": [{"properties": {"x": {"default": 1}}}]},
                "via_one_of": {"oneOf": [{"properties": {"x": {"default": 1}}}]},
                "via_if": {"if": true, "then": {"properties": {"x": {"default": 1}}}},
                "via_items": {"items": {"properties": {"x": {"default": 1}}}},
            },
            "allOf": [{"properties": {"top": {"default": 1}}}],
        });
        let instance = json!({
            "via_ref": {}, "via_all_of": {}, "via_any_of": {}, "via_one_of": {}, "via_if": {}, "via_items": [{}],
        });
        assert_eq!(with_defaults(&schema, instance.clone()), instance);
    }

    #[test]
    fn non_object_instances_and_odd_schemas_are_left_alone() {
        let schema = json!({"properties": {"a": {"default": 1}}});
        for instance in [json!(null), json!([]), json!("s"), json!(3)] {
            assert_eq!(with_defaults(&schema, instance.clone()), instance);
        }
        for schema in [
            json!(true),
            json!({"properties": []}),
            json!({"properties": {"a": true}}),
        ] {
            assert_eq!(with_defaults(&schema, json!({})), json!({}));
        }
    }

    #[test]
    fn defaults_are_deep_copies() {
        let schema = json!({"properties": {"list": {"default": [{"k": 1}]}}});
        let mut first = with_defaults(&schema, json!({}));
        first["list"][0]["k"] = json!(2);
        let second = with_defaults(&schema, json!({}));
        assert_eq!(second, json!({"list": [{"k": 1}]}));
        assert_eq!(schema["properties"]["list"]["default"], json!([{"k": 1}]));
    }

    // ---- property tests ---------------------------------------------------------------------

    const NAMES: [&str; 4] = ["a", "b", "c", "d"];

    /// Object schemas whose every `default` is valid against its own subschema, with optional
    /// `required` and `additionalProperties: false`.
    fn object_schema() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(json!({"type": "string"})),
            Just(json!({"type": "string", "default": "dflt"})),
            Just(json!({"type": "integer", "minimum": 0})),
            Just(json!({"type": "integer", "minimum": 0, "default": 7})),
            Just(json!({"type": "boolean", "default": false})),
            Just(json!({"enum": ["x", "y"], "default": "y"})),
            Just(json!({"type": "array", "items": {"type": "integer"}, "default": [1, 2]})),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            (
                prop::collection::vec(prop::option::of(inner), NAMES.len()),
                prop::collection::vec(any::<bool>(), NAMES.len()),
                any::<bool>(),
                any::<bool>(),
            )
                .prop_map(|(props, required, closed, has_default)| {
                    let mut properties = Map::new();
                    let mut required_names = Vec::new();
                    for ((name, prop), req) in NAMES.iter().zip(props).zip(required) {
                        if let Some(prop) = prop {
                            properties.insert((*name).to_string(), prop);
                            if req {
                                required_names.push(json!(name));
                            }
                        }
                    }
                    let mut schema = json!({"type": "object", "properties": properties});
                    if closed {
                        schema["additionalProperties"] = json!(false);
                    }
                    if required_names.is_empty() {
                        // `{}` is valid only when nothing is required.
                        if has_default {
                            schema["default"] = json!({});
                        }
                    } else {
                        schema["required"] = Value::Array(required_names);
                    }
                    schema
                })
        })
    }

    fn instance() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(json!(null)),
            any::<bool>().prop_map(Value::from),
            (0i64..10).prop_map(Value::from),
            prop::sample::select(vec!["x", "y", "dflt", ""]).prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 32, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
                prop::collection::btree_map(prop::sample::select(NAMES.to_vec()), inner, 0..4)
                    .prop_map(|m| {
                        Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
                    }),
            ]
        })
    }

    proptest! {
        #[test]
        fn applying_defaults_twice_equals_once(schema in object_schema(), instance in instance()) {
            let once = with_defaults(&schema, instance);
            let twice = with_defaults(&schema, once.clone());
            prop_assert_eq!(once, twice);
        }

        #[test]
        fn valid_values_stay_valid(schema in object_schema(), choices in prop::collection::vec(any::<bool>(), 64)) {
            let compiled = CompiledSchema::compile(&schema).unwrap();
            let instance = valid_instance(&schema, &mut choices.into_iter().cycle());
            prop_assert!(compiled.is_valid(&instance), "generator bug: {} vs {}", instance, schema);
            let filled = with_defaults(&schema, instance);
            prop_assert!(compiled.is_valid(&filled), "{} became invalid: {:?}", filled, compiled.violations(&filled));
        }

        #[test]
        fn defaults_never_remove_or_change_present_values(schema in object_schema(), instance in instance()) {
            let filled = with_defaults(&schema, instance.clone());
            if let (Some(before), Some(after)) = (instance.as_object(), filled.as_object()) {
                for (key, value) in before {
                    // Present values may only gain nested defaults, never lose anything.
                    let after_value = &after[key];
                    prop_assert!(contains(after_value, value), "{key}: {value} -> {after_value}");
                }
            } else {
                prop_assert_eq!(filled, instance);
            }
        }
    }

    /// A value valid against a schema of `object_schema()`: required properties always, optional
    /// ones when `choices` says so (and then not always the default).
    fn valid_instance(schema: &Value, choices: &mut impl Iterator<Item = bool>) -> Value {
        if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
            let required = schema
                .get("required")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let mut object = Map::new();
            for (name, sub) in properties {
                if required.contains(&json!(name)) || choices.next().unwrap_or(false) {
                    object.insert(name.clone(), valid_instance(sub, choices));
                }
            }
            return Value::Object(object);
        }
        match (
            schema.get("type").and_then(Value::as_str),
            schema.get("enum"),
        ) {
            (Some("string"), _) => json!("s"),
            (Some("integer"), _) => json!(3),
            (Some("boolean"), _) => json!(true),
            (Some("array"), _) => json!([5]),
            (_, Some(_)) => json!("x"),
            _ => json!(null),
        }
    }

    /// Whether `big` holds everything of `small` (object keys may be added, nothing else).
    fn contains(big: &Value, small: &Value) -> bool {
        match (big, small) {
            (Value::Object(b), Value::Object(s)) => s
                .iter()
                .all(|(k, v)| b.get(k).is_some_and(|bv| contains(bv, v))),
            _ => big == small,
        }
    }
}
