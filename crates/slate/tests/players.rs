//! What real players make of slate media: runs written through OnAir's own segmenter and TS
//! muxer (`hls::Packager`), then probed and decoded by ffprobe/ffmpeg and GStreamer, and the
//! silent AAC frames decoded for every channel configuration.
//!
//! Needs ffmpeg/ffprobe and GStreamer with `tsdemux`, `h264parse` and the libav decoders
//! (`gstreamer1.0-libav`); `.ci/run` installs them. A missing tool fails the test.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use hls::{LatencyMode, Packager, SegmenterConfig};
use media::{Frame, Track, TIMESCALE};
use slate::{AudioSpec, Slate, SlateError, SlateSpec};
use testkit::{ffmpeg_decode_errors, ffprobe, require_tool, scratch_dir, video_frame_count};

fn spec(width: u32, height: u32, frame_rate: f64, sample_rate: u32, channels: u8) -> SlateSpec {
    SlateSpec {
        width,
        height,
        frame_rate,
        gop_duration: Duration::from_secs(2),
        audio: Some(AudioSpec {
            sample_rate,
            channels,
        }),
    }
}

/// Runs `seconds` of `slate` from `start` through a packager as a live session would (2 s
/// segments), and writes the segments and playlists into `dir`.
fn package(slate: &Slate, start: u64, seconds: u64, dir: &Path) -> testkit::Remuxed {
    let mut packager = Packager::new(SegmenterConfig::for_latency(LatencyMode::Reduced), 10);
    let epoch = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_000_000);
    let mut segments = Vec::new();
    segments.extend(packager.handle_config(slate.config().clone()));
    let mut run = slate.run(start);
    // A segment's worth at a time, as the session asks for it.
    for step in 1..=seconds / 2 {
        for frame in run.frames_until(start + step * 2 * TIMESCALE) {
            let now = epoch + Duration::from_micros((frame.dts - start) * 1_000_000 / TIMESCALE);
            segments.extend(packager.handle_frame(&frame, now).unwrap());
        }
    }
    segments.extend(packager.finish());
    let remuxed = testkit::Remuxed {
        segments,
        multivariant: packager.multivariant("stream.m3u8"),
        playlist: packager.playlist().clone(),
    };
    testkit::write_dir(&remuxed, dir);
    remuxed
}

