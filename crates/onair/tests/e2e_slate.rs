//! End to end: slate while the encoder is away, with the real `onair serve`, ffmpeg publishing
//! over RTMP, hls.js in headless Chromium watching (and photographing) the stream, ffprobe
//! and GStreamer reading the recording, and the SDK webhook receiver.
//!
//! What is checked:
//! - reduced latency with a 30 s reconnect window: ffmpeg is killed for 10 s and comes back.
//!   During the gap the live playlist keeps gaining segments; hls.js keeps playing
//!   (`currentTime` advances through the gap, no fatal error) and what it shows during the gap
//!   is the default slate image (screenshots compared with the image); the recording decodes
//!   end to end with no presentation-time gap larger than one frame interval; its slate
//!   segments have the stream's resolution and codec and play in GStreamer; the asset lists
//!   `content`, `slate`, `content` in `recording_times`, durations matching what was sent;
//! - a `reconnect_slate_url` served by a local HTTP server is what viewers see, and an
//!   unreachable one gives the default slate plus `video.live_stream.warning` and
//!   `video.asset.warning`, verified by the official Node SDK;
//! - standard latency without `use_slate_for_standard_latency`: no slate, the playlist stops
//!   growing until the encoder returns.
#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use testkit::encoder::Encoder;
use testkit::gateway::Gateway;
use testkit::http::get;
use testkit::webhooks::{ReceiverMode, WebhookReceiver};

const SECRET: &str = "whsec-slate-0123456789";
/// How long hls.js watches the reconnect test: 8 s of content, the 10 s gap, 8 s after.
const PLAYER_SECONDS: u32 = 26;
/// The fixture's frame interval (30 fps), seconds.
const FRAME: f64 = 1.0 / 30.0;

fn now_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as f64
}

struct Stream {
    id: String,
    key: String,
    playback_id: String,
}

fn create(gw: &Gateway, body: &str) -> Stream {
    let (status, v) = gw.api("POST", "/live-streams", Some(body));
    assert_eq!(status, 201, "{v}");
    let d = &v["data"];
    let text = |v: &Value| v.as_str().unwrap().to_owned();
    Stream {
        id: text(&d["id"]),
        key: text(&d["stream_key"]),
        playback_id: text(&d["playback_ids"][0]["id"]),
    }
}

fn publish(gw: &Gateway, s: &Stream) -> Encoder {
    Encoder::ffmpeg_720p(&format!("rtmp://{}/app/{}", gw.rtmp.unwrap(), s.key), None)
}

/// The media sequence number of the newest segment of the live playlist.
fn newest_segment(gw: &Gateway, s: &Stream) -> Option<u64> {
    let r = get(gw.http.unwrap(), &format!("/{}/stream.m3u8", s.playback_id)).ok()?;
    if r.status != 200 {
        return None;
    }
    let text = r.text();
    let first: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-MEDIA-SEQUENCE:"))?
        .parse()
        .ok()?;
    let listed = text.lines().filter(|l| l.starts_with("#EXTINF")).count() as u64;
    (listed > 0).then(|| first + listed - 1)
}

fn the_recording(gw: &Gateway, s: &Stream) -> PathBuf {
    let dir = gw.data_dir.join("recordings").join(&s.id);
    let mut found: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(found.len(), 1, "{found:?}");
    found.pop().unwrap()
}

/// Presentation times (seconds) of the video frames ffprobe reads from `input`, sorted.
fn video_pts(input: &Path) -> Vec<f64> {
    let v = testkit::ffprobe(&[
        "-select_streams",
        "v:0",
        "-show_entries",
        "packet=pts_time",
        input.to_str().unwrap(),
    ]);
    let mut pts: Vec<f64> = v["packets"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["pts_time"].as_str()?.parse().ok())
        .collect();
    pts.sort_by(f64::total_cmp);
    pts
}

/// The segments between the first and the second `EXT-X-DISCONTINUITY` of a recording's
/// playlist: the slate of a broadcast with one interruption.
fn slate_segments(playlist: &str) -> Vec<String> {
    let mut discontinuities = 0;
    let mut out = Vec::new();
    for line in playlist.lines() {
        if line == "#EXT-X-DISCONTINUITY" {
            discontinuities += 1;
        } else if discontinuities == 1 && !line.starts_with('#') && !line.is_empty() {
            out.push(line.to_owned());
        }
    }
    out
}

