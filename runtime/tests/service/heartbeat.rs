//! Registration and heartbeats (runtime-gateway.md §2.7).

use crate::harness::*;
use crate::support::*;
use ktsu_runtime::Settings;
use serde_json::json;
use std::time::Duration;

fn beating(sink_url: &str, gateway_url: &str) -> Settings {
    let mut settings = test_settings(gateway_url);
    settings.orchestrator_url = Some(sink_url.to_owned());
    settings.heartbeat_interval = Duration::from_millis(200);
    settings
}

async fn wait_for(sink: &CallbackSink, what: impl Fn(&[Received]) -> bool) -> Vec<Received> {
    for _ in 0..100 {
        let seen = sink.others();
        if what(&seen) {
            return seen;
        }
        actix_rt::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("condition not reached; seen: {:?}", sink.others());
}

#[actix_rt::test]
async fn registers_and_beats_while_idle() {
    let gateway = FakeGateway::start().await;
    let sink = CallbackSink::start().await;
    let rt = spawn_runtime(beating(&sink.url(), &gateway.url())).await;
    let seen = wait_for(&sink, |seen| {
        seen.iter().filter(|r| r.path == "/heartbeat").count() >= 3
    })
    .await;
    let register = seen
        .iter()
        .find(|r| r.path == "/runtimes/register")
        .expect("registered");
    let advertise = rt.url.clone();
    assert_eq!(register.body["runtime_id"], rt.runtime_id.as_str());
    assert_eq!(register.body["url"], advertise.as_str());
    assert_eq!(register.body["version"], ktsu_shared::VERSION);
    assert_eq!(register.body["max_concurrency"], 64);
    assert_eq!(register.body["max_queue"], 256);
    assert!(register.body["started_at"].as_str().unwrap().ends_with('Z'));
    let beat = seen.iter().find(|r| r.path == "/heartbeat").unwrap();
    assert_eq!(
        beat.body,
        json!({"runtime_id": rt.runtime_id, "url": advertise, "version": ktsu_shared::VERSION,
               "draining": false, "max_concurrency": 64, "running": 0, "queued": 0, "active": []})
    );
}

#[actix_rt::test]
async fn cancel_entries_in_heartbeat_answers_stop_legs() {
    let gateway = FakeGateway::start().await;
    let mut sink = CallbackSink::start().await;
    let rt = spawn_runtime(beating(&sink.url(), &gateway.url())).await;
    gateway.text_after(Duration::from_secs(30), "{}");
    let run = run_id();
    rt.invoke(&invoke_body(&run, &sink.callback_url(&run, "step", 1)))
        .await;
    let seen = wait_for(&sink, |seen| {
        seen.iter()
            .any(|r| r.path == "/heartbeat" && !r.body["active"].as_array().unwrap().is_empty())
    })
    .await;
    let beat = seen
        .iter()
        .find(|r| r.path == "/heartbeat" && !r.body["active"].as_array().unwrap().is_empty())
        .unwrap();
    let entry = &beat.body["active"][0];
    assert_eq!(entry["run_id"], run.as_str());
    assert_eq!(entry["step_id"], "step");
    assert_eq!(entry["attempt"], 1);
    assert_eq!(entry["state"], "running");
    assert!(entry["since"].as_str().unwrap().ends_with('Z'));
    assert_eq!(beat.body["running"], 1);

    // An entry for another attempt is ignored; the matching one cancels the leg.
    sink.heartbeat_answer(json!({"status": "ok", "cancel": [
        {"run_id": run, "step_id": "step", "attempt": 7},
        {"run_id": run, "step_id": "step", "attempt": 1}
    ]}));
    let callback = sink.next(WAIT).await.body;
    assert_eq!(callback["status"], "cancelled");
    assert_eq!(
        callback["error"],
        "cancelled: not expected by the orchestrator"
    );
}

#[actix_rt::test]
async fn draining_is_announced_in_heartbeats() {
    let gateway = FakeGateway::start().await;
    let sink = CallbackSink::start().await;
    let mut settings = beating(&sink.url(), &gateway.url());
    settings.heartbeat_interval = Duration::from_secs(60);
    let rt = spawn_runtime(settings).await;
    wait_for(&sink, |seen| seen.iter().any(|r| r.path == "/heartbeat")).await;
    rt.stop.stop();
    // The drain sends a beat at once, not a minute later.
    wait_for(&sink, |seen| {
        seen.iter()
            .any(|r| r.path == "/heartbeat" && r.body["draining"] == true)
    })
    .await;
}

#[actix_rt::test]
async fn registration_is_retried_until_the_orchestrator_is_up() {
    let gateway = FakeGateway::start().await;
    let placeholder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = placeholder.local_addr().unwrap().port();
    drop(placeholder);
    let mut settings = beating(&format!("http://127.0.0.1:{port}"), &gateway.url());
    settings.heartbeat_interval = Duration::ZERO;
    let rt = spawn_runtime(settings).await;
    // Serving does not wait for registration.
    assert_eq!(rt.get("/health").await.0, 200);
    actix_rt::time::sleep(Duration::from_millis(1500)).await;
    let sink = CallbackSink::start_on(port).await;
    let seen = wait_for(&sink, |seen| {
        seen.iter().any(|r| r.path == "/runtimes/register")
    })
    .await;
    assert!(
        seen.iter().all(|r| r.path != "/heartbeat"),
        "heartbeats disabled by interval 0"
    );
}
