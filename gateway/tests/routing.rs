//! Routing over real HTTP: strategies, retries and fallback, the circuit breaker, the provider
//! pool (queueing, full queue, deadline while queued, client disconnect) and run budgets.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use actix_web::http::StatusCode;
use common::{request, Answer, TestGateway};
use futures_util::future::join_all;
use serde_json::json;
use std::collections::HashMap;
use std::io::Write;
use std::time::{Duration, Instant};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

fn models(answer: &Answer) -> Vec<(String, String)> {
    answer.body["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["model"].as_str().unwrap().to_string(),
                a["outcome"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(a, b)| ((*a).to_string(), (*b).to_string()))
        .collect()
}

#[actix_rt::test]
async fn round_robin_distribution() {
    let yaml = "providers:\n  - { name: m, type: mock }\nmodel_groups:\n  - { name: rr, models: [m/a, m/b, m/c] }\n";
    let gw = TestGateway::start(yaml).await;
    let mut sequence = Vec::new();
    for _ in 0..6 {
        let answer = gw.post(request("rr")).await;
        sequence.push(answer.body["model_resolved"].as_str().unwrap().to_string());
    }
    assert_eq!(sequence, vec!["m/a", "m/b", "m/c", "m/a", "m/b", "m/c"]);
    let answers = join_all((0..30).map(|_| gw.post(request("rr")))).await;
    let mut counts: HashMap<String, usize> = HashMap::new();
    for a in &answers {
        assert_eq!(a.status, StatusCode::OK);
        *counts
            .entry(a.body["model_resolved"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    assert_eq!(
        counts.values().copied().collect::<Vec<_>>(),
        vec![10, 10, 10],
        "{counts:?}"
    );
    gw.stop().await;
}

#[actix_rt::test]
async fn fallback_after_retries_are_exhausted() {
    let yaml = "settings:\n  retry: { max_attempts: 3, initial_backoff_ms: 1, max_backoff_ms: 2 }\nproviders:\n  - { name: bad, type: mock, config: { fail_first: 1000000, fail_status: 503 } }\n  - { name: good, type: mock }\nmodel_groups:\n  - { name: g, models: [bad/x, good/y], strategy: fallback }\n";
    let gw = TestGateway::start(yaml).await;
    let answer = gw.post(request("g")).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(answer.body["model_resolved"], "good/y");
    assert_eq!(
        models(&answer),
        pairs(&[
            ("bad/x", "error"),
            ("bad/x", "error"),
            ("bad/x", "error"),
            ("good/y", "ok")
        ])
    );
    let numbers: Vec<u64> = answer.body["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["attempt"].as_u64().unwrap())
        .collect();
    assert_eq!(numbers, vec![1, 2, 3, 1]);
    gw.stop().await;
}

#[actix_rt::test]
async fn cost_optimized_orders_by_estimated_cost() {
    let yaml = "settings:\n  retry: { max_attempts: 1 }\nproviders:\n  - { name: f, type: mock, config: { fail_first: 1000000 } }\n  - { name: m, type: mock }\nmodel_groups:\n  - name: g\n    strategy: cost_optimized\n    models: [m/unpriced, f/dear, f/cheap]\n    pricing:\n      - { model: dear, input_per_million: 10, output_per_million: 10 }\n      - { model: cheap, input_per_million: 1, output_per_million: 1 }\n";
    let gw = TestGateway::start(yaml).await;
    let answer = gw.post(request("g")).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(
        models(&answer),
        pairs(&[
            ("f/cheap", "error"),
            ("f/dear", "error"),
            ("m/unpriced", "ok")
        ])
    );
    gw.stop().await;
}

#[actix_rt::test]
async fn the_breaker_opens_and_closes() {
    let upstream = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(503).set_body_json(json!({"error": {"message": "down"}})),
        )
        .mount(&upstream)
        .await;
    let yaml = format!(
        "settings:\n  retry: {{ max_attempts: 1 }}\n  circuit_breaker: {{ failure_threshold: 2, cooldown_s: 1 }}\nproviders:\n  - {{ name: o, type: openai, config: {{ base_url: \"{}/v1\", api_key: unused }} }}\n  - {{ name: m, type: mock }}\nmodel_groups:\n  - {{ name: g, models: [o/flaky, m/ok], strategy: fallback }}\n  - {{ name: solo, models: [o/flaky] }}\n",
        upstream.uri()
    );
    let gw = TestGateway::start(&yaml).await;
    for _ in 0..2 {
        let answer = gw.post(request("g")).await;
        assert_eq!(
            models(&answer),
            pairs(&[("o/flaky", "error"), ("m/ok", "ok")])
        );
    }
    // Open: skipped without a call.
    let answer = gw.post(request("g")).await;
    assert_eq!(
        models(&answer),
        pairs(&[("o/flaky", "skipped_circuit_open"), ("m/ok", "ok")])
    );
    assert_eq!(upstream.received_requests().await.unwrap().len(), 2);
    // One breaker per model string, shared by groups: every candidate of `solo` is open.
    let open = gw.post(request("solo")).await;
    assert_eq!(open.status.as_u16(), 503, "{}", open.body);
    assert_eq!(open.code(), "circuit_open");
    assert_eq!(open.body["retryable"], true);
    assert_eq!(open.header("x-should-retry"), Some("true"));
    assert_eq!(open.header("retry-after"), Some("1"));

    // The provider recovers; after the cooldown one trial closes the circuit.
    upstream.reset().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "choices": [{"finish_reason": "stop", "message": {"content": "back"}}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1}})))
        .mount(&upstream)
        .await;
    actix_rt::time::sleep(Duration::from_millis(1100)).await;
    for _ in 0..2 {
        let answer = gw.post(request("g")).await;
        assert_eq!(
            models(&answer),
            pairs(&[("o/flaky", "ok")]),
            "{}",
            answer.body
        );
    }
    gw.stop().await;
}

