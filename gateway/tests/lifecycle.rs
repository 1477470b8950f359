//! Startup and shutdown (cli-and-ops.md §3): exit codes of startup failures, nothing bound on
//! a bad configuration, `--mock`, and the graceful drain.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use actix_web::http::StatusCode;
use common::{request, TestGateway};
use ktsu_gateway::{Application, GatewayFile, Settings, StartError};
use std::collections::HashMap;
use std::net::TcpListener;
use std::time::{Duration, Instant};

fn no_env() -> HashMap<String, String> {
    HashMap::new()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn build(
    yaml: &str,
    tweak: impl FnOnce(&mut Settings),
) -> (Result<Application, StartError>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.yaml");
    std::fs::write(&path, yaml).unwrap();
    let mut settings = Settings::local(GatewayFile::Path(path));
    tweak(&mut settings);
    (Application::build_with_env(settings, &no_env()).await, dir)
}

#[actix_rt::test]
async fn startup_failures_have_their_exit_codes() {
    // Invalid configuration: exit 3, every error listed, nothing bound.
    let port = free_port();
    let bad = "providers:\n  - { name: a, type: anthropic }\nmodel_groups:\n  - { name: g, models: [nope] }\nsettings: { retry: { max_attempts: 0 } }\n";
    let (result, _dir) = build(bad, |s| s.port = port).await;
    let Err(err) = result else {
        panic!("an invalid config started")
    };
    assert_eq!(err.exit_code(), 3);
    let StartError::InvalidConfig(diagnostics) = &err else {
        panic!("{err:?}")
    };
    assert!(diagnostics.len() >= 3, "{diagnostics:?}");
    assert!(
        TcpListener::bind(("127.0.0.1", port)).is_ok(),
        "nothing was bound"
    );

    // Missing file: exit 2 with the spec's message.
    let settings = Settings::local(GatewayFile::Path("/nonexistent/gateway.yaml".into()));
    let err = Application::build_with_env(settings, &no_env())
        .await
        .err()
        .unwrap();
    assert_eq!(err.exit_code(), 2);
    assert!(
        err.to_string()
            .starts_with("gateway config /nonexistent/gateway.yaml: "),
        "{err}"
    );

    // Port taken: exit 1.
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let ok =
        "providers:\n  - { name: m, type: mock }\nmodel_groups:\n  - { name: g, models: [m/x] }\n";
    let (result, _dir) = build(ok, |s| s.port = port).await;
    let err = result.err().unwrap();
    assert_eq!(err.exit_code(), 1);
    assert!(
        err.to_string()
            .starts_with(&format!("cannot bind 127.0.0.1:{port}: ")),
        "{err}"
    );
}

#[actix_rt::test]
async fn mock_mode_replaces_every_provider() {
    let yaml = "env:\n  - { name: ANTHROPIC_API_KEY, secret: true }\nproviders:\n  - { name: anthropic, type: anthropic, config: { api_key: \"{{ env.ANTHROPIC_API_KEY }}\" } }\nmodel_groups:\n  - { name: standard, models: [anthropic/claude-sonnet-4-5] }\n";
    // Without a key the real gateway does not start…
    let (result, _dir) = build(yaml, |_| {}).await;
    assert_eq!(result.err().unwrap().exit_code(), 3);
    // …with --mock it does, and answers offline.
    let gw = TestGateway::start_with(yaml, |s| s.mock = true, &[]).await;
    let answer = gw.post(request("standard")).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(answer.body["model_resolved"], "anthropic/claude-sonnet-4-5");
    assert_eq!(answer.body["content"], r#"{"result":"mock"}"#);
    assert_eq!(
        answer.body["cost_usd"], 0,
        "mock models have no built-in price"
    );
    assert_eq!(
        gw.post(request("other")).await.status.as_u16(),
        400,
        "groups still come from the file"
    );
    gw.stop().await;

    // --mock without a file: every group name is served by mock/default.
    let dir = tempfile::tempdir().unwrap();
    let mut settings = Settings::local(GatewayFile::MockOnly);
    settings.mock = true;
    let gw = TestGateway::start_settings(settings, &[], dir).await;
    for group in ["standard", "premium", "whatever.else"] {
        let answer = gw.post(request(group)).await;
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(answer.body["model_resolved"], "mock/default");
    }
    gw.stop().await;
}

#[actix_rt::test]
async fn stop_drains_calls_in_flight() {
    let yaml = "providers:\n  - { name: m, type: mock, config: { latency_ms: 800 } }\nmodel_groups:\n  - { name: g, models: [m/x] }\n";
    let gw = TestGateway::start(yaml).await;
    let stop = gw.stop.clone();
    let in_flight = gw.post(request("g"));
    let observer = async {
        actix_rt::time::sleep(Duration::from_millis(150)).await;
        let stopping = Instant::now();
        let stopped = stop.stop();
        let probe = async {
            actix_rt::time::sleep(Duration::from_millis(100)).await;
            let health = gw.get("/health").await;
            let live = gw.get("/health/live").await;
            // Calls that still arrive while draining are served (agent loops finishing).
            let late = gw.post(request("g")).await;
            (health, live, late)
        };
        let ((), probes) = futures_util::future::join(stopped, probe).await;
        (probes, stopping.elapsed())
    };
    let (first, ((health, live, late), stop_took)) =
        futures_util::future::join(in_flight, observer).await;
    assert_eq!(health.status.as_u16(), 503);
    assert_eq!(health.body["status"], "draining");
    assert_eq!(live.status, StatusCode::OK);
    assert_eq!(first.status, StatusCode::OK, "the call in flight finished");
    assert_eq!(late.status, StatusCode::OK);
    assert!(
        stop_took >= Duration::from_millis(800),
        "stop waited for the calls: {stop_took:?}"
    );
    assert!(stop_took < Duration::from_secs(5), "{stop_took:?}");
    assert!(
        std::net::TcpStream::connect(gw.addr).is_err(),
        "the listener is closed"
    );
}

#[actix_rt::test]
async fn the_grace_period_bounds_the_drain() {
    let yaml = "providers:\n  - { name: m, type: mock, config: { latency_ms: 20000 } }\nmodel_groups:\n  - { name: g, models: [m/x] }\n";
    let gw =
        TestGateway::start_with(yaml, |s| s.shutdown_grace = Duration::from_millis(500), &[]).await;
    let url = format!("{}/invoke", gw.url);
    let client = gw.client.clone();
    let body = serde_json::to_vec(&request("g")).unwrap();
    let call = async move { client.post(url).send_body(body).await.map(|r| r.status()) };
    let stopping = async {
        actix_rt::time::sleep(Duration::from_millis(150)).await;
        let started = Instant::now();
        gw.stop.stop().await;
        started.elapsed()
    };
    let (call, took) = futures_util::future::join(call, stopping).await;
    assert!(
        took >= Duration::from_millis(450) && took < Duration::from_secs(5),
        "{took:?}"
    );
    assert!(call.is_err(), "the unfinished call was cut off: {call:?}");
}
