//! `onair-tscount` against ffprobe's packet counts on real MPEG-TS: ffmpeg's muxer (several AAC
//! frames per PES), ffmpeg's segmenter (a directory of numbered files), OnAir's own segments
//! (one AAC frame per PES) and an HEVC stream. Needs ffmpeg and ffprobe (fails without them).
#![allow(clippy::unwrap_used, missing_docs)]

use std::path::{Path, PathBuf};
use std::process::Command;

use bytes::Bytes;
use hls::{LatencyMode, SegmenterConfig};
use serde_json::Value;

fn tscount(paths: &[&Path]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_onair-tscount"))
        .args(paths)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "onair-tscount failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn ffmpeg(args: &[&str]) {
    testkit::require_tool("ffmpeg");
    let out = Command::new("ffmpeg")
        .args(["-nostdin", "-hide_banner", "-loglevel", "error", "-y"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ffmpeg {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// (video, audio) packets of a file as ffprobe reads them.
fn ffprobe_counts(file: &Path) -> (u64, u64) {
    let probe = testkit::ffprobe(&[
        "-count_packets",
        "-show_entries",
        "stream=codec_type,nb_read_packets",
        file.to_str().unwrap(),
    ]);
    let (mut video, mut audio) = (0, 0);
    for s in probe["streams"].as_array().unwrap() {
        let n: u64 = s["nb_read_packets"].as_str().unwrap().parse().unwrap();
        match s["codec_type"].as_str().unwrap() {
            "video" => video += n,
            "audio" => audio += n,
            other => panic!("unexpected stream {other} in {}", file.display()),
        }
    }
    (video, audio)
}

fn counts(v: &Value) -> (u64, u64) {
    (
        v["video_frames"].as_u64().unwrap(),
        v["audio_frames"].as_u64().unwrap(),
    )
}

fn ts_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "ts"))
        .collect();
    files.sort();
    files
}

/// The 720p fixture remuxed by ffmpeg into one MPEG-TS file (several AAC frames per PES).
fn fixture_as_ts(dir: &Path) -> PathBuf {
    let ts = dir.join("x.ts");
    let flv = testkit::fixture("avc_aac_720p30.flv");
    ffmpeg(&[
        "-i",
        flv.to_str().unwrap(),
        "-c",
        "copy",
        "-f",
        "mpegts",
        ts.to_str().unwrap(),
    ]);
    ts
}

fn assert_clean(v: &Value) {
    assert_eq!(v["errors"], Value::Array(vec![]), "{v}");
}

#[test]
fn ffmpeg_mpegts_counts_match_ffprobe() {
    let dir = testkit::scratch_dir("tscount-ffmpeg");
    let ts = fixture_as_ts(&dir);
    let v = tscount(&[&ts]);
    assert_clean(&v);
    assert_eq!(v["files"], 1);
    assert_eq!(counts(&v), ffprobe_counts(&ts));
    assert_eq!(counts(&v), (300, 470), "the fixture's frames");
    // ffmpeg packs several AAC frames into one PES: the reassembly path was exercised.
    let pes = v["audio_pes"].as_u64().unwrap();
    assert!(pes > 0 && pes < 470, "{v}");
}

#[test]
fn segmented_directory_counts_like_ffprobe_per_file() {
    let dir = testkit::scratch_dir("tscount-segments");
    let flv = testkit::fixture("avc_aac_720p30.flv");
    let pattern = dir.join("stream3-%d.ts");
    ffmpeg(&[
        "-i",
        flv.to_str().unwrap(),
        "-c",
        "copy",
        "-f",
        "segment",
        "-segment_time",
        "1",
        "-segment_format",
        "mpegts",
        pattern.to_str().unwrap(),
    ]);
    let files = ts_files(&dir);
    assert!(files.len() >= 5, "{files:?}");
    let (mut video, mut audio) = (0, 0);
    for f in &files {
        let one = tscount(&[f]);
        assert_clean(&one);
        assert_eq!(counts(&one), ffprobe_counts(f), "{}", f.display());
        video += counts(&one).0;
        audio += counts(&one).1;
    }
    let v = tscount(&[&dir]);
    assert_clean(&v);
    assert_eq!(v["files"], files.len());
    assert_eq!(counts(&v), (video, audio));
    assert_eq!(counts(&v), (300, 470));
}

#[test]
fn onair_segments_one_aac_frame_per_pes() {
    let dir = testkit::scratch_dir("tscount-onair");
    let flv = std::fs::read(testkit::fixture("avc_aac_720p30.flv")).unwrap();
    let remuxed = testkit::remux_flv(
        Bytes::from(flv),
        SegmenterConfig::for_latency(LatencyMode::Reduced),
        6,
    );
    testkit::write_dir(&remuxed, &dir);
    let (mut video, mut audio) = (0, 0);
    for f in ts_files(&dir) {
        let (v, a) = ffprobe_counts(&f);
        video += v;
        audio += a;
    }
    let v = tscount(&[&dir]);
    assert_clean(&v);
    assert_eq!(v["files"], remuxed.segments.len());
    assert_eq!(counts(&v), (video, audio));
    assert_eq!(v["audio_pes"], v["audio_frames"], "{v}");
    assert_eq!(video, 300);
}

#[test]
fn hevc_stream_type_counts_as_video() {
    let dir = testkit::scratch_dir("tscount-hevc");
    let ts = dir.join("hevc.ts");
    let h265 = testkit::fixture("hevc_640x360.h265");
    let aac = testkit::fixture("hevc_audio.aac");
    ffmpeg(&[
        "-f",
        "hevc",
        "-r",
        "30",
        "-i",
        h265.to_str().unwrap(),
        "-i",
        aac.to_str().unwrap(),
        "-c",
        "copy",
        "-f",
        "mpegts",
        ts.to_str().unwrap(),
    ]);
    let v = tscount(&[&ts]);
    assert_clean(&v);
    let (video, audio) = ffprobe_counts(&ts);
    assert!(video > 0 && audio > 0);
    assert_eq!(counts(&v), (video, audio));
}

#[test]
fn damaged_files_are_errors_not_crashes() {
    let dir = testkit::scratch_dir("tscount-damaged");
    let ts = fixture_as_ts(&dir);
    let data = std::fs::read(&ts).unwrap();
    let mut damaged = data[..1000 * 188].to_vec();
    damaged.extend_from_slice(&[0x11; 77]);
    damaged.extend_from_slice(&data[1000 * 188..data.len() - 100]);
    let bad = dir.join("bad.ts");
    std::fs::write(&bad, &damaged).unwrap();
    let missing = dir.join("missing.ts");
    let v = tscount(&[&bad, &missing]);
    let errors = v["errors"].to_string();
    assert!(
        errors.contains("@188000: lost sync, skipped 77 bytes"),
        "{v}"
    );
    assert!(errors.contains("partial packet of 88 bytes"), "{v}");
    assert!(errors.contains("missing.ts"), "{v}");
    assert_eq!(v["files"], 1);
    // The only packets lost are the last ones.
    let (video, audio) = counts(&v);
    assert!(video >= 299 && audio >= 460, "{v}");
}
