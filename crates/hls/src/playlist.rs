//! Playlist rendering: the multivariant playlist, the live media playlist (sliding window) and
//! the event/VOD playlist of every segment. A small writer of our own: LL-HLS tags come later
//! and `m3u8-rs` cannot write them; tests parse the output with `m3u8-rs`.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use media::TIMESCALE;

use crate::segmenter::{ceil_secs, decide_target_secs, rounded_secs, Segment};

/// Segments listed in a live media playlist by default.
pub const DEFAULT_WINDOW: usize = 6;

/// What a playlist keeps of a segment (the bytes live elsewhere).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentInfo {
    /// Media sequence number.
    pub sequence: u64,
    /// Preceded by `EXT-X-DISCONTINUITY`.
    pub discontinuity: bool,
    /// Duration in 90 kHz ticks.
    pub duration: u64,
    /// Wall clock of the first frame.
    pub program_date_time: SystemTime,
    /// Size in bytes.
    pub bytes: usize,
    /// Video frames in the segment.
    pub video_frames: u32,
}

impl SegmentInfo {
    /// Duration in seconds.
    pub fn duration_secs(&self) -> f64 {
        self.duration as f64 / TIMESCALE as f64
    }
}

impl From<&Segment> for SegmentInfo {
    fn from(s: &Segment) -> Self {
        SegmentInfo {
            sequence: s.sequence,
            discontinuity: s.discontinuity,
            duration: s.duration,
            program_date_time: s.program_date_time,
            bytes: s.data.len(),
            video_frames: s.video_frames,
        }
    }
}

/// The media playlist of one rendition: the segments' info, rendered as a live window or as
/// the whole event.
///
/// [`MediaPlaylist::new`] keeps every segment (a file remuxed to VOD). A live stream that may
/// run for hours uses [`MediaPlaylist::live`], which keeps only the live window plus running
/// totals, so its memory and the cost of each rendering stay constant; its event playlist is
/// written incrementally with [`MediaPlaylist::render_event_head`] and
/// [`MediaPlaylist::render_entry`].
#[derive(Debug, Clone)]
pub struct MediaPlaylist {
    target_duration: Duration,
    window: usize,
    keep_all: bool,
    /// Every segment (`keep_all`) or the live window.
    segments: Vec<SegmentInfo>,
    /// Segments pushed so far.
    count: u64,
    /// Discontinuities of segments no longer kept.
    dropped_discontinuities: usize,
    /// The decided target duration (0 before the first segment), raised only by a segment
    /// that rounds above it.
    target_secs: u64,
    peak_bps: f64,
    total_bytes: u64,
    total_ticks: u64,
    total_video_frames: u64,
    ended: bool,
}

impl MediaPlaylist {
    /// An empty playlist with the segmenter's target duration and a live window of `window`
    /// segments (at least 1) that keeps every segment.
    pub fn new(target_duration: Duration, window: usize) -> Self {
        MediaPlaylist {
            target_duration,
            window: window.max(1),
            keep_all: true,
            segments: Vec::new(),
            count: 0,
            dropped_discontinuities: 0,
            target_secs: 0,
            peak_bps: 0.0,
            total_bytes: 0,
            total_ticks: 0,
            total_video_frames: 0,
            ended: false,
        }
    }

    /// Like [`MediaPlaylist::new`], but keeps only the segments of the live window.
    pub fn live(target_duration: Duration, window: usize) -> Self {
        MediaPlaylist {
            keep_all: false,
            ..MediaPlaylist::new(target_duration, window)
        }
    }

    /// Adds a closed segment.
    pub fn push(&mut self, segment: SegmentInfo) {
        if self.count == 0 {
            self.target_secs = decide_target_secs(self.target_duration, segment.duration);
        }
        self.target_secs = self.target_secs.max(rounded_secs(segment.duration));
        if segment.duration > 0 {
            self.peak_bps = self
                .peak_bps
                .max(segment.bytes as f64 * 8.0 / segment.duration_secs());
        }
        self.total_bytes += segment.bytes as u64;
        self.total_ticks += segment.duration;
        self.total_video_frames += u64::from(segment.video_frames);
        self.count += 1;
        self.segments.push(segment);
        if !self.keep_all && self.segments.len() > self.window {
            let excess = self.segments.len() - self.window;
            self.dropped_discontinuities += self.segments[..excess]
                .iter()
                .filter(|s| s.discontinuity)
                .count();
            self.segments.drain(..excess);
        }
    }

    /// Marks the stream as ended (`EXT-X-ENDLIST`).
    pub fn end(&mut self) {
        self.ended = true;
    }

    /// The target duration this playlist was created with.
    pub fn configured_target_duration(&self) -> Duration {
        self.target_duration
    }

