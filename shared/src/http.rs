//! Outbound HTTP: `awc` clients that always carry explicit timeouts, the internal-token header,
//! and bounded body reads with a small error vocabulary callers can act on.
//!
//! awc clients are `!Send`: build one per actix worker or task, not one per process.

use crate::secret::Secret;
use awc::error::{PayloadError, SendRequestError};
use awc::http::header::{HeaderName, HeaderValue, AUTHORIZATION, USER_AGENT};
use awc::ClientResponse;
use std::time::Duration;

pub use actix_web::web::Bytes;

/// Connect timeout of every outbound call unless a caller says otherwise (runtime-gateway.md §0).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// awc's own default pool size.
pub const DEFAULT_CONNECTION_LIMIT: usize = 100;

/// `ktsu/<version>`, the `User-Agent` of every ktsu client.
pub fn default_user_agent() -> String {
    format!("ktsu/{}", crate::VERSION)
}

/// How to build an outbound client.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    /// TCP connect (DNS included) and, separately, TLS handshake bound.
    pub connect_timeout: Duration,
    /// Total bound of one request: connect, send, response head and body read.
    pub timeout: Duration,
    pub user_agent: String,
    /// Sent as `Authorization: Bearer <token>` on every request (service-to-service calls).
    pub bearer_token: Option<Secret>,
    /// Off by default: service calls never expect redirects, and following one could send
    /// credentials in custom headers to another host.
    pub follow_redirects: bool,
    /// Simultaneous connections of the client's pool; `0` = no limit. awc's default (100)
    /// unless changed: a client shared by many concurrent callers (one per in-flight request)
    /// needs more.
    pub connection_limit: usize,
}

/// A header value the builder could not use; the value itself is never echoed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid value for the {header} header")]
pub struct InvalidHeader {
    pub header: &'static str,
}

impl ClientSettings {
    /// Total timeout `timeout`, connect timeout 10 s, `User-Agent: ktsu/<version>`, no token,
    /// no redirects.
    pub fn new(timeout: Duration) -> Self {
        ClientSettings {
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            timeout,
            user_agent: default_user_agent(),
            bearer_token: None,
            follow_redirects: false,
            connection_limit: DEFAULT_CONNECTION_LIMIT,
        }
    }

    pub fn connect_timeout(mut self, connect_timeout: Duration) -> Self {
        self.connect_timeout = connect_timeout;
        self
    }

    pub fn user_agent(mut self, user_agent: impl Into<String>) -> Self {
        self.user_agent = user_agent.into();
        self
    }

    /// The internal token; `None` or an empty token sends no header (token unset = open).
    pub fn bearer_token(mut self, token: Option<Secret>) -> Self {
        self.bearer_token = token.filter(|t| !t.is_empty());
        self
    }

    pub fn follow_redirects(mut self, follow: bool) -> Self {
        self.follow_redirects = follow;
        self
    }

    /// Simultaneous connections of the pool; `0` = no limit.
    pub fn connection_limit(mut self, limit: usize) -> Self {
        self.connection_limit = limit;
        self
    }

    /// The client. Fails only on header values HTTP cannot carry (awc would panic on them).
    pub fn build(&self) -> Result<awc::Client, InvalidHeader> {
        let user_agent = HeaderValue::from_str(&self.user_agent).map_err(|_| InvalidHeader {
            header: "User-Agent",
        })?;
        let connector = awc::Connector::new()
            .timeout(self.connect_timeout)
            .handshake_timeout(self.connect_timeout)
            .limit(self.connection_limit);
        let mut builder = awc::Client::builder()
            .connector(connector)
            .timeout(self.timeout)
            .add_default_header((USER_AGENT, user_agent));
        builder = if self.follow_redirects {
            builder.max_redirects(10)
        } else {
            builder.disable_redirects()
        };
        if let Some(token) = self.bearer_token.as_ref().filter(|t| !t.is_empty()) {
            builder = builder.add_default_header(bearer_header(token)?);
        }
        Ok(builder.finish())
    }
}

/// `Authorization: Bearer <token>`, marked sensitive (kept out of HTTP/2 header compression
/// tables and of awc's debug output).
pub fn bearer_header(token: &Secret) -> Result<(HeaderName, HeaderValue), InvalidHeader> {
    let mut value = HeaderValue::from_str(&format!("Bearer {}", token.expose())).map_err(|_| {
        InvalidHeader {
            header: "Authorization",
        }
    })?;
    value.set_sensitive(true);
    Ok((AUTHORIZATION, value))
}

/// Why an outbound call failed, in the classes callers decide on (retry, error code).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutboundError {
    /// The request's total timeout elapsed (waiting for the head or reading the body).
    #[error("timed out")]
    Timeout,
    /// No connection, or it failed while the request was being sent: no response byte arrived
    /// (refused, reset, DNS, connect timeout). Safe to retry for idempotent calls.
    #[error("connection failed: {0}")]
    Connect(String),
    /// The response body is larger than the caller accepts.
    #[error("response body exceeds {limit} bytes")]
    TooLarge { limit: usize },
    #[error("{0}")]
    Other(String),
}

impl From<SendRequestError> for OutboundError {
    fn from(err: SendRequestError) -> Self {
        match err {
            SendRequestError::Timeout => OutboundError::Timeout,
            SendRequestError::Connect(cause) => OutboundError::Connect(cause.to_string()),
            SendRequestError::Send(cause) => OutboundError::Connect(cause.to_string()),
            other => OutboundError::Other(other.to_string()),
        }
    }
}

