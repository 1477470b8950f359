//! The JSON error envelope every ktsu service answers with:
//! `{"error":"<snake_case code>","message":"<text>", …extra fields}`.
//!
//! [`ApiError`] is what handlers return. Framework-level answers (undecodable or mistyped JSON,
//! oversized bodies, unknown routes, wrong methods) get the same shape through
//! [`json_config`], [`unknown_route`] and [`json_error_bodies`]:
//!
//! ```no_run
//! use actix_web::{web, App};
//! use ktsu_shared::api_error;
//!
//! let app = App::new()
//!     .wrap(api_error::json_error_bodies())
//!     .app_data(api_error::json_config(1024 * 1024))
//!     .app_data(api_error::query_config())
//!     .default_service(web::to(api_error::unknown_route));
//! ```

use crate::secret::Scrubber;
use actix_web::body::{BoxBody, EitherBody};
use actix_web::dev::ServiceResponse;
use actix_web::error::{JsonPayloadError, PayloadError, QueryPayloadError};
use actix_web::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::{ErrorHandlerResponse, ErrorHandlers};
use actix_web::{web, HttpResponse, ResponseError};
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::fmt;

/// Codes this module produces; services add their own (listed in the spec).
pub mod codes {
    pub const NOT_FOUND: &str = "not_found";
    pub const METHOD_NOT_ALLOWED: &str = "method_not_allowed";
    pub const PAYLOAD_TOO_LARGE: &str = "payload_too_large";
    pub const INVALID_JSON: &str = "invalid_json";
    pub const INVALID_REQUEST: &str = "invalid_request";
    pub const UNAUTHORIZED: &str = "unauthorized";
    pub const INTERNAL_ERROR: &str = "internal_error";
}

/// One non-2xx answer: status, stable code, human message, optional extra body fields and
/// response headers (`Retry-After`, `WWW-Authenticate`, `Allow`, …).
///
/// The body is scrubbed with the process scrubber ([`crate::logging::scrubber`]) when sent.
#[derive(Debug, Clone)]
pub struct ApiError(Box<Inner>);

/// Boxed so that `Result<T, ApiError>` stays one pointer wide on the happy path.
#[derive(Debug, Clone)]
struct Inner {
    status: StatusCode,
    code: Cow<'static, str>,
    message: String,
    extra: Map<String, Value>,
    headers: Vec<(HeaderName, HeaderValue)>,
    /// What went wrong inside, for the log only (never in the body).
    cause: Option<String>,
}

impl ApiError {
    pub fn new(
        status: StatusCode,
        code: impl Into<Cow<'static, str>>,
        message: impl Into<String>,
    ) -> Self {
        ApiError(Box::new(Inner {
            status,
            code: code.into(),
            message: message.into(),
            extra: Map::new(),
            headers: Vec::new(),
            cause: None,
        }))
    }

