//! End to end: SRT ingest into the real `onair serve` from real callers (ffmpeg, libsrt's
//! `srt-live-transmit`, GStreamer's `srtsink`), encrypted with each stream's
//! `srt_passphrase`, played back over HLS with ffprobe.
//!
//! What is checked: every video frame of the clip sent is in the broadcast's recording as
//! played back over HLS (the asset's playback ID), for H.264 and HEVC, for the plain streamid
//! and the access-control form `#!::r=KEY,m=publish` (percent-encoded, as in a URL); the live
//! stream reports `active_ingest_protocol: srt` and its asset `ingest_type: live_srt`; an
//! encoder that drops on RTMP and comes back on SRT continues the same broadcast.
//! A caller that vanishes (SIGKILL) ends only its own broadcast. (Refusals, garbage and
//! floods against the listener: `crates/srt/tests`.)
#![allow(clippy::unwrap_used)]

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use testkit::encoder::Encoder;
use testkit::gateway::Gateway;
use testkit::{require_tool, wait_for};

struct Stream {
    id: String,
    key: String,
    passphrase: String,
}

fn start(name: &str) -> Gateway {
    Gateway::start(Path::new(env!("CARGO_BIN_EXE_onair")), name, &[])
}

fn create(gw: &Gateway, extra: &str) -> Stream {
    let (status, v) = gw.api(
        "POST",
        "/live-streams",
        Some(&format!(
            r#"{{"playback_policies": ["public"],
                 "new_asset_settings": {{"playback_policies": ["public"]}}{extra}}}"#
        )),
    );
    assert_eq!(status, 201, "{v}");
    let d = &v["data"];
    let text = |v: &Value| v.as_str().unwrap().to_owned();
    Stream {
        id: text(&d["id"]),
        key: text(&d["stream_key"]),
        passphrase: text(&d["srt_passphrase"]),
    }
}

/// A TS clip cut from the 720p30 fixture with `-c copy` (or encoded with `codec` args).
fn clip(name: &str, seconds: u32, encode: &[&str]) -> PathBuf {
    require_tool("ffmpeg");
    let dir = testkit::scratch_dir(name);
    let path = dir.join("clip.ts");
    let mut command = Command::new("ffmpeg");
    command
        .args(["-v", "error", "-y", "-i"])
        .arg(testkit::fixture("avc_aac_720p30.flv"))
        .args(["-t", &seconds.to_string()]);
    if encode.is_empty() {
        command.args(["-c", "copy"]);
    } else {
        command.args(encode);
    }
    let status = command.args(["-f", "mpegts"]).arg(&path).status().unwrap();
    assert!(status.success());
    path
}

