//! Callback delivery (runtime-gateway.md §2.6): `POST <callback_url>` with the payload scrubbed
//! of every secret value, an `Idempotency-Key` that stays the same across retries, retried with
//! jittered exponential backoff until a 2xx, a final refusal, or the end of the retry window.

use crate::leg::LegIds;
use crate::units::millis;
use actix_web::web::Bytes;
use awc::http::header::CONTENT_TYPE;
use ktsu_shared::secret::Scrubber;
use ktsu_shared::wire::callback::CallbackPayload;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Statuses that say "never send this again".
const FINAL_REFUSALS: [u16; 8] = [400, 401, 403, 404, 409, 410, 413, 422];
const FIRST_DELAY: Duration = Duration::from_millis(500);
const MAX_DELAY: Duration = Duration::from_secs(8);

/// How delivery ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivered {
    /// A 2xx.
    Yes,
    /// A status of [`FINAL_REFUSALS`].
    Refused,
    /// The retry window ended, or shutdown cut delivery short.
    Abandoned,
}

/// Where and how to deliver one leg's callback.
pub struct Delivery<'a> {
    pub client: &'a awc::Client,
    pub url: &'a str,
    /// `cb_<16 hex>`, the same on every retry.
    pub idempotency_key: &'a str,
    pub timeout: Duration,
    pub retry_window: Duration,
    /// Becomes `true` when shutdown gives up on pending deliveries.
    pub abandon: watch::Receiver<bool>,
    pub ids: &'a LegIds,
}

impl Delivery<'_> {
    /// Delivers `payload` after scrubbing every string in it with `scrubber`.
    pub async fn send(self, payload: &CallbackPayload, scrubber: &Scrubber) -> Delivered {
        let ids = self.ids;
        let mut abandon = self.abandon.clone();
        let body = match serde_json::to_value(payload) {
            Ok(mut value) => {
                scrubber.scrub_value(&mut value);
                Bytes::from(value.to_string())
            }
            Err(err) => {
                leg_log!(log::Level::Error, ids, event = "callback.abandoned", error = err.to_string().as_str(), attempts = 0u32;
                    "callback could not be encoded");
                return Delivered::Abandoned;
            }
        };
        let status_word = serde_json::to_value(payload.status).unwrap_or_default();
        let first = Instant::now();
        let mut attempts: u32 = 0;
        loop {
            attempts += 1;
            let sent = tokio::select! {
                biased;
                _ = abandoned(&mut abandon) => return self.give_up(attempts, "shutdown"),
                sent = self.post(body.clone()) => sent,
            };
            let problem = match sent {
                Ok(status) if (200..300).contains(&status) => {
                    leg_log!(log::Level::Info, ids, event = "callback.sent", status:serde = status_word,
                        http_status = status, attempts = attempts; "callback delivered");
                    return Delivered::Yes;
                }
                Ok(status) if FINAL_REFUSALS.contains(&status) => {
                    leg_log!(log::Level::Error, ids, event = "callback.rejected", http_status = status,
                        attempts = attempts; "callback refused by the orchestrator");
                    return Delivered::Refused;
                }
                Ok(status) => Problem::Status(status),
                Err(error) => Problem::Error(error),
            };
            let delay = backoff(attempts);
            if first.elapsed() + delay > self.retry_window {
                return match problem {
                    Problem::Status(status) => {
                        leg_log!(log::Level::Error, ids, event = "callback.abandoned", http_status = status,
                            attempts = attempts; "callback abandoned");
                        Delivered::Abandoned
                    }
                    Problem::Error(error) => self.give_up(attempts, &error),
                };
            }
            match &problem {
                Problem::Status(status) => {
                    leg_log!(log::Level::Warn, ids, event = "callback.retry",
                    http_status = *status, attempts = attempts, delay_ms = millis(delay); "callback failed; retrying")
                }
                Problem::Error(error) => leg_log!(log::Level::Warn, ids, event = "callback.retry",
                    error = error.as_str(), attempts = attempts, delay_ms = millis(delay); "callback failed; retrying"),
            }
            tokio::select! {
                biased;
                _ = abandoned(&mut abandon) => return self.give_up(attempts, "shutdown"),
                _ = actix_rt::time::sleep(delay) => {}
            }
        }
    }

    async fn post(&self, body: Bytes) -> Result<u16, String> {
        self.client
            .post(self.url)
            .timeout(self.timeout)
            .insert_header((CONTENT_TYPE, "application/json"))
            .insert_header(("Idempotency-Key", self.idempotency_key))
            .send_body(body)
            .await
            .map(|response| response.status().as_u16())
            .map_err(|err| ktsu_shared::http::OutboundError::from(err).to_string())
    }

    fn give_up(&self, attempts: u32, error: &str) -> Delivered {
        leg_log!(log::Level::Error, self.ids, event = "callback.abandoned", error = error,
            attempts = attempts; "callback abandoned");
        Delivered::Abandoned
    }
}

enum Problem {
    Status(u16),
    Error(String),
}

/// Waits until `abandon` turns true (never, when its sender is gone).
async fn abandoned(abandon: &mut watch::Receiver<bool>) {
    if abandon.wait_for(|give_up| *give_up).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// 0.5 s × 2^(n−1), capped at 8 s, times a random factor in [0.8, 1.2].
fn backoff(attempt: u32) -> Duration {
    let base = FIRST_DELAY
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
        .min(MAX_DELAY);
    base.mul_f64(jitter())
}

fn jitter() -> f64 {
    let mut bytes = [0u8; 4];
    match getrandom::fill(&mut bytes) {
        Ok(()) => 0.8 + 0.4 * (f64::from(u32::from_le_bytes(bytes)) / f64::from(u32::MAX)),
        Err(_) => 1.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_eight_seconds_with_jitter() {
        for (attempt, base_ms) in [
            (1, 500.0),
            (2, 1000.0),
            (3, 2000.0),
            (4, 4000.0),
            (5, 8000.0),
            (9, 8000.0),
            (40, 8000.0),
        ] {
            for _ in 0..50 {
                let ms = backoff(attempt).as_secs_f64() * 1000.0;
                assert!(
                    ms >= base_ms * 0.8 - 1e-6 && ms <= base_ms * 1.2 + 1e-6,
                    "{attempt}: {ms}"
                );
            }
        }
    }
}
