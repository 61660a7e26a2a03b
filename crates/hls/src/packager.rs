//! One rendition's packaging state: the [`Segmenter`] and the [`MediaPlaylist`] it feeds, and
//! the multivariant playlist that describes it. What a live stream's session owns, and what
//! `onair remux` drives from a file.

use std::time::{Duration, SystemTime};

use bytes::Bytes;

use media::{DemuxEvent, Frame, MediaError, StreamConfig};

use crate::playlist::{render_multivariant, MediaPlaylist, SegmentInfo, Variant};
use crate::segmenter::{Segment, Segmenter, SegmenterConfig};

/// Segmenter plus playlist of one stream.
#[derive(Debug)]
pub struct Packager {
    segmenter: Segmenter,
    playlist: MediaPlaylist,
}

impl Packager {
    /// A packager cutting segments per `config`, listing `window` segments in the live playlist.
    pub fn new(config: SegmenterConfig, window: usize) -> Self {
        Packager {
            segmenter: Segmenter::new(config),
            playlist: MediaPlaylist::new(config.target_duration, window),
        }
    }

    /// Like [`Packager::new`], for a live stream that may run for hours: the playlist keeps
    /// only the live window (see [`MediaPlaylist::live`]).
    pub fn live(config: SegmenterConfig, window: usize) -> Self {
        Packager {
            segmenter: Segmenter::new(config),
            playlist: MediaPlaylist::live(config.target_duration, window),
        }
    }

    /// Gives a segment's bytes back once the caller has let go of them (see
    /// [`Segmenter::recycle`]); shared bytes (a viewer is still downloading them) are simply
    /// dropped.
    pub fn recycle(&mut self, data: Bytes) {
        if let Ok(buf) = data.try_into_mut() {
            self.segmenter.recycle(buf);
        }
    }

    /// The segmenter (for its statistics and current configuration).
    pub fn segmenter(&self) -> &Segmenter {
        &self.segmenter
    }

    /// The media playlist so far.
    pub fn playlist(&self) -> &MediaPlaylist {
        &self.playlist
    }

    fn keep(&mut self, segment: Option<Segment>) -> Option<Segment> {
        if let Some(s) = &segment {
            self.playlist.push(SegmentInfo::from(s));
            debug_assert_eq!(
                self.segmenter.target_duration_secs(),
                Some(self.playlist.target_duration_secs()),
                "the segmenter and the playlist decide the target duration alike"
            );
        }
        segment
    }

    /// Handles what the demuxer produced at wall clock `now`; returns a segment that closed.
    /// Metadata is the caller's business and ignored here.
    pub fn handle_event(
        &mut self,
        event: DemuxEvent,
        now: SystemTime,
    ) -> Result<Option<Segment>, MediaError> {
        match event {
            DemuxEvent::Config(config) => Ok(self.handle_config(config)),
            DemuxEvent::Frame(frame) => self.handle_frame(&frame, now),
            DemuxEvent::Metadata(_) => Ok(None),
        }
    }

    /// See [`Segmenter::handle_config`].
    pub fn handle_config(&mut self, config: StreamConfig) -> Option<Segment> {
        let closed = self.segmenter.handle_config(config);
        self.keep(closed)
    }

    /// See [`Segmenter::handle_frame`].
    pub fn handle_frame(
        &mut self,
        frame: &Frame,
        now: SystemTime,
    ) -> Result<Option<Segment>, MediaError> {
        let closed = self.segmenter.handle_frame(frame, now)?;
        Ok(self.keep(closed))
    }

    /// See [`Segmenter::handle_discontinuity`].
    pub fn handle_discontinuity(&mut self) -> Option<Segment> {
        let closed = self.segmenter.handle_discontinuity();
        self.keep(closed)
    }

    /// Closes the open segment and ends the playlist (`EXT-X-ENDLIST`).
    pub fn finish(&mut self) -> Option<Segment> {
        let closed = self.segmenter.finish();
        let closed = self.keep(closed);
        self.playlist.end();
        closed
    }

    /// The multivariant playlist with one variant pointing at `media_playlist_uri`: measured
    /// bandwidth, codecs, resolution and frame rate (from the bitstream, else measured).
    pub fn multivariant(&self, media_playlist_uri: &str) -> String {
        let stream = self.segmenter.stream_config().cloned().unwrap_or_default();
        let (peak, average) = self.playlist.bandwidth();
        let video = stream.video.as_ref();
        render_multivariant(&[Variant {
            bandwidth: peak,
            average_bandwidth: Some(average),
            codecs: stream.codecs(),
            resolution: video.map(|v| (v.width, v.height)),
            frame_rate: video
                .and_then(|v| v.frame_rate.or_else(|| self.playlist.measured_frame_rate())),
            uri: media_playlist_uri.to_owned(),
        }])
    }

