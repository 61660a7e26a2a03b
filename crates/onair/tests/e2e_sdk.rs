//! The official SDKs against the real `onair serve`, with only the base URL and credentials
//! changed.
//!
//! - Node (`@mux/mux-node`, installed by `.ci/run` into `tests/sdk/node`): every live stream
//!   call of the SDK, then ffmpeg publishing with the key the SDK returned and ffmpeg playing
//!   the HLS URL built from the playback ID the SDK returned; and the asset of a broadcast
//!   with a reconnect, listed (auto-pagination by cursor), read, edited and deleted.
//! - Python (`mux_python`, in the virtual environment `tests/sdk/python/.venv`): the same
//!   asset read every way, through a client that refuses any enumerated value outside the
//!   hosted API's lists.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use testkit::encoder::Encoder;
use testkit::gateway::{Gateway, TEST_TOKEN_ID, TEST_TOKEN_SECRET};
use testkit::http::get;
use testkit::node_script::NodeScript;
use testkit::{fixture, require_tool};

fn start(name: &str) -> Gateway {
    Gateway::start(Path::new(env!("CARGO_BIN_EXE_onair")), name, &[])
}

#[test]
fn node_sdk_manages_a_live_stream_that_then_goes_live() {
    require_tool("ffmpeg");
    let gw = start("e2e_sdk");
    let http = gw.http.unwrap();
    let mut node = NodeScript::start("live_stream_flow.mjs", &gw);

    let created = node.step("create", &gw);
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["status"], "idle");
    assert_eq!(created["latency_mode"], "reduced");
    assert_eq!(created["reconnect_window"], 30);
    assert_eq!(created["passthrough"], "sdk-test");
    assert_eq!(created["playback_ids"][0]["policy"], "public");
    let legacy = node.step("legacy", &gw);
    assert_legacy_read_back(&legacy["created"]);
    assert_eq!(legacy["read"], legacy["created"]);
    let updated = &legacy["updated"];
    assert_eq!(legacy["listed"], json!([updated]));
    assert_eq!(updated["meta"], json!({ "title": "SDK show, renamed" }));
    assert_eq!(updated["reconnect_window"], json!(0.5));
    assert_eq!(node.step("retrieve", &gw)["id"], id.as_str());
    assert!(node
        .step("list", &gw)
        .as_array()
        .unwrap()
        .iter()
        .any(|v| v == id.as_str()));
    let pid = node.step("create_playback_id", &gw);
    assert_eq!(pid["policy"], "signed");
    assert_eq!(node.step("retrieve_playback_id", &gw)["id"], pid["id"]);
    let remaining = node.step("delete_playback_id", &gw);
    assert_eq!(remaining.as_array().unwrap().len(), 1);
    let reset = node.step("reset_stream_key", &gw);
    assert_ne!(reset["stream_key"], created["stream_key"]);
    assert_eq!(node.step("disable", &gw)["status"], "disabled");
    assert_eq!(node.step("enable", &gw)["status"], "idle");
    let publish = node.step("ready_to_publish", &gw);
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

    node.resume();
    let live = node.step("while_live", &gw);
    assert_eq!(live["status"], "active");
    assert_eq!(live["active_ingest_protocol"], "rtmp");
    // complete disconnects the encoder.
    let completed = node.step("complete", &gw);
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
    assert_eq!(node.step("deleted", &gw), 404);
    node.finish();
}

/// A live stream created with the legacy body `{"playback_policy": "public",
/// "new_asset_settings": {"playback_policy": "public"}, "reconnect_window": 12.5}` and `meta`,
/// as a client read it back: in the current shapes.
fn assert_legacy_read_back(stream: &Value) {
    assert_eq!(
        stream["playback_ids"].as_array().map(Vec::len),
        Some(1),
        "{stream}"
    );
    assert_eq!(stream["playback_ids"][0]["policy"], "public");
    // (mux_python's model adds its own defaults beside it: copy_overlays, normalize_audio.)
    assert_eq!(
        stream["new_asset_settings"]["playback_policies"],
        json!(["public"]),
        "{stream}"
    );
    assert!(stream["new_asset_settings"]
        .get("playback_policy")
        .is_none());
    assert_eq!(stream["reconnect_window"], json!(12.5));
    assert_eq!(stream["latency_mode"], "standard");
    assert_eq!(stream["meta"]["title"], "SDK show");
    assert!(stream.get("playback_policy").is_none(), "{stream}");
}

