//! End to end: the webhook event stream (`GET /system/v1/webhook-events/stream`, Server-Sent
//! Events) of the real `onair serve`, read with a raw HTTP client and with the official CLI
//! (`mux webhooks listen --forward-to`, `@mux/cli` pinned in tests/sdk/node), and
//! `onair webhooks test` against the SDK receiver.
//!
//! What is checked: authentication (401 without credentials), the headers, the `connected`
//! event, then every event written after the connection, in order, as the webhook envelope
//! with `id:` its seq; `Last-Event-ID` resumes after a seq; the official CLI connects (it
//! asks `/system/v1/whoami` first), forwards each event re-signed with its local secret, and
//! the Node SDK verifies them: API changes, and a whole broadcast (ffmpeg publishing, `mux
//! live complete`) with its asset's events, in the log's order, each printed by the CLI.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::Value;
use testkit::gateway::{Gateway, TEST_TOKEN_ID, TEST_TOKEN_SECRET};
use testkit::{http, require_tool};

const PATH: &str = "/system/v1/webhook-events/stream";

/// One Server-Sent Event.
#[derive(Debug, Clone, Default)]
struct Sse {
    id: Option<String>,
    event: Option<String>,
    data: String,
}

/// A raw HTTP/1.1 client on the stream: parses the head, de-chunks the body and splits it
/// into events (comment lines are counted, not returned).
struct SseClient {
    reader: BufReader<TcpStream>,
    status: u16,
    head: String,
    pending: String,
    comments: usize,
}

