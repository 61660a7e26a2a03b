//! FLV fixtures made by real encoders, remuxed through `media` + `hls`, then checked the way a
//! player would: ffprobe/ffmpeg decode the playlist and every segment, and m3u8-rs parses the
//! playlists.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use hls::{LatencyMode, SegmenterConfig};
use serde_json::Value;
use testkit::{ffmpeg_decode_errors, ffprobe, fixture, remux_flv, scratch_dir, write_dir, Remuxed};

/// What the source clip holds, from ffprobe on the encoder's own output.
#[derive(Debug)]
struct SourceFacts {
    video_frames: Option<u64>,
    audio_frames: Option<u64>,
    frame_rate: f64,
    video_duration: Option<f64>,
}

fn stream_facts(path: &Path, selector: &str) -> Option<(u64, f64, f64)> {
    let v = ffprobe(&[
        "-count_packets",
        "-select_streams",
        selector,
        "-show_entries",
        "stream=nb_read_packets,avg_frame_rate,r_frame_rate",
        "-show_entries",
        "packet=pts_time,duration_time",
        path.to_str().unwrap(),
    ]);
    let stream = v["streams"].as_array()?.first()?.clone();
    let count: u64 = stream["nb_read_packets"].as_str()?.parse().ok()?;
    let rate = parse_rate(stream["r_frame_rate"].as_str().unwrap_or("0/1"));
    let packets = v["packets"].as_array()?;
    let (mut first, mut last) = (f64::MAX, 0f64);
    for p in packets {
        let pts: f64 = p["pts_time"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0.0);
        let dur: f64 = p["duration_time"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0.0);
        first = first.min(pts);
        last = last.max(pts + dur);
    }
    Some((count, rate, last - first))
}

fn parse_rate(r: &str) -> f64 {
    let (n, d) = r.split_once('/').unwrap_or((r, "1"));
    let (n, d): (f64, f64) = (n.parse().unwrap_or(0.0), d.parse().unwrap_or(1.0));
    if d == 0.0 {
        0.0
    } else {
        n / d
    }
}

fn source_facts(video_source: Option<&Path>, audio_source: Option<&Path>) -> SourceFacts {
    let video = video_source.and_then(|p| stream_facts(p, "v:0"));
    let audio = audio_source.and_then(|p| stream_facts(p, "a:0"));
    SourceFacts {
        video_frames: video.map(|v| v.0),
        audio_frames: audio.map(|a| a.0),
        frame_rate: video.map_or(0.0, |v| v.1),
        video_duration: video.map(|v| v.2),
    }
}

/// Packets of one stream of a media file, as ffprobe reads them.
fn packets(path: &Path, selector: &str) -> Vec<Value> {
    let v = ffprobe(&[
        "-select_streams",
        selector,
        "-show_entries",
        "packet=pts,dts,flags,duration_time",
        path.to_str().unwrap(),
    ]);
    v["packets"].as_array().cloned().unwrap_or_default()
}

