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
    /// [`ATTEMPT_TIMEOUT`] (shorter in tests).
    timeout: Duration,
}

impl HttpTransport {
    pub(crate) fn new() -> Result<Self, WebhookError> {
        Self::with_timeout(ATTEMPT_TIMEOUT)
    }

    fn with_timeout(timeout: Duration) -> Result<Self, WebhookError> {
        let client = reqwest::Client::builder()
            // A 3xx is a failed attempt: following it would send signed events elsewhere.
            .redirect(Policy::none())
            .connect_timeout(timeout)
            .pool_max_idle_per_host(2)
            .build()
            .map_err(|e| WebhookError::Client(describe(&e)))?;
        Ok(HttpTransport { client, timeout })
    }
}

impl Transport for HttpTransport {
    async fn post(&self, url: &Url, signature: &str, body: Bytes) -> AttemptResult {
        let deadline = Instant::now() + self.timeout;
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
            Err(_) => return Err(format!("no answer within {:?}", self.timeout)),
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// A one-trick HTTP server: reads a request head and body, then runs `answer` on the
    /// socket. Counts the requests it got.
    async fn server<F, Fut>(answer: F) -> (Url, Arc<AtomicUsize>)
    where
        F: Fn(tokio::net::TcpStream) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = ()> + Send,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = Url::parse(&format!("http://{}/hook", listener.local_addr().unwrap())).unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&hits);
        let answer = Arc::new(answer);
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                let answer = Arc::clone(&answer);
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 16 * 1024];
                    let mut read = 0;
                    // Head and the small body arrive together or shortly after.
                    loop {
                        let n = socket.read(&mut buf[read..]).await.unwrap_or(0);
                        read += n;
                        let text = String::from_utf8_lossy(&buf[..read]);
                        if n == 0 || text.contains("\r\n\r\n{") && text.ends_with('}') {
                            break;
                        }
                    }
                    answer(socket).await;
                });
            }
        });
        (url, hits)
    }

    fn transport() -> HttpTransport {
        HttpTransport::with_timeout(Duration::from_millis(500)).unwrap()
    }

    async fn post(url: &Url) -> AttemptResult {
        transport()
            .post(url, "t=1,v1=00", Bytes::from_static(b"{\"a\":1}"))
            .await
    }

    #[tokio::test]
    async fn redirects_are_not_followed() {
        let (url, hits) = server(|mut s| async move {
            let _ = s
                .write_all(
                    b"HTTP/1.1 302 Found\r\nLocation: /elsewhere\r\nContent-Length: 0\r\n\r\n",
                )
                .await;
        })
        .await;
        assert_eq!(post(&url).await, Ok(302));
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(hits.load(Ordering::SeqCst), 1, "the redirect was followed");
    }

    /// A server that answers every request with `head`, then `piece(0)`, `piece(1)`, ... up
    /// to `pieces`, as fast as the peer takes them, until the peer hangs up.
    async fn flooding(head: &'static [u8], pieces: u32, piece: fn(u32) -> Vec<u8>) -> Url {
        let (url, _) = server(move |mut s| async move {
            if s.write_all(head).await.is_err() {
                return;
            }
            for i in 0..pieces {
                if s.write_all(&piece(i)).await.is_err() {
                    return;
                }
            }
        })
        .await;
        url
    }

    /// [`post`], which must end well before the attempt timeout.
    async fn post_quickly(url: &Url) -> AttemptResult {
        let started = Instant::now();
        let result = post(url).await;
        assert!(
            started.elapsed() < Duration::from_millis(450),
            "{:?}: {result:?}",
            started.elapsed()
        );
        result
    }

    #[tokio::test]
    async fn endless_and_huge_answers_are_cut_short() {
        // Far more than anyone should read.
        let endless = flooding(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            100_000,
            |_| format!("{:x}\r\n{}\r\n", 65536, "x".repeat(65536)).into_bytes(),
        )
        .await;
        assert_eq!(post_quickly(&endless).await, Ok(200));
        // 50 MB with a failure status: still only the status counts.
        let huge = flooding(
            b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 52428800\r\n\r\n",
            800,
            |_| vec![b'x'; 65536],
        )
        .await;
        assert_eq!(post_quickly(&huge).await, Ok(500));
    }

    #[tokio::test]
    async fn an_endless_head_is_a_failed_attempt() {
        let url = flooding(b"HTTP/1.1 200 OK\r\n", 1_000_000, |i| {
            format!("x-junk-{i}: {}\r\n", "y".repeat(100)).into_bytes()
        })
        .await;
        // hyper refuses a head past its limits: a failed attempt, not a 200 or a timeout.
        let err = post_quickly(&url).await.unwrap_err();
        assert!(!err.contains("no answer within"), "{err}");
    }

    #[tokio::test]
    async fn an_endpoint_that_never_reads_the_request_times_out() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = Url::parse(&format!("http://{}/hook", listener.local_addr().unwrap())).unwrap();
        tokio::spawn(async move {
            // Accepted and held, never read: the request stays in the socket buffers (or,
            // larger than them, cannot be written at all).
            let mut held = Vec::new();
            while let Ok((s, _)) = listener.accept().await {
                held.push(s);
            }
        });
        for size in [100, 8 * 1024 * 1024] {
            let started = Instant::now();
            let err = transport()
                .post(&url, "t=1,v1=00", Bytes::from(vec![b' '; size]))
                .await
                .unwrap_err();
            assert!(err.contains("no answer within"), "{size}: {err}");
            assert!(started.elapsed() < Duration::from_secs(2), "{size}");
        }
    }

    #[tokio::test]
    async fn a_silent_endpoint_times_out_and_a_closed_port_is_refused() {
        let (url, _) = server(|s| async move {
            tokio::time::sleep(Duration::from_secs(30)).await;
            drop(s);
        })
        .await;
        let started = Instant::now();
        let err = post(&url).await.unwrap_err();
        assert!(err.contains("no answer within"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(2));

        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let url = Url::parse(&format!("http://{closed}/hook")).unwrap();
        let err = post(&url).await.unwrap_err();
        assert!(err.starts_with("cannot connect"), "{err}");
        assert!(!err.contains("/hook"), "no URL in the reason: {err}");
    }

    #[tokio::test]
    async fn sends_json_with_the_signature() {
        let seen = Arc::new(std::sync::Mutex::new(String::new()));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = Url::parse(&format!("http://{}/hook", listener.local_addr().unwrap())).unwrap();
        let copy = Arc::clone(&seen);
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            let mut read = 0;
            while !String::from_utf8_lossy(&buf[..read]).ends_with("{\"a\":1}") {
                let n = s.read(&mut buf[read..]).await.unwrap();
                assert!(n > 0);
                read += n;
            }
            *copy.lock().unwrap() = String::from_utf8_lossy(&buf[..read]).to_lowercase();
            let _ = s.write_all(b"HTTP/1.1 204 No Content\r\n\r\n").await;
        });
        assert_eq!(post(&url).await, Ok(204));
        let request = seen.lock().unwrap().clone();
        assert!(request.starts_with("post /hook http/1.1\r\n"), "{request}");
        assert!(
            request.contains("content-type: application/json\r\n"),
            "{request}"
        );
        assert!(
            request.contains("mux-signature: t=1,v1=00\r\n"),
            "{request}"
        );
    }
}
