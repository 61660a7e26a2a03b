//! Real-time pacing of a publisher (sans-IO: bytes, frames and `now` in, "read again at" out).
//!
//! A broadcast produces media at the speed of the wall clock. Anyone with a stream key can
//! push faster than that (a file sent as fast as the network allows, or hostile timestamps),
//! and without a bound each second of wall time could add minutes of segments to the disk.
//! Both ingest drivers (RTMP and SRT) feed a [`Pacer`] with what they read and stop reading
//! until the instant it returns: backpressure, never a disconnect, so an encoder that sends
//! a burst after a network stall catches up smoothly.
//!
//! Two independent bounds, whichever is later wins:
//! - **media lead**: the decoding time of the newest frame (the demuxer's output timeline,
//!   after timestamp jumps were rebased) may run ahead of the wall time since the first frame
//!   by at most [`PacingConfig::max_lead`];
//! - **bitrate**: bytes read may exceed [`PacingConfig::max_bitrate`] only by a burst of
//!   [`PacingConfig::burst`] worth of that rate (a keyframe, or what queued up during a stall).

use std::time::Duration;

use media::Frame;
use tokio::time::Instant;

/// How far a publisher's media time may run ahead of the wall clock before it is not read.
/// Encoders buffer little (OBS and ffmpeg send in real time); 10 s leaves room for a
/// reconnecting encoder that flushes its queue.
pub const DEFAULT_MAX_LEAD: Duration = Duration::from_secs(10);

/// The most bits per second read from one publisher, averaged over [`DEFAULT_BURST`].
/// 4K at 60 fps is encoded at up to ~50 Mbit/s (YouTube's highest recommendation is 51).
pub const DEFAULT_MAX_BITRATE: u64 = 60_000_000;

/// How much faster than [`DEFAULT_MAX_BITRATE`] a publisher may send for a moment, expressed
/// as seconds of that rate (a large keyframe, a burst after a stall).
pub const DEFAULT_BURST: Duration = Duration::from_secs(2);

/// Pacing limits of one publisher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacingConfig {
    /// See [`DEFAULT_MAX_LEAD`].
    pub max_lead: Duration,
    /// See [`DEFAULT_MAX_BITRATE`]; 0 turns the bitrate ceiling off.
    pub max_bitrate: u64,
    /// See [`DEFAULT_BURST`].
    pub burst: Duration,
}

impl Default for PacingConfig {
    fn default() -> Self {
        PacingConfig {
            max_lead: DEFAULT_MAX_LEAD,
            max_bitrate: DEFAULT_MAX_BITRATE,
            burst: DEFAULT_BURST,
        }
    }
}

impl PacingConfig {
    /// Checks the values; the binary calls it once before binding a port.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_lead < Duration::from_secs(1) {
            return Err("pacing max_lead must be at least 1 s".into());
        }
        if self.max_bitrate != 0 && self.max_bitrate < 100_000 {
            return Err("pacing max_bitrate must be 0 (off) or at least 100 kbit/s".into());
        }
        if self.burst.is_zero() {
            return Err("pacing burst must be greater than zero".into());
        }
        Ok(())
    }
}

/// 90 kHz ticks (the [`Frame`] clock) per millisecond.
const TICKS_PER_MS: u64 = 90;

/// The pacing state of one publisher connection. Feed it with
/// [`handle_bytes`](Pacer::handle_bytes) and [`handle_frame`](Pacer::handle_frame); when
/// [`resume_at`](Pacer::resume_at) is later than `now`, do not read until then.
#[derive(Debug)]
pub struct Pacer {
    config: PacingConfig,
    /// The wall time and decoding time of the first frame.
    origin: Option<(Instant, u64)>,
    /// The newest decoding time seen, relative to the origin (ticks).
    newest: u64,
    /// Bitrate bucket: the instant at which everything read so far would have been read at
    /// exactly the ceiling (GCRA's "theoretical arrival time").
    paid_until: Option<Instant>,
    /// Time spent waiting, for the connection's closing log line.
    waited: Duration,
}

impl Pacer {
    /// A pacer for a new connection.
    pub fn new(config: PacingConfig) -> Self {
        Pacer {
            config,
            origin: None,
            newest: 0,
            paid_until: None,
            waited: Duration::ZERO,
        }
    }

    /// Accounts `n` bytes read from the publisher.
    pub fn handle_bytes(&mut self, n: usize, now: Instant) {
        if self.config.max_bitrate == 0 || n == 0 {
            return;
        }
        let seconds = (n as f64 * 8.0) / self.config.max_bitrate as f64;
        let start = self.paid_until.map_or(now, |t| t.max(now));
        self.paid_until = Some(start + Duration::from_secs_f64(seconds));
    }

