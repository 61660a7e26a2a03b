//! OnAir's own OpenAPI document (`GET /video/v1/openapi.json`) against the real `onair
//! serve`, with the property-based API tester schemathesis (pinned in
//! `tests/conformance/requirements.txt`, installed by `.ci/run` into `tests/conformance/.venv`,
//! or by this test when missing).
//!
//! schemathesis generates valid and invalid requests for every operation of the document
//! (its example, coverage, fuzzing and stateful phases, following the document's links from
//! a created resource to the routes that use it) and checks every answer: no server error,
//! a documented status code, content type and headers, a body that matches the documented
//! schema, invalid data refused and valid data accepted. The run is bounded by
//! [`MAX_EXAMPLES`] per operation and a fixed seed, so that a failure reproduces.
//!
//! Before the run, one short broadcast makes an asset, so that the asset routes have one to
//! work on. The rate limits are off for the run (they are tested in crates/api); the webhook
//! event stream is left out (an endless `text/event-stream`, tested in e2e_sse.rs).
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use testkit::encoder::Encoder;
use testkit::gateway::{Gateway, TEST_TOKEN_ID, TEST_TOKEN_SECRET};

/// Test cases per operation and phase: a run of about a minute on a 2-core machine.
const MAX_EXAMPLES: &str = "100";
/// Fixed, so that a failure found in CI reproduces locally.
const SEED: &str = "20261126";

#[test]
fn schemathesis_finds_no_server_error_and_no_schema_violation() {
    let python = testkit::conformance_python();
    let schemathesis = python.with_file_name("schemathesis");
    assert!(
        schemathesis.exists(),
        "{} missing: pip install -r tests/conformance/requirements.txt",
        schemathesis.display()
    );
    let dir = testkit::scratch_dir("api_conformance_run");
    let config = dir.join("onair.toml");
    std::fs::write(
        &config,
        // Rate limits off, and the failed-login limit too: schemathesis checks that missing
        // and invalid credentials get 401, hundreds of times from one address.
        "[api]\npost_requests_per_second = 0\nother_requests_per_second = 0\n\
         limit_failed_logins = false\n",
    )
    .unwrap();
    let gw = Gateway::start(
        Path::new(env!("CARGO_BIN_EXE_onair")),
        "api_conformance",
        &["--config", config.to_str().unwrap()],
    );
    let base = format!("http://{}", gw.http.unwrap());

    // One recorded broadcast: an asset for the asset routes.
    let (status, created) = gw.api(
        "POST",
        "/live-streams",
        Some(r#"{"playback_policies": ["public"], "reconnect_window": 0}"#),
    );
    assert_eq!(status, 201, "{created}");
    let id = created["data"]["id"].as_str().unwrap();
    let key = created["data"]["stream_key"].as_str().unwrap();
    let mut encoder =
        Encoder::ffmpeg_720p(&format!("rtmp://{}/app/{key}", gw.rtmp.unwrap()), Some(3));
    let done = encoder.wait_timeout(Duration::from_secs(20));
    assert!(
        done.is_some_and(|s| s.success()),
        "ffmpeg: {done:?} {}",
        encoder.stderr()
    );
    gw.wait_status(id, "idle", Duration::from_secs(15));
    let (_, assets) = gw.api("GET", "/assets", None);
    assert_eq!(assets["data"].as_array().map(Vec::len), Some(1), "{assets}");

    let har = dir.join("requests.har");
    let settings = testkit::workspace_root().join("tests/conformance/schemathesis.toml");
    let out = Command::new(&schemathesis)
        .arg("--config-file")
        .arg(&settings)
        .arg("run")
        .arg(format!("{base}{}", api::OPENAPI_PATH))
        .args(["--url", &base])
        .args(["--auth", &format!("{TEST_TOKEN_ID}:{TEST_TOKEN_SECRET}")])
        .args(["--checks", "all"])
        .args(["--max-examples", MAX_EXAMPLES, "--seed", SEED])
        .args(["--workers", "2", "--request-timeout", "10"])
        .args(["--exclude-path", "/system/v1/webhook-events/stream"])
        .args(["--generation-database", "none", "--no-color"])
        .args(["--report", "har", "--report-har-path"])
        .arg(&har)
        .current_dir(&dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    std::fs::write(dir.join("schemathesis.txt"), stdout.as_bytes()).unwrap();
    assert!(
        out.status.success(),
        "schemathesis found failures (reproduce with the same seed, {SEED}):\n{stdout}\n{}\n\
         server log (tail):\n{}",
        String::from_utf8_lossy(&out.stderr),
        gw.log_tail(10)
    );

    // What ran: every operation but the event stream, and the requests it sent.
    let tested = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("Tested: "))
        .and_then(|n| n.trim().parse::<usize>().ok());
    let requests: Value = serde_json::from_slice(&std::fs::read(&har).unwrap()).unwrap();
    let requests = requests["log"]["entries"].as_array().map_or(0, Vec::len);
    eprintln!("schemathesis: {tested:?} operations, {requests} requests, no failure");
    let documented = serde_json::from_str::<Value>(api::openapi_document()).unwrap()["paths"]
        .as_object()
        .unwrap()
        .values()
        .map(|item| item.as_object().unwrap().len())
        .sum::<usize>();
    assert_eq!(tested, Some(documented - 1), "{stdout}");
    assert!(requests > 1000, "only {requests} requests:\n{stdout}");
}
