//! The secret values of accepted invocations join the process log scrubber once, so that debug
//! lines (tool arguments and results, prompts) never show them (runtime-gateway.md §0, §11).
//!
//! The scrubber is rebuilt only when a value is new: invocations of the same agents carry the
//! same few secrets again and again.

use std::collections::HashSet;
use std::sync::{LazyLock, Mutex, PoisonError};

static REGISTERED: LazyLock<Mutex<HashSet<String>>> = LazyLock::new(|| Mutex::new(HashSet::new()));

/// Adds the values not seen before to the log scrubber.
pub fn register_for_logs<'a>(values: impl IntoIterator<Item = &'a str>) {
    let mut known = REGISTERED.lock().unwrap_or_else(PoisonError::into_inner);
    let new: Vec<String> = values
        .into_iter()
        .filter(|value| !value.is_empty() && !known.contains(*value))
        .map(str::to_owned)
        .collect();
    if new.is_empty() {
        return;
    }
    ktsu_shared::logging::extend_scrubber(&new);
    known.extend(new);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_reach_the_log_scrubber() {
        register_for_logs(["rt-secret-for-logs-1", ""]);
        register_for_logs(["rt-secret-for-logs-1"]);
        let scrubber = ktsu_shared::logging::scrubber();
        assert_eq!(
            scrubber.scrub_str("x rt-secret-for-logs-1 y"),
            "x [REDACTED] y"
        );
    }
}
