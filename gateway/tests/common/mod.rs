//! Helpers for the gateway's service tests: a real gateway on 127.0.0.1 with an OS-assigned port,
//! built from YAML text in a temporary directory, and a client speaking to it over HTTP.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use actix_web::http::header::HeaderMap;
use actix_web::http::StatusCode;
use ktsu_gateway::{Application, GatewayFile, Settings, StopHandle};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::time::Duration;

pub struct TestGateway {
    pub addr: SocketAddr,
    pub url: String,
    pub stop: StopHandle,
    pub dir: tempfile::TempDir,
    pub client: awc::Client,
}

/// What `post` returns.
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn code(&self) -> &str {
        self.body["error"].as_str().unwrap_or("")
    }
}

impl TestGateway {
    pub async fn start(yaml: &str) -> TestGateway {
        Self::start_with(yaml, |_| {}, &[]).await
    }

    pub async fn start_with(
        yaml: &str,
        tweak: impl FnOnce(&mut Settings),
        env: &[(&str, &str)],
    ) -> TestGateway {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gateway.yaml");
        std::fs::write(&path, yaml).unwrap();
        let mut settings = Settings::local(GatewayFile::Path(path));
        tweak(&mut settings);
        Self::start_settings(settings, env, dir).await
    }

    pub async fn start_settings(
        settings: Settings,
        env: &[(&str, &str)],
        dir: tempfile::TempDir,
    ) -> TestGateway {
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect();
        let app = Application::build_with_env(settings, &env)
            .await
            .unwrap_or_else(|e| panic!("gateway did not start: {e:?}"));
        let addr = app.local_addr();
        let stop = app.stop_handle();
        actix_rt::spawn(app.run());
        TestGateway {
            addr,
            url: format!("http://{addr}"),
            stop,
            dir,
            client: client(),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub async fn post(&self, body: Value) -> Answer {
        self.post_with(body, &[]).await
    }

    pub async fn post_with(&self, body: Value, headers: &[(&str, &str)]) -> Answer {
        let mut request = self.client.post(format!("{}/invoke", self.url));
        for (k, v) in headers {
            request = request.insert_header((*k, *v));
        }
        let mut response = request
            .send_body(serde_json::to_vec(&body).unwrap())
            .await
            .unwrap();
        read(&mut response).await
    }

    pub async fn post_raw(&self, body: &'static [u8]) -> Answer {
        let mut response = self
            .client
            .post(format!("{}/invoke", self.url))
            .insert_header(("content-type", "application/json"))
            .send_body(body)
            .await
            .unwrap();
        read(&mut response).await
    }

    pub async fn get(&self, path: &str) -> Answer {
        let mut response = self
            .client
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .unwrap();
        read(&mut response).await
    }

    /// `/health` answers 200 `ok`: the gateway survived whatever the test did.
    pub async fn assert_healthy(&self) {
        let health = self.get("/health").await;
        assert_eq!(health.status, StatusCode::OK, "{}", health.body);
        assert_eq!(health.body["status"], "ok");
    }

    pub async fn stop(self) {
        self.stop.stop().await;
    }
}

pub fn client() -> awc::Client {
    awc::Client::builder()
        .timeout(Duration::from_secs(60))
        .finish()
}

async fn read<S>(response: &mut awc::ClientResponse<S>) -> Answer
where
    S: futures_core::Stream<Item = Result<actix_web::web::Bytes, awc::error::PayloadError>>,
{
    let bytes = response.body().limit(64 << 20).await.unwrap();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| panic!("not JSON: {:?}", String::from_utf8_lossy(&bytes)))
    };
    Answer {
        status: response.status(),
        headers: response.headers().clone(),
        body,
    }
}

/// A minimal valid request for `group`.
pub fn request(group: &str) -> Value {
    json!({"run_id": "run_0123456789abcdef", "step_id": "step", "group": group,
           "messages": [{"role": "user", "content": "hello"}]})
}

/// One raw HTTP/1.1 exchange on blocking threads (the test's runtime keeps serving): the body is
/// written while the answer is read, so an early answer (413 before the body is consumed) is
/// seen. Returns the status line and body text.
pub async fn raw_exchange(addr: SocketAddr, head: String, body: Vec<u8>) -> (String, String) {
    actix_rt::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut writer = stream.try_clone().unwrap();
        let sender = std::thread::spawn(move || {
            let _ = writer.write_all(head.as_bytes());
            // The server may answer and close before the whole body is sent.
            let _ = writer.write_all(&body);
        });
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        let _ = sender.join();
        let text = String::from_utf8_lossy(&answer).to_string();
        let status = text.lines().next().unwrap_or_default().to_string();
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        (status, body)
    })
    .await
    .unwrap()
}

/// A fake upstream below HTTP on 127.0.0.1, for providers that misbehave: it accepts up to
/// `connections` connections, reads what the gateway sends, writes `reply` (if any) and then
/// holds each connection open for `hold` before closing it. Bounded in count and time, it stops
/// by itself. Returns its `http://` URL.
pub fn raw_upstream(connections: usize, reply: Option<&'static [u8]>, hold: Duration) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().take(connections) {
            let Ok(mut stream) = stream else { break };
            let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            if let Some(reply) = reply {
                let _ = stream.write_all(reply);
            }
            held.push(stream);
        }
        std::thread::sleep(hold);
    });
    url
}
