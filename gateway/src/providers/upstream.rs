//! What the HTTP adapters share (runtime-gateway.md §7.1): one bounded POST per attempt, the
//! error classes, `retry-after`, the provider message, and tool-call id repair.

use super::Failure;
use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue, HttpDate, CONTENT_TYPE};
use awc::http::StatusCode;
use ktsu_shared::http::{read_body, Bytes, OutboundError};
use ktsu_shared::wire::gateway::{ErrorClass, ToolCall};
use serde_json::Value;
use std::collections::HashSet;
use std::time::{Duration, SystemTime};

/// Response body limit of every upstream answer (§7.1).
pub const MAX_RESPONSE_BYTES: usize = 32 * 1024 * 1024;

const RETRY_AFTER_MS: HeaderName = HeaderName::from_static("retry-after-ms");
const RETRY_AFTER: HeaderName = HeaderName::from_static("retry-after");
const SHOULD_RETRY: HeaderName = HeaderName::from_static("x-should-retry");

/// An upstream answer of any status.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    /// The headers of an error answer (`retry-after`, `x-should-retry`); empty for a 2xx
    /// answer, whose headers nothing reads (copying them would cost every call).
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// `POST url` with a JSON body, bounded by `timeout` (the whole exchange, body read included)
/// and [`MAX_RESPONSE_BYTES`]. Transport failures come back classified.
pub async fn post_json(
    client: &awc::Client,
    url: &str,
    headers: &[(HeaderName, HeaderValue)],
    body: Vec<u8>,
    timeout: Duration,
) -> Result<Answer, Failure> {
    let mut request = client.post(url).timeout(timeout);
    for (name, value) in headers {
        request = request.insert_header((name.clone(), value.clone()));
    }
    let mut response = request
        .insert_header((CONTENT_TYPE, HeaderValue::from_static("application/json")))
        .send_body(body)
        .await
        .map_err(|e| transport_failure(OutboundError::from(e), None, timeout))?;
    let status = response.status();
    let body = read_body(&mut response, MAX_RESPONSE_BYTES)
        .await
        .map_err(|e| transport_failure(e, Some(status.as_u16()), timeout))?;
    let headers = if status.is_success() {
        HeaderMap::new()
    } else {
        response.headers().clone()
    };
    Ok(Answer {
        status,
        headers,
        body,
    })
}

fn transport_failure(error: OutboundError, status: Option<u16>, timeout: Duration) -> Failure {
    match error {
        OutboundError::Timeout => Failure::new(
            ErrorClass::Timeout,
            status,
            format!("upstream timed out after {} s", seconds(timeout)),
        ),
        OutboundError::TooLarge { limit } => Failure::new(
            ErrorClass::Transient,
            status,
            format!(
                "upstream returned {}: response body exceeds {limit} bytes",
                status.unwrap_or(0)
            ),
        ),
        other => Failure::new(
            ErrorClass::Transient,
            status,
            format!("http request failed: {other}"),
        ),
    }
}

