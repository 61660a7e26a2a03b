//! End to end: the broadcast lifecycle (`session::lifecycle`) seen from outside, with real
//! peers only: the `onair serve` binary, ffmpeg publishing over RTMP (killed, frozen with
//! `SIGSTOP`, restarted), hls.js in headless Chromium watching, ffprobe/ffmpeg reading the
//! live playlist and the recording, the CLI and the REST API for the status.
//!
//! What is checked: a broadcast outlives its encoder's connection for `reconnect_window`
//! (same broadcast, status `active`, playlist answering, media sequence never going back,
//! `EXT-X-DISCONTINUITY` before the next connection's media, one recording); it ends (`idle`,
//! recording with `EXT-X-ENDLIST`) when the window expires, at once with a window of 0, after
//! `max_continuous_duration`, and after a crash of the gateway once the window has run from
//! the restart; a frozen encoder is replaced by a new one with the same key; segment URLs
//! are never reused by a later broadcast; `audio_only` streams carry no video.
//!
//! Every test starts its own gateway (its own data directory and ports), so they run in
//! parallel; every wait is bounded and panics with the tail of the gateway's log.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use m3u8_rs::MediaPlaylist;
use testkit::encoder::Encoder;
use testkit::gateway::Gateway;
use testkit::http::{get, HttpResponse};
use testkit::player::spawn_hls_js;
use testkit::{ffmpeg_decode_errors, ffprobe, scratch_dir};

/// Frames per second of the fixture (`avc_aac_720p30.flv`).
const FPS: u64 = 30;

fn start(name: &str, extra: &[&str]) -> Gateway {
    Gateway::start(Path::new(env!("CARGO_BIN_EXE_onair")), name, extra)
}

/// The last lines of the gateway's log, for failure messages.
fn log_tail(gw: &Gateway) -> String {
    let log = gw.log();
    let lines: Vec<&str> = log.lines().collect();
    format!(
        "--- onair log, last lines ---\n{}",
        lines[lines.len().saturating_sub(60)..].join("\n")
    )
}

fn unix_ms() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as f64
}

struct Stream {
    id: String,
    key: String,
    playback_id: String,
}

impl Stream {
    fn rtmp_url(&self, gw: &Gateway) -> String {
        format!("rtmp://{}/app/{}", gw.rtmp.unwrap(), self.key)
    }

    fn master_path(&self) -> String {
        format!("/{}.m3u8", self.playback_id)
    }

    fn media_path(&self) -> String {
        format!("/{}/stream.m3u8", self.playback_id)
    }

    /// The path of a segment URI of the media playlist (relative to it).
    fn segment_path(&self, uri: &str) -> String {
        format!("/{}/{uri}", self.playback_id)
    }
}

/// A reduced-latency (2 s segments) live stream, created with the CLI.
fn create(gw: &Gateway, extra: &[&str]) -> Stream {
    let mut args = vec!["--latency-mode", "reduced"];
    args.extend_from_slice(extra);
    let created = gw.create_stream(&args);
    Stream {
        id: created.id,
        key: created.key,
        playback_id: created.playback_id,
    }
}

/// The live stream's API `status`, through the CLI.
fn status(gw: &Gateway, id: &str) -> String {
    gw.status(id)
}

/// `onair live-streams complete ID` (`PUT /video/v1/live-streams/{id}/complete`): it answers
/// once the broadcast has ended, so the stream it prints is already idle.
fn complete(gw: &Gateway, id: &str) {
    let stream = gw.cli(&["live-streams", "complete", id]);
    assert_eq!(stream["status"], "idle", "after complete: {stream}");
}

fn http_get(gw: &Gateway, path: &str) -> HttpResponse {
    get(gw.http.unwrap(), path)
        .unwrap_or_else(|e| panic!("GET {path} failed: {e}\n{}", log_tail(gw)))
}

/// Polls `check` every 200 ms for at most `timeout`; returns when it holds, panics with the
/// gateway's log otherwise.
fn wait_for(gw: &Gateway, what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    loop {
        if check() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}\n{}",
            log_tail(gw)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn parse_playlist(text: &str) -> MediaPlaylist {
    m3u8_rs::parse_media_playlist_res(text.as_bytes())
        .unwrap_or_else(|e| panic!("not a media playlist ({e:?}):\n{text}"))
}

/// `(broadcast_id, N)` of a live segment URI `{BROADCAST_ID}/{N}.ts` (relative).
fn split_uri(uri: &str) -> (&str, u64) {
    let (broadcast, file) = uri
        .split_once('/')
        .unwrap_or_else(|| panic!("segment URI {uri:?} is not BROADCAST_ID/N.ts"));
    assert!(
        !broadcast.is_empty() && !broadcast.contains(':') && !file.contains('/'),
        "segment URI {uri:?} is not a relative BROADCAST_ID/N.ts"
    );
    let n = file
        .strip_suffix(".ts")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("segment URI {uri:?} does not end in N.ts"));
    (broadcast, n)
}

