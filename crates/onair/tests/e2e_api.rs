//! The REST API against live encoders: a stream key reset or a disable while ffmpeg is
//! pushing disconnects it within a second, and the old key (or the disabled stream) is refused
//! afterwards.
#![allow(clippy::unwrap_used)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use testkit::gateway::Gateway;
use testkit::http::get;
use testkit::{fixture, require_tool};

fn api(gw: &Gateway, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
    gw.api(method, path, body)
}

fn push(gw: &Gateway, key: &str, seconds: u32) -> Child {
    require_tool("ffmpeg");
    Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-re", "-stream_loop", "-1", "-i"])
        .arg(fixture("avc_aac_720p30.flv"))
        .args(["-t", &seconds.to_string(), "-c", "copy", "-f", "flv"])
        .arg(format!("rtmp://{}/app/{key}", gw.rtmp.unwrap()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn wait_live(gw: &Gateway, playback_id: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while get(gw.http.unwrap(), &format!("/{playback_id}.m3u8"))
        .unwrap()
        .status
        != 200
    {
        assert!(
            Instant::now() < deadline,
            "never became playable:\n{}",
            gw.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits for the encoder to exit; returns how long it took.
fn disconnected_within(encoder: &mut Child, limit: Duration) -> Duration {
    let started = Instant::now();
    while encoder.try_wait().unwrap().is_none() {
        assert!(
            started.elapsed() < limit,
            "encoder still connected after {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    started.elapsed()
}

fn refused(gw: &Gateway, key: &str) {
    let out = push(gw, key, 3).wait_with_output().unwrap();
    assert!(
        !out.status.success(),
        "publishing with {key:.4}… was accepted"
    );
}

#[test]
fn reset_stream_key_and_disable_disconnect_a_live_encoder() {
    let gw = start();
    let (status, created) = api(
        &gw,
        "POST",
        "/live-streams",
        Some(r#"{"playback_policies":["public"],"reconnect_window":30}"#),
    );
    assert_eq!(status, 201, "{created}");
    let id = created["data"]["id"].as_str().unwrap().to_owned();
    let old_key = created["data"]["stream_key"].as_str().unwrap().to_owned();
    let playback_id = created["data"]["playback_ids"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // Reset while live.
    let mut encoder = push(&gw, &old_key, 30);
    wait_live(&gw, &playback_id);
    let (status, reset) = api(
        &gw,
        "POST",
        &format!("/live-streams/{id}/reset-stream-key"),
        None,
    );
    assert_eq!(status, 201, "{reset}");
    let new_key = reset["data"]["stream_key"].as_str().unwrap().to_owned();
    assert_ne!(new_key, old_key);
    let took = disconnected_within(&mut encoder, Duration::from_secs(1));
    eprintln!("reset-stream-key disconnected the encoder in {took:?}");
    refused(&gw, &old_key);

    // The broadcast waits for an encoder with the new key for its reconnect window: still
    // active, and the new key continues it.
    assert_eq!(
        api(&gw, "GET", &format!("/live-streams/{id}"), None).1["data"]["status"],
        "active"
    );

    // Disable while live on the new key.
    let mut encoder = push(&gw, &new_key, 30);
    wait_live(&gw, &playback_id);
    let (status, _) = api(&gw, "PUT", &format!("/live-streams/{id}/disable"), None);
    assert_eq!(status, 200);
    let took = disconnected_within(&mut encoder, Duration::from_secs(1));
    eprintln!("disable disconnected the encoder in {took:?}");
    refused(&gw, &new_key);
    assert_eq!(
        api(&gw, "GET", &format!("/live-streams/{id}"), None).1["data"]["status"],
        "disabled"
    );
}

fn start() -> Gateway {
    Gateway::start(
        std::path::Path::new(env!("CARGO_BIN_EXE_onair")),
        "e2e_api",
        &[],
    )
}
