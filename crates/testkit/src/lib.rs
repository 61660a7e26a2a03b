//! Test support shared by the crates' tests and the benchmarks.
//!
//! - [`fixture`]: media clips made by real encoders (`tests/fixtures/generate.sh`, ffmpeg with
//!   libx264/libx265/AAC), generated once into `target/fixtures` and found from
//!   `CARGO_MANIFEST_DIR`, never from absolute paths.
//! - [`require_tool`]: a test that needs ffmpeg or ffprobe fails loudly when it is missing.
//! - [`ffprobe`]: runs the real player-side tool and returns its JSON.
//! - [`remux_flv`]: the FLV -> media -> hls pipeline, writing segments and playlists to a
//!   directory as a player would fetch them.
//! - [`gateway`]: the real `onair serve` on ephemeral ports; [`http`]: a raw HTTP client.
//! - [`player`]: hls.js in headless Chromium playing a URL and reporting what a viewer saw.
//! - [`node_script`]: a step-by-step script of the official Node SDK, driven from a test.
//! - [`webhooks`]: the official Node SDK verifying webhooks, as a healthy or a broken receiver.
#![allow(clippy::unwrap_used)] // test support: a failure here is a failed test
#![forbid(unsafe_code)]

pub mod encoder;
pub mod gateway;
pub mod http;
pub mod node_script;
pub mod player;
pub mod webhooks;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use hls::{MediaPlaylist, Packager, Segment, SegmentInfo, SegmenterConfig};
use media::aac::{parse_adts, AudioSpecificConfig};
use media::flv::{self, FlvReader, TagKind};
use media::hevc::{self, HevcDecoderConfigurationRecord};
use media::{DemuxEvent, FlvDemuxer, TIMESCALE};

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// Panics with an install hint if `tool` is not on the PATH.
pub fn require_tool(tool: &str) {
    let found = Command::new(tool).arg("-version").output().is_ok();
    assert!(
        found,
        "{tool} is required by this test and was not found on PATH: install it (apt-get install -y ffmpeg) \
         or run .ci/run, which installs everything the tests need"
    );
}

static GENERATE: Mutex<()> = Mutex::new(());

/// Bump when [`build_hevc_flv`] changes: the fixtures are regenerated when this or
/// `generate.sh` differs from what made `target/fixtures`.
const FIXTURES_VERSION: u32 = 1;

/// `tests/sdk/node`, where the official SDK and CLI (`@mux/mux-node`, `@mux/cli`) are pinned;
/// installed from its `package-lock.json` with `npm ci` when missing (`.ci/run` does this too).
/// Panics, with the install command, when npm is missing or the install fails.
pub fn sdk_node_dir() -> PathBuf {
    let dir = workspace_root().join("tests/sdk/node");
    if !dir.join("node_modules/@mux/cli").exists()
        || !dir.join("node_modules/@mux/mux-node").exists()
    {
        let status = std::process::Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .status()
            .expect("npm is required for the SDK tests (apt-get install -y nodejs npm)");
        assert!(status.success(), "npm ci in tests/sdk/node failed");
    }
    dir
}

/// The official CLI's (`@mux/cli`, in [`sdk_node_dir`]) platform binary, run directly:
/// `node_modules/.bin/mux` is a Node launcher whose child would outlive a kill of the
/// launcher.
pub fn mux_cli() -> PathBuf {
    let sdk = sdk_node_dir();
    let os = match std::env::consts::OS {
        "macos" => "darwin",
        other => other,
    };
    let arch = match std::env::consts::ARCH {
        "x86_64" => "x64",
        "aarch64" => "arm64",
        other => other,
    };
    let direct = sdk.join(format!("node_modules/@mux/cli-{os}-{arch}/mux"));
    if direct.exists() {
        direct
    } else {
        sdk.join("node_modules/.bin/mux")
    }
}

