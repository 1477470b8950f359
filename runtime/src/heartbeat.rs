//! Registration and heartbeats (runtime-gateway.md §2.7): register once right after binding
//! (retried in the background, never blocking), then beat every `KTSU_HEARTBEAT_INTERVAL_S`
//! for the life of the process, idle or not, and cancel what the orchestrator no longer expects.

use crate::manager::{Cancel, Manager, TakeSnapshot};
use crate::settings::Settings;
use actix::{Actor, ActorFutureExt, Addr, AsyncContext, Context, Handler, Message, WrapFuture};
use ktsu_shared::http::{read_body, ClientSettings};
use ktsu_shared::service::lifecycle::Lifecycle;
use ktsu_shared::time::Timestamp;
use ktsu_shared::wire::heartbeat::{Heartbeat, HeartbeatAnswer, RegisterRequest};
use std::sync::Arc;
use std::time::{Duration, Instant};

const CALL_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_REGISTER_DELAY: Duration = Duration::from_secs(30);
const MAX_ANSWER_BYTES: usize = 4 * 1024 * 1024;
/// `heartbeat.failed` is logged at most this often.
const FAILURE_LOG_EVERY: Duration = Duration::from_secs(60);
/// The reason of heartbeat cancels (§2.7).
const NOT_EXPECTED: &str = "not expected by the orchestrator";

/// Why a beat failed.
enum BeatProblem {
    Status(u16),
    Error(String),
}

pub struct HeartbeatActor {
    orchestrator_url: String,
    runtime_id: Arc<str>,
    advertise_url: String,
    settings: Arc<Settings>,
    manager: Addr<Manager>,
    lifecycle: Lifecycle,
    client: awc::Client,
    started_at: Timestamp,
    /// A beat is on its way: the next tick waits for it.
    beating: bool,
    last_failure_log: Option<Instant>,
}

impl HeartbeatActor {
    pub fn new(
        orchestrator_url: String,
        runtime_id: Arc<str>,
        advertise_url: String,
        settings: Arc<Settings>,
        manager: Addr<Manager>,
        lifecycle: Lifecycle,
    ) -> Result<HeartbeatActor, ktsu_shared::http::InvalidHeader> {
        let client = ClientSettings::new(CALL_TIMEOUT)
            .bearer_token(settings.internal_token.clone())
            .build()?;
        Ok(HeartbeatActor {
            orchestrator_url,
            runtime_id,
            advertise_url,
            settings,
            manager,
            lifecycle,
            client,
            started_at: Timestamp::now(),
            beating: false,
            last_failure_log: None,
        })
    }

    fn beat(&mut self, ctx: &mut Context<Self>) {
        if self.beating {
            return;
        }
        self.beating = true;
        let manager = self.manager.clone();
        let client = self.client.clone();
        let url = format!("{}/heartbeat", self.orchestrator_url);
        let mut beat = Heartbeat {
            runtime_id: self.runtime_id.to_string(),
            url: Some(self.advertise_url.clone()),
            version: ktsu_shared::VERSION.to_owned(),
            draining: self.lifecycle.is_draining(),
            max_concurrency: Some(self.settings.max_concurrency),
            running: None,
            queued: None,
            active: Vec::new(),
        };
        let exchange = async move {
            let snapshot = manager
                .send(TakeSnapshot)
                .await
                .map_err(|err| BeatProblem::Error(format!("invocation manager: {err}")))?;
            beat.running = Some(snapshot.running);
            beat.queued = Some(snapshot.queued);
            beat.active = snapshot.active;
            let mut response = client
                .post(url)
                .timeout(CALL_TIMEOUT)
                .send_json(&beat)
                .await
                .map_err(|err| {
                    BeatProblem::Error(ktsu_shared::http::OutboundError::from(err).to_string())
                })?;
            let status = response.status();
            if !status.is_success() {
                return Err(BeatProblem::Status(status.as_u16()));
            }
            let body = read_body(&mut response, MAX_ANSWER_BYTES)
                .await
                .map_err(|err| BeatProblem::Error(err.to_string()))?;
            // `cancel` absent counts as `[]`; the rest of the answer is ignored.
            Ok(serde_json::from_slice::<HeartbeatAnswer>(&body).unwrap_or_default())
        };
        ctx.spawn(exchange.into_actor(self).map(|result, actor, _| {
            actor.beating = false;
            match result {
                Ok(answer) => {
                    for entry in answer.cancel {
                        actor
                            .manager
                            .do_send(Cancel(entry.to_cancel_request(NOT_EXPECTED)));
                    }
                }
                Err(problem) => actor.log_failure(&problem),
            }
        }));
    }

