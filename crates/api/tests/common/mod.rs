//! Test support: a gateway API on `127.0.0.1:0` over an in-memory store, and a small
//! HTTP/1.1 client (any method, headers, a body sent with `Content-Length` or chunked,
//! `Connection: close`) so that tests see exactly the status, headers and bytes the server
//! sent.
#![allow(clippy::unwrap_used, dead_code)]

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use api::{ApiConfig, ApiState};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::Value;
use session::{SessionConfig, SessionManager};
use store::{Permissions, SqliteStore, Store};

/// A response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// Names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}), status {}: {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// Asserts an API error of this status and type, and returns its first message.
    pub fn assert_error(&self, status: u16, error_type: &str) -> String {
        assert_eq!(
            self.status,
            status,
            "{}",
            String::from_utf8_lossy(&self.body)
        );
        assert!(
            self.header("content-type")
                .is_some_and(|ct| ct.starts_with("application/json")),
            "{:?}",
            self.headers
        );
        let v = self.json();
        assert_eq!(v["error"]["type"], error_type, "{v}");
        let messages = v["error"]["messages"].as_array().unwrap();
        assert_eq!(messages.len(), 1, "{v}");
        messages[0].as_str().unwrap().to_owned()
    }
}

/// How a request body is sent.
#[derive(Debug, Clone)]
pub enum Body {
    None,
    /// With `Content-Length`.
    Sized(Vec<u8>),
    /// With `Transfer-Encoding: chunked`, in 8 KiB chunks.
    Chunked(Vec<u8>),
}

/// `Authorization` value for basic auth.
pub fn basic(id: &str, secret: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{id}:{secret}")))
}

/// Sends one request on a new connection and reads the whole response.
pub fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Body,
) -> Response {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    let mut raw = Vec::new();
    match &body {
        Body::None => {
            head.push_str("\r\n");
            raw.extend_from_slice(head.as_bytes());
        }
        Body::Sized(data) => {
            head.push_str(&format!("Content-Length: {}\r\n\r\n", data.len()));
            raw.extend_from_slice(head.as_bytes());
            raw.extend_from_slice(data);
        }
        Body::Chunked(data) => {
            head.push_str("Transfer-Encoding: chunked\r\n\r\n");
            raw.extend_from_slice(head.as_bytes());
            for chunk in data.chunks(8192) {
                raw.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
                raw.extend_from_slice(chunk);
                raw.extend_from_slice(b"\r\n");
            }
            raw.extend_from_slice(b"0\r\n\r\n");
        }
    }
    // The server may answer (413) and close before reading the whole body: a failed write
    // is not an error as long as a response arrives.
    let _ = stream.write_all(&raw);
    let mut response = Vec::new();
    let mut buf = [0u8; 16384];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => response.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) if !response.is_empty() && e.kind() == ErrorKind::ConnectionReset => break,
            Err(e) => panic!("{method} {path}: {e}"),
        }
    }
    parse(&response).unwrap_or_else(|| {
        panic!(
            "{method} {path}: malformed response: {}",
            String::from_utf8_lossy(&response)
        )
    })
}

/// The response, parsed by the shared test client's parser.
fn parse(raw: &[u8]) -> Option<Response> {
    let r = testkit::http::parse_response(raw)?;
    Some(Response {
        status: r.status,
        headers: r.headers,
        body: r.body,
    })
}

/// An access token's credentials.
#[derive(Debug, Clone)]
pub struct Token {
    pub id: String,
    pub secret: String,
}

impl Token {
    pub fn header(&self) -> String {
        basic(&self.id, &self.secret)
    }
}

/// The API on an ephemeral port.
#[derive(Debug, Clone)]
pub struct Server {
    pub addr: SocketAddr,
    pub store: SqliteStore,
    pub sessions: SessionManager,
    /// Read and write.
    pub admin: Token,
    /// Read only.
    pub reader: Token,
}

/// A config without rate limits (for tests that make many calls).
pub fn unlimited() -> ApiConfig {
    ApiConfig {
        post_rate_limit: None,
        other_rate_limit: None,
        ..ApiConfig::default()
    }
}

impl Server {
    pub async fn start(name: &str, config: ApiConfig) -> Server {
        let store = SqliteStore::open_in_memory().await.unwrap();
        let dir = testkit::scratch_dir(name);
        // The cancellation token is the session crate's shutdown signal (its Default).
        let sessions =
            SessionManager::new(store.clone(), SessionConfig::new(&dir), Default::default());
        let admin = store
            .create_access_token("admin", Permissions::READ_WRITE)
            .await
            .unwrap();
        let reader = store
            .create_access_token("reader", Permissions::READ_ONLY)
            .await
            .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = api::router(ApiState::new(sessions.clone(), config));
        tokio::spawn(async move { axum::serve(listener, app).await });
        Server {
            addr,
            store,
            sessions,
            admin: Token {
                id: admin.token.id,
                secret: admin.secret,
            },
            reader: Token {
                id: reader.token.id,
                secret: reader.secret,
            },
        }
    }

    /// A request with `auth` as the `Authorization` header (none if `None`), run off the
    /// runtime's threads.
    pub async fn call(
        &self,
        auth: Option<&Token>,
        method: &str,
        path: &str,
        body: Body,
        extra_headers: &[(&str, &str)],
    ) -> Response {
        let addr = self.addr;
        let method = method.to_owned();
        let path = path.to_owned();
        let mut headers: Vec<(String, String)> = extra_headers
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        if let Some(token) = auth {
            headers.push(("Authorization".to_owned(), token.header()));
        }
        tokio::task::spawn_blocking(move || {
            let headers: Vec<(&str, &str)> = headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            send(addr, &method, &path, &headers, body)
        })
        .await
        .unwrap()
    }

    /// An authenticated (admin) request with a JSON body (`Value::Null`: no body).
    pub async fn admin(&self, method: &str, path: &str, json: Value) -> Response {
        let (body, headers): (Body, &[(&str, &str)]) = if json.is_null() {
            (Body::None, &[])
        } else {
            (
                Body::Sized(serde_json::to_vec(&json).unwrap()),
                &[("Content-Type", "application/json")],
            )
        };
        let admin = self.admin.clone();
        self.call(Some(&admin), method, path, body, headers).await
    }

    /// Waits until no live stream has a publisher (a kicked encoder has been let go; its
    /// broadcast may still wait for a reconnect).
    pub async fn wait_no_publishers(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.sessions.publishing() > 0 {
            assert!(Instant::now() < deadline, "a session did not end");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// `/video/v1` + `path`.
pub fn v1(path: &str) -> String {
    format!("/video/v1{path}")
}
