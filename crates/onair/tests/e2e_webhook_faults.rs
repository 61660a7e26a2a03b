//! End to end: webhook delivery from the real `onair serve` when receivers misbehave.
//!
//! - A receiver that is down in three ways in turn (connection refused, `500`, no answer for
//!   longer than the 5 s attempt timeout) while a broadcast happens and the gateway is killed
//!   (`kill -9`) and restarted: once it is healthy, every event of the stream's log arrives,
//!   verified by the official Node SDK (`tests/sdk/node/webhook_receiver.mjs`), in order, at
//!   least once; the log shows one warning per failed attempt, each followed by a doubling
//!   delay, and never the secret.
//! - Endpoints that redirect, answer with a 50 MB body, or accept the connection and never
//!   read the request, plus one nobody listens on: the gateway keeps serving the API, its
//!   memory stays bounded, a redirect is never followed, and every failure is a warning.
//! - An endpoint in the configuration file without a secret stops the start with a message.
#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use testkit::encoder::Encoder;
use testkit::gateway::{Gateway, TEST_TOKEN_ID, TEST_TOKEN_SECRET};
use testkit::webhooks::{assert_at_least_once_in_order, ReceiverMode, WebhookReceiver};

const SECRET: &str = "whsec-faults-0123456789";

/// What marks a failed attempt in the gateway's log (one line per attempt, each followed by
/// a delay).
const FAILED: &str = "webhook delivery failed";

/// A loopback port nobody listens on (connection refused until someone takes it).
fn free_port() -> u16 {
    let probe = TcpListener::bind("127.0.0.1:0").unwrap();
    probe.local_addr().unwrap().port()
}

