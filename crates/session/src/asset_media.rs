//! What a broadcast's asset shows about its media, measured as the broadcast is packaged:
//! duration, tracks, and one `recording_times` entry per encoder connection.
//!
//! The actor feeds it the start of each connection's media and every segment it publishes;
//! a [`MediaMeter::snapshot`] goes to the store with each lifecycle transition (so the asset
//! is up to date at `recording`, `active`, `disconnected` and `idle`). Durations are media
//! time (the sum of segment durations), not wall clock: a connection's entry counts what it
//! recorded.

use hls::{Packager, Segment};
use media::TIMESCALE;
use store::{AssetMedia, AudioMedia, RecordingKind, RecordingTime, VideoMedia};

use crate::ingest::IngestProtocol;

/// Measures one broadcast's recording.
#[derive(Debug, Default)]
pub(crate) struct MediaMeter {
    /// The protocol of the first connection.
    protocol: Option<IngestProtocol>,
    /// Recorded media so far, 90 kHz ticks.
    total_ticks: u64,
    /// One per connection: its entry and `total_ticks` when it started.
    entries: Vec<(RecordingTime, u64)>,
    video: Option<VideoMedia>,
    audio: Option<AudioMedia>,
    /// `CODECS` and bandwidths of a previous run (a restored broadcast packages nothing).
    codecs: String,
    bandwidth: (u64, u64),
}

fn secs(ticks: u64) -> f64 {
    ticks as f64 / TIMESCALE as f64
}

fn ticks(secs: f64) -> u64 {
    (secs.max(0.0) * TIMESCALE as f64).round() as u64
}

impl MediaMeter {
    /// The meter of a broadcast restored after a restart, from what the previous run last
    /// recorded (see [`MediaMeter::handle_recorded_total`]).
    pub(crate) fn restored(media: AssetMedia) -> Self {
        let mut total_ticks = 0;
        let entries = media
            .recording_times
            .into_iter()
            .map(|entry| {
                let start = total_ticks;
                total_ticks += ticks(entry.duration_secs);
                (entry, start)
            })
            .collect();
        MediaMeter {
            protocol: media.ingest_protocol.map(|p| match p {
                store::IngestProtocol::Rtmp => IngestProtocol::Rtmp,
                store::IngestProtocol::Srt => IngestProtocol::Srt,
            }),
            total_ticks: total_ticks.max(ticks(media.duration_secs)),
            entries,
            video: media.video,
            audio: media.audio,
            codecs: media.codecs,
            bandwidth: (media.bandwidth, media.average_bandwidth),
        }
    }

    /// The recording on disk holds `secs` of media: what a previous run recorded after its
    /// last transition (before a crash) is counted, in the last connection's entry.
    pub(crate) fn handle_recorded_total(&mut self, secs: f64) {
        let on_disk = ticks(secs);
        if on_disk > self.total_ticks {
            self.total_ticks = on_disk;
            if let Some((entry, start)) = self.entries.last_mut() {
                entry.duration_secs = self::secs(on_disk - *start);
            }
        }
    }

    /// A connection over `protocol` delivered its first media at `now_ms` (or its media took
    /// over again from slate): a new `content` entry starts.
    pub(crate) fn handle_content_start(&mut self, protocol: IngestProtocol, now_ms: u64) {
        self.protocol.get_or_insert(protocol);
        self.entries.push((
            RecordingTime {
                started_at_ms: i64::try_from(now_ms).unwrap_or(i64::MAX),
                duration_secs: 0.0,
                kind: RecordingKind::Content,
            },
            self.total_ticks,
        ));
    }

    /// Slate began at `now_ms`: a new `slate` entry starts (the segment before it was
    /// published already).
    pub(crate) fn handle_slate_start(&mut self, now_ms: u64) {
        self.entries.push((
            RecordingTime {
                started_at_ms: i64::try_from(now_ms).unwrap_or(i64::MAX),
                duration_secs: 0.0,
                kind: RecordingKind::Slate,
            },
            self.total_ticks,
        ));
    }

    /// A segment was published (and recorded).
    pub(crate) fn handle_segment(&mut self, segment: &Segment) {
        self.total_ticks += segment.duration;
        if let Some((entry, start)) = self.entries.last_mut() {
            entry.duration_secs = secs(self.total_ticks - *start);
        }
    }