    /// Whether the stream has ended.
    pub fn is_ended(&self) -> bool {
        self.ended
    }

    /// The segments kept: every segment so far, or the live window for a
    /// [`MediaPlaylist::live`] playlist.
    pub fn segments(&self) -> &[SegmentInfo] {
        &self.segments
    }

    /// How many segments were pushed.
    pub fn segment_count(&self) -> u64 {
        self.count
    }

    /// The segments of the live window.
    pub fn window(&self) -> &[SegmentInfo] {
        &self.segments[self.segments.len().saturating_sub(self.window)..]
    }

    /// `EXT-X-TARGETDURATION`: decided by the first segment and fixed from then on (RFC 8216
    /// §6.2.1), by the same rule as [`crate::Segmenter::target_duration_secs`]: the configured
    /// target in whole seconds, raised to the first segment's rounded duration. Before the
    /// first segment, the configured target.
    ///
    /// The [`crate::Segmenter`] never produces a later segment that rounds above it, so a
    /// playlist fed by one never changes its target and an event playlist written
    /// incrementally never needs its head rewritten. A segment from elsewhere that does round
    /// above it raises it: an `EXTINF` above the target (§4.3.3.1) stalls players, a changed
    /// target only breaks the letter of the RFC.
    pub fn target_duration_secs(&self) -> u64 {
        ceil_secs(self.target_duration).max(self.target_secs)
    }

    /// Peak and average bitrate in bits per second (`BANDWIDTH`, `AVERAGE-BANDWIDTH`).
    pub fn bandwidth(&self) -> (u64, u64) {
        let average = if self.total_ticks > 0 {
            self.total_bytes as f64 * 8.0 * TIMESCALE as f64 / self.total_ticks as f64
        } else {
            0.0
        };
        (self.peak_bps.ceil() as u64, average.ceil() as u64)
    }

    /// Frames per second measured over all segments, if the stream has video.
    pub fn measured_frame_rate(&self) -> Option<f64> {
        (self.total_video_frames > 0 && self.total_ticks > 0)
            .then(|| self.total_video_frames as f64 * TIMESCALE as f64 / self.total_ticks as f64)
    }

    /// The live playlist: the last `window` segments, with `EXT-X-ENDLIST` once ended.
    pub fn render_live(&self, uri: impl Fn(&SegmentInfo) -> String) -> String {
        let window = self.window();
        let skipped = self.segments.len() - window.len();
        // The first listed segment carries no tag (see `write_entry`): a discontinuity before
        // it is counted here instead, so that each segment keeps its discontinuity sequence
        // number as the window slides (RFC 8216 6.2.1).
        let discontinuity_sequence = self.dropped_discontinuities
            + self.segments[..skipped]
                .iter()
                .filter(|s| s.discontinuity)
                .count()
            + usize::from(window.first().is_some_and(|s| s.discontinuity));
        let media_sequence = window.first().map_or(self.count, |s| s.sequence);
        self.render(window, media_sequence, discontinuity_sequence, None, uri)
    }

    /// The event playlist of every kept segment (`EVENT` while live, `VOD` once ended).
    pub fn render_event(&self, uri: impl Fn(&SegmentInfo) -> String) -> String {
        let kind = if self.ended { "VOD" } else { "EVENT" };
        let first = self.segments.first().map_or(0, |s| s.sequence);
        self.render(&self.segments, first, 0, Some(kind), uri)
    }

    /// The head of an event playlist whose first segment is `first_sequence`, for a playlist
    /// written incrementally: this, then [`MediaPlaylist::render_entry`] for each segment, then
    /// `#EXT-X-ENDLIST`. Its target duration is the current one: write it once the first
    /// segment was pushed, when [`MediaPlaylist::target_duration_secs`] is decided. Only a
    /// segment that did not come from a [`crate::Segmenter`] can raise it later (then the
    /// writer must update the head).
    pub fn render_event_head(&self, first_sequence: u64) -> String {
        let mut out = String::with_capacity(128);
        self.write_head(&mut out, first_sequence, 0, Some("EVENT"));
        out
    }

    /// The lines of one segment; `first` for the first segment of the playlist.
    pub fn render_entry(&self, segment: &SegmentInfo, first: bool, uri: &str) -> String {
        let mut out = String::with_capacity(96);
        write_entry(&mut out, segment, first, uri);
        out
    }

