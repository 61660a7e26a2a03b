//! Cuts a stream of [`Frame`]s into MPEG-TS segments that each start on a video keyframe.
//!
//! # Program date time
//!
//! A live playlist states `EXT-X-PROGRAM-DATE-TIME` on its first segment (and after each
//! discontinuity); a player derives every other segment's from the `EXTINF`s before it. For
//! that to give a segment the same time in every refresh of the playlist, the segments' times
//! follow their media durations, not the wall clock at which their frames happened to arrive:
//! a segment's [`Segment::program_date_time`] is the previous segment's plus its duration. Only
//! the first segment of the segmenter and the first after a discontinuity take the wall clock
//! `now` of their first frame (and never a time before the previous segment's end, so times do
//! not go backward). Durations are reported in whole milliseconds, the precision of both tags,
//! rounded so that their sum stays within half a millisecond of the media time (no drift
//! however long the stream runs); times are whole milliseconds too, so what a player adds up
//! is exactly what the segmenter states. Between discontinuities the times thus follow the
//! encoder's clock: they drift from the wall clock by the encoder clock's error (tens of parts
//! per million, a few tenths of a second over an hour).
//!
//! # Target duration
//!
//! RFC 8216 §6.2.1 forbids changing `EXT-X-TARGETDURATION` while a media playlist is live,
//! and §4.3.3.1 wants every `EXTINF`, rounded to the nearest second, at or below it. One
//! [`Segmenter`] lives for a whole broadcast (across encoder reconnects and discontinuities),
//! so it decides the target once and keeps it:
//!
//! - The target is decided when the **first segment closes**: the configured target rounded
//!   up to whole seconds, or that first segment's duration rounded to the nearest second if
//!   larger ([`Segmenter::target_duration_secs`]). The first segment is cut like any other
//!   (at the first keyframe at or after [`SegmenterConfig::target_duration`], or without one at
//!   [`SegmenterConfig::max_segment_duration`]), so the decided target is at most the maximum
//!   segment duration rounded up. Deciding on the first segment rather than on the
//!   configuration alone lets an encoder with a steady GOP longer than the target (a 10 s GOP
//!   under a 4 s target) keep whole-GOP segments that all start on a keyframe; deciding it no
//!   later is forced by the playlist being published with that first segment.
//! - From then on segments are still cut at the first keyframe at or after the configured
//!   target, and additionally **forced** without a keyframe (counted in
//!   [`SegmenterStats::forced_cuts`]) at the first frame of the timeline (video, or audio
//!   without video) that would take the segment to `target + 0.5 s` once its own duration is
//!   added, so that its `EXTINF` rounds to the target or less. A segment is never reported
//!   longer than that bound: when timestamps jump ahead (a gap, a broken encoder clock), a
//!   segment ends at the end of its last frame instead of at the start of the next one.
//! - An encoder whose GOP later grows beyond the decided target (a reconnect with other
//!   settings, a scene-cut keyframe placement) therefore gets segments that do not start with
//!   a keyframe (`independent == false`): they play through for a viewer already watching, and
//!   a player joining at one waits for the next keyframe. To bring keyframes back to segment
//!   starts, a segment that did not start with a keyframe is closed at the next keyframe once
//!   it is at least half the configured target long.

use std::collections::VecDeque;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use media::{Frame, MediaError, StreamConfig, Track, TsMuxer, TIMESCALE};

/// Target segment duration of the `standard` latency mode.
pub const STANDARD_TARGET_DURATION: Duration = Duration::from_secs(4);
/// Target segment duration of the `reduced` latency mode.
pub const REDUCED_TARGET_DURATION: Duration = Duration::from_secs(2);
/// A segment is cut even without a keyframe once it is this long, so that an encoder that
/// never sends one cannot make a segment grow without bound.
pub const DEFAULT_MAX_SEGMENT_DURATION: Duration = Duration::from_secs(30);

/// An open segment is cut once its next frame would take it past this many bytes of frame data,
/// whatever the timestamps say (an encoder that repeats one timestamp never reaches a target
/// duration). A segment of a 4 s target (up to 4.5 s long) reaches it at about 60 Mb/s, one of
/// a 30 s target at about 9 Mb/s, above what an ingest gateway is fed; a live window of six
/// segments then holds about 200 MiB of a misbehaving stream at most.
pub const DEFAULT_MAX_SEGMENT_BYTES: usize = 32 * 1024 * 1024;
/// An open segment is cut once it holds this many frames, video and audio together. A 30 s
/// segment of 60 fps video and 48 kHz AAC (47 frames per second) holds 3,200: this is almost
/// four times that.
pub const DEFAULT_MAX_SEGMENT_FRAMES: u32 = 12_000;
/// Audio frames kept while waiting for the first video keyframe (the oldest are dropped
/// beyond): one second of audio is 47 frames at 48 kHz, 94 at 96 kHz.
pub const DEFAULT_MAX_EARLY_AUDIO_FRAMES: usize = 256;

/// Audio this far ahead of the first video keyframe is kept and written after it.
pub const EARLY_AUDIO: Duration = Duration::from_secs(1);
const EARLY_AUDIO_TICKS: u64 = ticks(EARLY_AUDIO);

/// 90 kHz ticks per millisecond, the precision of `EXTINF` and `EXT-X-PROGRAM-DATE-TIME`.
const TICKS_PER_MS: u64 = TIMESCALE / 1000;

/// A duration in 90 kHz ticks rounded to the nearest whole second, as RFC 8216 compares an
/// `EXTINF` with the target duration (half a second rounds up).
pub fn rounded_secs(duration: u64) -> u64 {
    (duration + TIMESCALE / 2) / TIMESCALE
}

