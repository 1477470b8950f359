//! The HTTP API (runtime-gateway.md §2): health, invoke validation and admission, cancel.

use crate::harness::*;
use ktsu_shared::secret::Secret;
use serde_json::json;
use std::time::Duration;

/// `base` with the top-level fields of `patch` set.
fn patched(base: &serde_json::Value, patch: &serde_json::Value) -> serde_json::Value {
    let mut body = base.clone();
    for (key, value) in patch.as_object().unwrap() {
        body[key] = value.clone();
    }
    body
}

#[actix_rt::test]
async fn health_live_and_unknown_routes() {
    let h = Harness::with(|s| s.max_concurrency = 7).await;
    let (status, headers, body) = h.rt.get("/health").await;
    assert_eq!(status, 200);
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(
        body,
        json!({"status": "ok", "service": "runtime", "runtime_id": h.rt.runtime_id,
               "version": ktsu_shared::VERSION, "running": 0, "queued": 0, "max_concurrency": 7})
    );
    let (status, _, body) = h.rt.get("/health/live").await;
    assert_eq!((status, body), (200, json!({"status": "ok"})));
    let head =
        h.rt.client
            .head(format!("{}/health", h.rt.url))
            .send()
            .await
            .unwrap();
    assert_eq!(head.status(), 200);

    let (status, headers, body) = h.rt.get("/nope").await;
    assert_eq!(status, 404);
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(body["error"], "not_found");
    let (status, headers, body) = h.rt.get("/invoke").await;
    assert_eq!(status, 405);
    assert_eq!(body["error"], "method_not_allowed");
    assert_eq!(headers["allow"], "POST");
    let (status, _, body) = h.rt.post("/health", &json!({})).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (405, Some("method_not_allowed"))
    );
}

#[actix_rt::test]
async fn malformed_invocations_get_their_specified_errors() {
    let h = Harness::start().await;
    let (status, _, body) = h.rt.post_raw("/invoke", "{not json".into(), &[]).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "invalid_json");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .starts_with("invalid JSON: "),
        "{body}"
    );

    let (status, _, body) =
        h.rt.post_raw("/invoke", r#"{"run_id": 5}"#.into(), &[])
            .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "invalid_request");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .starts_with("invalid request: "),
        "{body}"
    );

    let base = h.body();
    let cases = [
        (
            json!({"run_id": ""}),
            "run_id, step_id, and callback_url are required",
        ),
        (
            json!({"step_id": ""}),
            "run_id, step_id, and callback_url are required",
        ),
        (
            json!({"callback_url": ""}),
            "run_id, step_id, and callback_url are required",
        ),
        (
            json!({"callback_url": "/relative/cb"}),
            "callback_url must be an absolute http(s) URL",
        ),
        (
            json!({"callback_url": "file:///etc/passwd"}),
            "callback_url must be an absolute http(s) URL",
        ),
        (json!({"model": {"group": ""}}), "model.group is required"),
    ];
    for (patch, message) in cases {
        let (status, _, answer) = h.rt.post("/invoke", &patched(&base, &patch)).await;
        assert_eq!(
            (status, answer["error"].as_str()),
            (400, Some("invalid_request")),
            "{patch}"
        );
        assert_eq!(answer["message"], message, "{patch}");
    }
    let mut body = base.clone();
    body["output_schema"] = json!({"type": 12});
    let (status, _, answer) = h.rt.post("/invoke", &body).await;
    assert_eq!(status, 400);
    assert!(
        answer["message"]
            .as_str()
            .unwrap()
            .starts_with("output_schema: "),
        "{answer}"
    );
    let mut body = base.clone();
    body["messages"] = json!(["not an object"]);
    let (status, _, answer) = h.rt.post("/invoke", &body).await;
    assert_eq!(status, 400);
    assert_eq!(answer["message"], "messages: message 0: expected an object");
    let mut body = base.clone();
    body["tool_servers"] = json!("nope");
    let (status, _, answer) = h.rt.post("/invoke", &body).await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (400, Some("invalid_request"))
    );

    // The runtime stays healthy and nothing was started.
    let (status, _, health) = h.rt.get("/health").await;
    assert_eq!((status, health["running"].as_u64()), (200, Some(0)));
    assert!(h.gateway.requests().await.is_empty());
}