/// The segments either side of each `EXT-X-DISCONTINUITY` of a recording's playlist.
fn discontinuity_edges(playlist: &str) -> Vec<(String, String)> {
    let mut edges = Vec::new();
    let mut last: Option<String> = None;
    let mut pending = false;
    for line in playlist.lines() {
        if line == "#EXT-X-DISCONTINUITY" {
            pending = true;
        } else if !line.starts_with('#') && !line.is_empty() {
            if pending {
                if let Some(before) = &last {
                    edges.push((before.clone(), line.to_owned()));
                }
                pending = false;
            }
            last = Some(line.to_owned());
        }
    }
    edges
}

/// Screenshots taken within `[from, to]` (unix ms), in order.
fn shots_between(dir: &Path, from: f64, to: f64) -> Vec<PathBuf> {
    let mut shots: Vec<(f64, PathBuf)> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let path = e.ok()?.path();
            let t: f64 = path.file_stem()?.to_str()?.parse().ok()?;
            (from..=to).contains(&t).then_some((t, path))
        })
        .collect();
    shots.sort_by(|a, b| a.0.total_cmp(&b.0));
    shots.into_iter().map(|(_, p)| p).collect()
}

#[test]
fn slate_keeps_playing_through_a_reconnect_and_is_recorded() {
    let gw = Gateway::start(Path::new(env!("CARGO_BIN_EXE_onair")), "e2e_slate", &[]);
    let http = gw.http.unwrap();
    let s = create(
        &gw,
        r#"{"playback_policies": ["public"], "latency_mode": "reduced", "reconnect_window": 30,
            "new_asset_settings": {"playback_policies": ["public"]}}"#,
    );
    let started = Instant::now();
    let mut encoder = publish(&gw, &s);
    testkit::wait_for("three segments", Duration::from_secs(20), || {
        newest_segment(&gw, &s).filter(|n| *n >= 2)
    });
    let shots = testkit::scratch_dir("e2e_slate_shots");
    let player = testkit::player::spawn_hls_js_with_screenshots(
        &format!("http://{http}/{}.m3u8", s.playback_id),
        PLAYER_SECONDS,
        &shots,
        Duration::from_millis(1000),
    );
    std::thread::sleep(Duration::from_secs(8));
    let first_sent = started.elapsed().as_secs_f64();
    let t_kill = now_ms();
    encoder.kill();

    // The gap: the live playlist keeps gaining segments (2 s each) in real time.
    let before = newest_segment(&gw, &s).unwrap();
    std::thread::sleep(Duration::from_secs(10));
    let during = newest_segment(&gw, &s).unwrap();
    assert!(
        during >= before + 3,
        "the playlist did not advance through the gap: {before} -> {during}\n{}",
        gw.log_tail(30)
    );
    let t_back = now_ms();
    let back = Instant::now();
    let mut encoder = publish(&gw, &s);
    // The player stops (about 8 s after the encoder is back) before the stream is completed,
    // which would end its playlist.
    let report = player.wait();
    eprintln!("{}", report.summary());
    std::thread::sleep(Duration::from_secs(10).saturating_sub(back.elapsed()));
    // Complete while the encoder is still sending: no slate after the second connection.
    let second_sent = back.elapsed().as_secs_f64();
    let (status, _) = gw.api("PUT", &format!("/live-streams/{}/complete", s.id), None);
    assert_eq!(status, 200);
    encoder.kill();

    // The player played through: no fatal error, currentTime advanced during the gap.
    assert!(report.fatal_errors.is_empty(), "{}", report.summary());
    let in_gap: Vec<&testkit::player::Sample> = report
        .samples
        .iter()
        .filter(|x| x.t_wall > t_kill + 4000.0 && x.t_wall < t_back)
        .collect();
    assert!(in_gap.len() >= 8, "{}", report.summary());
    let advanced = in_gap.last().unwrap().current_time - in_gap[0].current_time;
    assert!(
        advanced > 3.0,
        "currentTime advanced {advanced} s during the gap: {}",
        report.summary()
    );

    // What the viewer saw during the gap is the default slate (the player is a few segments
    // behind the live edge: the slate shows from a few seconds after the kill).
    let gap_shots = shots_between(&shots, t_kill + 7000.0, t_back + 3000.0);
    let content_shots = shots_between(&shots, t_kill - 6000.0, t_kill - 3000.0);
    assert!(
        !gap_shots.is_empty() && !content_shots.is_empty(),
        "{shots:?}"
    );
    let slate_like = gap_shots
        .iter()
        .map(|p| testkit::image_difference(p, slate::default_image()))
        .fold(f64::INFINITY, f64::min);
    let content_like = content_shots
        .iter()
        .map(|p| testkit::image_difference(p, slate::default_image()))
        .fold(f64::INFINITY, f64::min);
    eprintln!(
        "slate screenshots: {gap_shots:?}; difference from the slate image {slate_like:.1} \
         (content: {content_like:.1})"
    );
    assert!(
        slate_like < 20.0 && content_like > 2.0 * slate_like,
        "the gap does not show the slate: {slate_like:.1} vs content {content_like:.1}"
    );

    // The recording: one timeline, every frame decodes, no presentation gap at the edges.
    gw.wait_status(&s.id, "idle", Duration::from_secs(20));
    let recording = the_recording(&gw, &s);
    let playlist = recording.join("stream.m3u8");
    let errors = testkit::ffmpeg_decode_errors(&playlist);
    assert!(errors.trim().is_empty(), "{errors}");
    let pts = video_pts(&playlist);
    let worst = pts.windows(2).map(|w| w[1] - w[0]).fold(0.0_f64, f64::max);
    // (The fixture itself, looped by ffmpeg, has a 39 ms step where it starts over.)
    assert!(
        worst <= 2.0 * FRAME,
        "a {worst:.3} s gap in the recording's video ({} frames)",
        pts.len()
    );
    // At both edges of the slate (the segments either side of each discontinuity), video
    // continues one frame interval after the last frame.
    let text = std::fs::read_to_string(&playlist).unwrap();
    let edges = discontinuity_edges(&text);
    assert_eq!(edges.len(), 2, "{text}");
    for (before, after) in edges {
        let last = *video_pts(&recording.join(&before)).last().unwrap();
        let first = video_pts(&recording.join(&after))[0];
        let step = first - last;
        assert!(
            (0.0..=FRAME + 0.0015).contains(&step),
            "{before} -> {after}: the video steps {step:.4} s at the slate's edge"
        );
    }
    // Slate segments: the stream's resolution and codec; GStreamer plays one.
    let slate = slate_segments(&text);
    assert!(slate.len() >= 4, "{text}");
    let segment = recording.join(&slate[1]);
    let probed = testkit::ffprobe(&[
        "-select_streams",
        "v:0",
        "-show_entries",
        "stream=codec_name,width,height",
        segment.to_str().unwrap(),
    ]);
    assert_eq!(probed["streams"][0]["codec_name"], "h264", "{probed}");
    assert_eq!(probed["streams"][0]["width"], 1280);
    assert_eq!(probed["streams"][0]["height"], 720);
    testkit::require_tool("gst-launch-1.0");
    let gst = Command::new("gst-launch-1.0")
        .args(["-q", "filesrc"])
        .arg(format!("location={}", segment.display()))
        .args(["!", "decodebin", "!", "fakesink"])
        .output()
        .unwrap();
    assert!(
        gst.status.success(),
        "GStreamer could not play {}: {}",
        segment.display(),
        String::from_utf8_lossy(&gst.stderr)
    );

    // The asset: content, slate, content, with the durations sent (± one 2 s segment; seen:
    // within 0.6 s).
    let (_, live) = gw.api("GET", &format!("/live-streams/{}", s.id), None);
    let asset_id = live["data"]["recent_asset_ids"][0].as_str().unwrap();
    let (_, asset) = gw.api("GET", &format!("/assets/{asset_id}"), None);
    let times = asset["data"]["recording_times"].as_array().unwrap();
    let kinds: Vec<&str> = times.iter().map(|t| t["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["content", "slate", "content"], "{asset}");
    let durations: Vec<f64> = times
        .iter()
        .map(|t| t["duration"].as_f64().unwrap())
        .collect();
    let gap = (t_back - t_kill) / 1000.0;
    eprintln!(
        "recording_times {durations:?} for {first_sent:.1} s sent, a {gap:.1} s gap, \
         {second_sent:.1} s sent"
    );
    for (got, sent, what) in [
        (durations[0], first_sent, "first connection"),
        (durations[1], gap, "slate"),
        (durations[2], second_sent, "second connection"),
    ] {
        assert!(
            (got - sent).abs() <= 2.0,
            "{what}: {got} s recorded for {sent:.1} s: {asset}"
        );
    }
}

/// Serves `body` as `image/png` to every request until the test ends; returns the URL.
fn serve_image(body: Vec<u8>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/slate.png", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for mut socket in listener.incoming().map_while(Result::ok) {
            let mut buf = [0u8; 4096];
            let _ = socket.read(&mut buf);
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n",
                body.len()
            );
            let _ = socket.write_all(head.as_bytes());
            let _ = socket.write_all(&body);
        }
    });
    url
}