/// A duration rounded up to whole seconds, at least 1: a configured target as
/// `EXT-X-TARGETDURATION` states it.
pub fn ceil_secs(d: Duration) -> u64 {
    (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1)
}

/// The target duration of a stream whose first segment lasted `first_segment` ticks: the
/// configured target in whole seconds, raised to the first segment's rounded duration (see the
/// module documentation). [`Segmenter`] and [`crate::MediaPlaylist`] both decide with this.
pub fn decide_target_secs(configured: Duration, first_segment: u64) -> u64 {
    ceil_secs(configured).max(rounded_secs(first_segment))
}

/// The segment duration, in ticks, that a segment must stay below for its `EXTINF` to round
/// to `target_secs` or less, with a millisecond to spare for the rounding of `EXTINF` itself.
fn duration_limit(target_secs: u64) -> u64 {
    target_secs * TIMESCALE + TIMESCALE / 2 - TICKS_PER_MS
}

/// The latency modes of the seeds that this segmenter serves (low latency comes with parts).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LatencyMode {
    /// 4 s segments.
    #[default]
    Standard,
    /// 2 s segments.
    Reduced,
}

impl LatencyMode {
    /// The target segment duration of this mode.
    pub fn target_duration(self) -> Duration {
        match self {
            LatencyMode::Standard => STANDARD_TARGET_DURATION,
            LatencyMode::Reduced => REDUCED_TARGET_DURATION,
        }
    }
}

/// Segmenter settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmenterConfig {
    /// Cut at the first keyframe at or after this duration.
    pub target_duration: Duration,
    /// Cut here even without a keyframe.
    pub max_segment_duration: Duration,
    /// Cut before a frame whose data would take the segment past this many bytes.
    pub max_segment_bytes: usize,
    /// Cut before a frame that would be the segment's frame number `max_segment_frames + 1`.
    pub max_segment_frames: u32,
    /// Audio frames kept while waiting for the first video keyframe.
    pub max_early_audio_frames: usize,
}

impl Default for SegmenterConfig {
    fn default() -> Self {
        SegmenterConfig::for_latency(LatencyMode::Standard)
    }
}

impl SegmenterConfig {
    /// The settings of a latency mode.
    pub fn for_latency(mode: LatencyMode) -> Self {
        SegmenterConfig {
            target_duration: mode.target_duration(),
            max_segment_duration: DEFAULT_MAX_SEGMENT_DURATION,
            max_segment_bytes: DEFAULT_MAX_SEGMENT_BYTES,
            max_segment_frames: DEFAULT_MAX_SEGMENT_FRAMES,
            max_early_audio_frames: DEFAULT_MAX_EARLY_AUDIO_FRAMES,
        }
    }
}

/// A closed segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// Media sequence number (0 for the first segment of the stream).
    pub sequence: u64,
    /// The source restarted or changed codec configuration before this segment.
    pub discontinuity: bool,
    /// PTS of the first frame (90 kHz).
    pub start_pts: u64,
    /// Duration in 90 kHz ticks, a whole number of milliseconds (see the module documentation).
    pub duration: u64,
    /// Wall clock time of the start of the segment, in whole milliseconds: the previous
    /// segment's plus its duration, or, for the first segment and the first after a
    /// discontinuity, the wall clock at which its first frame was ingested (see the module
    /// documentation).
    pub program_date_time: SystemTime,
    /// Starts with a video keyframe (or is audio-only).
    pub independent: bool,
    /// Video frames in the segment.
    pub video_frames: u32,
    /// Audio frames in the segment.
    pub audio_frames: u32,
    /// The MPEG-TS bytes.
    pub data: Bytes,
}

impl Segment {
    /// Duration in seconds.
    pub fn duration_secs(&self) -> f64 {
        self.duration as f64 / TIMESCALE as f64
    }
}

#[derive(Debug)]
struct OpenSegment {
    sequence: u64,
    discontinuity: bool,
    start_pts: u64,
    end_pts: u64,
    program_date_time: SystemTime,
    independent: bool,
    video_frames: u32,
    audio_frames: u32,
    buf: BytesMut,
}

/// The wall-clock timeline of the segments since the last anchoring (module documentation).
#[derive(Debug, Clone, Copy)]
struct Timeline {
    /// Program date time of the segment that anchored it, in whole milliseconds.
    anchor: SystemTime,
    /// Exact media time of the segments closed since then.
    ticks: u64,
    /// `ticks` rounded to whole milliseconds: where the last closed segment ends.
    millis: u64,
}

impl Timeline {
    fn anchored(at: SystemTime) -> Self {
        let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
        let millis = u64::try_from(since.as_millis()).unwrap_or(u64::MAX / 2);
        Timeline {
            anchor: UNIX_EPOCH + Duration::from_millis(millis),
            ticks: 0,
            millis: 0,
        }
    }

    /// Where the last closed segment ends: the time of the next one.
    fn end(&self) -> SystemTime {
        self.anchor + Duration::from_millis(self.millis)
    }

    /// Adds a segment of `duration` ticks; returns its duration in whole milliseconds (in
    /// ticks), rounded so that the timeline stays within half a millisecond of media time.
    fn advance(&mut self, duration: u64) -> u64 {
        self.ticks += duration;
        let millis = (self.ticks + TICKS_PER_MS / 2) / TICKS_PER_MS;
        let rounded = millis - self.millis;
        self.millis = millis;
        rounded * TICKS_PER_MS
    }
}

