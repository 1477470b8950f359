//! The access log (cli-and-ops.md §5.1): one `http.request` record per request with method,
//! route template, path, status, request id, peer and duration; `debug` for health, metrics and
//! heartbeat routes, `info` otherwise. `X-Request-Id` is echoed when valid, else generated, and
//! is available to handlers as [`RequestId`].

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::HttpMessage;
use std::time::Instant;

/// The request id of the current request (request extensions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub String);

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// 1–128 visible ASCII characters (orchestrator.md §2.1).
fn valid_request_id(value: &str) -> bool {
    (1..=128).contains(&value.len()) && value.bytes().all(|b| b.is_ascii_graphic())
}

/// Routes whose records are `debug`: polled constantly, noise at `info`.
fn is_quiet(path: &str) -> bool {
    path.starts_with("/health") || path == "/metrics" || path == "/heartbeat"
}

/// Middleware for `App::wrap(actix_web::middleware::from_fn(access_log::log_requests))`.
pub async fn log_requests(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let id = req
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| valid_request_id(v))
        .map(str::to_string)
        .unwrap_or_else(|| crate::ids::random_hex(8).unwrap_or_else(|_| "0".repeat(16)));
    req.extensions_mut().insert(RequestId(id.clone()));
    let method = req.method().to_string();
    let path = req.path().to_string();
    let remote = req.peer_addr().map(|a| a.to_string()).unwrap_or_default();
    let mut res = next.call(req).await?;
    let route = res
        .request()
        .match_pattern()
        .unwrap_or_else(|| "(unmatched)".to_string());
    if let Ok(value) = HeaderValue::from_str(&id) {
        res.headers_mut().insert(REQUEST_ID, value);
    }
    let status = res.status().as_u16();
    let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let level = if is_quiet(&path) {
        log::Level::Debug
    } else {
        log::Level::Info
    };
    log::log!(
        level,
        event = "http.request",
        method = method.as_str(),
        route = route.as_str(),
        path = path.as_str(),
        status_code = status,
        request_id = id.as_str(),
        remote_addr = remote.as_str(),
        duration_ms = duration_ms;
        "{method} {path} {status}"
    );
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test as atest;
    use actix_web::{web, App, HttpRequest, HttpResponse};

    async fn echo_id(req: HttpRequest) -> HttpResponse {
        let id = req
            .extensions()
            .get::<RequestId>()
            .map(|r| r.0.clone())
            .unwrap_or_default();
        HttpResponse::Ok().body(id)
    }

    #[actix_rt::test]
    async fn request_ids_are_echoed_or_generated() {
        let app = atest::init_service(
            App::new()
                .wrap(actix_web::middleware::from_fn(log_requests))
                .route("/x", web::get().to(echo_id)),
        )
        .await;
        let req = atest::TestRequest::get()
            .uri("/x")
            .insert_header(("X-Request-Id", "abc-123"))
            .to_request();
        let res = atest::call_service(&app, req).await;
        assert_eq!(res.headers().get("x-request-id").unwrap(), "abc-123");
        assert_eq!(atest::read_body(res).await, "abc-123");

        let long = "x".repeat(200);
        let req = atest::TestRequest::get()
            .uri("/x")
            .insert_header(("X-Request-Id", long.as_str()))
            .to_request();
        let res = atest::call_service(&app, req).await;
        let id = res
            .headers()
            .get("x-request-id")
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        assert_eq!(id.len(), 16);
        assert_eq!(atest::read_body(res).await, id.as_bytes());
    }

    #[test]
    fn quiet_routes() {
        assert!(is_quiet("/health") && is_quiet("/health/live") && is_quiet("/heartbeat"));
        assert!(!is_quiet("/invoke/hello"));
    }
}
