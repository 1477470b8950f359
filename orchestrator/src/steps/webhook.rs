//! Webhook delivery (orchestrator.md §5.5): templated request, `Idempotency-Key` on every
//! attempt, retries on connection errors, 429 and 5xx with exponential backoff (a `Retry-After`
//! replaces it), no redirects, the response kept in the step output.

use super::{jitter, strip_query, Outbound};
use crate::engine::{WebhookCall, WebhookFailure};
use awc::error::{ConnectError, SendRequestError};
use serde_json::{json, Value};
use std::time::Duration;

const TARGET: &str = "ktsu_orchestrator::steps::webhook";
/// Response bytes read at most.
const READ_LIMIT: usize = 1024 * 1024;
/// Text kept of a non-JSON body.
const TEXT_LIMIT: usize = 65_536;

/// The response body as the step output keeps it: parsed JSON, else text truncated at a
/// character boundary (with whether it was cut); empty → null.
fn body_value(bytes: &[u8], cut: bool) -> (Value, bool) {
    if bytes.is_empty() {
        return (Value::Null, false);
    }
    if !cut {
        if let Ok(v) = serde_json::from_slice::<Value>(bytes) {
            return (v, false);
        }
    }
    let text = String::from_utf8_lossy(bytes);
    if text.len() <= TEXT_LIMIT && !cut {
        return (Value::String(text.into_owned()), false);
    }
    let mut end = TEXT_LIMIT.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    (Value::String(text[..end].to_string()), true)
}

/// `Retry-After` in seconds or as an HTTP date, capped at 60 s.
fn retry_after(headers: &awc::http::header::HeaderMap) -> Option<Duration> {
    let v = headers.get("retry-after")?.to_str().ok()?;
    let d = match v.trim().parse::<u64>() {
        Ok(s) => Duration::from_secs(s),
        Err(_) => {
            let at = httpdate_to_system(v)?;
            at.duration_since(std::time::SystemTime::now())
                .unwrap_or_default()
        }
    };
    Some(d.min(Duration::from_secs(60)))
}

/// Parses an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`).
fn httpdate_to_system(text: &str) -> Option<std::time::SystemTime> {
    let parts: Vec<&str> = text.split_whitespace().collect();
    if parts.len() != 6 || parts[5] != "GMT" {
        return None;
    }
    let day: u64 = parts[1].parse().ok()?;
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .position(|m| *m == parts[2])? as u64
        + 1;
    let year: u64 = parts[3].parse().ok()?;
    let hms: Vec<u64> = parts[4].split(':').filter_map(|x| x.parse().ok()).collect();
    if hms.len() != 3 {
        return None;
    }
    let ts = format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        hms[0], hms[1], hms[2]
    );
    ktsu_shared::time::Timestamp::parse(&ts)
        .ok()
        .map(|t| t.as_system_time())
}

/// Whether a transport failure may be retried: connection errors yes, a timeout after the
/// request was sent no (the receiver may have acted on it).
fn retryable(e: &SendRequestError) -> bool {
    matches!(e, SendRequestError::Connect(_) | SendRequestError::Send(_))
        || matches!(e, SendRequestError::Connect(ConnectError::Timeout))
}

/// Sends a webhook; `Ok(output)` on a 2xx, else the failure.
pub async fn deliver(
    out: Outbound,
    run_id: String,
    address: String,
    call: WebhookCall,
) -> Result<Value, WebhookFailure> {
    let shown = strip_query(&call.url).to_string();
    let method =
        awc::http::Method::from_bytes(call.method.as_bytes()).unwrap_or(awc::http::Method::POST);
    let body = call
        .body
        .as_ref()
        .map(|v| serde_json::to_vec(v).unwrap_or_default());
    let has_content_type = call
        .headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("content-type"));
    let max = call.max_attempts.max(1);
    let mut delay = Duration::from_millis(500);
    let mut last_raw: Option<Value> = None;
    for attempt in 1..=max {
        let mut req = out
            .web
            .request(method.clone(), &call.url)
            .timeout(Duration::from_secs(call.timeout_s.max(1)))
            .insert_header(("Idempotency-Key", call.idempotency_key.as_str()));
        for (k, v) in &call.headers {
            if !k.eq_ignore_ascii_case("idempotency-key") {
                req = req.insert_header((k.as_str(), v.as_str()));
            }
        }
        if !has_content_type {
            req = req.insert_header(("Content-Type", "application/json"));
        }
        let sent = match &body {
            Some(b) => req.send_body(b.clone()).await,
            None => req.send().await,
        };
        let (cause, retry, wait) = match sent {
            Ok(mut res) => {
                let status = res.status().as_u16();
                let ra = retry_after(res.headers());
                let (bytes, cut) = match res.body().limit(READ_LIMIT).await {
                    Ok(b) => (b.to_vec(), false),
                    Err(awc::error::PayloadError::Overflow) => (Vec::new(), true),
                    Err(_) => (Vec::new(), false),
                };
                let (value, truncated) = body_value(&bytes, cut);
                if (200..300).contains(&status) {
                    let mut output = json!({"sent": true, "status_code": status, "body": value});
                    if truncated {
                        output["body_truncated"] = json!(true);
                    }
                    return Ok(output);
                }
                last_raw = match value {
                    Value::Null => None,
                    Value::String(s) => Some(Value::String(s)),
                    other => Some(Value::String(other.to_string())),
                };
                let retry = status == 429 || status >= 500;
                (format!("status {status}"), retry, ra)
            }
            Err(e) => {
                let retry = retryable(&e);
                (e.to_string(), retry, None)
            }
        };
        if !retry || attempt == max {
            let error = if cause.starts_with("status ") {
                format!(
                    "webhook {} {shown} returned {cause} after {attempt} attempt(s)",
                    call.method
                )
            } else {
                format!(
                    "webhook {} {shown} failed after {attempt} attempt(s): {cause}",
                    call.method
                )
            };
            return Err(WebhookFailure {
                error,
                raw_output: last_raw,
            });
        }
        let wait = wait.unwrap_or_else(|| jitter(delay).min(Duration::from_secs(10)));
        log::warn!(
            target: TARGET,
            event = "webhook.attempt_failed",
            run_id = run_id.as_str(),
            step_id = address.as_str(),
            http_attempt = attempt,
            cause = cause.as_str(),
            retry_in_ms = u64::try_from(wait.as_millis()).unwrap_or(0);
            "webhook attempt failed; retrying"
        );
        actix_rt::time::sleep(wait).await;
        delay = (delay * 2).min(Duration::from_secs(10));
    }
    Err(WebhookFailure {
        error: format!("webhook {} {shown} failed", call.method),
        raw_output: last_raw,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies() {
        assert_eq!(body_value(b"", false), (Value::Null, false));
        assert_eq!(
            body_value(br#"{"ok":true}"#, false),
            (json!({"ok": true}), false)
        );
        assert_eq!(body_value(b"plain", false), (json!("plain"), false));
        let long = "é".repeat(40_000);
        let (v, cut) = body_value(long.as_bytes(), false);
        assert!(cut);
        assert!(v.as_str().unwrap().len() <= TEXT_LIMIT);
    }

    #[test]
    fn http_dates() {
        let t = httpdate_to_system("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        assert_eq!(
            ktsu_shared::time::Timestamp::from_system_time(t).to_string(),
            "1994-11-06T08:49:37.000000Z"
        );
        assert!(httpdate_to_system("yesterday").is_none());
    }
}
