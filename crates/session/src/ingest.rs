//! The contract between an ingest listener (RTMP, RTMPS, SRT) and the session manager.
//!
//! Admission is a request with an answer (house style 2): the listener turns the protocol's
//! publish request into a [`PublishRequest`] and awaits [`Admission::publish`]. A rejected
//! publisher gets the protocol's own error and is closed. An accepted one gets a
//! [`PublishGrant`]: it sends what its demuxer produces through [`IngestSender`] and stops
//! when the grant's `kick` token is cancelled (stream disabled, key reset, shutdown).

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use media::{DemuxEvent, Track};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Messages buffered between one publisher and its session: each is one demuxer event or a
/// [`MediaBatcher`] batch of at most [`MAX_BATCH_EVENTS`] (typically a tenth of a second of
/// media, so the channel holds seconds of it). When the session falls this far behind, the
/// publisher's connection waits (backpressure reaches the encoder through TCP) instead of
/// memory growing.
pub const INGEST_CHANNEL_CAPACITY: usize = 128;

/// The most events a [`MediaBatcher`] holds before it hands them over.
pub const MAX_BATCH_EVENTS: usize = 32;

/// While media flows, a [`MediaBatcher`] batch is handed over with the first event that
/// arrives this long after the batch's first (wall time).
pub const MAX_BATCH_HOLD: Duration = Duration::from_millis(100);

/// When media stops, what a [`MediaBatcher`] holds is handed over this long after the
/// batch's first event ([`MediaBatcher::deadline`]): far below the stall and stale-publisher
/// thresholds (seconds), and long enough that the connection's timer, moved only when this
/// deadline is earlier than its own, rarely fires while media flows.
pub const MAX_BATCH_HOLD_QUIET: Duration = Duration::from_millis(500);

/// The ingest protocols. `as_str` gives the seeds' `active_ingest_protocol` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IngestProtocol {
    /// RTMP on the plain port.
    Rtmp,
    /// RTMP over TLS.
    Rtmps,
    /// SRT.
    Srt,
}

impl IngestProtocol {
    /// `rtmp` (for RTMP and RTMPS, as the seeds report both) or `srt`.
    pub fn as_str(self) -> &'static str {
        match self {
            IngestProtocol::Rtmp | IngestProtocol::Rtmps => "rtmp",
            IngestProtocol::Srt => "srt",
        }
    }

    /// The listener it came through: `rtmp`, `rtmps` or `srt` (logs, metrics labels).
    pub fn listener_name(self) -> &'static str {
        match self {
            IngestProtocol::Rtmps => "rtmps",
            IngestProtocol::Rtmp => "rtmp",
            IngestProtocol::Srt => "srt",
        }
    }
}

/// A stream key as logs may show it: at most its first 4 characters, and never more than half
/// of it (house style 11: never log a key in full). One function for every listener.
pub fn redact_stream_key(key: &str) -> String {
    let shown = (key.chars().count() / 2).min(4);
    let mut out: String = key.chars().take(shown).collect();
    out.push('…');
    out
}

/// A publisher asks to go live.
#[derive(Debug, Clone)]
pub struct PublishRequest {
    /// The stream key as the encoder sent it.
    pub stream_key: String,
    /// How it connected.
    pub protocol: IngestProtocol,
    /// The encoder's address.
    pub peer: SocketAddr,
}

/// Why a publisher was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishRejection {
    /// No live stream has this stream key.
    #[error("unknown stream key")]
    UnknownStreamKey,
    /// The live stream is disabled.
    #[error("live stream is disabled")]
    Disabled,
    /// Another encoder is already publishing to this live stream.
    #[error("live stream already has a publisher")]
    AlreadyPublishing,
    /// The gateway is shutting down.
    #[error("server is shutting down")]
    ShuttingDown,
    /// The gateway is draining: it starts no new broadcast (an encoder reconnecting to a
    /// broadcast that is still running is admitted), and exits when the last one ends.
    #[error("server is draining: no new broadcasts")]
    Draining,
    /// The store or another internal part failed.
    #[error("internal error: {0}")]
    Internal(String),
}

impl PublishRejection {
    /// The `reason` label of `onair_listener_connections_refused_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            PublishRejection::UnknownStreamKey => "unknown_stream_key",
            PublishRejection::Disabled => "disabled",
            PublishRejection::AlreadyPublishing => "already_publishing",
            PublishRejection::ShuttingDown => "shutting_down",
            PublishRejection::Draining => "draining",
            PublishRejection::Internal(_) => "internal",
        }
    }
}

/// What a publisher sends to its session.
#[derive(Debug, Clone)]
pub enum IngestEvent {
    /// Output of the connection's demuxer.
    Media(DemuxEvent),
    /// Several outputs of the demuxer, in order (see [`MediaBatcher`]).
    Batch(Vec<DemuxEvent>),
}

