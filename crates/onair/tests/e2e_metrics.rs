//! End to end: the metrics listener of the real `onair serve`. A broadcast from ffmpeg over
//! RTMP shows up in `/metrics` while it is live (its series present, its counters moving)
//! and is gone from it once the stream is idle; every scrape passes `promtool check
//! metrics`; `/healthz` and `/readyz` answer, and `/readyz` says 503, naming the check, when
//! the data directory cannot take a write.
#![allow(clippy::unwrap_used)]

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use testkit::gateway::Gateway;
use testkit::http::get;
use testkit::{fixture, require_tool, wait_for};

fn start(name: &str) -> Gateway {
    Gateway::start(Path::new(env!("CARGO_BIN_EXE_onair")), name, &[])
}

fn scrape(gw: &Gateway) -> String {
    let r = get(gw.metrics.expect("the metrics listener is on"), "/metrics").unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.header("content-type")
            .is_some_and(|t| t.starts_with("text/plain; version=0.0.4")),
        "{:?}",
        r.header("content-type")
    );
    r.text()
}

/// The value of the series `name{labels}` (labels as rendered, sorted by name), if present.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.trim().parse().unwrap())
}

/// `promtool check metrics` on a scrape: a missing promtool fails the test (never skipped).
fn promtool_check(text: &str) {
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = child.unwrap_or_else(|e| {
        panic!(
            "promtool is required by this test ({e}): install it (apt-get install -y prometheus) \
             or run .ci/run, which installs everything the tests need"
        )
    });
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool check metrics: {said}\n--- scrape ---\n{text}"
    );
}

/// The first URI a playlist lists, as a path resolved against the playlist's own path.
fn first_uri(playlist: &str, playlist_path: &str) -> String {
    let uri = playlist
        .lines()
        .find(|l| !l.starts_with('#') && !l.is_empty())
        .unwrap();
    if uri.starts_with('/') {
        return uri.to_owned();
    }
    let dir = playlist_path.rsplit_once('/').map_or("", |(dir, _)| dir);
    format!("{dir}/{uri}")
}

#[test]
fn a_broadcast_shows_in_metrics_while_live_and_is_gone_once_idle() {
    require_tool("ffmpeg");
    let gw = start("e2e_metrics_broadcast");
    let stream = gw.create_stream(&["--reconnect-window", "0"]);
    let id = &stream.id;

    let before = scrape(&gw);
    promtool_check(&before);
    assert!(!before.contains(id.as_str()), "{before}");
    for name in [
        "onair_build_info{",
        "process_resident_memory_bytes ",
        "process_cpu_seconds_total ",
        "onair_webhook_backlog_age_seconds 0",
    ] {
        assert!(before.contains(name), "{name} missing:\n{before}");
    }

    let rtmp = gw.rtmp.unwrap();
    // A wrong key first: refused by admission, counted by reason.
    let refused = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "quiet", "-re", "-i"])
        .arg(fixture("avc_aac_720p30.flv"))
        .args(["-t", "1", "-c", "copy", "-f", "flv"])
        .arg(format!("rtmp://{rtmp}/app/not-a-key"))
        .status()
        .unwrap();
    assert!(!refused.success(), "a wrong key was accepted");
    let mut encoder = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-re", "-stream_loop", "-1", "-i"])
        .arg(fixture("avc_aac_720p30.flv"))
        .args(["-t", "10", "-c", "copy", "-f", "flv"])
        .arg(format!("rtmp://{rtmp}/app/{}", stream.key))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();

    let segments = format!("onair_live_stream_segments_written_total{{live_stream_id=\"{id}\"}}");
    wait_for("a segment in the metrics", Duration::from_secs(30), || {
        value(&scrape(&gw), &segments).filter(|&n| n >= 1.0)
    });
    // A player's requests and an API call, to be counted.
    let http = gw.http.unwrap();
    let master = get(http, &format!("/{}.m3u8", stream.playback_id)).unwrap();
    assert_eq!(master.status, 200);
    let media_path = first_uri(&master.text(), &format!("/{}.m3u8", stream.playback_id));
    let media = get(http, &media_path).unwrap();
    assert_eq!(media.status, 200, "{media_path}");
    let segment_path = first_uri(&media.text(), &media_path);
    let segment = get(http, &segment_path).unwrap();
    assert_eq!(segment.status, 200, "{segment_path}");
    let (status, _) = gw.api("GET", &format!("/live-streams/{id}"), None);
    assert_eq!(status, 200);

    let live = scrape(&gw);
    promtool_check(&live);
    let per_stream = |name: &str| format!("{name}{{live_stream_id=\"{id}\"}}");
    for name in [
        "onair_live_stream_frames_received_total",
        "onair_live_stream_ingest_bytes_total",
        "onair_live_stream_segments_written_total",
        "onair_live_stream_ingest_rate_bytes_per_second",
    ] {
        let v = value(&live, &per_stream(name));
        assert!(v.is_some_and(|v| v > 0.0), "{name}: {v:?}\n{live}");
    }
    assert!(
        value(
            &live,
            &per_stream("onair_live_stream_last_segment_age_seconds")
        )
        .is_some_and(|age| age < 30.0),
        "{live}"
    );
    assert_eq!(
        value(
            &live,
            &format!("onair_live_stream_state{{live_stream_id=\"{id}\",state=\"active\"}}")
        ),
        Some(1.0),
        "{live}"
    );
    assert_eq!(
        value(
            &live,
            &format!(
                "onair_live_stream_frames_dropped_total{{live_stream_id=\"{id}\",reason=\"timestamp\"}}"
            )
        ),
        Some(0.0),
        "{live}"
    );
    assert_eq!(
        value(&live, "onair_listener_connections_open{listener=\"rtmp\"}"),
        Some(1.0),
        "{live}"
    );
    assert!(
        value(
            &live,
            "onair_listener_connections_accepted_total{listener=\"rtmp\"}"
        )
        .is_some_and(|n| n >= 1.0),
        "{live}"
    );
    assert!(
        value(
            &live,
            "onair_hls_requests_total{kind=\"multivariant\",status=\"200\"}"
        ) == Some(1.0)
            && value(
                &live,
                "onair_hls_requests_total{kind=\"media\",status=\"200\"}"
            ) == Some(1.0)
            && value(
                &live,
                "onair_hls_sent_bytes_total{kind=\"media\",status=\"200\"}"
            )
            .is_some_and(|b| b > 0.0)
            && value(
                &live,
                "onair_hls_sent_bytes_total{kind=\"segment\",status=\"200\"}"
            ) == Some(segment.body.len() as f64),
        "{live}"
    );
    // By route template: the id is never a label value of the API's series.
    assert!(
        live.lines().any(|l| l.starts_with(
            "onair_api_requests_total{method=\"GET\",route=\"/video/v1/live-streams/{"
        ) && l.contains("status=\"200\"")),
        "{live}"
    );
    assert_eq!(
        value(
            &live,
            "onair_listener_connections_refused_total{listener=\"rtmp\",reason=\"unknown_stream_key\"}"
        ),
        Some(1.0),
        "{live}"
    );
    assert!(!live.contains("not-a-key"), "{live}");
    for line in live.lines().filter(|l| l.contains(id.as_str())) {
        assert!(
            line.contains(&format!("live_stream_id=\"{id}\"")),
            "the id outside its label: {line}"
        );
    }
    assert!(
        !live.contains(&stream.key),
        "the stream key is in the metrics"
    );

    // The encoder stops; with no reconnect window the stream goes idle and its series go.
    let deadline = Instant::now() + Duration::from_secs(30);
    while encoder.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "ffmpeg did not finish");
        std::thread::sleep(Duration::from_millis(200));
    }
    gw.wait_status(id, "idle", Duration::from_secs(30));
    wait_for("the stream's series to go", Duration::from_secs(10), || {
        (!scrape(&gw).contains(id.as_str())).then_some(())
    });
    let after = scrape(&gw);
    promtool_check(&after);
    assert_eq!(
        value(&after, "onair_listener_connections_open{listener=\"rtmp\"}"),
        Some(0.0),
        "{after}"
    );
    // Listener and HTTP counters stay.
    assert!(
        value(
            &after,
            "onair_listener_connections_accepted_total{listener=\"rtmp\"}"
        )
        .is_some_and(|n| n >= 1.0),
        "{after}"
    );
}