    /// The asset's media as of now; `packager` gives the stream's configuration and
    /// bandwidth. Track sizes are the largest seen across connections.
    pub(crate) fn snapshot(&mut self, packager: &Packager) -> AssetMedia {
        let config = packager.segmenter().stream_config().cloned();
        let playlist = packager.playlist();
        if let Some(v) = config.as_ref().and_then(|c| c.video.as_ref()) {
            let seen = self.video.get_or_insert(VideoMedia {
                width: 0,
                height: 0,
                frame_rate: None,
            });
            seen.width = seen.width.max(v.width);
            seen.height = seen.height.max(v.height);
            seen.frame_rate = v
                .frame_rate
                .or_else(|| playlist.measured_frame_rate())
                .or(seen.frame_rate);
        }
        if let Some(a) = config.as_ref().and_then(|c| c.audio.as_ref()) {
            let seen = self.audio.get_or_insert(AudioMedia { channels: 0 });
            seen.channels = seen.channels.max(a.asc.channel_config);
        }
        let (mut bandwidth, mut average_bandwidth) = playlist.bandwidth();
        if playlist.segment_count() == 0 {
            (bandwidth, average_bandwidth) = self.bandwidth;
        }
        let codecs = match config {
            Some(c) => c.codecs(),
            None => self.codecs.clone(),
        };
        AssetMedia {
            ingest_protocol: self.protocol.map(|p| match p {
                IngestProtocol::Rtmp | IngestProtocol::Rtmps => store::IngestProtocol::Rtmp,
                IngestProtocol::Srt => store::IngestProtocol::Srt,
            }),
            duration_secs: secs(self.total_ticks),
            video: self.video.clone(),
            audio: self.audio.clone(),
            recording_times: self.entries.iter().map(|(e, _)| e.clone()).collect(),
            codecs,
            bandwidth,
            average_bandwidth,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use bytes::Bytes;

    use super::*;

    fn segment(duration_secs: u64) -> Segment {
        Segment {
            sequence: 0,
            discontinuity: false,
            start_pts: 0,
            duration: duration_secs * TIMESCALE,
            program_date_time: UNIX_EPOCH,
            independent: true,
            video_frames: 0,
            audio_frames: 0,
            data: Bytes::new(),
        }
    }

    #[test]
    fn one_entry_per_connection_with_its_own_media() {
        let packager = Packager::live(hls::SegmenterConfig::default(), 3);
        let mut meter = MediaMeter::default();
        meter.handle_content_start(IngestProtocol::Rtmps, 1_000);
        meter.handle_segment(&segment(2));
        meter.handle_segment(&segment(2));
        meter.handle_content_start(IngestProtocol::Srt, 60_000);
        meter.handle_segment(&segment(3));
        let media = meter.snapshot(&packager);
        assert_eq!(media.ingest_protocol, Some(store::IngestProtocol::Rtmp));
        assert_eq!(media.duration_secs, 7.0);
        let entries: Vec<(i64, f64)> = media
            .recording_times
            .iter()
            .map(|r| (r.started_at_ms, r.duration_secs))
            .collect();
        assert_eq!(entries, [(1_000, 4.0), (60_000, 3.0)]);
        assert!(media
            .recording_times
            .iter()
            .all(|r| r.kind == RecordingKind::Content));
        assert_eq!(media.video, None, "no configuration seen");

        // After a restart: what the previous run recorded, plus what reached the disk after
        // its last transition.
        let mut restored = MediaMeter::restored(AssetMedia {
            codecs: "avc1.64001f".into(),
            bandwidth: 9,
            average_bandwidth: 8,
            ..media
        });
        restored.handle_recorded_total(11.5);
        let media = restored.snapshot(&packager);
        assert_eq!(media.duration_secs, 11.5);
        let entries: Vec<f64> = media
            .recording_times
            .iter()
            .map(|r| r.duration_secs)
            .collect();
        assert_eq!(entries, [4.0, 7.5]);
        assert_eq!(media.codecs, "avc1.64001f");
        assert_eq!((media.bandwidth, media.average_bandwidth), (9, 8));
        assert_eq!(media.ingest_protocol, Some(store::IngestProtocol::Rtmp));
        restored.handle_recorded_total(3.0);
        assert_eq!(
            restored.snapshot(&packager).duration_secs,
            11.5,
            "never less"
        );
    }
}