impl IngestEvent {
    /// The demuxer events it carries, in order.
    pub fn into_events(self) -> impl Iterator<Item = DemuxEvent> {
        let (one, many) = match self {
            IngestEvent::Media(event) => (Some(event), Vec::new()),
            IngestEvent::Batch(events) => (None, events),
        };
        one.into_iter().chain(many)
    }
}

/// Groups a publisher's demuxer events so that its session wakes up about ten times a second
/// instead of once per frame (a 30 fps stream with AAC audio makes about 77 events a second).
/// Measured alone, on the shared runtime, this saved no CPU beyond the machine's noise
/// (docs/PERFORMANCE.md); it is kept because it bounds the session's wake-ups whatever the
/// encoder's frame rate, at the cost of at most 100 ms of hold on non-keyframes.
///
/// Nothing that can change what is playable waits: a batch is handed over at once when it
/// takes a video keyframe (which may close a segment: the segment is published as early as
/// without batching), a configuration or metadata event, any frame of a publisher without
/// video (audio-only segments close on audio frames), its [`MAX_BATCH_EVENTS`]th event, or
/// an event that arrives [`MAX_BATCH_HOLD`] after its first. A connection that goes quiet
/// hands over what it holds at [`MediaBatcher::deadline`] ([`MAX_BATCH_HOLD_QUIET`]), and
/// what it holds when it ends ([`MediaBatcher::take`]).
#[derive(Debug, Default)]
pub struct MediaBatcher {
    events: Vec<DemuxEvent>,
    /// When the first held event arrived.
    held_since: Option<Instant>,
    /// The last configuration had a video track.
    video: bool,
}

impl MediaBatcher {
    /// An empty batcher.
    pub fn new() -> Self {
        MediaBatcher::default()
    }

    /// Adds `event` (arrived at `now`); returns what must be sent now, if anything.
    pub fn push(&mut self, event: DemuxEvent, now: Instant) -> Option<IngestEvent> {
        let urgent = match &event {
            DemuxEvent::Frame(frame) => {
                !self.video || (frame.track == Track::Video && frame.keyframe)
            }
            DemuxEvent::Config(config) => {
                self.video = config.video.is_some();
                true
            }
            DemuxEvent::Metadata(_) => true,
        };
        if self.events.is_empty() {
            if urgent {
                return Some(IngestEvent::Media(event));
            }
            self.held_since = Some(now);
            self.events.reserve(MAX_BATCH_EVENTS);
        }
        self.events.push(event);
        let due = self.held_since.is_some_and(|t| now >= t + MAX_BATCH_HOLD);
        (urgent || due || self.events.len() >= MAX_BATCH_EVENTS)
            .then(|| self.take())
            .flatten()
    }

    /// When what is held must be sent even if nothing else arrives.
    pub fn deadline(&self) -> Option<Instant> {
        self.held_since.map(|t| t + MAX_BATCH_HOLD_QUIET)
    }

    /// Everything held, to send now (`None` when nothing is).
    pub fn take(&mut self) -> Option<IngestEvent> {
        self.held_since = None;
        match self.events.len() {
            0 => None,
            1 => self.events.pop().map(IngestEvent::Media),
            _ => Some(IngestEvent::Batch(std::mem::take(&mut self.events))),
        }
    }
}

/// The sending half of a publisher's channel to its session. Dropping it tells the session
/// that the publisher has gone.
#[derive(Debug, Clone)]
pub struct IngestSender {
    tx: mpsc::Sender<IngestEvent>,
}

impl IngestSender {
    /// A bounded channel of [`INGEST_CHANNEL_CAPACITY`] events.
    pub fn channel() -> (IngestSender, mpsc::Receiver<IngestEvent>) {
        let (tx, rx) = mpsc::channel(INGEST_CHANNEL_CAPACITY);
        (IngestSender { tx }, rx)
    }

    /// Sends an event if the channel has room: `Ok(None)` when sent, `Ok(Some(event))` when
    /// the channel is full (send it with [`IngestSender::send`]). `Err` means the session is
    /// gone.
    pub fn try_send(&self, event: IngestEvent) -> Result<Option<IngestEvent>, SessionGone> {
        match self.tx.try_send(event) {
            Ok(()) => Ok(None),
            Err(mpsc::error::TrySendError::Full(event)) => Ok(Some(event)),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(SessionGone),
        }
    }

    /// Sends an event, waiting while the session is behind. `Err` means the session is gone
    /// and the publisher should disconnect.
    pub async fn send(&self, event: IngestEvent) -> Result<(), SessionGone> {
        self.tx.send(event).await.map_err(|_| SessionGone)
    }
}

