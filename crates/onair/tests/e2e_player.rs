//! End to end with a browser player: the real `onair serve`, a reduced-latency live stream
//! created with the CLI, ffmpeg publishing the 720p fixture over RTMP in real time, and hls.js
//! in headless Chromium (`testkit::player`) watching the live playlist as a viewer would.
#![allow(clippy::unwrap_used)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use testkit::gateway::Gateway;
use testkit::http::get;
use testkit::player::play_hls_js;
use testkit::{fixture, require_tool};

/// How long ffmpeg publishes: enough for the first segment, the whole playing time and the
/// browser's start.
const PUSH_SECONDS: u32 = 25;
/// How long hls.js plays.
const PLAY_SECONDS: u32 = 12;

#[test]
fn hls_js_in_chromium_plays_a_live_rtmp_stream() {
    require_tool("ffmpeg");
    let started = Instant::now();
    let gw = Gateway::start(
        std::path::Path::new(env!("CARGO_BIN_EXE_onair")),
        "e2e_player",
        &[],
    );
    let http = gw.http.unwrap();
    let created = gw.cli(&["live-streams", "create", "--latency-mode", "reduced"]);
    assert_eq!(created["latency_mode"], "reduced", "{created}");
    let key = created["stream_key"].as_str().unwrap();
    let playback_id = created["playback_ids"][0]["id"].as_str().unwrap();

    let encoder = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-re", "-stream_loop", "-1", "-i"])
        .arg(fixture("avc_aac_720p30.flv"))
        .args(["-t", &PUSH_SECONDS.to_string(), "-c", "copy", "-f", "flv"])
        .arg(format!("rtmp://{}/app/{key}", gw.rtmp.unwrap()))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    let path = format!("/{playback_id}.m3u8");
    let deadline = Instant::now() + Duration::from_secs(15);
    while get(http, &path).unwrap().status != 200 {
        assert!(
            Instant::now() < deadline,
            "the live playlist did not answer 200 within 15 s:\n{}",
            gw.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    let report = play_hls_js(&format!("http://{http}{path}"), PLAY_SECONDS, false);
    let summary = report.summary();
    eprintln!("{summary}");
    assert!(
        report.environment.mse_h264_aac,
        "this Chromium cannot play H.264/AAC through MSE:\n{summary}"
    );
    assert!(
        report.fatal_errors.is_empty(),
        "hls.js hit a fatal error:\n{summary}"
    );
    assert!(
        report.played_seconds >= 6.0,
        "played only {:.2} s of {PLAY_SECONDS}:\n{summary}",
        report.played_seconds
    );
    assert!(
        report.video_decoded_frames > 100,
        "decoded only {} video frames:\n{summary}",
        report.video_decoded_frames
    );
    let loaded = report.loaded_sns();
    assert!(loaded.len() >= 3, "loaded too few segments:\n{summary}");
    assert!(
        loaded.windows(2).all(|w| w[0] < w[1]),
        "segments were not loaded in increasing sequence order:\n{summary}"
    );
    let played = report.played_sns();
    assert!(
        played.windows(2).all(|w| w[0] < w[1]),
        "playback did not move forward segment by segment:\n{summary}"
    );
    // One uninterrupted broadcast: no discontinuity, and the playlist is live throughout.
    assert!(
        report.frags.iter().all(|f| f.cc == 0),
        "a discontinuity in an uninterrupted broadcast:\n{summary}"
    );
    assert!(
        !report.playlists.is_empty() && report.playlists.iter().all(|p| p.live),
        "the media playlist was not live:\n{summary}"
    );
    assert!(
        !report.ended,
        "a live stream ended while publishing:\n{summary}"
    );

    let out = encoder.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the encoder failed while the browser watched: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        gw.log()
    );
    eprintln!("e2e_player took {:?}", started.elapsed());
}
