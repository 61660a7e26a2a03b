//! `onair remux`: an FLV file packaged into HLS by the same demuxer and packager as the live
//! path.

use std::path::Path;
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use hls::{Packager, SegmentInfo};
use media::flv::FlvReader;
use media::{FlvDemuxer, TIMESCALE};

use crate::config::PipelineSettings;

fn segment_name(sequence: u64) -> String {
    format!("{sequence}.ts")
}

/// FLV file -> segments and playlists. Segment timestamps in the playlist
/// (`EXT-X-PROGRAM-DATE-TIME`) count from the file's modification time.
pub fn remux(input: &Path, output: &Path, settings: PipelineSettings) -> Result<()> {
    let data = std::fs::read(input).with_context(|| format!("reading {}", input.display()))?;
    let started = std::fs::metadata(input)
        .and_then(|m| m.modified())
        .unwrap_or(SystemTime::UNIX_EPOCH);
    std::fs::create_dir_all(output).with_context(|| format!("creating {}", output.display()))?;
    let reader = FlvReader::new(Bytes::from(data))
        .with_context(|| format!("{} is not an FLV file", input.display()))?;
    let mut demuxer = FlvDemuxer::new(settings.timestamps);
    let mut packager = Packager::new(settings.segmenter, settings.window);
    let write = |segment: Option<hls::Segment>| -> Result<()> {
        if let Some(s) = segment {
            let path = output.join(segment_name(s.sequence));
            std::fs::write(&path, &s.data)
                .with_context(|| format!("writing {}", path.display()))?;
        }
        Ok(())
    };
    let mut first_dts = None;
    for (index, tag) in reader.enumerate() {
        let tag = tag.with_context(|| format!("FLV tag {index}"))?;
        let event = demuxer
            .handle_tag(tag.kind, tag.timestamp, tag.body)
            .with_context(|| format!("FLV tag {index} at {} ms", tag.timestamp))?;
        if let Some(event) = event {
            let dts = match &event {
                media::DemuxEvent::Frame(f) => f.dts,
                _ => 0,
            };
            let since_start = dts.saturating_sub(*first_dts.get_or_insert(dts));
            let now = started + Duration::from_micros(since_start * 1_000_000 / TIMESCALE);
            write(
                packager
                    .handle_event(event, now)
                    .with_context(|| format!("FLV tag {index}"))?,
            )?;
        }
    }
    write(packager.finish())?;
    let playlist = packager.playlist();
    if playlist.segments().is_empty() {
        bail!(
            "{} holds no playable media (no keyframe or no sequence header)",
            input.display()
        );
    }
    let uri = |s: &SegmentInfo| segment_name(s.sequence);
    std::fs::write(output.join("stream.m3u8"), playlist.render_event(uri))?;
    std::fs::write(
        output.join("index.m3u8"),
        packager.multivariant("stream.m3u8"),
    )?;
    let total: f64 = playlist
        .segments()
        .iter()
        .map(SegmentInfo::duration_secs)
        .sum();
    let dropped = demuxer.stats();
    println!(
        "{}: {} segments, {:.3} s, codecs {} -> {}",
        input.display(),
        playlist.segments().len(),
        total,
        packager
            .segmenter()
            .stream_config()
            .map(media::StreamConfig::codecs)
            .unwrap_or_default(),
        output.join("index.m3u8").display()
    );
    if dropped.frames_before_config > 0 || packager.segmenter().stats().frames_before_keyframe > 0 {
        println!(
            "dropped: {} frames before their sequence header, {} before the first keyframe",
            dropped.frames_before_config,
            packager.segmenter().stats().frames_before_keyframe
        );
    }
    Ok(())
}