/// Counters of the segmenter.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SegmenterStats {
    /// Frames dropped while waiting for the first video keyframe of a segment (audio only when
    /// it is more than [`EARLY_AUDIO`] ahead of the keyframe, or beyond
    /// [`SegmenterConfig::max_early_audio_frames`]).
    pub frames_before_keyframe: u64,
    /// Segments cut without a keyframe because they reached the maximum duration or would
    /// otherwise round above the target duration.
    pub forced_cuts: u64,
    /// Segments cut because they reached [`SegmenterConfig::max_segment_bytes`] or
    /// [`SegmenterConfig::max_segment_frames`] (timestamps that do not advance).
    pub capped_cuts: u64,
    /// Audio frames dropped while an audio configuration change waited for a keyframe.
    pub frames_dropped_for_config: u64,
    /// Segments written into a recycled buffer (see [`Segmenter::recycle`]).
    pub recycled_buffers: u64,
    /// Segment buffers allocated.
    pub allocated_buffers: u64,
    /// Times a segment outgrew its buffer (moved to one an eighth larger).
    pub grown_buffers: u64,
}

/// Keyframe-aligned segmenter of one stream. Feed it the [`StreamConfig`] whenever it changes
/// and every [`Frame`] with the wall clock at ingest; it returns each segment as it closes.
#[derive(Debug)]
pub struct Segmenter {
    config: SegmenterConfig,
    muxer: Option<TsMuxer>,
    open: Option<OpenSegment>,
    next_sequence: u64,
    pending_discontinuity: bool,
    pending_config: Option<StreamConfig>,
    last_video_dts: Option<u64>,
    video_interval: u64,
    last_segment_len: usize,
    /// A buffer given back through [`Segmenter::recycle`], for the next segment.
    spare: Option<BytesMut>,
    /// Audio that arrived while waiting for the first video keyframe (encoders send the first
    /// audio frame a few milliseconds ahead of it): written into the segment the keyframe
    /// opens, so that no frame the encoder sent is lost.
    early_audio: VecDeque<Frame>,
    stats: SegmenterStats,
    /// `config.target_duration` in ticks.
    target_ticks: u64,
    /// `config.max_segment_duration` in ticks.
    max_ticks: u64,
    /// The target duration, once the first segment decided it.
    target_secs: Option<u64>,
    /// A segment's duration stays below this many ticks (see [`duration_limit`]): from the
    /// decided target, or before that from the maximum segment duration.
    limit_ticks: u64,
    /// Duration of one audio frame of the current configuration.
    audio_interval: u64,
    /// The program date times of the segments, from the first one on.
    timeline: Option<Timeline>,
}

/// Segment buffers are sized in steps of this, so that the buffers of one stream are of a few
/// sizes and a recycled one fits the next segment.
const BUFFER_STEP: usize = 64 * 1024;

fn round_to_step(n: usize) -> usize {
    n.div_ceil(BUFFER_STEP).max(1) * BUFFER_STEP
}

/// Whether a segment buffer has much unused capacity (the segment was far smaller than the
/// ones before it): kept as it is, the closed segment would hold that memory while it is kept.
fn is_loose(buf: &BytesMut) -> bool {
    buf.capacity() - buf.len() > buf.len() / 2 + BUFFER_STEP
}

const fn ticks(d: Duration) -> u64 {
    (d.as_nanos() * TIMESCALE as u128 / 1_000_000_000) as u64
}

impl Segmenter {
    /// A segmenter with the given settings; nothing is produced until a configuration arrives.
    pub fn new(config: SegmenterConfig) -> Self {
        Segmenter {
            config,
            muxer: None,
            open: None,
            next_sequence: 0,
            pending_discontinuity: false,
            pending_config: None,
            last_video_dts: None,
            video_interval: TIMESCALE / 30,
            last_segment_len: 64 * 1024,
            spare: None,
            early_audio: VecDeque::new(),
            stats: SegmenterStats::default(),
            target_ticks: ticks(config.target_duration),
            max_ticks: ticks(config.max_segment_duration),
            target_secs: None,
            limit_ticks: duration_limit(
                ceil_secs(config.target_duration).max(ceil_secs(config.max_segment_duration)),
            ),
            audio_interval: 0,
            timeline: None,
        }
    }

    /// `EXT-X-TARGETDURATION` in seconds, once the first segment closed and decided it (see the
    /// module documentation); it never changes afterwards, through discontinuities included.
    /// No segment this segmenter returns rounds above it.
    pub fn target_duration_secs(&self) -> Option<u64> {
        self.target_secs
    }

    /// What was dropped or forced so far.
    pub fn stats(&self) -> SegmenterStats {
        self.stats
    }

    /// The current track configuration, if one arrived.
    pub fn stream_config(&self) -> Option<&StreamConfig> {
        self.muxer.as_ref().map(TsMuxer::config)
    }

    /// Sets the track configuration.
    ///
    /// A new video configuration closes the open segment (returned): the encoder follows it
    /// with a keyframe that starts the next segment, with a discontinuity. A change of the
    /// audio track alone waits for the next keyframe, which then starts a new segment early;
    /// audio frames that the open segment cannot carry meanwhile are dropped and counted.
    pub fn handle_config(&mut self, config: StreamConfig) -> Option<Segment> {
        let current = self.muxer.as_ref().map(TsMuxer::config);
        if current == Some(&config) {
            self.pending_config = None;
            return None;
        }
        let video_changed = current.is_none_or(|c| c.video != config.video);
        if self.open.is_some() && !video_changed {
            self.pending_config = Some(config);
            return None;
        }
        let closed = self.close(None);
        self.apply_config(config);
        closed
    }

    fn apply_config(&mut self, config: StreamConfig) {
        self.pending_config = None;
        self.drop_early_audio();
        self.audio_interval = config
            .audio
            .as_ref()
            .map_or(0, |a| a.asc.frame_duration_90k());
        match &mut self.muxer {
            Some(muxer) => muxer.set_config(config),
            None => self.muxer = Some(TsMuxer::new(config)),
        }
        if self.next_sequence > 0 {
            self.pending_discontinuity = true;
        }
    }