#[test]
fn a_slate_url_is_shown_and_an_unreachable_one_warns() {
    // A solid colour image, made by ffmpeg.
    let dir = testkit::scratch_dir("e2e_slate_url");
    let image = dir.join("custom.png");
    testkit::require_tool("ffmpeg");
    let made = Command::new("ffmpeg")
        .args([
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "color=c=0x2a60e0:s=1280x720",
        ])
        .args(["-frames:v", "1"])
        .arg(&image)
        .status()
        .unwrap();
    assert!(made.success());
    let png = std::fs::read(&image).unwrap();
    let url = serve_image(png.clone());
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/gone.png", l.local_addr().unwrap())
    };

    let mut receiver = WebhookReceiver::start(SECRET, 0, ReceiverMode::Ok);
    let gw = Gateway::start(
        Path::new(env!("CARGO_BIN_EXE_onair")),
        "e2e_slate_url",
        &["--webhook-url", &receiver.url(), "--webhook-secret", SECRET],
    );
    let http = gw.http.unwrap();
    let body = |slate_url: &str| {
        format!(
            r#"{{"playback_policies": ["public"], "latency_mode": "reduced",
                "reconnect_window": 60, "reconnect_slate_url": "{slate_url}"}}"#
        )
    };
    let custom = create(&gw, &body(&url));
    let broken = create(&gw, &body(&closed));
    let mut a = publish(&gw, &custom);
    let mut b = publish(&gw, &broken);
    for s in [&custom, &broken] {
        testkit::wait_for("three segments", Duration::from_secs(20), || {
            newest_segment(&gw, s).filter(|n| *n >= 2)
        });
    }
    let shots = testkit::scratch_dir("e2e_slate_url_shots");
    let player = testkit::player::spawn_hls_js_with_screenshots(
        &format!("http://{http}/{}.m3u8", custom.playback_id),
        20,
        &shots,
        Duration::from_millis(1000),
    );
    std::thread::sleep(Duration::from_secs(5));
    let t_kill = now_ms();
    a.kill();
    b.kill();
    let report = player.wait();
    assert!(report.fatal_errors.is_empty(), "{}", report.summary());
    let gap_shots = shots_between(&shots, t_kill + 8000.0, t_kill + 20_000.0);
    assert!(!gap_shots.is_empty(), "{}", report.summary());
    let closest = gap_shots
        .iter()
        .map(|p| testkit::image_difference(p, &png))
        .fold(f64::INFINITY, f64::min);
    assert!(
        closest < 20.0,
        "the custom slate is not what the player shows (difference {closest:.1}): {gap_shots:?}"
    );

    // The unreachable URL: the stream and its asset warn, verified by the SDK.
    let events = receiver.wait_for(
        &gw,
        &broken.id,
        "video.asset.warning",
        Duration::from_secs(20),
    );
    let warning = events
        .iter()
        .find(|e| e["type"] == "video.live_stream.warning")
        .expect("video.live_stream.warning");
    assert_eq!(warning["data_id"], broken.id.as_str(), "{warning}");
    let asset_warning = events
        .iter()
        .find(|e| e["type"] == "video.asset.warning")
        .unwrap();
    assert_eq!(asset_warning["object"]["type"], "asset");
    assert_eq!(asset_warning["data_live_stream_id"], broken.id.as_str());
    let custom_events = receiver.events_of(&custom.id);
    assert!(
        !custom_events
            .iter()
            .any(|e| e["type"].as_str().unwrap().ends_with(".warning")),
        "the reachable image warned"
    );
    // The broken stream still gets slate (the default one).
    let before = newest_segment(&gw, &broken).unwrap();
    std::thread::sleep(Duration::from_secs(5));
    assert!(newest_segment(&gw, &broken).unwrap() >= before + 2);
}