/// Checks that the audio of `input` is digital silence: ffmpeg's `volumedetect` reports its
/// floor (-91 dB, where it puts 16-bit zeros) and every decoded sample is exactly zero.
fn assert_silent(input: &Path) {
    let max = max_volume_db(input);
    assert!(max <= -90.0, "max_volume {max} dB in {}", input.display());
    let out = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-i"])
        .arg(input)
        .args(["-map", "0:a:0", "-f", "f32le", "-"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(!out.stdout.is_empty());
    // Zero or negative zero (what the decoder's windowing makes of zero spectra).
    let loud = out
        .stdout
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .find(|&v| v != 0.0);
    assert_eq!(loud, None, "a non-zero sample in {}", input.display());
}

/// ffmpeg's `volumedetect` of the audio of `input`: the maximum volume in dB.
fn max_volume_db(input: &Path) -> f64 {
    require_tool("ffmpeg");
    let out = Command::new("ffmpeg")
        .args(["-nostdin", "-hide_banner", "-i"])
        .arg(input)
        .args(["-map", "0:a:0", "-af", "volumedetect", "-f", "null", "-"])
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    let value = log
        .lines()
        .find_map(|l| l.split("max_volume: ").nth(1))
        .unwrap_or_else(|| panic!("no max_volume in:\n{log}"));
    let value = value.trim_end_matches(" dB").trim();
    if value == "-inf" {
        f64::NEG_INFINITY
    } else {
        value.parse().unwrap()
    }
}

/// Decoded audio samples of `input`, counted by ffprobe.
fn audio_samples(input: &Path) -> u64 {
    let v = ffprobe(&[
        "-select_streams",
        "a:0",
        "-show_entries",
        "frame=nb_samples",
        input.to_str().unwrap(),
    ]);
    v["frames"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["nb_samples"].as_u64().unwrap())
        .sum()
}

fn check_slate_hls(spec: &SlateSpec, name: &str) {
    let slate = Slate::render(slate::default_image(), spec).unwrap();
    let dir = scratch_dir(name);
    let start = 42 * TIMESCALE;
    let remuxed = package(&slate, start, 6, &dir);
    assert_eq!(remuxed.segments.len(), 3, "a segment per 2 s GOP");
    assert!(remuxed.segments.iter().all(|s| s.independent));
    let playlist = dir.join("stream.m3u8");

    let probe = ffprobe(&["-show_streams", playlist.to_str().unwrap()]);
    let streams = probe["streams"].as_array().unwrap();
    let video = streams.iter().find(|s| s["codec_type"] == "video").unwrap();
    let audio = streams.iter().find(|s| s["codec_type"] == "audio").unwrap();
    assert_eq!(video["codec_name"], "h264");
    assert_eq!(video["profile"], "Constrained Baseline");
    assert_eq!(video["width"], spec.width);
    assert_eq!(video["height"], spec.height);
    let rate = video["r_frame_rate"].as_str().unwrap();
    let (num, den) = rate.split_once('/').unwrap();
    let fps = num.parse::<f64>().unwrap() / den.parse::<f64>().unwrap();
    assert!((fps - spec.frame_rate).abs() < 0.01, "r_frame_rate {rate}");
    assert_eq!(audio["codec_name"], "aac");
    assert_eq!(audio["profile"], "LC");
    let audio_spec = spec.audio.unwrap();
    assert_eq!(audio["sample_rate"], audio_spec.sample_rate.to_string());
    assert_eq!(audio["channels"], audio_spec.channels);

    // Frame count = duration x fps, every one decodable.
    assert_eq!(
        video_frame_count(&playlist),
        (6.0 * spec.frame_rate).round() as u64
    );
    let errors = ffmpeg_decode_errors(&playlist);
    assert!(errors.trim().is_empty(), "decode errors: {errors}");
    // Six seconds of digital silence (whole AAC frames: the last one ends just past 6 s).
    assert_silent(&playlist);
    let samples = audio_samples(&playlist);
    let expected = (6 * u64::from(audio_spec.sample_rate)).div_ceil(1024) * 1024;
    assert_eq!(samples, expected);
}

#[test]
fn slate_720p30_stereo_48k_plays_in_ffmpeg() {
    check_slate_hls(&spec(1280, 720, 30.0, 48_000, 2), "slate-720p30");
}

#[test]
fn slate_1080p25_mono_44k1_plays_in_ffmpeg() {
    check_slate_hls(&spec(1920, 1080, 25.0, 44_100, 1), "slate-1080p25");
}

fn require_gstreamer() {
    for element in [
        "tsdemux",
        "h264parse",
        "avdec_h264",
        "aacparse",
        "avdec_aac",
    ] {
        let found = Command::new("gst-inspect-1.0")
            .arg(element)
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(
            found,
            "GStreamer element {element} is required by this test: apt-get install -y \
             gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-bad gstreamer1.0-libav"
        );
    }
}

/// Runs `gst-launch-1.0 -v` on `segment` with `branches` after `tsdemux name=d`; asserts
/// that it succeeds without errors and returns how many buffers reached each of `sinks`
/// (fakesinks with `silent=false`, which log every buffer).
fn gst_play(segment: &Path, branches: &str, sinks: &[&str]) -> Vec<usize> {
    let pipeline = format!(
        "filesrc location={} ! tsdemux name=d {branches}",
        segment.display()
    );
    let out = Command::new("gst-launch-1.0")
        .arg("-v")
        .args(pipeline.split_whitespace())
        .output()
        .expect("gst-launch-1.0 did not start");
    let log = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "gst-launch-1.0 {pipeline} failed:\n{log}"
    );
    assert!(!log.contains("ERROR"), "{log}");
    sinks
        .iter()
        .map(|name| {
            let tag = format!("/GstFakeSink:{name}: last-message = chain");
            log.lines().filter(|l| l.contains(&tag)).count()
        })
        .collect()
}

#[test]
fn slate_segment_plays_in_gstreamer() {
    require_gstreamer();
    let slate = Slate::render(slate::default_image(), &spec(1280, 720, 30.0, 48_000, 2)).unwrap();
    let dir = scratch_dir("slate-gstreamer");
    let remuxed = package(&slate, 0, 4, &dir);
    let segment = &remuxed.segments[1];
    let path: PathBuf = dir.join(testkit::segment_name(segment.sequence));
    let video = "queue ! h264parse ! avdec_h264 ! fakesink name=v silent=false";
    let audio = "queue ! aacparse ! avdec_aac ! fakesink name=a silent=false";
    // Both tracks at once, as a player would.
    gst_play(&path, &format!("d. ! {video} d. ! {audio}"), &[]);
    // One track at a time to count what was decoded: with two streaming threads the
    // fakesinks' log lines can race each other.
    let decoded = gst_play(&path, &format!("d.video_0_0100 ! {video}"), &["v"]);
    assert_eq!(decoded, [segment.video_frames as usize]);
    let decoded = gst_play(&path, &format!("d.audio_0_0101 ! {audio}"), &["a"]);
    assert_eq!(decoded, [segment.audio_frames as usize]);
}

/// The silent frame of every channel configuration and several sample rates, as ADTS, is
/// AAC-LC that ffmpeg decodes to exact digital silence with the right layout.
#[test]
fn silent_aac_decodes_to_silence_for_every_channel_configuration() {
    let dir = scratch_dir("slate-silence");
    for (channels, rate) in [
        (1, 48_000),
        (2, 44_100),
        (3, 32_000),
        (4, 22_050),
        (5, 48_000),
        (6, 48_000),
        (8, 96_000),
        (2, 7_350),
        (1, 8_000),
    ] {
        let s = SlateSpec {
            width: 64,
            height: 64,
            frame_rate: 10.0,
            gop_duration: Duration::from_secs(1),
            audio: Some(AudioSpec {
                sample_rate: rate,
                channels,
            }),
        };
        let slate = Slate::render(slate::default_image(), &s).unwrap();
        let asc = &slate.config().audio.as_ref().unwrap().asc;
        let mut adts = Vec::new();
        let frames: Vec<Frame> = slate.run(0).frames_until(2 * TIMESCALE);
        let mut count = 0;
        for f in frames.iter().filter(|f| f.track == Track::Audio) {
            adts.extend(asc.adts_header(f.data.len()).unwrap());
            adts.extend_from_slice(&f.data);
            count += 1;
        }
        let path = dir.join(format!("silence-{channels}ch-{rate}.aac"));
        std::fs::write(&path, &adts).unwrap();
        let probe = ffprobe(&["-show_streams", path.to_str().unwrap()]);
        let stream = &probe["streams"][0];
        assert_eq!(stream["codec_name"], "aac", "{probe}");
        assert_eq!(stream["profile"], "LC");
        assert_eq!(stream["channels"], channels, "{channels} channels");
        assert_eq!(stream["sample_rate"], rate.to_string());
        let errors = ffmpeg_decode_errors(&path);
        assert!(
            errors.trim().is_empty(),
            "{channels} ch at {rate} Hz: {errors}"
        );
        assert_silent(&path);
        assert_eq!(
            audio_samples(&path),
            count * 1024,
            "{channels} ch at {rate} Hz"
        );
    }
}

/// A JPEG made by ffmpeg (4:3, one colour): decoded, pillarboxed onto black 16:9, encoded;
/// ffmpeg sees black bars beside the picture. Its header patched to claim 65535x65535 pixels
/// is refused before decoding.
#[test]
fn jpeg_is_letterboxed_and_a_huge_one_refused() {
    require_tool("ffmpeg");
    let dir = scratch_dir("slate-jpeg");
    let jpeg = dir.join("card.jpg");
    let status = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-f", "lavfi", "-i"])
        .arg("color=c=0xF0F0F0:s=640x480")
        .args(["-frames:v", "1", "-y"])
        .arg(&jpeg)
        .status()
        .unwrap();
    assert!(status.success());
    let bytes = std::fs::read(&jpeg).unwrap();
    let s = SlateSpec {
        width: 1280,
        height: 720,
        frame_rate: 30.0,
        gop_duration: Duration::from_secs(1),
        audio: None,
    };
    let slate = Slate::render(&bytes, &s).unwrap();
    let dir_out = dir.join("hls");
    package(&slate, 0, 2, &dir_out);
    let raw = dir.join("frame.gray");
    let status = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-i"])
        .arg(dir_out.join("stream.m3u8"))
        .args(["-frames:v", "1", "-pix_fmt", "gray", "-f", "rawvideo", "-y"])
        .arg(&raw)
        .status()
        .unwrap();
    assert!(status.success());
    let luma = std::fs::read(&raw).unwrap();
    assert_eq!(luma.len(), 1280 * 720);
    // 480x360 scaled to 960x720: 160 black columns on each side.
    let at = |x: usize| luma[360 * 1280 + x];
    assert!(at(80) < 10, "left bar: {}", at(80));
    assert!(at(1200) < 10, "right bar: {}", at(1200));
    assert!(at(640) > 220, "picture: {}", at(640));

    // Patch the frame header (SOF0, FF C0): height and width follow the length and precision.
    let sof = bytes.windows(2).position(|w| w == [0xff, 0xc0]).unwrap();
    let mut huge = bytes.clone();
    huge[sof + 5..sof + 9].copy_from_slice(&[0xff, 0xff, 0xff, 0xff]);
    assert!(matches!(
        Slate::render(&huge, &s),
        Err(SlateError::TooManyPixels {
            width: 65_535,
            height: 65_535,
            ..
        })
    ));
    // Cut inside the headers: an error. (Cut inside the entropy-coded data, zune-jpeg
    // decodes what is there, as browsers do.)
    let tables_end = bytes.windows(2).position(|w| w == [0xff, 0xda]).unwrap();
    assert!(matches!(
        Slate::render(&bytes[..tables_end], &s),
        Err(SlateError::Decode { format: "JPEG", .. })
    ));
    let _ = Slate::render(&bytes[..bytes.len() * 2 / 3], &s);
}
