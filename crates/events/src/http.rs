//! One delivery attempt over HTTP: POST, status, a bounded read of the answer.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{CONTENT_TYPE, USER_AGENT};
use reqwest::redirect::Policy;
use reqwest::Url;
use tokio::time::Instant;

use crate::signature;
use crate::WebhookError;

/// Each attempt (connect, send, answer) must finish within this (the hosted API: 5 s).
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

/// At most this much of an answer's body is read; then the connection is dropped. Nobody reads
/// the body: reading a little lets a well-behaved server finish its answer, and the bound keeps
/// an endpoint that sends a huge or endless body from holding memory or the task.
pub const MAX_RESPONSE_BYTES: usize = 4096;

/// How an attempt ended when it got an answer: its status code. Anything else (connection
/// refused, timeout, TLS) is an `Err` with a description for the log.
pub(crate) type AttemptResult = Result<u16, String>;

/// Sends one signed delivery. A trait so delivery can be tested without sockets.
pub(crate) trait Transport: Send + Sync + 'static {
    /// POSTs `body` to `url` with the `mux-signature` header `signature`.
    fn post(
        &self,
        url: &Url,
        signature: &str,
        body: Bytes,
    ) -> impl Future<Output = AttemptResult> + Send;
}

/// The real transport: one reqwest client (connection pool) shared by every endpoint.
#[derive(Debug, Clone)]
pub(crate) struct HttpTransport {
    client: reqwest::Client,
}

impl HttpTransport {
    pub(crate) fn new() -> Result<Self, WebhookError> {
        let client = reqwest::Client::builder()
            // A 3xx is a failed attempt: following it would send signed events elsewhere.
            .redirect(Policy::none())
            .connect_timeout(ATTEMPT_TIMEOUT)
            .pool_max_idle_per_host(2)
            .build()
            .map_err(|e| WebhookError::Client(describe(&e)))?;
        Ok(HttpTransport { client })
    }
}

impl Transport for HttpTransport {
    async fn post(&self, url: &Url, signature: &str, body: Bytes) -> AttemptResult {
        let deadline = Instant::now() + ATTEMPT_TIMEOUT;
        let request = self
            .client
            .post(url.clone())
            .header(CONTENT_TYPE, "application/json")
            .header(
                USER_AGENT,
                concat!("onair-webhooks/", env!("CARGO_PKG_VERSION")),
            )
            .header(signature::HEADER, signature)
            .body(body)
            .send();
        let mut response = match tokio::time::timeout_at(deadline, request).await {
            Err(_) => return Err(format!("no answer within {ATTEMPT_TIMEOUT:?}")),
            Ok(Err(e)) => return Err(describe(&e)),
            Ok(Ok(response)) => response,
        };
        let status = response.status().as_u16();
        // The status decides; the body is read only so that the server can finish, within the
        // same deadline and bound, and then the connection is dropped.
        let _ = tokio::time::timeout_at(deadline, async {
            let mut read = 0;
            while read < MAX_RESPONSE_BYTES {
                match response.chunk().await {
                    Ok(Some(chunk)) => read += chunk.len(),
                    Ok(None) | Err(_) => break,
                }
            }
        })
        .await;
        Ok(status)
    }
}

/// An error and its causes (`connection refused` is a few levels down), without the URL.
fn describe(e: &reqwest::Error) -> String {
    let mut text = if e.is_connect() {
        "cannot connect".to_owned()
    } else if e.is_timeout() {
        "timed out".to_owned()
    } else {
        "request failed".to_owned()
    };
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
