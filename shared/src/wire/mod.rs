//! Payloads exchanged between the services, with the JSON field names of the spec.
//!
//! | module | exchange | spec |
//! |---|---|---|
//! | [`invoke`] | orchestrator → runtime: `POST /invoke` (+ 202 body), `POST /cancel` | runtime-gateway.md §2.2–§2.5, orchestrator.md §5.2.2, §5.2.5 |
//! | [`callback`] | runtime → orchestrator: step result callback and its answer | runtime-gateway.md §2.6, §3.13, orchestrator.md §2.11, §6.1 |
//! | [`heartbeat`] | runtime → orchestrator: registration and heartbeats | runtime-gateway.md §2.7, orchestrator.md §2.12, §2.13 |
//! | [`gateway`] | runtime → gateway: `POST /invoke`, its answer and error body | runtime-gateway.md §6.2–§6.4 |
//! | [`transcript`] | gateway messages ⇄ reference checkpoint transcript | runtime-gateway.md §3.2 |
//!
//! Conventions: unknown fields are ignored on input; fields the receiver must tolerate missing
//! have `#[serde(default)]`; optional fields are omitted when absent or empty where the spec
//! says so; numbers of `f64` fields with an integral value are written without `.0` (`120`,
//! not `120.0`), as in the spec's examples.

pub mod callback;
pub mod gateway;
pub mod heartbeat;
pub mod invoke;
pub mod transcript;

pub use callback::{CallbackAnswer, CallbackPayload, CallbackStatus, Metrics, PendingApproval};
pub use gateway::{
    GatewayErrorBody, GatewayRequest, GatewayResponse, Message, Role, ToolCall, ToolDef,
};
pub use heartbeat::{
    ActiveEntry, CancelEntry, Heartbeat, HeartbeatAnswer, RegisterAnswer, RegisterRequest,
};
pub use invoke::{CancelAnswer, CancelRequest, EntryState, InvokeAccepted, InvokeRequest};

use serde::de::IntoDeserializer;
use serde::{Deserialize, Deserializer, Serializer};

/// `null` is read like an absent field (the reference sends `null` for empty lists).
fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// `null` and `""` are read like an absent enum value (reference senders write `""` for unset).
fn empty_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    match Option::<String>::deserialize(deserializer)? {
        None => Ok(T::default()),
        Some(text) if text.is_empty() => Ok(T::default()),
        Some(text) => T::deserialize(text.into_deserializer()),
    }
}

/// Integral values as integers (`120`), others as floats (`0.5`).
fn compact_f64<S: Serializer>(value: &f64, serializer: S) -> Result<S::Ok, S::Error> {
    // 2^53: beyond it not every integer is an f64, and the cast below stays exact below it.
    const EXACT: f64 = 9_007_199_254_740_992.0;
    if value.fract() == 0.0 && value.abs() < EXACT {
        if *value >= 0.0 {
            serializer.serialize_u64(*value as u64)
        } else {
            serializer.serialize_i64(*value as i64)
        }
    } else {
        serializer.serialize_f64(*value)
    }
}

fn compact_opt_f64<S: Serializer>(value: &Option<f64>, serializer: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(value) => compact_f64(value, serializer),
        None => serializer.serialize_none(),
    }
}

fn is_false(value: &bool) -> bool {
    !*value
}

fn is_zero_u64(value: &u64) -> bool {
    *value == 0
}

fn is_zero_u32(value: &u32) -> bool {
    *value == 0
}

fn is_zero_i64(value: &i64) -> bool {
    *value == 0
}

fn is_zero_f64(value: &f64) -> bool {
    *value == 0.0
}

/// Test helper: deserialise `text` as `T`, serialise it back, compare both as JSON values.
#[cfg(test)]
fn assert_round_trip<T>(text: &str) -> T
where
    T: serde::de::DeserializeOwned + serde::Serialize,
{
    let expected: serde_json::Value = serde_json::from_str(text).unwrap();
    let typed: T = serde_json::from_str(text).unwrap();
    let again = serde_json::to_value(&typed).unwrap();
    assert_eq!(again, expected, "round trip changed the JSON");
    typed
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Serialize;
    use serde_json::json;

    #[derive(Serialize)]
    struct Numbers {
        #[serde(serialize_with = "compact_f64")]
        a: f64,
        #[serde(serialize_with = "compact_opt_f64")]
        b: Option<f64>,
    }

    #[test]
    fn integral_floats_are_written_as_integers() {
        let cases = [
            (120.0, json!(120)),
            (0.0, json!(0)),
            (-3.0, json!(-3)),
            (0.5, json!(0.5)),
            (1e300, json!(1e300)),
        ];
        for (input, expected) in cases {
            let value = serde_json::to_value(Numbers {
                a: input,
                b: Some(input),
            })
            .unwrap();
            assert_eq!(value, json!({"a": expected, "b": expected}), "{input}");
        }
        let value = serde_json::to_value(Numbers { a: 1.0, b: None }).unwrap();
        assert_eq!(value, json!({"a": 1, "b": null}));
    }
}
