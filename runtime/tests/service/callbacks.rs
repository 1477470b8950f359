//! Callback delivery (runtime-gateway.md §2.6): retries until a 2xx, final refusals, the same
//! `Idempotency-Key` on every retry, scrubbing, and an orchestrator restart mid-delivery.

use crate::harness::*;
use crate::support::*;
use serde_json::json;
use std::time::{Duration, Instant};

#[actix_rt::test]
async fn retried_with_the_same_idempotency_key_until_accepted() {
    let gateway = FakeGateway::start().await;
    let sink = CallbackSink::start().await;
    let rt = spawn_runtime(test_settings(&gateway.url())).await;
    // A recording proxy would hide the failed attempts; the sink counts them instead: its first
    // two answers are a 503 and a 500, both retried.
    sink.answer_with(&[503, 500]);
    let mut sink = sink;
    let run = run_id();
    gateway.text("{\"done\": true}");
    let started = Instant::now();
    rt.invoke(&invoke_body(&run, &sink.callback_url(&run, "step", 1)))
        .await;
    let callback = sink.next(WAIT).await;
    // Two retries: about 0.5 s and 1 s (±20 %).
    assert!(
        started.elapsed() >= Duration::from_millis(1100),
        "{:?}",
        started.elapsed()
    );
    let key = &callback.headers["idempotency-key"];
    assert!(key.starts_with("cb_") && key.len() == 19, "{key}");
    assert_eq!(callback.headers["content-type"], "application/json");
    assert!(callback
        .path
        .ends_with(&format!("/runs/{run}/steps/step/complete?attempt=1")));
    assert!(
        sink.try_next(Duration::from_millis(1500)).await.is_none(),
        "delivered once"
    );
}

#[actix_rt::test]
async fn final_refusals_are_not_retried() {
    let gateway = FakeGateway::start().await;
    let mut sink = CallbackSink::start().await;
    let rt = spawn_runtime(test_settings(&gateway.url())).await;
    sink.answer_with(&[404]);
    let run = run_id();
    gateway.text("{\"done\": true}");
    rt.invoke(&invoke_body(&run, &sink.callback_url(&run, "step", 1)))
        .await;
    assert!(sink.try_next(Duration::from_secs(3)).await.is_none());
    // The leg is gone from the registry (not retried, not stuck in delivering).
    let (_, _, health) = rt.get("/health").await;
    assert_eq!(health["running"], 0);
}

/// The orchestrator dies while the callback is pending (it has the request and has not answered)
/// and a new process comes back on the same port within the retry window: the new process gets
/// the result exactly once, under the same `Idempotency-Key`.
#[actix_rt::test]
async fn orchestrator_restart_within_the_retry_window() {
    let gateway = FakeGateway::start().await;
    let first = CallbackSink::start().await;
    let port = first.port;
    let rt = spawn_runtime(test_settings(&gateway.url())).await;
    first.delay(Duration::from_secs(30));
    let run = run_id();
    gateway.text("{\"survived\": true}");
    rt.invoke(&invoke_body(&run, &first.callback_url(&run, "step", 1)))
        .await;
    let started = Instant::now();
    while first.arrivals().is_empty() {
        assert!(
            started.elapsed() < WAIT,
            "the callback never reached the first process"
        );
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
    let pending = first.arrivals().remove(0);
    assert_eq!(pending.body["run_id"], run.as_str());
    // Killed with the callback in hand: its connection drops, nothing is answered.
    first.stop().await;
    // Down for a while: the retries meet a closed port.
    actix_rt::time::sleep(Duration::from_millis(1500)).await;
    let (_, _, health) = rt.get("/health").await;
    assert_eq!(
        health["status"], "ok",
        "the runtime stays healthy meanwhile"
    );
    let mut second = CallbackSink::start_on(port).await;
    let callback = second.next(WAIT).await;
    assert_eq!(callback.body["run_id"], run.as_str());
    assert_eq!(callback.body["status"], "ok");
    assert_eq!(callback.body["output"], json!({"survived": true}));
    assert_eq!(
        callback.headers["idempotency-key"], pending.headers["idempotency-key"],
        "a retry of the same callback"
    );
    assert!(
        second.try_next(Duration::from_secs(3)).await.is_none(),
        "exactly once"
    );
    assert_eq!(second.arrivals().len(), 1, "no further attempt reached it");
}

/// Secret values (auth values, secret params) never leave in a callback.
#[actix_rt::test]
async fn secrets_are_scrubbed_from_every_string() {
    let mut h = Harness::start().await;
    let leaky = FakeMcp::start(
        &["kv_get"],
        text_tool(|_, _| "the token is sk-live-abcdef123 and region eu-secret-zone".to_owned()),
    )
    .await;
    let mut body = h.body();
    body["tool_servers"] = json!([{
        "name": "kv", "url": leaky.url(), "auth_header": "Authorization", "auth_value": "sk-live-abcdef123",
        "params": {"region": "eu-secret-zone", "plain": "visible"}, "secret_keys": ["region"]
    }]);
    h.gateway
        .tool_calls(&[("t1", "kv_get", json!({"key": "sk-live-abcdef123"}))])
        .text("not json, but it says sk-live-abcdef123")
        .text("still eu-secret-zone")
        .text("{\"leak\": \"sk-live-abcdef123\"}");
    body["max_turns"] = json!(2);
    body["output_schema"] = json!({"type": "object", "required": ["never"]});
    let callback = h.run(&body).await;
    let text = callback.to_string();
    assert!(!text.contains("sk-live-abcdef123"), "{text}");
    assert!(!text.contains("eu-secret-zone"), "{text}");
    assert!(text.contains("[REDACTED]"));
    assert_eq!(callback["status"], "failed");
    // The gateway still got the real text (scrubbing is for callbacks and logs).
    let requests = h.gateway.requests().await;
    assert!(requests[1].to_string().contains("sk-live-abcdef123"));
}