fn count_frames(path: &Path, selector: &str) -> u64 {
    let v = ffprobe(&[
        "-count_frames",
        "-select_streams",
        selector,
        "-show_entries",
        "stream=nb_read_frames",
        path.to_str().unwrap(),
    ]);
    v["streams"][0]["nb_read_frames"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

fn check(name: &str, flv: &Path, facts: &SourceFacts, config: SegmenterConfig) -> Remuxed {
    let data = Bytes::from(std::fs::read(flv).unwrap());
    let remuxed = remux_flv(data, config, hls::DEFAULT_WINDOW);
    let dir = scratch_dir(name);
    write_dir(&remuxed, &dir);
    let playlist = dir.join("stream.m3u8");
    assert!(!remuxed.segments.is_empty(), "{name}: no segments");

    // 1. A player decodes the whole playlist and every segment on its own without an error.
    let errors = ffmpeg_decode_errors(&playlist);
    assert!(
        errors.trim().is_empty(),
        "{name}: decoding the playlist reported:\n{errors}"
    );
    for s in &remuxed.segments {
        let seg = dir.join(testkit::segment_name(s.sequence));
        let errors = ffmpeg_decode_errors(&seg);
        assert!(
            errors.trim().is_empty(),
            "{name}: segment {} reported:\n{errors}",
            s.sequence
        );
    }

    // 2. Every frame of the source is there.
    if let Some(expected) = facts.video_frames {
        assert_eq!(
            count_frames(&playlist, "v:0"),
            expected,
            "{name}: video frames"
        );
        let muxed: u64 = remuxed
            .segments
            .iter()
            .map(|s| u64::from(s.video_frames))
            .sum();
        assert_eq!(muxed, expected, "{name}: video frames muxed");
    }
    if let Some(expected) = facts.audio_frames {
        let muxed: u64 = remuxed
            .segments
            .iter()
            .map(|s| u64::from(s.audio_frames))
            .sum();
        // Audio ahead of the first video keyframe (ffmpeg's FLVs have one frame there) is
        // written after it: every audio frame of the source is in the output.
        assert_eq!(muxed, expected, "{name}: audio frames muxed");
        assert_eq!(
            count_frames(&playlist, "a:0"),
            muxed,
            "{name}: audio frames decoded"
        );
    }

    // 3. Duration: the playlist adds up to the source within one frame.
    let total: f64 = remuxed.segments.iter().map(|s| s.duration_secs()).sum();
    if let Some(source) = facts.video_duration {
        let frame = 1.0 / facts.frame_rate;
        assert!(
            (total - source).abs() <= frame + 1e-6,
            "{name}: playlist lasts {total:.4}s, source {source:.4}s"
        );
        let probed: f64 = ffprobe(&[
            "-show_entries",
            "format=duration",
            playlist.to_str().unwrap(),
        ])["format"]["duration"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            (probed - source).abs() <= frame + 0.05,
            "{name}: ffprobe says {probed:.4}s, source {source:.4}s"
        );
    }

    // 4. Segments start on a keyframe and are cut at the first keyframe after the target.
    let target = config.target_duration.as_secs_f64();
    for (i, s) in remuxed.segments.iter().enumerate() {
        assert!(
            s.independent,
            "{name}: segment {i} does not start with a keyframe"
        );
        if facts.video_frames.is_some() {
            let seg = dir.join(testkit::segment_name(s.sequence));
            let first = packets(&seg, "v:0").into_iter().next().unwrap();
            assert!(
                first["flags"].as_str().unwrap().contains('K'),
                "{name}: segment {i} first video packet is not a keyframe: {first}"
            );
        }
        if i + 1 < remuxed.segments.len() {
            assert!(
                s.duration_secs() >= target - 1e-9,
                "{name}: segment {i} is {}s",
                s.duration_secs()
            );
        }
    }

    // 5. Timestamps: DTS strictly increasing per track, PTS >= DTS, across all segments.
    for selector in ["v:0", "a:0"] {
        let mut last_dts = i64::MIN;
        for p in packets(&playlist, selector) {
            let dts = p["dts"].as_i64().unwrap();
            let pts = p["pts"].as_i64().unwrap();
            assert!(
                dts > last_dts,
                "{name} {selector}: DTS {dts} after {last_dts}"
            );
            assert!(pts >= dts, "{name} {selector}: PTS {pts} < DTS {dts}");
            last_dts = dts;
        }
    }

    // 6. The playlists parse and say what was produced.
    let vod = std::fs::read(&playlist).unwrap();
    let m3u8_rs::Playlist::MediaPlaylist(media) = m3u8_rs::parse_playlist_res(&vod).unwrap() else {
        panic!("{name}: stream.m3u8 is not a media playlist");
    };
    assert!(media.end_list);
    assert_eq!(media.segments.len(), remuxed.segments.len());
    for seg in &media.segments {
        assert!(
            (seg.duration.round() as u64) <= media.target_duration,
            "{name}: EXTINF {} above target {}",
            seg.duration,
            media.target_duration
        );
    }
    let live = std::fs::read(dir.join("live.m3u8")).unwrap();
    let m3u8_rs::Playlist::MediaPlaylist(live) = m3u8_rs::parse_playlist_res(&live).unwrap() else {
        panic!("{name}: live.m3u8 is not a media playlist");
    };
    let window = remuxed.segments.len().min(hls::DEFAULT_WINDOW);
    assert_eq!(live.segments.len(), window);
    assert_eq!(
        live.media_sequence as usize,
        remuxed.segments.len() - window
    );
    assert!(live.segments[0].program_date_time.is_some());
    let master = std::fs::read(dir.join("index.m3u8")).unwrap();
    let m3u8_rs::Playlist::MasterPlaylist(master) = m3u8_rs::parse_playlist_res(&master).unwrap()
    else {
        panic!("{name}: index.m3u8 is not a multivariant playlist");
    };
    let variant = &master.variants[0];
    assert!(variant.bandwidth >= variant.average_bandwidth.unwrap());
    if facts.video_frames.is_some() {
        let fps = variant.frame_rate.unwrap();
        assert!(
            (fps - facts.frame_rate).abs() < 0.01,
            "{name}: FRAME-RATE {fps}"
        );
    }
    remuxed
}

fn standard() -> SegmenterConfig {
    SegmenterConfig::for_latency(LatencyMode::Standard)
}

#[test]
fn h264_aac_720p() {
    let flv = fixture("avc_aac_720p30.flv");
    let facts = source_facts(Some(&flv), Some(&flv));
    let r = check("h264_aac_720p", &flv, &facts, standard());
    assert_eq!(r.segments.len(), 3, "10 s with a 2 s GOP: 4 s + 4 s + 2 s");
    assert!(
        r.multivariant.contains("RESOLUTION=1280x720"),
        "{}",
        r.multivariant
    );
    assert!(
        r.multivariant.contains("CODECS=\"avc1.64001f,mp4a.40.2\""),
        "{}",
        r.multivariant
    );
}

#[test]
fn h264_reduced_latency_cuts_two_second_segments() {
    let flv = fixture("avc_aac_720p30.flv");
    let facts = source_facts(Some(&flv), Some(&flv));
    let r = check(
        "h264_reduced",
        &flv,
        &facts,
        SegmenterConfig::for_latency(LatencyMode::Reduced),
    );
    let durations: Vec<f64> = r.segments.iter().map(|s| s.duration_secs()).collect();
    assert_eq!(durations.len(), 5, "{durations:?}");
    assert!(
        durations.iter().all(|d| (d - 2.0).abs() < 0.001),
        "{durations:?}"
    );
}

#[test]
fn h264_with_b_frames() {
    let flv = fixture("avc_bframes_aac.flv");
    let facts = source_facts(Some(&flv), Some(&flv));
    let r = check("h264_bframes", &flv, &facts, standard());
    // B-frames: some frames are presented later than they are decoded.
    let seg = &r.segments[0];
    let dir = testkit::workspace_root().join("target/test-output/h264_bframes");
    let reordered = packets(&dir.join(testkit::segment_name(seg.sequence)), "v:0")
        .iter()
        .filter(|p| p["pts"] != p["dts"])
        .count();
    assert!(
        reordered > 10,
        "expected reordered frames, found {reordered}"
    );
}

#[test]
fn h264_ten_second_gop_gives_long_segments() {
    let flv = fixture("avc_gop10s.flv");
    let facts = source_facts(Some(&flv), Some(&flv));
    let r = check("h264_gop10s", &flv, &facts, standard());
    let durations: Vec<f64> = r.segments.iter().map(|s| s.duration_secs()).collect();
    assert_eq!(durations.len(), 3, "{durations:?}");
    assert!(
        (durations[0] - 10.0).abs() < 0.001 && (durations[1] - 10.0).abs() < 0.001,
        "{durations:?}"
    );
    assert!(r
        .playlist
        .render_live(|s| s.sequence.to_string())
        .contains("#EXT-X-TARGETDURATION:10\n"));
}

#[test]
fn audio_only() {
    let flv = fixture("aac_only.flv");
    let facts = source_facts(None, Some(&flv));
    let r = check("aac_only", &flv, &facts, standard());
    let frame = 1024.0 / 44100.0;
    for s in &r.segments[..r.segments.len() - 1] {
        assert!(
            s.duration_secs() >= 4.0 && s.duration_secs() < 4.0 + frame,
            "{}",
            s.duration_secs()
        );
    }
    let total: f64 = r.segments.iter().map(|s| s.duration_secs()).sum();
    let (_, _, source) = stream_facts(&flv, "a:0").unwrap();
    assert!(
        (total - source).abs() <= frame,
        "playlist {total}s, source {source}s"
    );
    assert!(
        r.multivariant.contains("CODECS=\"mp4a.40.2\""),
        "{}",
        r.multivariant
    );
    assert!(!r.multivariant.contains("RESOLUTION"));
}

#[test]
fn hevc_aac() {
    let flv = fixture("hevc_aac.flv");
    // ffmpeg 5.1 cannot read enhanced FLV; the facts come from the encoder's elementary streams.
    let dir = testkit::fixtures_dir();
    let facts = source_facts(
        Some(&dir.join("hevc_640x360.h265")),
        Some(&dir.join("hevc_audio.aac")),
    );
    let facts = SourceFacts {
        // Raw HEVC has no timestamps for ffprobe to sum: 30 fps by construction.
        video_duration: facts.video_frames.map(|n| n as f64 / 30.0),
        frame_rate: 30.0,
        ..facts
    };
    let r = check("hevc_aac", &flv, &facts, standard());
    assert!(
        r.multivariant.contains("CODECS=\"hvc1.1.6.L"),
        "{}",
        r.multivariant
    );
    assert!(
        r.multivariant.contains("RESOLUTION=640x360"),
        "{}",
        r.multivariant
    );
    let v = ffprobe(&[
        "-select_streams",
        "v:0",
        "-show_entries",
        "stream=codec_name,width,height",
        testkit::workspace_root()
            .join("target/test-output/hevc_aac/stream.m3u8")
            .to_str()
            .unwrap(),
    ]);
    assert_eq!(v["streams"][0]["codec_name"], "hevc");
    assert_eq!(v["streams"][0]["width"], 640);
}

#[test]
fn discontinuity_after_restart_plays_through() {
    // The same clip twice, as an encoder that reconnects: the second run is announced with a
    // discontinuity and the whole event playlist still decodes.
    let flv = fixture("avc_bframes_aac.flv");
    let data = Bytes::from(std::fs::read(&flv).unwrap());
    let first = remux_flv(data.clone(), standard(), 6);
    let mut segmenter = hls::Segmenter::new(standard());
    let mut playlist = hls::MediaPlaylist::new(Duration::from_secs(4), 6);
    let mut segments = Vec::new();
    for run in 0..2 {
        let mut demuxer = media::FlvDemuxer::default();
        if run == 1 {
            segments.extend(segmenter.handle_discontinuity());
        }
        for tag in media::flv::FlvReader::new(data.clone()).unwrap() {
            let tag = tag.unwrap();
            let now = std::time::SystemTime::now();
            match demuxer
                .handle_tag(tag.kind, tag.timestamp, tag.body)
                .unwrap()
            {
                Some(media::DemuxEvent::Config(c)) => segments.extend(segmenter.handle_config(c)),
                Some(media::DemuxEvent::Frame(f)) => {
                    segments.extend(segmenter.handle_frame(&f, now).unwrap())
                }
                _ => {}
            }
        }
    }
    segments.extend(segmenter.finish());
    assert_eq!(segments.len(), 2 * first.segments.len());
    let flagged: Vec<u64> = segments
        .iter()
        .filter(|s| s.discontinuity)
        .map(|s| s.sequence)
        .collect();
    assert_eq!(flagged, vec![first.segments.len() as u64]);
    let dir = scratch_dir("discontinuity");
    for s in &segments {
        playlist.push(hls::SegmentInfo::from(s));
        std::fs::write(dir.join(testkit::segment_name(s.sequence)), &s.data).unwrap();
    }
    playlist.end();
    let text = playlist.render_event(|s| testkit::segment_name(s.sequence));
    assert_eq!(text.matches("#EXT-X-DISCONTINUITY\n").count(), 1);
    std::fs::write(dir.join("stream.m3u8"), &text).unwrap();
    let errors = ffmpeg_decode_errors(&dir.join("stream.m3u8"));
    assert!(errors.trim().is_empty(), "{errors}");
    let expected = 2 * count_frames(&flv, "v:0");
    assert_eq!(count_frames(&dir.join("stream.m3u8"), "v:0"), expected);
}