    fn log_failure(&mut self, problem: &BeatProblem) {
        let due = self
            .last_failure_log
            .is_none_or(|at| at.elapsed() >= FAILURE_LOG_EVERY);
        if !due {
            return;
        }
        self.last_failure_log = Some(Instant::now());
        match problem {
            BeatProblem::Status(status) => {
                log::warn!(event = "heartbeat.failed", http_status = *status; "heartbeat failed")
            }
            BeatProblem::Error(error) => {
                log::warn!(event = "heartbeat.failed", error = error.as_str(); "heartbeat failed")
            }
        }
    }
}

impl Actor for HeartbeatActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let register = RegisterRequest {
            runtime_id: self.runtime_id.to_string(),
            url: self.advertise_url.clone(),
            version: ktsu_shared::VERSION.to_owned(),
            max_concurrency: Some(self.settings.max_concurrency),
            max_queue: Some(self.settings.max_queue),
            started_at: Some(self.started_at),
        };
        ctx.spawn(
            register_until_done(self.client.clone(), self.orchestrator_url.clone(), register)
                .into_actor(self),
        );
        let interval = self.settings.heartbeat_interval;
        if !interval.is_zero() {
            self.beat(ctx);
            ctx.run_interval(interval, |actor, ctx| actor.beat(ctx));
        }
    }
}

/// Beat now (shutdown started: the orchestrator should learn `draining` at once).
#[derive(Message)]
#[rtype(result = "()")]
pub struct BeatNow;

impl Handler<BeatNow> for HeartbeatActor {
    type Result = ();

    fn handle(&mut self, _: BeatNow, ctx: &mut Context<Self>) {
        if !self.settings.heartbeat_interval.is_zero() {
            self.beat(ctx);
        }
    }
}

/// `POST <orch>/runtimes/register` until a 2xx, or a 404/405 (not supported); other failures
/// retry after 1, 2, 4 … s (at most 30 s).
async fn register_until_done(client: awc::Client, orchestrator_url: String, body: RegisterRequest) {
    let url = format!("{orchestrator_url}/runtimes/register");
    let mut delay = Duration::from_secs(1);
    loop {
        let sent = client
            .post(&url)
            .timeout(CALL_TIMEOUT)
            .send_json(&body)
            .await;
        match sent {
            Ok(response) if response.status().is_success() => {
                log::info!(event = "runtime.registered", orchestrator_url = orchestrator_url.as_str(),
                    http_status = response.status().as_u16(); "registered with the orchestrator");
                return;
            }
            Ok(response) if matches!(response.status().as_u16(), 404 | 405) => {
                log::info!(event = "runtime.registration_unsupported", orchestrator_url = orchestrator_url.as_str(),
                    http_status = response.status().as_u16(); "the orchestrator does not support registration");
                return;
            }
            Ok(response) => {
                log::warn!(event = "runtime.registration_failed", orchestrator_url = orchestrator_url.as_str(),
                    http_status = response.status().as_u16(); "registration failed; retrying");
            }
            Err(err) => {
                let error = ktsu_shared::http::OutboundError::from(err).to_string();
                log::warn!(event = "runtime.registration_failed", orchestrator_url = orchestrator_url.as_str(),
                    error = error.as_str(); "registration failed; retrying");
            }
        }
        actix_rt::time::sleep(delay).await;
        delay = (delay * 2).min(MAX_REGISTER_DELAY);
    }
}

/// Stops beating (the runtime has stopped).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Halt;

impl Handler<Halt> for HeartbeatActor {
    type Result = ();

    fn handle(&mut self, _: Halt, ctx: &mut Context<Self>) {
        actix::ActorContext::stop(ctx);
    }
}
