//! One runtime with its fake gateway and callback sink.

use crate::support::*;
use ktsu_runtime::Settings;
use serde_json::{json, Value};
use std::time::Duration;

/// T1–T9 exactly as the spec writes them (runtime-gateway.md §3.15).
pub const T1: &str = "Your final answer must be a single JSON object that conforms to the following JSON schema. Reply with the JSON object only.";
pub const T2: &str = "You have reached the maximum number of tool calls for this task. Tools are no longer available. Reply now with your final answer as a single JSON object that conforms to the output schema.";
pub const T4_HEAD: &str = "Your previous reply did not conform to the output schema. Fix these problems and reply with only the corrected JSON object:";
pub const T5: &str = "Your previous reply was cut off at the output token limit. Reply with a shorter, complete JSON object that conforms to the output schema.";
pub const T7: &str = "Tool calls are no longer available. Reply with your final JSON answer.";
pub const T8: &str =
    "The human reviewer rejected this tool call. Do not retry it; continue without it.";
pub const T9: &str = "Reply with the complete JSON object again, revised if needed, conforming to the output schema. Reply with the JSON object only.";

pub fn t3(detail: &str) -> String {
    format!("Your previous reply was not valid JSON ({detail}). Reply with only a JSON object that conforms to the output schema, with no other text.")
}

pub fn t6(name: &str, available: &str) -> String {
    format!("Tool \"{name}\" is not available. Available tools: {available}.")
}

pub const WAIT: Duration = Duration::from_secs(20);

pub struct Harness {
    pub gateway: FakeGateway,
    pub sink: CallbackSink,
    pub rt: TestRuntime,
}

impl Harness {
    pub async fn start() -> Harness {
        Self::with(|_| {}).await
    }

    pub async fn with(tweak: impl FnOnce(&mut Settings)) -> Harness {
        let gateway = FakeGateway::start().await;
        let sink = CallbackSink::start().await;
        let mut settings = test_settings(&gateway.url());
        tweak(&mut settings);
        let rt = spawn_runtime(settings).await;
        Harness { gateway, sink, rt }
    }

    /// A fresh invocation body for a new run.
    pub fn body(&self) -> Value {
        let run = run_id();
        invoke_body(&run, &self.sink.callback_url(&run, "step", 1))
    }

    /// Invokes and waits for the callback.
    pub async fn run(&mut self, body: &Value) -> Value {
        self.rt.invoke(body).await;
        self.sink.next(WAIT).await.body
    }
}

/// An output schema with a required string `answer`.
pub fn answer_schema() -> Value {
    json!({"type": "object", "required": ["answer"], "properties": {"answer": {"type": "string"}}})
}

/// The messages of the gateway request `n` as (role, content) pairs.
pub fn roles(request: &Value) -> Vec<(String, String)> {
    request["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["role"].as_str().unwrap().to_owned(),
                m["content"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}
