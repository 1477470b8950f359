//! The structured records of runtime-gateway.md §11 as the process logger writes them: one
//! `gateway.request` per call (answered, refused, failed, or abandoned by its client) with the
//! call's ids, group, model, attempts, latency, tokens, cost and outcome; the retry and attempt
//! records in between; and no secret in any line.
//!
//! The records go through the same formatter and scrubber as `ktsu start` uses, into memory.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use actix_web::http::StatusCode;
use common::TestGateway;
use ktsu_shared::logging::{self, LineFormat, LineFormatter};
use serde_json::{json, Value};
use std::io::Write;
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, SystemTime};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

const SECRET: &str = "sk-ant-live-LOGS-0123456789";

/// Every line logged by this test binary, as JSON.
struct Capture {
    formatter: LineFormatter,
    lines: Mutex<Vec<Value>>,
}

impl log::Log for Capture {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::Level::Info || metadata.target().starts_with("ktsu")
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let line = self
            .formatter
            .format(record, SystemTime::now(), &logging::scrubber());
        let text = String::from_utf8(line).unwrap();
        assert!(!text.contains(SECRET), "a secret reached the log: {text}");
        let value = serde_json::from_str(&text).unwrap();
        self.lines
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(value);
    }

    fn flush(&self) {}
}

fn capture() -> &'static Capture {
    static CAPTURE: OnceLock<&'static Capture> = OnceLock::new();
    CAPTURE.get_or_init(|| {
        let capture: &'static Capture = Box::leak(Box::new(Capture {
            formatter: LineFormatter::new("gateway", LineFormat::Json),
            lines: Mutex::new(Vec::new()),
        }));
        log::set_logger(capture).unwrap();
        log::set_max_level(log::LevelFilter::Debug);
        capture
    })
}

/// The records whose `key` is `value`, in logging order.
fn records(key: &str, value: &str) -> Vec<Value> {
    capture()
        .lines
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .filter(|line| line[key] == value)
        .cloned()
        .collect()
}

fn events(records: &[Value]) -> Vec<&str> {
    records
        .iter()
        .map(|r| r["event"].as_str().unwrap_or(""))
        .collect()
}

fn gateway_yaml(upstream: &str) -> String {
    format!(
        "settings:\n  retry: {{ max_attempts: 2, initial_backoff_ms: 1, max_backoff_ms: 2 }}\nenv:\n  - {{ name: ANTHROPIC_API_KEY, secret: true }}\nproviders:\n  - {{ name: a, type: anthropic, config: {{ api_key: \"{{{{ env.ANTHROPIC_API_KEY }}}}\", base_url: \"{upstream}\" }} }}\n  - {{ name: slow, type: mock, config: {{ latency_ms: 2000 }} }}\nmodel_groups:\n  - {{ name: g, models: [a/claude-haiku-4-5] }}\n  - {{ name: slow, models: [slow/x] }}\n"
    )
}

async fn gateway(upstream: &MockServer) -> TestGateway {
    capture();
    TestGateway::start_with(
        &gateway_yaml(&upstream.uri()),
        |_| {},
        &[("ANTHROPIC_API_KEY", SECRET)],
    )
    .await
}

/// An upstream error that quotes the key back, as a misconfigured proxy might.
fn error_quoting_the_key(status: u16) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(json!({
        "type": "error",
        "error": {"type": "rate_limit_error", "message": format!("slow down, key {SECRET}")}
    }))
}

