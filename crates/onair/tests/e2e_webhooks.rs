//! End to end: webhooks from the real `onair serve` to a real receiver that verifies every
//! delivery with the official Node SDK (`tests/sdk/node/webhook_receiver.mjs`,
//! `mux.webhooks.unwrap`), while ffmpeg publishes, disconnects and reconnects.
//!
//! What is checked: a broadcast with a reconnect inside the window produces exactly the
//! lifecycle's events, in order, each verified by the SDK, with `data.status`,
//! `data.connected` and `data.recording` as of that moment and the envelope of the hosted API;
//! the asset's events follow in the seeds' order; a webhook misconfiguration stops the start.
//! A receiver that is down, failing or hanging while the gateway is killed and restarted:
//! `e2e_webhook_faults.rs`.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use testkit::encoder::Encoder;
use testkit::gateway::Gateway;
use testkit::webhooks::{ReceiverMode, WebhookReceiver};

const SECRET: &str = "whsec-e2e-0123456789";

fn types(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| {
            e["type"]
                .as_str()
                .unwrap()
                .trim_start_matches("video.live_stream.")
                .to_owned()
        })
        .collect()
}

fn start_gateway(name: &str, url: &str) -> Gateway {
    Gateway::start(
        Path::new(env!("CARGO_BIN_EXE_onair")),
        name,
        &["--webhook-url", url, "--webhook-secret", SECRET],
    )
}

/// The event IDs of a live stream's log, in order.
fn logged_event_ids(gw: &Gateway, id: &str) -> Vec<String> {
    gw.event_log(id, "id")
}

/// Publish, drop, reconnect inside the window, stop: the receiver sees exactly the
/// lifecycle, each event verified by the SDK and showing the stream as of that moment.
#[test]
fn sdk_verifies_every_lifecycle_webhook_in_order() {
    let mut receiver = WebhookReceiver::start(SECRET, 0, ReceiverMode::Ok);
    let gw = start_gateway("e2e_webhooks_lifecycle", &receiver.url());
    let stream = gw.create_stream(&["--reconnect-window", "5", "--latency-mode", "reduced"]);
    let url = format!("rtmp://{}/app/{}", gw.rtmp.unwrap(), stream.key);

    let mut first = Encoder::ffmpeg_720p(&url, None);
    receiver.wait_for(
        &gw,
        &stream.id,
        "video.live_stream.active",
        Duration::from_secs(20),
    );
    std::thread::sleep(Duration::from_secs(4));
    first.kill();
    receiver.wait_for(
        &gw,
        &stream.id,
        "video.live_stream.disconnected",
        Duration::from_secs(10),
    );
    let mut second = Encoder::ffmpeg_720p(&url, None);
    std::thread::sleep(Duration::from_secs(6));
    second.kill();
    gw.wait_status(&stream.id, "idle", Duration::from_secs(20));
    let events = receiver.wait_for(
        &gw,
        &stream.id,
        "video.asset.live_stream_completed",
        Duration::from_secs(10),
    );

    // The seeds' order per stream: the asset is created with the first recorded media and
    // completed when the stream goes idle.
    assert_eq!(
        types(&events),
        [
            "created",
            "connected",
            "recording",
            "video.asset.created",
            "active",
            "disconnected",
            "connected",
            "recording",
            "disconnected",
            "idle",
            "video.asset.ready",
            "video.asset.live_stream_completed",
        ],
        "{events:#?}"
    );
    let asset_id = events[3]["data_id"].as_str().unwrap().to_owned();
    // (status, connected, recording, active_asset_id set) as of each live stream event.
    let expected = [
        ("idle", false, false, false),
        ("idle", true, false, false),
        ("idle", true, true, true),
        ("preparing", false, false, false),
        ("active", true, true, true),
        ("active", false, false, true),
        ("active", true, false, true),
        ("active", true, true, true),
        ("active", false, false, true),
        ("idle", false, false, false),
        ("ready", false, false, false),
        ("ready", false, false, false),
    ];
    for (event, (status, connected, recording, has_asset)) in events.iter().zip(expected) {
        let what = format!("{} {event}", event["type"]);
        assert_eq!(event["status"], status, "{what}");
        let is_asset = event["type"].as_str().unwrap().starts_with("video.asset.");
        if is_asset {
            assert_eq!(event["object"]["type"], "asset", "{what}");
            assert_eq!(event["object"]["id"], asset_id.as_str(), "{what}");
            assert_eq!(event["data_id"], asset_id.as_str(), "{what}");
            assert_eq!(event["data_live_stream_id"], stream.id.as_str(), "{what}");
            assert_eq!(event["is_live"], status == "preparing", "{what}");
        } else {
            assert_eq!(event["connected"], connected, "{what}");
            assert_eq!(event["recording"], recording, "{what}");
            assert_eq!(event["object"]["type"], "live_stream", "{what}");
            assert_eq!(event["data_id"], stream.id.as_str(), "{what}");
            let active = event["active_asset_id"].as_str();
            assert_eq!(active, has_asset.then_some(asset_id.as_str()), "{what}");
        }
        if event["type"] == "video.live_stream.idle" {
            assert_eq!(
                event["recent_asset_ids"],
                serde_json::json!([asset_id]),
                "{what}"
            );
        }
        // The envelope of the hosted API.
        assert!(event["data_created_at"].is_u64(), "{what}");
        assert_eq!(event["environment"]["name"], "production", "{what}");
        assert_eq!(event["environment"]["id"], "onair", "{what}");
        assert_eq!(event["attempts"], serde_json::json!([]), "{what}");
        for null in ["accessor", "accessor_source", "request_id"] {
            assert!(event[null].is_null(), "{what}");
        }
        let created = event["created_at"].as_str().unwrap();
        assert!(
            created.len() == 27 && created.ends_with("000Z") && created.as_bytes()[10] == b'T',
            "{what}"
        );
    }
    // Exactly the log, no event twice (nothing failed, so nothing was sent again).
    let ids: Vec<&str> = events.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids, logged_event_ids(&gw, &stream.id));
}

/// Webhook mistakes stop `onair serve` before it binds anything, with a message that names
/// the setting and never shows the secret.
#[test]
fn webhook_misconfiguration_stops_the_start() {
    let data_dir = testkit::scratch_dir("e2e_webhooks_misconfigured");
    let serve = |args: &[&str], env: &[(&str, &str)]| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_onair"));
        command.arg("--data-dir").arg(&data_dir).args([
            "serve",
            "--rtmp-addr",
            "off",
            "--rtmps-addr",
            "off",
            "--http-addr",
            "127.0.0.1:0",
        ]);
        command.args(args).envs(env.iter().copied());
        let out = command.output().unwrap();
        assert!(!out.status.success(), "started with {args:?} {env:?}");
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!stderr.contains(SECRET), "the secret was printed: {stderr}");
        assert!(
            !String::from_utf8_lossy(&out.stdout).contains("ready"),
            "it became ready"
        );
        stderr
    };
    let e = serve(&["--webhook-url", "http://127.0.0.1:9/hook"], &[]);
    assert!(e.contains("needs --webhook-secret"), "{e}");
    let e = serve(&[], &[("ONAIR_WEBHOOK_SECRET", SECRET)]);
    assert!(e.contains("without --webhook-url"), "{e}");
    let e = serve(
        &[],
        &[
            ("ONAIR_WEBHOOK_URL", "ftp://example.com/hook"),
            ("ONAIR_WEBHOOK_SECRET", SECRET),
        ],
    );
    assert!(e.contains("invalid webhook URL"), "{e}");
}
