//! End to end: hostile peers against the real `onair serve` on loopback (issue 14): memory
//! parked before authentication, silent-socket floods, slowloris and slow readers on HTTP,
//! publishers faster than real time, password guessing, and file modes. Every count and
//! wait is bounded.
#![allow(clippy::unwrap_used)]

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use testkit::gateway::{CreatedStream, Gateway, TEST_TOKEN_ID, TEST_TOKEN_SECRET};
use testkit::http::{get, request};
use testkit::{fixture, require_tool};

/// A gateway with `config` (TOML) as its configuration file.
fn start(name: &str, config: &str) -> Gateway {
    let path = testkit::scratch_dir(&format!("{name}-config")).join("onair.toml");
    std::fs::write(&path, config).unwrap();
    Gateway::start(
        Path::new(env!("CARGO_BIN_EXE_onair")),
        name,
        &["--config", path.to_str().unwrap()],
    )
}

fn create(gw: &Gateway) -> CreatedStream {
    gw.create_stream(&["--reconnect-window", "0"])
}

/// ffmpeg pushing the 10 s fixture to `url`, in real time with `realtime`, else as fast as
/// it can.
fn ffmpeg_push(url: &str, realtime: bool, seconds: u32) -> Child {
    require_tool("ffmpeg");
    let mut command = Command::new("ffmpeg");
    command.args(["-nostdin", "-v", "error"]);
    if realtime {
        command.args(["-re", "-stream_loop", "-1"]);
    }
    command
        .arg("-i")
        .arg(fixture("avc_aac_720p30.flv"))
        .args(["-t", &seconds.to_string(), "-c", "copy", "-f", "flv", url])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn rtmp_url(gw: &Gateway, key: &str) -> String {
    format!("rtmp://{}/app/{key}", gw.rtmp.unwrap())
}

/// TCP connections to `to`, one from each of `sources` (any 127.x.y.z: Linux routes all of
/// 127/8 to loopback). std cannot bind before connecting; tokio's socket type can.
fn connect_from(sources: &[[u8; 4]], to: SocketAddr) -> Vec<TcpStream> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut out = Vec::with_capacity(sources.len());
        for source in sources {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket
                .bind(SocketAddr::from((*source, 0)))
                .expect("bind a loopback source address");
            let stream = socket.connect(to).await.unwrap().into_std().unwrap();
            stream.set_nonblocking(false).unwrap();
            out.push(stream);
        }
        out
    })
}

/// The RTMP handshake as a client: C0 C1, read S0 S1 S2, C2 (S1 echoed).
fn rtmp_handshake(stream: &mut TcpStream) -> std::io::Result<()> {
    let mut c0c1 = vec![3u8];
    c0c1.extend((0..1536u32).map(|i| (i % 251) as u8));
    stream.write_all(&c0c1)?;
    let mut reply = vec![0u8; 1 + 1536 + 1536];
    stream.read_exact(&mut reply)?;
    assert_eq!(reply[0], 3);
    stream.write_all(&reply[1..1537])
}

/// A type-0 chunk header on `csid` for a message of `length` bytes.
fn chunk_header(csid: u8, length: usize, type_id: u8) -> Vec<u8> {
    let len = (length as u32).to_be_bytes();
    vec![csid, 0, 0, 0, len[1], len[2], len[3], type_id, 1, 0, 0, 0]
}

/// Whether the peer closed `stream` (EOF or reset) within `within`; data is read and dropped.
fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        stream.set_read_timeout(Some(left)).unwrap();
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return false
            }
            Err(_) => return true,
        }
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Sums the `#EXTINF` durations of a playlist.
fn listed_seconds(text: &str) -> f64 {
    text.lines()
        .filter_map(|l| l.strip_prefix("#EXTINF:"))
        .filter_map(|v| v.split(',').next()?.parse::<f64>().ok())
        .sum()
}

/// Every file under `dir`.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}