/// `abcdef…/N.ts` for messages: broadcast IDs are long.
fn short_uri(uri: &str) -> String {
    match uri.split_once('/') {
        Some((b, n)) => format!("{}…/{n}", b.get(..6).unwrap_or(b)),
        None => uri.to_owned(),
    }
}

/// Sequence number of the last segment of a playlist.
fn last_sequence(p: &MediaPlaylist) -> Option<u64> {
    (!p.segments.is_empty()).then(|| p.media_sequence + p.segments.len() as u64 - 1)
}

/// One look at a live stream, as a player and an application see it.
#[derive(Debug)]
struct Look {
    /// Since the watcher began.
    at: Duration,
    /// Status of `GET /{PID}/stream.m3u8`.
    http: u16,
    playlist: Option<MediaPlaylist>,
    /// The API status (CLI `live-streams get`).
    status: String,
}

impl Look {
    fn segments(&self) -> usize {
        self.playlist.as_ref().map_or(0, |p| p.segments.len())
    }

    fn last_sequence(&self) -> Option<u64> {
        self.playlist.as_ref().and_then(last_sequence)
    }

    /// Sequence number of the first segment after a discontinuity in this playlist.
    fn discontinuity_at(&self) -> Option<u64> {
        let p = self.playlist.as_ref()?;
        p.segments
            .iter()
            .position(|s| s.discontinuity)
            .map(|i| p.media_sequence + i as u64)
    }
}

/// Polls a live stream's media playlist and status and keeps every look.
struct Watcher<'a> {
    gw: &'a Gateway,
    stream: &'a Stream,
    began: Instant,
    looks: Vec<Look>,
}

impl<'a> Watcher<'a> {
    fn new(gw: &'a Gateway, stream: &'a Stream) -> Self {
        Watcher {
            gw,
            stream,
            began: Instant::now(),
            looks: Vec::new(),
        }
    }

    fn look(&mut self) -> &Look {
        let response = http_get(self.gw, &self.stream.media_path());
        let playlist = (response.status == 200).then(|| parse_playlist(&response.text()));
        let status = status(self.gw, &self.stream.id);
        self.looks.push(Look {
            at: self.began.elapsed(),
            http: response.status,
            playlist,
            status,
        });
        self.looks.last().unwrap()
    }

    /// Looks every 500 ms for `duration`.
    fn watch(&mut self, duration: Duration) {
        let until = Instant::now() + duration;
        while Instant::now() < until {
            self.look();
            let left = until.saturating_duration_since(Instant::now());
            std::thread::sleep(left.min(Duration::from_millis(500)));
        }
    }