impl OutboundError {
    fn from_payload(err: PayloadError, limit: usize) -> Self {
        match err {
            PayloadError::Overflow => OutboundError::TooLarge { limit },
            PayloadError::Io(io) if io.kind() == std::io::ErrorKind::TimedOut => {
                OutboundError::Timeout
            }
            other => OutboundError::Other(format!("reading response body: {other}")),
        }
    }
}

/// Reads the whole body, at most `limit` bytes (a larger `Content-Length` fails before
/// reading). The request's total timeout keeps running while the body is read.
pub async fn read_body<S>(
    response: &mut ClientResponse<S>,
    limit: usize,
) -> Result<Bytes, OutboundError>
where
    S: futures_core::Stream<Item = Result<Bytes, PayloadError>>,
{
    response
        .body()
        .limit(limit)
        .await
        .map_err(|err| OutboundError::from_payload(err, limit))
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
    use std::net::TcpListener;

    /// A server on an OS-assigned loopback port; returns its base URL.
    fn start_server() -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = HttpServer::new(|| {
            App::new()
                .route("/echo", web::get().to(echo))
                .route(
                    "/big",
                    web::get().to(|| async { HttpResponse::Ok().body(vec![b'x'; 4096]) }),
                )
                .route(
                    "/slow",
                    web::get().to(|| async {
                        actix_rt::time::sleep(Duration::from_secs(5)).await;
                        HttpResponse::Ok().finish()
                    }),
                )
        })
        .workers(1)
        .disable_signals()
        .listen(listener)
        .unwrap()
        .run();
        actix_rt::spawn(server);
        format!("http://{addr}")
    }

    async fn echo(req: HttpRequest) -> HttpResponse {
        let header = |name: HeaderName| {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-")
                .to_owned()
        };
        HttpResponse::Ok().body(format!("{}|{}", header(USER_AGENT), header(AUTHORIZATION)))
    }

    #[actix_rt::test]
    async fn sends_user_agent_and_bearer_token() {
        let base = start_server();
        let client = ClientSettings::new(Duration::from_secs(5))
            .bearer_token(Some(Secret::new("tok-1")))
            .build()
            .unwrap();
        let mut response = client.get(format!("{base}/echo")).send().await.unwrap();
        let body = read_body(&mut response, 1024).await.unwrap();
        let expected = format!("ktsu/{}|Bearer tok-1", crate::VERSION);
        assert_eq!(body, Bytes::from(expected));

        let anonymous = ClientSettings::new(Duration::from_secs(5))
            .bearer_token(Some(Secret::new("")))
            .user_agent("probe/1")
            .build()
            .unwrap();
        let mut response = anonymous.get(format!("{base}/echo")).send().await.unwrap();
        let body = read_body(&mut response, 1024).await.unwrap();
        assert_eq!(body, Bytes::from("probe/1|-"));
    }

    #[actix_rt::test]
    async fn body_over_limit_is_too_large() {
        let base = start_server();
        let client = ClientSettings::new(Duration::from_secs(5)).build().unwrap();
        let mut response = client.get(format!("{base}/big")).send().await.unwrap();
        assert_eq!(
            read_body(&mut response, 100).await,
            Err(OutboundError::TooLarge { limit: 100 })
        );
        let mut response = client.get(format!("{base}/big")).send().await.unwrap();
        assert_eq!(read_body(&mut response, 4096).await.unwrap().len(), 4096);
    }

    #[actix_rt::test]
    async fn slow_answer_times_out() {
        let base = start_server();
        let client = ClientSettings::new(Duration::from_millis(200))
            .build()
            .unwrap();
        let err = client.get(format!("{base}/slow")).send().await.unwrap_err();
        assert_eq!(OutboundError::from(err), OutboundError::Timeout);
    }

    #[actix_rt::test]
    async fn refused_connection_is_a_connect_error() {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let client = ClientSettings::new(Duration::from_secs(2)).build().unwrap();
        let err = client
            .get(format!("http://127.0.0.1:{port}/"))
            .send()
            .await
            .unwrap_err();
        let err = OutboundError::from(err);
        assert!(matches!(err, OutboundError::Connect(_)), "{err:?}");
        assert!(err.to_string().starts_with("connection failed: "), "{err}");
    }

    #[test]
    fn invalid_header_values_are_errors_not_panics() {
        let result = ClientSettings::new(Duration::from_secs(1))
            .user_agent("bad\nagent")
            .build();
        assert_eq!(result.err().unwrap().header, "User-Agent");
        let result = ClientSettings::new(Duration::from_secs(1))
            .bearer_token(Some(Secret::new("line\nbreak")))
            .build();
        assert_eq!(
            result.err().unwrap().to_string(),
            "invalid value for the Authorization header"
        );
    }

    #[test]
    fn bearer_header_is_sensitive() {
        let (name, value) = bearer_header(&Secret::new("abc")).unwrap();
        assert_eq!(name, AUTHORIZATION);
        assert_eq!(value.to_str().unwrap(), "Bearer abc");
        assert!(value.is_sensitive());
    }

    #[test]
    fn defaults() {
        let settings = ClientSettings::new(Duration::from_secs(30));
        assert_eq!(settings.connect_timeout, Duration::from_secs(10));
        assert_eq!(settings.user_agent, format!("ktsu/{}", crate::VERSION));
        assert!(settings.bearer_token.is_none());
        assert!(!settings.follow_redirects);
        assert_eq!(settings.connection_limit, 100);
        assert_eq!(settings.clone().connection_limit(0).connection_limit, 0);
        let shown = format!(
            "{:?}",
            settings.bearer_token(Some(Secret::new("hidden-token")))
        );
        assert!(!shown.contains("hidden-token"), "{shown}");
    }
}
