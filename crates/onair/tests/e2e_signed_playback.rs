//! Signed playback end to end: a signing key created through OnAir's API with the official
//! Node SDK, a live stream whose playback ID is `signed`, ffmpeg publishing over RTMP, and
//! tokens made by the SDK's `jwt.signPlaybackId` (and by the official CLI's `mux sign`)
//! playing it with ffmpeg and with hls.js in Chromium. Every wrong token gets 403: none, an
//! expired one, one for another playback ID, another audience, and a valid one once its
//! signing key was deleted.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use testkit::gateway::Gateway;
use testkit::http::get;
use testkit::node_script::NodeScript;
use testkit::player::play_hls_js;
use testkit::{fixture, require_tool};

/// How long ffmpeg publishes: the first segment, the checks, ffmpeg's and the browser's play.
const PUSH_SECONDS: u32 = 40;
/// How long hls.js plays.
const PLAY_SECONDS: u32 = 8;

fn status(http: std::net::SocketAddr, path: &str) -> u16 {
    get(http, path).unwrap().status
}

#[test]
fn sdk_tokens_play_a_signed_playback_id_and_wrong_ones_get_403() {
    require_tool("ffmpeg");
    require_tool("node");
    let gw = Gateway::start(
        Path::new(env!("CARGO_BIN_EXE_onair")),
        "e2e_signed_playback",
        &[],
    );
    let http = gw.http.unwrap();
    let mut node = NodeScript::start("signed_playback.mjs", &gw);
    let created = node.step("created", &gw);
    let key = &created["key"];
    let key_id = key["id"].as_str().unwrap();
    // The hosted API's shapes: the private key once, base64 of a PKCS #1 PEM; never again.
    let pem = String::from_utf8(base64_decode(key["private_key"].as_str().unwrap())).unwrap();
    assert!(pem.starts_with("-----BEGIN RSA PRIVATE KEY-----"), "{pem}");
    assert!(
        key["created_at"].as_str().unwrap().parse::<u64>().is_ok(),
        "{key}"
    );
    assert_eq!(created["read"]["id"], key_id);
    assert!(created["read"].get("private_key").is_none(), "{created}");
    assert!(
        created["listed"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["id"] == key_id && k.get("private_key").is_none()),
        "{created}"
    );
    let stream_key = created["stream_key"].as_str().unwrap();
    let pid = created["playback_id"].as_str().unwrap();
    let token = |name: &str| created["tokens"][name].as_str().unwrap().to_owned();
    let video = token("video");

    let mut encoder = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-re", "-stream_loop", "-1", "-i"])
        .arg(fixture("avc_aac_720p30.flv"))
        .args(["-t", &PUSH_SECONDS.to_string(), "-c", "copy", "-f", "flv"])
        .arg(format!("rtmp://{}/app/{stream_key}", gw.rtmp.unwrap()))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let master = format!("/{pid}.m3u8?token={video}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while status(http, &master) != 200 {
        assert!(
            Instant::now() < deadline,
            "the signed playlist never answered 200:\n{}",
            gw.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // The playlists pass the token on to every URL they list: a player needs nothing else.
    let text = get(http, &master).unwrap().text();
    let media_uri = text.lines().find(|l| !l.starts_with('#')).unwrap();
    assert_eq!(
        media_uri,
        format!("{pid}/stream.m3u8?token={video}"),
        "{text}"
    );
    let media = get(http, &format!("/{media_uri}")).unwrap();
    assert_eq!(media.status, 200);
    assert_eq!(media.header("cache-control"), Some("private, max-age=1"));
    let media_text = media.text();
    let segment = media_text
        .lines()
        .find(|l| !l.starts_with('#') && !l.is_empty())
        .unwrap();
    assert!(
        segment.ends_with(&format!(".ts?token={video}")),
        "{media_text}"
    );
    let segment_path = format!("/{pid}/{segment}");
    assert_eq!(status(http, &segment_path), 200);

    // No token, or a wrong one, on the playlists and on the segment: 403 with the reason.
    let bare_segment = segment_path.split('?').next().unwrap().to_owned();
    let refused = |path: &str, reason: &str| {
        let r = get(http, path).unwrap();
        assert_eq!(r.status, 403, "{path}: {}", r.text());
        assert!(r.text().contains(reason), "{path}: {}", r.text());
    };
    refused(&format!("/{pid}.m3u8"), "need ?token=");
    refused(&format!("/{pid}/stream.m3u8"), "need ?token=");
    refused(&bare_segment, "need ?token=");
    refused(&format!("/{pid}.m3u8?token=garbage"), "not a JWT");
    refused(
        &format!("/{pid}.m3u8?token={}", token("expired")),
        "expired",
    );
    refused(
        &format!("{bare_segment}?token={}", token("other_playback_id")),
        "another playback ID",
    );
    for (name, aud) in [("thumbnail", "t"), ("storyboard", "s"), ("gif", "g")] {
        refused(
            &format!("/{pid}.m3u8?token={}", token(name)),
            &format!("audience is \"{aud}\""),
        );
    }
    // A token of the official CLI (`mux sign`, with the key the API returned) plays too.
    let cli = mux_sign(&gw, pid, key_id, key["private_key"].as_str().unwrap());
    assert_eq!(status(http, &format!("/{pid}.m3u8?token={cli}")), 200);

    // ffmpeg plays the signed URL: every segment it fetches carries the token.
    let play = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-xerror", "-i"])
        .arg(format!("http://{http}/{pid}.m3u8?token={}", token("short")))
        .args(["-t", "4", "-f", "null", "-"])
        .output()
        .unwrap();
    assert!(
        play.status.success() && play.stderr.is_empty(),
        "ffmpeg could not play the signed URL: {}\n{}",
        String::from_utf8_lossy(&play.stderr),
        gw.log()
    );
    let frames = testkit::ffprobe(&[
        "-count_frames",
        "-select_streams",
        "v:0",
        "-show_entries",
        "stream=nb_read_frames",
        "-read_intervals",
        "%+4",
        &format!("http://{http}/{pid}.m3u8?token={video}"),
    ]);
    let read: u64 = frames["streams"][0]["nb_read_frames"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(read >= 60, "ffprobe read {read} frames: {frames}");

    // hls.js in Chromium, given only the signed multivariant URL.
    let report = play_hls_js(&format!("http://{http}{master}"), PLAY_SECONDS, false);
    let summary = report.summary();
    assert!(
        report.fatal_errors.is_empty(),
        "hls.js hit a fatal error:\n{summary}"
    );
    assert!(
        report.played_seconds >= 4.0 && report.video_decoded_frames > 60,
        "hls.js played {:.2} s, {} frames:\n{summary}",
        report.played_seconds,
        report.video_decoded_frames
    );
    assert!(report.loaded_sns().len() >= 2, "{summary}");

    // Deleting the signing key stops its tokens at once.
    node.resume();
    let deleted = node.step("deleted", &gw);
    assert_eq!(deleted["retrieve_status"], 404, "{deleted}");
    refused(&master, "does not exist");
    refused(&segment_path, "does not exist");
    node.finish();

    let _ = encoder.kill();
    let _ = encoder.wait();
}

/// A token from the official CLI: `mux sign PLAYBACK_ID --token-only` with the signing key in
/// its environment.
fn mux_sign(gw: &Gateway, pid: &str, key_id: &str, private_key: &str) -> String {
    let out = gw
        .mux_cli(&["sign", pid, "--token-only"])
        .env("MUX_SIGNING_KEY", key_id)
        .env("MUX_PRIVATE_KEY", private_key)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "mux sign: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert_eq!(token.split('.').count(), 3, "not a JWT: {token}");
    token
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}
