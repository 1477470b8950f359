//! Dispatching an agent attempt to a runtime (orchestrator.md §5.2.3–§5.2.5): budget check,
//! least-loaded runtime selection, retries within `KTSU_DISPATCH_RETRY_S`, cancel notices.

use super::{jitter, Outbound};
use crate::actors::registry::{Active, CoolDown, Select, UrlOf};
use crate::engine::{Dispatch, Event};
use ktsu_shared::wire::invoke::{Budget, CancelRequest};
use std::time::{Duration, Instant};

const TARGET: &str = "ktsu_orchestrator::steps::agent";

/// The run's budget: limit and root run id.
#[derive(Debug, Clone)]
pub struct BudgetInfo {
    pub root_run_id: String,
    pub limit_usd: f64,
}

/// Sends one dispatch; returns `Dispatched` or `DispatchFailed`.
pub async fn dispatch(
    out: Outbound,
    run_id: String,
    budget: Option<BudgetInfo>,
    mut d: Dispatch,
) -> Event {
    let failed = |code: &str, error: String, d: &Dispatch| Event::DispatchFailed {
        address: d.address.clone(),
        attempt: d.attempt,
        code: code.into(),
        error,
    };
    if let Some(b) = &budget {
        match out.store.tree_spend(&b.root_run_id).await {
            Ok(spent) if spent >= b.limit_usd => {
                log::warn!(
                    target: TARGET,
                    event = "budget.exhausted",
                    run_id = run_id.as_str(),
                    step_id = d.address.as_str(),
                    limit_usd = b.limit_usd,
                    spent_usd = spent;
                    "cost budget exhausted"
                );
                let error = format!(
                    "cost budget exhausted: spent {spent} of {} USD",
                    b.limit_usd
                );
                return failed("budget_exceeded", error, &d);
            }
            Ok(spent) => {
                d.request.budget = Some(Budget {
                    run_id: b.root_run_id.clone(),
                    limit_usd: b.limit_usd,
                    spent_usd: spent,
                });
            }
            Err(e) => {
                // Without the spend the budget cannot be enforced: refuse rather than overspend.
                return failed(
                    "internal_error",
                    format!("internal error: budget unavailable ({e})"),
                    &d,
                );
            }
        }
    }
    let body = match serde_json::to_vec(&d.request) {
        Ok(b) => b,
        Err(e) => return failed("internal_error", format!("internal error: {e}"), &d),
    };
    let key = format!("{}:{}:{}", run_id, d.address, d.attempt);
    let step_label = d
        .address
        .split('.')
        .next()
        .unwrap_or(&d.address)
        .to_string();
    let started = Instant::now();
    let mut backoff = Duration::from_millis(250);
    let mut last_error = String::from("no runtime is registered");
    loop {
        let chosen = out.registry.send(Select).await.ok().flatten();
        if let Some(rt) = chosen {
            let url = format!("{}/invoke", rt.url.trim_end_matches('/'));
            let sent = out
                .internal
                .post(&url)
                .timeout(out.dispatch_timeout)
                .insert_header(("Content-Type", "application/json"))
                .insert_header(("Idempotency-Key", key.as_str()))
                .send_body(body.clone())
                .await;
            match sent {
                Ok(res) if res.status().is_success() => {
                    out.registry.do_send(Active {
                        runtime_id: rt.runtime_id.clone(),
                        key: format!("{run_id}/{}", d.address),
                        add: true,
                    });
                    return Event::Dispatched {
                        address: d.address,
                        attempt: d.attempt,
                        runtime_id: rt.runtime_id,
                        runtime_url: rt.url,
                    };
                }
                Ok(res) => {
                    let code = res.status().as_u16();
                    if code == 408 || code == 429 || code >= 500 {
                        last_error = format!("runtime {} answered HTTP {code}", rt.url);
                        out.registry.do_send(CoolDown {
                            runtime_id: rt.runtime_id,
                            for_: Duration::from_secs(5),
                        });
                    } else {
                        let error = format!(
                            "runtime {} rejected step \"{step_label}\": HTTP {code}",
                            rt.url
                        );
                        return failed("dispatch_rejected", error, &d);
                    }
                }
                Err(e) => {
                    last_error = format!("runtime {}: {e}", rt.url);
                    out.registry.do_send(CoolDown {
                        runtime_id: rt.runtime_id,
                        for_: Duration::from_secs(5),
                    });
                }
            }
        }
        if started.elapsed() + backoff > out.dispatch_retry {
            let error = format!(
                "no runtime accepted step \"{step_label}\" within {}s: {last_error}",
                out.dispatch_retry.as_secs()
            );
            return failed("runtime_unavailable", error, &d);
        }
        let wait = jitter(backoff);
        log::warn!(
            target: TARGET,
            event = "dispatch.retry",
            run_id = run_id.as_str(),
            step_id = d.address.as_str(),
            attempt = d.attempt,
            cause = last_error.as_str(),
            retry_in_ms = u64::try_from(wait.as_millis()).unwrap_or(0);
            "dispatch failed; retrying"
        );
        actix_rt::time::sleep(wait).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// `POST <runtime>/cancel` (orchestrator.md §5.2.5): 5 s timeout, one retry after 1 s;
/// answers are only logged.
pub async fn cancel_notice(out: Outbound, runtime_id: String, body: CancelRequest) {
    let Some(url) = out
        .registry
        .send(UrlOf(runtime_id.clone()))
        .await
        .ok()
        .flatten()
    else {
        return;
    };
    let target = format!("{}/cancel", url.trim_end_matches('/'));
    for attempt in 0..2 {
        let res = out
            .internal
            .post(&target)
            .timeout(Duration::from_secs(5))
            .send_json(&body)
            .await;
        match res {
            Ok(r) if r.status().is_success() || r.status().as_u16() == 404 => return,
            Ok(r) if attempt == 1 => {
                log::warn!(
                    target: TARGET,
                    event = "runtime.cancel_failed",
                    run_id = body.run_id.as_str(),
                    step_id = body.step_id.as_str(),
                    runtime_url = url.as_str(),
                    cause = format!("HTTP {}", r.status().as_u16()).as_str();
                    "runtime did not accept the cancel notice"
                );
            }
            Err(e) if attempt == 1 => {
                log::warn!(
                    target: TARGET,
                    event = "runtime.cancel_failed",
                    run_id = body.run_id.as_str(),
                    step_id = body.step_id.as_str(),
                    runtime_url = url.as_str(),
                    cause = e.to_string().as_str();
                    "cancel notice failed"
                );
            }
            _ => actix_rt::time::sleep(Duration::from_secs(1)).await,
        }
    }
}
