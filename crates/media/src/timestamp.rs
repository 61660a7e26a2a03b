//! Mapping of FLV/RTMP millisecond timestamps onto the model's 90 kHz clock.
//!
//! RTMP timestamps are 32-bit milliseconds that wrap after about 49.7 days, encoders restart
//! them at zero when they reconnect, and some jump on their own. The mapper unwraps them and
//! rebases any step that goes far backwards or leaps far ahead, so the output clock is shared by
//! both tracks, starts at [`START_90K`], never goes backwards within a track and never shows a
//! huge gap.
//!
//! MPEG-TS input (SRT) has 90 kHz timestamps already: the TS demuxer unwraps their 33 bits
//! itself and hands them to [`TimestampMapper::map_90k`], which rebases the same way without
//! rounding them to milliseconds.

use crate::frame::{Track, TIMESCALE};

/// A forward step larger than this (in ms) is treated as a timestamp jump and rebased.
pub const DEFAULT_MAX_FORWARD_JUMP_MS: i64 = 10_000;
/// A backward step larger than this (in ms, relative to the newest timestamp of either track)
/// is treated as a restart and rebased. Smaller ones are normal audio/video interleaving.
pub const DEFAULT_MAX_BACKWARD_JUMP_MS: i64 = 1_000;
/// The output clock starts here (1 s), leaving room below for the PCR lead and for audio that
/// starts slightly before video.
pub const START_90K: u64 = TIMESCALE;
/// Gap used after a rebase when a track has no frame interval yet (ms).
const DEFAULT_FRAME_INTERVAL_MS: i64 = 20;
const WRAP: i64 = 1 << 32;
const TICKS_PER_MS: i64 = (TIMESCALE / 1000) as i64;

/// Limits of the timestamp mapper.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimestampConfig {
    /// See [`DEFAULT_MAX_FORWARD_JUMP_MS`].
    pub max_forward_jump_ms: i64,
    /// See [`DEFAULT_MAX_BACKWARD_JUMP_MS`].
    pub max_backward_jump_ms: i64,
}