/// 25 peers complete the RTMP handshake and each tries to park 61 unfinished messages of
/// 56 KiB (3.3 MiB each, 83 MiB in all: what the 16 MiB per-connection limit let through
/// before). The budget before admission closes each at 64 KiB; the gateway's RSS grows by a
/// few MB at most, and a real encoder publishes meanwhile.
#[test]
fn parked_pre_publish_data_costs_little_and_an_encoder_still_gets_in() {
    let gw = start("hostile-parked", "");
    let stream = create(&gw);
    let rtmp = gw.rtmp.unwrap();
    // Warm up the allocator and the runtime with one harmless connection.
    let mut warm = TcpStream::connect(rtmp).unwrap();
    rtmp_handshake(&mut warm).unwrap();
    drop(warm);
    std::thread::sleep(Duration::from_millis(300));
    let before = gw.rss_kib();
    let mut peers = Vec::new();
    let mut closed = 0;
    let started = Instant::now();
    for _ in 0..25 {
        let mut peer = TcpStream::connect(rtmp).unwrap();
        rtmp_handshake(&mut peer).unwrap();
        peer.set_write_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        // Set Chunk Size 4096. A chunk stream id only changes at chunk boundaries, so each
        // message below is left unfinished by sending 14 of its 15 chunks.
        let mut bytes = chunk_header(2, 4, 1);
        bytes[8] = 0; // message stream 0 for protocol control
        bytes.extend_from_slice(&4096u32.to_be_bytes());
        let mut refused = peer.write_all(&bytes).is_err();
        for csid in 3..=63u8 {
            if refused {
                break;
            }
            let mut message = chunk_header(csid, 15 * 4096, 9);
            for chunk in 0..14 {
                if chunk > 0 {
                    message.push(0xc0 | csid);
                }
                message.extend(std::iter::repeat_n(0x17u8, 4096));
            }
            refused = peer.write_all(&message).is_err();
        }
        if refused || closed_within(&mut peer, Duration::from_millis(100)) {
            closed += 1;
        }
        peers.push(peer);
    }
    let mut peak = gw.rss_kib();
    while started.elapsed() < Duration::from_secs(3) {
        peak = peak.max(gw.rss_kib());
        std::thread::sleep(Duration::from_millis(50));
    }
    let grown_kib = peak.saturating_sub(before);
    println!("RSS before {before} KiB, peak {peak} KiB: +{grown_kib} KiB for 25 parking peers ({closed} closed by the server)");
    assert_eq!(closed, 25, "every parking peer is closed at its budget");
    assert!(
        grown_kib < 8 * 1024,
        "RSS grew by {grown_kib} KiB for 25 parked peers"
    );

    // A real encoder is not affected.
    let mut encoder = ffmpeg_push(&rtmp_url(&gw, &stream.key), true, 6);
    gw.wait_status(&stream.id, "active", Duration::from_secs(20));
    let out = encoder.wait().unwrap();
    assert!(out.success());
    drop(peers);
}

/// 1,000 sockets that complete the RTMP handshake and then stay silent (100 from the
/// encoder's own address, 900 from 60 others) against an RTMP listener of 500 slots: the
/// encoder still gets in, while the flood still holds the rest of the listener.
#[test]
fn a_silent_flood_does_not_keep_an_encoder_out() {
    let gw = start("hostile-flood", "[rtmp]\nmax_connections = 500\n");
    let stream = create(&gw);
    let rtmp = gw.rtmp.unwrap();
    // 15 per address stays under the per-address limit (16): the listener itself fills up.
    let sources: Vec<[u8; 4]> = (0..1000u32)
        .map(|i| {
            if i < 100 {
                [127, 0, 0, 1]
            } else {
                [127, 0, 1, (i % 60) as u8 + 2]
            }
        })
        .collect();
    let mut silent = connect_from(&sources, rtmp);
    // Each completes the RTMP handshake, and then says nothing: it may hold its slot until
    // the publish timeout (15 s), unless a newer connection displaces it.
    let mut handshakes = 0;
    for s in &mut silent {
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        if rtmp_handshake(s).is_ok() {
            handshakes += 1;
        }
    }
    println!("{handshakes} of 1,000 silent sockets completed the handshake");
    // Let the server accept (and shed) all of them.
    std::thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    let mut encoder = ffmpeg_push(&rtmp_url(&gw, &stream.key), true, 5);
    gw.wait_status(&stream.id, "active", Duration::from_secs(20));
    println!(
        "encoder active {:?} after it started, with 1,000 silent sockets open",
        started.elapsed()
    );
    assert!(encoder.wait().unwrap().success());
    // The flood is still there: many of its sockets are open (not all closed by timeouts).
    let mut open = 0;
    for s in silent.iter_mut().take(200) {
        if !closed_within(s, Duration::from_millis(1)) {
            open += 1;
        }
    }
    // The flood still holds the listener: the encoder got in by displacing the oldest
    // silent sockets, not because timeouts had emptied it.
    println!("{open} of the first 200 silent sockets still open");
    let mut open_total = 0;
    for s in silent.iter_mut() {
        if !closed_within(s, Duration::from_millis(1)) {
            open_total += 1;
        }
    }
    println!("{open_total} of 1,000 silent sockets still open");
    assert!(open_total >= 400, "only {open_total} silent sockets open");
    drop(silent);
}