    /// Accounts a frame the publisher sent.
    pub fn handle_frame(&mut self, frame: &Frame, now: Instant) {
        let (_, first) = *self.origin.get_or_insert((now, frame.dts));
        // Decoding times increase per track; audio and video interleave, so keep the newest.
        self.newest = self.newest.max(frame.dts.saturating_sub(first));
    }

    /// The instant before which the publisher must not be read, if that is later than `now`.
    pub fn resume_at(&self, now: Instant) -> Option<Instant> {
        let lead = self.origin.map(|(wall, _)| {
            let media = Duration::from_millis(self.newest / TICKS_PER_MS);
            wall + media.saturating_sub(self.config.max_lead)
        });
        let rate = self
            .paid_until
            .map(|t| t.checked_sub(self.config.burst).unwrap_or(t));
        let at = lead.into_iter().chain(rate).max()?;
        (at > now).then_some(at)
    }

    /// Records that the driver waited from `from` to `to` (for logs).
    pub fn record_wait(&mut self, from: Instant, to: Instant) {
        self.waited += to.saturating_duration_since(from);
    }

    /// Total time the driver waited because of this pacer.
    pub fn waited(&self) -> Duration {
        self.waited
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use media::Track;

    fn frame(ms: u64) -> Frame {
        Frame {
            track: Track::Video,
            pts: ms * TICKS_PER_MS,
            dts: ms * TICKS_PER_MS,
            keyframe: false,
            data: Bytes::new(),
        }
    }

    #[test]
    fn media_ahead_of_the_clock_waits_until_it_is_within_the_lead() {
        let t0 = Instant::now();
        let mut p = Pacer::new(PacingConfig {
            max_bitrate: 0,
            ..PacingConfig::default()
        });
        // The first frame's timestamp is only the origin: a stream may start at any value.
        p.handle_frame(&frame(1_000_000), t0);
        assert_eq!(p.resume_at(t0), None);
        p.handle_frame(&frame(1_000_000 + 10_000), t0);
        assert_eq!(p.resume_at(t0), None, "exactly the lead is allowed");
        p.handle_frame(&frame(1_000_000 + 25_000), t0);
        assert_eq!(p.resume_at(t0), Some(t0 + Duration::from_secs(15)));
        // Real time passed: nothing to wait for.
        let later = t0 + Duration::from_secs(15);
        assert_eq!(p.resume_at(later), None);
        // Going backwards in time (another track's frame) never moves the bound back.
        p.handle_frame(&frame(1_000_000 + 1_000), later);
        p.handle_frame(&frame(1_000_000 + 40_000), later);
        assert_eq!(p.resume_at(later), Some(t0 + Duration::from_secs(30)));
    }

    #[test]
    fn bytes_beyond_the_ceiling_and_its_burst_wait() {
        let t0 = Instant::now();
        let mut p = Pacer::new(PacingConfig {
            max_bitrate: 8_000_000, // 1 MB/s
            burst: Duration::from_secs(2),
            ..PacingConfig::default()
        });
        // Two seconds' worth at once is the burst: no wait.
        p.handle_bytes(2_000_000, t0);
        assert_eq!(p.resume_at(t0), None);
        // One more second's worth must wait one second.
        p.handle_bytes(1_000_000, t0);
        let at = p.resume_at(t0).expect("must wait");
        let waited = at - t0;
        assert!(
            (Duration::from_millis(999)..=Duration::from_millis(1001)).contains(&waited),
            "{waited:?}"
        );
        // A publisher at exactly the ceiling never waits.
        let mut p = Pacer::new(PacingConfig {
            max_bitrate: 8_000_000,
            ..PacingConfig::default()
        });
        for i in 0..100u64 {
            let now = t0 + Duration::from_millis(i * 100);
            p.handle_bytes(100_000, now);
            assert_eq!(p.resume_at(now), None, "at {i}");
        }
    }

    #[test]
    fn the_ceiling_can_be_turned_off_and_bad_values_are_refused() {
        let t0 = Instant::now();
        let mut p = Pacer::new(PacingConfig {
            max_bitrate: 0,
            ..PacingConfig::default()
        });
        p.handle_bytes(1 << 30, t0);
        assert_eq!(p.resume_at(t0), None);
        assert!(PacingConfig::default().validate().is_ok());
        let bad = PacingConfig {
            max_lead: Duration::ZERO,
            ..PacingConfig::default()
        };
        assert!(bad.validate().is_err());
        let bad = PacingConfig {
            max_bitrate: 10,
            ..PacingConfig::default()
        };
        assert!(bad.validate().is_err());
    }
}
