//! Playlist rendering: the multivariant playlist, the live media playlist (sliding window) and
//! the event/VOD playlist of every segment. A small writer of our own: LL-HLS tags come later
//! and `m3u8-rs` cannot write them; tests parse the output with `m3u8-rs`.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use media::TIMESCALE;

use crate::segmenter::Segment;

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

/// The media playlist of one rendition: every segment's info, rendered as a live window or
/// as the whole event.
#[derive(Debug, Clone)]
pub struct MediaPlaylist {
    target_duration: Duration,
    window: usize,
    segments: Vec<SegmentInfo>,
    max_rounded_duration: u64,
    ended: bool,
}

impl MediaPlaylist {
    /// An empty playlist with the segmenter's target duration and a live window of `window`
    /// segments (at least 1).
    pub fn new(target_duration: Duration, window: usize) -> Self {
        MediaPlaylist {
            target_duration,
            window: window.max(1),
            segments: Vec::new(),
            max_rounded_duration: 0,
            ended: false,
        }
    }

    /// Adds a closed segment.
    pub fn push(&mut self, segment: SegmentInfo) {
        self.max_rounded_duration = self
            .max_rounded_duration
            .max(segment.duration_secs().round() as u64);
        self.segments.push(segment);
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

    /// Every segment so far.
    pub fn segments(&self) -> &[SegmentInfo] {
        &self.segments
    }

    /// The segments of the live window.
    pub fn window(&self) -> &[SegmentInfo] {
        &self.segments[self.segments.len().saturating_sub(self.window)..]
    }

    /// `EXT-X-TARGETDURATION`: the configured target, raised to the largest rounded segment
    /// duration seen.
    pub fn target_duration_secs(&self) -> u64 {
        let configured = self.target_duration.as_secs_f64().ceil() as u64;
        configured.max(self.max_rounded_duration).max(1)
    }

    /// Peak and average bitrate in bits per second (`BANDWIDTH`, `AVERAGE-BANDWIDTH`).
    pub fn bandwidth(&self) -> (u64, u64) {
        let mut peak = 0f64;
        let (mut bytes, mut ticks) = (0u64, 0u64);
        for s in &self.segments {
            if s.duration > 0 {
                peak = peak.max(s.bytes as f64 * 8.0 / s.duration_secs());
            }
            bytes += s.bytes as u64;
            ticks += s.duration;
        }
        let average = if ticks > 0 {
            bytes as f64 * 8.0 * TIMESCALE as f64 / ticks as f64
        } else {
            0.0
        };
        (peak.ceil() as u64, average.ceil() as u64)
    }

    /// Frames per second measured over all segments, if the stream has video.
    pub fn measured_frame_rate(&self) -> Option<f64> {
        let frames: u64 = self
            .segments
            .iter()
            .map(|s| u64::from(s.video_frames))
            .sum();
        let ticks: u64 = self.segments.iter().map(|s| s.duration).sum();
        (frames > 0 && ticks > 0).then(|| frames as f64 * TIMESCALE as f64 / ticks as f64)
    }

    /// The live playlist: the last `window` segments, with `EXT-X-ENDLIST` once ended.
    pub fn render_live(&self, uri: impl Fn(&SegmentInfo) -> String) -> String {
        let window = self.window();
        let skipped = self.segments.len() - window.len();
        let discontinuity_sequence = self.segments[..skipped]
            .iter()
            .filter(|s| s.discontinuity)
            .count();
        let media_sequence = window
            .first()
            .map_or(self.segments.len() as u64, |s| s.sequence);
        self.render(window, media_sequence, discontinuity_sequence, None, uri)
    }

    /// The event playlist of every segment (`EVENT` while live, `VOD` once ended).
    pub fn render_event(&self, uri: impl Fn(&SegmentInfo) -> String) -> String {
        let kind = if self.ended { "VOD" } else { "EVENT" };
        let first = self.segments.first().map_or(0, |s| s.sequence);
        self.render(&self.segments, first, 0, Some(kind), uri)
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
        for (i, s) in segments.iter().enumerate() {
            // The first segment of a playlist carries no discontinuity tag: the discontinuity
            // sequence already accounts for what came before it.
            if s.discontinuity && i > 0 {
                out.push_str("#EXT-X-DISCONTINUITY\n");
            }
            if i == 0 || s.discontinuity {
                let _ = writeln!(
                    out,
                    "#EXT-X-PROGRAM-DATE-TIME:{}",
                    format_date_time(s.program_date_time)
                );
            }
            let _ = writeln!(out, "#EXTINF:{:.3},", s.duration_secs());
            out.push_str(&uri(s));
            out.push('\n');
        }
        if self.ended {
            out.push_str("#EXT-X-ENDLIST\n");
        }
        out
    }
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
        p.end();
        let vod = p.render_event(|s| format!("{}.ts", s.sequence));
        assert!(vod.contains("#EXT-X-PLAYLIST-TYPE:VOD\n"));
        assert!(vod.ends_with("#EXT-X-ENDLIST\n"));
        assert_eq!(vod.matches("#EXTINF").count(), 6);
        assert_eq!(p.bandwidth().0, 1_000_000);
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
