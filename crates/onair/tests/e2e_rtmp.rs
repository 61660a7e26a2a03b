//! End to end: the real `onair serve`, live streams created with the CLI, real encoders
//! (ffmpeg over RTMP and RTMPS, GStreamer's rtmp2sink) pushing an encoder-made clip, and the
//! HLS served over HTTP checked by ffprobe/ffmpeg while it is live.
#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use testkit::gateway::{CreatedStream, Gateway};
use testkit::http::get;
use testkit::{ffmpeg_decode_errors, ffprobe, fixture, require_tool};

fn start(name: &str) -> Gateway {
    Gateway::start(std::path::Path::new(env!("CARGO_BIN_EXE_onair")), name, &[])
}

/// A live stream; without a `--reconnect-window` in `extra` its window is 0, so that it goes
/// idle as soon as the encoder leaves.
fn create(gw: &Gateway, extra: &[&str]) -> CreatedStream {
    let mut args = extra.to_vec();
    if !extra.contains(&"--reconnect-window") {
        args.extend_from_slice(&["--reconnect-window", "0"]);
    }
    gw.create_stream(&args)
}

fn status(gw: &Gateway, id: &str) -> String {
    gw.status(id)
}

/// ffmpeg pushing the 720p fixture in real time for `seconds` to `url`.
fn ffmpeg_push(url: &str, seconds: u32) -> Child {
    require_tool("ffmpeg");
    Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-re", "-stream_loop", "-1", "-i"])
        .arg(fixture("avc_aac_720p30.flv"))
        .args(["-t", &seconds.to_string(), "-c", "copy", "-f", "flv", url])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn wait_for(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out after {timeout:?} waiting for {what}");
}

fn media_sequence(playlist: &str) -> u64 {
    playlist
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-MEDIA-SEQUENCE:"))
        .unwrap()
        .parse()
        .unwrap()
}

/// Watches a live stream over HTTP as a player would, until the encoder has stopped.
/// Checks the 412 before the first segment, every segment's first video frame, the growing
/// media sequence, and that ffmpeg plays the live playlist without a decode error.
fn watch_live(gw: &Gateway, stream: &CreatedStream, mut encoder: Child) {
    let http = gw.http.unwrap();
    let master_path = format!("/{}.m3u8", stream.playback_id);
    // Before the first segment: 412 (the encoder needs at least 4 s for the first one).
    let first = get(http, &master_path).unwrap();
    assert_eq!(
        first.status,
        412,
        "before the first segment: {}",
        first.text()
    );
    assert_eq!(first.header("access-control-allow-origin"), Some("*"));
    wait_for("the first segment", Duration::from_secs(15), || {
        get(http, &master_path).unwrap().status == 200
    });
    // Playable means active, with the protocol (RTMPS reports "rtmp", like the seeds); the
    // status is written just after the segment is published.
    wait_for("status active", Duration::from_secs(2), || {
        status(gw, &stream.id) == "active"
    });
    let live = gw.cli(&["live-streams", "get", &stream.id]);
    assert_eq!(live["status"], "active", "{live}");
    assert_eq!(live["active_ingest_protocol"], "rtmp", "{live}");
    let master = get(http, &master_path).unwrap();
    assert_eq!(
        master.header("content-type"),
        Some("application/vnd.apple.mpegurl")
    );
    assert!(
        master.text().contains("CODECS=\"avc1.64001f,mp4a.40.2\""),
        "{}",
        master.text()
    );
    assert!(
        master.text().contains("RESOLUTION=1280x720"),
        "{}",
        master.text()
    );
    let media_path = format!("/{}/stream.m3u8", stream.playback_id);

    // A player decodes the live playlist.
    let dir = testkit::scratch_dir(&format!("watch-{}", stream.id));
    let url = format!("http://{http}{master_path}");
    let live_errors = Command::new("ffmpeg")
        .args([
            "-nostdin", "-v", "error", "-xerror", "-i", &url, "-t", "3", "-f", "null", "-",
        ])
        .output()
        .unwrap();
    assert!(
        live_errors.status.success() && live_errors.stderr.is_empty(),
        "ffmpeg playing {url}: {}",
        String::from_utf8_lossy(&live_errors.stderr)
    );

    let mut last_sequence = 0;
    let mut checked = std::collections::HashSet::new();
    while encoder.try_wait().unwrap().is_none() {
        let playlist = get(http, &media_path).unwrap();
        if playlist.status != 200 {
            // The encoder's connection can end (and, with no reconnect window, the stream go
            // idle) a moment before its process exits: then it must exit at once.
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while encoder.try_wait().unwrap().is_none() {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the playlist answered {} while the encoder kept running:\n{}",
                    playlist.status,
                    gw.log()
                );
                std::thread::sleep(Duration::from_millis(50));
            }
            break;
        }
        let text = playlist.text();
        let sequence = media_sequence(&text);
        assert!(
            sequence >= last_sequence,
            "media sequence went back: {sequence} < {last_sequence}"
        );
        last_sequence = sequence;
        for uri in text.lines().filter(|l| l.ends_with(".ts")) {
            if !checked.insert(uri.to_owned()) {
                continue;
            }
            let segment = get(http, &format!("/{}/{uri}", stream.playback_id)).unwrap();
            assert_eq!(segment.status, 200, "{uri}");
            assert_eq!(segment.header("content-type"), Some("video/mp2t"));
            assert!(segment
                .header("cache-control")
                .unwrap()
                .contains("immutable"));
            let path = dir.join(uri.replace('/', "_"));
            std::fs::write(&path, &segment.body).unwrap();
            let errors = ffmpeg_decode_errors(&path);
            assert!(errors.trim().is_empty(), "{uri}: {errors}");
            let packets = ffprobe(&[
                "-select_streams",
                "v:0",
                "-read_intervals",
                "%+#1",
                "-show_entries",
                "packet=flags",
                path.to_str().unwrap(),
            ]);
            assert!(
                packets["packets"][0]["flags"]
                    .as_str()
                    .unwrap()
                    .starts_with('K'),
                "{uri} does not start with a keyframe"
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let out = encoder.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "encoder failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(checked.len() >= 2, "saw only {} segments", checked.len());
    // The encoder left: the live stream goes back to idle and playback answers 412.
    wait_for("status idle", Duration::from_secs(10), || {
        status(gw, &stream.id) == "idle"
    });
    assert_eq!(get(http, &master_path).unwrap().status, 412);
}

#[test]
fn ffmpeg_over_rtmp_plays_over_hls() {
    let gw = start("e2e_rtmp");
    let stream = create(&gw, &[]);
    let encoder = ffmpeg_push(
        &format!("rtmp://{}/app/{}", gw.rtmp.unwrap(), stream.key),
        12,
    );
    watch_live(&gw, &stream, encoder);
}

#[test]
fn ffmpeg_over_rtmps_plays_over_hls() {
    let gw = start("e2e_rtmps");
    let stream = create(&gw, &[]);
    let encoder = ffmpeg_push(
        &format!("rtmps://{}/app/{}", gw.rtmps.unwrap(), stream.key),
        12,
    );
    watch_live(&gw, &stream, encoder);
}

#[test]
fn gstreamer_rtmp2sink_plays_over_hls() {
    require_tool("gst-launch-1.0");
    let gw = start("e2e_gstreamer");
    let stream = create(&gw, &[]);
    let location = format!("location=rtmp://{}/app/{}", gw.rtmp.unwrap(), stream.key);
    let file = format!("location={}", fixture("avc_aac_720p30.flv").display());
    let pipeline = format!(
        "filesrc {file} ! flvdemux name=d d.video ! queue ! h264parse ! flvmux name=m streamable=true ! \
         rtmp2sink {location} d.audio ! queue ! aacparse ! m."
    );
    // rtmp2sink syncs on the clock (its default), so the clip goes out in real time.
    let encoder = Command::new("gst-launch-1.0")
        .arg("-q")
        .args(pipeline.split(' '))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    watch_live(&gw, &stream, encoder);
    // Every frame of the 10 s clip is in the recording.
    let recordings = gw.data_dir.join("recordings").join(&stream.id);
    let session = std::fs::read_dir(&recordings)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let playlist = session.join("stream.m3u8");
    let errors = ffmpeg_decode_errors(&playlist);
    assert!(errors.trim().is_empty(), "{errors}");
    assert_eq!(testkit::video_frame_count(&playlist), 300);
}

fn refused(url: &str) -> String {
    let child = ffmpeg_push(url, 5);
    let started = Instant::now();
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success(), "ffmpeg was not refused");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "refusal took {:?}",
        started.elapsed()
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn refusals_wrong_key_disabled_second_publisher_and_garbage() {
    let gw = start("e2e_refusals");
    let rtmp = gw.rtmp.unwrap();
    let stream = create(&gw, &[]);

    // Wrong key.
    refused(&format!("rtmp://{rtmp}/app/not-a-key"));
    let log = gw.log();
    assert!(
        !log.contains("not-a-key"),
        "the log shows a stream key in full"
    );

    // Disabled stream.
    let disabled = create(&gw, &[]);
    gw.cli(&["live-streams", "disable", &disabled.id]);
    refused(&format!("rtmp://{rtmp}/app/{}", disabled.key));
    assert!(
        !gw.log().contains(&disabled.key),
        "the log shows a stream key in full"
    );

    // Second publisher while live.
    let first = ffmpeg_push(&format!("rtmp://{rtmp}/app/{}", stream.key), 10);
    wait_for("status active", Duration::from_secs(15), || {
        status(&gw, &stream.id) == "active"
    });
    refused(&format!("rtmp://{rtmp}/app/{}", stream.key));

    // Garbage, an HTTP request and a TLS hello on the plain port are closed quickly, and
    // the live stream keeps going.
    for junk in [
        &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
        &[0x16, 0x03, 0x01, 0x00, 0xa5, 0x01][..],
        &[0xde; 3000][..],
    ] {
        let mut socket = TcpStream::connect(rtmp).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let _ = socket.write_all(junk);
        let started = Instant::now();
        let mut buf = [0u8; 4096];
        loop {
            match socket.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(6),
            "junk connection held for {:?}",
            started.elapsed()
        );
    }
    assert_eq!(status(&gw, &stream.id), "active");
    let out = first.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the live encoder was disturbed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A viewer that reads a segment one byte per 50 ms must not slow down another live stream:
/// its segments keep coming at the encoder's cadence.
#[test]
fn slow_viewer_does_not_stall_a_live_stream() {
    let gw = start("e2e_slow_viewer");
    let http: SocketAddr = gw.http.unwrap();
    let a = create(&gw, &["--latency-mode", "reduced"]);
    let b = create(&gw, &["--latency-mode", "reduced"]);
    let mut enc_a = ffmpeg_push(&format!("rtmp://{}/app/{}", gw.rtmp.unwrap(), a.key), 16);
    let mut enc_b = ffmpeg_push(&format!("rtmp://{}/app/{}", gw.rtmp.unwrap(), b.key), 16);
    let a_path = format!("/{}/stream.m3u8", a.playback_id);
    wait_for("stream A live", Duration::from_secs(15), || {
        get(http, &a_path).unwrap().status == 200
    });
    // The slow viewer on stream A, on its first segment.
    let first = get(http, &a_path).unwrap().text();
    let first = first.lines().find(|l| l.ends_with(".ts")).unwrap();
    let slow_path = format!("/{}/{first}", a.playback_id);
    let slow = std::thread::spawn(move || {
        let mut socket = TcpStream::connect(http).unwrap();
        write!(socket, "GET {slow_path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut byte = [0u8; 1];
        let until = Instant::now() + Duration::from_secs(8);
        while Instant::now() < until && socket.read(&mut byte).unwrap_or(0) == 1 {
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    // Stream B's media sequence advances about every 2 s for the next 8 s.
    let b_path = format!("/{}/stream.m3u8", b.playback_id);
    wait_for("stream B live", Duration::from_secs(15), || {
        get(http, &b_path).unwrap().status == 200
    });
    let start_seq = media_sequence(&get(http, &b_path).unwrap().text())
        + get(http, &b_path)
            .unwrap()
            .text()
            .matches("#EXTINF")
            .count() as u64;
    std::thread::sleep(Duration::from_secs(8));
    let text = get(http, &b_path).unwrap().text();
    let end_seq = media_sequence(&text) + text.matches("#EXTINF").count() as u64;
    assert!(
        end_seq - start_seq >= 3,
        "stream B produced {} segments in 8 s",
        end_seq - start_seq
    );
    slow.join().unwrap();
    assert!(enc_a.wait().unwrap().success());
    assert!(enc_b.wait().unwrap().success());
}

#[test]
fn sigterm_writes_the_open_segment_and_the_restart_ends_the_recording() {
    let mut gw = start("e2e_sigterm");
    let stream = create(&gw, &[]);
    let mut encoder = ffmpeg_push(
        &format!("rtmp://{}/app/{}", gw.rtmp.unwrap(), stream.key),
        30,
    );
    wait_for("status active", Duration::from_secs(15), || {
        status(&gw, &stream.id) == "active"
    });
    std::thread::sleep(Duration::from_secs(2));
    let exit = gw.stop();
    assert!(exit.success(), "onair exited with {exit}:\n{}", gw.log());
    let _ = encoder.kill();
    let _ = encoder.wait();
    let recordings = gw.data_dir.join("recordings").join(&stream.id);
    let session = std::fs::read_dir(&recordings)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    // The open segment is written; the broadcast is left disconnected for the next start.
    let playlist = std::fs::read_to_string(session.join("stream.m3u8")).unwrap();
    assert!(!playlist.contains("#EXT-X-ENDLIST"), "{playlist}");
    assert!(playlist.matches("#EXTINF").count() >= 2, "{playlist}");
    // The next start reconciles it: window 0, so idle and ended at once.
    gw.restart();
    wait_for("idle after the restart", Duration::from_secs(10), || {
        status(&gw, &stream.id) == "idle"
    });
    let playlist = std::fs::read_to_string(session.join("stream.m3u8")).unwrap();
    assert!(playlist.ends_with("#EXT-X-ENDLIST\n"), "{playlist}");
    let errors = ffmpeg_decode_errors(&session.join("stream.m3u8"));
    assert!(errors.trim().is_empty(), "{errors}");
}