impl Default for TimestampConfig {
    fn default() -> Self {
        TimestampConfig {
            max_forward_jump_ms: DEFAULT_MAX_FORWARD_JUMP_MS,
            max_backward_jump_ms: DEFAULT_MAX_BACKWARD_JUMP_MS,
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct TrackClock {
    last_dts: Option<u64>,
    /// Last output time before the start offset, 90 kHz.
    last: Option<i64>,
    /// Last plausible frame interval, 90 kHz.
    interval: Option<i64>,
}

/// Unwraps, rebases and converts timestamps of one stream (both tracks).
#[derive(Debug, Clone)]
pub struct TimestampMapper {
    config: TimestampConfig,
    /// Last unwrapped millisecond input of [`TimestampMapper::map`].
    last_raw: Option<i64>,
    wraps: i64,
    started: bool,
    mapped: u64,
    /// Input to output offset, 90 kHz.
    offset: i64,
    /// Newest output time of either track (before the start offset), 90 kHz.
    newest: i64,
    tracks: [TrackClock; 2],
    rebases: u64,
}

/// A mapped timestamp pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mapped {
    /// Decoding time, 90 kHz.
    pub dts: u64,
    /// Presentation time, 90 kHz, never below `dts`.
    pub pts: u64,
    /// Whether this timestamp was rebased (the input jumped).
    pub rebased: bool,
}

impl Default for TimestampMapper {
    fn default() -> Self {
        Self::new(TimestampConfig::default())
    }
}

impl TimestampMapper {
    /// A mapper with the given limits.
    pub fn new(config: TimestampConfig) -> Self {
        TimestampMapper {
            config,
            last_raw: None,
            wraps: 0,
            started: false,
            mapped: 0,
            offset: 0,
            newest: 0,
            tracks: [TrackClock::default(); 2],
            rebases: 0,
        }
    }

    /// How many times the input has been rebased so far.
    pub fn rebases(&self) -> u64 {
        self.rebases
    }

    /// Maps a 32-bit millisecond timestamp and a composition offset (ms) of `track`.
    pub fn map(&mut self, track: Track, timestamp_ms: u32, composition_ms: i32) -> Mapped {
        let mut raw = i64::from(timestamp_ms) + self.wraps * WRAP;
        if let Some(last) = self.last_raw {
            if raw < last - WRAP / 2 {
                self.wraps += 1;
                raw += WRAP;
            } else if raw > last + WRAP / 2 && self.wraps > 0 {
                raw -= WRAP; // a late timestamp from before the wrap
            }
        }
        self.last_raw = Some(raw);
        self.map_ticks(
            track,
            raw * TICKS_PER_MS,
            i64::from(composition_ms) * TICKS_PER_MS,
        )
    }

    /// Maps a decoding time and a presentation time already on a 90 kHz clock and already
    /// unwrapped by the caller (MPEG-TS input: 33-bit PTS/DTS made monotonic by the demuxer).
    /// The same rebasing as [`TimestampMapper::map`] applies. Use one of the two methods per
    /// mapper, not both.
    pub fn map_90k(&mut self, track: Track, dts: i64, pts: i64) -> Mapped {
        self.map_ticks(track, dts, pts.saturating_sub(dts))
    }

    fn map_ticks(&mut self, track: Track, raw: i64, composition: i64) -> Mapped {
        let mut rebased = false;
        let clock = self.tracks[track as usize];
        if !self.started {
            self.started = true;
            self.offset = -raw;
        }
        let mut out = raw.saturating_add(self.offset);
        if self.mapped > 0 {
            let step = out.saturating_sub(self.newest);
            if step > self.config.max_forward_jump_ms.saturating_mul(TICKS_PER_MS)
                || step
                    < -self
                        .config
                        .max_backward_jump_ms
                        .saturating_mul(TICKS_PER_MS)
            {
                let gap = clock
                    .interval
                    .unwrap_or(DEFAULT_FRAME_INTERVAL_MS * TICKS_PER_MS);
                let target = self.newest + gap;
                self.offset = self.offset.saturating_add(target - out);
                out = target;
                rebased = true;
                self.rebases += 1;
            }
        }
        self.mapped += 1;
        self.newest = self.newest.max(out);

        let start = START_90K as i64;
        let unclamped = start.saturating_add(out).max(0) as u64;
        let dts = match clock.last_dts {
            Some(last) if unclamped <= last => last + 1,
            _ => unclamped,
        };
        let pts_raw = (unclamped as i64).saturating_add(composition);
        let pts = (pts_raw.max(0) as u64).max(dts);

        let t = &mut self.tracks[track as usize];
        if let Some(last) = t.last {
            let interval = out - last;
            if (TICKS_PER_MS..=1000 * TICKS_PER_MS).contains(&interval) {
                t.interval = Some(interval);
            }
        }
        t.last = Some(out);
        t.last_dts = Some(dts);
        Mapped { dts, pts, rebased }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_at_start_and_keeps_composition_offsets() {
        let mut m = TimestampMapper::default();
        let a = m.map(Track::Video, 5000, 66);
        assert_eq!(a.dts, START_90K);
        assert_eq!(a.pts, START_90K + 66 * 90);
        let b = m.map(Track::Video, 5033, 0);
        assert_eq!(b.dts, START_90K + 33 * 90);
        assert!(!b.rebased);
    }

    #[test]
    fn unwraps_32_bit_timestamps() {
        let mut m = TimestampMapper::default();
        let a = m.map(Track::Audio, u32::MAX - 10, 0);
        let b = m.map(Track::Audio, 13, 0);
        assert_eq!(b.dts - a.dts, 24 * 90);
        assert!(!b.rebased);
    }

    #[test]
    fn rebases_backward_and_forward_jumps() {
        let mut m = TimestampMapper::default();
        for i in 0..10 {
            m.map(Track::Video, 100_000 + i * 40, 0);
        }
        let before = m.map(Track::Video, 100_400, 0);
        // Encoder restarted at zero.
        let restart = m.map(Track::Video, 0, 0);
        assert!(restart.rebased);
        assert_eq!(restart.dts - before.dts, 40 * 90);
        // Leap of a day ahead.
        let leap = m.map(Track::Video, 86_400_000, 0);
        assert!(leap.rebased);
        assert_eq!(leap.dts - restart.dts, 40 * 90);
        let next = m.map(Track::Video, 86_400_040, 0);
        assert!(!next.rebased);
        assert_eq!(next.dts - leap.dts, 40 * 90);
        assert_eq!(m.rebases(), 2);
    }

    #[test]
    fn ticks_keep_their_precision_and_rebase_like_milliseconds() {
        let mut m = TimestampMapper::default();
        let a = m.map_90k(Track::Audio, 1_000_000, 1_000_000);
        assert_eq!(a.dts, START_90K);
        // 1024 samples at 44.1 kHz: 2089 ticks, not a whole number of milliseconds.
        let b = m.map_90k(Track::Audio, 1_002_089, 1_002_089);
        assert_eq!(b.dts - a.dts, 2089);
        let v = m.map_90k(Track::Video, 1_000_000, 1_007_200);
        assert_eq!(v.pts - v.dts, 7200);
        // A restart far back is rebased one interval after the newest frame.
        let r = m.map_90k(Track::Audio, 5, 5);
        assert!(r.rebased);
        assert_eq!(r.dts - b.dts, 2089);
    }

    #[test]
    fn small_steps_back_keep_dts_strictly_increasing() {
        let mut m = TimestampMapper::default();
        let a = m.map(Track::Video, 1000, 0);
        let b = m.map(Track::Video, 999, -50);
        assert!(b.dts > a.dts);
        assert!(b.pts >= b.dts);
        // Audio slightly behind video is normal and not rebased.
        let c = m.map(Track::Audio, 980, 0);
        assert!(!c.rebased);
        assert_eq!(c.dts, START_90K - 20 * 90);
    }
}
