//! Structured records about one call (runtime-gateway.md §11): every line carries `event` and
//! `call_id`, plus `run_id`, `step_id` and `attempt` (`metadata.attempt`) when the request has
//! them. Fields that a record does not have are left out rather than logged as `null`.
//!
//! Use [`call_event!`](crate::call_event): it checks the level first, so a filtered-out record
//! costs one comparison.

use log::kv::{self, Key, Source, Value, VisitSource};
use log::Level;
use std::fmt;

/// What every record about one call carries.
#[derive(Debug, Clone, Default)]
pub struct CallLog {
    pub call_id: String,
    pub run_id: Option<String>,
    pub step_id: Option<String>,
    pub attempt: Option<u32>,
}

impl CallLog {
    pub fn new(call_id: String) -> Self {
        CallLog {
            call_id,
            ..CallLog::default()
        }
    }

    /// Writes one record; prefer [`call_event!`](crate::call_event).
    pub fn emit(
        &self,
        level: Level,
        target: &'static str,
        event: &str,
        fields: &[(&str, Value<'_>)],
        message: fmt::Arguments<'_>,
    ) {
        let source = Fields {
            call: self,
            event,
            fields,
        };
        log::logger().log(
            &log::Record::builder()
                .args(message)
                .level(level)
                .target(target)
                .module_path_static(Some(target))
                .key_values(&source)
                .build(),
        );
    }
}

struct Fields<'a> {
    call: &'a CallLog,
    event: &'a str,
    fields: &'a [(&'a str, Value<'a>)],
}

impl Source for Fields<'_> {
    fn visit<'kvs>(&'kvs self, visitor: &mut dyn VisitSource<'kvs>) -> Result<(), kv::Error> {
        visitor.visit_pair(Key::from_str("event"), Value::from(self.event))?;
        visitor.visit_pair(
            Key::from_str("call_id"),
            Value::from(self.call.call_id.as_str()),
        )?;
        if let Some(run_id) = &self.call.run_id {
            visitor.visit_pair(Key::from_str("run_id"), Value::from(run_id.as_str()))?;
        }
        if let Some(step_id) = &self.call.step_id {
            visitor.visit_pair(Key::from_str("step_id"), Value::from(step_id.as_str()))?;
        }
        if let Some(attempt) = self.call.attempt {
            visitor.visit_pair(Key::from_str("attempt"), Value::from(attempt))?;
        }
        for (key, value) in self.fields {
            visitor.visit_pair(Key::from_str(key), value.clone())?;
        }
        Ok(())
    }
}

/// `call_event!(call_log, Level::Warn, "provider.retry", ["model" => m, "delay_ms" => d], "msg {}", x)`
#[macro_export]
macro_rules! call_event {
    ($call:expr, $level:expr, $event:expr, [$($key:literal => $value:expr),* $(,)?], $($message:tt)+) => {{
        let level: log::Level = $level;
        if log::log_enabled!(level) {
            $call.emit(
                level,
                module_path!(),
                $event,
                &[$(($key, log::kv::ToValue::to_value(&$value))),*],
                format_args!($($message)+),
            );
        }
    }};
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    struct Collect(BTreeMap<String, String>);

    impl<'kvs> VisitSource<'kvs> for Collect {
        fn visit_pair(&mut self, key: Key<'kvs>, value: Value<'kvs>) -> Result<(), kv::Error> {
            self.0.insert(key.to_string(), value.to_string());
            Ok(())
        }
    }

    #[test]
    fn context_fields_are_present_only_when_known() {
        let mut call = CallLog::new("gw_1".into());
        let extra = [("model", Value::from("p/m"))];
        let fields = Fields {
            call: &call,
            event: "provider.retry",
            fields: &extra,
        };
        let mut seen = Collect(BTreeMap::new());
        fields.visit(&mut seen).unwrap();
        assert_eq!(
            seen.0.keys().map(String::as_str).collect::<Vec<_>>(),
            vec!["call_id", "event", "model"]
        );
        call.run_id = Some("run_1".into());
        call.step_id = Some("s".into());
        call.attempt = Some(2);
        let fields = Fields {
            call: &call,
            event: "e",
            fields: &[],
        };
        let mut seen = Collect(BTreeMap::new());
        fields.visit(&mut seen).unwrap();
        assert_eq!(seen.0["attempt"], "2");
        assert_eq!(seen.0["run_id"], "run_1");
    }
}