#[test]
fn health_and_readiness() {
    let gw = start("e2e_metrics_health");
    let metrics = gw.metrics.unwrap();
    let health = get(metrics, "/healthz").unwrap();
    assert_eq!((health.status, health.text().as_str()), (200, "ok\n"));
    let ready = get(metrics, "/readyz").unwrap();
    assert_eq!(
        (ready.status, ready.text().as_str()),
        (200, "ready\n"),
        "{}",
        ready.text()
    );

    // The data directory cannot take a write. Tests run as root, which ignores mode bits
    // (chmod 0500 would change nothing), so the probe's path is made a directory: creating
    // a file there fails for root too, as a write to a read-only or full file system would.
    let probe = gw.data_dir.join(".readyz-probe");
    std::fs::create_dir(&probe).unwrap();
    std::fs::write(probe.join("keep"), b"").unwrap();
    let ready = get(metrics, "/readyz").unwrap();
    let body = ready.text();
    assert_eq!(ready.status, 503, "{body}");
    assert!(
        body.starts_with("not ready\n") && body.contains("store: cannot write"),
        "{body}"
    );
    assert!(body.contains(".readyz-probe"), "{body}");
    // Only the failing check is named; the process is still up.
    assert!(
        !body.contains("listeners:") && !body.contains("disk:"),
        "{body}"
    );
    assert_eq!(get(metrics, "/healthz").unwrap().status, 200);

    std::fs::remove_dir_all(&probe).unwrap();
    let ready = get(metrics, "/readyz").unwrap();
    assert_eq!(ready.status, 200, "{}", ready.text());
    assert!(
        !probe.exists(),
        "the probe file is removed after each check"
    );
}

/// A listener that cannot bind stops the start with a non-zero exit and a message naming
/// the address and the flag, before `ready`.
#[test]
fn a_busy_metrics_port_stops_the_start_naming_the_flag() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap();
    let dir = testkit::scratch_dir("e2e_metrics_busy_port");
    let out = Command::new(env!("CARGO_BIN_EXE_onair"))
        .arg("--data-dir")
        .arg(&dir)
        .arg("serve")
        .args([
            "--rtmp-addr",
            "off",
            "--rtmps-addr",
            "off",
            "--srt-addr",
            "off",
        ])
        .args(["--http-addr", "off", "--metrics-addr", &addr.to_string()])
        .args(["--access-token", "test-token:test-secret-0123456789"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        // The flag it was set with.
        stderr.contains(&format!(
            "metrics: cannot listen on {addr} (--metrics-addr; `off` disables it)"
        )),
        "{stderr}"
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains("ready"));
}