#[actix_rt::test]
async fn a_retried_call_leaves_one_request_record_and_no_secret() {
    let upstream = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(error_quoting_the_key(429).insert_header("retry-after-ms", "20"))
        .up_to_n_times(1)
        .mount(&upstream)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "content": [{"type": "text", "text": "ok"}], "stop_reason": "end_turn",
            "usage": {"input_tokens": 100, "cache_read_input_tokens": 50, "output_tokens": 20}
        })))
        .mount(&upstream)
        .await;
    let gw = gateway(&upstream).await;
    let answer = gw
        .post(
            json!({"run_id": "run_00000000000010a1", "step_id": "triage", "group": "g",
                     "messages": [{"role": "user", "content": "hello"}],
                     "metadata": {"agent_name": "triage-agent", "attempt": 3}}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let call_id = answer.header("x-ktsu-call-id").unwrap();

    let call = records("call_id", call_id);
    assert_eq!(
        events(&call),
        vec![
            "provider.attempt",
            "provider.retry",
            "provider.attempt",
            "gateway.request"
        ]
    );
    for record in &call {
        assert_eq!(record["service"], "gateway");
        assert_eq!(record["run_id"], "run_00000000000010a1");
        assert_eq!(record["step_id"], "triage");
        assert_eq!(record["attempt"], 3, "metadata.attempt: {record}");
    }
    let retry = &call[1];
    assert_eq!(retry["level"], "warn");
    assert_eq!(retry["model"], "a/claude-haiku-4-5");
    assert_eq!(retry["upstream_attempt"], 1);
    assert_eq!(retry["error_class"], "transient");
    assert_eq!(retry["retry_after_ms"], 20);
    assert!(retry["delay_ms"].as_u64().unwrap() >= 20, "{retry}");
    assert_eq!(
        retry["error"],
        "upstream returned 429: slow down, key [REDACTED]"
    );
    assert_eq!(call[0]["http_status"], 429);
    assert_eq!(call[2]["http_status"], 200);

    let request = &call[3];
    assert_eq!(request["level"], "info");
    assert_eq!(request["msg"], "invoke 200");
    for (key, value) in [
        ("group", json!("g")),
        ("model_resolved", json!("a/claude-haiku-4-5")),
        ("http_status", json!(200)),
        ("tokens_in", json!(150)),
        ("tokens_out", json!(20)),
        ("cache_read_tokens", json!(50)),
        ("cache_write_tokens", json!(0)),
        ("stop_reason", json!("end_turn")),
        ("attempts", json!(2)),
    ] {
        assert_eq!(request[key], value, "{key}: {request}");
    }
    // Haiku 4.5: 100 × $1 + 50 × $0.10 + 20 × $5 per million.
    let cost = request["cost_usd"].as_f64().unwrap();
    assert!((cost - 0.000205).abs() < 1e-12, "{request}");
    assert_eq!(request["cost_usd"], answer.body["cost_usd"]);
    assert!(request["duration_ms"].is_u64() && request["queue_ms"].is_u64());
    assert!(request.get("error_code").is_none() && request.get("model").is_none());
    gw.stop().await;
}

#[actix_rt::test]
async fn refused_and_failed_calls_are_recorded_with_their_outcome() {
    let upstream = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(error_quoting_the_key(401))
        .mount(&upstream)
        .await;
    let gw = gateway(&upstream).await;

    let unknown = gw
        .post(json!({"run_id": "run_00000000000010b1", "group": "nope",
                     "messages": [{"role": "user", "content": "hi"}]}))
        .await;
    assert_eq!(unknown.status.as_u16(), 400);
    let record = records("call_id", unknown.header("x-ktsu-call-id").unwrap());
    assert_eq!(events(&record), vec!["gateway.request"]);
    let record = &record[0];
    assert_eq!(record["level"], "warn");
    assert_eq!(record["run_id"], "run_00000000000010b1");
    assert!(record.get("step_id").is_none() && record.get("attempt").is_none());
    assert_eq!(record["group"], "nope");
    assert_eq!(record["http_status"], 400);
    assert_eq!(record["error_code"], "unknown_group");
    assert_eq!(record["error"], "model group \"nope\" not found");
    assert_eq!(record["attempts"], 0);
    assert!(record.get("model").is_none() && record.get("cost_usd").is_none());

    let malformed = gw.post_raw(b"{\"group\": ").await;
    let record = &records("call_id", malformed.header("x-ktsu-call-id").unwrap())[0];
    assert_eq!(
        (record["http_status"].clone(), record["error_code"].clone()),
        (json!(400), json!("invalid_json"))
    );

    let failed = gw
        .post(
            json!({"run_id": "run_00000000000010b2", "step_id": "s", "group": "g",
                     "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    assert_eq!(failed.status.as_u16(), 502, "{}", failed.body);
    let record = records("call_id", failed.header("x-ktsu-call-id").unwrap());
    let record = record.last().unwrap();
    assert_eq!(record["event"], "gateway.request");
    assert_eq!(record["http_status"], 502);
    assert_eq!(record["error_code"], "provider_error");
    assert_eq!(
        record["model"], "a/claude-haiku-4-5",
        "the last model tried"
    );
    assert_eq!(
        record["error"],
        "upstream returned 401: slow down, key [REDACTED]"
    );
    assert_eq!(record["attempts"], 1, "auth errors are not retried");
    gw.stop().await;
}

#[actix_rt::test]
async fn a_call_whose_client_goes_away_is_recorded() {
    let upstream = MockServer::start().await;
    let gw = gateway(&upstream).await;
    let body = serde_json::to_vec(&json!({"run_id": "run_00000000000010c1", "step_id": "gone",
        "group": "slow", "messages": [{"role": "user", "content": "hi"}]}))
    .unwrap();
    let addr = gw.addr;
    actix_rt::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        let head = format!(
            "POST /invoke HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).unwrap();
        stream.write_all(&body).unwrap();
        std::thread::sleep(Duration::from_millis(200));
    })
    .await
    .unwrap();
    let mut record = Vec::new();
    for _ in 0..50 {
        record = records("run_id", "run_00000000000010c1");
        if !record.is_empty() {
            break;
        }
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(events(&record), vec!["gateway.request"]);
    let record = &record[0];
    assert_eq!(record["http_status"], 499);
    assert_eq!(record["error_code"], "client_disconnected");
    assert_eq!(record["group"], "slow");
    assert!(record["call_id"].as_str().unwrap().starts_with("gw_"));
    gw.stop().await;
}