    /// 404 `not_found`: no such route.
    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, codes::NOT_FOUND, "no such route")
    }

    /// 405 `method_not_allowed` with the `Allow` header listing `allowed`.
    pub fn method_not_allowed(allowed: &[Method]) -> Self {
        let list = allowed
            .iter()
            .map(Method::as_str)
            .collect::<Vec<_>>()
            .join(", ");
        let error = Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            codes::METHOD_NOT_ALLOWED,
            "method not allowed",
        );
        match HeaderValue::from_str(&list) {
            Ok(value) => error.with_header(header::ALLOW, value),
            Err(_) => error,
        }
    }

    /// 413 `payload_too_large` with `limit_bytes`.
    pub fn payload_too_large(limit_bytes: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            codes::PAYLOAD_TOO_LARGE,
            format!("request body exceeds the limit of {limit_bytes} bytes"),
        )
        .with_field("limit_bytes", limit_bytes)
    }

    /// 400 `invalid_json`: the body is not JSON at all.
    pub fn invalid_json(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, codes::INVALID_JSON, message)
    }

    /// 400 `invalid_request`: valid JSON of the wrong shape, a bad query parameter or header.
    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, codes::INVALID_REQUEST, message)
    }

    /// 401 `unauthorized` (invoke routes: no challenge header).
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            codes::UNAUTHORIZED,
            "missing or invalid credentials",
        )
    }

    /// 401 `unauthorized` with `WWW-Authenticate: Bearer` (management and internal routes).
    pub fn unauthorized_bearer() -> Self {
        Self::unauthorized()
            .with_header(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"))
    }

    /// 500 `internal_error`. The message is fixed so that nothing internal leaks; `cause` is
    /// kept for the log (see [`ApiError::cause`]).
    pub fn internal(cause: impl fmt::Display) -> Self {
        let mut error = Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            codes::INTERNAL_ERROR,
            "internal error",
        );
        error.0.cause = Some(cause.to_string());
        error
    }

    /// Adds an extra body field (`violations`, `retryable`, `run`, …). `error` and `message`
    /// cannot be replaced this way.
    pub fn with_field(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        let key = key.into();
        if key != "error" && key != "message" {
            self.0.extra.insert(key, value.into());
        }
        self
    }

    /// Adds a response header.
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.0.headers.push((name, value));
        self
    }

    /// `Retry-After: <seconds>`.
    pub fn with_retry_after(self, seconds: u64) -> Self {
        self.with_header(header::RETRY_AFTER, HeaderValue::from(seconds))
    }

    /// Records the internal cause for the log without showing it to the client.
    pub fn with_cause(mut self, cause: impl fmt::Display) -> Self {
        self.0.cause = Some(cause.to_string());
        self
    }

    pub fn status(&self) -> StatusCode {
        self.0.status
    }

    pub fn code(&self) -> &str {
        &self.0.code
    }

    pub fn message(&self) -> &str {
        &self.0.message
    }

    pub fn extra(&self) -> &Map<String, Value> {
        &self.0.extra
    }

    pub fn headers(&self) -> &[(HeaderName, HeaderValue)] {
        &self.0.headers
    }

    /// The internal cause, for the service's log line (with the request id).
    pub fn cause(&self) -> Option<&str> {
        self.0.cause.as_deref()
    }

    /// The body as JSON, unscrubbed.
    pub fn body(&self) -> Value {
        let mut body = Map::with_capacity(2 + self.0.extra.len());
        body.insert("error".into(), Value::String(self.0.code.to_string()));
        body.insert("message".into(), Value::String(self.0.message.clone()));
        body.extend(self.0.extra.clone());
        Value::Object(body)
    }

    /// The body bytes with every secret of `scrubber` replaced.
    fn body_bytes(&self, scrubber: &Scrubber) -> Vec<u8> {
        let mut body = self.body();
        scrubber.scrub_value(&mut body);
        serde_json::to_vec(&body).unwrap_or_else(|_| {
            br#"{"error":"internal_error","message":"internal error"}"#.to_vec()
        })
    }

    /// The generic envelope of a status produced by the framework itself.
    fn for_status(status: StatusCode) -> Self {
        match status {
            StatusCode::BAD_REQUEST => Self::invalid_request("invalid request"),
            StatusCode::UNAUTHORIZED => Self::unauthorized(),
            StatusCode::NOT_FOUND => Self::not_found(),
            StatusCode::METHOD_NOT_ALLOWED => {
                Self::new(status, codes::METHOD_NOT_ALLOWED, "method not allowed")
            }
            StatusCode::PAYLOAD_TOO_LARGE => Self::new(
                status,
                codes::PAYLOAD_TOO_LARGE,
                "request body exceeds the limit",
            ),
            s if s.is_server_error() && s != StatusCode::SERVICE_UNAVAILABLE => {
                Self::new(s, codes::INTERNAL_ERROR, "internal error")
            }
            s => {
                let reason = s.canonical_reason().unwrap_or("error");
                let code: String = reason
                    .chars()
                    .map(|c| {
                        if c.is_ascii_alphanumeric() {
                            c.to_ascii_lowercase()
                        } else {
                            '_'
                        }
                    })
                    .collect();
                Self::new(s, code, reason.to_lowercase())
            }
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.0.code, self.0.message)
    }
}

impl std::error::Error for ApiError {}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.0.status
    }

    fn error_response(&self) -> HttpResponse<BoxBody> {
        let mut response = HttpResponse::build(self.0.status);
        response.insert_header(header::ContentType::json());
        for (name, value) in &self.0.headers {
            response.append_header((name.clone(), value.clone()));
        }
        response.body(self.body_bytes(&crate::logging::scrubber()))
    }
}

