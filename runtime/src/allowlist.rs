//! The tool-name matcher shared by allowlists and approval rules (runtime-gateway.md §3.4 item 4),
//! and the model-facing tool name (item 5).

/// Longest model-facing tool name.
const MAX_MODEL_NAME_CHARS: usize = 64;

/// `*` matches every name; a pattern ending in one `*` matches names starting with the text
/// before it; any other pattern matches only the identical name. A `*` anywhere else makes the
/// pattern match nothing (validation rejects such patterns upstream).
pub fn matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) if !prefix.contains('*') => name.starts_with(prefix),
        Some(_) => false,
        None => !pattern.contains('*') && pattern == name,
    }
}

/// Whether an allowlist admits `name`; `None` (absent or null) means `["*"]`.
pub fn allows(allowlist: Option<&[String]>, name: &str) -> bool {
    allowlist.is_none_or(|patterns| patterns.iter().any(|p| matches(p, name)))
}

/// The MCP name with every character outside `[A-Za-z0-9_-]` replaced by `_`, cut to 64
/// characters.
pub fn model_facing_name(mcp_name: &str) -> String {
    mcp_name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(MAX_MODEL_NAME_CHARS)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matcher() {
        assert!(matches("*", "anything"));
        assert!(matches("*", ""));
        assert!(matches("crm-read-*", "crm-read-accounts"));
        assert!(matches("crm-read-*", "crm-read-"));
        assert!(!matches("crm-read-*", "crm-write"));
        assert!(matches("kv_get", "kv_get"));
        assert!(!matches("kv_get", "kv_get2"));
        assert!(!matches("kv*get", "kv_get"));
        assert!(!matches("kv*get", "kv*get"));
        assert!(!matches("kv**", "kv*x"));
        assert!(!matches("*kv", "*kv"));
    }

    #[test]
    fn allowlists() {
        assert!(allows(None, "x"));
        assert!(!allows(Some(&[]), "x"));
        let list = ["read_*".to_owned(), "search".to_owned()];
        assert!(allows(Some(&list), "read_file"));
        assert!(allows(Some(&list), "search"));
        assert!(!allows(Some(&list), "delete"));
    }

    #[test]
    fn model_facing_names() {
        assert_eq!(model_facing_name("kv.get/value"), "kv_get_value");
        assert_eq!(model_facing_name("ok-Name_9"), "ok-Name_9");
        assert_eq!(model_facing_name("é"), "_");
        assert_eq!(model_facing_name(&"a".repeat(100)).len(), 64);
        assert_eq!(model_facing_name(&"ü".repeat(100)), "_".repeat(64));
    }
}