/// Seconds for messages: `120`, `0.25`.
pub fn seconds(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s.fract() == 0.0 {
        format!("{}", d.as_secs())
    } else {
        format!("{s:.3}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
    }
}

/// A 2xx answer whose body is not the expected JSON: transient (§7.1).
pub fn undecodable(status: u16, detail: impl std::fmt::Display) -> Failure {
    Failure::new(
        ErrorClass::Transient,
        Some(status),
        format!("upstream returned {status}: undecodable response body: {detail}"),
    )
}

/// A request body that cannot be encoded (not reachable with JSON from the wire, kept total):
/// the same request would fail on every model, so it is `invalid_request`.
pub fn unencodable(error: serde_json::Error) -> Failure {
    Failure::new(
        ErrorClass::InvalidRequest,
        None,
        format!("http request failed: cannot encode the request: {error}"),
    )
}

/// Classifies a non-2xx answer (§7.1): billing first, then `x-should-retry: true`, then the
/// status. `x-should-retry: false` keeps the class but ends retries on this model.
pub fn failure_for_status(answer: &Answer) -> Failure {
    let status = answer.status.as_u16();
    let json: Option<Value> = serde_json::from_slice(&answer.body).ok();
    let error = json.as_ref().and_then(|v| v.get("error"));
    let text = |key: &str| -> Option<String> {
        match error?.get(key)? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    };
    let provider_message = text("message");
    let kind = text("type").unwrap_or_default();
    let code = text("code").unwrap_or_default();
    let should_retry = header_text(&answer.headers, &SHOULD_RETRY);

    let billing = status == 402
        || kind == "billing_error"
        || provider_message
            .as_deref()
            .is_some_and(mentions_spend_limit)
        || contains(&answer.body, b"enforced_spend_limit_reached")
        || [kind.as_str(), code.as_str()].iter().any(|t| {
            matches!(
                *t,
                "insufficient_quota" | "billing_hard_limit_reached" | "billing_not_active"
            )
        });
    let class = if billing {
        ErrorClass::Billing
    } else if should_retry.as_deref() == Some("true") {
        ErrorClass::Transient
    } else {
        match status {
            408 | 409 | 429 | 500..=599 => ErrorClass::Transient,
            401 | 403 => ErrorClass::Auth,
            404 => ErrorClass::NotFound,
            400..=499 => ErrorClass::InvalidRequest,
            // A redirect or an informational answer is unusable, like an undecodable 200.
            _ => ErrorClass::Transient,
        }
    };
    let message = provider_message.unwrap_or_else(|| format!("upstream returned status {status}"));
    Failure {
        class,
        http_status: Some(status),
        message: format!("upstream returned {status}: {message}"),
        retry_after: retry_after(&answer.headers, SystemTime::now()),
        retry_same_model: should_retry.as_deref() != Some("false"),
    }
}

fn mentions_spend_limit(message: &str) -> bool {
    let lower = message.to_lowercase();
    ["credit balance", "credit limit", "spend limit"]
        .iter()
        .any(|needle| lower.contains(needle))
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn header_text(headers: &HeaderMap, name: &HeaderName) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_ascii_lowercase())
}

/// `retry-after-ms` (milliseconds), else `retry-after` (seconds, or an HTTP date).
pub fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let number = |name: &HeaderName| -> Option<f64> {
        let value: f64 = headers.get(name)?.to_str().ok()?.trim().parse().ok()?;
        (value.is_finite() && value >= 0.0).then_some(value)
    };
    if let Some(ms) = number(&RETRY_AFTER_MS) {
        return Some(Duration::from_secs_f64(ms / 1000.0));
    }
    if let Some(s) = number(&RETRY_AFTER) {
        return Duration::try_from_secs_f64(s).ok();
    }
    let date: HttpDate = headers
        .get(&RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(
        SystemTime::from(date)
            .duration_since(now)
            .unwrap_or(Duration::ZERO),
    )
}

/// Ids the provider left out become `call_<16 hex of the call id>_<index>`; a repeated id gets
/// `_<index>` appended (index = position in the reply, from 0).
pub fn repair_tool_call_ids(calls: &mut [ToolCall], call_id: &str) {
    let hex = call_id.strip_prefix("gw_").unwrap_or(call_id);
    let mut seen: HashSet<String> = HashSet::with_capacity(calls.len());
    for (index, call) in calls.iter_mut().enumerate() {
        if call.id.is_empty() {
            call.id = format!("call_{hex}_{index}");
        }
        if !seen.insert(call.id.clone()) {
            call.id = format!("{}_{index}", call.id);
            seen.insert(call.id.clone());
        }
    }
}

/// A header value from config; the value itself never appears in the error (it may be a key).
pub fn header_value(value: &str, sensitive: bool) -> Option<HeaderValue> {
    let mut header = HeaderValue::from_str(value).ok()?;
    header.set_sensitive(sensitive);
    Some(header)
}

/// `base_url` without trailing slashes, plus `path`.
pub fn endpoint(base_url: &str, path: &str) -> String {
    format!("{}{path}", base_url.trim_end_matches('/'))
}

