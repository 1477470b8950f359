//! Routing one call (runtime-gateway.md §9): candidate order by group strategy, then per
//! candidate: circuit breaker, budget reservation, a pool slot, the upstream attempt; retries of
//! transient failures with full-jitter backoff that honours `retry-after`; fallback to the next
//! candidate; the final error of §9.2 step 6.
//!
//! Everything a call holds (slot, reservation, half-open trial) is released by drop, so a client
//! that goes away mid-call releases it all when actix drops the handler future.

use crate::breaker::Admission;
use crate::budget::ReserveError;
use crate::call_event;
use crate::error::InvokeError;
use crate::logs::CallLog;
use crate::pool::Refusal;
use crate::pricing::{input_bytes, tokens_for_bytes};
use crate::providers::upstream::seconds;
use crate::providers::{AttemptError, Call, Failure, Reply};
use crate::state::{Candidate, Gateway, Group, Upstreams};
use ktsu_shared::project::{RetryPolicy, Strategy};
use ktsu_shared::schema::CompiledSchema;
use ktsu_shared::wire::gateway::{
    Attempt, AttemptOutcome, BudgetRequest, BudgetState, CallMetadata, ErrorClass, GatewayRequest,
};
use log::Level;
use std::cell::{Cell, OnceCell};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// A validated request, ready to route.
pub struct Plan<'a> {
    pub request: &'a GatewayRequest,
    pub metadata: CallMetadata,
    pub group_name: &'a str,
    pub group: &'a Group,
    pub max_tokens: u64,
    pub temperature: Option<f64>,
    pub output_schema: Option<CompiledSchema>,
    pub deadline: Instant,
    /// `ceil(bytes of messages + tools / 4)`, computed on first use.
    estimated_input: OnceCell<u64>,
}

impl<'a> Plan<'a> {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        request: &'a GatewayRequest,
        metadata: CallMetadata,
        group_name: &'a str,
        group: &'a Group,
        max_tokens: u64,
        temperature: Option<f64>,
        output_schema: Option<CompiledSchema>,
        deadline: Instant,
    ) -> Self {
        Plan {
            request,
            metadata,
            group_name,
            group,
            max_tokens,
            temperature,
            output_schema,
            deadline,
            estimated_input: OnceCell::new(),
        }
    }

    fn estimated_input(&self) -> u64 {
        *self
            .estimated_input
            .get_or_init(|| tokens_for_bytes(input_bytes(self.request)))
    }

    /// The worst-case cost of the call on a candidate (0 when it has no price).
    fn reserve(&self, candidate: &Candidate) -> f64 {
        candidate
            .price
            .map_or(0.0, |p| p.reserve(self.estimated_input(), self.max_tokens))
    }
}

/// The model that answered.
#[derive(Debug)]
pub struct Answered {
    pub model: String,
    pub reply: Reply,
    pub cost_usd: f64,
    pub budget: Option<BudgetState>,
    pub attempts: Vec<Attempt>,
    pub queue_ms: u64,
}

/// No model answered.
#[derive(Debug)]
pub struct Unanswered {
    pub error: InvokeError,
    pub attempts: Vec<Attempt>,
    pub queue_ms: u64,
}

/// How trying one candidate ended without an answer.
enum Skipped {
    Circuit(Duration),
    Budget,
    Overloaded,
    Failed,
}

struct Router<'a> {
    gateway: &'a Gateway,
    upstreams: &'a Upstreams,
    plan: &'a Plan<'a>,
    log: &'a CallLog,
    call_id: &'a str,
    attempts: Vec<Attempt>,
    queue_ms: u64,
    last_failure: Option<Failure>,
}

/// Routes one call.
pub async fn route(
    gateway: &Gateway,
    upstreams: &Upstreams,
    plan: &Plan<'_>,
    log: &CallLog,
) -> Result<Answered, Unanswered> {
    let mut router = Router {
        gateway,
        upstreams,
        plan,
        log,
        call_id: &log.call_id,
        attempts: Vec::new(),
        queue_ms: 0,
        last_failure: None,
    };
    match router.run().await {
        Ok((model, reply, cost_usd, budget)) => Ok(Answered {
            model,
            reply,
            cost_usd,
            budget,
            attempts: router.attempts,
            queue_ms: router.queue_ms,
        }),
        Err(error) => Err(Unanswered {
            error,
            attempts: router.attempts,
            queue_ms: router.queue_ms,
        }),
    }
}