/// ffmpeg sending `clip` in real time to `url`. `linger=5`: libsrt in live mode drops what it
/// has not sent yet when the caller closes (linger 0); measured here, a run lost its last 27 KB
/// (about 100 ms) that way. The encoder waiting for its own tail makes the frame count measure
/// OnAir, not the caller's close.
fn ffmpeg_caller(clip: &Path, url: &str) -> Child {
    let url = format!("{url}&linger=5");
    Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-re", "-i"])
        .arg(clip)
        .args(["-c", "copy", "-f", "mpegts", &url])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn wait_exit(child: &mut Child, what: &str) {
    wait_for(what, Duration::from_secs(60), || {
        child.try_wait().unwrap().map(|_| ())
    });
}

/// Waits for the stream to go active over SRT, then (after `sent`) completes it and returns
/// the frames ffprobe reads from its asset over HLS, and the asset.
fn completed_asset(gw: &Gateway, s: &Stream, sent: impl FnOnce()) -> (u64, Value) {
    wait_for("active over srt", Duration::from_secs(20), || {
        let (_, v) = gw.api("GET", &format!("/live-streams/{}", s.id), None);
        (v["data"]["status"] == "active").then_some(())
    });
    let (_, live) = gw.api("GET", &format!("/live-streams/{}", s.id), None);
    assert_eq!(live["data"]["active_ingest_protocol"], "srt", "{live}");
    sent();
    // Reduced latency without a reconnect window: the broadcast ends when the caller's
    // connection does, after everything it delivered was handled.
    gw.wait_status(&s.id, "idle", Duration::from_secs(20));
    let (_, live) = gw.api("GET", &format!("/live-streams/{}", s.id), None);
    let asset_id = live["data"]["recent_asset_ids"][0].as_str().unwrap();
    let asset = wait_for("the asset to be ready", Duration::from_secs(10), || {
        let (_, v) = gw.api("GET", &format!("/assets/{asset_id}"), None);
        (v["data"]["status"] == "ready").then(|| v["data"].clone())
    });
    let pid = asset["playback_ids"][0]["id"].as_str().unwrap();
    let url = format!("http://{}/{pid}.m3u8", gw.http.unwrap());
    let errors = testkit::ffmpeg_decode_errors(Path::new(&url));
    assert!(errors.trim().is_empty(), "live stream {}: {errors}", s.id);
    (testkit::video_frame_count(Path::new(&url)), asset)
}

#[test]
fn ffmpeg_over_srt_plays_back_every_frame() {
    let gw = start("e2e_srt_ffmpeg");
    let s = create(&gw, r#", "latency_mode": "reduced""#);
    let clip = clip("e2e_srt_ffmpeg_clip", 6, &[]);
    let sent = testkit::video_frame_count(&clip);
    let url = format!(
        "srt://{}?streamid={}&passphrase={}&pbkeylen=16",
        gw.srt.unwrap(),
        s.key,
        s.passphrase
    );
    let mut caller = ffmpeg_caller(&clip, &url);
    let (frames, asset) = completed_asset(&gw, &s, || wait_exit(&mut caller, "ffmpeg to finish"));
    assert_eq!(frames, sent, "frames sent over SRT vs played back over HLS");
    assert_eq!(asset["ingest_type"], "live_srt", "{asset}");
    assert_eq!(asset["tracks"][0]["max_width"], 1280, "{asset}");
}

#[test]
fn the_access_control_streamid_and_aes_256_work() {
    let gw = start("e2e_srt_access_control");
    let s = create(&gw, r#", "latency_mode": "reduced""#);
    let clip = clip("e2e_srt_access_control_clip", 4, &[]);
    let sent = testkit::video_frame_count(&clip);
    // `#!::r=KEY,m=publish`, percent-encoded as it travels in a URL.
    let url = format!(
        "srt://{}?streamid=%23%21%3A%3Ar%3D{}%2Cm%3Dpublish&passphrase={}&pbkeylen=32",
        gw.srt.unwrap(),
        s.key,
        s.passphrase
    );
    let mut caller = ffmpeg_caller(&clip, &url);
    let (frames, _) = completed_asset(&gw, &s, || wait_exit(&mut caller, "ffmpeg to finish"));
    assert_eq!(frames, sent);
}

#[test]
fn srt_live_transmit_and_gstreamer_are_callers_too() {
    require_tool("srt-live-transmit");
    require_tool("gst-launch-1.0");
    let gw = start("e2e_srt_libsrt_gstreamer");
    let clip = clip("e2e_srt_libsrt_clip", 4, &[]);
    let sent = testkit::video_frame_count(&clip);

    // libsrt's own tool, reading the TS file, with the access-control streamid.
    let a = create(&gw, r#", "latency_mode": "reduced""#);
    let url = format!(
        "srt://{}?streamid=#!::r={},m=publish&passphrase={}",
        gw.srt.unwrap(),
        a.key,
        a.passphrase
    );
    // Fed in real time by ffmpeg through a pipe. srt-live-transmit sends its input in
    // 1316-byte payloads and does not notice the pipe's end, so the clip's last partial
    // payload would never leave it: null TS packets (PID 0x1FFF, ignored by every demuxer)
    // after the clip push it out.
    let padding = clip.with_file_name("padding.ts");
    let mut null_packet = vec![0x47, 0x1F, 0xFF, 0x10];
    null_packet.resize(188, 0xFF);
    std::fs::write(&padding, null_packet.repeat(14)).unwrap();
    let mut feeder = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "(ffmpeg -nostdin -v error -re -i '{}' -c copy -f mpegts -; cat '{}') | srt-live-transmit -q file://con '{}'",
            clip.display(),
            padding.display(),
            url
        ))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    let (frames, _) = completed_asset(&gw, &a, || {
        // srt-live-transmit does not exit when its input ends: wait for the clip's length
        // and the padding to go out, then stop it (the connection's end ends the broadcast).
        std::thread::sleep(Duration::from_secs(6));
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", feeder.id())])
            .status();
        let _ = feeder.wait();
    });
    assert_eq!(frames, sent, "srt-live-transmit");

    // GStreamer's srtsink, paced by the clip's timestamps. It closes at the end of its input
    // without waiting for what it has not sent (libsrt's live mode, no linger property): the
    // null packets after the clip are what it may lose instead of the clip's tail.
    let b = create(&gw, r#", "latency_mode": "reduced""#);
    let padded = clip.with_file_name("padded.ts");
    let mut bytes = std::fs::read(&clip).unwrap();
    // Unpaced (no timestamps), so they are queued at once behind the clip's tail: a run lost
    // 53 KB at the close, so about 370 KB of them.
    bytes.extend(null_packet.repeat(2000));
    std::fs::write(&padded, bytes).unwrap();
    let mut gst = Command::new("gst-launch-1.0")
        .args(["-q", "filesrc"])
        .arg(format!("location={}", padded.display()))
        .args(["!", "tsparse", "set-timestamps=true", "!", "srtsink"])
        .arg(format!("uri=srt://{}", gw.srt.unwrap()))
        .arg(format!("streamid={}", b.key))
        .arg(format!("passphrase={}", b.passphrase))
        .args(["pbkeylen=16", "sync=true"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (frames, _) = completed_asset(&gw, &b, || wait_exit(&mut gst, "gst-launch to finish"));
    assert_eq!(frames, sent, "GStreamer srtsink");
}

#[test]
fn hevc_over_srt_plays_back_every_frame() {
    let gw = start("e2e_srt_hevc");
    let s = create(&gw, r#", "latency_mode": "reduced""#);
    let clip = clip(
        "e2e_srt_hevc_clip",
        4,
        &[
            "-vf",
            "scale=640:360",
            "-c:v",
            "libx265",
            "-preset",
            "ultrafast",
            "-x265-params",
            "keyint=30:min-keyint=30:log-level=error",
            "-c:a",
            "copy",
        ],
    );
    let sent = testkit::video_frame_count(&clip);
    let url = format!(
        "srt://{}?streamid={}&passphrase={}",
        gw.srt.unwrap(),
        s.key,
        s.passphrase
    );
    let mut caller = ffmpeg_caller(&clip, &url);
    let (frames, asset) = completed_asset(&gw, &s, || wait_exit(&mut caller, "ffmpeg to finish"));
    assert_eq!(frames, sent);
    assert_eq!(asset["tracks"][0]["max_width"], 640, "{asset}");
}

#[test]
fn rtmp_then_srt_continues_the_broadcast() {
    let gw = start("e2e_srt_switch");
    // Standard latency without slate: the recording holds exactly the two connections.
    let s = create(&gw, r#", "reconnect_window": 30"#);
    let mut rtmp =
        Encoder::ffmpeg_720p(&format!("rtmp://{}/app/{}", gw.rtmp.unwrap(), s.key), None);
    wait_for("active over rtmp", Duration::from_secs(30), || {
        let (_, v) = gw.api("GET", &format!("/live-streams/{}", s.id), None);
        (v["data"]["status"] == "active").then_some(())
    });
    std::thread::sleep(Duration::from_secs(3));
    rtmp.kill();
    let clip = clip("e2e_srt_switch_clip", 5, &[]);
    let url = format!(
        "srt://{}?streamid={}&passphrase={}",
        gw.srt.unwrap(),
        s.key,
        s.passphrase
    );
    let mut caller = ffmpeg_caller(&clip, &url);
    wait_for("the protocol to switch", Duration::from_secs(20), || {
        let (_, v) = gw.api("GET", &format!("/live-streams/{}", s.id), None);
        (v["data"]["active_ingest_protocol"] == "srt").then_some(())
    });
    wait_exit(&mut caller, "ffmpeg to finish");
    let (status, _) = gw.api("PUT", &format!("/live-streams/{}/complete", s.id), None);
    assert_eq!(status, 200);
    let (_, live) = gw.api("GET", &format!("/live-streams/{}", s.id), None);
    let assets = live["data"]["recent_asset_ids"].as_array().unwrap();
    assert_eq!(assets.len(), 1, "one broadcast across the switch: {live}");
    let (_, asset) = gw.api(
        "GET",
        &format!("/assets/{}", assets[0].as_str().unwrap()),
        None,
    );
    let kinds: Vec<&str> = asset["data"]["recording_times"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["content", "content"], "{asset}");
    assert_eq!(
        asset["data"]["ingest_type"], "live_rtmp",
        "the first connection's"
    );
    let events = gw.event_log(&s.id, "event_type");
    assert!(
        events
            .iter()
            .filter(|e| *e == "video.live_stream.connected")
            .count()
            == 2,
        "{events:?}"
    );
}

/// A caller that vanishes mid-stream (ffmpeg killed with SIGKILL: no SRT shutdown, its
/// packets just stop) ends its connection after SRT's peer idle timeout; the other SRT stream
/// keeps going meanwhile, and the listener still accepts a new caller.
#[test]
fn a_vanished_caller_does_not_disturb_the_others() {
    let gw = start("e2e_srt_vanished");
    let a = create(&gw, r#", "latency_mode": "reduced""#);
    let b = create(&gw, r#", "latency_mode": "reduced""#);
    let clip = clip("e2e_srt_vanished_clip", 20, &[]);
    let url = |s: &Stream| {
        format!(
            "srt://{}?streamid={}&passphrase={}",
            gw.srt.unwrap(),
            s.key,
            s.passphrase
        )
    };
    let mut vanishing = ffmpeg_caller(&clip, &url(&a));
    let mut steady = ffmpeg_caller(&clip, &url(&b));
    for s in [&a, &b] {
        wait_for("both active", Duration::from_secs(20), || {
            let (_, v) = gw.api("GET", &format!("/live-streams/{}", s.id), None);
            (v["data"]["status"] == "active").then_some(())
        });
    }
    vanishing.kill().unwrap();
    let _ = vanishing.wait();
    // The vanished caller's stream ends (no reconnect window) once SRT gives up on the peer.
    gw.wait_status(&a.id, "idle", Duration::from_secs(20));
    let (_, v) = gw.api("GET", &format!("/live-streams/{}", b.id), None);
    assert_eq!(
        v["data"]["status"], "active",
        "the other stream was disturbed"
    );
    assert!(
        steady.try_wait().unwrap().is_none(),
        "the other caller stopped"
    );
    // A new caller for the first stream is accepted.
    let mut again = ffmpeg_caller(&clip, &url(&a));
    wait_for("active again", Duration::from_secs(20), || {
        let (_, v) = gw.api("GET", &format!("/live-streams/{}", a.id), None);
        (v["data"]["status"] == "active").then_some(())
    });
    for caller in [&mut again, &mut steady] {
        let _ = caller.kill();
        let _ = caller.wait();
    }
}