/// Waits until the gateway's log has a line containing every one of `needles`.
fn wait_log_line(gw: &Gateway, needles: &[&str], timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while !gw
        .log()
        .lines()
        .any(|l| needles.iter().all(|n| l.contains(n)))
    {
        assert!(
            Instant::now() < deadline,
            "no log line with {needles:?} within {timeout:?}\n{}",
            gw.log_tail(40)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until the receiver answered an attempt with the fault `mode`.
fn wait_failed(receiver: &mut WebhookReceiver, gw: &Gateway, mode: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while !receiver.failed().iter().any(|f| f["mode"] == mode) {
        assert!(
            Instant::now() < deadline,
            "no attempt answered with {mode} within {timeout:?}\n{}",
            gw.log_tail(40)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The value of `field=` in a log line (up to the next space).
fn field<'a>(line: &'a str, field: &str) -> Option<&'a str> {
    let start = line.find(&format!(" {field}="))? + field.len() + 2;
    line[start..].split(' ').next()
}

/// Refused, then `500`, then hanging, with a crash in between; then healthy: every event of
/// the broadcast arrives, verified, in order.
#[test]
fn every_event_arrives_after_a_refusing_failing_and_hanging_receiver_and_a_crash() {
    let port = free_port();
    let hook = format!("http://127.0.0.1:{port}/hook");
    let mut gw = Gateway::start(
        Path::new(env!("CARGO_BIN_EXE_onair")),
        "e2e_webhook_faults_receiver",
        &["--webhook-url", &hook, "--webhook-secret", SECRET],
    );
    let stream = gw.create_stream(&["--reconnect-window", "4", "--latency-mode", "reduced"]);
    let url = format!("rtmp://{}/app/{}", gw.rtmp.unwrap(), stream.key);

    // 1. Connection refused while ffmpeg publishes and then stops.
    let mut encoder = Encoder::ffmpeg_720p(&url, None);
    gw.wait_status(&stream.id, "active", Duration::from_secs(20));
    encoder.kill();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !gw
        .event_log(&stream.id, "event_type")
        .iter()
        .any(|t| t == "video.live_stream.disconnected")
    {
        assert!(Instant::now() < deadline, "{}", gw.log_tail(40));
        std::thread::sleep(Duration::from_millis(100));
    }
    wait_log_line(&gw, &[FAILED, "cannot connect"], Duration::from_secs(10));

    // Crash inside the reconnect window; the receiver comes up answering 500, and the
    // restarted gateway finishes the broadcast (idle after the window).
    gw.kill9();
    let mut receiver = WebhookReceiver::start(SECRET, port, ReceiverMode::Fail500);
    gw.restart();
    // 2. 500.
    wait_failed(&mut receiver, &gw, "fail500", Duration::from_secs(10));
    // 3. No answer for 10 s: each attempt is abandoned after 5 s.
    receiver.set_mode(ReceiverMode::Hang);
    wait_failed(&mut receiver, &gw, "hang", Duration::from_secs(15));
    wait_log_line(&gw, &[FAILED, "no answer within"], Duration::from_secs(10));
    gw.wait_status(&stream.id, "idle", Duration::from_secs(20));
    // Nothing was acknowledged yet.
    assert!(receiver.events_of(&stream.id).is_empty());

    // 4. Healthy: everything arrives.
    receiver.set_mode(ReceiverMode::Ok);
    let logged = gw.event_log(&stream.id, "id");
    let types = gw.event_log(&stream.id, "event_type");
    for t in ["created", "connected", "active", "disconnected", "idle"] {
        let t = format!("video.live_stream.{t}");
        assert!(types.contains(&t), "{t} is not in the log: {types:?}");
    }
    let events = receiver.wait_for_ids(&gw, &stream.id, &logged, Duration::from_secs(30));
    // The log did not grow meanwhile: what arrived is compared with all of it.
    assert_eq!(gw.event_log(&stream.id, "id"), logged);
    assert_at_least_once_in_order(&events, &logged);

    // The gateway noticed every failure: one warning per failed attempt, each with its
    // reason and the doubling delay before the next one, all for the first event (it holds
    // back the later ones), and never the secret.
    let log = gw.log();
    assert!(!log.contains(SECRET), "the secret is in the log");
    let failed = receiver.failed();
    let count = |reason: &str| {
        log.lines()
            .filter(|l| l.contains(FAILED) && l.contains(reason))
            .count()
    };
    let answered = |mode: &str| failed.iter().filter(|f| f["mode"] == mode).count();
    assert_eq!(count("HTTP status 500"), answered("fail500"), "{failed:?}");
    assert_eq!(count("no answer within 5s"), answered("hang"), "{failed:?}");
    assert!(count("cannot connect") >= 1);
    for f in &failed {
        assert_eq!(f["id"], logged[0].as_str(), "{f}");
    }
    // Per run (the second starts with `webhook delivery on` again) and per event: attempts
    // 1, 2, 3, ... each followed by a doubling delay. The injected faults all hit the first
    // event (another could only see a stray failure, e.g. a keep-alive connection closed by
    // the receiver as it was reused).
    let runs: Vec<&str> = log.split("webhook delivery on").skip(1).collect();
    assert_eq!(runs.len(), 2, "{}", gw.log_tail(40));
    for run in runs {
        let lines: Vec<&str> = run.lines().filter(|l| l.contains(FAILED)).collect();
        assert!(!lines.is_empty(), "a run without failures");
        for line in &lines {
            assert!(line.contains(" WARN "), "{line}");
            if ["cannot connect", "HTTP status 500", "no answer within"]
                .iter()
                .any(|r| line.contains(r))
            {
                assert_eq!(field(line, "event_id"), Some(logged[0].as_str()), "{line}");
            }
        }
        for id in &logged {
            let steps: Vec<(Option<&str>, Option<&str>)> = lines
                .iter()
                .filter(|l| field(l, "event_id") == Some(id.as_str()))
                .map(|l| (field(l, "attempt"), field(l, "retry_in")))
                .collect();
            let expected: Vec<(String, String)> = (0..steps.len())
                .map(|i| ((i + 1).to_string(), format!("{}s", 1u64 << i)))
                .collect();
            let expected: Vec<(Option<&str>, Option<&str>)> = expected
                .iter()
                .map(|(a, d)| (Some(a.as_str()), Some(d.as_str())))
                .collect();
            assert_eq!(steps, expected, "attempts and delays of {id}");
        }
    }
}

/// How a [`BadEndpoint`] treats each connection.
#[derive(Debug, Clone)]
enum Misbehaviour {
    /// Reads the request, answers `307` to `location`.
    Redirect { location: String },
    /// Reads the request, answers `status` with a 50 MB body, written as fast as the peer
    /// takes it.
    HugeBody { status: u16 },
    /// Accepts the connection and never reads from it (held open until the test ends).
    NeverReads,
    /// Reads the request and answers `200`: where redirects point (it must get nothing).
    Trap,
}

const HUGE_BODY: usize = 50 * 1024 * 1024;

/// A loopback HTTP endpoint that misbehaves (threads, plain sockets).
struct BadEndpoint {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
}

impl BadEndpoint {
    fn start(how: Misbehaviour) -> BadEndpoint {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&connections);
        let held: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        std::thread::spawn(move || {
            for socket in listener.incoming() {
                let Ok(mut socket) = socket else { return };
                counted.fetch_add(1, Ordering::SeqCst);
                let how = how.clone();
                let held = Arc::clone(&held);
                std::thread::spawn(move || match how {
                    Misbehaviour::NeverReads => held.lock().unwrap().push(socket),
                    Misbehaviour::Redirect { location } => {
                        read_request(&mut socket);
                        let _ = write!(
                            socket,
                            "HTTP/1.1 307 Temporary Redirect\r\nLocation: {location}\r\n\
                             Content-Length: 0\r\n\r\n"
                        );
                    }
                    Misbehaviour::Trap => {
                        read_request(&mut socket);
                        let _ = socket.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
                    }
                    Misbehaviour::HugeBody { status } => {
                        read_request(&mut socket);
                        let head =
                            format!("HTTP/1.1 {status} X\r\nContent-Length: {HUGE_BODY}\r\n\r\n");
                        if socket.write_all(head.as_bytes()).is_err() {
                            return;
                        }
                        let chunk = vec![b'x'; 64 * 1024];
                        for _ in 0..HUGE_BODY / chunk.len() {
                            // Fails once the gateway has read its few KiB and hung up.
                            if socket.write_all(&chunk).is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        BadEndpoint { addr, connections }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}/{path}", self.addr)
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

/// Reads one request (head, then `Content-Length` bytes of body).
fn read_request(socket: &mut TcpStream) {
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let n = socket.read(&mut chunk).unwrap_or(0);
        if n == 0 {
            return;
        }
        buf.extend_from_slice(&chunk[..n]);
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        if buf.len() >= end + 4 + length {
            return;
        }
    }
}

/// Endpoints that redirect, flood, never read or refuse, for a while: the API keeps working,
/// memory stays bounded, and only failures and warnings come of it.
#[test]
fn bad_endpoints_neither_grow_memory_nor_stop_the_api() {
    let trap = BadEndpoint::start(Misbehaviour::Trap);
    let redirect = BadEndpoint::start(Misbehaviour::Redirect {
        location: trap.url("stolen"),
    });
    let huge_ok = BadEndpoint::start(Misbehaviour::HugeBody { status: 200 });
    let huge_fail = BadEndpoint::start(Misbehaviour::HugeBody { status: 500 });
    let never_reads = BadEndpoint::start(Misbehaviour::NeverReads);
    let refused = format!("http://127.0.0.1:{}/hook", free_port());

    // Several endpoints (URLs) per misbehaviour: each has its own delivery task.
    let mut endpoints = vec![refused];
    for i in 0..3 {
        for bad in [&redirect, &huge_ok, &huge_fail, &never_reads] {
            endpoints.push(bad.url(&format!("hook/{i}")));
        }
    }
    let mut config = String::from(
        "[api]\npost_requests_per_second = 1000.0\npost_burst = 1000\n\
         other_requests_per_second = 1000.0\nother_burst = 1000\n",
    );
    for url in &endpoints {
        config.push_str(&format!(
            "\n[[webhooks]]\nurl = \"{url}\"\nsecret = \"{SECRET}\"\n"
        ));
    }
    let config_path =
        testkit::scratch_dir("e2e_webhook_faults_bad_endpoints_config").join("onair.toml");
    std::fs::write(&config_path, config).unwrap();
    let gw = Gateway::start(
        Path::new(env!("CARGO_BIN_EXE_onair")),
        "e2e_webhook_faults_bad_endpoints",
        &["--config", config_path.to_str().unwrap()],
    );
    let http = gw.http.unwrap();
    let auth = Some((TEST_TOKEN_ID, TEST_TOKEN_SECRET));
    let create = || {
        let r = testkit::http::request(
            http,
            "POST",
            "/video/v1/live-streams",
            auth,
            Some(r#"{"playback_policies":["public"]}"#),
        )
        .expect("the API answers");
        assert_eq!(r.status, 201, "{}", r.text());
    };

    // Warm up (first attempts everywhere, the HTTP client, the database), then measure.
    for _ in 0..5 {
        create();
    }
    std::thread::sleep(Duration::from_secs(3));
    let baseline = gw.rss_kib();
    let mut peak = baseline;
    let started = Instant::now();
    let mut created = 5;
    while started.elapsed() < Duration::from_secs(25) {
        create();
        created += 1;
        let list =
            testkit::http::request(http, "GET", "/video/v1/live-streams?limit=5", auth, None)
                .expect("the API answers");
        assert_eq!(list.status, 200, "{}", list.text());
        peak = peak.max(gw.rss_kib());
        std::thread::sleep(Duration::from_millis(100));
    }
    let events: usize = gw.sql("SELECT count(*) FROM events")[0].parse().unwrap();
    assert!(events >= created, "{events} events for {created} streams");
    // Each event got its own 50 MB answer from every `huge_ok` endpoint, and was delivered
    // (200) nonetheless: all three get every event.
    let deadline = Instant::now() + Duration::from_secs(20);
    while huge_ok.connections() < 3 * events {
        assert!(
            Instant::now() < deadline,
            "{} of {} deliveries to the 50 MB endpoints\n{}",
            huge_ok.connections(),
            3 * events,
            gw.log_tail(40)
        );
        peak = peak.max(gw.rss_kib());
        std::thread::sleep(Duration::from_millis(100));
    }
    let grown_mib = peak.saturating_sub(baseline) / 1024;
    eprintln!(
        "RSS {baseline} KiB after warm-up, peak {peak} KiB; {events} events, \
         {} x 50 MB answers offered",
        huge_ok.connections() + huge_fail.connections()
    );
    assert!(
        grown_mib < 30,
        "RSS grew by {grown_mib} MiB ({baseline} -> {peak} KiB)"
    );

    // Failing endpoints were retried, with a warning per attempt; a redirect never followed.
    assert!(
        redirect.connections() >= 2 * 3,
        "{}",
        redirect.connections()
    );
    assert!(
        never_reads.connections() >= 2 * 3,
        "{}",
        never_reads.connections()
    );
    assert!(
        huge_fail.connections() >= 2 * 3,
        "{}",
        huge_fail.connections()
    );
    assert_eq!(trap.connections(), 0, "a redirect was followed");
    let log = gw.log();
    for reason in [
        "cannot connect",
        "HTTP status 307",
        "HTTP status 500",
        "no answer within 5s",
    ] {
        assert!(
            log.lines()
                .any(|l| l.contains(FAILED) && l.contains(reason) && l.contains(" WARN ")),
            "no warning with {reason:?}\n{}",
            gw.log_tail(40)
        );
    }
    assert!(!log.contains(SECRET), "the secret is in the log");
    // None of the failing endpoints moved on (their first event holds the rest back), the
    // 50 MB endpoints that answer 200 are at the end of the log.
    let last_seq = gw.sql("SELECT max(seq) FROM events")[0].clone();
    let cursors = gw.sql("SELECT delivered_seq FROM webhook_cursors");
    assert_eq!(cursors.len(), endpoints.len(), "{cursors:?}");
    assert_eq!(
        cursors.iter().filter(|c| **c == last_seq).count(),
        3,
        "{cursors:?}"
    );
}

/// `[[webhooks]]` without a secret (or with an empty one), or an empty `--webhook-secret`,
/// stops the start with a message naming the endpoint, before anything is bound; so does a
/// mistake on a secret's line, without quoting the line.
#[test]
fn webhook_config_mistakes_stop_the_start_without_showing_the_secret() {
    let dir = testkit::scratch_dir("e2e_webhook_faults_no_secret");
    let serve = |config: &str, args: &[&str]| {
        let path = dir.join("onair.toml");
        std::fs::write(&path, config).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_onair"))
            .arg("--data-dir")
            .arg(dir.join("data"))
            .arg("serve")
            .arg("--config")
            .arg(&path)
            .args(["--rtmp-addr", "off", "--rtmps-addr", "off"])
            .args(["--http-addr", "127.0.0.1:0"])
            .args(args)
            .env_remove("ONAIR_WEBHOOK_URL")
            .env_remove("ONAIR_WEBHOOK_SECRET")
            .output()
            .unwrap();
        assert!(!out.status.success(), "started with {config:?} {args:?}");
        assert!(
            !String::from_utf8_lossy(&out.stdout).contains("ready"),
            "it became ready"
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let e = serve("[[webhooks]]\nurl = \"http://127.0.0.1:9/hook\"\n", &[]);
    assert!(
        e.contains("[[webhooks]] #1") && e.contains("no secret"),
        "{e}"
    );
    let e = serve(
        "[[webhooks]]\nurl = \"http://127.0.0.1:9/a\"\nsecret = \"ok\"\n\n\
         [[webhooks]]\nurl = \"http://127.0.0.1:9/b?token=T0KEN\"\nsecret = \"\"\n",
        &[],
    );
    assert!(
        e.contains("[[webhooks]] #2") && e.contains("no secret"),
        "{e}"
    );
    assert!(
        !e.contains("T0KEN"),
        "the URL's query is in the message: {e}"
    );
    let e = serve(
        "",
        &[
            "--webhook-url",
            "http://127.0.0.1:9/hook",
            "--webhook-secret",
            "",
        ],
    );
    assert!(
        e.contains("no secret") || e.contains("needs --webhook-secret"),
        "{e}"
    );
    for line in [
        format!("secert = \"{SECRET}\""),
        format!("secret = \"{SECRET}"),
    ] {
        let e = serve(
            &format!("[[webhooks]]\nurl = \"http://127.0.0.1:9/hook\"\n{line}\n"),
            &[],
        );
        assert!(e.contains("invalid config") && e.contains("line 3"), "{e}");
        assert!(!e.contains(SECRET), "the secret was printed: {e}");
    }
}