#[actix_rt::test]
async fn queueing_under_max_concurrency() {
    let yaml = "providers:\n  - { name: m, type: mock, max_concurrency: 2, max_queue: 10, config: { latency_ms: 300 } }\nmodel_groups:\n  - { name: g, models: [m/x] }\n";
    let gw = TestGateway::start_with(yaml, |s| s.workers = Some(2), &[]).await;
    let started = Instant::now();
    let answers = join_all((0..6).map(|_| gw.post(request("g")))).await;
    let elapsed = started.elapsed();
    assert!(answers.iter().all(|a| a.status == StatusCode::OK));
    // Two at a time: three waves of 300 ms.
    assert!(elapsed >= Duration::from_millis(880), "{elapsed:?}");
    assert!(elapsed < Duration::from_millis(2500), "{elapsed:?}");
    gw.stop().await;
}

#[actix_rt::test]
async fn a_full_queue_is_overloaded() {
    let yaml = "providers:\n  - { name: m, type: mock, max_concurrency: 1, max_queue: 1, config: { latency_ms: 600 } }\nmodel_groups:\n  - { name: g, models: [m/x] }\n";
    let gw = TestGateway::start(yaml).await;
    let answers = join_all((0..3).map(|_| gw.post(request("g")))).await;
    let mut statuses: Vec<u16> = answers.iter().map(|a| a.status.as_u16()).collect();
    statuses.sort_unstable();
    assert_eq!(statuses, vec![200, 200, 503]);
    let refused = answers.iter().find(|a| a.status.as_u16() == 503).unwrap();
    assert_eq!(refused.code(), "overloaded");
    assert_eq!(refused.body["retryable"], true);
    assert_eq!(refused.header("x-should-retry"), Some("true"));
    assert_eq!(refused.header("retry-after"), Some("1"));
    assert_eq!(models(refused), pairs(&[("m/x", "overloaded")]));
    gw.stop().await;
}

#[actix_rt::test]
async fn the_deadline_ends_a_wait_in_the_queue() {
    let yaml = "providers:\n  - { name: m, type: mock, max_concurrency: 1, max_queue: 5, config: { latency_ms: 1000 } }\nmodel_groups:\n  - { name: g, models: [m/x] }\n";
    let gw = TestGateway::start(yaml).await;
    let first = gw.post(request("g"));
    let second = async {
        actix_rt::time::sleep(Duration::from_millis(150)).await;
        let mut short = request("g");
        short["timeout_s"] = json!(0.3);
        let started = Instant::now();
        let answer = gw.post(short).await;
        (answer, started.elapsed())
    };
    let (first, (second, waited)) = futures_util::future::join(first, second).await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(second.status.as_u16(), 504, "{}", second.body);
    assert_eq!(second.code(), "deadline_exceeded");
    assert!(
        waited < Duration::from_millis(800),
        "left the queue at its deadline: {waited:?}"
    );
    gw.stop().await;
}