    fn write_head(
        &self,
        out: &mut String,
        media_sequence: u64,
        discontinuity_sequence: usize,
        playlist_type: Option<&str>,
    ) {
        out.push_str("#EXTM3U\n#EXT-X-VERSION:3\n");
        let _ = writeln!(out, "#EXT-X-TARGETDURATION:{}", self.target_duration_secs());
        let _ = writeln!(out, "#EXT-X-MEDIA-SEQUENCE:{media_sequence}");
        if discontinuity_sequence > 0 {
            let _ = writeln!(
                out,
                "#EXT-X-DISCONTINUITY-SEQUENCE:{discontinuity_sequence}"
            );
        }
        if let Some(kind) = playlist_type {
            let _ = writeln!(out, "#EXT-X-PLAYLIST-TYPE:{kind}");
        }
    }

    fn render(
        &self,
        segments: &[SegmentInfo],
        media_sequence: u64,
        discontinuity_sequence: usize,
        playlist_type: Option<&str>,
        uri: impl Fn(&SegmentInfo) -> String,
    ) -> String {
        let mut out = String::with_capacity(256 + segments.len() * 96);
        self.write_head(
            &mut out,
            media_sequence,
            discontinuity_sequence,
            playlist_type,
        );
        for (i, s) in segments.iter().enumerate() {
            write_entry(&mut out, s, i == 0, &uri(s));
        }
        if self.ended {
            out.push_str("#EXT-X-ENDLIST\n");
        }
        out
    }
}

fn write_entry(out: &mut String, s: &SegmentInfo, first: bool, uri: &str) {
    // The first segment of a playlist carries no discontinuity tag: the discontinuity
    // sequence already accounts for what came before it.
    if s.discontinuity && !first {
        out.push_str("#EXT-X-DISCONTINUITY\n");
    }
    if first || s.discontinuity {
        let _ = writeln!(
            out,
            "#EXT-X-PROGRAM-DATE-TIME:{}",
            format_date_time(s.program_date_time)
        );
    }
    // In whole milliseconds by integer arithmetic: the segmenter's durations are exact there,
    // so a player adding them to a program date time gets exactly the segmenter's times.
    let millis = (s.duration + TIMESCALE / 2000) / (TIMESCALE / 1000);
    let _ = writeln!(out, "#EXTINF:{}.{:03},", millis / 1000, millis % 1000);
    out.push_str(uri);
    out.push('\n');
}

/// One variant stream of a multivariant playlist.
#[derive(Debug, Clone, PartialEq)]
pub struct Variant {
    /// Peak bitrate, bits per second.
    pub bandwidth: u64,
    /// Average bitrate, bits per second.
    pub average_bandwidth: Option<u64>,
    /// RFC 6381 codec strings, comma separated.
    pub codecs: String,
    /// Width and height, for video.
    pub resolution: Option<(u32, u32)>,
    /// Frames per second, for video.
    pub frame_rate: Option<f64>,
    /// URI of the media playlist.
    pub uri: String,
}

/// Renders a multivariant playlist.
pub fn render_multivariant(variants: &[Variant]) -> String {
    let mut out = String::from("#EXTM3U\n#EXT-X-VERSION:3\n");
    for v in variants {
        let _ = write!(out, "#EXT-X-STREAM-INF:BANDWIDTH={}", v.bandwidth.max(1));
        if let Some(avg) = v.average_bandwidth {
            let _ = write!(out, ",AVERAGE-BANDWIDTH={}", avg.max(1));
        }
        let _ = write!(out, ",CODECS=\"{}\"", v.codecs);
        if let Some((w, h)) = v.resolution {
            let _ = write!(out, ",RESOLUTION={w}x{h}");
        }
        if let Some(fps) = v.frame_rate {
            let _ = write!(out, ",FRAME-RATE={fps:.3}");
        }
        out.push('\n');
        out.push_str(&v.uri);
        out.push('\n');
    }
    out
}

