//! End to end: reloading and draining the real `onair serve` with signals.
//!
//! - `SIGHUP` after the certificate files were replaced: a new RTMPS handshake (a rustls
//!   client in the test, which records the certificate it is shown) gets the new certificate,
//!   while an ffmpeg publisher that connected over RTMPS before keeps streaming: its broadcast
//!   stays active, segments keep coming, no `disconnected` event is written.
//! - `SIGHUP` with an unparseable file, a bad value, a broken or mismatched key: refused with
//!   a log line, the process keeps running with the old certificate; a valid file then
//!   reloads (webhook endpoints, an API rate limit and an RTMP limit, each seen working).
//! - `SIGUSR1` (drain) with one ffmpeg publisher live: `/readyz` says draining, a second
//!   publisher (RTMP and SRT) is refused, the first keeps streaming and its playback works,
//!   and when it stops (reconnect window 0) the process exits with status 0; with a drain
//!   deadline, it exits (0) at the deadline with the broadcast still running.
//! - `--reload-on-change`: a renewed certificate is picked up without a signal.
//! - `[log] filter` changes on SIGHUP when `RUST_LOG` is not set.
#![allow(clippy::unwrap_used)]

use std::io::Read as _;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use testkit::encoder::Encoder;
use testkit::gateway::Gateway;
use testkit::http::get;
use testkit::{require_tool, wait_for};

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_onair"))
}

/// A certificate for `name` and its key, as PEM files `DIR/NAME.crt` and `DIR/NAME.key`;
/// returns the certificate's DER.
fn make_certificate(dir: &Path, name: &str) -> Vec<u8> {
    let made = rcgen::generate_simple_self_signed(vec![name.to_owned()]).unwrap();
    std::fs::write(dir.join(format!("{name}.crt")), made.cert.pem()).unwrap();
    std::fs::write(
        dir.join(format!("{name}.key")),
        made.key_pair.serialize_pem(),
    )
    .unwrap();
    made.cert.der().to_vec()
}

/// Installs certificate `name` as the files the configuration names (`cert.pem`,
/// `key.pem`), each replaced by a rename as a certificate manager does.
fn install_certificate(dir: &Path, name: &str) {
    for (from, to) in [("crt", "cert.pem"), ("key", "key.pem")] {
        let tmp = dir.join(format!("{to}.tmp"));
        std::fs::copy(dir.join(format!("{name}.{from}")), &tmp).unwrap();
        std::fs::rename(&tmp, dir.join(to)).unwrap();
    }
}

/// A directory with two certificates, `old.example` (installed) and `new.example`; their DER.
fn certificates(name: &str) -> (PathBuf, Vec<u8>, Vec<u8>) {
    let dir = testkit::scratch_dir(name);
    let old = make_certificate(&dir, "old.example");
    let new = make_certificate(&dir, "new.example");
    install_certificate(&dir, "old.example");
    (dir, old, new)
}

/// Asserts that the server closes `stream` (without sending anything) within 5 s.
fn assert_closed(mut stream: TcpStream, what: &str) {
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut byte = [0u8; 1];
    match stream.read(&mut byte) {
        Ok(0) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        other => panic!("{what} was not closed: {other:?}"),
    }
}

/// Accepts any server certificate and keeps the one it was shown: the test compares it with
/// the files it wrote. Signatures are still checked, so the server proved it holds the key.
#[derive(Debug)]
struct RecordingVerifier {
    provider: Arc<CryptoProvider>,
    seen: Mutex<Option<Vec<u8>>>,
}

impl ServerCertVerifier for RecordingVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        *self.seen.lock().unwrap() = Some(end_entity.to_vec());
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Completes a TLS handshake with the RTMPS listener and returns the certificate it
/// presented (DER).
fn presented_certificate(rtmps: SocketAddr) -> Vec<u8> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = Arc::new(RecordingVerifier {
        provider: Arc::clone(&provider),
        seen: Mutex::new(None),
    });
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(verifier.clone())
        .with_no_client_auth();
    let mut connection =
        rustls::ClientConnection::new(Arc::new(config), "localhost".try_into().unwrap()).unwrap();
    let mut tcp = TcpStream::connect_timeout(&rtmps, Duration::from_secs(5)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    while connection.is_handshaking() {
        connection.complete_io(&mut tcp).unwrap();
    }
    let seen = verifier.seen.lock().unwrap().take();
    seen.expect("the server presented no certificate")
}

