//! A small blocking HTTP/1.1 client for the CLI: the `live-streams` commands are clients of the
//! server's REST API, so they print exactly what the API says. Plain `http://` only (the CLI
//! talks to its own server; put a TLS proxy in front for anything else).

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use base64::Engine as _;
use serde_json::Value;

/// Where the API is and who is calling.
#[derive(Debug, Clone)]
pub struct ApiClient {
    host: String,
    authority: String,
    base_path: String,
    auth: String,
}

impl ApiClient {
    /// `url` like `http://127.0.0.1:8080`; `token` as `ID:SECRET`.
    pub fn new(url: &str, token: &str) -> Result<Self> {
        let Some(rest) = url.strip_prefix("http://") else {
            bail!("--api-url must start with http:// (got {url:?})");
        };
        let (authority, base_path) = match rest.split_once('/') {
            Some((a, p)) => (a.to_owned(), format!("/{}", p.trim_end_matches('/'))),
            None => (rest.to_owned(), String::new()),
        };
        let base_path = if base_path == "/" {
            String::new()
        } else {
            base_path
        };
        if !token.contains(':') {
            bail!("the access token must be ID:SECRET (--access-token or ONAIR_ACCESS_TOKEN)");
        }
        Ok(ApiClient {
            host: authority.clone(),
            authority: if authority.contains(':') {
                authority
            } else {
                format!("{authority}:80")
            },
            base_path,
            auth: base64::engine::general_purpose::STANDARD.encode(token),
        })
    }

    /// Sends a request to `/video/v1{path}` and returns the JSON body of a 2xx answer (Null
    /// for 204); an error answer becomes an error with the API's messages.
    pub fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value> {
        let addr = self
            .authority
            .to_socket_addrs()
            .with_context(|| format!("resolving {}", self.authority))?
            .next()
            .with_context(|| format!("{} has no address", self.authority))?;
        let mut stream =
            TcpStream::connect_timeout(&addr, Duration::from_secs(5)).with_context(|| {
                format!(
                    "connecting to the OnAir API at http://{} (is `onair serve` running?)",
                    self.host
                )
            })?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        let body = body.map(Value::to_string).unwrap_or_default();
        let request = format!(
            "{method} {}/video/v1{path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Basic {}\r\nAccept: application/json\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.base_path,
            self.host,
            self.auth,
            body.len()
        );
        stream.write_all(request.as_bytes())?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw)?;
        let (status, payload) =
            parse_response(&raw).context("malformed HTTP response from the API")?;
        let json: Value = if payload.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&payload)
                .with_context(|| format!("the API answered {status} with a non-JSON body"))?
        };
        if !(200..300).contains(&status) {
            let messages = json["error"]["messages"]
                .as_array()
                .map(|m| {
                    m.iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join("; ")
                })
                .unwrap_or_default();
            let kind = json["error"]["type"].as_str().unwrap_or("error");
            bail!("the API answered {status} ({kind}): {messages}");
        }
        Ok(json)
    }
}

/// Status and body (de-chunked) of a raw HTTP/1.1 response.
fn parse_response(raw: &[u8]) -> Option<(u16, Vec<u8>)> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..end]).ok()?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase().starts_with("transfer-encoding:")
            && l.to_ascii_lowercase().contains("chunked")
    });
    let body = &raw[end + 4..];
    if !chunked {
        return Some((status, body.to_vec()));
    }
    let mut out = Vec::new();
    let mut rest = body;
    loop {
        let line_end = rest.windows(2).position(|w| w == b"\r\n")?;
        let size =
            usize::from_str_radix(std::str::from_utf8(&rest[..line_end]).ok()?.trim(), 16).ok()?;
        rest = rest.get(line_end + 2..)?;
        if size == 0 {
            return Some((status, out));
        }
        out.extend_from_slice(rest.get(..size)?);
        rest = rest.get(size + 2..)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_and_chunked_responses() {
        let plain = b"HTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\n{}";
        assert_eq!(parse_response(plain), Some((201, b"{}".to_vec())));
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n";
        assert_eq!(parse_response(chunked), Some((200, b"{}".to_vec())));
        assert_eq!(parse_response(b"garbage"), None);
    }

    #[test]
    fn refuses_other_schemes_and_bad_tokens() {
        assert!(ApiClient::new("https://x", "a:b").is_err());
        assert!(ApiClient::new("http://x", "ab").is_err());
        let c = ApiClient::new("http://localhost:8080/", "a:b").unwrap();
        assert_eq!(c.authority, "localhost:8080");
        assert_eq!(c.base_path, "");
    }
}