#[test]
fn standard_latency_without_slate_stops_growing() {
    let gw = Gateway::start(
        Path::new(env!("CARGO_BIN_EXE_onair")),
        "e2e_slate_standard",
        &[],
    );
    let s = create(
        &gw,
        r#"{"playback_policies": ["public"], "reconnect_window": 30}"#,
    );
    let mut encoder = publish(&gw, &s);
    testkit::wait_for("two segments", Duration::from_secs(30), || {
        newest_segment(&gw, &s).filter(|n| *n >= 1)
    });
    encoder.kill();
    // The encoder's last segment is closed at the disconnect; then nothing is added.
    std::thread::sleep(Duration::from_secs(2));
    let after_kill = newest_segment(&gw, &s).unwrap();
    std::thread::sleep(Duration::from_secs(10));
    assert_eq!(
        newest_segment(&gw, &s),
        Some(after_kill),
        "slate was inserted"
    );
    assert_eq!(gw.status(&s.id), "active", "still inside the window");
    let mut encoder = publish(&gw, &s);
    testkit::wait_for("new segments", Duration::from_secs(30), || {
        newest_segment(&gw, &s).filter(|n| *n > after_kill)
    });
    encoder.kill();
}

/// A connected encoder whose media stalls (ffmpeg frozen with SIGSTOP: the connection stays
/// open, nothing arrives) for longer than two target durations gets slate too, until its
/// media comes back.
#[test]
fn a_stalled_encoder_gets_slate_until_its_media_returns() {
    let gw = Gateway::start(
        Path::new(env!("CARGO_BIN_EXE_onair")),
        "e2e_slate_stall",
        &[],
    );
    let s = create(
        &gw,
        r#"{"playback_policies": ["public"], "latency_mode": "reduced", "reconnect_window": 30}"#,
    );
    let encoder = publish(&gw, &s);
    testkit::wait_for("three segments", Duration::from_secs(20), || {
        newest_segment(&gw, &s).filter(|n| *n >= 2)
    });
    encoder.freeze();
    // Two target durations (4 s) without media, then slate: segments keep coming.
    std::thread::sleep(Duration::from_secs(3));
    let before = newest_segment(&gw, &s).unwrap();
    std::thread::sleep(Duration::from_secs(8));
    let during = newest_segment(&gw, &s).unwrap();
    assert!(
        during >= before + 2,
        "no slate while the encoder stalled: {before} -> {during}\n{}",
        gw.log_tail(30)
    );
    assert!(gw.log().contains("slate on"), "{}", gw.log_tail(30));
    encoder.thaw();
    testkit::wait_for(
        "the encoder's media to take over",
        Duration::from_secs(20),
        || gw.log().contains("slate off").then_some(()),
    );
    // It stalls again and then dies during the slate: the slate goes on without a cut.
    std::thread::sleep(Duration::from_secs(4));
    encoder.freeze();
    testkit::wait_for("slate again", Duration::from_secs(20), || {
        (gw.log().matches("slate on").count() == 2).then_some(())
    });
    std::thread::sleep(Duration::from_secs(3));
    let mut encoder = encoder;
    encoder.kill();
    std::thread::sleep(Duration::from_secs(3));
    let (status, _) = gw.api("PUT", &format!("/live-streams/{}/complete", s.id), None);
    assert_eq!(status, 200);
    let (_, live) = gw.api("GET", &format!("/live-streams/{}", s.id), None);
    let asset_id = live["data"]["recent_asset_ids"][0].as_str().unwrap();
    let (_, asset) = gw.api("GET", &format!("/assets/{asset_id}"), None);
    let kinds: Vec<&str> = asset["data"]["recording_times"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["content", "slate", "content", "slate"], "{asset}");
    let playlist = the_recording(&gw, &s).join("stream.m3u8");
    let errors = testkit::ffmpeg_decode_errors(&playlist);
    assert!(errors.trim().is_empty(), "{errors}");
    let text = std::fs::read_to_string(&playlist).unwrap();
    assert_eq!(
        discontinuity_edges(&text).len(),
        3,
        "one discontinuity per switch, none when the encoder died during the slate: {text}"
    );
}
