//! `GET /system/v1/webhook-events/stream` in process: read permission is enough, the
//! heartbeat, the limit of open streams (`503` beyond it) and the end of every stream on
//! shutdown. (Events in order, their envelopes and the official CLI: the e2e test
//! `crates/onair/tests/e2e_sse.rs`.)
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::Duration;

use api::{ApiState, EventStreams, MAX_EVENT_STREAMS};
use store::{Permissions, SqliteStore, Store};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

mod common;

const PATH: &str = "/system/v1/webhook-events/stream";

/// Opens a stream with `auth` (an `Authorization` value) and returns the connection and what
/// was read until `until` appeared.
async fn open(addr: SocketAddr, auth: &str, until: &str) -> (TcpStream, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {PATH} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: {auth}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let text = read_until(&mut stream, until).await;
    (stream, text)
}

/// Reads until `needle` appears (or the connection ends); panics after 5 s.
async fn read_until(stream: &mut TcpStream, needle: &str) -> String {
    let mut text = String::new();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(Duration::from_secs(5), async {
        while !text.contains(needle) {
            let n = stream.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            text.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {needle:?} within 5 s; got {text:?}"));
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeat_limit_and_shutdown() {
    let store = SqliteStore::open_in_memory().await.unwrap();
    let dir = testkit::scratch_dir("api_event_stream");
    let sessions = session::SessionManager::new(
        store.clone(),
        session::SessionConfig::new(&dir),
        Default::default(),
    );
    let reader = store
        .create_access_token("reader", Permissions::READ_ONLY)
        .await
        .unwrap();
    let auth = common::basic(&reader.token.id, &reader.secret);
    let shutdown = CancellationToken::new();
    let events = EventStreams {
        heartbeat: Duration::from_millis(200),
        shutdown: shutdown.clone(),
        ..EventStreams::default()
    };
    let app = api::router(ApiState::with_event_streams(
        sessions,
        common::unlimited(),
        events,
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });

    // A read-only token may listen; the heartbeat comes after 200 ms of silence.
    let (mut first, head) = open(addr, &auth, "event: connected\ndata: {}\n\n").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("content-type: text/event-stream"), "{head}");
    assert!(head.contains("cache-control: no-cache"), "{head}");
    read_until(&mut first, ": keep-alive\n\n").await;

    // Up to the limit...
    let mut open_streams = vec![first];
    for _ in 1..MAX_EVENT_STREAMS {
        open_streams.push(open(addr, &auth, "event: connected").await.0);
    }
    // ...and no further.
    let (_, refused) = open(addr, &auth, "\r\n\r\n").await;
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    // A closed stream frees its place.
    drop(open_streams.pop());
    let admitted = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let (stream, head) = open(addr, &auth, "\r\n\r\n").await;
            if head.starts_with("HTTP/1.1 200") {
                return stream;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("a closed stream did not free its place");
    open_streams.push(admitted);

    // Shutdown ends every stream (the last chunk of a chunked body).
    shutdown.cancel();
    for stream in &mut open_streams {
        read_until(stream, "0\r\n\r\n").await;
    }
}
