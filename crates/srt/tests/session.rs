//! The listener in front of the real session manager and store: a live stream's generated
//! `srt_passphrase` works with a libsrt caller (ffmpeg), and a caller with a wrong passphrase
//! is refused before the session hears of it (no broadcast, no event).
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{ts_clip, Caller};
use media::{DemuxEvent, MediaError};
use session::{SessionConfig, SessionManager};
use srt::{PayloadSink, SrtConfig, SrtServer};
use store::{NewLiveStream, SqliteStore, Store};
use tokio_util::sync::CancellationToken;

struct Count(Arc<AtomicU64>);

impl PayloadSink for Count {
    fn handle_payload(&mut self, payload: Bytes) -> Result<Vec<DemuxEvent>, MediaError> {
        self.0.fetch_add(payload.len() as u64, Ordering::SeqCst);
        Ok(Vec::new())
    }
}

async fn event_types(store: &SqliteStore, id: &str) -> Vec<String> {
    store
        .live_stream_events(id)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event_type)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stores_passphrase_admits_ffmpeg_and_a_wrong_one_leaves_no_trace() {
    common::init_logging();
    let _ = ts_clip();
    let dir = testkit::scratch_dir("srt_session");
    let store = SqliteStore::open(&dir).await.unwrap();
    let shutdown = CancellationToken::new();
    let manager = SessionManager::new(store.clone(), SessionConfig::new(&dir), shutdown.clone());
    let stream = store
        .create_live_stream(NewLiveStream::default())
        .await
        .unwrap();

    let server = SrtServer::bind("127.0.0.1:0".parse().unwrap(), SrtConfig::default())
        .await
        .unwrap();
    let port = server.local_addr().port();
    let bytes = Arc::new(AtomicU64::new(0));
    let sink_bytes = Arc::clone(&bytes);
    let task = tokio::spawn(server.serve(
        manager.clone(),
        move |_: &str| Count(Arc::clone(&sink_bytes)),
        shutdown.clone(),
    ));
    let url = |passphrase: &str| {
        format!(
            "srt://127.0.0.1:{port}?streamid={}&passphrase={passphrase}",
            stream.stream_key
        )
    };

    let events_before = event_types(&store, &stream.id).await;
    let (ok, stderr) = Caller::ffmpeg(&url("wrong-passphrase-123"))
        .wait(Duration::from_secs(10))
        .await;
    assert!(!ok, "a wrong passphrase was accepted");
    assert!(stderr.contains("Incorrect passphrase"), "{stderr}");
    assert_eq!(manager.running(), 0, "a refused caller started a broadcast");
    assert_eq!(event_types(&store, &stream.id).await, events_before);

    let caller = Caller::ffmpeg(&url(&stream.srt_passphrase));
    let deadline = Instant::now() + Duration::from_secs(5);
    while bytes.load(Ordering::SeqCst) == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        bytes.load(Ordering::SeqCst) > 0,
        "no bytes from the admitted caller"
    );
    assert_eq!(manager.running(), 1, "the admitted caller has no broadcast");
    let connected = event_types(&store, &stream.id).await;
    assert!(
        connected.iter().any(|e| e == "video.live_stream.connected"),
        "{connected:?}"
    );
    let (ok, stderr) = caller.wait(Duration::from_secs(30)).await;
    assert!(ok, "ffmpeg failed: {stderr}");

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap();
}