/// A gateway with `--config DIR/onair.toml` (written from `config`), certificate files
/// `DIR/cert.pem` and `DIR/key.pem` named in it.
fn start_with_config(name: &str, config: &str) -> (Gateway, PathBuf) {
    let dir = testkit::scratch_dir(&format!("{name}-config"));
    std::fs::write(dir.join("onair.toml"), config).unwrap();
    let config_path = dir.join("onair.toml");
    let gw = Gateway::start(binary(), name, &["--config", config_path.to_str().unwrap()]);
    (gw, dir)
}

fn tls_config(dir: &Path, extra: &str) -> String {
    format!(
        "[tls]\ncert = \"{}\"\nkey = \"{}\"\n{extra}",
        dir.join("cert.pem").display(),
        dir.join("key.pem").display()
    )
}

/// The media playlist's last segment URI (`None` before the first one).
fn last_segment(gw: &Gateway, playback_id: &str) -> Option<String> {
    let r = get(gw.http.unwrap(), &format!("/{playback_id}/stream.m3u8")).ok()?;
    if r.status != 200 {
        return None;
    }
    r.text()
        .lines()
        .rfind(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(str::to_owned)
}

/// Waits until the playlist's last segment is another one than `after`.
fn next_segment(gw: &Gateway, playback_id: &str, after: Option<&str>) -> String {
    wait_for("a new segment", Duration::from_secs(20), || {
        last_segment(gw, playback_id).filter(|s| Some(s.as_str()) != after)
    })
}

#[test]
fn sighup_replaces_the_rtmps_certificate_without_dropping_a_publisher() {
    let (dir, old, new) = certificates("e2e_reload_cert-files");
    let (gw, _config_dir) = start_with_config("e2e_reload_cert", &tls_config(&dir, ""));
    let rtmps = gw.rtmps.expect("RTMPS is on");
    assert_eq!(presented_certificate(rtmps), old);

    // An RTMPS publisher, live.
    let stream = gw.create_stream(&[]);
    let mut encoder = Encoder::ffmpeg_720p(&format!("rtmps://{rtmps}/app/{}", stream.key), None);
    gw.wait_status(&stream.id, "active", Duration::from_secs(20));
    let before = next_segment(&gw, &stream.playback_id, None);

    install_certificate(&dir, "new.example");
    gw.signal("HUP");
    gw.wait_log("RTMPS certificate replaced", Duration::from_secs(10));
    assert_eq!(presented_certificate(rtmps), new);

    // The publisher that connected with the old certificate never noticed.
    let after = next_segment(&gw, &stream.playback_id, Some(&before));
    next_segment(&gw, &stream.playback_id, Some(&after));
    assert!(
        encoder.try_wait().is_none(),
        "ffmpeg stopped: {}",
        encoder.stderr()
    );
    assert_eq!(gw.status(&stream.id), "active");
    let events = gw.event_log(&stream.id, "event_type");
    assert!(
        !events.iter().any(|e| e.ends_with("disconnected")),
        "{events:?}"
    );
    // A new RTMPS publisher is served with the new certificate (and admitted as usual).
    assert_eq!(presented_certificate(rtmps), new);
    encoder.kill();
}

#[test]
fn invalid_reloads_are_refused_and_the_old_configuration_stays() {
    let (dir, old, new) = certificates("e2e_reload_invalid-files");
    let (mut gw, config_dir) = start_with_config("e2e_reload_invalid", &tls_config(&dir, ""));
    let config = config_dir.join("onair.toml");
    let rtmps = gw.rtmps.unwrap();
    let metrics = gw.metrics.unwrap();
    let mut refusals = 0;
    let mut refused = |gw: &Gateway, why: &str| {
        refusals += 1;
        gw.signal("HUP");
        let deadline = Instant::now() + Duration::from_secs(10);
        while gw.log().matches("reload refused").count() < refusals {
            assert!(
                Instant::now() < deadline,
                "{why}: not refused\n{}",
                gw.log_tail(30)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(gw.log().contains(why), "{why}\n{}", gw.log_tail(30));
    };

    // Not TOML.
    std::fs::write(&config, "[tls\ncert = ").unwrap();
    refused(&gw, "line 1");
    // TOML, but a bad value.
    std::fs::write(&config, tls_config(&dir, "[hls]\nlive_window = 0\n")).unwrap();
    refused(&gw, "[hls] live_window must be at least 1");
    // A valid file, but the key is not a key.
    std::fs::write(&config, tls_config(&dir, "")).unwrap();
    std::fs::write(dir.join("key.pem"), "not a key\n").unwrap();
    refused(&gw, "holds no PEM private key");
    // The new certificate with the old key: they do not match.
    std::fs::copy(dir.join("new.example.crt"), dir.join("cert.pem")).unwrap();
    std::fs::copy(dir.join("old.example.key"), dir.join("key.pem")).unwrap();
    refused(&gw, "does not belong to the certificate");

    // Still serving, with the old certificate.
    assert!(gw.wait_exit(Duration::ZERO).is_none(), "the server exited");
    assert_eq!(get(metrics, "/healthz").unwrap().status, 200);
    assert_eq!(get(metrics, "/readyz").unwrap().status, 200);
    assert_eq!(presented_certificate(rtmps), old);

    // A valid file and a matching pair: reloaded, webhooks included, what needs a restart
    // is named.
    install_certificate(&dir, "new.example");
    std::fs::write(
        &config,
        tls_config(
            &dir,
            "[http]\nmax_connections = 7\nsend_buffer = 131072\n\n[api]\nother_requests_per_second = 0.01\nother_burst = 2\n\n\
             [rtmp]\nmax_unadmitted_per_address = 1\n\n\
             [[webhooks]]\nurl = \"http://127.0.0.1:9/hook\"\nsecret = \"s\"\n",
        ),
    )
    .unwrap();
    gw.signal("HUP");
    gw.wait_log("configuration reloaded", Duration::from_secs(10));
    let log = gw.log();
    assert!(
        log.contains("webhook endpoints reloaded"),
        "{}",
        gw.log_tail(30)
    );
    assert!(
        log.contains("only applied at the next restart") && log.contains("[http] send_buffer"),
        "{}",
        gw.log_tail(30)
    );
    assert_eq!(presented_certificate(rtmps), new);
    // The API's new rate limit applies to the next requests: a burst of 2 GETs.
    assert!(log.contains("[api] limits reloaded"), "{}", gw.log_tail(30));
    let statuses: Vec<u16> = (0..3)
        .map(|_| gw.api("GET", "/live-streams", None).0)
        .collect();
    assert_eq!(statuses, [200, 200, 429]);
    // The RTMP listener's new limit applies to the next connections: one unadmitted
    // connection per address, so a second one closes the first.
    assert!(
        log.contains("[rtmp]/[ingest] reloaded"),
        "{}",
        gw.log_tail(30)
    );
    let rtmp = gw.rtmp.unwrap();
    let first = TcpStream::connect(rtmp).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let _second = TcpStream::connect(rtmp).unwrap();
    assert_closed(first, "the first RTMP connection");
    // The HTTP listener's new connection cap: 7 open, the 8th is closed at once.
    assert!(
        log.contains("[http] limits reloaded"),
        "{}",
        gw.log_tail(30)
    );
    let http = gw.http.unwrap();
    let held: Vec<TcpStream> = (0..7).map(|_| TcpStream::connect(http).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(200));
    assert_closed(TcpStream::connect(http).unwrap(), "the 8th HTTP connection");
    drop(held);
    assert!(gw.stop().success());
}

#[test]
fn drain_refuses_new_publishers_keeps_the_live_one_and_exits_when_it_ends() {
    require_tool("ffmpeg");
    let mut gw = Gateway::start(binary(), "e2e_drain", &[]);
    let rtmp = gw.rtmp.unwrap();
    let metrics = gw.metrics.unwrap();
    let live = gw.create_stream(&["--reconnect-window", "0"]);
    let other = gw.create_stream(&[]);
    let mut encoder = Encoder::ffmpeg_720p(&format!("rtmp://{rtmp}/app/{}", live.key), None);
    gw.wait_status(&live.id, "active", Duration::from_secs(20));
    assert_eq!(get(metrics, "/readyz").unwrap().status, 200);

    gw.signal("USR1");
    gw.wait_log("draining", Duration::from_secs(10));
    let ready = get(metrics, "/readyz").unwrap();
    assert_eq!(ready.status, 503);
    assert!(ready.text().contains("draining"), "{}", ready.text());

    // A new publisher is refused over RTMP, with the reason in the server's log...
    let mut second = Encoder::ffmpeg_720p(&format!("rtmp://{rtmp}/app/{}", other.key), Some(5));
    let status = second
        .wait_timeout(Duration::from_secs(10))
        .expect("the refused ffmpeg did not exit");
    assert!(!status.success(), "a publisher was admitted while draining");
    gw.wait_log("server is draining", Duration::from_secs(5));
    // ...and over SRT (refused in the handshake, before any passphrase is checked).
    let srt = gw.srt.unwrap();
    let out = std::process::Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-re", "-i"])
        .arg(testkit::fixture("avc_aac_720p30.flv"))
        .args(["-t", "3", "-c", "copy", "-f", "mpegts"])
        .arg(format!(
            "srt://{srt}?streamid={}&passphrase=0123456789abcdef&connect_timeout=5000",
            other.key
        ))
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "an SRT publisher was admitted while draining"
    );
    assert_eq!(gw.status(&other.id), "idle");

    // The live one goes on, and plays; the API answers.
    let first = next_segment(&gw, &live.playback_id, None);
    next_segment(&gw, &live.playback_id, Some(&first));
    assert!(
        encoder.try_wait().is_none(),
        "ffmpeg stopped: {}",
        encoder.stderr()
    );
    assert_eq!(gw.status(&live.id), "active");
    let master = get(gw.http.unwrap(), &format!("/{}.m3u8", live.playback_id)).unwrap();
    assert_eq!(master.status, 200);
    assert!(gw.wait_exit(Duration::ZERO).is_none());

    // The last broadcast ends: the gateway exits, successfully.
    encoder.kill();
    let status = gw.wait_exit(Duration::from_secs(30)).unwrap_or_else(|| {
        panic!(
            "still running after the last broadcast\n{}",
            gw.log_tail(30)
        )
    });
    assert!(status.success(), "{status:?}\n{}", gw.log_tail(30));
    assert!(gw.log().contains("drained: the last broadcast has ended"));
}

/// A gateway started with a configuration file whose `[log]` table is `log` (and no
/// `RUST_LOG`: the file's filter decides, RUST_LOG would win over it); also the file's path.
fn start_with_log_config(name: &str, log: &str) -> (Gateway, PathBuf) {
    let config = testkit::scratch_dir(&format!("{name}-config")).join("onair.toml");
    std::fs::write(&config, format!("[log]\n{log}")).unwrap();
    let gw = Gateway::start_with_env(
        binary(),
        name,
        &["--config", config.to_str().unwrap()],
        &[("RUST_LOG", "")],
    );
    (gw, config)
}

/// Writes `log` as the file's `[log]` table and sends SIGHUP: the new filter is applied, and
/// the next SIGHUP's own line shows.
fn reload_log_filter(gw: &Gateway, config: &Path, log: &str) {
    std::fs::write(config, format!("[log]\n{log}")).unwrap();
    gw.signal("HUP");
    gw.wait_log("log filter reloaded", Duration::from_secs(10));
    gw.signal("HUP");
    gw.wait_log(
        "SIGHUP: reloading the configuration",
        Duration::from_secs(10),
    );
}

#[test]
fn sighup_changes_the_log_filter_of_the_file() {
    let (mut gw, config) = start_with_log_config("e2e_reload_log", "filter = \"warn\"\n");
    assert!(!gw.log().contains(" INFO "), "{}", gw.log_tail(20));
    // Not a filter: refused (at ERROR, so it shows at `warn`).
    std::fs::write(&config, "[log]\nfilter = \"info,rtmp=loud\"\n").unwrap();
    gw.signal("HUP");
    gw.wait_log("reload refused", Duration::from_secs(10));
    assert!(gw.log().contains("[log] filter"), "{}", gw.log_tail(20));
    assert!(!gw.log().contains(" INFO "), "{}", gw.log_tail(20));
    // `info`: applied, and the next SIGHUP's own line shows.
    reload_log_filter(&gw, &config, "filter = \"info\"\n");
    assert!(gw.stop().success());
}

#[test]
fn json_logs_keep_their_format_when_sighup_changes_the_filter() {
    // One `[log]` table: the format (read at start) and the filter (reloaded).
    let (mut gw, config) = start_with_log_config(
        "e2e_reload_json_log",
        "format = \"json\"\nfilter = \"warn\"\n",
    );
    assert!(
        !gw.log().contains(r#""level":"INFO""#),
        "{}",
        gw.log_tail(20)
    );
    reload_log_filter(&gw, &config, "format = \"json\"\nfilter = \"info\"\n");
    // Changing the format needs a restart: the reload says so and the lines stay JSON.
    std::fs::write(&config, "[log]\nformat = \"text\"\nfilter = \"info\"\n").unwrap();
    gw.signal("HUP");
    gw.wait_log("[log] format", Duration::from_secs(10));
    assert!(gw.stop().success());
    let log = gw.log();
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        let value: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}\n{log}"));
        assert!(value["level"].is_string(), "{line}");
        assert!(!line.contains('\u{1b}'), "coloured: {line}");
    }
}

#[test]
fn with_reload_on_change_a_renewed_certificate_is_picked_up_without_a_signal() {
    let (dir, old, new) = certificates("e2e_reload_watch-files");
    let config = tls_config(&dir, "[reload]\non_change = true\n");
    let (mut gw, _config_dir) = start_with_config("e2e_reload_watch", &config);
    let rtmps = gw.rtmps.unwrap();
    assert_eq!(presented_certificate(rtmps), old);
    // A renewal that writes the certificate, then the key: the first check may see a
    // mismatched pair (refused), the next one the whole pair.
    install_certificate(&dir, "new.example");
    gw.wait_log("RTMPS certificate replaced", Duration::from_secs(15));
    assert!(
        gw.log().contains("file changed: reloading"),
        "{}",
        gw.log_tail(20)
    );
    assert_eq!(presented_certificate(rtmps), new);
    assert!(gw.stop().success());
}

#[test]
fn a_drain_stops_at_its_deadline_with_a_broadcast_still_running() {
    require_tool("ffmpeg");
    let mut gw = Gateway::start(
        binary(),
        "e2e_drain_deadline",
        &["--drain-deadline-secs", "2"],
    );
    let rtmp = gw.rtmp.unwrap();
    let live = gw.create_stream(&[]);
    let mut encoder = Encoder::ffmpeg_720p(&format!("rtmp://{rtmp}/app/{}", live.key), None);
    gw.wait_status(&live.id, "active", Duration::from_secs(20));
    let started = Instant::now();
    gw.signal("USR1");
    let status = gw
        .wait_exit(Duration::from_secs(20))
        .unwrap_or_else(|| panic!("still running after the deadline\n{}", gw.log_tail(30)));
    assert!(status.success(), "{status:?}\n{}", gw.log_tail(30));
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(
        gw.log().contains("drain deadline reached"),
        "{}",
        gw.log_tail(30)
    );
    // Stopped as on SIGTERM: the encoder was disconnected.
    assert!(
        encoder.wait_timeout(Duration::from_secs(10)).is_some(),
        "ffmpeg still connected"
    );
}