/// Takes `child`'s piped stdout and sends its lines on a channel from a thread, so that a
/// test can wait for the next one with a timeout. The thread ends with the output.
pub fn stdout_lines(child: &mut std::process::Child) -> std::sync::mpsc::Receiver<String> {
    use std::io::{BufRead, BufReader};
    let stdout = child.stdout.take().expect("stdout is piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

static VENVS: Mutex<()> = Mutex::new(());

/// The `python` of `tests/sdk/python/.venv`, a virtual environment holding the official
/// Python SDK (`mux_python`, pinned in `tests/sdk/python/requirements.txt`); see
/// [`venv_python`].
pub fn sdk_python() -> PathBuf {
    venv_python("tests/sdk/python")
}

/// The `python` of `tests/conformance/.venv`, a virtual environment holding the API tester
/// `schemathesis` (pinned with its dependencies in `tests/conformance/requirements.txt`);
/// see [`venv_python`].
pub fn conformance_python() -> PathBuf {
    venv_python("tests/conformance")
}

/// The `python` of `DIR/.venv` (`DIR` relative to the workspace root), a virtual environment
/// holding `DIR/requirements.txt`. Made with `python3 -m venv` and pip when it is missing or
/// its requirements changed (`.ci/run` does the same, and both write `.venv/.installed`).
/// Panics, with what to install, when python3, its venv module or the install fails.
pub fn venv_python(dir: &str) -> PathBuf {
    let dir = workspace_root().join(dir);
    let requirements = dir.join("requirements.txt");
    let wanted = std::fs::read(&requirements).unwrap();
    let venv = dir.join(".venv");
    let python = venv.join("bin/python");
    let stamp = venv.join(".installed");
    let _guard = VENVS.lock().unwrap_or_else(|e| e.into_inner());
    if python.exists() && std::fs::read(&stamp).ok().as_deref() == Some(wanted.as_slice()) {
        return python;
    }
    let _ = std::fs::remove_dir_all(&venv);
    let status = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .expect("python3 is required by this test (apt-get install -y python3 python3-venv)");
    assert!(
        status.success(),
        "python3 -m venv {} failed: apt-get install -y python3-venv, or run .ci/run",
        venv.display()
    );
    let status = Command::new(venv.join("bin/pip"))
        .args(["install", "--disable-pip-version-check", "-q", "-r"])
        .arg(&requirements)
        .status()
        .unwrap();
    assert!(
        status.success(),
        "pip install -r {} failed",
        requirements.display()
    );
    std::fs::write(&stamp, &wanted).unwrap();
    python
}

/// The directory holding the generated fixtures, generating them on first use.
pub fn fixtures_dir() -> PathBuf {
    let root = workspace_root();
    let script = root.join("tests/fixtures/generate.sh");
    let stamp_text = format!(
        "{}\n{FIXTURES_VERSION}",
        std::fs::read_to_string(&script).unwrap()
    );
    let dir = root.join("target/fixtures");
    let stamp = dir.join(".generated");
    let _guard = GENERATE.lock().unwrap_or_else(|e| e.into_inner());
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(stamp_text.as_str()) {
        return dir;
    }
    require_tool("ffmpeg");
    // Generate into a private directory and rename it into place, so that test binaries
    // running in parallel never see half-written files.
    let tmp = root.join(format!("target/fixtures.tmp.{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let status = Command::new("bash")
        .arg(&script)
        .arg(&tmp)
        .status()
        .unwrap();
    assert!(status.success(), "{} failed: {status}", script.display());
    let h265 = std::fs::read(tmp.join("hevc_640x360.h265")).unwrap();
    let aac = std::fs::read(tmp.join("hevc_audio.aac")).unwrap();
    std::fs::write(tmp.join("hevc_aac.flv"), build_hevc_flv(&h265, &aac, 30)).unwrap();
    std::fs::write(tmp.join(".generated"), &stamp_text).unwrap();
    if std::fs::read_to_string(&stamp).ok().as_deref() != Some(stamp_text.as_str()) {
        let _ = std::fs::remove_dir_all(&dir);
        if std::fs::rename(&tmp, &dir).is_err() {
            // Another process won the race; its files are the same.
            let _ = std::fs::remove_dir_all(&tmp);
        }
    } else {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    dir
}

/// Path of a generated fixture, e.g. `fixture("avc_aac_720p30.flv")`.
pub fn fixture(name: &str) -> PathBuf {
    let path = fixtures_dir().join(name);
    assert!(
        path.exists(),
        "fixture {name} missing in {}",
        path.display()
    );
    path
}

/// Packs an HEVC Annex-B elementary stream (no B-frames, constant `fps`) and an ADTS AAC
/// stream into an enhanced-RTMP FLV file (video FourCC `hvc1`), interleaved by timestamp.
pub fn build_hevc_flv(h265: &[u8], adts: &[u8], fps: u32) -> Vec<u8> {
    let mut tags: Vec<(u32, TagKind, Vec<u8>)> = Vec::new();
    // Video: group NAL units into access units, collect the parameter sets.
    let (mut vps, mut sps, mut pps) = (None, None, None);
    let mut units: Vec<Vec<&[u8]>> = Vec::new();
    let mut current: Vec<&[u8]> = Vec::new();
    let mut current_has_vcl = false;
    for nal in media::annexb::split(h265) {
        let t = hevc::nal_type(nal).unwrap();
        let is_vcl = t < 32;
        let first_slice = is_vcl && nal.get(2).is_some_and(|b| b & 0x80 != 0);
        let starts_au = (!is_vcl && current_has_vcl && matches!(t, 32..=35 | 39))
            || (first_slice && current_has_vcl);
        if starts_au {
            units.push(std::mem::take(&mut current));
            current_has_vcl = false;
        }
        match t {
            hevc::nal::VPS => vps = Some(Bytes::copy_from_slice(nal)),
            hevc::nal::SPS => sps = Some(Bytes::copy_from_slice(nal)),
            hevc::nal::PPS => pps = Some(Bytes::copy_from_slice(nal)),
            hevc::nal::AUD => {}
            _ => current.push(nal),
        }
        current_has_vcl |= is_vcl;
    }
    if !current.is_empty() {
        units.push(current);
    }
    let record = HevcDecoderConfigurationRecord::from_parameter_sets(
        vps.unwrap(),
        sps.unwrap(),
        pps.unwrap(),
    )
    .unwrap();
    let mut header = b"\x90hvc1".to_vec(); // ExHeader, keyframe, SequenceStart
    header.extend(record.to_bytes());
    // Sequence headers go first, as every FLV muxer and RTMP encoder sends them.
    let mut headers = vec![(TagKind::Video, header)];
    for (i, au) in units.iter().enumerate() {
        let key = au.iter().any(|n| {
            let t = hevc::nal_type(n).unwrap();
            (hevc::nal::IRAP_FIRST..=hevc::nal::IRAP_LAST).contains(&t)
        });
        // CodedFramesX (3): no composition time, DTS == PTS.
        let mut body = vec![0x80 | (if key { 0x10 } else { 0x20 }) | 3];
        body.extend_from_slice(b"hvc1");
        for n in au {
            body.extend_from_slice(&(n.len() as u32).to_be_bytes());
            body.extend_from_slice(n);
        }
        tags.push((
            (i as u64 * 1000 / u64::from(fps)) as u32,
            TagKind::Video,
            body,
        ));
    }
    // Audio.
    let mut pos = 0;
    let mut n = 0u64;
    while pos < adts.len() {
        let h = parse_adts(&adts[pos..]).unwrap();
        if n == 0 {
            let asc = AudioSpecificConfig::new(h.object_type, h.sampling_index, h.channel_config)
                .unwrap();
            let mut body = vec![0xaf, 0];
            body.extend_from_slice(&asc.raw);
            headers.push((TagKind::Audio, body));
        }
        let rate = u64::from(media::aac::SAMPLE_RATES[usize::from(h.sampling_index)]);
        let mut body = vec![0xaf, 1];
        body.extend_from_slice(&adts[pos + h.header_len..pos + h.frame_len]);
        tags.push(((n * 1024 * 1000 / rate) as u32, TagKind::Audio, body));
        pos += h.frame_len;
        n += 1;
    }
    tags.sort_by_key(|(ts, kind, _)| (*ts, *kind != TagKind::Video));
    let mut out = Vec::new();
    flv::write_header(&mut out, true, true);
    for (kind, body) in headers {
        flv::write_tag(&mut out, kind, 0, &body).unwrap();
    }
    for (ts, kind, body) in tags {
        flv::write_tag(&mut out, kind, ts, &body).unwrap();
    }
    out
}

/// What [`remux_flv`] produced.
#[derive(Debug)]
pub struct Remuxed {
    /// The closed segments, in order.
    pub segments: Vec<Segment>,
    /// Their playlist (ended).
    pub playlist: MediaPlaylist,
    /// The multivariant playlist text.
    pub multivariant: String,
}

/// Runs an FLV file through `FlvDemuxer` and `Packager` as a live stream would, the wall
/// clock advancing with the media. Malformed input is a test failure.
pub fn remux_flv(data: Bytes, config: SegmenterConfig, window: usize) -> Remuxed {
    let mut demuxer = FlvDemuxer::default();
    let mut packager = Packager::new(config, window);
    let mut segments = Vec::new();
    let epoch = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_000_000);
    for tag in FlvReader::new(data).unwrap() {
        let tag = tag.unwrap();
        if let Some(event) = demuxer
            .handle_tag(tag.kind, tag.timestamp, tag.body)
            .unwrap()
        {
            let dts = match &event {
                DemuxEvent::Frame(f) => f.dts,
                _ => 0,
            };
            let now = epoch + Duration::from_micros(dts * 1_000_000 / TIMESCALE);
            segments.extend(packager.handle_event(event, now).unwrap());
        }
    }
    segments.extend(packager.finish());
    Remuxed {
        segments,
        multivariant: packager.multivariant("stream.m3u8"),
        playlist: packager.playlist().clone(),
    }
}

/// Name of a segment file in a directory written by [`write_dir`].
pub fn segment_name(sequence: u64) -> String {
    format!("{sequence}.ts")
}

/// Writes segments, `stream.m3u8` (event/VOD), `live.m3u8` (live window) and `index.m3u8`
/// (multivariant) into `dir`.
pub fn write_dir(remuxed: &Remuxed, dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    for s in &remuxed.segments {
        std::fs::write(dir.join(segment_name(s.sequence)), &s.data).unwrap();
    }
    let uri = |s: &SegmentInfo| segment_name(s.sequence);
    std::fs::write(dir.join("stream.m3u8"), remuxed.playlist.render_event(uri)).unwrap();
    std::fs::write(dir.join("live.m3u8"), remuxed.playlist.render_live(uri)).unwrap();
    std::fs::write(dir.join("index.m3u8"), &remuxed.multivariant).unwrap();
}

/// A fresh, empty scratch directory under `target/test-output/NAME`.
pub fn scratch_dir(name: &str) -> PathBuf {
    let dir = workspace_root().join("target/test-output").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs `ffprobe -of json` with `args` and returns the parsed output; panics with ffprobe's
/// stderr if it fails.
pub fn ffprobe(args: &[&str]) -> serde_json::Value {
    require_tool("ffprobe");
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-of", "json"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ffprobe {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Video frames ffprobe decodes from `input` (a file or playlist); panics when it reports
/// none.
pub fn video_frame_count(input: &Path) -> u64 {
    let v = ffprobe(&[
        "-count_frames",
        "-select_streams",
        "v:0",
        "-show_entries",
        "stream=nb_read_frames",
        input.to_str().unwrap(),
    ]);
    v["streams"][0]["nb_read_frames"]
        .as_str()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no video frame count for {}: {v}", input.display()))
}

/// Decodes `input` completely with ffmpeg and returns everything it reported at level
/// `error` (empty when the media decodes cleanly).
pub fn ffmpeg_decode_errors(input: &Path) -> String {
    require_tool("ffmpeg");
    let out = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-xerror", "-i"])
        .arg(input)
        .args(["-f", "null", "-"])
        .output()
        .unwrap();
    let mut text = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() {
        text.push_str(&format!("\nffmpeg exited with {}", out.status));
    }
    text
}

/// Buffer helper for tests that build TS by hand.
pub fn concat(segments: &[Segment]) -> Bytes {
    let mut all = BytesMut::new();
    for s in segments {
        all.extend_from_slice(&s.data);
    }
    all.freeze()
}

/// How different the picture in `screenshot` is from `image` (both PNG): each is reduced to a
/// 32x18 grid of average colours and the mean absolute difference of the grids' RGB channels
/// (0 to 255) is returned. A player showing `image` full frame scores a few units (scaling,
/// video compression); another picture scores tens.
pub fn image_difference(screenshot: &Path, image: &[u8]) -> f64 {
    let shot =
        std::fs::read(screenshot).unwrap_or_else(|e| panic!("{}: {e}", screenshot.display()));
    let (a, b) = (colour_grid(&shot), colour_grid(image));
    let total: f64 = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).sum();
    total / a.len() as f64
}

/// A PNG's average colours on a 32x18 grid, row by row, RGB.
fn colour_grid(png_bytes: &[u8]) -> Vec<f64> {
    const W: usize = 32;
    const H: usize = 18;
    let mut decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = decoder.read_info().expect("a PNG");
    let mut buf = vec![0; reader.output_buffer_size().expect("a PNG size")];
    let info = reader.next_frame(&mut buf).expect("a PNG frame");
    let channels = info.color_type.samples();
    let (width, height) = (info.width as usize, info.height as usize);
    let mut sums = vec![0.0; W * H * 3];
    let mut counts = vec![0.0; W * H];
    for y in 0..height {
        for x in 0..width {
            let cell = (y * H / height) * W + x * W / width;
            let px = &buf[(y * width + x) * channels..][..channels];
            let rgb = if channels >= 3 {
                [px[0], px[1], px[2]]
            } else {
                [px[0]; 3]
            };
            for c in 0..3 {
                sums[cell * 3 + c] += f64::from(rgb[c]);
            }
            counts[cell] += 1.0;
        }
    }
    sums.iter()
        .enumerate()
        .map(|(i, s)| s / f64::max(counts[i / 3], 1.0))
        .collect()
}

/// Calls `f` every 200 ms until it answers `Some`, which is returned; panics naming `what`
/// after `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