/// A receiver that completes when `a` or `b` is cancelled, or the token that arrives on `later`
/// is (a `later` whose sender is dropped adds nothing): for instance shutdown, eviction and a
/// kick token known only once the publish is admitted. A task of its own watches them and
/// ends when they fire or when the receiver is dropped.
///
/// Why: an ingest connection's read loop runs dozens to hundreds of times a second, and
/// polling a cancellation token takes its mutex and re-registers with its waiter list every
/// time (it showed up in profiles); a pending oneshot receiver is one atomic load.
pub fn watch_cancellation(
    a: CancellationToken,
    b: CancellationToken,
    later: oneshot::Receiver<CancellationToken>,
) -> oneshot::Receiver<()> {
    let (mut tx, rx) = oneshot::channel();
    tokio::spawn(async move {
        let later = async {
            match later.await {
                Ok(token) => token.cancelled_owned().await,
                Err(_) => std::future::pending().await,
            }
        };
        tokio::select! {
            () = tx.closed() => return,
            () = a.cancelled() => {}
            () = b.cancelled() => {}
            () = later => {}
        }
        let _ = tx.send(());
    });
    rx
}

/// The session no longer accepts media from this publisher.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the live stream session has ended")]
pub struct SessionGone;

/// An accepted publisher.
#[derive(Debug)]
pub struct PublishGrant {
    /// The live stream being published (for logs; never the key).
    pub live_stream_id: String,
    /// Where media goes.
    pub media: IngestSender,
    /// Cancelled when the publisher must disconnect (disable, key reset, deletion, shutdown).
    pub kick: CancellationToken,
}

/// Admits publishers: implemented by the session manager, and by test doubles.
pub trait Admission: Clone + Send + Sync + 'static {
    /// Decides on a publish request.
    fn publish(
        &self,
        request: PublishRequest,
    ) -> impl Future<Output = Result<PublishGrant, PublishRejection>> + Send;
}

/// The first step of an SRT admission. An SRT caller encrypts with its live stream's
/// passphrase, and the listener must know that passphrase before it answers the handshake
/// (the caller's key material is checked while the handshake completes, and a wrong
/// passphrase is refused with SRT's own reason). So the SRT listener asks for the passphrase
/// first, then completes the handshake, then asks [`Admission::publish`] as every protocol
/// does. This step has no side effect: a caller with a wrong passphrase never reaches the
/// session (no broadcast starts, no event is written).
pub trait SrtAdmission: Admission {
    /// The `srt_passphrase` of the live stream with this stream key, if a publisher could be
    /// admitted now: the same refusals as [`Admission::publish`] (unknown key, disabled,
    /// already publishing), checked early. `publish` still decides; this is a pre-check.
    fn srt_passphrase(
        &self,
        stream_key: &str,
    ) -> impl Future<Output = Result<String, PublishRejection>> + Send;
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;
    use media::avc::AvcDecoderConfigurationRecord;
    use media::{Frame, StreamConfig, VideoCodec, VideoConfig};

    use super::*;

    fn with_video() -> DemuxEvent {
        // Only "there is a video track" matters here: no bitstream behind it.
        let record = AvcDecoderConfigurationRecord {
            profile: 0x42,
            compatibility: 0,
            level: 0x1e,
            nalu_length_size: 4,
            sps: Vec::new(),
            pps: Vec::new(),
        };
        DemuxEvent::Config(StreamConfig {
            video: Some(Arc::new(VideoConfig {
                codec: VideoCodec::H264(record),
                parameter_sets: Vec::new(),
                codec_string: "avc1.42001e".to_owned(),
                width: 320,
                height: 240,
                frame_rate: None,
            })),
            audio: None,
        })
    }

    fn audio_only() -> DemuxEvent {
        DemuxEvent::Config(StreamConfig {
            video: None,
            audio: None,
        })
    }

    /// A frame whose dts tells it apart.
    fn frame(track: Track, n: u64, keyframe: bool) -> DemuxEvent {
        DemuxEvent::Frame(Frame {
            track,
            pts: n,
            dts: n,
            keyframe,
            data: Bytes::new(),
        })
    }

    fn dts(message: Option<IngestEvent>) -> Vec<u64> {
        message
            .into_iter()
            .flat_map(IngestEvent::into_events)
            .map(|e| match e {
                DemuxEvent::Frame(f) => f.dts,
                _ => u64::MAX,
            })
            .collect()
    }

