//! The official Node SDK (`@mux/mux-node`, installed by `.ci/run` into `tests/sdk/node`)
//! against the real `onair serve`, with only the base URL and credentials changed: every live
//! stream call of the SDK, then ffmpeg publishing with the key the SDK returned and ffmpeg
//! playing the HLS URL built from the playback ID the SDK returned.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use testkit::gateway::Gateway;
use testkit::http::get;
use testkit::{fixture, require_tool};

#[test]
fn node_sdk_manages_a_live_stream_that_then_goes_live() {
    require_tool("ffmpeg");
    let sdk_dir = testkit::sdk_node_dir();
    let gw = Gateway::start(
        std::path::Path::new(env!("CARGO_BIN_EXE_onair")),
        "e2e_sdk",
        &[],
    );
    let http = gw.http.unwrap();
    let mut node = Command::new("node")
        .arg("live_stream_flow.mjs")
        .current_dir(&sdk_dir)
        .env("ONAIR_URL", format!("http://{http}"))
        .env("TOKEN_ID", "test-token")
        .env("TOKEN_SECRET", "test-secret-0123456789")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node is required (apt-get install -y nodejs)");
    let mut stdin = node.stdin.take().unwrap();
    let mut lines = BufReader::new(node.stdout.take().unwrap()).lines();
    let mut step = |name: &str| -> Value {
        let line = lines
            .next()
            .unwrap_or_else(|| panic!("the SDK script stopped before {name}: {}", gw.log()))
            .unwrap();
        let v: Value = serde_json::from_str(&line).unwrap_or_else(|_| panic!("not JSON: {line}"));
        assert_eq!(v["step"], name, "{v}");
        v["value"].clone()
    };

    let created = step("create");
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["status"], "idle");
    assert_eq!(created["latency_mode"], "reduced");
    assert_eq!(created["reconnect_window"], 30);
    assert_eq!(created["passthrough"], "sdk-test");
    assert_eq!(created["playback_ids"][0]["policy"], "public");
    assert_eq!(step("retrieve")["id"], id.as_str());
    assert!(step("list")
        .as_array()
        .unwrap()
        .iter()
        .any(|v| v == id.as_str()));
    let pid = step("create_playback_id");
    assert_eq!(pid["policy"], "signed");
    assert_eq!(step("retrieve_playback_id")["id"], pid["id"]);
    let remaining = step("delete_playback_id");
    assert_eq!(remaining.as_array().unwrap().len(), 1);
    let reset = step("reset_stream_key");
    assert_ne!(reset["stream_key"], created["stream_key"]);
    assert_eq!(step("disable")["status"], "disabled");
    assert_eq!(step("enable")["status"], "idle");
    let publish = step("ready_to_publish");
    let key = publish["stream_key"].as_str().unwrap();
    let playback_id = publish["playback_id"].as_str().unwrap();

    // The old key is refused; the key the SDK returned goes live.
    let old = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-re", "-i"])
        .arg(fixture("avc_aac_720p30.flv"))
        .args(["-t", "3", "-c", "copy", "-f", "flv"])
        .arg(format!(
            "rtmp://{}/app/{}",
            gw.rtmp.unwrap(),
            created["stream_key"].as_str().unwrap()
        ))
        .output()
        .unwrap();
    assert!(!old.status.success(), "the old stream key was accepted");
    let pushed_at = Instant::now();
    let mut encoder = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-re", "-stream_loop", "-1", "-i"])
        .arg(fixture("avc_aac_720p30.flv"))
        .args(["-t", "30", "-c", "copy", "-f", "flv"])
        .arg(format!("rtmp://{}/app/{key}", gw.rtmp.unwrap()))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let url = format!("/{playback_id}.m3u8");
    let deadline = Instant::now() + Duration::from_secs(20);
    while get(http, &url).unwrap().status != 200 {
        assert!(
            Instant::now() < deadline,
            "never became playable:\n{}",
            gw.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let play = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-xerror", "-i"])
        .arg(format!("http://{http}{url}"))
        .args(["-t", "2", "-f", "null", "-"])
        .output()
        .unwrap();
    assert!(
        play.status.success() && play.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&play.stderr)
    );

    writeln!(stdin, "go").unwrap();
    let live = step("while_live");
    assert_eq!(live["status"], "active");
    assert_eq!(live["active_ingest_protocol"], "rtmp");
    // complete disconnects the encoder.
    let completed = step("complete");
    let started = Instant::now();
    encoder.wait().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "encoder still connected 5 s after complete"
    );
    // The encoder had 30 s of media to send: it was cut off, not finished.
    assert!(
        pushed_at.elapsed() < Duration::from_secs(28),
        "the encoder ran its whole clip: complete did not disconnect it"
    );
    assert_eq!(completed["status"], "idle");
    assert!(
        completed.get("active_ingest_protocol").is_none(),
        "{completed}"
    );
    assert_eq!(step("deleted"), 404);
    assert!(node.wait().unwrap().success());
}
