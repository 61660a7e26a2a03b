//! Shared by the SRT integration tests: a test `SrtAdmission`, a counting sink, a server on
//! `127.0.0.1:0`, a TS clip made by ffmpeg, and real libsrt callers (ffmpeg,
//! srt-live-transmit).
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Once, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use media::{DemuxEvent, MediaError};
use session::{
    Admission, IngestSender, PublishGrant, PublishRejection, PublishRequest, SrtAdmission,
};
use srt::{PayloadSink, SrtConfig, SrtServer};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A live stream the test admission knows, with its passphrase.
pub const GOOD_KEY: &str = "good-key";
pub const GOOD_PASS: &str = "good-passphrase-1";
/// A second one, for a stream that keeps delivering while others are refused.
pub const OTHER_KEY: &str = "other-key";
pub const OTHER_PASS: &str = "other-passphrase-2";
/// A disabled live stream.
pub const DISABLED_KEY: &str = "disabled-key";

/// Logs to the test output when `RUST_LOG` is set (e.g. `RUST_LOG=srt=debug`).
pub fn init_logging() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if std::env::var_os("RUST_LOG").is_some() {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
                .with_test_writer()
                .try_init();
        }
    });
}

/// What one accepted caller delivered, as its sink counted it.
#[derive(Debug, Default)]
pub struct Delivery {
    pub payloads: AtomicU64,
    pub bytes: AtomicU64,
    pub finished: AtomicU64,
}

impl Delivery {
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::SeqCst)
    }
    pub fn payloads(&self) -> u64 {
        self.payloads.load(Ordering::SeqCst)
    }
    pub fn is_finished(&self) -> bool {
        self.finished.load(Ordering::SeqCst) > 0
    }
}

/// Counts payloads and bytes into a shared [`Delivery`].
pub struct CountingSink(Arc<Delivery>);

impl PayloadSink for CountingSink {
    fn handle_payload(&mut self, payload: Bytes) -> Result<Vec<DemuxEvent>, MediaError> {
        self.0.payloads.fetch_add(1, Ordering::SeqCst);
        self.0
            .bytes
            .fetch_add(payload.len() as u64, Ordering::SeqCst);
        Ok(Vec::new())
    }

    fn finish(&mut self) -> Vec<DemuxEvent> {
        self.0.finished.fetch_add(1, Ordering::SeqCst);
        Vec::new()
    }
}

/// Knows [`GOOD_KEY`], [`OTHER_KEY`] (enabled) and [`DISABLED_KEY`]; one publisher per stream;
/// records every request and every delivery (by live stream id, in order of admission).
#[derive(Debug, Clone, Default)]
pub struct TestAdmission {
    pub lookups: Arc<Mutex<Vec<String>>>,
    pub requests: Arc<Mutex<Vec<PublishRequest>>>,
    live: Arc<Mutex<HashSet<String>>>,
    /// Deliveries by live stream id, one per admitted caller, in order.
    pub deliveries: Arc<Mutex<HashMap<String, Vec<Arc<Delivery>>>>>,
}

fn passphrase_of(key: &str) -> Option<(&'static str, bool)> {
    match key {
        GOOD_KEY => Some((GOOD_PASS, false)),
        OTHER_KEY => Some((OTHER_PASS, false)),
        DISABLED_KEY => Some(("disabled-passphrase", true)),
        _ => None,
    }
}

fn live_stream_id(key: &str) -> String {
    format!("ls-{key}")
}

impl TestAdmission {
    pub fn requests(&self) -> Vec<PublishRequest> {
        self.requests.lock().unwrap().clone()
    }

    pub fn lookups(&self) -> Vec<String> {
        self.lookups.lock().unwrap().clone()
    }

    /// The sink factory for the server: one counting sink per admitted caller.
    pub fn sinks(&self) -> impl Fn(&str) -> CountingSink + Send + Sync + 'static {
        let deliveries = Arc::clone(&self.deliveries);
        move |live_stream_id: &str| {
            let delivery = Arc::new(Delivery::default());
            deliveries
                .lock()
                .unwrap()
                .entry(live_stream_id.to_owned())
                .or_default()
                .push(Arc::clone(&delivery));
            CountingSink(delivery)
        }
    }

    /// The `index`th delivery for `key`, waiting for it up to `within`.
    pub async fn wait_delivery(&self, key: &str, index: usize, within: Duration) -> Arc<Delivery> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(d) = self
                .deliveries
                .lock()
                .unwrap()
                .get(&live_stream_id(key))
                .and_then(|v| v.get(index))
            {
                return Arc::clone(d);
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no delivery #{index} for {key} within {within:?}; lookups {:?}",
                self.lookups()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn delivery_count(&self, key: &str) -> usize {
        self.deliveries
            .lock()
            .unwrap()
            .get(&live_stream_id(key))
            .map_or(0, Vec::len)
    }
}

