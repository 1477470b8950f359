//! Runtime → orchestrator: registration (`POST /runtimes/register`) and heartbeats
//! (`POST /heartbeat`), with the orchestrator's answers (runtime-gateway.md §2.7,
//! orchestrator.md §2.12, §2.13).

use super::invoke::{CancelRequest, EntryState};
use super::null_as_default;
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};

/// The body of `POST /runtimes/register`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterRequest {
    pub runtime_id: String,
    /// The advertised URL: absolute http(s).
    pub url: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<u32>,
    /// Informational.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_queue: Option<u32>,
    /// Informational.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Timestamp>,
}

/// 200 answer of `POST /runtimes/register`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterAnswer {
    /// `registered`.
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub heartbeat_interval_s: u64,
    #[serde(default)]
    pub heartbeat_timeout_s: u64,
}

impl RegisterAnswer {
    pub fn registered(heartbeat_interval_s: u64, heartbeat_timeout_s: u64) -> Self {
        RegisterAnswer {
            status: "registered".to_owned(),
            heartbeat_interval_s,
            heartbeat_timeout_s,
        }
    }
}

/// The body of `POST /heartbeat`. Only `runtime_id` is required on input; `draining` and
/// `active` are always written (`active` is `[]` when idle, never null).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    pub runtime_id: String,
    /// When present, registers or updates the runtime.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub version: String,
    /// A draining runtime gets no new steps.
    #[serde(default)]
    pub draining: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queued: Option<u32>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub active: Vec<ActiveEntry>,
}

/// One invocation the runtime holds (queued, running or delivering).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActiveEntry {
    pub run_id: String,
    /// The step address (`<step>.<index>` for a fan-out item).
    pub step_id: String,
    /// Absent = the step's current attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    /// Informational.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<EntryState>,
    /// Informational: when the entry entered its state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<Timestamp>,
}

/// 200 answer of `POST /heartbeat`. `cancel` is always written; absent reads as `[]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatAnswer {
    /// `ok`.
    #[serde(default)]
    pub status: String,
    /// Active entries the orchestrator no longer expects: cancel each as by `POST /cancel`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub cancel: Vec<CancelEntry>,
}

impl HeartbeatAnswer {
    pub fn ok(cancel: Vec<CancelEntry>) -> Self {
        HeartbeatAnswer {
            status: "ok".to_owned(),
            cancel,
        }
    }
}

/// An attempt the runtime must cancel.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CancelEntry {
    pub run_id: String,
    pub step_id: String,
    pub attempt: u32,
}

impl CancelEntry {
    /// The equivalent `POST /cancel` body, with `reason`.
    pub fn to_cancel_request(&self, reason: &str) -> CancelRequest {
        CancelRequest {
            run_id: self.run_id.clone(),
            step_id: self.step_id.clone(),
            attempt: self.attempt,
            reason: Some(reason.to_owned()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::assert_round_trip;
    use super::*;
    use serde_json::json;

    #[test]
    fn runtime_spec_heartbeat_round_trips() {
        // runtime-gateway.md §2.7.
        let beat: Heartbeat = assert_round_trip(
            r#"{"runtime_id":"rt-6c1f0a9e2b3d","url":"http://10.0.0.7:5051","version":"0.1.0","draining":false,
 "max_concurrency":64,"running":1,"queued":0,
 "active":[{"run_id":"run_3f9a1c2b4d5e6f70","step_id":"triage","attempt":1,
            "state":"running","since":"2026-01-05T10:11:12.345000Z"}]}"#,
        );
        assert_eq!(beat.active[0].state, Some(EntryState::Running));
        assert_eq!(
            beat.active[0].since.unwrap().to_string(),
            "2026-01-05T10:11:12.345000Z"
        );
    }

    #[test]
    fn orchestrator_spec_heartbeat_round_trips() {
        // orchestrator.md §2.12, including an entry without attempt, state and since.
        let beat: Heartbeat = assert_round_trip(
            r#"{"runtime_id":"rt-9c41e2","url":"http://10.0.0.7:5051","version":"0.1.0","draining":false,
 "max_concurrency":64,"running":1,"queued":0,
 "active":[{"run_id":"run_3f9a0c1d22b7e6a4","step_id":"classify","attempt":1,"state":"running","since":"2026-04-28T10:15:02.101500Z"},
           {"run_id":"run_3f9a0c1d22b7e6a4","step_id":"analyze.3"}]}"#,
        );
        assert_eq!(beat.active[1].attempt, None);
    }

    #[test]
    fn minimal_heartbeat() {
        let beat: Heartbeat =
            serde_json::from_value(json!({"runtime_id": "rt-1", "active": null})).unwrap();
        assert!(beat.active.is_empty() && !beat.draining && beat.url.is_none());
        assert_eq!(
            serde_json::to_value(&beat).unwrap(),
            json!({"runtime_id": "rt-1", "draining": false, "active": []})
        );
        assert!(serde_json::from_value::<Heartbeat>(json!({"active": []})).is_err());
        assert!(serde_json::from_value::<Heartbeat>(json!({
            "runtime_id": "rt-1",
            "active": [{"run_id": "r", "step_id": "s", "since": "not a time"}]
        }))
        .is_err());
    }

    #[test]
    fn heartbeat_answer() {
        let answer: HeartbeatAnswer = assert_round_trip(
            r#"{"status":"ok","cancel":[{"run_id":"run_1a2b3c4d5e6f7081","step_id":"draft","attempt":1}]}"#,
        );
        let cancel = answer.cancel[0].to_cancel_request("not expected by the orchestrator");
        assert_eq!(
            cancel.effective_reason(),
            "not expected by the orchestrator"
        );
        assert_eq!((cancel.step_id.as_str(), cancel.attempt), ("draft", 1));
        let bare: HeartbeatAnswer = serde_json::from_str(r#"{"status":"ok"}"#).unwrap();
        assert!(bare.cancel.is_empty());
        assert_eq!(
            serde_json::to_value(HeartbeatAnswer::ok(vec![])).unwrap(),
            json!({"status": "ok", "cancel": []})
        );
    }

    #[test]
    fn registration() {
        // orchestrator.md §2.13.
        let register: RegisterRequest = assert_round_trip(
            r#"{"runtime_id":"rt-9c41e2","url":"http://10.0.0.7:5051","version":"0.1.0","max_concurrency":64,"max_queue":256,"started_at":"2026-04-28T10:15:00.150000Z"}"#,
        );
        assert_eq!(register.max_queue, Some(256));
        let answer: RegisterAnswer = assert_round_trip(
            r#"{"status":"registered","heartbeat_interval_s":5,"heartbeat_timeout_s":30}"#,
        );
        assert_eq!(answer, RegisterAnswer::registered(5, 30));
        assert!(serde_json::from_value::<RegisterRequest>(json!({"runtime_id": "x"})).is_err());
    }
}
