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
    use std::time::UNIX_EPOCH;

    use super::*;
    use crate::segmenter::tests::{gop_frames, video_only};
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
}