type Success = (String, Reply, f64, Option<BudgetState>);

impl Router<'_> {
    async fn run(&mut self) -> Result<Success, InvokeError> {
        let order = candidate_order(self.plan);
        let mut skipped_budget = false;
        let mut overloaded = false;
        let mut circuit_wait: Option<Duration> = None;
        let ledger = self.plan.request.budget.as_ref().map(|b| {
            let key = b
                .run_id
                .as_deref()
                .or(Some(self.plan.request.run_id.as_str()))
                .filter(|k| !k.is_empty());
            self.gateway.ledgers.ledger(key)
        });
        for (position, &index) in order.iter().enumerate() {
            if Instant::now() >= self.plan.deadline {
                return Err(deadline_error());
            }
            let candidate = self.plan.group.candidates[index];
            let skipped = match self.try_candidate(candidate, ledger.as_ref()).await? {
                Ok(success) => return Ok(success),
                Err(skipped) => skipped,
            };
            let reason = match skipped {
                Skipped::Circuit(wait) => {
                    circuit_wait = Some(circuit_wait.map_or(wait, |w| w.min(wait)));
                    "circuit_open"
                }
                Skipped::Budget => {
                    skipped_budget = true;
                    "budget"
                }
                Skipped::Overloaded => {
                    overloaded = true;
                    "overloaded"
                }
                Skipped::Failed => self
                    .last_failure
                    .as_ref()
                    .map_or("error", |f| class_name(f.class)),
            };
            if let Some(&next) = order.get(position + 1) {
                let from = &self.gateway.models[candidate.model].full;
                let to = &self.gateway.models[self.plan.group.candidates[next].model].full;
                call_event!(self.log, Level::Warn, "model.fallback",
                    ["from" => from.as_str(), "to" => to.as_str(), "reason" => reason],
                    "falling back from {from} to {to} ({reason})");
            }
        }
        Err(self.final_error(skipped_budget, overloaded, circuit_wait))
    }

    /// Attempts on one candidate. Outer error: the call ends (invalid request, deadline, mock
    /// schema); inner: the next candidate is tried.
    async fn try_candidate(
        &mut self,
        candidate: Candidate,
        ledger: Option<&std::sync::Arc<crate::budget::Ledger>>,
    ) -> Result<Result<Success, Skipped>, InvokeError> {
        let gateway = self.gateway;
        let plan = self.plan;
        let model = &gateway.models[candidate.model];
        let provider = &gateway.providers[model.provider];
        let policy = plan.group.retry;
        let budget = plan.request.budget.as_ref();
        let reserve = budget.map(|_| plan.reserve(&candidate)).unwrap_or(0.0);
        let mut upstream_attempt = 0u32;
        loop {
            upstream_attempt += 1;
            let permit = match model.breaker.admit() {
                Admission::Pass(permit) => permit,
                Admission::Skip { retry_after } => {
                    if upstream_attempt == 1 {
                        self.skip(
                            &model.full,
                            upstream_attempt,
                            AttemptOutcome::SkippedCircuitOpen,
                        );
                    }
                    return Ok(Err(Skipped::Circuit(retry_after)));
                }
            };
            let reservation = match (ledger, budget) {
                (Some(ledger), Some(b)) => {
                    match ledger
                        .reserve(b.limit_usd, b.spent_usd, reserve, plan.deadline)
                        .await
                    {
                        Ok(r) => {
                            if let Some(waited) = r.waited {
                                call_event!(self.log, Level::Info, "budget.wait",
                                    ["reserve_usd" => reserve, "waited_ms" => millis(waited)],
                                    "waited {} ms for the run budget", millis(waited));
                            }
                            Some(r)
                        }
                        Err(ReserveError::Skip {
                            committed,
                            reserved,
                        }) => {
                            self.budget_rejected(b, committed, reserved, reserve, &model.full);
                            self.skip(&model.full, upstream_attempt, AttemptOutcome::SkippedBudget);
                            return Ok(Err(Skipped::Budget));
                        }
                        Err(ReserveError::Deadline) => return Err(deadline_error()),
                    }
                }
                _ => None,
            };
            let queued = Instant::now();
            let slot = match provider.pool.acquire(plan.deadline).await {
                Ok(slot) => slot,
                Err(Refusal::QueueFull) => {
                    call_event!(self.log, Level::Warn, "provider.queue_full",
                        ["provider" => provider.name.as_str(), "max_queue" => provider.pool.max_queue()],
                        "provider {} queue is full", provider.name);
                    self.skip(&model.full, upstream_attempt, AttemptOutcome::Overloaded);
                    return Ok(Err(Skipped::Overloaded));
                }
                Err(Refusal::Deadline) => return Err(deadline_error()),
            };
            self.queue_ms += millis(queued.elapsed());
            let remaining = plan.deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(deadline_error());
            }
            let attempt_timeout = provider.timeout.min(remaining);
            let clipped = remaining < provider.timeout;
            let call = Call {
                call_id: self.call_id,
                request: plan.request,
                metadata: &plan.metadata,
                group: plan.group_name,
                model: &model.id,
                max_tokens: plan.max_tokens,
                temperature: plan.temperature,
                output_schema: plan.output_schema.as_ref(),
            };
            let started = Instant::now();
            let outcome = tokio::time::timeout(
                attempt_timeout,
                provider.adapter.call(
                    self.upstreams.client(model.provider),
                    &call,
                    attempt_timeout,
                ),
            )
            .await
            .unwrap_or_else(|_| {
                Err(AttemptError::Upstream(Failure::new(
                    ErrorClass::Timeout,
                    None,
                    format!("upstream timed out after {} s", seconds(attempt_timeout)),
                )))
            });
            drop(slot);
            let duration_ms = millis(started.elapsed());
            let failure = match outcome {
                Ok(reply) => {
                    permit.record(None);
                    let cost = self.cost(&candidate, &reply);
                    let budget_state = reservation.map(|r| r.commit(cost));
                    self.attempt_log(
                        &model.full,
                        upstream_attempt,
                        reply.http_status,
                        None,
                        duration_ms,
                    );
                    self.attempts.push(Attempt {
                        model: model.full.clone(),
                        attempt: upstream_attempt,
                        outcome: AttemptOutcome::Ok,
                        http_status: reply.http_status,
                        duration_ms,
                        error: None,
                        retry_after_ms: None,
                    });
                    return Ok(Ok((model.full.clone(), reply, cost, budget_state)));
                }
                Err(AttemptError::MockUnsatisfiable(message)) => {
                    permit.record(Some(ErrorClass::InvalidRequest));
                    return Err(InvokeError::MockUnsatisfiableSchema(message));
                }
                Err(AttemptError::Upstream(failure)) => failure,
            };
            permit.record(Some(failure.class));
            drop(reservation);
            self.attempt_log(
                &model.full,
                upstream_attempt,
                failure.http_status,
                Some(failure.class),
                duration_ms,
            );
            self.attempts.push(Attempt {
                model: model.full.clone(),
                attempt: upstream_attempt,
                outcome: AttemptOutcome::Error,
                http_status: failure.http_status,
                duration_ms,
                error: Some(failure.class),
                retry_after_ms: None,
            });
            if failure.class == ErrorClass::Timeout && clipped {
                self.last_failure = Some(failure);
                return Err(deadline_error());
            }
            match failure.class {
                ErrorClass::InvalidRequest => return Err(final_failure(&failure)),
                ErrorClass::Transient | ErrorClass::Timeout => {}
                _ => {
                    self.last_failure = Some(failure);
                    return Ok(Err(Skipped::Failed));
                }
            }
            let Some(delay) = self.retry_delay(&failure, upstream_attempt, policy) else {
                self.last_failure = Some(failure);
                return Ok(Err(Skipped::Failed));
            };
            let retry_after_ms = failure.retry_after.map(millis);
            if let Some(last) = self.attempts.last_mut() {
                last.retry_after_ms = retry_after_ms;
            }
            call_event!(self.log, Level::Warn, "provider.retry",
                ["model" => model.full.as_str(), "upstream_attempt" => upstream_attempt,
                 "error_class" => class_name(failure.class), "error" => failure.message.as_str(),
                 "delay_ms" => millis(delay), "retry_after_ms" => retry_after_ms.unwrap_or(0)],
                "provider call failed; retrying");
            self.last_failure = Some(failure);
            tokio::time::sleep(delay).await;
        }
    }

    /// The pause before the next attempt on the same model, or `None` when retries on it end:
    /// attempts used up, `x-should-retry: false`, a retry-after above `max_retry_after_s`, or a
    /// pause that would cross the deadline (§9.2 step 5).
    fn retry_delay(
        &self,
        failure: &Failure,
        attempt: u32,
        policy: RetryPolicy,
    ) -> Option<Duration> {
        if !failure.retry_same_model || attempt >= policy.max_attempts {
            return None;
        }
        let computed = full_jitter(policy, attempt);
        let delay = match failure.retry_after {
            Some(asked) if asked > Duration::from_secs(policy.max_retry_after_s) => return None,
            Some(asked) => asked.max(computed),
            None => computed,
        };
        (Instant::now() + delay < self.plan.deadline).then_some(delay)
    }

    fn cost(&self, candidate: &Candidate, reply: &Reply) -> f64 {
        match candidate.price {
            Some(price) => price.cost(&reply.usage),
            None => {
                let model = &self.gateway.models[candidate.model];
                if !model.price_warned.swap(true, Ordering::AcqRel) {
                    call_event!(self.log, Level::Warn, "pricing.missing",
                        ["model" => model.full.as_str()],
                        "no price for {}: its calls cost 0", model.full);
                }
                0.0
            }
        }
    }

    fn skip(&mut self, model: &str, attempt: u32, outcome: AttemptOutcome) {
        self.attempts.push(Attempt {
            model: model.to_string(),
            attempt,
            outcome,
            http_status: None,
            duration_ms: 0,
            error: None,
            retry_after_ms: None,
        });
    }

    fn attempt_log(
        &self,
        model: &str,
        attempt: u32,
        status: Option<u16>,
        class: Option<ErrorClass>,
        duration_ms: u64,
    ) {
        call_event!(self.log, Level::Debug, "provider.attempt",
            ["model" => model, "upstream_attempt" => attempt, "http_status" => status,
             "error_class" => class.map(class_name), "duration_ms" => duration_ms],
            "upstream attempt {attempt} on {model}");
    }

    fn budget_rejected(
        &self,
        b: &BudgetRequest,
        committed: f64,
        reserved: f64,
        reserve: f64,
        model: &str,
    ) {
        call_event!(self.log, Level::Warn, "budget.rejected",
            ["limit_usd" => b.limit_usd, "committed_usd" => committed, "reserved_usd" => reserved,
             "reserve_usd" => reserve, "model" => model],
            "run budget cannot cover a call to {model}");
    }

    /// §9.2 step 6.
    fn final_error(
        &self,
        skipped_budget: bool,
        overloaded: bool,
        circuit_wait: Option<Duration>,
    ) -> InvokeError {
        if let Some(failure) = &self.last_failure {
            return final_failure(failure);
        }
        if Instant::now() >= self.plan.deadline {
            return deadline_error();
        }
        if skipped_budget {
            let b = self.plan.request.budget.as_ref();
            return InvokeError::BudgetExceeded(format!(
                "budget_exceeded: no candidate fits the run budget (limit {} USD)",
                b.map_or(0.0, |b| b.limit_usd)
            ));
        }
        if overloaded {
            return InvokeError::Overloaded(
                "every candidate provider's queue is full; retry shortly".into(),
            );
        }
        let wait = circuit_wait.unwrap_or(Duration::from_secs(1));
        InvokeError::CircuitOpen {
            message: format!(
                "every model of group \"{}\" has an open circuit",
                self.plan.group_name
            ),
            retry_after_s: wait.as_secs_f64().ceil().max(1.0) as u64,
        }
    }
}