impl SrtAdmission for TestAdmission {
    async fn srt_passphrase(&self, stream_key: &str) -> Result<String, PublishRejection> {
        self.lookups.lock().unwrap().push(stream_key.to_owned());
        let (pass, disabled) =
            passphrase_of(stream_key).ok_or(PublishRejection::UnknownStreamKey)?;
        if disabled {
            return Err(PublishRejection::Disabled);
        }
        if self.live.lock().unwrap().contains(stream_key) {
            return Err(PublishRejection::AlreadyPublishing);
        }
        Ok(pass.to_owned())
    }
}

impl Admission for TestAdmission {
    async fn publish(&self, request: PublishRequest) -> Result<PublishGrant, PublishRejection> {
        self.requests.lock().unwrap().push(request.clone());
        let key = request.stream_key.clone();
        let (_, disabled) = passphrase_of(&key).ok_or(PublishRejection::UnknownStreamKey)?;
        if disabled {
            return Err(PublishRejection::Disabled);
        }
        if !self.live.lock().unwrap().insert(key.clone()) {
            return Err(PublishRejection::AlreadyPublishing);
        }
        let (media, mut rx) = IngestSender::channel();
        let live = Arc::clone(&self.live);
        let released = key.clone();
        tokio::spawn(async move {
            while rx.recv().await.is_some() {}
            live.lock().unwrap().remove(&released);
        });
        Ok(PublishGrant {
            live_stream_id: live_stream_id(&key),
            media,
            kick: CancellationToken::new(),
        })
    }
}

/// A running SRT listener.
pub struct TestServer {
    pub addr: SocketAddr,
    pub admission: TestAdmission,
    pub shutdown: CancellationToken,
    pub task: JoinHandle<()>,
}

impl TestServer {
    pub async fn start() -> TestServer {
        init_logging();
        let server = SrtServer::bind("127.0.0.1:0".parse().unwrap(), SrtConfig::default())
            .await
            .unwrap();
        let addr = server.local_addr();
        let admission = TestAdmission::default();
        let shutdown = CancellationToken::new();
        let task =
            tokio::spawn(server.serve(admission.clone(), admission.sinks(), shutdown.clone()));
        TestServer {
            addr,
            admission,
            shutdown,
            task,
        }
    }

    /// An `srt://` URL for this server with these query parameters.
    pub fn url(&self, query: &str) -> String {
        format!("srt://127.0.0.1:{}?{query}", self.addr.port())
    }

    /// Cancels shutdown and waits for `serve` to return.
    pub async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("serve did not stop within 5 s")
            .unwrap();
    }
}

/// A 6 s 320x240 H.264/AAC MPEG-TS clip made by ffmpeg once per test binary, and its size.
pub fn ts_clip() -> (PathBuf, u64) {
    static CLIP: OnceLock<(PathBuf, u64)> = OnceLock::new();
    CLIP.get_or_init(|| {
        testkit::require_tool("ffmpeg");
        let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("srt_clip_{}.ts", std::process::id()));
        let status = std::process::Command::new("ffmpeg")
            .args(["-nostdin", "-hide_banner", "-loglevel", "error", "-y"])
            .args(["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30"])
            .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
            .args([
                "-t",
                "6",
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-g",
                "60",
            ])
            .args(["-c:a", "aac", "-f", "mpegts"])
            .arg(&path)
            .status()
            .unwrap();
        assert!(status.success(), "ffmpeg could not make the TS clip");
        let size = std::fs::metadata(&path).unwrap().len();
        (path, size)
    })
    .clone()
}

/// A running caller process (its stderr is kept for failure messages).
pub struct Caller {
    pub child: Child,
}

impl Caller {
    /// ffmpeg pushing the clip in real time: `ffmpeg -re -i CLIP -c copy -f mpegts URL`.
    pub fn ffmpeg(url: &str) -> Caller {
        testkit::require_tool("ffmpeg");
        let (clip, _) = ts_clip();
        let child = Command::new("ffmpeg")
            .args([
                "-nostdin",
                "-hide_banner",
                "-loglevel",
                "warning",
                "-re",
                "-i",
            ])
            .arg(&clip)
            .args(["-c", "copy", "-f", "mpegts", url])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("ffmpeg did not start");
        Caller { child }
    }

    /// srt-live-transmit sending the clip, paced by ffmpeg (`-re`) through a pipe, without
    /// auto-reconnect: `ffmpeg -re ... -f mpegts - | srt-live-transmit file://con URL`.
    pub fn srt_live_transmit(url: &str) -> Caller {
        testkit::require_tool("srt-live-transmit");
        let (clip, _) = ts_clip();
        let script = format!(
            "ffmpeg -nostdin -hide_banner -loglevel error -re -i '{}' -c copy -f mpegts - \
             | exec srt-live-transmit -a:no -q -chunk:1316 file://con '{url}'",
            clip.display()
        );
        let child = Command::new("bash")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("bash did not start");
        Caller { child }
    }

    /// Waits for the caller to exit; returns whether it succeeded and its stderr.
    pub async fn wait(self, within: Duration) -> (bool, String) {
        let output = tokio::time::timeout(within, self.child.wait_with_output())
            .await
            .unwrap_or_else(|_| panic!("caller did not exit within {within:?}"))
            .unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }
}