    /// The source restarted (an encoder reconnected): close the open segment and mark the
    /// next one as a discontinuity.
    pub fn handle_discontinuity(&mut self) -> Option<Segment> {
        let closed = self.close(None);
        if self.next_sequence > 0 {
            self.pending_discontinuity = true;
        }
        self.last_video_dts = None;
        self.drop_early_audio();
        closed
    }

    fn drop_early_audio(&mut self) {
        self.stats.frames_before_keyframe += self.early_audio.len() as u64;
        self.early_audio.clear();
    }

    /// Adds a frame ingested at `now`; returns the segment this frame closed, if any.
    pub fn handle_frame(
        &mut self,
        frame: &Frame,
        now: SystemTime,
    ) -> Result<Option<Segment>, MediaError> {
        let Some(muxer) = &self.muxer else {
            return Err(MediaError::MissingConfig {
                track: frame.track.name(),
            });
        };
        if frame.track == Track::Audio {
            if let Some(pending) = &self.pending_config {
                if pending.audio != muxer.config().audio {
                    self.stats.frames_dropped_for_config += 1;
                    return Ok(None);
                }
            }
        }
        let has_video = muxer.config().video.is_some();
        let track_configured = match frame.track {
            Track::Video => has_video,
            Track::Audio => muxer.config().audio.is_some(),
        };
        if !track_configured {
            return Err(MediaError::MissingConfig {
                track: frame.track.name(),
            });
        }
        let is_keyframe = frame.track == Track::Video && frame.keyframe;
        let random_access = if has_video { is_keyframe } else { true };

        let mut closed = None;
        match &self.open {
            None if !random_access => {
                if frame.track == Track::Audio {
                    // Bounded: only the last EARLY_AUDIO of it can be written.
                    let horizon = frame.pts.saturating_sub(EARLY_AUDIO_TICKS);
                    let stale = self
                        .early_audio
                        .iter()
                        .take_while(|a| a.pts < horizon)
                        .count();
                    self.stats.frames_before_keyframe += stale as u64;
                    self.early_audio.drain(..stale);
                    self.early_audio.push_back(frame.clone());
                    // Bounded in frames too: timestamps that do not advance make none stale.
                    if self.early_audio.len() > self.config.max_early_audio_frames {
                        self.early_audio.pop_front();
                        self.stats.frames_before_keyframe += 1;
                    }
                } else {
                    self.stats.frames_before_keyframe += 1;
                }
                return Ok(None);
            }
            None => {}
            Some(open) => {
                let elapsed = frame.pts.saturating_sub(open.start_pts);
                // Frames of the timeline (video, or audio without video) decide the cuts.
                let timeline = frame.track == Track::Video || !has_video;
                let cut_here = random_access && timeline;
                // A segment that did not start with a keyframe realigns at the next one.
                let min_ticks = if open.independent {
                    self.target_ticks
                } else {
                    self.target_ticks / 2
                };
                if cut_here && (elapsed >= min_ticks || self.pending_config.is_some()) {
                    closed = self.close(Some(frame.pts));
                } else if timeline
                    && (elapsed >= self.max_ticks
                        || elapsed + self.frame_interval(frame.track) >= self.limit_ticks)
                {
                    // This frame and its duration would take the segment to its limit.
                    self.stats.forced_cuts += 1;
                    closed = self.close(Some(frame.pts));
                } else if open.buf.len() + frame.data.len() > self.config.max_segment_bytes
                    || open.video_frames + open.audio_frames >= self.config.max_segment_frames
                {
                    // Bounded memory whatever the timestamps say (they may not advance at all).
                    self.stats.capped_cuts += 1;
                    closed = self.close(Some(frame.pts));
                }
            }
        }
        if self.open.is_none() {
            if let Some(config) = self.pending_config.take() {
                self.apply_config(config);
            }
            self.open_segment(frame, now, random_access)?;
            self.write(frame)?;
            // The keyframe first (the segment starts with it and its PCR), then the audio that
            // came just before it; players order by timestamp.
            let horizon = frame.pts.saturating_sub(EARLY_AUDIO_TICKS);
            for audio in std::mem::take(&mut self.early_audio) {
                if audio.pts >= horizon {
                    self.write(&audio)?;
                } else {
                    self.stats.frames_before_keyframe += 1;
                }
            }
            return Ok(closed);
        }
        self.write(frame)?;
        Ok(closed)
    }

    /// The duration of a frame of `track`, as far as it is known.
    fn frame_interval(&self, track: Track) -> u64 {
        match track {
            Track::Video => self.video_interval,
            Track::Audio => self.audio_interval,
        }
    }

    /// Closes and returns the open segment (end of stream).
    pub fn finish(&mut self) -> Option<Segment> {
        self.close(None)
    }

    /// The capacity a new segment's buffer starts with: the previous segment's size and a
    /// little more, so that a closed segment does not carry the spare half of a doubled buffer
    /// for the whole time it is kept.
    fn buffer_estimate(&self) -> usize {
        round_to_step(self.last_segment_len + self.last_segment_len / 16 + 4096)
    }

    /// Whether a recycled buffer is likely to hold the next segment without growing.
    fn fits(&self, buf: &BytesMut) -> bool {
        let likely = self.last_segment_len + self.last_segment_len / 32 + 4096;
        (likely..=2 * self.buffer_estimate()).contains(&buf.capacity())
    }

