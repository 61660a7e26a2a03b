//! Shared by the integration tests: a test `Admission`, a server on `127.0.0.1:0`, real
//! publishers (ffmpeg, GStreamer) and a hand-made RTMP client.
#![allow(dead_code, clippy::unwrap_used)]

pub mod client;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex, Once};
use std::time::Duration;

use media::flv::{FlvReader, FlvTag};
use media::{DemuxEvent, FlvDemuxer, Frame, Track};
use rtmp::RtmpConfig;
use session::{Admission, IngestSender, PublishGrant, PublishRejection, PublishRequest};
use tokio::net::TcpListener;
use tokio::process::{Child, Command};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

/// The key the test admission accepts.
pub const GOOD_KEY: &str = "good-key";

/// A key the test admission never answers.
pub const SLOW_KEY: &str = "slow-key";

/// Logs to the test output when `RUST_LOG` is set (e.g. `RUST_LOG=rtmp=debug`).
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

/// One accepted publish as the session side saw it.
#[derive(Debug)]
pub struct Publish {
    pub live_stream_id: String,
    pub events: Mutex<Vec<DemuxEvent>>,
    pub kick: CancellationToken,
    ended: watch::Sender<bool>,
}

impl Publish {
    pub fn events(&self) -> Vec<DemuxEvent> {
        self.events.lock().unwrap().clone()
    }

