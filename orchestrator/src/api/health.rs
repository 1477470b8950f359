//! `GET /health` and `GET /health/live` (orchestrator.md §2.4, cli-and-ops.md §4).

use super::State;
use crate::actors::registry::List;
use actix_web::http::header::CACHE_CONTROL;
use actix_web::HttpResponse;
use ktsu_shared::service::lifecycle::Phase;
use serde_json::json;
use std::time::Duration;

const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// `ok`, `unhealthy` or `down` for one peer's `/health`.
async fn probe(url: &str) -> &'static str {
    let client = awc::Client::builder().timeout(PROBE_TIMEOUT).finish();
    match client
        .get(format!("{}/health", url.trim_end_matches('/')))
        .send()
        .await
    {
        Ok(r) if r.status().is_success() => "ok",
        Ok(_) => "unhealthy",
        Err(_) => "down",
    }
}

pub async fn live(state: State) -> HttpResponse {
    state.lifecycle.live_response()
}

pub async fn health(state: State) -> HttpResponse {
    let phase = state.lifecycle.phase();
    let gateway = async {
        match &state.settings.gateway_url {
            Some(u) => probe(u).await,
            None => "unconfigured",
        }
    };
    let runtime = async {
        let live = state
            .registry
            .send(List)
            .await
            .map(|l| {
                l.iter().any(|r| {
                    r.status == "live" && r.runtime_id != crate::actors::registry::CONFIG_ID
                })
            })
            .unwrap_or(false);
        if live {
            "ok"
        } else {
            match &state.settings.runtime_url {
                Some(u) => probe(u).await,
                None => "unconfigured",
            }
        }
    };
    let store_ok = async { state.store.get_run("health-probe").await.is_ok() };
    let (gateway, runtime, store_ok) = futures_util::join!(gateway, runtime, store_ok);
    let peers_ok = [gateway, runtime]
        .iter()
        .all(|s| *s == "ok" || *s == "unconfigured");
    let status = match phase {
        Phase::Starting => "starting",
        Phase::Draining => "draining",
        Phase::Ready if peers_ok && store_ok => "ok",
        Phase::Ready => "error",
    };
    let body = json!({
        "status": status,
        "version": ktsu_shared::VERSION,
        "store": state.store.kind(),
        "services": {"orchestrator": if phase == Phase::Ready { "ok" } else { status }, "runtime": runtime, "gateway": gateway},
    });
    let mut res = if status == "ok" {
        HttpResponse::Ok()
    } else {
        HttpResponse::ServiceUnavailable()
    };
    res.insert_header((CACHE_CONTROL, "no-store")).json(body)
}
