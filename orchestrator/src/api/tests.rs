//! API tests over real HTTP: the orchestrator on 127.0.0.1:0 with a fake runtime (a small HTTP
//! server that records dispatches) and a temporary project; every route and error code.

use crate::{Application, Flags, Settings};
use actix_web::{web, App, HttpResponse, HttpServer};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const AGENT: &str = r#"name: worker
model: standard
params:
  schema:
    type: object
    properties:
      text: { type: string }
prompt:
  system: You work.
  user: "Do {{ params.text }}"
output:
  schema:
    type: object
    required: [answer]
    properties:
      answer: { type: string }
"#;

const HELLO: &str = r#"kind: workflow
name: hello
params:
  schema:
    type: object
    required: [text]
    properties:
      text: { type: string, minLength: 1 }
      mood: { type: string, default: happy }
pipeline:
  - id: greet
    agent: agents/worker.agent.yaml
    params: { text: "{{ params.text }}" }
"#;

const GUARDED: &str = r#"kind: workflow
name: guarded
env: [ { name: GUARD_TOKEN, secret: true } ]
invoke:
  auth: { header: X-Token, scheme: raw, secret: "{{ env.GUARD_TOKEN }}" }
pipeline: []
"#;

const CHILD: &str = r#"kind: workflow
name: child
visibility: sub-workflow
pipeline: []
"#;

/// What the fake runtime received.
#[derive(Default)]
struct Seen {
    invokes: Vec<Value>,
    cancels: Vec<Value>,
}

struct Fake {
    url: String,
    seen: Arc<Mutex<Seen>>,
    handle: actix_web::dev::ServerHandle,
}

async fn fake_runtime() -> Fake {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let s1 = Arc::clone(&seen);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = HttpServer::new(move || {
        let s_invoke = Arc::clone(&s1);
        let s_cancel = Arc::clone(&s1);
        App::new()
            .route(
                "/health",
                web::get().to(|| async { HttpResponse::Ok().json(json!({"status": "ok"})) }),
            )
            .route(
                "/invoke",
                web::post().to(move |body: web::Json<Value>| {
                    let s = Arc::clone(&s_invoke);
                    async move {
                        s.lock().unwrap().invokes.push(body.into_inner());
                        HttpResponse::Accepted().json(json!({"status": "accepted"}))
                    }
                }),
            )
            .route(
                "/cancel",
                web::post().to(move |body: web::Json<Value>| {
                    let s = Arc::clone(&s_cancel);
                    async move {
                        s.lock().unwrap().cancels.push(body.into_inner());
                        HttpResponse::Ok().json(json!({"cancelled": []}))
                    }
                }),
            )
    })
    .listen(listener)
    .unwrap()
    .workers(1)
    .disable_signals()
    .run();
    let handle = server.handle();
    actix_rt::spawn(server);
    Fake {
        url: format!("http://127.0.0.1:{port}"),
        seen,
        handle,
    }
}

struct Harness {
    base: String,
    client: awc::Client,
    fake: Fake,
    dir: tempfile::TempDir,
    handle: actix_web::dev::ServerHandle,
}

async fn harness_with(files: &[(&str, &str)], env: &[(&str, &str)]) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let mut all: Vec<(&str, &str)> = vec![
        ("agents/worker.agent.yaml", AGENT),
        ("workflows/hello.workflow.yaml", HELLO),
        ("workflows/guarded.workflow.yaml", GUARDED),
        ("workflows/child.workflow.yaml", CHILD),
    ];
    all.extend_from_slice(files);
    for (p, c) in all {
        let full = dir.path().join(p);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(full, c).unwrap();
    }
    let fake = fake_runtime().await;
    let mut vars: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    vars.entry("KTSU_DISPATCH_RETRY_S".into())
        .or_insert_with(|| "2".into());
    std::env::set_var("GUARD_TOKEN", "guard-token-value");
    let flags = Flags {
        host: Some("127.0.0.1".into()),
        port: Some("0".into()),
        runtime_url: Some(fake.url.clone()),
        project_dir: Some(dir.path().to_path_buf()),
        ..Flags::default()
    };
    let settings = Settings::resolve(&flags, &vars).unwrap();
    let app = Application::build(settings).await.unwrap();
    let base = format!("http://{}", app.address());
    let handle = app.server_handle();
    actix_rt::spawn(app.run());
    Harness {
        base,
        client: awc::Client::builder()
            .timeout(Duration::from_secs(30))
            .finish(),
        fake,
        dir,
        handle,
    }
}

