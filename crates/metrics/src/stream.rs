//! Per live stream series: created when a broadcast starts, removed when it ends.
//!
//! The label is the live stream id (never the stream key). Every per-frame counter is an
//! `IntCounter` taken once here, so the media path does one relaxed atomic add per frame and
//! never looks a label up.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use prometheus::{Gauge, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Registry};

use crate::{counter_vec, gauge_vec, lock, register, unix_ms, Metrics, STREAM_STATES};

/// Why a frame from an encoder did not reach the segmenter (`reason` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Its timestamp jumped too far or went back (the timeline refused it).
    Timestamp,
    /// The packager refused it (no codec configuration yet, bad payload).
    Invalid,
    /// A video frame of an audio-only live stream.
    AudioOnly,
    /// Replaced by slate until the encoder's next keyframe.
    Slate,
}

impl DropReason {
    const ALL: [DropReason; 4] = [
        DropReason::Timestamp,
        DropReason::Invalid,
        DropReason::AudioOnly,
        DropReason::Slate,
    ];

    fn as_str(self) -> &'static str {
        match self {
            DropReason::Timestamp => "timestamp",
            DropReason::Invalid => "invalid",
            DropReason::AudioOnly => "audio_only",
            DropReason::Slate => "slate",
        }
    }
}

#[derive(Debug)]
pub(crate) struct StreamFamilies {
    state: IntGaugeVec,
    frames: IntCounterVec,
    dropped: IntCounterVec,
    ingest_bytes: IntCounterVec,
    bitrate: prometheus::GaugeVec,
    segments: IntCounterVec,
    last_segment_age: prometheus::GaugeVec,
    write_errors: IntCounterVec,
    reconnects: IntCounterVec,
}

