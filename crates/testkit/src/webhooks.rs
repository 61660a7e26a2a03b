//! A real webhook receiver for end-to-end tests: `tests/sdk/node/webhook_receiver.mjs`, which
//! verifies every delivery with the official Node SDK (`mux.webhooks.unwrap`), as an
//! application written for the hosted API would, and can play a broken receiver
//! ([`ReceiverMode`]).
//!
//! Dropping a [`WebhookReceiver`] kills it.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::gateway::Gateway;

/// How the receiver answers deliveries that the SDK verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiverMode {
    /// `200`.
    Ok,
    /// `500`, as a receiver whose application is broken.
    Fail500,
    /// No answer for `HANG_MS` (10 s by default, longer than the sender's 5 s timeout).
    Hang,
}

impl ReceiverMode {
    /// The receiver's name for it (`WEBHOOK_MODE`, `POST /mode`).
    pub fn name(self) -> &'static str {
        match self {
            ReceiverMode::Ok => "ok",
            ReceiverMode::Fail500 => "fail500",
            ReceiverMode::Hang => "hang",
        }
    }
}

/// The SDK receiver, killed on drop.
#[derive(Debug)]
pub struct WebhookReceiver {
    child: Child,
    addr: SocketAddr,
    lines: mpsc::Receiver<Value>,
    /// Verified and acknowledged (`200`) deliveries so far, in arrival order.
    verified: Vec<Value>,
    /// Verified deliveries answered with a fault (`{mode, type, id}`), in arrival order.
    failed: Vec<Value>,
}

impl WebhookReceiver {
    /// Starts the receiver on `127.0.0.1:port` (0: an ephemeral one) with `secret`, answering
    /// as `mode` says.
    pub fn start(secret: &str, port: u16, mode: ReceiverMode) -> WebhookReceiver {
        let mut child = Command::new("node")
            .arg("webhook_receiver.mjs")
            .current_dir(crate::sdk_node_dir())
            .env("WEBHOOK_SECRET", secret)
            .env("WEBHOOK_MODE", mode.name())
            .env("PORT", port.to_string())
            .stdin(Stdio::null())
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
        WebhookReceiver {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            lines,
            verified: Vec::new(),
            failed: Vec::new(),
        }
    }

    /// The URL to deliver to.
    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    /// Switches how deliveries are answered from now on (`POST /mode`); returns once the
    /// receiver has switched.
    pub fn set_mode(&mut self, mode: ReceiverMode) {
        let answer = crate::http::request(self.addr, "POST", "/mode", None, Some(mode.name()))
            .expect("the webhook receiver's /mode");
        assert_eq!(answer.status, 200, "{}", answer.text());
    }

    /// Takes what the receiver printed so far; panics on a delivery the SDK rejected.
    fn drain(&mut self) {
        while let Ok(v) = self.lines.try_recv() {
            assert!(
                v.get("rejected").is_none(),
                "the SDK rejected a delivery: {v}"
            );
            if let Some(verified) = v.get("verified") {
                self.verified.push(verified.clone());
            } else if let Some(failed) = v.get("failed") {
                self.failed.push(failed.clone());
            }
        }
    }

    /// The deliveries answered with a fault so far (each verified by the SDK first), in
    /// arrival order: `{mode: "fail500"|"hang", type, id}`.
    pub fn failed(&mut self) -> Vec<Value> {
        self.drain();
        self.failed.clone()
    }

    /// The verified, acknowledged events of live stream `id`, in arrival order: those about
    /// it (`object.id`) and those about its assets (`data.live_stream_id`).
    pub fn events_of(&mut self, id: &str) -> Vec<Value> {
        self.drain();
        self.verified
            .iter()
            .filter(|v| v["object"]["id"] == id || v["data_live_stream_id"] == id)
            .cloned()
            .collect()
    }

    /// Waits until the acknowledged events of live stream `id` include one of type `last`;
    /// returns them all, in arrival order.
    pub fn wait_for(
        &mut self,
        gw: &Gateway,
        id: &str,
        last: &str,
        timeout: Duration,
    ) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let events = self.events_of(id);
            if events.iter().any(|e| e["type"] == last) {
                return events;
            }
            assert!(
                Instant::now() < deadline,
                "no {last} webhook within {timeout:?}; got {:?}\n{}",
                short_types(&events),
                gw.log_tail(40)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until the acknowledged events of live stream `id` include every event ID in
    /// `ids`; returns them all (duplicates included), in arrival order.
    pub fn wait_for_ids(
        &mut self,
        gw: &Gateway,
        id: &str,
        ids: &[String],
        timeout: Duration,
    ) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let events = self.events_of(id);
            let missing: Vec<&String> = ids
                .iter()
                .filter(|want| !events.iter().any(|e| e["id"] == want.as_str()))
                .collect();
            if missing.is_empty() {
                return events;
            }
            assert!(
                Instant::now() < deadline,
                "{} of {} events not delivered within {timeout:?}: {missing:?}; got {:?}\n{}",
                missing.len(),
                ids.len(),
                short_types(&events),
                gw.log_tail(40)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for WebhookReceiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Event types without the `video.` prefix (`live_stream.created`, `asset.ready`), for
/// assertion messages.
pub fn short_types(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| {
            let t = e["type"].as_str().unwrap_or("?");
            t.strip_prefix("video.").unwrap_or(t).to_owned()
        })
        .collect()
}

/// Checks at-least-once, in-order delivery: every ID of `logged` (a stream's event log, in
/// order) is among `received` (what arrived, in arrival order), nothing else is, and each
/// arrival is no earlier in the log than the one before (a repeated event is allowed; going
/// back to an earlier one is not).
pub fn assert_at_least_once_in_order(received: &[Value], logged: &[String]) {
    let types = short_types(received);
    let positions: Vec<usize> = received
        .iter()
        .map(|e| {
            let id = e["id"].as_str().unwrap();
            logged
                .iter()
                .position(|l| l == id)
                .unwrap_or_else(|| panic!("{id} ({}) is not in the log", e["type"]))
        })
        .collect();
    assert!(
        positions.windows(2).all(|w| w[0] <= w[1]),
        "out of order: {types:?} (positions in the log {positions:?})"
    );
    for (i, id) in logged.iter().enumerate() {
        assert!(
            positions.contains(&i),
            "event {i} of the log ({id}) never arrived: {types:?}"
        );
    }
}