impl SseClient {
    fn open(addr: SocketAddr, last_event_id: Option<u64>) -> SseClient {
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let auth = base64::engine::general_purpose::STANDARD
            .encode(format!("{TEST_TOKEN_ID}:{TEST_TOKEN_SECRET}"));
        let mut head = format!(
            "GET {PATH} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\nAuthorization: Basic {auth}\r\n"
        );
        if let Some(seq) = last_event_id {
            head.push_str(&format!("Last-Event-ID: {seq}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).unwrap();
        let mut reader = BufReader::new(stream);
        let mut head = String::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if line == "\r\n" || line.is_empty() {
                break;
            }
            head.push_str(&line.to_ascii_lowercase());
        }
        let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
        SseClient {
            reader,
            status,
            head,
            pending: String::new(),
            comments: 0,
        }
    }

    fn has_header(&self, line: &str) -> bool {
        self.head.lines().any(|l| l.trim() == line)
    }

    /// The next event (blocking, up to the read timeout).
    fn next(&mut self) -> Sse {
        loop {
            if let Some(end) = self.pending.find("\n\n") {
                let block: String = self.pending.drain(..end + 2).collect();
                let mut sse = Sse::default();
                let mut comment = true;
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id: ") {
                        sse.id = Some(v.to_owned());
                    } else if let Some(v) = line.strip_prefix("event: ") {
                        sse.event = Some(v.to_owned());
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        sse.data.push_str(v);
                    } else {
                        continue;
                    }
                    comment = false;
                }
                if comment {
                    self.comments += 1;
                    continue;
                }
                return sse;
            }
            // One chunk: its size in hex, the bytes, CRLF.
            let mut size = String::new();
            self.reader.read_line(&mut size).unwrap();
            let size = usize::from_str_radix(size.trim(), 16).unwrap();
            assert!(size > 0, "the stream ended");
            let mut chunk = vec![0; size + 2];
            self.reader.read_exact(&mut chunk).unwrap();
            chunk.truncate(size);
            self.pending.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }
}

fn start_gateway(name: &str) -> Gateway {
    Gateway::start(Path::new(env!("CARGO_BIN_EXE_onair")), name, &[])
}

#[test]
fn stream_sends_each_new_event_in_order_as_its_webhook_envelope() {
    let gw = start_gateway("e2e-sse-stream");
    let addr = gw.http.unwrap();

    // Anonymous and wrong credentials: 401, like the REST API.
    let anonymous = http::get(addr, PATH).unwrap();
    assert_eq!(anonymous.status, 401);
    let wrong = http::request(addr, "GET", PATH, Some((TEST_TOKEN_ID, "nope-nope")), None).unwrap();
    assert_eq!(wrong.status, 401);

    // Events written before the connection are not sent.
    let before = gw.create_stream(&[]);

    let started = Instant::now();
    let mut client = SseClient::open(addr, None);
    assert_eq!(client.status, 200, "{}", client.head);
    assert!(
        client.has_header("content-type: text/event-stream"),
        "{}",
        client.head
    );
    assert!(
        client.has_header("cache-control: no-cache"),
        "{}",
        client.head
    );
    let connected = client.next();
    assert_eq!(connected.event.as_deref(), Some("connected"));
    assert_eq!(connected.data, "{}");

    let stream = gw.create_stream(&[]);
    // `onair live-streams` has no update: PATCH through the API.
    let patched = http::request(
        addr,
        "PATCH",
        &format!("/video/v1/live-streams/{}", stream.id),
        Some((TEST_TOKEN_ID, TEST_TOKEN_SECRET)),
        Some(r#"{"passthrough": "sse"}"#),
    )
    .unwrap();
    assert_eq!(patched.status, 200, "{}", patched.text());
    assert!(gw
        .cli_raw(&["live-streams", "disable", &stream.id])
        .status
        .success());
    assert!(gw
        .cli_raw(&["live-streams", "enable", &stream.id])
        .status
        .success());

    let expected = [
        "video.live_stream.created",
        "video.live_stream.updated",
        "video.live_stream.disabled",
        "video.live_stream.enabled",
    ];
    let mut seqs = Vec::new();
    for want in expected {
        let sse = client.next();
        let envelope: Value = serde_json::from_str(&sse.data).unwrap();
        assert_eq!(sse.event.as_deref(), Some(want), "{envelope}");
        assert_eq!(envelope["type"], want);
        assert_eq!(envelope["object"]["type"], "live_stream");
        assert_eq!(envelope["object"]["id"], stream.id.as_str());
        assert_ne!(envelope["object"]["id"], before.id.as_str());
        assert_eq!(envelope["data"]["id"], stream.id.as_str());
        assert!(envelope["data"]["created_at"].is_number(), "{envelope}");
        assert_eq!(envelope["data"]["connected"], false);
        assert_eq!(envelope["environment"]["id"], "onair");
        assert_eq!(envelope["attempts"], serde_json::json!([]));
        assert!(envelope["id"].as_str().unwrap().len() >= 32);
        seqs.push(sse.id.unwrap().parse::<u64>().unwrap());
    }
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    assert_eq!(client.comments, 0);
    println!("four events streamed in {:?}", started.elapsed());

    // Resuming after the first: the other three at once, the same seqs.
    let mut resumed = SseClient::open(addr, Some(seqs[0]));
    assert_eq!(resumed.next().event.as_deref(), Some("connected"));
    for (want, seq) in expected[1..].iter().zip(&seqs[1..]) {
        let sse = resumed.next();
        assert_eq!(sse.event.as_deref(), Some(*want));
        assert_eq!(sse.id.unwrap().parse::<u64>().unwrap(), *seq);
    }
}

/// A child process killed on drop, its stdout lines on a channel.
struct Proc {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Proc {
    fn spawn(mut command: Command) -> Proc {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let lines = testkit::stdout_lines(&mut child);
        Proc {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for a line containing `needle` (ANSI colours stripped) and returns it.
    fn wait_line(&mut self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let plain = strip_ansi(&line);
                    self.seen.push(plain.clone());
                    if plain.contains(needle) {
                        return plain;
                    }
                }
                Err(_) => panic!(
                    "no line with {needle:?} within {timeout:?}; got {:#?}",
                    self.seen
                ),
            }
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The SDK receiver (`webhook_receiver.mjs`) verifying with `secret`; returns it and its port.
fn receiver(secret: &str) -> (Proc, u16) {
    let mut command = Command::new("node");
    command
        .arg("webhook_receiver.mjs")
        .current_dir(testkit::sdk_node_dir())
        .env("WEBHOOK_SECRET", secret)
        .env("PORT", "0");
    let mut receiver = Proc::spawn(command);
    let first = receiver.wait_line("listening", Duration::from_secs(20));
    let v: Value = serde_json::from_str(&first).unwrap();
    let port = u16::try_from(v["listening"].as_u64().unwrap()).unwrap();
    (receiver, port)
}

/// The verified envelope of the next delivery; panics on a rejected one.
fn next_verified(receiver: &mut Proc) -> Value {
    let line = receiver.wait_line("\"verified\"", Duration::from_secs(20));
    assert!(
        !receiver.seen.iter().any(|l| l.contains("\"rejected\"")),
        "the SDK rejected a delivery: {:#?}",
        receiver.seen
    );
    serde_json::from_str::<Value>(&line).unwrap()["verified"].clone()
}

#[test]
fn official_cli_listens_and_forwards_verified_webhooks() {
    require_tool("node");
    let gw = start_gateway("e2e-sse-official-cli");
    // An isolated home: the CLI keeps its config, its event log and its forwarding secret
    // (`$XDG_DATA_HOME/mux/webhook-signing-secret-<environment>`) there. The secret is
    // seeded so that the receiver knows it; the CLI prints it too.
    let home = gw.data_dir.join("mux-home");
    let secret = "whsec-mux-cli-0123456789";
    std::fs::create_dir_all(home.join("data/mux")).unwrap();
    std::fs::write(home.join("data/mux/webhook-signing-secret-onair"), secret).unwrap();
    let (mut receiver, port) = receiver(secret);

    let mux = |args: &[&str]| gw.mux_cli(args);
    let forward_to = format!("http://127.0.0.1:{port}/hook");
    let mut listen = Proc::spawn(mux(&["webhooks", "listen", "--forward-to", &forward_to]));
    let line = listen.wait_line("Webhook signing secret:", Duration::from_secs(30));
    assert!(line.contains(secret), "{line}");
    listen.wait_line("Connected to event stream", Duration::from_secs(30));

    // The official CLI drives the API too.
    let run = |args: &[&str]| {
        let out = mux(args).output().unwrap();
        assert!(
            out.status.success(),
            "mux {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let created: Value = serde_json::from_str(&run(&["live", "create", "--json"])).unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    run(&[
        "live",
        "update",
        &id,
        "--passthrough",
        "from-mux-cli",
        "--json",
    ]);
    run(&["live", "disable", &id, "--json"]);

    for want in [
        "video.live_stream.created",
        "video.live_stream.updated",
        "video.live_stream.disabled",
    ] {
        let event = next_verified(&mut receiver);
        assert_eq!(event["type"], want, "{event}");
        assert_eq!(event["object"]["id"], id.as_str());
        assert_eq!(event["data_id"], id.as_str());
        // The CLI prints each event with the receiver's status.
        let printed = listen.wait_line(want, Duration::from_secs(10));
        assert!(printed.contains("[200]"), "{printed}");
    }

    // A broadcast: enabled with the CLI, published with ffmpeg, completed with the CLI.
    // Every event the log holds for it (the lifecycle's and its asset's) is forwarded and
    // verified, in the log's order, and printed by the CLI.
    run(&["live", "enable", &id, "--json"]);
    let key = created["stream_key"].as_str().unwrap();
    let mut encoder = testkit::encoder::Encoder::ffmpeg_720p(
        &format!("rtmp://{}/app/{key}", gw.rtmp.unwrap()),
        None,
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while gw.status(&id) != "active" {
        assert!(
            Instant::now() < deadline,
            "never active: {}",
            encoder.stderr()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    run(&["live", "complete", &id, "--json"]);
    encoder.kill();
    let mut forwarded = Vec::new();
    while forwarded.last().map(|e: &Value| e["type"].clone())
        != Some(Value::from("video.asset.live_stream_completed"))
    {
        let event = next_verified(&mut receiver);
        let about_it =
            event["object"]["id"] == id.as_str() || event["data_live_stream_id"] == id.as_str();
        assert!(about_it, "{event}");
        forwarded.push(event);
    }
    let types: Vec<&str> = forwarded
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    let logged = gw.event_log(&id, "event_type");
    assert_eq!(
        types,
        logged[3..],
        "the log after created, updated, disabled"
    );
    for want in [
        "video.live_stream.enabled",
        "video.live_stream.connected",
        "video.live_stream.recording",
        "video.asset.created",
        "video.live_stream.active",
        "video.live_stream.idle",
        "video.asset.ready",
        "video.asset.live_stream_completed",
    ] {
        assert!(types.contains(&want), "{want} not in {types:?}");
    }
    for event in &forwarded {
        let want = event["type"].as_str().unwrap();
        let printed = listen.wait_line(want, Duration::from_secs(10));
        assert!(printed.contains("[200]"), "{printed}");
    }
}

#[test]
fn webhooks_test_command_sends_one_verified_event() {
    require_tool("node");
    let secret = "whsec-onair-test-0123456789";
    let (mut receiver, port) = receiver(secret);
    let url = format!("http://127.0.0.1:{port}/hook");
    let onair = env!("CARGO_BIN_EXE_onair");
    let out = Command::new(onair)
        .args(["webhooks", "test", &url, "--secret", secret])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.starts_with("200 video.live_stream.updated "),
        "{stdout}"
    );
    let event = next_verified(&mut receiver);
    assert_eq!(event["type"], "video.live_stream.updated");
    assert_eq!(event["object"]["id"], "onair-test-live-stream");

    // A wrong secret: the receiver answers 400 and the command fails.
    let out = Command::new(onair)
        .args(["webhooks", "test", &url, "--secret", "not-the-secret"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("answered 400"));

    // Nobody listening: fails too.
    drop(receiver);
    let out = Command::new(onair)
        .args(["webhooks", "test", &url, "--secret", secret])
        .output()
        .unwrap();
    assert!(!out.status.success());
}