async fn harness() -> Harness {
    harness_with(&[], &[]).await
}

impl Harness {
    async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        headers: &[(&str, &str)],
    ) -> (u16, Value, awc::http::header::HeaderMap) {
        let m = awc::http::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self.client.request(m, format!("{}{path}", self.base));
        for (k, v) in headers {
            req = req.insert_header((*k, *v));
        }
        let mut res = match body {
            Some(b) => req.send_body(b.to_string()).await.unwrap(),
            None => req.send().await.unwrap(),
        };
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let bytes = res.body().limit(64 * 1024 * 1024).await.unwrap();
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into()))
        };
        (status, value, headers)
    }

    async fn post(&self, path: &str, body: &str) -> (u16, Value) {
        let (s, v, _) = self.call("POST", path, Some(body), &[]).await;
        (s, v)
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let (s, v, _) = self.call("GET", path, None, &[]).await;
        (s, v)
    }

    /// Waits for the fake runtime to have received `n` dispatches.
    async fn dispatches(&self, n: usize) -> Vec<Value> {
        for _ in 0..200 {
            let got = self.fake.seen.lock().unwrap().invokes.clone();
            if got.len() >= n {
                return got;
            }
            actix_rt::time::sleep(Duration::from_millis(20)).await;
        }
        panic!(
            "expected {n} dispatches, got {}",
            self.fake.seen.lock().unwrap().invokes.len()
        );
    }

    /// Posts a callback to the URL a dispatch carried.
    async fn callback(&self, dispatch: &Value, body: Value) -> (u16, Value) {
        let url = dispatch["callback_url"].as_str().unwrap();
        let path = url.splitn(4, '/').nth(3).unwrap();
        self.post(&format!("/{path}"), &body.to_string()).await
    }

    async fn run_status(&self, id: &str) -> String {
        self.get(&format!("/runs/{id}")).await.1["run"]["status"]
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    async fn until_status(&self, id: &str, want: &str) {
        for _ in 0..300 {
            if self.run_status(id).await == want {
                return;
            }
            actix_rt::time::sleep(Duration::from_millis(20)).await;
        }
        panic!(
            "run {id} never reached {want}: {}",
            self.get(&format!("/runs/{id}")).await.1
        );
    }

    async fn stop(self) {
        self.handle.stop(false).await;
        self.fake.handle.stop(false).await;
    }
}

fn ok_callback(answer: &str) -> Value {
    json!({"status": "ok", "output": {"answer": answer}, "error": "", "metrics": {"tokens_in": 3, "tokens_out": 2, "cost_usd": 0.001, "llm_calls": 1, "tool_calls": 0, "model_resolved": "mock/default"}})
}

#[actix_rt::test]
async fn health_routes() {
    let h = harness().await;
    let (s, v) = h.get("/health").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["status"], "ok");
    assert_eq!(v["store"], "memory");
    assert_eq!(
        v["services"],
        json!({"orchestrator": "ok", "runtime": "ok", "gateway": "unconfigured"})
    );
    let (s, v) = h.get("/health/live").await;
    assert_eq!((s, v), (200, json!({"status": "ok"})));
    let (s, _, _) = h.call("HEAD", "/health/live", None, &[]).await;
    assert_eq!(s, 200);
    h.stop().await;
}