/// The envelope for a request-body JSON error. Undecodable bytes (syntax, truncation) →
/// `invalid_json`; JSON that does not fit the expected type → `invalid_request`; too large →
/// `payload_too_large` with `limit_bytes`.
///
/// serde reports the first problem it meets, so a type mismatch found before a later syntax
/// error is reported as `invalid_request`; both are 400.
pub fn json_error(err: &JsonPayloadError, limit_bytes: usize) -> ApiError {
    use serde_json::error::Category;
    match err {
        JsonPayloadError::OverflowKnownLength { .. }
        | JsonPayloadError::Overflow { .. }
        | JsonPayloadError::Payload(PayloadError::Overflow) => {
            ApiError::payload_too_large(limit_bytes)
        }
        JsonPayloadError::Deserialize(err) => match err.classify() {
            Category::Data => ApiError::invalid_request(format!("invalid request: {err}")),
            Category::Syntax | Category::Eof | Category::Io => {
                ApiError::invalid_json(format!("invalid JSON: {err}"))
            }
        },
        JsonPayloadError::Payload(err) => ApiError::invalid_json(format!(
            "invalid JSON: request body could not be read: {err}"
        )),
        JsonPayloadError::ContentType => {
            ApiError::invalid_request("invalid request: unsupported Content-Type")
        }
        other => ApiError::internal(other),
    }
}

/// `web::Json` settings: body limit `limit_bytes`, any `Content-Type` accepted (bodies are
/// JSON whatever they claim), errors in the envelope.
pub fn json_config(limit_bytes: usize) -> web::JsonConfig {
    json_config_with(limit_bytes, |error| error)
}

/// [`json_config`] whose errors pass through `decorate` first (the gateway adds `retryable`
/// and its headers).
pub fn json_config_with<F>(limit_bytes: usize, decorate: F) -> web::JsonConfig
where
    F: Fn(ApiError) -> ApiError + Send + Sync + 'static,
{
    web::JsonConfig::default()
        .limit(limit_bytes)
        .content_type_required(false)
        .error_handler(move |err, _req| decorate(json_error(&err, limit_bytes)).into())
}

/// `web::Query` settings: a query string that does not fit → 400 `invalid_request`.
pub fn query_config() -> web::QueryConfig {
    web::QueryConfig::default().error_handler(|err, _req| {
        let detail = match &err {
            QueryPayloadError::Deserialize(inner) => inner.to_string(),
            other => other.to_string(),
        };
        ApiError::invalid_request(format!("invalid query string: {detail}")).into()
    })
}

/// Handler for unknown routes: `App::new().default_service(web::to(unknown_route))`.
pub async fn unknown_route() -> HttpResponse {
    ApiError::not_found().error_response()
}

/// Middleware that gives the envelope to error responses the framework writes itself (a
/// resource's 405 with its `Allow` header, a 404 from path matching, …). Responses that already
/// are JSON pass unchanged; headers of the original answer are kept.
pub fn json_error_bodies<B: 'static>() -> ErrorHandlers<B> {
    ErrorHandlers::new().default_handler(envelope_non_json)
}