/// Bodies that are not an InvokeRequest at all, fields left out and fields of the wrong type:
/// each gets its specified error, nothing starts, and the runtime stays healthy.
#[actix_rt::test]
async fn absent_and_mistyped_fields_get_their_specified_errors() {
    let h = Harness::start().await;
    for (raw, code) in [
        ("", "invalid_json"),
        ("{\"run_id\": \"r\",", "invalid_json"),
        ("\u{feff}{}", "invalid_json"),
        ("[]", "invalid_request"),
        ("null", "invalid_request"),
        ("\"run\"", "invalid_request"),
    ] {
        let (status, headers, answer) = h.rt.post_raw("/invoke", raw.into(), &[]).await;
        assert_eq!(
            (status, answer["error"].as_str()),
            (400, Some(code)),
            "{raw:?}: {answer}"
        );
        assert_eq!(headers["content-type"], "application/json");
    }
    let (status, _, answer) = h.rt.post_raw("/invoke", "{}".into(), &[]).await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (400, Some("invalid_request"))
    );
    assert_eq!(
        answer["message"],
        "run_id, step_id, and callback_url are required"
    );

    let base = h.body();
    for absent in ["run_id", "step_id", "callback_url"] {
        let mut body = base.clone();
        body.as_object_mut().unwrap().remove(absent);
        let (status, _, answer) = h.rt.post("/invoke", &body).await;
        assert_eq!(status, 400, "{absent}");
        assert_eq!(
            answer["message"], "run_id, step_id, and callback_url are required",
            "{absent}"
        );
    }
    let mut body = base.clone();
    body.as_object_mut().unwrap().remove("model");
    let (status, _, answer) = h.rt.post("/invoke", &body).await;
    assert_eq!(
        (status, answer["message"].as_str()),
        (400, Some("model.group is required"))
    );
    let mut body = base.clone();
    body["attempt"] = json!(0);
    let (status, _, answer) = h.rt.post("/invoke", &body).await;
    assert_eq!(
        (status, answer["message"].as_str()),
        (400, Some("invalid request: attempt must be at least 1"))
    );

    let mistyped = [
        json!({"attempt": -1}),
        json!({"attempt": "1"}),
        json!({"max_turns": "ten"}),
        json!({"model": "standard"}),
        json!({"model": {"group": 7}}),
        json!({"budget": {"run_id": "run_root"}}),
        json!({"timeouts": {"step_s": "soon"}}),
        json!({"tool_servers": [{"name": 5, "url": "http://kv/mcp"}]}),
        json!({"tool_servers": [{"name": "kv", "url": "http://kv/mcp", "approval_rules": [{"pattern": "x", "on_reject": "maybe"}]}]}),
        json!({"messages": {"role": "user", "content": "hi"}}),
        json!({"approved_tool_calls": "t1"}),
    ];
    for patch in mistyped {
        let (status, _, answer) = h.rt.post("/invoke", &patched(&base, &patch)).await;
        assert_eq!(
            (status, answer["error"].as_str()),
            (400, Some("invalid_request")),
            "{patch}"
        );
        assert!(
            answer["message"]
                .as_str()
                .unwrap()
                .starts_with("invalid request: "),
            "{patch}: {answer}"
        );
    }
    let mut body = base.clone();
    body["messages"] = json!([{"role": "user", "content": "hi"}, {"role": "tool", "content": "r"}]);
    let (status, _, answer) = h.rt.post("/invoke", &body).await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["message"]
            .as_str()
            .unwrap()
            .starts_with("messages: "),
        "{answer}"
    );

    let (status, _, health) = h.rt.get("/health").await;
    assert_eq!(
        (
            status,
            health["running"].as_u64(),
            health["queued"].as_u64()
        ),
        (200, Some(0), Some(0))
    );
    assert!(h.gateway.requests().await.is_empty(), "nothing was started");
}