#[actix_rt::test]
async fn a_client_that_disconnects_gives_its_slot_back() {
    let yaml = "providers:\n  - { name: m, type: mock, max_concurrency: 1, max_queue: 0, config: { latency_ms: 1500 } }\nmodel_groups:\n  - { name: g, models: [m/x] }\n";
    let gw = TestGateway::start(yaml).await;
    let addr = gw.addr;
    let body = serde_json::to_vec(&request("g")).unwrap();
    actix_rt::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        let head = format!(
            "POST /invoke HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).unwrap();
        stream.write_all(&body).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        // Gone: like a runtime that cancels a leg.
    })
    .await
    .unwrap();
    actix_rt::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        gw.stop.in_flight(),
        0,
        "the handler was dropped with the connection"
    );
    let answer = gw.post(request("g")).await;
    assert_eq!(
        answer.status,
        StatusCode::OK,
        "the slot was released: {}",
        answer.body
    );
    gw.stop().await;
}

/// 50 concurrent calls of one run against a small budget: the costs reported never add up to
/// more than the limit.
#[actix_rt::test]
async fn concurrent_calls_never_overspend_a_run_budget() {
    let yaml = "providers:\n  - { name: m, type: mock, max_concurrency: 64, config: { latency_ms: 20 } }\nmodel_groups:\n  - name: g\n    models: [m/priced]\n    default_max_tokens: 10\n    pricing: [{ model: priced, input_per_million: 100, output_per_million: 100 }]\n";
    let gw = TestGateway::start_with(yaml, |s| s.workers = Some(2), &[]).await;
    let limit = 0.05;
    let body = |i: usize| {
        json!({"run_id": "run_00000000000000aa.sub", "step_id": format!("fan.{i}"), "group": "g",
               "messages": [{"role": "user", "content": "classify this ticket please"}],
               "budget": {"run_id": "run_00000000000000aa", "limit_usd": limit, "spent_usd": 0}})
    };
    let answers = join_all((0..50).map(|i| gw.post(body(i)))).await;
    let mut spent = 0.0;
    let mut ok = 0;
    let mut refused = 0;
    let mut last_reported: f64 = 0.0;
    for a in &answers {
        match a.status.as_u16() {
            200 => {
                ok += 1;
                let cost = a.body["cost_usd"].as_f64().unwrap();
                assert!(cost > 0.0);
                spent += cost;
                let b = &a.body["budget"];
                assert_eq!(b["limit_usd"].as_f64(), Some(limit));
                assert!(b["spent_usd"].as_f64().unwrap() <= limit + 1e-12);
                last_reported = last_reported.max(b["spent_usd"].as_f64().unwrap());
            }
            402 => {
                refused += 1;
                assert_eq!(a.code(), "budget_exceeded");
                assert_eq!(a.header("x-should-retry"), Some("false"));
                assert_eq!(models(a), pairs(&[("m/priced", "skipped_budget")]));
            }
            other => panic!("unexpected {other}: {}", a.body),
        }
    }
    assert!(spent <= limit + 1e-12, "spent {spent} of {limit}");
    assert!(ok > 0 && refused > 0, "ok {ok}, refused {refused}");
    assert!(
        (last_reported - spent).abs() < 1e-9,
        "the ledger agrees: {last_reported} vs {spent}"
    );
    // Another run has its own ledger.
    let mut other = body(0);
    other["budget"]["run_id"] = json!("run_00000000000000bb");
    assert_eq!(gw.post(other).await.status, StatusCode::OK);
    gw.stop().await;
}

#[actix_rt::test]
async fn an_exhausted_budget_makes_no_upstream_call() {
    let upstream = MockServer::start().await;
    let yaml = format!(
        "providers:\n  - {{ name: o, type: openai, config: {{ base_url: \"{}/v1\", api_key: unused }} }}\nmodel_groups:\n  - {{ name: g, models: [o/gpt-4o-mini] }}\n",
        upstream.uri()
    );
    let gw = TestGateway::start(&yaml).await;
    let mut req = request("g");
    req["budget"] = json!({"run_id": "run_00000000000000cc", "limit_usd": 0.5, "spent_usd": 0.5});
    let answer = gw.post(req).await;
    assert_eq!(answer.status.as_u16(), 402, "{}", answer.body);
    assert_eq!(answer.code(), "budget_exceeded");
    assert!(upstream.received_requests().await.unwrap().is_empty());
    gw.stop().await;
}
