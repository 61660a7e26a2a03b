//! Fetching a live stream's `reconnect_slate_url` (seeds/004: downloaded each time a new
//! recorded asset is created), with bounds: http or https only, at most
//! [`MAX_REDIRECTS`] redirects, [`FETCH_TIMEOUT`] in all, [`MAX_IMAGE_BYTES`] of body. What
//! the image *is* is checked when it is decoded (`slate`); here only the transfer is.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use reqwest::redirect::Policy;

/// The whole fetch (connect, redirects, body) must finish within this.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// Redirects followed before giving up.
pub const MAX_REDIRECTS: usize = 3;
/// Largest image accepted, in bytes (also the slate decoder's limit).
pub const MAX_IMAGE_BYTES: usize = 10 * 1024 * 1024;

/// Downloads `url`; the error says why, in words for a `warning` event (never the URL's
/// query, which may carry a token).
pub(crate) async fn fetch(url: &str) -> Result<Bytes, String> {
    fetch_with(url, FETCH_TIMEOUT, MAX_IMAGE_BYTES).await
}

async fn fetch_with(url: &str, timeout: Duration, max_bytes: usize) -> Result<Bytes, String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("not a URL: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!("{} URLs are not fetched", parsed.scheme()));
    }
    let client = reqwest::Client::builder()
        .redirect(Policy::limited(MAX_REDIRECTS))
        .timeout(timeout)
        .build()
        .map_err(|e| format!("cannot make an HTTP client: {e}"))?;
    let deadline = tokio::time::Instant::now() + timeout;
    let transfer = async {
        let mut response = client.get(parsed).send().await.map_err(describe)?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("the server answered {status}"));
        }
        if response
            .content_length()
            .is_some_and(|n| n > max_bytes as u64)
        {
            return Err(format!("the image is larger than {max_bytes} bytes"));
        }
        let mut body = BytesMut::new();
        while let Some(chunk) = response.chunk().await.map_err(describe)? {
            if body.len() + chunk.len() > max_bytes {
                return Err(format!("the image is larger than {max_bytes} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        if body.is_empty() {
            return Err("the answer is empty".to_owned());
        }
        Ok(body.freeze())
    };
    match tokio::time::timeout_at(deadline, transfer).await {
        Ok(result) => result,
        Err(_) => Err(format!("no image within {timeout:?}")),
    }
}

/// A reqwest error and its causes, without the URL.
fn describe(e: reqwest::Error) -> String {
    let mut text = if e.is_redirect() {
        format!("more than {MAX_REDIRECTS} redirects")
    } else if e.is_connect() {
        "cannot connect".to_owned()
    } else if e.is_timeout() {
        "timed out".to_owned()
    } else {
        "download failed".to_owned()
    };
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// Serves `answer` (a whole HTTP response, or nothing when `None`: the server hangs) to
    /// every request; returns the base URL.
    async fn server(answer: Option<Vec<u8>>) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let answer = answer.clone();
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let _ = socket.read(&mut buf).await;
                    match answer {
                        Some(a) => {
                            let _ = socket.write_all(&a).await;
                        }
                        None => tokio::time::sleep(Duration::from_secs(30)).await,
                    }
                });
            }
        });
        base
    }

    fn response(status: &str, headers: &str, body: &[u8]) -> Vec<u8> {
        let mut r = format!(
            "HTTP/1.1 {status}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .into_bytes();
        r.extend_from_slice(body);
        r
    }

    #[tokio::test]
    async fn fetches_an_image_and_refuses_what_is_not_one() {
        let ok = server(Some(response("200 OK", "", b"\x89PNG...."))).await;
        assert_eq!(
            fetch_with(&format!("{ok}/slate.png"), Duration::from_secs(2), 100)
                .await
                .unwrap(),
            Bytes::from_static(b"\x89PNG....")
        );
        let big = server(Some(response("200 OK", "", &[7u8; 200]))).await;
        let e = fetch_with(&big, Duration::from_secs(2), 100)
            .await
            .unwrap_err();
        assert!(e.contains("larger than 100"), "{e}");
        let missing = server(Some(response("404 Not Found", "", b""))).await;
        let e = fetch_with(&missing, Duration::from_secs(2), 100)
            .await
            .unwrap_err();
        assert!(e.contains("404"), "{e}");
        let hang = server(None).await;
        let e = fetch_with(&hang, Duration::from_millis(300), 100)
            .await
            .unwrap_err();
        assert!(e.contains("timed out") || e.contains("no image"), "{e}");
        // A redirect loop stops after the limit.
        let looping = {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let base = format!("http://{}", listener.local_addr().unwrap());
            let location = format!("Location: {base}/again\r\n");
            tokio::spawn(async move {
                while let Ok((mut socket, _)) = listener.accept().await {
                    let mut buf = [0u8; 4096];
                    let _ = socket.read(&mut buf).await;
                    let _ = socket
                        .write_all(&response("302 Found", &location, b""))
                        .await;
                }
            });
            base
        };
        let e = fetch_with(&looping, Duration::from_secs(2), 100)
            .await
            .unwrap_err();
        assert!(e.contains("redirects"), "{e}");
        for bad in ["ftp://example.com/x.png", "not a url", "file:///etc/passwd"] {
            assert!(
                fetch_with(bad, Duration::from_secs(1), 100).await.is_err(),
                "{bad}"
            );
        }
        // A closed port.
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            format!("http://{}", l.local_addr().unwrap())
        };
        let e = fetch_with(&closed, Duration::from_secs(2), 100)
            .await
            .unwrap_err();
        assert!(e.contains("cannot connect"), "{e}");
    }
}