#[actix_rt::test]
async fn oversized_bodies_are_refused() {
    let h = Harness::with(|s| s.max_body_bytes = 1024).await;
    let mut body = h.body();
    body["system"] = json!("x".repeat(4096));
    let (status, _, answer) = h.rt.post("/invoke", &body).await;
    assert_eq!(status, 413);
    assert_eq!(answer["error"], "payload_too_large");
}

#[actix_rt::test]
async fn internal_token_guards_invoke_and_cancel_but_not_health() {
    let mut h = Harness::with(|s| s.internal_token = Some(Secret::new("tok-internal-1"))).await;
    let body = h.body();
    let (status, headers, answer) = h.rt.post("/invoke", &body).await;
    assert_eq!(status, 401);
    assert_eq!(answer["error"], "unauthorized");
    assert_eq!(headers["content-type"], "application/json");
    let (status, _, _) =
        h.rt.post_raw(
            "/invoke",
            body.to_string(),
            &[("Authorization", "Bearer wrong")],
        )
        .await;
    assert_eq!(status, 401);
    let (status, _, _) =
        h.rt.post(
            "/cancel",
            &json!({"run_id": "r", "step_id": "s", "attempt": 1}),
        )
        .await;
    assert_eq!(status, 401);
    assert_eq!(h.rt.get("/health").await.0, 200);

    h.gateway.text("{\"ok\": 1}");
    let (status, _, _) =
        h.rt.post_raw(
            "/invoke",
            body.to_string(),
            &[("Authorization", "Bearer tok-internal-1")],
        )
        .await;
    assert_eq!(status, 202);
    let callback = h.sink.next(WAIT).await;
    assert_eq!(callback.headers["authorization"], "Bearer tok-internal-1");
    let gateway_headers = h.gateway.request_headers().await;
    assert_eq!(gateway_headers[0]["authorization"], "Bearer tok-internal-1");
}

#[actix_rt::test]
async fn accepted_duplicate_stale_and_higher_attempts() {
    let mut h = Harness::start().await;
    h.gateway
        .text_after(Duration::from_secs(30), "{\"slow\": true}");
    let mut body = h.body();
    let run = body["run_id"].as_str().unwrap().to_owned();
    body["attempt"] = json!(2);
    body["callback_url"] = json!(h.sink.callback_url(&run, "step", 2));
    let (status, headers, answer) = h.rt.post("/invoke", &body).await;
    assert_eq!(status, 202);
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(
        answer,
        json!({"run_id": run, "step_id": "step", "attempt": 2, "status": "accepted",
               "runtime_id": h.rt.runtime_id, "queued": false, "duplicate": false})
    );
    let (_, _, again) = h.rt.post("/invoke", &body).await;
    assert_eq!(again["duplicate"], true);

    let mut stale = body.clone();
    stale["attempt"] = json!(1);
    let (status, _, answer) = h.rt.post("/invoke", &stale).await;
    assert_eq!(status, 409);
    assert_eq!(answer["error"], "stale_attempt");
    assert_eq!(
        answer["message"],
        "attempt 1 is older than active attempt 2"
    );

    // A higher attempt cancels the running one, whose callback says so.
    h.gateway.text("{\"fresh\": true}");
    let mut higher = body.clone();
    higher["attempt"] = json!(3);
    higher["callback_url"] = json!(h.sink.callback_url(&run, "step", 3));
    h.rt.invoke(&higher).await;
    let mut callbacks = [h.sink.next(WAIT).await, h.sink.next(WAIT).await];
    callbacks.sort_by_key(|c| c.body["attempt"].as_u64());
    let old = &callbacks[0];
    assert!(old.path.ends_with("?attempt=2"));
    assert_eq!(old.body["status"], "cancelled");
    assert_eq!(old.body["error"], "cancelled: superseded by attempt 3");
    assert_eq!(old.body["error_code"], "cancelled");
    let new = &callbacks[1];
    assert!(new.path.ends_with("?attempt=3"));
    assert_eq!(new.body["status"], "ok");
}