/// The error of the last upstream attempt (§6.4).
fn final_failure(failure: &Failure) -> InvokeError {
    match failure.class {
        ErrorClass::Billing => InvokeError::BudgetExceeded(failure.message.clone()),
        ErrorClass::Timeout => InvokeError::ProviderTimeout(failure.message.clone()),
        ErrorClass::Transient => InvokeError::Provider {
            message: failure.message.clone(),
            retryable: true,
        },
        _ => InvokeError::Provider {
            message: failure.message.clone(),
            retryable: false,
        },
    }
}

fn deadline_error() -> InvokeError {
    InvokeError::DeadlineExceeded("request deadline passed before an answer".into())
}

/// Candidate indexes in trying order (§9.1).
fn candidate_order(plan: &Plan<'_>) -> Vec<usize> {
    let group = plan.group;
    let n = group.candidates.len();
    match group.strategy {
        Strategy::Fallback => (0..n).collect(),
        Strategy::RoundRobin => {
            let start = if n == 0 {
                0
            } else {
                (group.counter.fetch_add(1, Ordering::Relaxed) % n as u64) as usize
            };
            (0..n).map(|i| (start + i) % n.max(1)).collect()
        }
        Strategy::CostOptimized => {
            let mut order: Vec<(usize, Option<f64>)> = group
                .candidates
                .iter()
                .enumerate()
                .map(|(i, c)| (i, c.price.map(|_| plan.reserve(c))))
                .collect();
            // Stable: ties and unpriced models keep the list order; unpriced after priced.
            order.sort_by(|a, b| match (a.1, b.1) {
                (Some(x), Some(y)) => x.total_cmp(&y),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (None, None) => std::cmp::Ordering::Equal,
            });
            order.into_iter().map(|(i, _)| i).collect()
        }
    }
}