    pub fn frames(&self, track: Track) -> Vec<Frame> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                DemuxEvent::Frame(f) if f.track == track => Some(f),
                _ => None,
            })
            .collect()
    }

    pub fn has_video_config(&self) -> bool {
        self.events()
            .iter()
            .any(|e| matches!(e, DemuxEvent::Config(c) if c.video.is_some()))
    }

    pub fn has_audio_config(&self) -> bool {
        self.events()
            .iter()
            .any(|e| matches!(e, DemuxEvent::Config(c) if c.audio.is_some()))
    }

    /// Waits until the publisher's channel is closed (the connection ended).
    pub async fn wait_ended(&self, within: Duration) -> bool {
        let mut rx = self.ended.subscribe();
        let ended = tokio::time::timeout(within, rx.wait_for(|ended| *ended)).await;
        ended.is_ok()
    }

    pub fn is_ended(&self) -> bool {
        *self.ended.borrow()
    }

    /// Waits until at least `n` video frames arrived.
    pub async fn wait_video_frames(&self, n: usize, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        while tokio::time::Instant::now() < deadline {
            if self.frames(Track::Video).len() >= n {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }
}

/// Accepts [`GOOD_KEY`], never answers [`SLOW_KEY`], refuses everything else as unknown,
/// records everything.
#[derive(Debug, Clone, Default)]
pub struct TestAdmission {
    pub requests: Arc<Mutex<Vec<PublishRequest>>>,
    pub publishes: Arc<Mutex<Vec<Arc<Publish>>>>,
}

impl TestAdmission {
    pub fn requests(&self) -> Vec<PublishRequest> {
        self.requests.lock().unwrap().clone()
    }

    pub fn publishes(&self) -> Vec<Arc<Publish>> {
        self.publishes.lock().unwrap().clone()
    }

    /// Waits for the `index`th accepted publish.
    pub async fn wait_publish(&self, index: usize, within: Duration) -> Arc<Publish> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(p) = self.publishes.lock().unwrap().get(index) {
                return Arc::clone(p);
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no publish #{index} within {within:?}; requests: {:?}",
                self.requests()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Admission for TestAdmission {
    async fn publish(&self, request: PublishRequest) -> Result<PublishGrant, PublishRejection> {
        self.requests.lock().unwrap().push(request.clone());
        if request.stream_key == SLOW_KEY {
            std::future::pending::<()>().await;
        }
        if request.stream_key != GOOD_KEY {
            return Err(PublishRejection::UnknownStreamKey);
        }
        let (media, mut rx) = IngestSender::channel();
        let (ended, _) = watch::channel(false);
        let publish = {
            let mut all = self.publishes.lock().unwrap();
            let publish = Arc::new(Publish {
                live_stream_id: format!("ls-{}", all.len()),
                events: Mutex::new(Vec::new()),
                kick: CancellationToken::new(),
                ended,
            });
            all.push(Arc::clone(&publish));
            publish
        };
        let collector = Arc::clone(&publish);
        tokio::spawn(async move {
            while let Some(message) = rx.recv().await {
                collector
                    .events
                    .lock()
                    .unwrap()
                    .extend(message.into_events());
            }
            collector.ended.send_replace(true);
        });
        Ok(PublishGrant {
            live_stream_id: publish.live_stream_id.clone(),
            media,
            kick: publish.kick.clone(),
        })
    }
}

/// A running listener.
pub struct TestServer {
    pub addr: SocketAddr,
    pub admission: TestAdmission,
    pub shutdown: CancellationToken,
    pub task: JoinHandle<()>,
}

impl TestServer {
    pub async fn start(tls: Option<TlsAcceptor>, config: RtmpConfig) -> TestServer {
        init_logging();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let admission = TestAdmission::default();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(rtmp::serve(
            listener,
            tls,
            admission.clone(),
            config,
            metrics::Metrics::new().listener("rtmp"),
            session::IngestRuntimes::shared(),
            shutdown.clone(),
        ));
        TestServer {
            addr,
            admission,
            shutdown,
            task,
        }
    }

    pub fn url(&self, scheme: &str, path: &str) -> String {
        format!("{scheme}://127.0.0.1:{}/{path}", self.addr.port())
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

/// The 720p30 AVC/AAC clip (10 s).
pub fn clip() -> PathBuf {
    testkit::require_tool("ffmpeg");
    testkit::fixture("avc_aac_720p30.flv")
}

/// The clip's tags.
pub fn clip_tags() -> Vec<FlvTag> {
    let data = std::fs::read(clip()).unwrap();
    FlvReader::new(data.into())
        .unwrap()
        .map(|t| t.unwrap())
        .collect()
}

/// Packet counts per stream type as ffprobe reads `path`, within the first `seconds` if given.
pub fn ffprobe_packets(path: &std::path::Path) -> (usize, usize) {
    let json = testkit::ffprobe(&[
        "-count_packets",
        "-show_entries",
        "stream=codec_type,nb_read_packets",
        path.to_str().unwrap(),
    ]);
    let mut video = 0;
    let mut audio = 0;
    for stream in json["streams"].as_array().unwrap() {
        let n: usize = stream["nb_read_packets"].as_str().unwrap().parse().unwrap();
        match stream["codec_type"].as_str().unwrap() {
            "video" => video = n,
            "audio" => audio = n,
            _ => {}
        }
    }
    (video, audio)
}

/// What our own demuxer makes of a list of tags (the reference for what arrives over RTMP).
pub fn demux_tags(tags: &[FlvTag]) -> Vec<DemuxEvent> {
    let mut demuxer = FlvDemuxer::default();
    tags.iter()
        .filter_map(|t| {
            demuxer
                .handle_tag(t.kind, t.timestamp, t.body.clone())
                .unwrap()
        })
        .collect()
}

/// An ffmpeg publisher.
pub struct Ffmpeg {
    pub child: Child,
}

impl Ffmpeg {
    /// `ffmpeg [pre_input] -i CLIP -c copy -f flv [output_args] URL`.
    pub fn publish(pre_input: &[&str], output_args: &[&str], url: &str) -> Ffmpeg {
        let clip = clip();
        let child = Command::new("ffmpeg")
            .args(["-nostdin", "-hide_banner", "-loglevel", "warning"])
            .args(pre_input)
            .arg("-i")
            .arg(&clip)
            .args(["-c", "copy", "-f", "flv"])
            .args(output_args)
            .arg(url)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("ffmpeg did not start");
        Ffmpeg { child }
    }

    /// Waits for ffmpeg to exit; returns its status and stderr.
    pub async fn wait(self, within: Duration) -> (ExitStatus, String) {
        let output = tokio::time::timeout(within, self.child.wait_with_output())
            .await
            .unwrap_or_else(|_| panic!("ffmpeg did not exit within {within:?}"))
            .unwrap();
        (
            output.status,
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }
}