#[allow(clippy::expect_used)]
fn float_gauge_vec(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> prometheus::GaugeVec {
    register(
        registry,
        &prometheus::GaugeVec::new(prometheus::Opts::new(name, help), labels)
            .expect("valid metric options"),
    )
}

const ID: &[&str] = &["live_stream_id"];

impl StreamFamilies {
    pub(crate) fn new(r: &Registry) -> Self {
        StreamFamilies {
            state: gauge_vec(
                r,
                "onair_live_stream_state",
                "1 for the broadcast's current state (connected, recording, active, disconnected), else 0.",
                &["live_stream_id", "state"],
            ),
            frames: counter_vec(
                r,
                "onair_live_stream_frames_received_total",
                "Frames received from the encoder (all tracks).",
                ID,
            ),
            dropped: counter_vec(
                r,
                "onair_live_stream_frames_dropped_total",
                "Frames from the encoder that were not segmented, by reason.",
                &["live_stream_id", "reason"],
            ),
            ingest_bytes: counter_vec(
                r,
                "onair_live_stream_ingest_bytes_total",
                "Bytes of media payload received from the encoder (rate x 8: the ingest bitrate).",
                ID,
            ),
            bitrate: float_gauge_vec(
                r,
                "onair_live_stream_ingest_rate_bytes_per_second",
                "MPEG-TS bytes per second of the last segment written (x 8: its bitrate in bits per second).",
                ID,
            ),
            segments: counter_vec(
                r,
                "onair_live_stream_segments_written_total",
                "HLS segments closed and published.",
                ID,
            ),
            last_segment_age: float_gauge_vec(
                r,
                "onair_live_stream_last_segment_age_seconds",
                "Seconds since the last segment was published (since the broadcast started before the first).",
                ID,
            ),
            write_errors: counter_vec(
                r,
                "onair_live_stream_recording_write_errors_total",
                "Segments or playlists the recording failed to write.",
                ID,
            ),
            reconnects: counter_vec(
                r,
                "onair_live_stream_reconnects_total",
                "Encoders that reconnected to the broadcast inside its reconnect window.",
                ID,
            ),
        }
    }

    fn remove(&self, id: &str) {
        let _ = self.frames.remove_label_values(&[id]);
        let _ = self.ingest_bytes.remove_label_values(&[id]);
        let _ = self.bitrate.remove_label_values(&[id]);
        let _ = self.segments.remove_label_values(&[id]);
        let _ = self.last_segment_age.remove_label_values(&[id]);
        let _ = self.write_errors.remove_label_values(&[id]);
        let _ = self.reconnects.remove_label_values(&[id]);
        for state in STREAM_STATES {
            let _ = self.state.remove_label_values(&[id, state]);
        }
        for reason in DropReason::ALL {
            let _ = self.dropped.remove_label_values(&[id, reason.as_str()]);
        }
    }
}

/// What the registry keeps of a live broadcast: which one owns the series, and what is
/// computed at scrape time.
#[derive(Debug)]
pub(crate) struct LiveEntry {
    generation: u64,
    last_segment_ms: Arc<AtomicU64>,
    last_segment_age: Gauge,
}

impl LiveEntry {
    pub(crate) fn refresh(&self, now_ms: u64) {
        let last = self.last_segment_ms.load(Ordering::Relaxed);
        self.last_segment_age
            .set(now_ms.saturating_sub(last) as f64 / 1000.0);
    }
}

static GENERATION: AtomicU64 = AtomicU64::new(1);

/// One broadcast's series (see the module doc). Dropping it removes them, unless a newer
/// broadcast of the same live stream has started meanwhile.
#[derive(Debug)]
pub struct StreamMetrics {
    metrics: Metrics,
    live_stream_id: String,
    generation: u64,
    frames: IntCounter,
    ingest_bytes: IntCounter,
    dropped: [IntCounter; 4],
    bitrate: Gauge,
    segments: IntCounter,
    last_segment_ms: Arc<AtomicU64>,
    write_errors: IntCounter,
    reconnects: IntCounter,
    states: [IntGauge; 4],
}

impl StreamMetrics {
    pub(crate) fn new(metrics: &Metrics, live_stream_id: &str) -> Self {
        let f = &metrics.inner.streams;
        let id = live_stream_id;
        let generation = GENERATION.fetch_add(1, Ordering::Relaxed);
        let last_segment_ms = Arc::new(AtomicU64::new(unix_ms(SystemTime::now())));
        // Handles are taken under the lock: an older broadcast's handle dropped meanwhile
        // cannot remove them from under this one (see `Drop`).
        let mut live = lock(&metrics.inner.live);
        live.insert(
            id.to_owned(),
            LiveEntry {
                generation,
                last_segment_ms: Arc::clone(&last_segment_ms),
                last_segment_age: f.last_segment_age.with_label_values(&[id]),
            },
        );
        let handle = StreamMetrics {
            metrics: metrics.clone(),
            live_stream_id: id.to_owned(),
            generation,
            frames: f.frames.with_label_values(&[id]),
            ingest_bytes: f.ingest_bytes.with_label_values(&[id]),
            dropped: DropReason::ALL.map(|r| f.dropped.with_label_values(&[id, r.as_str()])),
            bitrate: f.bitrate.with_label_values(&[id]),
            segments: f.segments.with_label_values(&[id]),
            last_segment_ms,
            write_errors: f.write_errors.with_label_values(&[id]),
            reconnects: f.reconnects.with_label_values(&[id]),
            states: STREAM_STATES.map(|s| f.state.with_label_values(&[id, s])),
        };
        drop(live);
        handle
    }

    /// A frame of `bytes` payload bytes arrived from the encoder.
    #[inline]
    pub fn frame_in(&self, bytes: usize) {
        self.frames.inc();
        self.ingest_bytes.inc_by(bytes as u64);
    }

    /// A frame did not reach the segmenter.
    #[inline]
    pub fn frame_dropped(&self, reason: DropReason) {
        self.dropped[reason as usize].inc();
    }

    /// A segment of `bytes` bytes and `duration_secs` seconds was published.
    pub fn segment_written(&self, bytes: usize, duration_secs: f64) {
        self.segments.inc();
        self.last_segment_ms
            .store(unix_ms(SystemTime::now()), Ordering::Relaxed);
        if duration_secs > 0.0 {
            self.bitrate.set(bytes as f64 / duration_secs);
        }
    }

    /// The recording failed to write a segment or playlist.
    pub fn recording_write_error(&self) {
        self.write_errors.inc();
    }

    /// An encoder reconnected to the broadcast.
    pub fn reconnected(&self) {
        self.reconnects.inc();
    }

    /// The broadcast's state (`connected`, `recording`, `active`, `disconnected`; anything
    /// else, such as `idle`, sets every state to 0).
    pub fn set_state(&self, state: &str) {
        for (name, gauge) in STREAM_STATES.iter().zip(&self.states) {
            gauge.set(i64::from(*name == state));
        }
    }
}

impl Drop for StreamMetrics {
    fn drop(&mut self) {
        let mut live = lock(&self.metrics.inner.live);
        let mine = live
            .get(&self.live_stream_id)
            .is_some_and(|e| e.generation == self.generation);
        if mine {
            live.remove(&self.live_stream_id);
            // Under the lock: a broadcast of the stream starting now registers after this.
            self.metrics.inner.streams.remove(&self.live_stream_id);
        }
    }
}