/// ISO 8601 / RFC 3339 in UTC with milliseconds, as `EXT-X-PROGRAM-DATE-TIME` wants it.
pub fn format_date_time(t: SystemTime) -> String {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(sequence: u64, secs: f64, discontinuity: bool) -> SegmentInfo {
        SegmentInfo {
            sequence,
            discontinuity,
            duration: (secs * 90_000.0) as u64,
            program_date_time: UNIX_EPOCH + Duration::from_secs(1_700_000_000 + sequence * 4),
            bytes: 500_000,
            video_frames: (secs * 30.0) as u32,
        }
    }

    #[test]
    fn formats_program_date_time() {
        let t = UNIX_EPOCH + Duration::from_millis(1_795_362_542_123);
        assert_eq!(format_date_time(t), "2026-11-22T15:49:02.123Z");
        assert_eq!(format_date_time(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(format_date_time(leap), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn live_window_slides_and_counts_discontinuities() {
        let mut p = MediaPlaylist::new(Duration::from_secs(4), 3);
        for i in 0..6 {
            p.push(info(i, if i == 2 { 6.6 } else { 4.0 }, i == 1 || i == 4));
        }
        let live = p.render_live(|s| format!("{}.ts", s.sequence));
        assert!(live.contains("#EXT-X-MEDIA-SEQUENCE:3\n"), "{live}");
        assert!(live.contains("#EXT-X-DISCONTINUITY-SEQUENCE:1\n"), "{live}");
        assert!(live.contains("#EXT-X-TARGETDURATION:7\n"), "{live}");
        assert_eq!(live.matches("#EXTINF").count(), 3);
        assert_eq!(live.matches("#EXT-X-DISCONTINUITY\n").count(), 1);
        assert!(!live.contains("ENDLIST"));
        // Segment 4 (after a discontinuity) becomes the first listed: its tag goes and the
        // discontinuity sequence counts it, so its number stays 2.
        p.push(info(6, 4.0, false));
        let live = p.render_live(|s| format!("{}.ts", s.sequence));
        assert!(live.contains("#EXT-X-MEDIA-SEQUENCE:4\n"), "{live}");
        assert!(live.contains("#EXT-X-DISCONTINUITY-SEQUENCE:2\n"), "{live}");
        assert!(!live.contains("#EXT-X-DISCONTINUITY\n"), "{live}");
        p.end();
        let vod = p.render_event(|s| format!("{}.ts", s.sequence));
        assert!(vod.contains("#EXT-X-PLAYLIST-TYPE:VOD\n"));
        assert!(vod.ends_with("#EXT-X-ENDLIST\n"));
        assert_eq!(vod.matches("#EXTINF").count(), 7);
        assert_eq!(p.bandwidth().0, 1_000_000);
    }

    #[test]
    fn a_live_playlist_keeps_only_the_window_and_renders_the_same() {
        let mut all = MediaPlaylist::new(Duration::from_secs(4), 3);
        let mut live = MediaPlaylist::live(Duration::from_secs(4), 3);
        let uri = |s: &SegmentInfo| format!("{}.ts", s.sequence);
        let mut incremental = String::new();
        for i in 0..50 {
            let s = info(
                i,
                if i == 7 {
                    6.6
                } else {
                    4.0 + (i % 3) as f64 / 10.0
                },
                i % 9 == 1,
            );
            all.push(s.clone());
            live.push(s.clone());
            if i == 0 {
                incremental = live.render_event_head(0);
            }
            incremental.push_str(&live.render_entry(&s, i == 0, &uri(&s)));
            assert_eq!(live.render_live(uri), all.render_live(uri), "after {i}");
            assert!(live.segments().len() <= 3);
        }
        assert_eq!(live.segment_count(), 50);
        assert_eq!(live.bandwidth(), all.bandwidth());
        assert_eq!(live.measured_frame_rate(), all.measured_frame_rate());
        // The incremental event playlist is the whole one, once its head carries the final
        // target duration (the writer updates it when a segment raises it).
        let incremental = incremental.replace("TARGETDURATION:4\n", "TARGETDURATION:7\n");
        assert_eq!(incremental, all.render_event(uri));
    }

    #[test]
    fn the_first_segment_decides_the_target_duration() {
        let mut p = MediaPlaylist::live(Duration::from_secs(4), 3);
        assert_eq!(p.target_duration_secs(), 4);
        p.push(info(0, 5.4, false));
        assert_eq!(p.target_duration_secs(), 5);
        // Shorter segments do not lower it.
        for i in 1..5 {
            p.push(info(i, 2.0 + i as f64 / 2.0, false));
            assert_eq!(p.target_duration_secs(), 5);
        }
        let mut short = MediaPlaylist::live(Duration::from_millis(1500), 3);
        short.push(info(0, 0.4, false));
        assert_eq!(short.target_duration_secs(), 2);
        short.push(info(1, 2.49, false));
        assert_eq!(short.target_duration_secs(), 2);
        // Only a segment that breaks the segmenter's promise raises it (4.3.3.1 over 6.2.1).
        short.push(info(2, 2.5, false));
        assert_eq!(short.target_duration_secs(), 3);
    }

    #[test]
    fn multivariant_lists_the_variant() {
        let text = render_multivariant(&[Variant {
            bandwidth: 3_300_000,
            average_bandwidth: Some(3_000_000),
            codecs: "avc1.64001f,mp4a.40.2".into(),
            resolution: Some((1280, 720)),
            frame_rate: Some(30.0),
            uri: "abc/stream.m3u8".into(),
        }]);
        assert_eq!(
            text,
            "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-STREAM-INF:BANDWIDTH=3300000,AVERAGE-BANDWIDTH=3000000,\
             CODECS=\"avc1.64001f,mp4a.40.2\",RESOLUTION=1280x720,FRAME-RATE=30.000\nabc/stream.m3u8\n"
        );
    }
}