/// Waits for an encoder that was given a duration to finish, successfully.
fn finish_encoder(encoder: &mut Encoder, gw: &Gateway) {
    let status = encoder.wait_timeout(Duration::from_secs(20));
    assert!(
        status.is_some_and(|s| s.success()),
        "ffmpeg to {}: {status:?} {}\nserver log:\n{}",
        encoder.url(),
        encoder.stderr(),
        gw.log()
    );
}

/// Waits until every live stream in `ids` is idle (its broadcast over, its asset ready).
fn wait_idle(gw: &Gateway, ids: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while ids.iter().any(|id| gw.status(id) != "idle") {
        assert!(Instant::now() < deadline, "still not idle:\n{}", gw.log());
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn rtmp_url(gw: &Gateway, key: &Value) -> String {
    format!("rtmp://{}/app/{}", gw.rtmp.unwrap(), key.as_str().unwrap())
}

/// The `"type": "video"` entry of a track list.
fn video_track(tracks: &Value) -> &Value {
    tracks
        .as_array()
        .and_then(|t| t.iter().find(|t| t["type"] == "video"))
        .unwrap_or_else(|| panic!("no video track in {tracks}"))
}

/// What the session measures about a broadcast's media (duration, tracks, one
/// `recording_times` entry per connection), as the asset shows it: `connections` content
/// entries, a duration, and the fixture's 1280x720 video.
fn assert_measured_media(asset: &Value, connections: usize) {
    let times = asset["recording_times"].as_array().unwrap();
    assert_eq!(times.len(), connections, "recording_times: {asset}");
    assert!(times.iter().all(|t| t["type"] == "content"), "{asset}");
    assert!(
        asset["duration"].as_f64().is_some_and(|d| d > 0.0),
        "duration: {asset}"
    );
    let video = video_track(&asset["tracks"]);
    assert_eq!(
        (&video["max_width"], &video["max_height"]),
        (&json!(1280), &json!(720))
    );
    assert_eq!(asset["ingest_type"], "live_rtmp", "{asset}");
}

#[test]
fn node_sdk_lists_reads_edits_and_deletes_the_asset_of_a_broadcast() {
    require_tool("ffmpeg");
    let gw = start("e2e_sdk_assets");
    let mut node = NodeScript::start("asset_flow.mjs", &gw);
    let created = node.step("created", &gw);
    let main_id = created["main"]["id"].as_str().unwrap().to_owned();
    let other_id = created["other"]["id"].as_str().unwrap().to_owned();

    // The main stream: ~6 s, a reconnect inside its 3 s window, ~4 s more, then idle when the
    // window runs out. Meanwhile the other stream makes a second asset of ~3 s.
    let mut other = Encoder::ffmpeg_720p(&rtmp_url(&gw, &created["other"]["stream_key"]), Some(3));
    let main_url = rtmp_url(&gw, &created["main"]["stream_key"]);
    let mut first = Encoder::ffmpeg_720p(&main_url, Some(6));
    finish_encoder(&mut first, &gw);
    let mut second = Encoder::ffmpeg_720p(&main_url, Some(4));
    finish_encoder(&mut other, &gw);
    finish_encoder(&mut second, &gw);
    wait_idle(&gw, &[&main_id, &other_id]);
    // One broadcast, one recording directory.
    let stream_dir = gw.data_dir.join("recordings").join(&main_id);
    let recordings: Vec<PathBuf> = std::fs::read_dir(&stream_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(recordings.len(), 1, "{recordings:?}");
    node.resume();

    // Listing: the SDK's auto-pagination follows next_cursor, one asset per page.
    let all = node.step("list_all", &gw);
    let ids: Vec<&str> = all["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 2, "{all}");
    let requests = all["requests"].as_array().unwrap();
    assert_eq!(requests.len(), 2, "two pages, then no next_cursor: {all}");
    assert_eq!(requests[0], "?limit=1");
    assert!(requests[1].as_str().unwrap().contains("cursor="), "{all}");
    let mine = node.step("list_by_live_stream", &gw);
    assert_eq!(mine["ids"].as_array().unwrap().len(), 1, "{mine}");
    assert_eq!(mine["requests"].as_array().unwrap().len(), 1, "{mine}");
    let asset_id = mine["ids"][0].as_str().unwrap().to_owned();
    assert!(ids.contains(&asset_id.as_str()));
    assert_eq!(
        recordings[0].file_name().unwrap().to_str(),
        Some(asset_id.as_str()),
        "the recording directory is named after the broadcast, the asset's ID"
    );

    let stream = node.step("live_stream", &gw);
    assert_eq!(
        stream["recent_asset_ids"].as_array().unwrap().last(),
        Some(&json!(asset_id)),
        "{stream}"
    );
    assert!(stream["active_asset_id"].is_null(), "{stream}");

    let asset = node.step("retrieve", &gw);
    eprintln!(
        "asset as the SDK read it: duration {} recording_times {} tracks {}",
        asset["duration"], asset["recording_times"], asset["tracks"]
    );
    assert_eq!(asset["id"], asset_id.as_str());
    assert_eq!(asset["status"], "ready");
    assert_eq!(asset["live_stream_id"], main_id.as_str());
    assert_eq!(asset["is_live"], false);
    assert_eq!(asset["progress"]["state"], "completed");
    let pids = asset["playback_ids"].as_array().unwrap();
    assert_eq!(pids.len(), 1, "{asset}");
    assert_eq!(pids[0]["policy"], "public");
    let info = node.step("input_info", &gw);
    assert_eq!(info.as_array().unwrap().len(), 1, "{info}");
    assert_eq!(node.step("retrieve_playback_id", &gw), pids[0]);
    assert_eq!(
        node.step("playback_id_lookup", &gw),
        json!({ "id": pids[0]["id"], "policy": "public",
                "object": { "type": "asset", "id": asset_id } })
    );

    let updated = node.step("update", &gw);
    assert_eq!(updated["answer"]["passthrough"], "sdk-asset");
    assert_eq!(updated["answer"]["meta"]["title"], "SDK show");
    assert_eq!(updated["reread"], updated["answer"]);

    let deleted = node.step("delete", &gw);
    assert_eq!(deleted, json!({ "retrieve": 404, "listed": [] }));
    assert!(!recordings[0].exists(), "the recording went with the asset");
    node.finish();

    // Last, what the session measures (so that the API flow above is checked either way).
    assert_measured_media(&asset, 2);
    let file = &info[0]["file"];
    assert_eq!(file["container_format"], "flv", "{info}");
    let video = video_track(&file["tracks"]);
    assert_eq!(
        (&video["width"], &video["height"]),
        (&json!(1280), &json!(720))
    );
}

/// `tests/sdk/python/asset_check.py ARGS` (mux_python) against `gw`: what it printed.
fn python_check(gw: &Gateway, args: &[&str]) -> Value {
    let script = testkit::workspace_root().join("tests/sdk/python/asset_check.py");
    let out = Command::new(testkit::sdk_python())
        .arg(&script)
        .args(args)
        .env("ONAIR_URL", format!("http://{}", gw.http.unwrap()))
        .env("TOKEN_ID", TEST_TOKEN_ID)
        .env("TOKEN_SECRET", TEST_TOKEN_SECRET)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "asset_check.py {args:?} failed (a mux_python ValueError is an incompatible server \
         answer):\n{}\nserver log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        gw.log()
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn python_sdk_reads_assets_strictly() {
    require_tool("ffmpeg");
    let gw = start("e2e_sdk_python");
    let run = |args: &[&str]| python_check(&gw, args);
    // Two streams created by the SDK, one ~3 s broadcast each: two assets, two pages of one.
    let a = run(&["create"]);
    let b = run(&["create"]);
    let mut encoders =
        [&a, &b].map(|s| Encoder::ffmpeg_720p(&rtmp_url(&gw, &s["stream_key"]), Some(3)));
    for encoder in &mut encoders {
        finish_encoder(encoder, &gw);
    }
    let (a_id, b_id) = (a["id"].as_str().unwrap(), b["id"].as_str().unwrap());
    wait_idle(&gw, &[a_id, b_id]);

    let read = run(&["read", a_id]);
    eprintln!("asset as mux_python read it: {read}");
    let id = read["id"].as_str().unwrap();
    assert_eq!(read["status"], "ready");
    assert_eq!(read["is_live"], false);
    assert_eq!(read["live_stream_id"], a_id);
    assert_eq!(read["progress"], "completed");
    assert_eq!(read["master_access"], "none");
    assert!(read["created_at"].as_str().unwrap().parse::<u64>().is_ok());
    assert_eq!(read["pages"], 2, "{read}");
    assert_eq!(read["paged_ids"].as_array().unwrap().len(), 2, "{read}");
    assert!(read["paged_ids"].as_array().unwrap().contains(&json!(id)));
    assert_eq!(read["by_live_stream_ids"], json!([id]));
    let public = &read["playback_ids"][0];
    assert_eq!(public["policy"], "public");
    assert_eq!(&read["playback_id"], public);
    assert_eq!(read["owner"], json!({ "type": "asset", "id": id }));
    assert_eq!(read["input_info"].as_array().unwrap().len(), 1, "{read}");

    // What the session measures.
    assert_measured_media(&read, 1);
    assert_eq!(read["resolution_tier"], "720p", "{read}");
    assert_eq!(read["input_info"][0]["container_format"], "flv", "{read}");
}

#[test]
fn python_sdk_decodes_a_live_stream_created_with_the_legacy_body() {
    let gw = start("e2e_sdk_python_legacy");
    let read = python_check(&gw, &["legacy"]);
    eprintln!("live stream as mux_python read it: {read}");
    // mux_python's LiveStreamMetadata has only `title`.
    assert_legacy_read_back(&read["created"]);
    assert_eq!(read["read"], read["created"]);
    assert_eq!(read["listed"], json!([read["created"]]));
    assert_eq!(read["updated"]["meta"], json!({ "title": "Python show" }));
    assert_eq!(read["updated"]["reconnect_window"], json!(0.5));
    assert_eq!(read["updated"]["latency_mode"], "low");
}

#[test]
fn official_cli_round_trips_a_live_stream_with_legacy_settings() {
    require_tool("node");
    let gw = start("e2e_sdk_cli_legacy");
    let mux = |args: &[&str]| -> Value {
        let out = gw.mux_cli(args).arg("--json").output().unwrap();
        assert!(
            out.status.success(),
            "mux {args:?}: {}{}\nserver log:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            gw.log()
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "mux {args:?}: {e}: {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    };
    // The CLI passes --new-asset-settings through as JSON: the legacy form goes to the server.
    let created = mux(&[
        "live",
        "create",
        "--playback-policy",
        "public",
        "--new-asset-settings",
        r#"{"playback_policy": "public"}"#,
        "--reconnect-window",
        "12.5",
        "--latency-mode",
        "standard",
    ]);
    let id = created["id"].as_str().unwrap();
    assert_eq!(
        created["new_asset_settings"],
        json!({ "playback_policies": ["public"] })
    );
    assert_eq!(created["reconnect_window"], json!(12.5));
    // `mux live update --title` (CLI 2.0.1 sends a top-level `title`) sets meta.title.
    let updated = mux(&[
        "live",
        "update",
        id,
        "--title",
        "CLI show",
        "--reconnect-window",
        "7.5",
    ]);
    assert_eq!(updated["meta"], json!({ "title": "CLI show" }));
    assert_eq!(updated["reconnect_window"], json!(7.5));
    let read = mux(&["live", "get", id]);
    assert_eq!(read, updated);
    assert_eq!(read["playback_ids"][0]["policy"], "public");
}