    /// Gives back the buffer of a segment the caller no longer holds (it left the live window
    /// and nobody else shares it), so that the next segment is written into memory that is
    /// already mapped instead of a fresh allocation. In steady state a live stream then writes
    /// its segments into the same few buffers over and over, and the allocator does not
    /// fragment under the churn of segment-sized allocations.
    ///
    /// When the open segment has only just started (the keyframe that opened it), its bytes
    /// move into `buf` at once: the stream then holds one segment buffer fewer.
    pub fn recycle(&mut self, mut buf: BytesMut) {
        buf.clear();
        if !self.fits(&buf) {
            return; // the wrong size for what this stream produces now
        }
        if let Some(open) = &mut self.open {
            if open.buf.len() < buf.capacity() / 4 {
                buf.extend_from_slice(&open.buf);
                open.buf = buf;
                self.stats.recycled_buffers += 1;
                return;
            }
        }
        self.spare = Some(buf);
    }

    fn open_segment(
        &mut self,
        frame: &Frame,
        now: SystemTime,
        independent: bool,
    ) -> Result<(), MediaError> {
        let mut buf = match self.spare.take() {
            Some(buf) if self.fits(&buf) => {
                self.stats.recycled_buffers += 1;
                buf
            }
            _ => {
                self.stats.allocated_buffers += 1;
                BytesMut::with_capacity(self.buffer_estimate())
            }
        };
        if let Some(muxer) = &mut self.muxer {
            muxer.write_tables(&mut buf)?;
        }
        let discontinuity = std::mem::take(&mut self.pending_discontinuity);
        let program_date_time = match &self.timeline {
            Some(timeline) if !discontinuity => timeline.end(),
            previous => {
                // Anchored to the wall clock, but never before the previous segment's end.
                let floor = previous.map_or(UNIX_EPOCH, |t| t.end());
                let timeline = Timeline::anchored(now.max(floor));
                self.timeline = Some(timeline);
                timeline.anchor
            }
        };
        self.open = Some(OpenSegment {
            sequence: self.next_sequence,
            discontinuity,
            start_pts: frame.pts,
            end_pts: frame.pts,
            program_date_time,
            independent,
            video_frames: 0,
            audio_frames: 0,
            buf,
        });
        self.next_sequence += 1;
        Ok(())
    }

    fn write(&mut self, frame: &Frame) -> Result<(), MediaError> {
        let (Some(muxer), Some(open)) = (&mut self.muxer, &mut self.open) else {
            return Ok(());
        };
        // Grow by an eighth rather than by doubling (a segment a little larger than the ones
        // before it): a closed segment must not carry a doubled buffer's spare half while it
        // is kept.
        let need = frame.data.len() + frame.data.len() / 32 + 1024;
        if open.buf.capacity() - open.buf.len() < need {
            let capacity = round_to_step(open.buf.capacity() + need.max(open.buf.capacity() / 8));
            self.stats.grown_buffers += 1;
            let mut grown = BytesMut::with_capacity(capacity);
            grown.extend_from_slice(&open.buf);
            open.buf = grown;
        }
        muxer.write_frame(frame, &mut open.buf)?;
        let frame_duration = match frame.track {
            Track::Video => {
                if let Some(last) = self.last_video_dts {
                    let d = frame.dts.saturating_sub(last);
                    if d > 0 && d < TIMESCALE {
                        self.video_interval = d;
                    }
                }
                self.last_video_dts = Some(frame.dts);
                open.video_frames += 1;
                self.video_interval
            }
            Track::Audio => {
                open.audio_frames += 1;
                self.audio_interval
            }
        };
        // The timeline of a stream with video is the video's: trailing audio (encoder priming,
        // a longer audio track) does not lengthen the last segment.
        let has_video = muxer.config().video.is_some();
        if frame.track == Track::Video || !has_video {
            open.end_pts = open.end_pts.max(frame.pts + frame_duration);
        }
        Ok(())
    }

