//! The management CLI against a running server: `live-streams` and `assets` commands print
//! what the API answers, refusals come back as clear errors, and `access-tokens` manage the
//! tokens the API accepts.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use testkit::encoder::Encoder;
use testkit::gateway::Gateway;
use testkit::http::request;

fn start(name: &str) -> Gateway {
    Gateway::start(std::path::Path::new(env!("CARGO_BIN_EXE_onair")), name, &[])
}

/// The `data` of `GET /video/v1{path}`, asked straight of the API with the test token.
fn api_data(gw: &Gateway, path: &str) -> Value {
    let auth = (
        testkit::gateway::TEST_TOKEN_ID,
        testkit::gateway::TEST_TOKEN_SECRET,
    );
    let r = request(
        gw.http.unwrap(),
        "GET",
        &format!("/video/v1{path}"),
        Some(auth),
        None,
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    serde_json::from_slice::<Value>(&r.body).unwrap()["data"].take()
}

#[test]
fn live_streams_commands_are_api_clients() {
    let gw = start("cli_live_streams");
    let created = gw.cli(&[
        "live-streams",
        "create",
        "--latency-mode",
        "reduced",
        "--passthrough",
        "cli",
    ]);
    let id = created["id"].as_str().unwrap();
    assert_eq!(created["latency_mode"], "reduced");
    assert_eq!(created["reconnect_window"], 0);
    assert_eq!(created["max_continuous_duration"], 43200);
    assert_eq!(created["playback_ids"][0]["policy"], "public");
    // The same object as the API's `data`.
    assert_eq!(
        gw.cli(&["live-streams", "get", id]),
        api_data(&gw, &format!("/live-streams/{id}"))
    );
    let list = gw.cli(&["live-streams", "list", "--limit", "5"]);
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(
        gw.cli(&["live-streams", "disable", id])["status"],
        "disabled"
    );
    assert_eq!(
        gw.cli(&["live-streams", "list", "--status", "disabled"])
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(gw.cli(&["live-streams", "enable", id])["status"], "idle");
    // Without a running broadcast, complete changes nothing.
    assert_eq!(gw.cli(&["live-streams", "complete", id])["status"], "idle");
    let reset = gw.cli(&["live-streams", "reset-stream-key", id]);
    assert_ne!(reset["stream_key"], created["stream_key"]);
    gw.cli(&["live-streams", "delete", id]);

    // Refusals are errors naming the problem.
    let out = gw.cli_raw(&["live-streams", "get", id]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("404"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = gw.cli_raw(&["live-streams", "create", "--reconnect-window", "1801"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("reconnect_window"),
        "{stderr}"
    );
}

#[test]
fn access_tokens_create_list_revoke() {
    let gw = start("cli_access_tokens");
    let http = gw.http.unwrap();
    let created = gw.cli(&["access-tokens", "create", "--name", "ci", "--read-only"]);
    let id = created["id"].as_str().unwrap();
    let secret = created["secret"].as_str().unwrap();
    let get = |path: &str| {
        request(http, "GET", path, Some((id, secret)), None)
            .unwrap()
            .status
    };
    assert_eq!(get("/video/v1/live-streams"), 200);
    let post = request(
        http,
        "POST",
        "/video/v1/live-streams",
        Some((id, secret)),
        Some("{}"),
    )
    .unwrap();
    assert_eq!(post.status, 403, "a read-only token cannot write");
    let listed = gw.cli(&["access-tokens", "list"]);
    let text = listed.to_string();
    assert!(text.contains(id) && !text.contains(secret), "{text}");
    gw.cli(&["access-tokens", "revoke", id]);
    assert_eq!(get("/video/v1/live-streams"), 401);
    // The database holds no secret.
    let db = std::fs::read(gw.data_dir.join("onair.db")).unwrap();
    assert!(!db.windows(secret.len()).any(|w| w == secret.as_bytes()));
}

#[test]
fn assets_commands_are_api_clients() {
    let gw = start("cli_assets");
    assert_eq!(
        gw.cli(&["assets", "list"]),
        json!({ "data": [], "next_cursor": null })
    );
    let stream = gw.create_stream(&["--reconnect-window", "0"]);
    // One short broadcast: with no reconnect window the stream goes idle when ffmpeg is done
    // and its asset is ready.
    let url = format!("rtmp://{}/app/{}", gw.rtmp.unwrap(), stream.key);
    let mut encoder = Encoder::ffmpeg_720p(&url, Some(3));
    let done = encoder.wait_timeout(Duration::from_secs(20));
    assert!(
        done.is_some_and(|s| s.success()),
        "ffmpeg: {:?} {}",
        done,
        encoder.stderr()
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    let asset = loop {
        let page = gw.cli(&["assets", "list", "--live-stream-id", &stream.id]);
        if page["data"][0]["status"] == "ready" {
            assert_eq!(page["next_cursor"], Value::Null);
            break page["data"][0].clone();
        }
        assert!(Instant::now() < deadline, "no ready asset: {page}");
        std::thread::sleep(Duration::from_millis(200));
    };
    let id = asset["id"].as_str().unwrap();
    assert_eq!(asset["live_stream_id"], stream.id.as_str());
    // The same object as the API's `data`.
    let api = api_data(&gw, &format!("/assets/{id}"));
    assert_eq!(gw.cli(&["assets", "get", id]), api);
    assert_eq!(api, asset);

    let updated = gw.cli(&[
        "assets",
        "update",
        id,
        "--passthrough",
        "cli",
        "--title",
        "Show",
    ]);
    assert_eq!(updated["passthrough"], "cli");
    assert_eq!(updated["meta"], json!({ "title": "Show" }));
    assert_eq!(gw.cli(&["assets", "get", id]), updated);
    let page = gw.cli(&["assets", "list", "--limit", "1", "--page", "2"]);
    assert_eq!(page, json!({ "data": [], "next_cursor": null }));

    // Refusals are errors naming the problem.
    let long = "x".repeat(256);
    let out = gw.cli_raw(&["assets", "update", id, "--passthrough", &long]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("passthrough"),
        "{stderr}"
    );
    assert_eq!(gw.cli(&["assets", "delete", id]), json!({ "deleted": id }));
    let out = gw.cli_raw(&["assets", "get", id]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("404"), "{stderr}");
    assert_eq!(
        gw.cli(&["live-streams", "get", &stream.id])["recent_asset_ids"],
        json!([id])
    );
}