    /// Looks every 500 ms until `check` holds (panics after `timeout`).
    fn until(&mut self, what: &str, timeout: Duration, check: impl Fn(&Look) -> bool) {
        let deadline = Instant::now() + timeout;
        loop {
            if check(self.look()) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting for {what}\nlast looks:\n{}\n{}",
                self.summary(6),
                log_tail(self.gw)
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    fn summary(&self, last: usize) -> String {
        self.looks[self.looks.len().saturating_sub(last)..]
            .iter()
            .map(|l| {
                format!(
                    "  {:>6.1}s http {} status {} media-sequence {:?} segments {} discontinuity at {:?} uris {:?}",
                    l.at.as_secs_f64(),
                    l.http,
                    l.status,
                    l.playlist.as_ref().map(|p| p.media_sequence),
                    l.segments(),
                    l.discontinuity_at(),
                    l.playlist
                        .as_ref()
                        .map(|p| p.segments.iter().map(|s| short_uri(&s.uri)).collect::<Vec<_>>())
                        .unwrap_or_default(),
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// One broadcast throughout, from the first look that found it playable: every look
    /// answered 200 with status `active`, the media
    /// sequence never went back, every segment URI names `broadcast`, and once a
    /// discontinuity has left the window `EXT-X-DISCONTINUITY-SEQUENCE` counts it
    /// (RFC 8216 6.2.2). Returns the sequence number of the first segment after a
    /// discontinuity, if one was seen.
    fn assert_one_continuous_broadcast(&self, broadcast: &str) -> Option<u64> {
        let all = || format!("{}\n{}", self.summary(40), log_tail(self.gw));
        let mut last_sequence = 0;
        let mut discontinuity = None;
        let first_playable = self
            .looks
            .iter()
            .position(|l| l.http == 200)
            .unwrap_or_else(|| panic!("the broadcast was never playable:\n{}", all()));
        for look in &self.looks[first_playable..] {
            assert!(
                look.http == 200 && look.status == "active",
                "at {:?} the broadcast was not live (http {}, status {}):\n{}",
                look.at,
                look.http,
                look.status,
                all()
            );
            let p = look.playlist.as_ref().unwrap();
            assert!(
                p.media_sequence >= last_sequence,
                "EXT-X-MEDIA-SEQUENCE went back from {last_sequence} to {} at {:?}:\n{}",
                p.media_sequence,
                look.at,
                all()
            );
            last_sequence = p.media_sequence;
            for (i, s) in p.segments.iter().enumerate() {
                let (b, n) = split_uri(&s.uri);
                assert_eq!(b, broadcast, "a segment of another broadcast:\n{}", all());
                assert_eq!(
                    n,
                    p.media_sequence + i as u64,
                    "URI number and media sequence disagree:\n{}",
                    all()
                );
            }
            if let Some(at) = look.discontinuity_at() {
                discontinuity.get_or_insert(at);
            }
            if discontinuity.is_some_and(|d| p.media_sequence > d) {
                assert!(
                    p.discontinuity_sequence >= 1,
                    "the discontinuity left the window without EXT-X-DISCONTINUITY-SEQUENCE \
                     counting it (at {:?}):\n{}",
                    look.at,
                    all()
                );
            }
        }
        discontinuity
    }
}

/// The broadcast directories of a live stream's recordings.
fn recordings(gw: &Gateway, stream: &Stream) -> Vec<PathBuf> {
    let dir = gw.data_dir.join("recordings").join(&stream.id);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut dirs: Vec<PathBuf> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs
}

/// The only recording of a live stream; panics if there is not exactly one.
fn only_recording(gw: &Gateway, stream: &Stream) -> PathBuf {
    let dirs = recordings(gw, stream);
    assert_eq!(
        dirs.len(),
        1,
        "expected one recording (one broadcast), found {dirs:?}\n{}",
        log_tail(gw)
    );
    dirs.into_iter().next().unwrap()
}

/// Checks that a recording is finished (VOD, `EXT-X-ENDLIST`) and decodes without an
/// error from end to end; returns its playlist.
fn assert_finished_recording(gw: &Gateway, dir: &Path) -> MediaPlaylist {
    let path = dir.join("stream.m3u8");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "no recording playlist {}: {e}\n{}",
            path.display(),
            log_tail(gw)
        )
    });
    assert!(
        text.ends_with("#EXT-X-ENDLIST\n"),
        "the recording did not end with EXT-X-ENDLIST:\n{text}\n{}",
        log_tail(gw)
    );
    assert!(
        text.contains("#EXT-X-PLAYLIST-TYPE:VOD"),
        "the ended recording is not a VOD playlist:\n{text}"
    );
    let playlist = parse_playlist(&text);
    assert!(!playlist.segments.is_empty(), "an empty recording:\n{text}");
    for s in &playlist.segments {
        assert!(
            dir.join(&s.uri).is_file(),
            "the recording lists {} but has no such file:\n{text}",
            s.uri
        );
    }
    let errors = ffmpeg_decode_errors(&path);
    assert!(
        errors.trim().is_empty(),
        "the recording {} does not decode cleanly:\n{errors}",
        path.display()
    );
    playlist
}

/// Video frames ffprobe counts in `input` (a playlist or a segment).
/// An encoder dies inside a 30 s window and a new one comes back 5 s later, while hls.js in
/// Chromium watches: the viewer goes on playing (slate, then the second connection's media)
/// after the discontinuity, and the recording is one broadcast holding both connections and
/// the slate between them (`e2e_slate.rs` checks the slate itself).
#[test]
fn reconnect_inside_the_window_keeps_the_player_playing() {
    const PLAY_SECONDS: u32 = 35;
    let started = Instant::now();
    let gw = start("e2e_lifecycle_reconnect", &[]);
    let http = gw.http.unwrap();
    let stream = create(&gw, &["--reconnect-window", "30"]);
    let mut first = Encoder::ffmpeg_720p(&stream.rtmp_url(&gw), None);
    let mut watcher = Watcher::new(&gw, &stream);
    watcher.until("the first playable segment", Duration::from_secs(20), |l| {
        l.http == 200 && l.segments() >= 1
    });
    assert_eq!(watcher.looks.last().unwrap().status, "active");

    let player_started = Instant::now();
    let player = spawn_hls_js(
        &format!("http://{http}{}", stream.master_path()),
        PLAY_SECONDS,
        false,
    );
    // The browser starts and plays the first connection.
    watcher.watch(Duration::from_secs(10));
    let broadcast = {
        let p = watcher.looks.last().unwrap().playlist.as_ref().unwrap();
        split_uri(&p.segments[0].uri).0.to_owned()
    };

    let killed_wall = unix_ms();
    first.kill();
    // Inside the window: still active, the playlist still answers.
    watcher.watch(Duration::from_secs(5));
    let mut second = Encoder::ffmpeg_720p(&stream.rtmp_url(&gw), None);
    watcher.until(
        "a segment of the second connection after a discontinuity",
        Duration::from_secs(15),
        |l| l.discontinuity_at().is_some(),
    );
    // Keep watching while the player plays on.
    let player_done = player_started + Duration::from_secs(u64::from(PLAY_SECONDS) + 3);
    watcher.watch(player_done.saturating_duration_since(Instant::now()));
    let report = player.wait();
    let summary = report.summary();
    assert!(
        second.try_wait().is_none(),
        "the second encoder stopped: {}\n{}",
        second.stderr(),
        log_tail(&gw)
    );

    let discontinuity = watcher.assert_one_continuous_broadcast(&broadcast);
    let discontinuity = discontinuity
        .expect("no EXT-X-DISCONTINUITY seen in the live playlist after the reconnect");

    // The end of the broadcast: the encoder leaves, `complete` ends it without waiting.
    second.kill();
    complete(&gw, &stream.id);
    assert_eq!(status(&gw, &stream.id), "idle", "{}", log_tail(&gw));
    assert_eq!(http_get(&gw, &stream.master_path()).status, 412);

    // The viewer.
    assert!(
        report.environment.mse_h264_aac,
        "this Chromium cannot play H.264/AAC through MSE:\n{summary}"
    );
    assert!(
        report.fatal_errors.is_empty(),
        "hls.js hit a fatal error:\n{summary}"
    );
    assert!(
        report
            .samples
            .iter()
            .any(|s| s.t_wall < killed_wall && s.current_time > 0.5),
        "the player was not playing yet when the first encoder was killed:\n{summary}"
    );
    assert!(
        report
            .frags
            .iter()
            .any(|f| f.event == "changed" && f.cc >= 1),
        "the player never played a segment after the discontinuity:\n{summary}"
    );
    assert!(
        report
            .frags
            .iter()
            .filter(|f| f.event == "loaded")
            .all(|f| (f.sn >= discontinuity) == (f.cc >= 1)),
        "hls.js numbered the discontinuity (at sn {discontinuity}) differently:\n{summary}"
    );

    // The recording: one directory, both connections, one discontinuity between them.
    let dir = only_recording(&gw, &stream);
    assert_eq!(
        dir.file_name().unwrap().to_str().unwrap(),
        broadcast,
        "the recording directory is not named after the broadcast"
    );
    let recording = assert_finished_recording(&gw, &dir);
    let cut = recording
        .segments
        .iter()
        .position(|s| s.discontinuity)
        .expect("no EXT-X-DISCONTINUITY in the recording");
    assert_eq!(
        recording
            .segments
            .iter()
            .filter(|s| s.discontinuity)
            .count(),
        2,
        "one reconnect of a reduced-latency stream: slate between the connections, a \
         discontinuity at each of its edges"
    );
    assert_eq!(
        recording.segments[cut].uri,
        format!("{discontinuity}.ts"),
        "the recording and the live playlist put the discontinuity in different places"
    );
    // Everything the first connection could have given this viewer: its segments from the
    // first the player loaded. Played time beyond that came from the second connection.
    let first_loaded = report
        .frags
        .iter()
        .filter(|f| f.event == "loaded")
        .map(|f| f.sn)
        .min()
        .unwrap();
    let first_connection_seconds: f64 = recording.segments[..cut]
        .iter()
        .filter(|s| s.uri.trim_end_matches(".ts").parse::<u64>().unwrap() >= first_loaded)
        .map(|s| f64::from(s.duration))
        .sum();
    assert!(
        report.played_seconds > first_connection_seconds + 4.0,
        "played {:.1} s, but the first connection alone offered {first_connection_seconds:.1} s \
         from sn {first_loaded}:\n{summary}",
        report.played_seconds
    );
    let frames_first: u64 = recording.segments[..cut]
        .iter()
        .map(|s| testkit::video_frame_count(&dir.join(&s.uri)))
        .sum();
    let frames_all = testkit::video_frame_count(&dir.join("stream.m3u8"));
    assert!(
        frames_first >= 5 * FPS && frames_all >= frames_first + 10 * FPS,
        "the recording has {frames_all} video frames, {frames_first} of them from the first \
         connection: the second connection is missing"
    );
    eprintln!(
        "reconnect: played {:.1} s ({} stalls; the first connection offered {first_connection_seconds:.1} s), \
         recording {frames_all} frames ({frames_first} before the discontinuity), took {:?}",
        report.played_seconds,
        report.stalls,
        started.elapsed()
    );
}

/// Kills the encoder of an active stream with `window` seconds of reconnect window and
/// returns how long after the kill the status was first seen `idle` (looking every 200 ms);
/// every look before that must show `active` and a playlist answering 200.
fn idle_after_encoder_dies(name: &str, window: u64) -> (Gateway, Stream, Duration) {
    let gw = start(name, &[]);
    let stream = create(&gw, &["--reconnect-window", &window.to_string()]);
    let mut encoder = Encoder::ffmpeg_720p(&stream.rtmp_url(&gw), None);
    wait_for(&gw, "status active", Duration::from_secs(20), || {
        status(&gw, &stream.id) == "active"
    });
    let killed = Instant::now();
    encoder.kill();
    let deadline = killed + Duration::from_secs(window + 10);
    loop {
        let now = status(&gw, &stream.id);
        let at = killed.elapsed();
        if now == "idle" {
            return (gw, stream, at);
        }
        assert_eq!(
            now,
            "active",
            "{at:?} after the encoder died (window {window} s)\n{}",
            log_tail(&gw)
        );
        let playlist = http_get(&gw, &stream.media_path());
        // The look may race the expiry: only a 200 or, once it expired, a 412 is right.
        assert!(
            playlist.status == 200 || (playlist.status == 412 && status(&gw, &stream.id) == "idle"),
            "{at:?} after the encoder died (window {window} s) the playlist answered {}\n{}",
            playlist.status,
            log_tail(&gw)
        );
        assert!(
            Instant::now() < deadline,
            "still active {:?} after the encoder died (window {window} s)\n{}",
            killed.elapsed(),
            log_tail(&gw)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn window_expiry_goes_idle() {
    let (gw, stream, idle_after) = idle_after_encoder_dies("e2e_lifecycle_window_expiry", 3);
    assert!(
        idle_after >= Duration::from_millis(2900),
        "idle {idle_after:?} after the encoder died, before its 3 s window expired\n{}",
        log_tail(&gw)
    );
    assert!(
        idle_after <= Duration::from_secs(6),
        "idle only {idle_after:?} after the encoder died (window 3 s)\n{}",
        log_tail(&gw)
    );
    assert_eq!(http_get(&gw, &stream.master_path()).status, 412);
    assert_finished_recording(&gw, &only_recording(&gw, &stream));
}

#[test]
fn window_zero_goes_idle_at_once() {
    let (gw, stream, idle_after) = idle_after_encoder_dies("e2e_lifecycle_window_zero", 0);
    assert!(
        idle_after <= Duration::from_secs(2),
        "idle only {idle_after:?} after the encoder died (window 0)\n{}",
        log_tail(&gw)
    );
    assert_eq!(http_get(&gw, &stream.master_path()).status, 412);
    assert_finished_recording(&gw, &only_recording(&gw, &stream));
}

/// A segment URL of a first broadcast never names other bytes in a later broadcast of the
/// same stream (segments are cached as `immutable`).
#[test]
fn segment_urls_are_never_reused() {
    let gw = start("e2e_lifecycle_segment_urls", &[]);
    let stream = create(&gw, &["--reconnect-window", "0"]);

    // Broadcast 1: its segments and their bytes.
    let mut encoder = Encoder::ffmpeg_720p(&stream.rtmp_url(&gw), None);
    let mut text = String::new();
    wait_for(&gw, "two segments", Duration::from_secs(20), || {
        let r = http_get(&gw, &stream.media_path());
        text = r.text();
        r.status == 200 && parse_playlist(&text).segments.len() >= 2
    });
    let first: Vec<(String, Vec<u8>)> = parse_playlist(&text)
        .segments
        .iter()
        .map(|s| {
            let r = http_get(&gw, &stream.segment_path(&s.uri));
            assert_eq!(r.status, 200, "{}: {}", s.uri, r.text());
            (s.uri.clone(), r.body)
        })
        .collect();
    let broadcast1 = split_uri(&first[0].0).0.to_owned();
    encoder.kill();
    wait_for(
        &gw,
        "idle after broadcast 1",
        Duration::from_secs(10),
        || status(&gw, &stream.id) == "idle",
    );

    // Broadcast 2 of the same stream.
    let mut encoder = Encoder::ffmpeg_720p(&stream.rtmp_url(&gw), None);
    wait_for(
        &gw,
        "two segments of broadcast 2",
        Duration::from_secs(20),
        || {
            let r = http_get(&gw, &stream.media_path());
            text = r.text();
            r.status == 200
                && parse_playlist(&text).segments.len() >= first.len()
                && split_uri(&parse_playlist(&text).segments[0].uri).0 != broadcast1
        },
    );
    let second = parse_playlist(&text);
    let broadcast2 = split_uri(&second.segments[0].uri).0.to_owned();
    for s in &second.segments {
        assert!(
            first.iter().all(|(uri, _)| uri != &s.uri),
            "broadcast 2 reuses the URI {} of broadcast 1",
            s.uri
        );
    }
    for (uri, bytes) in &first {
        let r = http_get(&gw, &stream.segment_path(uri));
        assert!(
            r.status == 404 || (r.status == 200 && &r.body == bytes),
            "{uri} of broadcast 1 answered {} with {} bytes ({} then) during broadcast 2",
            r.status,
            r.body.len(),
            bytes.len()
        );
    }
    encoder.kill();
    wait_for(
        &gw,
        "idle after broadcast 2",
        Duration::from_secs(10),
        || status(&gw, &stream.id) == "idle",
    );
    let names: Vec<String> = recordings(&gw, &stream)
        .iter()
        .map(|d| d.file_name().unwrap().to_str().unwrap().to_owned())
        .collect();
    let mut expected = vec![broadcast1, broadcast2];
    expected.sort();
    assert_eq!(names, expected, "one recording per broadcast");
}

/// `max_continuous_duration` 60: the encoder is disconnected 60 s after the stream went
/// active and the stream goes idle at once (its 30 s reconnect window is not waited for).
#[test]
fn max_continuous_duration_disconnects_the_encoder() {
    let gw = start("e2e_lifecycle_max_duration", &[]);
    let stream = create(
        &gw,
        &[
            "--reconnect-window",
            "30",
            "--max-continuous-duration",
            "60",
        ],
    );
    assert_eq!(
        gw.cli(&["live-streams", "get", &stream.id])["max_continuous_duration"],
        60
    );
    let mut encoder = Encoder::ffmpeg_720p(&stream.rtmp_url(&gw), Some(90));
    wait_for(&gw, "status active", Duration::from_secs(20), || {
        status(&gw, &stream.id) == "active"
    });
    let active = Instant::now();
    // Active all along until the limit; the encoder is still pushing.
    let exited = loop {
        if let Some(exit) = encoder.wait_timeout(Duration::from_secs(2)) {
            break exit;
        }
        let at = active.elapsed();
        assert!(
            at < Duration::from_secs(70),
            "the encoder was not disconnected within 70 s of the stream going active\n{}",
            log_tail(&gw)
        );
        if at < Duration::from_secs(55) {
            assert_eq!(
                status(&gw, &stream.id),
                "active",
                "{at:?}\n{}",
                log_tail(&gw)
            );
        }
    };
    let after = active.elapsed();
    assert!(
        after >= Duration::from_secs(55),
        "the encoder was disconnected {after:?} after the stream went active (limit 60 s): {}\n{}",
        encoder.stderr(),
        log_tail(&gw)
    );
    assert!(
        !exited.success(),
        "ffmpeg finished normally: it was not disconnected"
    );
    wait_for(
        &gw,
        "idle after the limit (not after the reconnect window)",
        Duration::from_secs(5),
        || status(&gw, &stream.id) == "idle",
    );
    assert_eq!(http_get(&gw, &stream.master_path()).status, 412);
    assert_finished_recording(&gw, &only_recording(&gw, &stream));
}

/// `audio_only`: the live HLS has one audio stream and no video, though the encoder sends
/// both.
#[test]
fn audio_only_streams_are_audio_only() {
    let gw = start("e2e_lifecycle_audio_only", &[]);
    let stream = create(&gw, &["--reconnect-window", "0", "--audio-only"]);
    let mut encoder = Encoder::ffmpeg_720p(&stream.rtmp_url(&gw), None);
    wait_for(&gw, "two segments", Duration::from_secs(20), || {
        let r = http_get(&gw, &stream.media_path());
        r.status == 200 && parse_playlist(&r.text()).segments.len() >= 2
    });
    let master = http_get(&gw, &stream.master_path()).text();
    assert!(
        master.contains("mp4a.40.2") && !master.contains("avc1") && !master.contains("RESOLUTION"),
        "the multivariant playlist announces video:\n{master}"
    );
    let url = format!("http://{}{}", gw.http.unwrap(), stream.media_path());
    let probe = ffprobe(&["-show_entries", "stream=codec_type,codec_name", &url]);
    let streams = probe["streams"].as_array().unwrap();
    assert_eq!(
        streams.len(),
        1,
        "ffprobe sees {} streams in {url}: {probe}",
        streams.len()
    );
    assert_eq!(streams[0]["codec_type"], "audio", "{probe}");
    assert_eq!(streams[0]["codec_name"], "aac", "{probe}");
    encoder.kill();
    wait_for(&gw, "idle", Duration::from_secs(10), || {
        status(&gw, &stream.id) == "idle"
    });
    let dir = only_recording(&gw, &stream);
    assert_finished_recording(&gw, &dir);
    let probe = ffprobe(&[
        "-show_entries",
        "stream=codec_type",
        dir.join("stream.m3u8").to_str().unwrap(),
    ]);
    assert_eq!(
        probe["streams"].as_array().unwrap().len(),
        1,
        "the recording: {probe}"
    );
}

/// An encoder frozen with `SIGSTOP` keeps its TCP connection open and sends nothing. A new
/// encoder with the same key is refused while the old one has been silent for less than
/// `stale_publisher_after_secs` (3 s here), and replaces it afterwards: the broadcast goes on.
/// (3 s rather than less: ffmpeg's start under the load of the parallel tests must not
/// reach the threshold.)
#[test]
fn a_frozen_encoder_is_replaced() {
    let config = scratch_dir("e2e_lifecycle_frozen_config").join("onair.toml");
    std::fs::write(&config, "[broadcasts]\nstale_publisher_after_secs = 3.0\n").unwrap();
    let gw = start(
        "e2e_lifecycle_frozen",
        &["--config", config.to_str().unwrap()],
    );
    let stream = create(&gw, &["--reconnect-window", "30"]);
    let mut frozen = Encoder::ffmpeg_720p(&stream.rtmp_url(&gw), None);
    let mut watcher = Watcher::new(&gw, &stream);
    watcher.until("two segments", Duration::from_secs(20), |l| {
        l.http == 200 && l.segments() >= 2
    });
    let broadcast = {
        let p = watcher.looks.last().unwrap().playlist.as_ref().unwrap();
        split_uri(&p.segments[0].uri).0.to_owned()
    };

    frozen.freeze();
    let frozen_at = Instant::now();
    let frozen_last = watcher.look().last_sequence().unwrap();

    // Silent for less than 3 s: a second encoder is refused, the frozen one keeps the slot.
    let early_started = frozen_at.elapsed();
    let mut early = Encoder::ffmpeg_720p(&stream.rtmp_url(&gw), Some(10));
    let refused = early.wait_timeout(Duration::from_secs(5));
    assert!(
        refused.is_some_and(|s| !s.success()),
        "an encoder started {early_started:?} after the publisher fell silent (threshold 3 s) \
         was not refused ({refused:?})\n{}",
        log_tail(&gw)
    );

    // Silent for longer: the new encoder takes over the broadcast.
    watcher.watch(Duration::from_millis(3500).saturating_sub(frozen_at.elapsed()));
    let replacement_started = Instant::now();
    let mut replacement = Encoder::ffmpeg_720p(&stream.rtmp_url(&gw), None);
    watcher.until(
        "segments from the replacement encoder",
        Duration::from_secs(12),
        |l| l.last_sequence().is_some_and(|s| s > frozen_last + 1),
    );
    eprintln!(
        "frozen: the replacement's media was listed {:?} after it started",
        replacement_started.elapsed()
    );

    // The old encoder, thawed, finds its connection closed.
    frozen.thaw();
    let old_exit = frozen.wait_timeout(Duration::from_secs(10));
    assert!(
        old_exit.is_some_and(|s| !s.success()),
        "the replaced encoder's connection was not closed: thawed, it still runs ({old_exit:?})\n{}",
        log_tail(&gw)
    );
    // ...and the broadcast goes on with the replacement.
    let before = watcher.look().last_sequence().unwrap();
    watcher.until("the broadcast to go on", Duration::from_secs(8), |l| {
        l.last_sequence().is_some_and(|s| s >= before + 2)
    });
    assert!(
        replacement.try_wait().is_none(),
        "the replacement encoder stopped: {}\n{}",
        replacement.stderr(),
        log_tail(&gw)
    );
    let discontinuity = watcher.assert_one_continuous_broadcast(&broadcast);
    assert!(
        discontinuity.is_some_and(|d| d > frozen_last),
        "no discontinuity after the frozen encoder's last segment {frozen_last}:\n{}",
        watcher.summary(40)
    );

    replacement.kill();
    frozen.kill();
    complete(&gw, &stream.id);
    assert_eq!(status(&gw, &stream.id), "idle");
    assert_finished_recording(&gw, &only_recording(&gw, &stream));
}

/// The event types of a live stream's event log, in order.
fn event_types(gw: &Gateway, stream: &Stream) -> Vec<String> {
    gw.event_log(&stream.id, "event_type")
}

/// `kill -9` of the gateway mid-broadcast, then a restart on the same data directory: the
/// unfinished broadcast is found again, stays `active` for its reconnect window (from the
/// restart), then goes idle with its recording ended and decodable.
#[test]
fn kill_9_then_restart_reconciles() {
    const WINDOW: u64 = 10;
    let mut gw = start("e2e_lifecycle_kill9", &[]);
    let stream = create(&gw, &["--reconnect-window", &WINDOW.to_string()]);
    let mut encoder = Encoder::ffmpeg_720p(&stream.rtmp_url(&gw), None);
    wait_for(
        &gw,
        "two recorded segments",
        Duration::from_secs(20),
        || {
            recordings(&gw, &stream).first().is_some_and(|d| {
                std::fs::read_to_string(d.join("stream.m3u8"))
                    .is_ok_and(|t| t.matches("#EXTINF").count() >= 2)
            })
        },
    );
    assert_eq!(status(&gw, &stream.id), "active");

    gw.kill9();
    encoder.kill();
    let restarted = Instant::now();
    gw.restart();
    let mut seen = Vec::new();
    let idle_after = loop {
        let now = status(&gw, &stream.id);
        let at = restarted.elapsed();
        seen.push((at, now.clone()));
        if now == "idle" {
            break at;
        }
        assert_eq!(
            now,
            "active",
            "{at:?} after the restart (window {WINDOW} s); seen: {seen:?}\n{}",
            log_tail(&gw)
        );
        assert!(
            at < Duration::from_secs(WINDOW + 15),
            "still active {at:?} after the restart (window {WINDOW} s)\n{}",
            log_tail(&gw)
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(
        idle_after >= Duration::from_millis(WINDOW * 1000 - 500),
        "idle {idle_after:?} after the restart: the {WINDOW} s window did not run from the \
         restart; seen: {seen:?}\n{}",
        log_tail(&gw)
    );
    assert_eq!(http_get(&gw, &stream.master_path()).status, 412);
    let recording = only_recording(&gw, &stream);
    assert_finished_recording(&gw, &recording);
    // The asset counts what reached the disk before the crash too (the previous run wrote
    // its measurements only at its transitions).
    let (_, live) = gw.api("GET", &format!("/live-streams/{}", stream.id), None);
    let asset_id = live["data"]["recent_asset_ids"][0]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, asset) = gw.api("GET", &format!("/assets/{asset_id}"), None);
    let probed = testkit::ffprobe(&[
        "-show_entries",
        "format=duration",
        recording.join("stream.m3u8").to_str().unwrap(),
    ]);
    let on_disk: f64 = probed["format"]["duration"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let duration = asset["data"]["duration"].as_f64().unwrap();
    assert!(
        (duration - on_disk).abs() < 0.5,
        "the asset says {duration} s, the recording holds {on_disk} s: {asset}"
    );

    // The restored broadcast's asset is completed with it.
    let all = event_types(&gw, &stream);
    assert_eq!(
        all[all.len().saturating_sub(3)..],
        [
            "video.live_stream.idle",
            "video.asset.ready",
            "video.asset.live_stream_completed"
        ],
        "{all:?}"
    );
    let events: Vec<String> = all
        .into_iter()
        .filter(|e| !e.starts_with("video.asset."))
        .collect();
    let position = |t: &str| events.iter().rposition(|e| e == t);
    let (active, disconnected, idle) = (
        position("video.live_stream.active"),
        position("video.live_stream.disconnected"),
        position("video.live_stream.idle"),
    );
    assert!(
        active.is_some() && active < disconnected && disconnected < idle,
        "the event log does not end active -> disconnected -> idle: {events:?}"
    );
    assert_eq!(
        events.last().map(String::as_str),
        Some("video.live_stream.idle"),
        "{events:?}"
    );
}