#[actix_rt::test]
async fn full_queue_answers_overloaded() {
    let mut h = Harness::with(|s| {
        s.max_concurrency = 1;
        s.max_queue = 1;
    })
    .await;
    for _ in 0..2 {
        h.gateway
            .text_after(Duration::from_millis(1500), "{\"a\": 1}");
    }
    let first = h.body();
    let second = h.body();
    let third = h.body();
    assert_eq!(h.rt.invoke(&first).await["queued"], false);
    assert_eq!(h.rt.invoke(&second).await["queued"], true);
    let (_, _, health) = h.rt.get("/health").await;
    assert_eq!(
        (health["running"].as_u64(), health["queued"].as_u64()),
        (Some(1), Some(1))
    );
    let (status, headers, answer) = h.rt.post("/invoke", &third).await;
    assert_eq!(status, 503);
    assert_eq!(answer["error"], "overloaded");
    assert_eq!(headers["retry-after"], "1");
    // Both accepted legs complete in FIFO order, the queued one reporting its wait.
    let a = h.sink.next(WAIT).await.body;
    let b = h.sink.next(WAIT).await.body;
    assert_eq!(a["run_id"], first["run_id"]);
    assert_eq!(b["run_id"], second["run_id"]);
    assert!(b["metrics"]["queue_ms"].as_u64().unwrap() >= 1000, "{b}");
}

/// Queue wait counts against the step deadline: queued legs whose deadline passes leave the
/// queue with `step_timeout` (earliest first, zero metrics), the others keep their place.
#[actix_rt::test]
async fn queued_invocations_time_out_in_the_queue() {
    let mut h = Harness::with(|s| {
        s.max_concurrency = 1;
        s.max_queue = 4;
    })
    .await;
    h.gateway
        .text_after(Duration::from_millis(2500), "{\"first\": true}");
    h.gateway.text("{\"patient\": true}");
    let running = h.body();
    let mut later = h.body();
    later["timeouts"] = json!({"step_s": 1.2});
    let mut sooner = h.body();
    sooner["timeouts"] = json!({"step_s": 0.6});
    let patient = h.body();
    h.rt.invoke(&running).await;
    let started = std::time::Instant::now();
    for body in [&later, &sooner, &patient] {
        assert_eq!(h.rt.invoke(body).await["queued"], true);
    }
    for (expected, limit) in [(&sooner, "0.6"), (&later, "1.2")] {
        let callback = h.sink.next(WAIT).await.body;
        assert_eq!(
            callback["run_id"], expected["run_id"],
            "earliest deadline first"
        );
        assert_eq!(callback["status"], "failed");
        assert_eq!(callback["error_code"], "step_timeout");
        assert_eq!(
            callback["error"],
            format!("step_timeout: exceeded {limit} s")
        );
        assert_eq!(callback["metrics"]["llm_calls"], 0);
        assert_eq!(
            callback["metrics"]["duration_ms"], 0,
            "zero metrics: it never started"
        );
    }
    assert!(
        started.elapsed() < Duration::from_millis(2400),
        "they did not wait for a slot"
    );
    let (_, _, health) = h.rt.get("/health").await;
    assert_eq!(
        (health["running"].as_u64(), health["queued"].as_u64()),
        (Some(1), Some(1))
    );
    for expected in [&running, &patient] {
        let callback = h.sink.next(WAIT).await.body;
        assert_eq!(callback["run_id"], expected["run_id"]);
        assert_eq!(callback["status"], "ok", "{callback}");
    }
}