    /// The target duration this packager cuts at.
    pub fn target_duration(&self) -> Duration {
        self.playlist.configured_target_duration()
    }

    /// `EXT-X-TARGETDURATION` of this broadcast: decided when the first segment closed and
    /// fixed from then on, across discontinuities (see [`crate::segmenter`]); `None` before.
    pub fn target_duration_secs(&self) -> Option<u64> {
        self.segmenter.target_duration_secs()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::UNIX_EPOCH;

    use super::*;
    use crate::segmenter::tests::{
        audio, audio_config, gop_frames, video, video_config, video_only,
    };
    use crate::segmenter::{rounded_secs, LatencyMode};

    fn extinfs(text: &str) -> Vec<f64> {
        text.lines()
            .filter_map(|l| l.strip_prefix("#EXTINF:"))
            .map(|l| l.trim_end_matches(',').parse().unwrap())
            .collect()
    }

    #[test]
    fn the_live_target_duration_never_changes_across_reconnects() {
        let mut packager = Packager::live(SegmenterConfig::for_latency(LatencyMode::Standard), 3);
        let now = UNIX_EPOCH;
        let mut renders = Vec::new();
        // A 2 s GOP, a reconnect, then a 10 s GOP with timestamps from 0 again.
        packager.handle_config(video_only());
        for f in gop_frames(0, 20_000, 0, 2_000) {
            packager.handle_frame(&f, now).unwrap();
            renders.push(packager.playlist().render_live(|s| s.sequence.to_string()));
        }
        packager.handle_discontinuity();
        packager.handle_config(video_only());
        for f in gop_frames(0, 60_000, 0, 10_000) {
            let f = Frame {
                pts: f.pts - 90_000,
                dts: f.dts - 90_000,
                ..f
            };
            packager.handle_frame(&f, now).unwrap();
            renders.push(packager.playlist().render_live(|s| s.sequence.to_string()));
        }
        packager.finish();
        renders.push(packager.playlist().render_live(|s| s.sequence.to_string()));
        assert_eq!(packager.target_duration_secs(), Some(4));
        for text in renders.iter().filter(|t| t.contains("#EXTINF")) {
            assert!(text.contains("#EXT-X-TARGETDURATION:4\n"), "{text}");
            for d in extinfs(text) {
                assert!(d.round() <= 4.0, "{text}");
            }
        }
        assert!(packager.segmenter().stats().forced_cuts > 0);
        assert!(packager
            .playlist()
            .segments()
            .iter()
            .all(|s| rounded_secs(s.duration) <= 4));
    }

    /// Milliseconds since the epoch of an `EXT-X-PROGRAM-DATE-TIME` as we write it.
    fn parse_date_time(text: &str) -> i64 {
        let num = |r: std::ops::Range<usize>| text[r].parse::<i64>().unwrap();
        let (y, m, d) = (num(0..4), num(5..7), num(8..10));
        // Days since 1970-01-01 from a civil date (Howard Hinnant's algorithm).
        let y = if m <= 2 { y - 1 } else { y };
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        let days = era * 146_097 + doe - 719_468;
        let secs = days * 86_400 + num(11..13) * 3600 + num(14..16) * 60 + num(17..19);
        secs * 1000 + num(20..23)
    }

    /// Each listed segment's program date time as a player derives it: the last
    /// `EXT-X-PROGRAM-DATE-TIME` plus the `EXTINF`s since.
    fn implied_times(text: &str) -> BTreeMap<u64, i64> {
        let mut sequence = None;
        let mut time = None;
        let mut out = BTreeMap::new();
        let mut lines = text.lines();
        while let Some(line) = lines.next() {
            if let Some(n) = line.strip_prefix("#EXT-X-MEDIA-SEQUENCE:") {
                sequence = Some(n.parse::<u64>().unwrap());
            } else if let Some(t) = line.strip_prefix("#EXT-X-PROGRAM-DATE-TIME:") {
                time = Some(parse_date_time(t));
            } else if let Some(d) = line.strip_prefix("#EXTINF:") {
                let (secs, millis) = d.trim_end_matches(',').split_once('.').unwrap();
                let duration = secs.parse::<i64>().unwrap() * 1000 + millis.parse::<i64>().unwrap();
                let uri = lines.next().unwrap();
                let n = sequence.unwrap();
                assert_eq!(uri, n.to_string());
                let t = time.expect("a program date time before the first segment");
                out.insert(n, t);
                time = Some(t + duration);
                sequence = Some(n + 1);
            }
        }
        out
    }

    #[test]
    fn parses_our_date_times() {
        for ms in [0, 951_782_400_123, 1_795_362_542_999, 4_102_444_800_000] {
            let t = UNIX_EPOCH + Duration::from_millis(ms);
            assert_eq!(parse_date_time(&crate::format_date_time(t)), ms as i64);
        }
    }

    #[test]
    fn a_listed_segment_keeps_its_program_date_time_in_every_refresh() {
        let mut packager = Packager::live(SegmenterConfig::for_latency(LatencyMode::Reduced), 4);
        let config = StreamConfig {
            video: Some(video_config(0x1e)),
            audio: Some(audio_config()),
        };
        let base = UNIX_EPOCH + Duration::from_secs(1_795_000_000);
        let mut seen: BTreeMap<u64, i64> = BTreeMap::new();
        let mut rng = 0x2545_f491_u64;
        let mut jitter = move || {
            rng = rng.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            Duration::from_millis((rng >> 33) % 1700)
        };
        let check = |packager: &Packager, seen: &mut BTreeMap<u64, i64>| {
            let text = packager.playlist().render_live(|s| s.sequence.to_string());
            for (n, t) in implied_times(&text) {
                assert_eq!(*seen.entry(n).or_insert(t), t, "segment {n} moved:\n{text}");
            }
            for s in packager.playlist().segments() {
                let stated = s.program_date_time.duration_since(UNIX_EPOCH).unwrap();
                assert_eq!(seen[&s.sequence], stated.as_millis() as i64);
            }
        };
        // Three runs of the encoder, each with timestamps from the start: the second comes
        // back "too early" by the wall clock (before the first run's media ended), the third
        // after a long pause.
        let mut runs: Vec<(SystemTime, Vec<Segment>)> = Vec::new();
        for wall_offset in [0, 20, 600].map(Duration::from_secs) {
            let mut closed = Vec::new();
            if !runs.is_empty() {
                closed.extend(packager.handle_discontinuity());
                check(&packager, &mut seen);
                runs.last_mut().unwrap().1.append(&mut closed);
            }
            packager.handle_config(config.clone());
            // 29.97 fps video (3003 ticks, not whole milliseconds) with a keyframe every
            // 2.002 s, 48 kHz AAC (1920 ticks).
            let mut first_now = None;
            let mut audio_pts = 0;
            for i in 0..900u64 {
                let pts = 9_000 + i * 3003;
                let now = base + wall_offset + Duration::from_micros(pts * 100 / 9) + jitter();
                first_now.get_or_insert(now);
                let frame = Frame {
                    pts,
                    dts: pts,
                    ..video(0, i % 60 == 0)
                };
                closed.extend(packager.handle_frame(&frame, now).unwrap());
                check(&packager, &mut seen);
                while audio_pts < pts + 3003 {
                    let frame = Frame {
                        pts: 9_000 + audio_pts,
                        dts: 9_000 + audio_pts,
                        ..audio(0)
                    };
                    closed.extend(packager.handle_frame(&frame, now).unwrap());
                    check(&packager, &mut seen);
                    audio_pts += 1920;
                }
            }
            runs.push((first_now.unwrap(), closed));
        }
        runs.last_mut().unwrap().1.extend(packager.finish());
        check(&packager, &mut seen);

        let whole_millis = |t: SystemTime| {
            let ms = t.duration_since(UNIX_EPOCH).unwrap().as_millis();
            UNIX_EPOCH + Duration::from_millis(ms as u64)
        };
        let mut previous_end: Option<SystemTime> = None;
        for (run, (first_now, segments)) in runs.iter().enumerate() {
            assert!(segments[0].discontinuity == (run > 0));
            let expected_start = match previous_end {
                Some(end) if run == 1 => end, // the wall clock said earlier
                _ => whole_millis(*first_now),
            };
            assert_eq!(segments[0].program_date_time, expected_start, "run {run}");
            for pair in segments.windows(2) {
                assert!(!pair[1].discontinuity);
                assert_eq!(
                    pair[1].program_date_time,
                    pair[0].program_date_time + Duration::from_micros(pair[0].duration * 100 / 9)
                );
            }
            // Whole milliseconds that add up to the media time within half of one.
            assert!(segments.iter().all(|s| s.duration % 90 == 0));
            let total: u64 = segments.iter().map(|s| s.duration).sum();
            assert!(total.abs_diff(900 * 3003) <= 45, "run {run}: {total}");
            let last = segments.last().unwrap();
            previous_end =
                Some(last.program_date_time + Duration::from_micros(last.duration * 100 / 9));
        }
        assert_eq!(seen.len(), runs.iter().map(|r| r.1.len()).sum::<usize>());
    }
}