    #[tokio::test]
    async fn cancellation_is_watched_on_one_receiver() {
        let done = |rx: &mut oneshot::Receiver<()>| matches!(rx.try_recv(), Ok(()));
        let settle = || tokio::time::sleep(Duration::from_millis(20));
        let (a, b, later) = (
            CancellationToken::new(),
            CancellationToken::new(),
            CancellationToken::new(),
        );
        let (tx, rx) = oneshot::channel();
        let mut stop = watch_cancellation(a, b, rx);
        settle().await;
        assert!(!done(&mut stop));
        tx.send(later.clone()).unwrap();
        settle().await;
        assert!(!done(&mut stop));
        later.cancel();
        settle().await;
        assert!(done(&mut stop));
        // Either token alone, and a `later` that never comes.
        for first in [true, false] {
            let (a, b) = (CancellationToken::new(), CancellationToken::new());
            let (_, never) = oneshot::channel();
            let mut stop = watch_cancellation(a.clone(), b.clone(), never);
            settle().await;
            assert!(!done(&mut stop));
            if first {
                a.cancel();
            } else {
                b.cancel();
            }
            settle().await;
            assert!(done(&mut stop));
        }
    }

    #[test]
    fn keyframes_and_configs_go_at_once_with_what_was_held_before_them() {
        let t = Instant::now();
        let mut b = MediaBatcher::new();
        assert_eq!(dts(b.push(with_video(), t)), [u64::MAX]);
        assert_eq!(b.deadline(), None);
        assert!(b.push(frame(Track::Video, 1, false), t).is_none());
        assert_eq!(b.deadline(), Some(t + MAX_BATCH_HOLD_QUIET));
        assert!(b.push(frame(Track::Audio, 2, true), t).is_none());
        assert_eq!(dts(b.push(frame(Track::Video, 3, true), t)), [1, 2, 3]);
        assert_eq!(b.deadline(), None);
        assert!(b.take().is_none());
        assert!(b.push(frame(Track::Audio, 4, true), t).is_none());
        assert_eq!(dts(b.push(audio_only(), t)), [4, u64::MAX]);
        // Without video, every frame goes at once (audio-only segments close on audio).
        assert_eq!(dts(b.push(frame(Track::Audio, 5, true), t)), [5]);
    }

    #[test]
    fn a_batch_goes_after_its_hold_or_its_size() {
        let t = Instant::now();
        let mut b = MediaBatcher::new();
        b.push(with_video(), t);
        assert!(b.push(frame(Track::Video, 1, false), t).is_none());
        let almost = t + MAX_BATCH_HOLD - Duration::from_millis(1);
        assert!(b.push(frame(Track::Audio, 2, true), almost).is_none());
        assert_eq!(
            dts(b.push(frame(Track::Video, 3, false), t + MAX_BATCH_HOLD)),
            [1, 2, 3]
        );
        for n in 1..MAX_BATCH_EVENTS as u64 {
            assert!(b.push(frame(Track::Video, n, false), t).is_none());
        }
        let full = dts(b.push(frame(Track::Video, 99, false), t));
        assert_eq!(full.len(), MAX_BATCH_EVENTS);
        assert_eq!(full.last(), Some(&99));
        // A quiet connection hands over what it holds at the deadline.
        assert!(b.push(frame(Track::Video, 7, false), t).is_none());
        assert_eq!(dts(b.take()), [7]);
    }

    #[test]
    fn nothing_is_lost_reordered_or_held_too_long() {
        // A deterministic pseudo-random mix of events, times and takes at the deadline.
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let start = Instant::now();
        let mut now = start;
        let mut b = MediaBatcher::new();
        let (mut sent, mut pushed) = (Vec::new(), Vec::new());
        let mut held: Vec<Instant> = Vec::new();
        for n in 0..20_000u64 {
            now += Duration::from_millis(next() % 60);
            if b.deadline().is_some_and(|d| d <= now) {
                held.clear();
                sent.extend(dts(b.take()));
            }
            let event = match next() % 40 {
                0 => with_video(),
                1 => audio_only(),
                r => frame(
                    if r % 3 == 0 {
                        Track::Audio
                    } else {
                        Track::Video
                    },
                    n,
                    r % 11 == 0,
                ),
            };
            if let DemuxEvent::Frame(_) = &event {
                pushed.push(n);
            }
            held.push(now);
            let out = dts(b.push(event, now));
            assert!(out.len() <= MAX_BATCH_EVENTS);
            if !out.is_empty() {
                held.clear();
            }
            sent.extend(out.into_iter().filter(|d| *d != u64::MAX));
            // What is held arrived within the hold (it would have gone with this event).
            assert!(held.first().is_none_or(|t| now < *t + MAX_BATCH_HOLD));
        }
        sent.extend(dts(b.take()));
        assert_eq!(sent, pushed);
    }

    #[test]
    fn redacts_keys() {
        assert_eq!(redact_stream_key("good-key"), "good…");
        assert_eq!(redact_stream_key("sk_1234567890abcdef"), "sk_1…");
        assert_eq!(redact_stream_key("abc"), "a…");
        assert_eq!(redact_stream_key(""), "…");
        assert_eq!(redact_stream_key("ключ-ключ"), "ключ…");
    }
}