/// Slowloris, silent and idle keep-alive HTTP connections are closed after the header read
/// timeout; the connection cap closes what is beyond it at once; ordinary requests work.
#[test]
fn slow_and_silent_http_connections_are_closed_after_the_header_timeout() {
    let gw = start(
        "hostile-http",
        "[http]\nheader_read_timeout_secs = 1.0\nmax_connections = 60\n",
    );
    let http = gw.http.unwrap();
    let mut silent: Vec<TcpStream> = (0..20).map(|_| TcpStream::connect(http).unwrap()).collect();
    let mut slow: Vec<TcpStream> = (0..20)
        .map(|_| {
            let mut s = TcpStream::connect(http).unwrap();
            s.write_all(b"GET /video/v1/live-streams HTTP/1.1\r\nHost: x\r\n")
                .unwrap();
            s
        })
        .collect();
    let mut idle = TcpStream::connect(http).unwrap();
    idle.write_all(b"GET /nope.m3u8 HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let started = Instant::now();
    // Slowloris: one more header byte every 200 ms, never the end of the headers.
    let mut all_closed = false;
    while started.elapsed() < Duration::from_secs(4) {
        let mut open = 0;
        for s in &mut slow {
            if s.write_all(b"X").is_ok() && !closed_within(s, Duration::from_millis(1)) {
                open += 1;
            }
        }
        if open == 0 {
            all_closed = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let took = started.elapsed();
    assert!(
        all_closed,
        "slowloris connections still open after {took:?}"
    );
    assert!(
        took >= Duration::from_millis(800),
        "closed too early: {took:?}"
    );
    for s in &mut silent {
        assert!(
            closed_within(s, Duration::from_secs(1)),
            "silent connection open"
        );
    }
    // The idle keep-alive connection got its answer and was closed after the timeout.
    assert!(closed_within(&mut idle, Duration::from_secs(1)));
    println!("slowloris and silent connections closed {took:?} after they started (timeout 1 s)");

    // The cap: 60 open connections, the 61st is closed at once.
    let mut held: Vec<TcpStream> = (0..60).map(|_| TcpStream::connect(http).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(200));
    let mut extra = TcpStream::connect(http).unwrap();
    assert!(closed_within(&mut extra, Duration::from_millis(500)));
    for h in &mut held {
        assert!(closed_within(h, Duration::from_secs(2)));
    }
    let response = get(http, "/nope.m3u8").unwrap();
    assert_eq!(response.status, 404, "{}", response.text());
}

/// A reader taking a segment at 1 byte/s is disconnected after the send window; a normal
/// reader gets the whole segment with the same limits.
#[test]
fn a_slow_segment_reader_is_disconnected() {
    let gw = start(
        "hostile-slow-reader",
        "[http]\nsend_buffer = 4096\nsend_window_secs = 2\nmin_send_rate = 4096\n",
    );
    let stream = create(&gw);
    let http = gw.http.unwrap();
    let mut encoder = ffmpeg_push(&rtmp_url(&gw, &stream.key), true, 12);
    gw.wait_status(&stream.id, "active", Duration::from_secs(20));
    let media = format!("/{}/stream.m3u8", stream.playback_id);
    let segment_path = testkit::wait_for("a segment", Duration::from_secs(15), || {
        let playlist = get(http, &media).unwrap();
        playlist
            .text()
            .lines()
            .find(|l| l.ends_with(".ts"))
            .map(|uri| format!("/{}/{uri}", stream.playback_id))
    });
    let whole = get(http, &segment_path).unwrap();
    assert_eq!(whole.status, 200);
    let full = whole.body.len();
    assert!(
        full > 64 * 1024,
        "segment of {full} bytes is too small for this test"
    );

    // Small receive buffer on our side too, so the server's writes block early.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut slow: TcpStream = rt.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        socket.connect(http).await.unwrap().into_std().unwrap()
    });
    slow.set_nonblocking(false).unwrap();
    slow.write_all(format!("GET {segment_path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .unwrap();
    let started = Instant::now();
    let mut received = 0usize;
    let mut byte = [0u8; 1];
    // 1 byte/s for 5 s (the window is 2 s).
    while started.elapsed() < Duration::from_secs(5) {
        slow.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        match slow.read(&mut byte) {
            Ok(0) | Err(_) => break,
            Ok(n) => received += n,
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    // Then read whatever the server still sends: the connection must end short of the
    // whole response.
    slow.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut rest = Vec::new();
    let ended = match slow.read_to_end(&mut rest) {
        Ok(_) => true,
        Err(e) => !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
    };
    received += rest.len();
    println!("slow reader got {received} of {full} bytes (plus headers) before the server closed");
    assert!(ended, "the slow reader's connection is still open");
    assert!(received < full, "the slow reader got the whole segment");
    let _ = encoder.wait();
}

/// ffmpeg pushing the 10 s clip as fast as it can is paced to real time: with a lead of
/// 1 s the server reads the last of it at least ~9 s after the first (ffmpeg itself may
/// finish sooner: the kernel's socket buffers hold megabytes), and the recording never runs
/// ahead of the wall clock. The recording and the database are readable by the gateway's
/// user only.
#[test]
fn a_publisher_faster_than_real_time_is_paced_and_files_are_private() {
    let gw = start("hostile-pacing", "[ingest]\nmax_lead_secs = 1.0\n");
    let stream = create(&gw);
    let started = Instant::now();
    let encoder = ffmpeg_push(&rtmp_url(&gw, &stream.key), false, 10);
    let out = encoder.wait_with_output().unwrap();
    let pushed = started.elapsed();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The server sees the end of the stream after it has read everything.
    gw.wait_status(&stream.id, "active", Duration::from_secs(20));
    gw.wait_status(&stream.id, "idle", Duration::from_secs(30));
    let took = started.elapsed();
    println!("10 s clip pushed without -re: ffmpeg done after {pushed:?}, stream idle after {took:?} (lead 1 s)");
    assert!(
        took >= Duration::from_secs(8),
        "not paced: 10 s of media read in {took:?}"
    );
    let log = gw.log();
    let paced_ms: u64 = log
        .lines()
        .find(|l| l.contains("publisher disconnected"))
        .and_then(|l| l.split("paced_ms=").nth(1))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no paced_ms in the log:\n{log}"));
    println!("the connection was paced for {paced_ms} ms");
    assert!(paced_ms >= 5000, "paced for {paced_ms} ms only");
    let recordings = gw.data_dir.join("recordings").join(&stream.id);
    let files = files_under(&recordings);
    let playlist = files
        .iter()
        .find(|p| p.file_name().is_some_and(|n| n == "stream.m3u8"))
        .expect("a recording playlist");
    let recorded = listed_seconds(&std::fs::read_to_string(playlist).unwrap());
    println!("recorded {recorded:.1} s in {took:?}");
    assert!(recorded > 5.0, "recorded only {recorded} s");
    assert!(
        recorded <= took.as_secs_f64() + 1.0 + 0.5,
        "recorded {recorded} s in {took:?}"
    );

    // Files: the data directory 0700, the database 0600, recordings 0700/0600.
    assert_eq!(mode(&gw.data_dir), 0o700);
    assert_eq!(mode(&gw.data_dir.join("onair.db")), 0o600);
    for file in &files {
        assert_eq!(mode(file), 0o600, "{}", file.display());
        assert_eq!(mode(file.parent().unwrap()), 0o700, "{}", file.display());
    }
}

/// Wrong passwords from one address: the first ten get 401, then 429 before the
/// credentials are looked at (a right one too, from that address); the log names the
/// address and token ID, never the secret.
#[test]
fn password_guessing_is_limited_per_address_and_logged_without_the_secret() {
    let gw = start("hostile-auth", "");
    let http = gw.http.unwrap();
    let guess = "not-the-secret-GUESS-1234";
    let mut statuses = Vec::new();
    for _ in 0..15 {
        let r = request(
            http,
            "GET",
            "/video/v1/live-streams",
            Some((TEST_TOKEN_ID, guess)),
            None,
        )
        .unwrap();
        statuses.push(r.status);
    }
    assert_eq!(&statuses[..10], &[401; 10], "{statuses:?}");
    assert_eq!(&statuses[10..], &[429; 5], "{statuses:?}");
    let r = request(
        http,
        "GET",
        "/video/v1/live-streams",
        Some((TEST_TOKEN_ID, TEST_TOKEN_SECRET)),
        None,
    )
    .unwrap();
    assert_eq!(r.status, 429, "the address is limited, whatever it sends");
    assert!(r.header("retry-after").is_some());
    let log = gw.log();
    assert!(log.contains("API authentication failed"), "{log}");
    assert!(log.contains("client=127.0.0.1"), "{log}");
    assert!(!log.contains(guess));
    // Rate-limited log lines: 15 failures, one line.
    assert_eq!(log.matches("API authentication failed").count(), 1, "{log}");
}

/// The same over SRT: ffmpeg sending a 10 s MPEG-TS clip at three times real time. While paced the
/// listener queues and then drops the caller's packets, so less may be recorded, but never
/// more than the wall clock allows.
#[test]
fn an_srt_caller_faster_than_real_time_never_records_ahead_of_the_clock() {
    require_tool("ffmpeg");
    let gw = start("hostile-srt-pacing", "[ingest]\nmax_lead_secs = 1.0\n");
    let (status, v) = gw.api(
        "POST",
        "/live-streams",
        Some(r#"{"playback_policies": ["public"], "reconnect_window": 0, "new_asset_settings": {"playback_policies": ["public"]}}"#),
    );
    assert_eq!(status, 201, "{v}");
    let id = v["data"]["id"].as_str().unwrap().to_owned();
    let key = v["data"]["stream_key"].as_str().unwrap();
    let passphrase = v["data"]["srt_passphrase"].as_str().unwrap();
    let clip = testkit::scratch_dir("hostile-srt-clip").join("clip.ts");
    let made = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-i"])
        .arg(fixture("avc_aac_720p30.flv"))
        .args(["-c", "copy", "-f", "mpegts"])
        .arg(&clip)
        .status()
        .unwrap();
    assert!(made.success());
    let url = format!(
        "srt://{}?streamid={key}&passphrase={passphrase}&pbkeylen=16",
        gw.srt.unwrap()
    );
    let started = Instant::now();
    // Three times real time: fast enough to be ahead, slow enough that SRT itself delivers
    // it all when nothing paces it (at full speed libsrt drops most of a burst on its own).
    let out = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-readrate", "3", "-i"])
        .arg(&clip)
        .args(["-c", "copy", "-f", "mpegts", &url])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sent = started.elapsed();
    // Paced, it may never deliver a playable segment (status `active`): wait for the
    // connection to end instead.
    testkit::wait_for("the caller to leave", Duration::from_secs(40), || {
        gw.log().contains("publisher disconnected").then_some(())
    });
    gw.wait_status(&id, "idle", Duration::from_secs(10));
    let took = started.elapsed();
    let files = files_under(&gw.data_dir.join("recordings").join(&id));
    let playlist = files
        .iter()
        .find(|p| p.file_name().is_some_and(|n| n == "stream.m3u8"))
        .expect("a recording playlist");
    let recorded = listed_seconds(&std::fs::read_to_string(playlist).unwrap());
    println!("srt: recorded {recorded:.1} s of a 10 s clip sent at 3x real time (ffmpeg done after {sent:?}), idle after {took:?}");
    assert!(recorded > 0.5, "recorded only {recorded} s");
    assert!(
        recorded <= took.as_secs_f64() + 1.0 + 0.5,
        "recorded {recorded} s in {took:?}"
    );
}