/// Whether a config value is an absolute `http(s)` URL with a host.
pub fn is_http_url(value: &str) -> bool {
    ktsu_shared::project::decode::workflow::is_http_url(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn answer(status: u16, headers: &[(&'static str, &'static str)], body: Value) -> Answer {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.insert(HeaderName::from_static(k), HeaderValue::from_static(v));
        }
        Answer {
            status: StatusCode::from_u16(status).unwrap(),
            headers: map,
            body: Bytes::from(serde_json::to_vec(&body).unwrap()),
        }
    }

    fn class(status: u16, headers: &[(&'static str, &'static str)], body: Value) -> ErrorClass {
        failure_for_status(&answer(status, headers, body)).class
    }

    #[test]
    fn error_classes() {
        use ErrorClass::*;
        let none = json!({});
        for (status, expected) in [
            (408, Transient),
            (409, Transient),
            (429, Transient),
            (500, Transient),
            (503, Transient),
            (529, Transient),
            (401, Auth),
            (403, Auth),
            (404, NotFound),
            (400, InvalidRequest),
            (413, InvalidRequest),
            (422, InvalidRequest),
            (402, Billing),
        ] {
            assert_eq!(class(status, &[], none.clone()), expected, "{status}");
        }
        let anthropic_billing =
            json!({"type": "error", "error": {"type": "billing_error", "message": "x"}});
        assert_eq!(class(400, &[], anthropic_billing), Billing);
        let credit = json!({"type": "error", "error": {"type": "invalid_request_error",
            "message": "Your Credit Balance is too low to access the Anthropic API."}});
        assert_eq!(class(400, &[], credit), Billing);
        let quota = json!({"error": {"message": "You exceeded your current quota", "type": "insufficient_quota", "param": null, "code": "insufficient_quota"}});
        assert_eq!(class(429, &[], quota), Billing, "billing is checked first");
        let spend = json!({"error": {"message": "nope", "code": "enforced_spend_limit_reached"}});
        assert_eq!(class(403, &[], spend), Billing);
        assert_eq!(
            class(400, &[("x-should-retry", "true")], json!({})),
            Transient
        );
        let f = failure_for_status(&answer(503, &[("x-should-retry", "false")], json!({})));
        assert_eq!(f.class, Transient);
        assert!(!f.retry_same_model);
        assert_eq!(class(301, &[], json!({})), Transient);
    }

    #[test]
    fn messages() {
        let overloaded = json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}});
        let f = failure_for_status(&answer(529, &[], overloaded));
        assert_eq!(f.message, "upstream returned 529: Overloaded");
        assert_eq!(f.http_status, Some(529));
        let garbage = Answer {
            status: StatusCode::BAD_GATEWAY,
            headers: HeaderMap::new(),
            body: Bytes::from_static(b"<html>bad gateway</html>"),
        };
        assert_eq!(
            failure_for_status(&garbage).message,
            "upstream returned 502: upstream returned status 502"
        );
        let numeric = json!({"error": {"message": "m", "code": 1234}});
        assert_eq!(
            failure_for_status(&answer(400, &[], numeric)).message,
            "upstream returned 400: m"
        );
    }

    #[test]
    fn retry_after_forms() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let h = |pairs: &[(&'static str, &'static str)]| answer(429, pairs, json!({})).headers;
        assert_eq!(
            retry_after(&h(&[("retry-after-ms", "1500"), ("retry-after", "9")]), now),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            retry_after(&h(&[("retry-after", "2")]), now),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            retry_after(&h(&[("retry-after", "0.5")]), now),
            Some(Duration::from_millis(500))
        );
        // 1_700_000_030 = Tue, 14 Nov 2023 22:13:50 GMT
        assert_eq!(
            retry_after(&h(&[("retry-after", "Tue, 14 Nov 2023 22:13:50 GMT")]), now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            retry_after(&h(&[("retry-after", "Tue, 14 Nov 2023 22:13:00 GMT")]), now),
            Some(Duration::ZERO),
            "a date in the past means now"
        );
        assert_eq!(retry_after(&h(&[("retry-after", "soon")]), now), None);
        assert_eq!(retry_after(&h(&[("retry-after-ms", "-5")]), now), None);
        assert_eq!(retry_after(&h(&[]), now), None);
    }

    #[test]
    fn tool_call_ids() {
        let call = |id: &str| ToolCall {
            id: id.to_string(),
            name: "t".into(),
            arguments: Value::Null,
        };
        let mut calls = vec![call(""), call("a"), call("a"), call(""), call("a_2")];
        repair_tool_call_ids(&mut calls, "gw_00112233aabbccdd");
        let ids: Vec<&str> = calls.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(
            ids,
            vec![
                "call_00112233aabbccdd_0",
                "a",
                "a_2",
                "call_00112233aabbccdd_3",
                "a_2_4"
            ]
        );
    }

    #[test]
    fn small_helpers() {
        assert_eq!(seconds(Duration::from_secs(120)), "120");
        assert_eq!(seconds(Duration::from_millis(250)), "0.25");
        assert_eq!(
            endpoint("https://api.anthropic.com//", "/v1/messages"),
            "https://api.anthropic.com/v1/messages"
        );
        assert!(header_value("line\nbreak", true).is_none());
        assert!(header_value("sk-1", true).unwrap().is_sensitive());
        assert!(contains(
            b"abc enforced_spend_limit_reached",
            b"enforced_spend_limit_reached"
        ));
    }
}