#[actix_rt::test]
async fn cancel_running_and_queued_invocations() {
    let mut h = Harness::with(|s| {
        s.max_concurrency = 1;
        s.max_queue = 4;
    })
    .await;
    h.gateway.text_after(Duration::from_secs(30), "{}");
    let running = h.body();
    let queued = h.body();
    h.rt.invoke(&running).await;
    h.rt.invoke(&queued).await;
    let queued_run = queued["run_id"].as_str().unwrap();
    let running_run = running["run_id"].as_str().unwrap();

    let (status, body) = h.rt.cancel(queued_run, "step", 2, "wrong attempt").await;
    assert_eq!((status, body["error"].as_str()), (404, Some("not_found")));
    let (status, body) =
        h.rt.cancel(queued_run, "step", 1, "run cancelled: operator request")
            .await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"cancelled": [{"run_id": queued_run, "step_id": "step", "attempt": 1, "state": "queued"}]})
    );
    let callback = h.sink.next(WAIT).await.body;
    assert_eq!(callback["run_id"], queued_run);
    assert_eq!(callback["status"], "cancelled");
    assert_eq!(
        callback["error"],
        "cancelled: run cancelled: operator request"
    );
    assert_eq!(callback["metrics"]["duration_ms"], 0, "zero metrics");

    let started = std::time::Instant::now();
    let (status, body) = h.rt.cancel(running_run, "step", 1, "").await;
    assert_eq!(status, 200);
    assert_eq!(body["cancelled"][0]["state"], "running");
    let callback = h.sink.next(WAIT).await.body;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "stopped at once, not after the gateway"
    );
    assert_eq!(callback["status"], "cancelled");
    assert_eq!(callback["error"], "cancelled: cancelled by orchestrator");
    assert_eq!(callback["messages"].as_array().unwrap().len(), 2);

    let (status, _, body) =
        h.rt.post("/cancel", &json!({"run_id": "r", "step_id": "s"}))
            .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request"))
    );
    let (status, _, body) =
        h.rt.post(
            "/cancel",
            &json!({"run_id": "r", "step_id": "s", "attempt": "1"}),
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request"))
    );
}

/// Graceful drain: draining health, shutting_down invokes, running legs finish and deliver.
#[actix_rt::test]
async fn shutdown_drains_running_legs() {
    let mut h = Harness::start().await;
    h.gateway
        .text_after(Duration::from_millis(800), "{\"finished\": true}");
    let running = h.body();
    h.rt.invoke(&running).await;
    h.rt.stop.stop();
    actix_rt::time::sleep(Duration::from_millis(100)).await;
    let (status, _, health) = h.rt.get("/health").await;
    assert_eq!((status, health["status"].as_str()), (503, Some("draining")));
    assert_eq!(h.rt.get("/health/live").await.0, 200);
    let (status, _, answer) = h.rt.post("/invoke", &h.body()).await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (503, Some("shutting_down"))
    );
    let callback = h.sink.next(WAIT).await.body;
    assert_eq!(callback["status"], "ok");
    actix_rt::time::timeout(WAIT, h.rt.stop.stopped())
        .await
        .expect("drain completes");
}

/// Legs still running after the grace period stop with runtime_shutdown.
#[actix_rt::test]
async fn shutdown_grace_expiry_reports_runtime_shutdown() {
    let mut h = Harness::with(|s| {
        s.shutdown_grace = Duration::from_millis(300);
        s.max_concurrency = 1;
    })
    .await;
    h.gateway.text_after(Duration::from_secs(30), "{}");
    let running = h.body();
    let queued = h.body();
    h.rt.invoke(&running).await;
    h.rt.invoke(&queued).await;
    h.rt.stop.stop();
    let mut callbacks = vec![h.sink.next(WAIT).await.body, h.sink.next(WAIT).await.body];
    callbacks.sort_by_key(|c| c["run_id"].as_str().unwrap().to_owned());
    for callback in &callbacks {
        assert_eq!(callback["status"], "failed");
        assert_eq!(callback["error"], "runtime_shutdown");
        assert_eq!(callback["error_code"], "runtime_shutdown");
    }
    actix_rt::time::timeout(WAIT, h.rt.stop.stopped())
        .await
        .expect("drain completes");
}