/// `random(0, min(max_backoff_ms, initial_backoff_ms × multiplier^(n−1)))` (§9.2 step 5).
fn full_jitter(policy: RetryPolicy, attempt: u32) -> Duration {
    let exponent = i32::try_from(attempt.saturating_sub(1)).unwrap_or(i32::MAX);
    let ceiling = (policy.initial_backoff_ms as f64 * policy.multiplier.powi(exponent))
        .min(policy.max_backoff_ms as f64)
        .max(0.0);
    Duration::from_secs_f64(ceiling * unit_random() / 1000.0)
}

thread_local! {
    // xorshift needs a non-zero state.
    static RNG: Cell<u64> = Cell::new(ktsu_shared::ids::random_u64() | 1);
}

/// A uniform value in [0, 1) from a per-thread xorshift64* generator (jitter needs spread, not
/// cryptographic quality).
fn unit_random() -> f64 {
    RNG.with(|state| {
        let mut x = state.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        state.set(x);
        (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    })
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

pub fn class_name(class: ErrorClass) -> &'static str {
    match class {
        ErrorClass::Billing => "billing",
        ErrorClass::Transient => "transient",
        ErrorClass::Timeout => "timeout",
        ErrorClass::Auth => "auth",
        ErrorClass::NotFound => "not_found",
        ErrorClass::InvalidRequest => "invalid_request",
        ErrorClass::Other => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_under_the_ceiling() {
        let policy = RetryPolicy {
            max_attempts: 5,
            initial_backoff_ms: 100,
            max_backoff_ms: 250,
            multiplier: 2.0,
            max_retry_after_s: 30,
        };
        let mut seen_spread = false;
        for attempt in 1..=4 {
            let ceiling = [100, 200, 250, 250][attempt as usize - 1];
            let mut low = Duration::MAX;
            let mut high = Duration::ZERO;
            for _ in 0..200 {
                let d = full_jitter(policy, attempt);
                assert!(d <= Duration::from_millis(ceiling), "{d:?} > {ceiling} ms");
                low = low.min(d);
                high = high.max(d);
            }
            seen_spread |= high - low > Duration::from_millis(ceiling / 2);
        }
        assert!(seen_spread, "full jitter spreads the delays");
        let none = RetryPolicy {
            initial_backoff_ms: 0,
            ..policy
        };
        assert_eq!(full_jitter(none, 3), Duration::ZERO);
        for _ in 0..1000 {
            let r = unit_random();
            assert!((0.0..1.0).contains(&r));
        }
    }
}
