//! JSON Schema dialect selection (config.md §4.1): 2020-12 unless `$schema` names an older draft.

use std::fmt;

use serde_json::Value;

use super::SchemaError;

/// The JSON Schema drafts ktsu accepts. Anything else in `$schema` is `schema_invalid`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Dialect {
    /// `http://json-schema.org/draft-04/schema#`
    Draft4,
    /// `http://json-schema.org/draft-06/schema#`
    Draft6,
    /// `http://json-schema.org/draft-07/schema#`
    Draft7,
    /// `https://json-schema.org/draft/2019-09/schema`
    Draft201909,
    /// `https://json-schema.org/draft/2020-12/schema`: the dialect of a schema without `$schema`.
    #[default]
    Draft202012,
}

impl Dialect {
    /// Every supported dialect, oldest first.
    pub const ALL: [Dialect; 5] = [
        Dialect::Draft4,
        Dialect::Draft6,
        Dialect::Draft7,
        Dialect::Draft201909,
        Dialect::Draft202012,
    ];

    /// The dialect a `$schema` URI names. Accepts `http` and `https`, with or without the
    /// trailing empty fragment `#`, because all four spellings are common in the wild.
    /// `None` for anything else, including the version-less `https://json-schema.org/schema`
    /// (it names no fixed draft, and the spec allows only the five drafts by name).
    #[must_use]
    pub fn from_schema_uri(uri: &str) -> Option<Dialect> {
        let uri = uri.strip_suffix('#').unwrap_or(uri);
        let rest = uri
            .strip_prefix("https://")
            .or_else(|| uri.strip_prefix("http://"))?;
        match rest {
            "json-schema.org/draft-04/schema" => Some(Dialect::Draft4),
            "json-schema.org/draft-06/schema" => Some(Dialect::Draft6),
            "json-schema.org/draft-07/schema" => Some(Dialect::Draft7),
            "json-schema.org/draft/2019-09/schema" => Some(Dialect::Draft201909),
            "json-schema.org/draft/2020-12/schema" => Some(Dialect::Draft202012),
            _ => None,
        }
    }

    /// The dialect of a schema document: from its root `$schema`, 2020-12 when absent.
    ///
    /// # Errors
    /// An unsupported or non-string `$schema`.
    pub fn detect(schema: &Value) -> Result<Dialect, SchemaError> {
        let Some(declared) = schema.as_object().and_then(|o| o.get("$schema")) else {
            return Ok(Dialect::default());
        };
        declared
            .as_str()
            .and_then(Dialect::from_schema_uri)
            .ok_or_else(|| {
                SchemaError::at(
                    format!(
                    "unsupported $schema {declared}: use draft-04, draft-06, draft-07, 2019-09 or 2020-12 \
                     (for example \"{}\"), or omit $schema for 2020-12",
                    Dialect::Draft202012.meta_schema_uri()
                ),
                    "/$schema",
                )
            })
    }

    /// The canonical meta-schema URI of this dialect.
    #[must_use]
    pub const fn meta_schema_uri(self) -> &'static str {
        match self {
            Dialect::Draft4 => "http://json-schema.org/draft-04/schema#",
            Dialect::Draft6 => "http://json-schema.org/draft-06/schema#",
            Dialect::Draft7 => "http://json-schema.org/draft-07/schema#",
            Dialect::Draft201909 => "https://json-schema.org/draft/2019-09/schema",
            Dialect::Draft202012 => "https://json-schema.org/draft/2020-12/schema",
        }
    }

    /// A short human name: `draft-04` … `draft-07`, `2019-09`, `2020-12`.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Dialect::Draft4 => "draft-04",
            Dialect::Draft6 => "draft-06",
            Dialect::Draft7 => "draft-07",
            Dialect::Draft201909 => "2019-09",
            Dialect::Draft202012 => "2020-12",
        }
    }

    /// Drafts 4–7 resolve `$ref` with its siblings ignored and use `definitions`; 2019-09 and
    /// later treat `$ref` as an ordinary keyword.
    pub(super) const fn is_legacy(self) -> bool {
        matches!(self, Dialect::Draft4 | Dialect::Draft6 | Dialect::Draft7)
    }

    /// The keyword that sets a base URI: `id` in draft-04, `$id` afterwards.
    pub(super) const fn id_keyword(self) -> &'static str {
        match self {
            Dialect::Draft4 => "id",
            _ => "$id",
        }
    }

    pub(super) const fn draft(self) -> jsonschema::Draft {
        match self {
            Dialect::Draft4 => jsonschema::Draft::Draft4,
            Dialect::Draft6 => jsonschema::Draft::Draft6,
            Dialect::Draft7 => jsonschema::Draft::Draft7,
            Dialect::Draft201909 => jsonschema::Draft::Draft201909,
            Dialect::Draft202012 => jsonschema::Draft::Draft202012,
        }
    }
}

impl fmt::Display for Dialect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_usual_spelling_names_its_draft() {
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
                    assert_eq!(Dialect::from_schema_uri(&uri), Some(dialect), "{uri}");
                    assert_eq!(Dialect::detect(&json!({"$schema": uri})), Ok(dialect));
                }
            }
        }
    }

    #[test]
    fn canonical_uris_round_trip() {
        for dialect in Dialect::ALL {
            assert_eq!(
                Dialect::from_schema_uri(dialect.meta_schema_uri()),
                Some(dialect)
            );
        }
    }

    #[test]
    fn absent_schema_means_2020_12() {
        assert_eq!(
            Dialect::detect(&json!({"type": "object"})),
            Ok(Dialect::Draft202012)
        );
        assert_eq!(Dialect::detect(&json!(true)), Ok(Dialect::Draft202012));
    }

    #[test]
    fn other_uris_are_rejected() {
        for uri in [
            json!("http://json-schema.org/draft-03/schema#"),
            json!("https://json-schema.org/schema"),
            json!("https://example.com/my-meta-schema"),
            json!("json-schema.org/draft-07/schema#"),
            json!("ftp://json-schema.org/draft-07/schema#"),
            json!("https://json-schema.org/draft-07/schema##"),
            json!(""),
            json!(7),
            json!(null),
        ] {
            let err = Dialect::detect(&json!({"$schema": uri})).expect_err("must be rejected");
            assert!(
                err.message.starts_with("unsupported $schema"),
                "{}",
                err.message
            );
        }
    }

    #[test]
    fn names() {
        assert_eq!(Dialect::Draft4.to_string(), "draft-04");
        assert_eq!(Dialect::Draft202012.to_string(), "2020-12");
    }
}
