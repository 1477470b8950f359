//! Compiled output schemas shared by every leg that has the same schema (all legs of one agent,
//! every item of a fan-out): compiled once, held while any leg holds it.

use ktsu_shared::schema::{CompiledSchema, SchemaError};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, PoisonError, Weak};

/// Entries beyond this trigger a sweep of schemas no leg holds any more.
const SWEEP_AT: usize = 1024;

static CACHE: LazyLock<Mutex<HashMap<String, Weak<CompiledSchema>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// The compiled form of `schema`, shared with the legs that already use the same schema.
pub fn compile(schema: &Value) -> Result<Arc<CompiledSchema>, SchemaError> {
    let key = schema.to_string();
    if let Some(shared) = lock().get(&key).and_then(Weak::upgrade) {
        return Ok(shared);
    }
    let compiled = Arc::new(CompiledSchema::compile(schema)?);
    let mut cache = lock();
    if cache.len() >= SWEEP_AT {
        cache.retain(|_, held| held.strong_count() > 0);
    }
    cache.insert(key, Arc::downgrade(&compiled));
    Ok(compiled)
}

fn lock() -> std::sync::MutexGuard<'static, HashMap<String, Weak<CompiledSchema>>> {
    CACHE.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn equal_schemas_share_one_compilation() {
        let schema = json!({"type": "object", "required": ["cache_probe_field"]});
        let a = compile(&schema).unwrap();
        let b = compile(&schema).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        let other = compile(&json!({"type": "object", "required": ["other_probe"]})).unwrap();
        assert!(!Arc::ptr_eq(&a, &other));
        drop((a, b));
        // Nobody holds it: a new compilation.
        let c = compile(&schema).unwrap();
        assert!(c.violations(&json!({})).len() == 1);
        assert!(compile(&json!({"type": 5})).is_err());
    }
}
