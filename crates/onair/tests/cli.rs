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

fn onair() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_onair"))
}

/// `onair --data-dir DIR serve ARGS` with every listener on loopback or off unless `args`
/// says otherwise, no access token given, and stdout and stderr piped.
fn serve(dir: &std::path::Path, args: &[&str]) -> std::process::Command {
    let mut command = onair();
    command
        .arg("--data-dir")
        .arg(dir)
        .arg("serve")
        .args(args)
        .env_remove("ONAIR_ACCESS_TOKEN")
        .env_remove("ONAIR_CONFIG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    command
}

/// The stdout lines of a started `serve` up to `ready` (panics if it exits or takes 30 s).
fn lines_until_ready(child: &mut std::process::Child) -> Vec<String> {
    let rx = testkit::stdout_lines(child);
    let mut lines = Vec::new();
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("not ready: {lines:?} {:?}", child.try_wait()));
        if line == "ready" {
            lines.push(line);
            return lines;
        }
        lines.push(line);
    }
}

/// The startup lines as docs/OPERATIONS.md quotes them.
fn startup_lines_in_the_guide() -> Vec<String> {
    let guide = include_str!("../../../docs/OPERATIONS.md");
    let start = guide
        .find("```\ndata directory")
        .expect("the guide quotes the startup lines");
    let block = &guide[start + 4..];
    block[..block.find("```").unwrap()]
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_failed_start_creates_no_token_and_the_startup_lines_are_the_guides() {
    let dir = testkit::scratch_dir("cli_startup_lines");
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy_addr = busy.local_addr().unwrap().to_string();
    let listeners = |metrics: &str| {
        [
            "--rtmp-addr",
            "127.0.0.1:0",
            "--srt-addr",
            "127.0.0.1:0",
            "--http-addr",
            "127.0.0.1:0",
            "--metrics-addr",
        ]
        .into_iter()
        .map(str::to_owned)
        .chain([metrics.to_owned()])
        .collect::<Vec<_>>()
    };
    let args = listeners(&busy_addr);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    // The metrics listener is bound last: every other one was bound, and still nothing is
    // printed and no token created.
    let out = serve(&dir, &args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "", "{stderr}");
    assert!(
        stderr.contains(&format!(
            "Error: metrics: cannot listen on {busy_addr} (--metrics-addr; `off` disables it): "
        )),
        "{stderr}"
    );
    // `onair access-tokens list` of the data directory.
    let tokens = || {
        let out = onair()
            .arg("--data-dir")
            .arg(&dir)
            .args(["access-tokens", "list"])
            .output()
            .unwrap();
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    assert_eq!(tokens(), json!([]));

    // On free ports: the token is created and printed, and the lines are the guide's.
    let args = listeners("127.0.0.1:0");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut child = serve(&dir, &args).spawn().unwrap();
    let lines = lines_until_ready(&mut child);
    let _ = child.kill();
    let _ = child.wait();
    let guide = startup_lines_in_the_guide();
    assert_eq!(lines.len(), guide.len(), "{lines:#?}\n{guide:#?}");
    let defaults = [
        ("rtmp", "0.0.0.0:5222"),
        ("srt", "0.0.0.0:6001"),
        ("http", "0.0.0.0:8080"),
        ("metrics", "127.0.0.1:9090"),
    ];
    for (line, quoted) in lines.iter().zip(&guide) {
        if let Some(prefix) = quoted.strip_suffix("Kq0...:p9X...") {
            let token = line
                .strip_prefix(prefix)
                .unwrap_or_else(|| panic!("{line}"));
            assert!(token.split_once(':').is_some(), "{line}");
            continue;
        }
        let mut line = line.replace(&dir.display().to_string(), "./data");
        for (name, default) in defaults {
            if let Some(rest) = line.strip_prefix(&format!("{name} listening on ")) {
                let addr = rest.split_whitespace().next().unwrap().to_owned();
                line = line.replace(&addr, default);
            }
        }
        assert_eq!(&line, quoted);
    }
    let tokens = tokens();
    assert_eq!(tokens.as_array().unwrap().len(), 1, "{tokens}");
}

#[test]
fn json_logs_are_one_object_per_line_with_span_fields() {
    let mut gw = Gateway::start(
        std::path::Path::new(env!("CARGO_BIN_EXE_onair")),
        "cli_json_logs",
        &["--log-format", "json"],
    );
    // Not RTMP on the RTMP port: logged inside the connection's span.
    let mut peer = std::net::TcpStream::connect(gw.rtmp.unwrap()).unwrap();
    std::io::Write::write_all(&mut peer, b"GET / HTTP/1.1\r\n\r\n").unwrap();
    let closed = "closed a connection that is not RTMP";
    let deadline = Instant::now() + Duration::from_secs(10);
    while !gw.log().contains(closed) {
        assert!(Instant::now() < deadline, "{}", gw.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(gw.stop().success());
    let log = gw.log();
    assert!(!log.contains('\u{1b}'), "{log}");
    let events: Vec<Value> = log
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    for event in &events {
        assert!(
            event["timestamp"].is_string()
                && event["level"].is_string()
                && event["target"].is_string()
                && event["fields"]["message"].is_string(),
            "{event}"
        );
    }
    let find = |message: &str| {
        events
            .iter()
            .find(|e| e["fields"]["message"] == message)
            .unwrap_or_else(|| panic!("no {message:?} in {log}"))
    };
    // A startup message, with its fields.
    let keys = find("signing keys loaded");
    assert_eq!(keys["level"], "INFO");
    assert_eq!(keys["fields"]["signing_keys"], 0);
    // The connection's span and its fields.
    let event = find(closed);
    assert_eq!(event["target"], "rtmp::connection");
    assert_eq!(event["span"]["name"], "rtmp_connection");
    assert_eq!(event["span"]["protocol"], "rtmp");
    assert_eq!(
        event["span"]["peer"],
        peer.local_addr().unwrap().to_string()
    );
    assert_eq!(event["spans"][0]["name"], "rtmp_connection");
    find("stopped");
}

#[test]
fn text_logs_have_no_colour_when_stderr_is_not_a_terminal() {
    let mut gw = start("cli_text_logs");
    assert!(gw.stop().success());
    let log = gw.log();
    assert!(log.contains(" INFO ") && log.contains("stopped"), "{log}");
    assert!(!log.contains('\u{1b}'), "{log}");
}

#[test]
fn top_level_help_lists_the_flags_of_serve() {
    let out = onair().arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{help}");
    for flag in [
        "--config",
        "--data-dir",
        "--rtmp-addr",
        "--rtmps-addr",
        "--srt-addr",
        "--http-addr",
        "--metrics-addr",
        "--tls-cert",
        "--tls-key",
        "--dev-tls",
        "--access-token",
        "--webhook-url",
        "--webhook-secret",
        "--log-format",
    ] {
        assert!(help.contains(flag), "{flag} missing from:\n{help}");
    }
    assert!(help.contains("SRT ingest"), "{help}");
}

#[test]
fn api_options_go_after_the_command_and_update_sends_meta() {
    let gw = start("cli_update_meta");
    let url = format!("http://{}", gw.http.unwrap());
    let token = format!(
        "{}:{}",
        testkit::gateway::TEST_TOKEN_ID,
        testkit::gateway::TEST_TOKEN_SECRET
    );
    // The environment points nowhere: only the options reach the server.
    let cli = |args: &[&str]| {
        let out = onair()
            .args(args)
            .env("ONAIR_API_URL", "http://127.0.0.1:9")
            .env_remove("ONAIR_ACCESS_TOKEN")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "onair {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    let created = cli(&[
        "live-streams",
        "create",
        "--title",
        "First",
        "--api-url",
        &url,
        "--access-token",
        &token,
    ]);
    let id = created["id"].as_str().unwrap();
    assert_eq!(created["meta"], json!({ "title": "First" }));
    let updated = cli(&[
        "live-streams",
        "update",
        id,
        "--title",
        "Friday show",
        "--external-id",
        "ext-1",
        "--reconnect-window",
        "30",
        "--passthrough",
        "p",
        "--api-url",
        &url,
        "--access-token",
        &token,
    ]);
    assert_eq!(
        updated["meta"],
        json!({ "title": "Friday show", "external_id": "ext-1" })
    );
    assert_eq!(updated["reconnect_window"], 30);
    assert_eq!(updated["passthrough"], "p");
    assert_eq!(api_data(&gw, &format!("/live-streams/{id}")), updated);
    // Before the command works as well.
    let got = cli(&[
        "live-streams",
        "--api-url",
        &url,
        "--access-token",
        &token,
        "get",
        id,
    ]);
    assert_eq!(got, updated);
}

#[test]
fn listener_addresses_take_host_names() {
    let dir = testkit::scratch_dir("cli_host_names");
    let mut child = serve(
        &dir,
        &[
            "--rtmp-addr",
            "off",
            "--srt-addr",
            "off",
            "--metrics-addr",
            "off",
            "--http-addr",
            "localhost:0",
            "--access-token",
            "t:0123456789abcdef",
        ],
    )
    .spawn()
    .unwrap();
    let lines = lines_until_ready(&mut child);
    let http: std::net::SocketAddr = lines
        .iter()
        .find_map(|l| l.strip_prefix("http listening on "))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("{lines:?}"))
        .parse()
        .unwrap();
    assert!(http.ip().is_loopback(), "{http}");
    let r = request(
        http,
        "GET",
        "/video/v1/live-streams",
        Some(("t", "0123456789abcdef")),
        None,
    )
    .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(r.status, 200);
}

#[test]
fn setting_errors_name_the_setting_as_it_was_given() {
    let dir = testkit::scratch_dir("cli_setting_errors");
    // Every listener but RTMP off.
    let off = [
        "--srt-addr",
        "off",
        "--http-addr",
        "off",
        "--metrics-addr",
        "off",
        "--rtmps-addr",
        "off",
    ];
    let fails = |command: &mut std::process::Command| {
        let out = command.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(!String::from_utf8_lossy(&out.stdout).contains("ready"));
        stderr
    };
    // From the file: the TOML key.
    let config = dir.join("onair.toml");
    std::fs::write(&config, "[listeners]\nrtmp = \"nowhere\"\n").unwrap();
    let stderr = fails(serve(&dir, &off).env("ONAIR_CONFIG", &config));
    assert!(
        stderr.contains("[listeners] rtmp: \"nowhere\" is not an address")
            && !stderr.contains("--rtmp-addr"),
        "{stderr}"
    );
    // From the environment: the variable.
    let stderr = fails(serve(&dir, &off).env("ONAIR_RTMP_ADDR", "nowhere"));
    assert!(
        stderr.contains("ONAIR_RTMP_ADDR: \"nowhere\"") && !stderr.contains("--rtmp-addr"),
        "{stderr}"
    );
    // From a flag: the flag.
    let stderr = fails(serve(&dir, &off).args(["--rtmp-addr", "nowhere"]));
    assert!(stderr.contains("--rtmp-addr: \"nowhere\""), "{stderr}");
    // A host name that does not resolve.
    let stderr = fails(serve(&dir, &off).args(["--rtmp-addr", "no-such-host.invalid:5222"]));
    assert!(
        stderr.contains("--rtmp-addr: \"no-such-host.invalid:5222\""),
        "{stderr}"
    );

    // A missing certificate: its cause once, on one line.
    let missing = dir.join("missing.pem");
    let missing = missing.to_str().unwrap();
    let stderr = fails(serve(&dir, &off[..6]).args([
        "--rtmp-addr",
        "off",
        "--rtmps-addr",
        "127.0.0.1:0",
        "--tls-cert",
        missing,
        "--tls-key",
        missing,
    ]));
    assert!(
        stderr.contains(&format!(
            "Error: loading the RTMPS certificate: cannot read {missing}: No such file or directory"
        )),
        "{stderr}"
    );
    assert_eq!(stderr.matches("No such file").count(), 1, "{stderr}");
}