#[actix_rt::test]
async fn a_run_end_to_end_through_the_fake_runtime() {
    let h = harness().await;
    let (s, v, headers) = h
        .call("POST", "/invoke/hello", Some(r#"{"text":"Ada"}"#), &[])
        .await;
    assert_eq!(s, 202, "{v}");
    assert_eq!(v["status"], "accepted");
    let id = v["run_id"].as_str().unwrap().to_string();
    assert!(id.starts_with("run_") && id.len() == 20);
    assert_eq!(headers.get("location").unwrap(), &format!("/runs/{id}"));
    // the record exists before the 202 was sent, with every step
    let (s, rec) = h.get(&format!("/runs/{id}")).await;
    assert_eq!(s, 200);
    assert_eq!(rec["steps"][0]["id"], "greet");
    assert_eq!(
        rec["run"]["payload"],
        json!({"text": "Ada", "mood": "happy"})
    );

    let d = h.dispatches(1).await;
    assert_eq!(d[0]["run_id"], id.as_str());
    assert_eq!(d[0]["user_message"], "Do Ada");
    assert!(d[0]["callback_url"]
        .as_str()
        .unwrap()
        .ends_with(&format!("/runs/{id}/steps/greet/complete?attempt=1")));
    let (s, v) = h.callback(&d[0], ok_callback("hi")).await;
    assert_eq!((s, v), (200, json!({"status": "accepted"})));
    h.until_status(&id, "complete").await;
    let (_, rec) = h.get(&format!("/runs/{id}")).await;
    assert_eq!(rec["run"]["output"], json!({"greet": {"answer": "hi"}}));
    assert_eq!(rec["run"]["totals"]["tokens_in"], 3);
    assert_eq!(rec["steps"][0]["metrics"]["model_resolved"], "mock/default");

    // the same callback again: ignored, never blocks
    let (s, v) = h.callback(&d[0], ok_callback("again")).await;
    assert_eq!(
        (s, v),
        (200, json!({"status": "ignored", "reason": "run_finished"}))
    );

    // envelope
    let (s, env) = h.get(&format!("/runs/{id}/envelope")).await;
    assert_eq!(s, 200);
    assert_eq!(env["status"], "complete");
    assert_eq!(env["steps"][0]["output"], json!({"answer": "hi"}));
    assert_eq!(env["totals"]["llm_calls"], 1);
    h.stop().await;
}

#[actix_rt::test]
async fn invoke_errors() {
    let h = harness().await;
    // (path, body, headers, expected status, expected error code)
    type Case<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>, u16, &'a str);
    let cases: Vec<Case> = vec![
        ("/invoke/nope", "{}", vec![], 404, "workflow_not_found"),
        ("/invoke/child", "{}", vec![], 404, "workflow_not_found"),
        ("/invoke/a%2Fb", "{}", vec![], 404, "workflow_not_found"),
        ("/invoke/hello", "{bad", vec![], 400, "invalid_json"),
        ("/invoke/hello", "[1]", vec![], 400, "invalid_request"),
        (
            "/invoke/hello?wait=abc",
            r#"{"text":"x"}"#,
            vec![],
            400,
            "invalid_request",
        ),
        (
            "/invoke/hello",
            r#"{"text":"x"}"#,
            vec![("Idempotency-Key", "has space")],
            400,
            "invalid_request",
        ),
        ("/invoke/guarded", "{}", vec![], 401, "unauthorized"),
        (
            "/invoke/guarded",
            "{}",
            vec![("X-Token", "wrong")],
            401,
            "unauthorized",
        ),
    ];
    for (path, body, headers, status, code) in cases {
        let (s, v, _) = h.call("POST", path, Some(body), &headers).await;
        assert_eq!(
            (s, v["error"].as_str().unwrap_or("")),
            (status, code),
            "{path} {body}: {v}"
        );
        assert!(v["message"].is_string());
    }
    let (s, v, _) = h
        .call(
            "POST",
            "/invoke/guarded",
            Some("{}"),
            &[("X-Token", "guard-token-value")],
        )
        .await;
    assert_eq!(s, 202, "{v}");
    // params: every violation listed
    let (s, v) = h.post("/invoke/hello", r#"{"text": ""}"#).await;
    assert_eq!(s, 422);
    assert_eq!(v["error"], "params_invalid");
    assert_eq!(v["violations"][0]["pointer"], "/text");
    let (s, v) = h.post("/invoke/hello", "{}").await;
    assert_eq!(s, 422);
    assert_eq!(
        v["violations"][0],
        json!({"pointer": "/text", "keyword": "required", "message": "missing required property \"text\""})
    );
    // oversized body
    let big = format!(r#"{{"text":"{}"}}"#, "x".repeat(2 * 1024 * 1024));
    let (s, v) = h.post("/invoke/hello", &big).await;
    assert_eq!(
        (s, v["error"].as_str().unwrap()),
        (413, "payload_too_large")
    );
    assert_eq!(v["limit_bytes"], 1_048_576);
    // unknown route, wrong method
    let (s, v) = h.get("/nope").await;
    assert_eq!((s, v["error"].as_str().unwrap()), (404, "not_found"));
    let (s, v, headers) = h.call("GET", "/invoke/hello", None, &[]).await;
    assert_eq!(
        (s, v["error"].as_str().unwrap()),
        (405, "method_not_allowed")
    );
    assert!(headers.get("allow").is_some());
    h.stop().await;
}

#[actix_rt::test]
async fn idempotency_and_wait() {
    let h = harness().await;
    let key = [("Idempotency-Key", "order-42")];
    let (s, v, _) = h
        .call("POST", "/invoke/hello", Some(r#"{"text":"a"}"#), &key)
        .await;
    assert_eq!(s, 202);
    let id = v["run_id"].as_str().unwrap().to_string();
    // replay: same run, 200, header
    let (s, v, headers) = h
        .call("POST", "/invoke/hello", Some(r#"{ "text": "a" }"#), &key)
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["run_id"], id.as_str());
    assert_eq!(headers.get("idempotent-replayed").unwrap(), "true");
    // another body: 409
    let (s, v, _) = h
        .call("POST", "/invoke/hello", Some(r#"{"text":"b"}"#), &key)
        .await;
    assert_eq!(
        (s, v["error"].as_str().unwrap()),
        (409, "idempotency_key_mismatch")
    );
    assert_eq!(v["run_id"], id.as_str());

    // ?wait= answers 200 with the final record when the run ends in time
    let d = h.dispatches(1).await;
    let waiter = {
        let client = awc::Client::builder()
            .timeout(Duration::from_secs(30))
            .finish();
        let url = format!("{}/invoke/hello?wait=10", h.base);
        actix_rt::spawn(async move {
            let mut res = client.post(url).send_body(r#"{"text":"w"}"#).await.unwrap();
            let status = res.status().as_u16();
            let v: Value = res.json().limit(1 << 20).await.unwrap();
            (status, v)
        })
    };
    h.callback(&d[0], ok_callback("a")).await;
    let d = h.dispatches(2).await;
    h.callback(&d[1], ok_callback("w")).await;
    let (s, v) = waiter.await.unwrap();
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["status"], "complete");
    assert_eq!(v["run"]["output"]["greet"]["answer"], "w");
    assert!(v["steps"].is_array());
    // wait elapsed first: 202
    let (s, _) = h.post("/invoke/hello?wait=0", r#"{"text":"slow"}"#).await;
    assert_eq!(s, 202);
    h.stop().await;
}

#[actix_rt::test]
async fn callback_errors_and_ignored_reasons() {
    let h = harness().await;
    let (_, v) = h.post("/invoke/hello", r#"{"text":"a"}"#).await;
    let id = v["run_id"].as_str().unwrap().to_string();
    let d = h.dispatches(1).await;
    let base = format!("/runs/{id}/steps/greet/complete");
    let (s, v) = h
        .post(
            "/runs/run_0000000000000000/steps/greet/complete",
            &ok_callback("x").to_string(),
        )
        .await;
    assert_eq!((s, v["error"].as_str().unwrap()), (404, "run_not_found"));
    let (s, v) = h
        .post(
            &format!("/runs/{id}/steps/nope/complete"),
            &ok_callback("x").to_string(),
        )
        .await;
    assert_eq!((s, v["error"].as_str().unwrap()), (404, "step_not_found"));
    let (s, v) = h.post(&base, "{oops").await;
    assert_eq!((s, v["error"].as_str().unwrap()), (400, "invalid_json"));
    let (s, v) = h.post(&base, r#"{"status": "maybe"}"#).await;
    assert_eq!((s, v["error"].as_str().unwrap()), (400, "invalid_request"));
    let (s, v) = h
        .post(
            &base,
            &json!({"status": "ok", "run_id": "run_other", "output": {}}).to_string(),
        )
        .await;
    assert_eq!((s, v["error"].as_str().unwrap()), (400, "invalid_request"));
    let (s, v) = h.post(&base, r#"{"status": "pending_approval"}"#).await;
    assert_eq!((s, v["error"].as_str().unwrap()), (400, "invalid_request"));
    let (s, v) = h
        .post(&format!("{base}?attempt=7"), &ok_callback("x").to_string())
        .await;
    assert_eq!(
        (s, v),
        (200, json!({"status": "ignored", "reason": "stale_attempt"}))
    );
    // without an attempt (reference runtime): the current attempt
    let (s, v) = h.post(&base, &ok_callback("x").to_string()).await;
    assert_eq!((s, v), (200, json!({"status": "accepted"})));
    let (s, v) = h.callback(&d[0], ok_callback("x")).await;
    assert_eq!(s, 200);
    assert_eq!(v["status"], "ignored");
    h.stop().await;
}

#[actix_rt::test]
async fn runs_listing_and_cancel() {
    let h = harness().await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let (_, v) = h
            .post("/invoke/hello", &format!(r#"{{"text":"t{i}"}}"#))
            .await;
        ids.push(v["run_id"].as_str().unwrap().to_string());
    }
    let (s, v) = h.get("/runs?limit=2").await;
    assert_eq!(s, 200);
    assert_eq!(v["runs"].as_array().unwrap().len(), 2);
    assert_eq!(
        v["runs"][0]["id"],
        ids[4].as_str(),
        "newest first: {v} {ids:?}"
    );
    let cursor = v["next_cursor"].as_str().unwrap().to_string();
    let (_, v2) = h.get(&format!("/runs?limit=2&cursor={cursor}")).await;
    assert_eq!(v2["runs"][0]["id"], ids[2].as_str());
    let (_, v3) = h.get("/runs?limit=10&workflow=hello").await;
    assert_eq!(v3["runs"].as_array().unwrap().len(), 5);
    assert_eq!(v3["next_cursor"], Value::Null);
    for (q, code) in [
        ("status=bogus", "invalid_request"),
        ("limit=0", "invalid_request"),
        ("cursor=@@", "invalid_request"),
        ("include_children=yes", "invalid_request"),
    ] {
        let (s, v) = h.get(&format!("/runs?{q}")).await;
        assert_eq!((s, v["error"].as_str().unwrap()), (400, code), "{q}");
    }
    let (s, v) = h.get("/runs/run_0000000000000000").await;
    assert_eq!((s, v["error"].as_str().unwrap()), (404, "run_not_found"));
    let (s, v) = h.get("/runs/run_0000000000000000/envelope").await;
    assert_eq!((s, v["error"].as_str().unwrap()), (404, "run_not_found"));

    // cancel
    let (s, v) = h
        .post(
            &format!("/runs/{}/cancel", ids[0]),
            r#"{"reason":"operator request"}"#,
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["run"]["status"], "cancelled");
    assert_eq!(v["run"]["cancel_reason"], "operator request");
    let (s, _) = h.post(&format!("/runs/{}/cancel", ids[0]), "").await;
    assert_eq!(s, 200, "idempotent");
    let (s, v) = h.post("/runs/run_0000000000000000/cancel", "").await;
    assert_eq!((s, v["error"].as_str().unwrap()), (404, "run_not_found"));
    let (s, v) = h
        .post(
            &format!("/runs/{}/cancel", ids[1]),
            &json!({"reason": "x".repeat(2000)}).to_string(),
        )
        .await;
    assert_eq!((s, v["error"].as_str().unwrap()), (400, "invalid_request"));
    // a finished run
    let d = h.dispatches(5).await;
    let done = d.iter().find(|x| x["run_id"] == ids[1].as_str()).unwrap();
    h.callback(done, ok_callback("x")).await;
    h.until_status(&ids[1], "complete").await;
    let (s, v) = h.post(&format!("/runs/{}/cancel", ids[1]), "").await;
    assert_eq!((s, v["error"].as_str().unwrap()), (409, "run_finished"));
    assert_eq!(v["run"]["status"], "complete");
    // the runtime was told about the cancelled attempt
    for _ in 0..100 {
        if !h.fake.seen.lock().unwrap().cancels.is_empty() {
            break;
        }
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
    let cancels = h.fake.seen.lock().unwrap().cancels.clone();
    assert!(
        cancels.iter().any(|c| c["run_id"] == ids[0].as_str()
            && c["step_id"] == "greet"
            && c["attempt"] == 1),
        "{cancels:?}"
    );
    h.stop().await;
}

#[actix_rt::test]
async fn approvals_round_trip() {
    let h = harness().await;
    let (_, v) = h.post("/invoke/hello", r#"{"text":"a"}"#).await;
    let id = v["run_id"].as_str().unwrap().to_string();
    let d = h.dispatches(1).await;
    let pending = json!({"status": "pending_approval", "error": "", "messages": [{"role": "user", "content": "go"}],
        "pending_approval": {"tool_name": "delete-record", "tool_use_id": "toolu_1", "arguments": {"id": 7}, "on_reject": "recover", "timeout_ms": 0, "timeout_behavior": "fail"},
        "metrics": {"llm_calls": 1}});
    let (s, v) = h.callback(&d[0], pending).await;
    assert_eq!((s, v), (200, json!({"status": "accepted"})));
    let (s, v) = h.get("/approvals").await;
    assert_eq!(s, 200);
    assert_eq!(v[0]["tool_use_id"], "toolu_1");
    assert_eq!(v[0]["status"], "pending");
    let (_, v) = h.get(&format!("/runs/{id}/approvals")).await;
    assert_eq!(v["approvals"].as_array().unwrap().len(), 1);
    let (s, v) = h.get(&format!("/runs/{id}/steps/greet/approval")).await;
    assert_eq!(s, 200);
    assert_eq!(v["arguments"], json!({"id": 7}));
    let (s, v) = h.get(&format!("/runs/{id}/steps/nope/approval")).await;
    assert_eq!((s, v["error"].as_str().unwrap()), (404, "step_not_found"));
    let (s, v) = h
        .get(&format!("/runs/{id}/steps/greet/approval?tool_use_id=zzz"))
        .await;
    assert_eq!(
        (s, v["error"].as_str().unwrap()),
        (404, "approval_not_found")
    );
    let decide = format!("/runs/{id}/steps/greet/approval/decide");
    let (s, v) = h.post(&decide, r#"{"decision":"maybe"}"#).await;
    assert_eq!(
        (s, v["message"].as_str().unwrap()),
        (400, "decision must be \"approved\" or \"rejected\"")
    );
    let (s, v) = h
        .post(
            &decide,
            r#"{"decision":"approved","decided_by":"ops","comment":"fine"}"#,
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["status"], "approved");
    assert_eq!(v["decided_by"], "ops");
    let (s, v) = h.post(&decide, r#"{"decision":"rejected"}"#).await;
    assert_eq!(
        (s, v["error"].as_str().unwrap()),
        (409, "approval_already_decided")
    );
    assert_eq!(v["approval"]["status"], "approved");
    // the resume dispatch: attempt 2 with the approved id and the checkpoint
    let d = h.dispatches(2).await;
    assert_eq!(d[1]["attempt"], 2);
    assert_eq!(d[1]["is_resume"], true);
    assert_eq!(d[1]["approved_tool_calls"], json!(["toolu_1"]));
    assert_eq!(d[1]["messages"], json!([{"role": "user", "content": "go"}]));
    let (s, _) = h.callback(&d[1], ok_callback("done")).await;
    assert_eq!(s, 200);
    h.until_status(&id, "complete").await;
    let (_, v) = h.get("/approvals?status=all").await;
    assert_eq!(v.as_array().unwrap().len(), 1);
    let (s, v) = h.get("/approvals?status=bogus").await;
    assert_eq!((s, v["error"].as_str().unwrap()), (400, "invalid_request"));
    h.stop().await;
}

#[actix_rt::test]
async fn heartbeats_registration_and_runtimes() {
    let h = harness().await;
    let (s, v) = h
        .post(
            "/runtimes/register",
            r#"{"runtime_id":"rt-1","url":"http://127.0.0.1:9"}"#,
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(v["status"], "registered");
    assert_eq!(v["heartbeat_timeout_s"], 30);
    let (s, v) = h
        .post(
            "/runtimes/register",
            r#"{"runtime_id":"rt-1","url":"nope"}"#,
        )
        .await;
    assert_eq!((s, v["error"].as_str().unwrap()), (400, "invalid_request"));
    let hb = json!({"runtime_id": "rt-1", "active": [{"run_id": "run_dead00000000beef", "step_id": "x", "attempt": 2}]});
    let (s, v) = h.post("/heartbeat", &hb.to_string()).await;
    assert_eq!(s, 200);
    assert_eq!(
        v,
        json!({"status": "ok", "cancel": [{"run_id": "run_dead00000000beef", "step_id": "x", "attempt": 2}]})
    );
    let (s, v) = h.post("/heartbeat", r#"{"active": []}"#).await;
    assert_eq!((s, v["error"].as_str().unwrap()), (400, "invalid_request"));
    let (s, v) = h.get("/runtimes").await;
    assert_eq!(s, 200);
    let ids: Vec<&str> = v["runtimes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["runtime_id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&"rt-1") && ids.contains(&"config"), "{ids:?}");
    h.stop().await;
}

#[actix_rt::test]
async fn reload_keeps_the_last_good_project() {
    let h = harness().await;
    let (s, v) = h.post("/reload", "").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["status"], "reloaded");
    assert!(v["digest"].as_str().unwrap().starts_with("sha256:"));
    std::fs::write(
        h.dir.path().join("workflows/broken.workflow.yaml"),
        "kind: workflow\nname: broken\npipeline: 7\n",
    )
    .unwrap();
    let (s, v) = h.post("/reload", "").await;
    assert_eq!((s, v["error"].as_str().unwrap()), (422, "project_invalid"));
    assert_eq!(v["errors"][0]["code"], "type_mismatch");
    // the previous snapshot still serves
    let (s, _) = h.post("/invoke/hello", r#"{"text":"still"}"#).await;
    assert_eq!(s, 202);
    h.stop().await;
}

#[actix_rt::test]
async fn api_key_protects_management_routes() {
    let h = harness_with(
        &[],
        &[
            ("KTSU_API_KEY", "mgmt-key-123"),
            ("KTSU_INTERNAL_TOKEN", "internal-tok-456"),
        ],
    )
    .await;
    for path in ["/runs", "/approvals", "/runtimes"] {
        let (s, v) = h.get(path).await;
        assert_eq!(
            (s, v["error"].as_str().unwrap()),
            (401, "unauthorized"),
            "{path}"
        );
    }
    let (s, _, _) = h
        .call(
            "GET",
            "/runs",
            None,
            &[("Authorization", "Bearer mgmt-key-123")],
        )
        .await;
    assert_eq!(s, 200);
    let (s, _) = h.post("/invoke/hello", r#"{"text":"a"}"#).await;
    assert_eq!(
        s, 401,
        "invoke of a workflow without invoke.auth uses the management key"
    );
    let (s, _) = h.post("/heartbeat", r#"{"runtime_id":"rt"}"#).await;
    assert_eq!(s, 401);
    // the management key is not accepted on internal routes
    let (s, _, _) = h
        .call(
            "POST",
            "/heartbeat",
            Some(r#"{"runtime_id":"rt"}"#),
            &[("Authorization", "Bearer mgmt-key-123")],
        )
        .await;
    assert_eq!(s, 401);
    let (s, _, _) = h
        .call(
            "POST",
            "/heartbeat",
            Some(r#"{"runtime_id":"rt"}"#),
            &[("Authorization", "Bearer internal-tok-456")],
        )
        .await;
    assert_eq!(s, 200);
    let (s, _) = h.get("/health/live").await;
    assert_eq!(s, 200, "health stays open");
    h.stop().await;
}

#[actix_rt::test]
async fn queue_limits_answer_429() {
    let h = harness_with(
        &[],
        &[("KTSU_MAX_ACTIVE_RUNS", "1"), ("KTSU_MAX_QUEUED_RUNS", "1")],
    )
    .await;
    let (s1, _) = h.post("/invoke/hello", r#"{"text":"1"}"#).await;
    let (s2, _) = h.post("/invoke/hello", r#"{"text":"2"}"#).await;
    let (s3, v, headers) = h
        .call("POST", "/invoke/hello", Some(r#"{"text":"3"}"#), &[])
        .await;
    assert_eq!((s1, s2), (202, 202));
    assert_eq!((s3, v["error"].as_str().unwrap()), (429, "too_many_runs"));
    assert_eq!(headers.get("retry-after").unwrap(), "5");
    // the second run waits in pending until the first ends
    let (_, runs) = h.get("/runs").await;
    assert_eq!(runs["runs"][0]["status"], "pending");
    let d = h.dispatches(1).await;
    h.callback(&d[0], ok_callback("a")).await;
    let d = h.dispatches(2).await;
    assert_eq!(d.len(), 2);
    h.stop().await;
}

#[actix_rt::test]
async fn a_silent_runtime_fails_its_step_with_heartbeat_timeout() {
    let h = harness_with(&[], &[("KTSU_HEARTBEAT_TIMEOUT_S", "1")]).await;
    let (_, v) = h.post("/invoke/hello", r#"{"text":"a"}"#).await;
    let id = v["run_id"].as_str().unwrap().to_string();
    h.dispatches(1).await;
    let started = std::time::Instant::now();
    h.until_status(&id, "failed").await;
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    let (_, rec) = h.get(&format!("/runs/{id}")).await;
    assert_eq!(rec["steps"][0]["error_code"], "heartbeat_timeout");
    assert_eq!(rec["run"]["error_code"], "heartbeat_timeout");
    h.stop().await;
}

#[actix_rt::test]
async fn no_runtime_at_all_fails_with_runtime_unavailable() {
    let h = harness_with(&[], &[("KTSU_DISPATCH_RETRY_S", "1")]).await;
    h.fake.handle.stop(false).await;
    let (_, v) = h.post("/invoke/hello", r#"{"text":"a"}"#).await;
    let id = v["run_id"].as_str().unwrap().to_string();
    h.until_status(&id, "failed").await;
    let (_, rec) = h.get(&format!("/runs/{id}")).await;
    assert_eq!(rec["run"]["error_code"], "runtime_unavailable");
    assert!(
        rec["run"]["error"]
            .as_str()
            .unwrap()
            .starts_with("no runtime accepted step \"greet\" within 1s"),
        "{rec}"
    );
    h.handle.stop(false).await;
}