    /// Closes the open segment; `next_start` is the PTS of the frame that starts the next one.
    fn close(&mut self, next_start: Option<u64>) -> Option<Segment> {
        let open = self.open.take()?;
        self.last_segment_len = open.buf.len();
        // A buffer with much unused capacity is copied to an exact-size allocation (rare, and
        // small next to the muxing) and kept for the next segment.
        let data = if is_loose(&open.buf) {
            let data = Bytes::copy_from_slice(&open.buf);
            self.recycle(open.buf);
            data
        } else {
            open.buf.freeze()
        };
        // A segment lasts until the next one starts, which counts the small gaps between frames;
        // but when the timestamps jumped ahead (more than the segment may last), it ends with
        // its last frame, and never after its limit, so that its EXTINF fits the target.
        let end = match next_start {
            Some(next) if next > open.start_pts && next - open.start_pts < self.limit_ticks => next,
            _ => open.end_pts,
        };
        let exact = end.saturating_sub(open.start_pts).min(self.limit_ticks - 1);
        // Rounding to whole milliseconds moves a duration by less than one: still below
        // `target + 0.5 s`, as `duration_limit` keeps a millisecond to spare.
        let duration = match &mut self.timeline {
            Some(timeline) => timeline.advance(exact),
            None => exact,
        };
        if self.target_secs.is_none() {
            let target = decide_target_secs(self.config.target_duration, duration);
            self.target_secs = Some(target);
            self.limit_ticks = duration_limit(target);
        }
        Some(Segment {
            sequence: open.sequence,
            discontinuity: open.discontinuity,
            start_pts: open.start_pts,
            duration,
            program_date_time: open.program_date_time,
            independent: open.independent,
            video_frames: open.video_frames,
            audio_frames: open.audio_frames,
            data,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Arc;

    use bytes::Bytes;
    use media::aac::AudioSpecificConfig;
    use media::avc::AvcDecoderConfigurationRecord;
    use media::{AudioConfig, VideoConfig};

    use super::*;

    pub(crate) fn video_config(level: u8) -> Arc<VideoConfig> {
        let rec = AvcDecoderConfigurationRecord {
            profile: 0x42,
            compatibility: 0xc0,
            level,
            nalu_length_size: 4,
            sps: vec![Bytes::from_static(&[
                0x67, 0x42, 0xc0, 0x1e, 0xd9, 0x01, 0x41, 0xfb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00,
                0x10, 0x00, 0x00, 0x03, 0x03, 0xc0, 0xf1, 0x62, 0xe4, 0x80,
            ])],
            pps: vec![Bytes::from_static(&[0x68, 0xcb, 0x83, 0xcb, 0x20])],
        };
        Arc::new(VideoConfig::from_avc(rec).unwrap())
    }

    pub(crate) fn audio_config() -> Arc<AudioConfig> {
        Arc::new(AudioConfig {
            asc: AudioSpecificConfig::new(2, 3, 2).unwrap(),
        })
    }

    pub(crate) fn video(ms: u64, keyframe: bool) -> Frame {
        let nal: &'static [u8] = if keyframe {
            &[0, 0, 0, 2, 0x65, 0x88]
        } else {
            &[0, 0, 0, 2, 0x41, 0x9a]
        };
        Frame {
            track: Track::Video,
            pts: 90_000 + ms * 90,
            dts: 90_000 + ms * 90,
            keyframe,
            data: Bytes::from_static(nal),
        }
    }

    pub(crate) fn audio(ms: u64) -> Frame {
        Frame {
            track: Track::Audio,
            pts: 90_000 + ms * 90,
            dts: 90_000 + ms * 90,
            keyframe: true,
            data: Bytes::from_static(&[0x21, 0x10, 0x04]),
        }
    }

    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH
    }

    fn run(seg: &mut Segmenter, frames: impl IntoIterator<Item = Frame>) -> Vec<Segment> {
        frames
            .into_iter()
            .filter_map(|f| seg.handle_frame(&f, now()).unwrap())
            .collect()
    }

    #[test]
    fn recycled_buffers_carry_the_next_segments() {
        let mut seg = Segmenter::new(SegmenterConfig::default());
        seg.handle_config(StreamConfig {
            video: Some(video_config(0x1e)),
            audio: Some(audio_config()),
        });
        let big = |ms: u64, keyframe: bool| Frame {
            data: Bytes::from(vec![0x41; 2000]),
            ..video(ms, keyframe)
        };
        // 100 ms frames, keyframes at 0, 6 s, 10 s and 14 s: segments of 60, 40 and 40 frames.
        let key = |i: u64| i == 0 || (i >= 60 && i % 20 == 0 && i != 80 && i != 120);
        let mut closed = Vec::new();
        for i in 0..=100u64 {
            closed.extend(seg.handle_frame(&big(i * 100, key(i)), now()).unwrap());
        }
        assert_eq!(closed.len(), 2);
        // The caller lets go of the first segment just after the second closed: the segment
        // that has just opened moves into its buffer.
        let first = closed.remove(0);
        let ptr = first.data.as_ptr();
        seg.recycle(first.data.try_into_mut().unwrap());
        let mut third = None;
        for i in 101..=140u64 {
            third = third.or(seg.handle_frame(&big(i * 100, key(i)), now()).unwrap());
        }
        let third = third.expect("third segment closed");
        assert_eq!(third.data.as_ptr(), ptr, "written into the recycled buffer");
        assert_eq!(third.video_frames, 40);
        assert_eq!(third.data.len() % 188, 0);
        assert_eq!(third.data[0], 0x47);
    }

    #[test]
    fn frames_without_config_are_refused() {
        let mut seg = Segmenter::new(SegmenterConfig::default());
        assert!(matches!(
            seg.handle_frame(&video(0, true), now()),
            Err(MediaError::MissingConfig { track: "video" })
        ));
        seg.handle_config(StreamConfig {
            video: Some(video_config(0x1e)),
            audio: None,
        });
        assert!(seg.handle_frame(&audio(0), now()).is_err());
    }

    #[test]
    fn waits_for_a_keyframe_and_cuts_at_the_first_one_after_the_target() {
        let mut seg = Segmenter::new(SegmenterConfig::default());
        seg.handle_config(StreamConfig {
            video: Some(video_config(0x1e)),
            audio: Some(audio_config()),
        });
        // 100 ms frames, keyframe every 1.5 s, the stream joins mid-GOP at 200 ms.
        let frames = (2..=100).flat_map(|i| [video(i * 100, i % 15 == 0), audio(i * 100 + 10)]);
        let mut segments = run(&mut seg, frames);
        segments.extend(seg.finish());
        // 13 video frames are dropped before the keyframe at 1.5 s; of the 13 audio frames,
        // the 10 within a second of it go into the first segment, after the keyframe.
        assert_eq!(seg.stats().frames_before_keyframe, 16);
        assert_eq!(segments[0].audio_frames, 10 + 45);
        let starts: Vec<u64> = segments
            .iter()
            .map(|s| (s.start_pts - 90_000) / 90)
            .collect();
        assert_eq!(starts, vec![1500, 6000]);
        assert_eq!(segments[0].duration, 4500 * 90);
        assert_eq!(segments[1].duration, 4100 * 90);
        assert!(segments.iter().all(|s| s.independent && !s.discontinuity));
        assert_eq!(segments[0].data.len() % 188, 0);
    }

    #[test]
    fn forced_cut_without_keyframes() {
        let mut seg = Segmenter::new(SegmenterConfig {
            target_duration: Duration::from_secs(2),
            max_segment_duration: Duration::from_secs(5),
            ..SegmenterConfig::default()
        });
        seg.handle_config(StreamConfig {
            video: Some(video_config(0x1e)),
            audio: None,
        });
        let segments = run(&mut seg, (0..80).map(|i| video(i * 100, i == 0)));
        assert_eq!(segments.len(), 1);
        assert_eq!(segments[0].duration, 5000 * 90);
        assert_eq!(seg.stats().forced_cuts, 1);
        let rest = seg.finish().unwrap();
        assert!(!rest.independent);
    }

    pub(crate) fn video_only() -> StreamConfig {
        StreamConfig {
            video: Some(video_config(0x1e)),
            audio: None,
        }
    }

    /// 100 ms video frames from `from_ms` (inclusive) to `to_ms` (exclusive), a keyframe every
    /// `gop_ms` counted from `gop_start_ms`.
    pub(crate) fn gop_frames(
        from_ms: u64,
        to_ms: u64,
        gop_start_ms: u64,
        gop_ms: u64,
    ) -> Vec<Frame> {
        (from_ms / 100..to_ms / 100)
            .map(|i| {
                let ms = i * 100;
                video(ms, ms >= gop_start_ms && (ms - gop_start_ms) % gop_ms == 0)
            })
            .collect()
    }

    #[test]
    fn the_first_segment_decides_the_target_and_later_segments_fit_it() {
        let mut seg = Segmenter::new(SegmenterConfig::default());
        seg.handle_config(video_only());
        assert_eq!(seg.target_duration_secs(), None);
        // A 2 s GOP for 12 s (segments of 4 s: the target is 4), then the encoder's GOP grows
        // to 10 s.
        let mut frames = gop_frames(0, 12_000, 0, 2_000);
        frames.extend(gop_frames(12_000, 60_000, 12_000, 10_000));
        let mut segments = run(&mut seg, frames);
        segments.extend(seg.finish());
        assert_eq!(seg.target_duration_secs(), Some(4));
        for s in &segments {
            assert!(
                rounded_secs(s.duration) <= 4,
                "{} is {}",
                s.sequence,
                s.duration
            );
        }
        let spans: Vec<(u64, u64, bool)> = segments
            .iter()
            .map(|s| ((s.start_pts - 90_000) / 90, s.duration / 90, s.independent))
            .collect();
        assert_eq!(
            spans,
            vec![
                (0, 4000, true),
                (4000, 4000, true),
                (8000, 4000, true),
                // The 10 s GOP: forced at 4.4 s (4.5 s with the next frame would round to 5);
                // the keyframe at 22 s comes 1.2 s into a segment, too early to realign, the
                // one at 32 s 2.4 s into one, which then closes there.
                (12_000, 4400, true),
                (16_400, 4400, false),
                (20_800, 4400, false),
                (25_200, 4400, false),
                (29_600, 2400, false),
                (32_000, 4400, true),
                (36_400, 4400, false),
                (40_800, 4400, false),
                (45_200, 4400, false),
                (49_600, 2400, false),
                (52_000, 4400, true),
                (56_400, 3600, false),
            ]
        );
        assert_eq!(seg.stats().forced_cuts, 9);
    }

    #[test]
    fn a_long_gop_from_the_start_makes_a_long_target_and_no_forced_cuts() {
        let mut seg = Segmenter::new(SegmenterConfig::default());
        seg.handle_config(video_only());
        let segments = run(&mut seg, gop_frames(0, 40_000, 0, 10_000));
        assert_eq!(seg.target_duration_secs(), Some(10));
        assert_eq!(segments.len(), 3);
        assert!(segments
            .iter()
            .all(|s| s.independent && s.duration == 900_000));
        assert_eq!(seg.stats().forced_cuts, 0);
    }

    #[test]
    fn the_target_survives_a_reconnect_whose_timestamps_restart() {
        let mut seg = Segmenter::new(SegmenterConfig::for_latency(LatencyMode::Reduced));
        seg.handle_config(video_only());
        let mut segments = run(&mut seg, gop_frames(0, 6_000, 0, 1_000));
        segments.extend(seg.handle_discontinuity());
        assert_eq!(seg.target_duration_secs(), Some(2));
        // The encoder comes back with timestamps from 0 and a 5 s GOP.
        seg.handle_config(video_only());
        let again = run(
            &mut seg,
            (0..150u64).map(|i| Frame {
                pts: i * 9000,
                dts: i * 9000,
                ..video(0, i % 50 == 0)
            }),
        );
        assert!(again[0].discontinuity);
        assert_eq!(seg.target_duration_secs(), Some(2));
        for s in segments.iter().chain(&again) {
            assert!(rounded_secs(s.duration) <= 2, "{s:?}");
        }
        assert!(seg.stats().forced_cuts > 0);
    }

    #[test]
    fn a_timestamp_jump_does_not_make_a_segment_longer_than_the_target() {
        let mut seg = Segmenter::new(SegmenterConfig::default());
        seg.handle_config(video_only());
        let mut frames = gop_frames(0, 10_000, 0, 2_000);
        // An hour ahead, then on from there.
        frames.extend(gop_frames(3_610_000, 3_620_000, 3_610_000, 2_000));
        let mut segments = run(&mut seg, frames);
        segments.extend(seg.finish());
        assert_eq!(seg.target_duration_secs(), Some(4));
        assert!(segments.iter().all(|s| rounded_secs(s.duration) <= 4));
        // The segment before the jump ends with its last frame.
        let before = segments
            .iter()
            .find(|s| s.start_pts == 90_000 + 8_000 * 90)
            .unwrap();
        assert_eq!(before.duration, 2_000 * 90);
    }

    #[test]
    fn the_first_segment_of_an_encoder_without_keyframes_decides_a_capped_target() {
        let mut seg = Segmenter::new(SegmenterConfig {
            target_duration: Duration::from_secs(2),
            max_segment_duration: Duration::from_secs(5),
            ..SegmenterConfig::default()
        });
        seg.handle_config(video_only());
        let segments = run(&mut seg, (0..200).map(|i| video(i * 100, i == 0)));
        assert_eq!(seg.target_duration_secs(), Some(5));
        assert!(segments.iter().all(|s| rounded_secs(s.duration) <= 5));
    }

    #[test]
    fn frames_that_repeat_one_timestamp_are_cut_at_the_frame_cap() {
        let mut seg = Segmenter::new(SegmenterConfig {
            max_segment_frames: 1000,
            ..SegmenterConfig::default()
        });
        seg.handle_config(StreamConfig {
            video: Some(video_config(0x1e)),
            audio: Some(audio_config()),
        });
        // 90,000 frames, every one at the same PTS (a keyframe now and then).
        let frames = (0..45_000u64).flat_map(|i| [video(0, i % 30 == 0), audio(0)]);
        let segments = run(&mut seg, frames);
        assert_eq!(segments.len(), 89);
        assert_eq!(seg.stats().capped_cuts, 89);
        assert!(segments
            .iter()
            .all(|s| s.video_frames + s.audio_frames == 1000));
        let rest = seg.finish().unwrap();
        assert_eq!(rest.video_frames + rest.audio_frames, 1000);
        assert!(segments.iter().all(|s| rounded_secs(s.duration) <= 4));
    }

    #[test]
    fn a_segment_is_cut_at_the_byte_cap() {
        let mut seg = Segmenter::new(SegmenterConfig {
            max_segment_bytes: 1024 * 1024,
            ..SegmenterConfig::default()
        });
        seg.handle_config(video_only());
        // One NAL unit of 100,000 bytes, length-prefixed.
        let mut nal = 99_996u32.to_be_bytes().to_vec();
        nal.resize(100_000, 0x41);
        let nal = Bytes::from(nal);
        let big = |keyframe| Frame {
            data: nal.clone(),
            ..video(0, keyframe)
        };
        let segments = run(&mut seg, (0..100).map(|i| big(i == 0)));
        assert_eq!(seg.stats().capped_cuts, segments.len() as u64);
        assert!(segments.len() >= 9, "{}", segments.len());
        for s in &segments {
            // Frame data up to the cap, plus what MPEG-TS adds to it.
            assert!(s.video_frames == 10, "{}", s.video_frames);
            assert!(s.data.len() <= 1024 * 1024 * 105 / 100, "{}", s.data.len());
        }
        assert!(segments[0].independent && !segments[1].independent);
    }

    #[test]
    fn early_audio_is_capped_in_frames() {
        let mut seg = Segmenter::new(SegmenterConfig::default());
        seg.handle_config(StreamConfig {
            video: Some(video_config(0x1e)),
            audio: Some(audio_config()),
        });
        // No keyframe yet, and audio that repeats one timestamp: nothing is stale by time.
        for _ in 0..10_000 {
            assert!(seg.handle_frame(&audio(0), now()).unwrap().is_none());
        }
        assert_eq!(seg.early_audio.len(), DEFAULT_MAX_EARLY_AUDIO_FRAMES);
        assert_eq!(
            seg.stats().frames_before_keyframe,
            10_000 - DEFAULT_MAX_EARLY_AUDIO_FRAMES as u64
        );
        seg.handle_frame(&video(0, true), now()).unwrap();
        let first = seg.finish().unwrap();
        assert_eq!(first.audio_frames as usize, DEFAULT_MAX_EARLY_AUDIO_FRAMES);
    }

    #[test]
    fn late_audio_config_starts_a_new_segment_at_the_next_keyframe() {
        let mut seg = Segmenter::new(SegmenterConfig::default());
        seg.handle_config(StreamConfig {
            video: Some(video_config(0x1e)),
            audio: None,
        });
        run(&mut seg, (0..10).map(|i| video(i * 100, i == 0)));
        let both = StreamConfig {
            video: Some(video_config(0x1e)),
            audio: Some(audio_config()),
        };
        assert!(seg.handle_config(both.clone()).is_none());
        assert!(seg.handle_frame(&audio(1000), now()).unwrap().is_none());
        assert_eq!(seg.stats().frames_dropped_for_config, 1);
        // The next keyframe cuts early (1.5 s < target) and applies the new tracks.
        let closed = run(&mut seg, (10..16).map(|i| video(i * 100, i == 15)));
        assert_eq!(closed.len(), 1);
        assert_eq!(closed[0].duration, 1500 * 90);
        assert_eq!(seg.stream_config(), Some(&both));
        seg.handle_frame(&audio(1510), now()).unwrap();
        let next = seg.finish().unwrap();
        assert!(next.discontinuity);
        assert_eq!(next.audio_frames, 1);
    }

    #[test]
    fn new_video_config_closes_the_segment_with_a_discontinuity() {
        let mut seg = Segmenter::new(SegmenterConfig::default());
        seg.handle_config(StreamConfig {
            video: Some(video_config(0x1e)),
            audio: None,
        });
        run(&mut seg, (0..10).map(|i| video(i * 100, i == 0)));
        let closed = seg.handle_config(StreamConfig {
            video: Some(video_config(0x1f)),
            audio: None,
        });
        assert_eq!(closed.unwrap().video_frames, 10);
        run(&mut seg, (10..20).map(|i| video(i * 100, i == 10)));
        let next = seg.finish().unwrap();
        assert!(next.discontinuity);
        assert_eq!(next.sequence, 1);
    }
}