fn envelope_non_json<B: 'static>(
    response: ServiceResponse<B>,
) -> actix_web::Result<ErrorHandlerResponse<B>> {
    if is_json(response.headers()) {
        return Ok(ErrorHandlerResponse::Response(
            response.map_into_left_body(),
        ));
    }
    let (request, original) = response.into_parts();
    let mut replaced = ApiError::for_status(original.status()).error_response();
    for (name, value) in original.headers() {
        let body_header = name == header::CONTENT_TYPE || name == header::CONTENT_LENGTH;
        if !body_header && !replaced.headers().contains_key(name) {
            replaced.headers_mut().append(name.clone(), value.clone());
        }
    }
    let response: ServiceResponse<EitherBody<B>> =
        ServiceResponse::new(request, replaced).map_into_right_body();
    Ok(ErrorHandlerResponse::Response(response))
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test as actix_test;
    use actix_web::{App, HttpRequest};
    use serde::Deserialize;
    use serde_json::json;

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Item {
        name: String,
        count: u32,
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Wait {
        wait: u32,
    }

    async fn create(item: web::Json<Item>) -> HttpResponse {
        HttpResponse::Ok().json(json!({"name": item.name, "count": item.count}))
    }

    async fn waiting(query: web::Query<Wait>) -> HttpResponse {
        HttpResponse::Ok().json(json!({"wait": query.wait}))
    }

    async fn busy() -> Result<HttpResponse, ApiError> {
        Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            "run actor did not answer",
        )
        .with_retry_after(1))
    }

    async fn broken() -> Result<HttpResponse, ApiError> {
        Err(ApiError::internal("disk /var/lib/ktsu/ktsu.db is locked"))
    }

    async fn teapot(_req: HttpRequest) -> HttpResponse {
        HttpResponse::ImATeapot().body("short and stout")
    }

    macro_rules! app {
        () => {
            actix_test::init_service(
                App::new()
                    .wrap(json_error_bodies())
                    .app_data(json_config(64))
                    .app_data(query_config())
                    .service(web::resource("/items").route(web::post().to(create)))
                    .route("/wait", web::get().to(waiting))
                    .route("/busy", web::get().to(busy))
                    .route("/broken", web::get().to(broken))
                    .route("/teapot", web::get().to(teapot))
                    .default_service(web::to(unknown_route)),
            )
            .await
        };
    }

    /// Status, JSON body and headers of one request; asserts the JSON content type.
    macro_rules! call {
        ($app:expr, $request:expr) => {{
            let response = actix_test::call_service($app, $request.to_request()).await;
            let status = response.status();
            let headers = response.headers().clone();
            let bytes = actix_test::read_body(response).await;
            let body: Value = serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| panic!("not JSON: {:?}", String::from_utf8_lossy(&bytes)));
            assert_eq!(
                headers.get(header::CONTENT_TYPE).unwrap(),
                "application/json",
                "{body}"
            );
            (status, body, headers)
        }};
    }

    fn post_items(body: &'static str) -> actix_test::TestRequest {
        actix_test::TestRequest::post()
            .uri("/items")
            .insert_header(header::ContentType::json())
            .set_payload(body)
    }

    #[actix_web::test]
    async fn typed_json_route_accepts_good_bodies_whatever_the_content_type() {
        let app = app!();
        let request = actix_test::TestRequest::post()
            .uri("/items")
            .insert_header(header::ContentType::plaintext())
            .set_payload(r#"{"name":"a","count":2}"#);
        let response = actix_test::call_service(&app, request.to_request()).await;
        assert_eq!(response.status(), StatusCode::OK);
        let request = actix_test::TestRequest::post()
            .uri("/items")
            .set_payload(r#"{"name":"a","count":2,"extra":true}"#);
        let response = actix_test::call_service(&app, request.to_request()).await;
        assert_eq!(response.status(), StatusCode::OK);
    }

    #[actix_web::test]
    async fn malformed_json_is_invalid_json() {
        let app = app!();
        for body in [
            r#"{"name":"a","#,
            "not json",
            r#"{"name":"a","count":2} trailing"#,
            "",
        ] {
            let (status, body, _) = call!(&app, post_items(body));
            assert_eq!(status, StatusCode::BAD_REQUEST);
            assert_eq!(body["error"], "invalid_json", "{body}");
            assert!(body["message"]
                .as_str()
                .unwrap()
                .starts_with("invalid JSON: "));
        }
    }

    #[actix_web::test]
    async fn wrong_shape_is_invalid_request() {
        let app = app!();
        for body in [
            r#"{"name":"a"}"#,
            r#"{"name":"a","count":"two"}"#,
            "[1,2]",
            "42",
        ] {
            let (status, body, _) = call!(&app, post_items(body));
            assert_eq!(status, StatusCode::BAD_REQUEST);
            assert_eq!(body["error"], "invalid_request", "{body}");
            assert!(body["message"]
                .as_str()
                .unwrap()
                .starts_with("invalid request: "));
        }
    }

    #[actix_web::test]
    async fn oversized_body_is_payload_too_large() {
        let app = app!();
        let big = format!(r#"{{"name":"{}","count":1}}"#, "x".repeat(100));
        let (status, body, _) = call!(&app, post_items("").set_payload(big));
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(body["error"], "payload_too_large");
        assert_eq!(body["limit_bytes"], 64);
    }

    #[actix_web::test]
    async fn unknown_path_is_not_found() {
        let app = app!();
        let (status, body, _) = call!(&app, actix_test::TestRequest::get().uri("/nope"));
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(
            body,
            json!({"error": "not_found", "message": "no such route"})
        );
        let (status, _, _) = call!(&app, actix_test::TestRequest::get().uri("/items/"));
        assert_eq!(status, StatusCode::NOT_FOUND, "no trailing-slash rewriting");
    }

    #[actix_web::test]
    async fn wrong_method_is_method_not_allowed_with_allow() {
        let app = app!();
        let (status, body, headers) = call!(&app, actix_test::TestRequest::get().uri("/items"));
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(body["error"], "method_not_allowed");
        assert_eq!(headers.get(header::ALLOW).unwrap(), "POST");
    }

    #[actix_web::test]
    async fn bad_query_is_invalid_request() {
        let app = app!();
        let (status, body, _) = call!(&app, actix_test::TestRequest::get().uri("/wait?wait=soon"));
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["error"], "invalid_request");
        assert!(body["message"]
            .as_str()
            .unwrap()
            .starts_with("invalid query string: "));
        let response = actix_test::call_service(
            &app,
            actix_test::TestRequest::get()
                .uri("/wait?wait=3")
                .to_request(),
        )
        .await;
        assert_eq!(response.status(), StatusCode::OK);
    }

    #[actix_web::test]
    async fn handler_errors_keep_code_and_headers() {
        let app = app!();
        let (status, body, headers) = call!(&app, actix_test::TestRequest::get().uri("/busy"));
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            body,
            json!({"error": "busy", "message": "run actor did not answer"})
        );
        assert_eq!(headers.get(header::RETRY_AFTER).unwrap(), "1");
    }

    #[actix_web::test]
    async fn internal_errors_do_not_leak() {
        let app = app!();
        let (status, body, _) = call!(&app, actix_test::TestRequest::get().uri("/broken"));
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            body,
            json!({"error": "internal_error", "message": "internal error"})
        );
        let error = ApiError::internal("disk full");
        assert_eq!(error.cause(), Some("disk full"));
        assert_eq!(error.to_string(), "internal_error: internal error");
    }

    #[actix_web::test]
    async fn other_framework_errors_get_the_envelope() {
        let app = app!();
        let (status, body, _) = call!(&app, actix_test::TestRequest::get().uri("/teapot"));
        assert_eq!(status, StatusCode::IM_A_TEAPOT);
        assert_eq!(body["error"], "i_m_a_teapot");
    }

    #[test]
    fn envelope_with_extra_fields_and_headers() {
        let error = ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "params_invalid",
            "bad params",
        )
        .with_field(
            "violations",
            json!([{"pointer": "/user_id", "keyword": "required"}]),
        )
        .with_field("error", "ignored")
        .with_field("message", "ignored");
        assert_eq!(
            error.body(),
            json!({
                "error": "params_invalid",
                "message": "bad params",
                "violations": [{"pointer": "/user_id", "keyword": "required"}]
            })
        );
        let response = ApiError::unauthorized_bearer().error_response();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            response.headers().get(header::WWW_AUTHENTICATE).unwrap(),
            "Bearer"
        );
        let response = ApiError::method_not_allowed(&[Method::GET, Method::HEAD]).error_response();
        assert_eq!(response.headers().get(header::ALLOW).unwrap(), "GET, HEAD");
        assert_eq!(ApiError::payload_too_large(10).extra()["limit_bytes"], 10);
    }

    #[test]
    fn body_is_scrubbed() {
        let scrubber = Scrubber::new(["sk-abc"]);
        let error = ApiError::invalid_request("invalid request: unknown key sk-abc")
            .with_field("detail", json!({"sk-abc": "x sk-abc"}));
        let body: Value = serde_json::from_slice(&error.body_bytes(&scrubber)).unwrap();
        assert_eq!(
            body,
            json!({
                "error": "invalid_request",
                "message": "invalid request: unknown key [REDACTED]",
                "detail": {"[REDACTED]": "x [REDACTED]"}
            })
        );
    }

    #[actix_web::test]
    async fn decorated_config_adds_fields() {
        let app = actix_test::init_service(
            App::new()
                .app_data(json_config_with(1024, |e| e.with_field("retryable", false)))
                .route("/items", web::post().to(create)),
        )
        .await;
        let (status, body, _) = call!(&app, post_items("{"));
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["error"], "invalid_json");
        assert_eq!(body["retryable"], false);
    }
}
