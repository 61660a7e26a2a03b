//! End to end: webhooks from the real `onair serve` to a real receiver that verifies every
//! delivery with the official Node SDK (`tests/sdk/node/webhook_receiver.mjs`,
//! `mux.webhooks.unwrap`), while ffmpeg publishes, disconnects and reconnects.
//!
//! What is checked: a broadcast with a reconnect inside the window produces exactly the
//! lifecycle's events, in order, each verified by the SDK, with `data.status`,
//! `data.connected` and `data.recording` as of that moment and the envelope of the hosted API;
//! and with the receiver down while everything happens and the gateway killed (`kill -9`)
//! and restarted, every event still arrives, in order, once the receiver is up.
#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;
use testkit::encoder::Encoder;
use testkit::gateway::Gateway;

const SECRET: &str = "whsec-e2e-0123456789";

/// The SDK receiver (`webhook_receiver.mjs`), killed on drop.
struct Receiver {
    child: Child,
    port: u16,
    lines: mpsc::Receiver<Value>,
    /// Verified events so far, in arrival order.
    verified: Vec<Value>,
}

impl Receiver {
    /// Starts the receiver on `port` (0: an ephemeral one).
    fn start(port: u16) -> Receiver {
        let sdk_dir = testkit::sdk_node_dir();
        let mut child = Command::new("node")
            .arg("webhook_receiver.mjs")
            .current_dir(&sdk_dir)
            .env("WEBHOOK_SECRET", SECRET)
            .env("PORT", port.to_string())
            .stdout(Stdio::piped())
            .spawn()
            .expect("node is required (apt-get install -y nodejs)");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let v: Value =
                    serde_json::from_str(&line).unwrap_or_else(|_| panic!("not JSON: {line}"));
                if tx.send(v).is_err() {
                    break;
                }
            }
        });
        let first = lines
            .recv_timeout(Duration::from_secs(20))
            .expect("the webhook receiver did not start");
        let port = u16::try_from(first["listening"].as_u64().unwrap()).unwrap();
        Receiver {
            child,
            port,
            lines,
            verified: Vec::new(),
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    /// Takes what the receiver printed so far; panics on a delivery the SDK rejected.
    fn drain(&mut self) {
        while let Ok(v) = self.lines.try_recv() {
            assert!(
                v.get("rejected").is_none(),
                "the SDK rejected a delivery: {v}"
            );
            self.verified.push(v["verified"].clone());
        }
    }

    /// The verified events about live stream `id` and its assets, in arrival order.
    fn events_of(&mut self, id: &str) -> Vec<Value> {
        self.drain();
        self.verified
            .iter()
            .filter(|v| v["object"]["id"] == id || v["live_stream_id"] == id)
            .cloned()
            .collect()
    }

    /// Waits until the events about `id` include one of type `last`.
    fn wait_for(&mut self, gw: &Gateway, id: &str, last: &str, timeout: Duration) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let events = self.events_of(id);
            if events.iter().any(|e| e["type"] == last) {
                return events;
            }
            assert!(
                Instant::now() < deadline,
                "no {last} webhook within {timeout:?}; got {:?}\n{}",
                types(&events),
                log_tail(gw)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

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

fn log_tail(gw: &Gateway) -> String {
    let log = gw.log();
    let lines: Vec<&str> = log.lines().collect();
    format!(
        "--- onair log, last lines ---\n{}",
        lines[lines.len().saturating_sub(40)..].join("\n")
    )
}

fn start_gateway(name: &str, url: &str) -> Gateway {
    Gateway::start(
        Path::new(env!("CARGO_BIN_EXE_onair")),
        name,
        &["--webhook-url", url, "--webhook-secret", SECRET],
    )
}

fn wait_idle(gw: &Gateway, id: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while gw.status(id) != "idle" {
        assert!(
            Instant::now() < deadline,
            "not idle after {timeout:?}\n{}",
            log_tail(gw)
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The event IDs of a live stream's log, in order.
fn logged_event_ids(gw: &Gateway, id: &str) -> Vec<String> {
    gw.event_log(id, "id")
}

/// Publish, drop, reconnect inside the window, stop: the receiver sees exactly the
/// lifecycle, each event verified by the SDK and showing the stream as of that moment.
#[test]
fn sdk_verifies_every_lifecycle_webhook_in_order() {
    let mut receiver = Receiver::start(0);
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
    wait_idle(&gw, &stream.id, Duration::from_secs(20));
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
            assert_eq!(event["live_stream_id"], stream.id.as_str(), "{what}");
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

/// The receiver is down while a broadcast happens and the gateway is killed and restarted;
/// when it comes up (on the same port), every event arrives, in order.
#[test]
fn events_wait_for_a_dead_receiver_across_a_crash() {
    // A port nobody listens on (connection refused) until the receiver takes it.
    let port = {
        let probe = TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let hook = format!("http://127.0.0.1:{port}/hook");
    let mut gw = start_gateway("e2e_webhooks_dead_receiver", &hook);
    let stream = gw.create_stream(&["--reconnect-window", "3", "--latency-mode", "reduced"]);
    let url = format!("rtmp://{}/app/{}", gw.rtmp.unwrap(), stream.key);
    let mut encoder = Encoder::ffmpeg_720p(&url, None);
    let deadline = Instant::now() + Duration::from_secs(20);
    while gw.status(&stream.id) != "active" {
        assert!(Instant::now() < deadline, "never active\n{}", log_tail(&gw));
        std::thread::sleep(Duration::from_millis(250));
    }
    gw.kill9();
    encoder.kill();
    gw.restart();
    // After the restart the broadcast is recovered, then goes idle after its window.
    wait_idle(&gw, &stream.id, Duration::from_secs(20));
    let logged = logged_event_ids(&gw, &stream.id);
    assert!(
        gw.log().contains("webhook delivery failed"),
        "the dead receiver was not noticed\n{}",
        log_tail(&gw)
    );

    let mut receiver = Receiver::start(port);
    let events = receiver.wait_for(
        &gw,
        &stream.id,
        "video.asset.live_stream_completed",
        Duration::from_secs(40),
    );
    let ids: Vec<&str> = events.iter().map(|e| e["id"].as_str().unwrap()).collect();
    // In order, duplicates allowed (at least once): each event no earlier than the one before.
    let position = |id: &str| logged.iter().position(|l| l == id).unwrap();
    let positions: Vec<usize> = ids.iter().map(|id| position(id)).collect();
    assert!(
        positions.windows(2).all(|w| w[0] <= w[1]),
        "out of order: {:?}",
        types(&events)
    );
    let unique: HashSet<&str> = ids.iter().copied().collect();
    assert_eq!(unique.len(), logged.len(), "{:?}", types(&events));
    assert_eq!(
        types(&events)
            .into_iter()
            .fold(Vec::<String>::new(), |mut v, t| {
                if v.last() != Some(&t) {
                    v.push(t);
                }
                v
            }),
        [
            "created",
            "connected",
            "recording",
            "video.asset.created",
            "active",
            "disconnected",
            "idle",
            "video.asset.ready",
            "video.asset.live_stream_completed",
        ]
    );
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
