//! `onair-loadgen`: a cheap RTMP or SRT load generator with an HLS glass-to-glass latency
//! probe.
//!
//! One process replays one FLV file (read once into memory, shared by every publisher) to N
//! publishers, in real time, looping it with continuous timestamps, each publisher to its own
//! stream key. The URL's scheme chooses the protocol:
//!
//! * `rtmp://HOST:PORT/APP`: RTMP publishers sending the FLV tags, paced by the tag timestamps.
//! * `srt://HOST:PORT`: SRT callers (srt-tokio) with the stream key as `streamid` and, with
//!   `--passphrases-file`, the stream's passphrase (AES-128 unless `--srt-key-size` says 24 or
//!   32). The clip is remuxed once, in memory, to MPEG-TS by the gateway's own FLV demuxer and
//!   TS muxer (PAT/PMT before every keyframe, PCR on every video PES), padded with null
//!   packets to whole 7 x 188 = 1316-byte payloads and shared; each payload is sent when the
//!   media time of its last packet is due. Later loops send patched copies (PTS, DTS and PCR
//!   moved on by the loop length, continuity counters carried on), so the server sees one
//!   continuous stream. At the end a caller completes the frame in flight (the rest of that
//!   payload null packets), keeps the connection open for 1 s so that SRT delivers or
//!   recovers the tail (live mode drops what is in flight when a connection closes), then
//!   closes.
//!
//! Optionally it polls the live HLS media playlist of the first `--probe K` publishers and
//! measures, for every new segment, the delay between sending the keyframe that closes the
//! segment and the segment being downloadable.
//!
//! ```text
//! onair-loadgen --url rtmp://127.0.0.1:5222/app \
//!     (--keys-file keys.txt | --key-prefix stream --streams 50) \
//!     --file target/fixtures/avc_aac_720p30.flv --duration-secs 60 --ramp-ms 20 \
//!     [--probe 1 --probe-url-template 'http://127.0.0.1:8080/{key}/stream.m3u8' \
//!      --probe-ids-file playback_ids.txt] [--report report.json]
//! onair-loadgen --url srt://127.0.0.1:6001 --keys-file keys.txt \
//!     --passphrases-file passphrases.txt --file target/fixtures/avc_aac_720p30.flv ...
//! ```
//!
//! * `--keys-file`: one stream key per line (N = number of non-empty lines); or
//!   `--key-prefix P --streams N` for keys `P0`..`P{N-1}`.
//! * `--passphrases-file` (SRT only): one SRT passphrase per line, aligned with the keys (for
//!   OnAir, each live stream's `srt_passphrase`). Without it the callers do not encrypt.
//! * `--probe-ids-file`: one probe identifier per line, aligned with the keys (for OnAir the
//!   playback ID, for nginx-rtmp the stream key); `{key}` in the template is replaced by it
//!   (default: the stream key itself).
//! * `--probe-start-secs S` / `--probe-secs D`: the probe starts S seconds after its publisher
//!   and polls for D seconds (default: from the start, while the publisher runs), so that a
//!   CPU measurement or a `wrk` run in another window is not loaded by it. The probe matches
//!   segments to keyframes by media time, counted from the first segment it sees: with S > 0
//!   it must start before the stream's first segment (`compare.sh` uses S = 0 and a
//!   measurement window after the probe's).
//! * A refused publish (RTMP status, SRT handshake rejection), a disconnect or any error is
//!   recorded for that publisher, which does not retry. The process exits with status 1 when
//!   any publisher had an error.
//! * The report (stdout summary and `--report` JSON), the same for both protocols, holds
//!   per-publisher counters (keys cut to their first 4 characters), totals, the keyframe send
//!   times of the probed publishers, the probe's per-segment delays with p50/p95/max, the
//!   generator's own CPU time, and the clip's frame counts, among them the audio frames sent
//!   before the first video keyframe.
//!   `publishers[i]` is the i-th key; its `video_frames` / `audio_frames` are the coded frames
//!   sent (tags without one, such as the AVC end-of-sequence that ends an FLV file written by
//!   ffmpeg, are sent on every loop but not counted; over SRT a frame counts once its last TS
//!   packet is sent). `bytes_sent` is RTMP bytes written to TCP, or SRT payload bytes (1316
//!   per payload, SRT/UDP headers not included). `protocol` says which. SRT adds the clip's
//!   payloads and TS packets per loop (`clip.ts_payloads` / `clip.ts_packets`) and the
//!   callers' sender counters (`srt`: packets, retransmissions, NAKs received, packets dropped
//!   as too late) per publisher and in `totals`.

#![forbid(unsafe_code)]

use std::collections::HashSet;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use clap::Parser;
use media::flv::{FlvReader, TagKind};
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::sessions::{
    ClientSession, ClientSessionConfig, ClientSessionEvent, ClientSessionResult, PublishRequestType,
};
use rml_rtmp::time::RtmpTimestamp;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::{sleep, sleep_until, timeout, Instant};

#[path = "loadgen/srt_caller.rs"]
mod srt_caller;
#[path = "loadgen/ts_clip.rs"]
mod ts_clip;

use srt_caller::SrtTarget;
use ts_clip::TsClip;

/// How long connecting, handshaking and getting the publish accepted may take.
const SETUP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one HTTP request of the probe may take.
const HTTP_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the probe reloads the playlist.
const POLL_INTERVAL: Duration = Duration::from_millis(5);
/// How far (ms) a segment's computed end may be from a sent keyframe to be matched with it.
const MATCH_TOLERANCE_MS: f64 = 40.0;

#[derive(Debug, Parser)]
#[command(
    name = "onair-loadgen",
    about = "RTMP or SRT load generator (N publishers replaying one FLV) with an HLS latency probe"
)]
struct Args {
    /// RTMP URL of the application (rtmp://127.0.0.1:5222/app) or SRT listener (srt://127.0.0.1:6001)
    #[arg(long, default_value = "rtmp://127.0.0.1:5222/app")]
    url: String,
    /// File with one stream key per line
    #[arg(long, conflicts_with = "key_prefix")]
    keys_file: Option<PathBuf>,
    /// SRT: file with one passphrase per line, aligned with the keys (default: no encryption)
    #[arg(long)]
    passphrases_file: Option<PathBuf>,
    /// SRT: AES key length in bytes with a passphrase (16, 24 or 32)
    #[arg(long, default_value_t = 16)]
    srt_key_size: u16,
    /// SRT: the latency the callers ask for, in ms (the connection uses the larger of theirs
    /// and the listener's); 120 is libsrt's, ffmpeg's and OBS's default
    #[arg(long, default_value_t = 120)]
    srt_latency_ms: u64,
    /// Prefix of generated stream keys (with --streams)
    #[arg(long)]
    key_prefix: Option<String>,
    /// Number of publishers with --key-prefix
    #[arg(long, default_value_t = 1)]
    streams: usize,
    /// FLV file to replay
    #[arg(long)]
    file: PathBuf,
    /// How long each publisher publishes, in seconds
    #[arg(long, default_value_t = 60)]
    duration_secs: u64,
    /// Delay between the starts of consecutive publishers, in milliseconds
    #[arg(long, default_value_t = 20)]
    ramp_ms: u64,
    /// Where to write the JSON report
    #[arg(long)]
    report: Option<PathBuf>,
    /// How many publishers (the first K) record keyframe send times and are probed
    #[arg(long, default_value_t = 1)]
    probe: usize,
    /// Live media playlist URL, `{key}` replaced by the probe id (enables the latency probe)
    #[arg(long)]
    probe_url_template: Option<String>,
    /// File with one probe id per line, aligned with the keys (default: the key itself)
    #[arg(long)]
    probe_ids_file: Option<PathBuf>,
    /// The probe starts this many seconds after its publisher (so that a CPU measurement
    /// before it sees no HLS request at all)
    #[arg(long, default_value_t = 0)]
    probe_start_secs: u64,
    /// The probe stops after polling this many seconds (default: while its publisher runs)
    #[arg(long)]
    probe_secs: Option<u64>,
}

// ---------------------------------------------------------------------------------------------
// The clip

/// One audio or video tag of the clip, timestamps relative to the clip's first tag.
#[derive(Debug)]
struct Tag {
    video: bool,
    ts: u64,
    /// Whether it carries a coded frame (what `video_frames` / `audio_frames` count).
    frame: bool,
    keyframe: bool,
    body: Bytes,
}

/// The FLV file, in memory, shared by all publishers.
#[derive(Debug)]
struct Clip {
    /// Sequence headers (sent once, first).
    headers: Vec<Tag>,
    /// Media tags, in file order.
    tags: Vec<Tag>,
    /// What each loop adds to the timestamps: the file's duration plus one frame interval.
    loop_ms: u64,
    /// Audio frames sent before the first video keyframe (a server that starts its output at a
    /// keyframe drops them once per publish).
    audio_before_first_keyframe: usize,
}

fn is_sequence_header(video: bool, body: &[u8]) -> bool {
    let (Some(&b0), b1) = (body.first(), body.get(1).copied()) else {
        return false;
    };
    if video {
        if b0 & 0x80 != 0 {
            b0 & 0x0f == 0 // enhanced RTMP: PacketTypeSequenceStart
        } else {
            matches!(b0 & 0x0f, 7 | 12) && b1 == Some(0) // AVC / HEVC: AVCPacketType 0
        }
    } else {
        b0 >> 4 == 10 && b1 == Some(0) // AAC sequence header
    }
}

/// Whether a tag that is not a sequence header carries a coded frame: not an AVC/HEVC
/// end-of-sequence (ffmpeg ends every FLV file with one), a video command frame or enhanced
/// RTMP metadata. Those are still sent, but not counted as frames.
fn is_frame(video: bool, body: &[u8]) -> bool {
    let (Some(&b0), b1) = (body.first(), body.get(1).copied()) else {
        return false;
    };
    if video {
        if b0 & 0x80 != 0 {
            matches!(b0 & 0x0f, 1 | 3) // enhanced RTMP: CodedFrames, CodedFramesX
        } else if (b0 >> 4) & 0x07 == 5 {
            false // video info / command frame
        } else if matches!(b0 & 0x0f, 7 | 12) {
            b1 == Some(1) // AVC / HEVC: AVCPacketType 1 (NALUs), not 2 (end of sequence)
        } else {
            true
        }
    } else {
        b0 >> 4 != 10 || b1 == Some(1) // AAC raw frame
    }
}

fn load_clip(path: &PathBuf) -> Result<Clip, String> {
    let data = std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let reader =
        FlvReader::new(Bytes::from(data)).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut raw = Vec::new();
    for tag in reader {
        let tag = tag.map_err(|e| format!("{}: {e}", path.display()))?;
        let video = match tag.kind {
            TagKind::Video => true,
            TagKind::Audio => false,
            TagKind::Script => continue,
        };
        raw.push((video, tag.timestamp, tag.body));
    }
    let first_ts = raw
        .iter()
        .map(|t| t.1)
        .min()
        .ok_or("the FLV file has no audio or video")?;
    let (mut headers, mut tags) = (Vec::new(), Vec::new());
    for (video, ts, body) in raw {
        let seq = is_sequence_header(video, &body);
        let frame = !seq && is_frame(video, &body);
        let keyframe = video && frame && body.first().is_some_and(|b| (b >> 4) & 0x07 == 1);
        let tag = Tag {
            video,
            ts: u64::from(ts - first_ts),
            frame,
            keyframe,
            body,
        };
        if seq {
            if !headers.iter().any(|h: &Tag| h.video == video) {
                headers.push(tag);
            }
        } else {
            tags.push(tag);
        }
    }
    let last = tags
        .iter()
        .map(|t| t.ts)
        .max()
        .ok_or("the FLV file has no media tags")?;
    // The frame interval: the average video (else audio) tag spacing.
    let has_video = tags.iter().any(|t| t.video);
    let spaced: Vec<u64> = tags
        .iter()
        .filter(|t| t.video == has_video)
        .map(|t| t.ts)
        .collect();
    let interval = match (spaced.first(), spaced.last()) {
        (Some(a), Some(b)) if spaced.len() > 1 => {
            ((b - a) as f64 / (spaced.len() - 1) as f64).round() as u64
        }
        _ => 33,
    };
    let audio_before_first_keyframe = tags
        .iter()
        .take_while(|t| !t.keyframe)
        .filter(|t| !t.video && t.frame)
        .count();
    Ok(Clip {
        headers,
        tags,
        loop_ms: last + interval.max(1),
        audio_before_first_keyframe,
    })
}

// ---------------------------------------------------------------------------------------------
// Publishers

#[derive(Debug)]
struct RtmpUrl {
    host: String,
    port: u16,
    app: String,
    tc_url: String,
}

fn parse_rtmp_url(url: &str) -> Result<RtmpUrl, String> {
    let rest = url
        .strip_prefix("rtmp://")
        .ok_or_else(|| format!("not an rtmp:// URL: {url}"))?;
    let (authority, app) = rest
        .split_once('/')
        .ok_or_else(|| format!("no application in {url}"))?;
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (h, p.parse().map_err(|_| format!("bad port in {url}"))?),
        None => (authority, 1935),
    };
    let app = app.trim_end_matches('/');
    if app.is_empty() {
        return Err(format!("no application in {url}"));
    }
    Ok(RtmpUrl {
        host: host.to_string(),
        port,
        app: app.to_string(),
        tc_url: url.to_string(),
    })
}

/// Where the publishers publish, chosen by the URL's scheme.
#[derive(Debug, Clone)]
enum Target {
    Rtmp(Arc<RtmpUrl>),
    /// The SRT listener, and the clip as MPEG-TS (built once, shared).
    Srt(Arc<SrtTarget>, Arc<TsClip>),
}

/// A keyframe as sent: media time (ms) and wall-clock send time (unix ms).
#[derive(Debug, Clone, Copy)]
struct SentKeyframe {
    media_ms: u64,
    sent_unix_ms: f64,
}

#[derive(Debug, Default)]
struct PublisherReport {
    key: String,
    connected: bool,
    video_frames: u64,
    audio_frames: u64,
    bytes_sent: u64,
    error: Option<String>,
    keyframes: Vec<SentKeyframe>,
    /// The SRT caller's own counters (SRT only).
    srt: Option<SrtCounters>,
}

/// What an SRT caller's sender did, from srt-tokio's statistics as of their last update (once
/// a second; the caller lingers a second after its last payload, so they cover it all).
#[derive(Debug, Default, Clone, Copy)]
struct SrtCounters {
    /// Data packets sent once.
    unique_packets: u64,
    /// Data packets sent again (the receiver reported them lost, or no ACK came in time).
    retransmitted_packets: u64,
    /// Loss reports (NAK) received.
    naks_received: u64,
    /// Data packets the sender dropped unsent or unacknowledged (too late to be played).
    dropped_packets: u64,
}

fn unix_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1000.0)
        .unwrap_or(0.0)
}

/// Runs rml_rtmp on bytes from the network, turning a panic into an error.
fn handle_input(
    session: &mut ClientSession,
    bytes: &[u8],
) -> Result<Vec<ClientSessionResult>, String> {
    match catch_unwind(AssertUnwindSafe(|| session.handle_input(bytes))) {
        Ok(Ok(results)) => Ok(results),
        Ok(Err(e)) => Err(format!("RTMP session error: {e}")),
        Err(_) => Err("rml_rtmp panicked on input from the server".to_string()),
    }
}

/// Appends outbound packets to `out` and returns the raised events.
fn collect(results: Vec<ClientSessionResult>, out: &mut Vec<u8>) -> Vec<ClientSessionEvent> {
    let mut events = Vec::new();
    for r in results {
        match r {
            ClientSessionResult::OutboundResponse(p) => out.extend_from_slice(&p.bytes),
            ClientSessionResult::RaisedEvent(e) => events.push(e),
            ClientSessionResult::UnhandleableMessageReceived(_) => {}
        }
    }
    events
}

fn is_error_status(code: &str) -> bool {
    [
        "BadName",
        "Denied",
        "Failed",
        "Error",
        "Rejected",
        "Unpublish",
    ]
    .iter()
    .any(|w| code.contains(w))
}

/// Connects, handshakes, connects to the app and gets publishing on `key` accepted.
async fn setup(
    url: &RtmpUrl,
    key: &str,
    report: &mut PublisherReport,
) -> Result<(TcpStream, ClientSession), String> {
    let mut stream = TcpStream::connect((url.host.as_str(), url.port))
        .await
        .map_err(|e| format!("connect: {e}"))?;
    stream
        .set_nodelay(true)
        .map_err(|e| format!("set_nodelay: {e}"))?;
    report.connected = true;
    let mut handshake = Handshake::new(PeerType::Client);
    let p0p1 = handshake
        .generate_outbound_p0_and_p1()
        .map_err(|e| format!("handshake: {e}"))?;
    stream
        .write_all(&p0p1)
        .await
        .map_err(|e| format!("write: {e}"))?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut pending = loop {
        let n = stream
            .read(&mut buf)
            .await
            .map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err("server closed the connection during the handshake".into());
        }
        match handshake
            .process_bytes(&buf[..n])
            .map_err(|e| format!("handshake: {e}"))?
        {
            HandshakeProcessResult::InProgress { response_bytes } => {
                stream
                    .write_all(&response_bytes)
                    .await
                    .map_err(|e| format!("write: {e}"))?;
            }
            HandshakeProcessResult::Completed {
                response_bytes,
                remaining_bytes,
            } => {
                stream
                    .write_all(&response_bytes)
                    .await
                    .map_err(|e| format!("write: {e}"))?;
                break remaining_bytes;
            }
        }
    };
    let mut config = ClientSessionConfig::new();
    config.tc_url = Some(url.tc_url.clone());
    let (mut session, initial) =
        ClientSession::new(config).map_err(|e| format!("RTMP session: {e}"))?;
    let mut out = Vec::new();
    collect(initial, &mut out);
    let r = session
        .request_connection(url.app.clone())
        .map_err(|e| format!("connect request: {e}"))?;
    collect(vec![r], &mut out);
    loop {
        let mut published = false;
        if !pending.is_empty() {
            for event in collect(handle_input(&mut session, &pending)?, &mut out) {
                match event {
                    ClientSessionEvent::ConnectionRequestAccepted => {
                        let r = session
                            .request_publishing(key.to_string(), PublishRequestType::Live)
                            .map_err(|e| format!("publish request: {e}"))?;
                        collect(vec![r], &mut out);
                    }
                    ClientSessionEvent::ConnectionRequestRejected { description } => {
                        return Err(format!("connect refused: {description}"));
                    }
                    ClientSessionEvent::PublishRequestAccepted => published = true,
                    ClientSessionEvent::UnhandleableOnStatusCode { code } => {
                        return Err(format!("publish refused: {code}"));
                    }
                    _ => {}
                }
            }
        }
        if !out.is_empty() {
            stream
                .write_all(&out)
                .await
                .map_err(|e| format!("write: {e}"))?;
            report.bytes_sent += out.len() as u64;
            out.clear();
        }
        if published {
            return Ok((stream, session));
        }
        let n = stream
            .read(&mut buf)
            .await
            .map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err("server closed the connection before accepting the publish".into());
        }
        pending = buf[..n].to_vec();
    }
}

/// Sends the clip in real time until `duration` has passed since the publish was accepted.
async fn stream_clip(
    stream: &mut TcpStream,
    session: &mut ClientSession,
    clip: &Clip,
    duration: Duration,
    record_keyframes: bool,
    report: &mut PublisherReport,
) -> Result<(), String> {
    let start = Instant::now();
    let end = start + duration;
    let mut out = Vec::with_capacity(256 * 1024);
    let mut buf = vec![0u8; 16 * 1024];
    let mut batch_keyframes = Vec::new();
    let send = |session: &mut ClientSession,
                tag: &Tag,
                ts: u64,
                out: &mut Vec<u8>|
     -> Result<(), String> {
        let ts = RtmpTimestamp::new(ts as u32); // RTMP timestamps wrap at 32 bits
        let r = if tag.video {
            session.publish_video_data(tag.body.clone(), ts, false)
        } else {
            session.publish_audio_data(tag.body.clone(), ts, false)
        };
        collect(vec![r.map_err(|e| format!("serialize: {e}"))?], out);
        Ok(())
    };
    for h in &clip.headers {
        send(session, h, 0, &mut out)?;
    }
    let (mut index, mut loops) = (0usize, 0u64);
    while let Some(tag) = clip.tags.get(index) {
        let due = start + Duration::from_millis(tag.ts + loops * clip.loop_ms);
        if due >= end {
            break;
        }
        // Flush what is batched (the headers on the first pass) and wait, serving server input.
        if !out.is_empty() {
            stream
                .write_all(&out)
                .await
                .map_err(|e| format!("write: {e}"))?;
            report.bytes_sent += out.len() as u64;
            out.clear();
            let now = unix_ms();
            report
                .keyframes
                .extend(batch_keyframes.drain(..).map(|media_ms| SentKeyframe {
                    media_ms,
                    sent_unix_ms: now,
                }));
        }
        let wait = sleep_until(due);
        tokio::pin!(wait);
        while Instant::now() < due {
            tokio::select! {
                _ = &mut wait => break,
                r = stream.read(&mut buf) => {
                    let n = r.map_err(|e| format!("read: {e}"))?;
                    if n == 0 {
                        return Err("server closed the connection".into());
                    }
                    for event in collect(handle_input(session, &buf[..n])?, &mut out) {
                        if let ClientSessionEvent::UnhandleableOnStatusCode { code } = event {
                            if is_error_status(&code) {
                                return Err(format!("server status: {code}"));
                            }
                        }
                    }
                }
            }
        }
        // Batch every tag that is due by now into one write.
        let now = Instant::now();
        while let Some(tag) = clip.tags.get(index) {
            let ts = tag.ts + loops * clip.loop_ms;
            let due = start + Duration::from_millis(ts);
            if due > now || due >= end {
                break;
            }
            send(session, tag, ts, &mut out)?;
            if tag.video && tag.frame {
                report.video_frames += 1;
                if tag.keyframe && record_keyframes {
                    batch_keyframes.push(ts);
                }
            } else if tag.frame {
                report.audio_frames += 1;
            }
            index += 1;
            if index == clip.tags.len() {
                index = 0;
                loops += 1;
            }
        }
    }
    if let Ok(r) = session.stop_publishing() {
        collect(r, &mut out);
    }
    if !out.is_empty() {
        stream
            .write_all(&out)
            .await
            .map_err(|e| format!("write: {e}"))?;
        report.bytes_sent += out.len() as u64;
        let now = unix_ms();
        report
            .keyframes
            .extend(batch_keyframes.drain(..).map(|media_ms| SentKeyframe {
                media_ms,
                sent_unix_ms: now,
            }));
    }
    let _ = stream.shutdown().await;
    Ok(())
}

async fn publisher(
    url: Arc<RtmpUrl>,
    key: String,
    clip: Arc<Clip>,
    duration: Duration,
    record_keyframes: bool,
) -> PublisherReport {
    let mut report = PublisherReport {
        key: key.clone(),
        ..Default::default()
    };
    let result = match timeout(SETUP_TIMEOUT, setup(&url, &key, &mut report)).await {
        Err(_) => Err(format!("publish not accepted within {SETUP_TIMEOUT:?}")),
        Ok(Err(e)) => Err(e),
        Ok(Ok((mut stream, mut session))) => {
            stream_clip(
                &mut stream,
                &mut session,
                &clip,
                duration,
                record_keyframes,
                &mut report,
            )
            .await
        }
    };
    report.error = result.err();
    report
}

// ---------------------------------------------------------------------------------------------
// A tiny HTTP/1.1 client (keep-alive, Content-Length or chunked bodies)

#[derive(Debug, Clone)]
struct HttpUrl {
    authority: String,
    path: String,
}

fn parse_http_url(url: &str) -> Result<HttpUrl, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("not an http:// URL: {url}"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    Ok(HttpUrl {
        authority: authority.to_string(),
        path: path.to_string(),
    })
}

impl HttpUrl {
    /// Resolves a playlist entry against this (playlist) URL.
    fn join(&self, uri: &str) -> Result<HttpUrl, String> {
        if uri.starts_with("http://") {
            parse_http_url(uri)
        } else if uri.starts_with('/') {
            Ok(HttpUrl {
                authority: self.authority.clone(),
                path: uri.to_string(),
            })
        } else {
            let path = self.path.split('?').next().unwrap_or_default();
            let dir = &path[..path.rfind('/').map_or(0, |i| i + 1)];
            Ok(HttpUrl {
                authority: self.authority.clone(),
                path: format!("{dir}{uri}"),
            })
        }
    }
}

#[derive(Debug, Default)]
struct HttpClient {
    authority: String,
    stream: Option<TcpStream>,
    buf: Vec<u8>,
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

impl HttpClient {
    async fn get(&mut self, url: &HttpUrl) -> Result<(u16, Vec<u8>), String> {
        if self.authority != url.authority {
            self.stream = None;
            self.authority = url.authority.clone();
        }
        // A kept-alive connection may have been closed by the server: retry once on a new one.
        let reused = self.stream.is_some();
        match timeout(HTTP_TIMEOUT, self.try_get(url)).await {
            Ok(Ok(r)) => return Ok(r),
            Ok(Err(e)) if !reused => {
                self.stream = None;
                return Err(e);
            }
            Err(_) => {
                self.stream = None;
                return Err("HTTP request timed out".into());
            }
            Ok(Err(_)) => self.stream = None,
        }
        match timeout(HTTP_TIMEOUT, self.try_get(url)).await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => {
                self.stream = None;
                Err(e)
            }
            Err(_) => {
                self.stream = None;
                Err("HTTP request timed out".into())
            }
        }
    }

    async fn fill(&mut self) -> Result<usize, String> {
        let stream = self.stream.as_mut().ok_or("not connected")?;
        let mut chunk = [0u8; 64 * 1024];
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|e| format!("read: {e}"))?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    async fn need(&mut self, len: usize) -> Result<(), String> {
        while self.buf.len() < len {
            if self.fill().await? == 0 {
                return Err("connection closed mid-response".into());
            }
        }
        Ok(())
    }

    async fn try_get(&mut self, url: &HttpUrl) -> Result<(u16, Vec<u8>), String> {
        if self.stream.is_none() {
            let s = TcpStream::connect(url.authority.as_str())
                .await
                .map_err(|e| format!("connect {}: {e}", url.authority))?;
            s.set_nodelay(true)
                .map_err(|e| format!("set_nodelay: {e}"))?;
            self.stream = Some(s);
            self.buf.clear();
        }
        let request = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: onair-loadgen\r\nAccept: */*\r\n\r\n",
            url.path, url.authority
        );
        let stream = self.stream.as_mut().ok_or("not connected")?;
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| format!("write: {e}"))?;
        let header_end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i + 4;
            }
            if self.buf.len() > 64 * 1024 {
                return Err("HTTP response header too large".into());
            }
            if self.fill().await? == 0 {
                return Err("connection closed before the response".into());
            }
        };
        let head = String::from_utf8_lossy(&self.buf[..header_end]).to_string();
        let mut lines = head.split("\r\n");
        let status: u16 = lines
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|s| s.parse().ok())
            .ok_or("malformed HTTP status line")?;
        let (mut length, mut chunked, mut close) = (None, false, false);
        for line in lines {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let (name, value) = (
                name.trim().to_ascii_lowercase(),
                value.trim().to_ascii_lowercase(),
            );
            match name.as_str() {
                "content-length" => {
                    length = Some(value.parse::<usize>().map_err(|_| "bad Content-Length")?)
                }
                "transfer-encoding" => chunked = value.contains("chunked"),
                "connection" => close = value.contains("close"),
                _ => {}
            }
        }
        self.buf.drain(..header_end);
        let body = if chunked {
            let mut body = Vec::new();
            loop {
                let line_end = loop {
                    if let Some(i) = find(&self.buf, b"\r\n") {
                        break i;
                    }
                    if self.fill().await? == 0 {
                        return Err("connection closed in a chunk header".into());
                    }
                };
                let size_text = String::from_utf8_lossy(&self.buf[..line_end]).to_string();
                let size_text = size_text.split(';').next().unwrap_or_default().trim();
                let size = usize::from_str_radix(size_text, 16).map_err(|_| "bad chunk size")?;
                self.buf.drain(..line_end + 2);
                if size == 0 {
                    // Trailers (none expected) end with an empty line.
                    loop {
                        if let Some(i) = find(&self.buf, b"\r\n") {
                            let empty = i == 0;
                            self.buf.drain(..i + 2);
                            if empty {
                                break;
                            }
                        } else if self.fill().await? == 0 {
                            return Err("connection closed in chunk trailers".into());
                        }
                    }
                    break;
                }
                self.need(size + 2).await?;
                body.extend_from_slice(&self.buf[..size]);
                self.buf.drain(..size + 2);
            }
            body
        } else if let Some(len) = length {
            self.need(len).await?;
            self.buf.drain(..len).collect()
        } else {
            while self.fill().await? > 0 {}
            close = true;
            std::mem::take(&mut self.buf)
        };
        if close {
            self.stream = None;
        }
        Ok((status, body))
    }
}

// ---------------------------------------------------------------------------------------------
// The latency probe

/// A segment that first appeared after the probe's first playlist fetch.
#[derive(Debug)]
struct ProbedSegment {
    uri: String,
    /// Sum of the EXTINF durations from the session's first seen segment through this one (ms).
    end_ms: f64,
    available_unix_ms: f64,
    bytes: usize,
    error: Option<String>,
}

#[derive(Debug, Default)]
struct ProbeReport {
    url: String,
    playlist_fetches: u64,
    fetch_errors: u64,
    last_fetch_error: Option<String>,
    segments_before_start: u64,
    segments: Vec<ProbedSegment>,
}

fn parse_playlist(text: &str) -> Vec<(f64, String)> {
    let mut entries = Vec::new();
    let mut duration = None;
    for line in text.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("#EXTINF:") {
            duration = rest
                .split(',')
                .next()
                .and_then(|d| d.trim().parse::<f64>().ok());
        } else if !line.is_empty() && !line.starts_with('#') {
            if let Some(d) = duration.take() {
                entries.push((d, line.to_string()));
            }
        }
    }
    entries
}

async fn probe(
    url: String,
    mut done: watch::Receiver<bool>,
    stop_at: Option<Instant>,
) -> ProbeReport {
    let mut report = ProbeReport {
        url: url.clone(),
        ..Default::default()
    };
    let playlist = match parse_http_url(&url) {
        Ok(u) => u,
        Err(e) => {
            report.last_fetch_error = Some(e);
            return report;
        }
    };
    let mut client = HttpClient::default();
    let mut seen = HashSet::new();
    let mut fetched_once = false;
    let mut total_ms = 0.0;
    while !*done.borrow() && stop_at.is_none_or(|at| Instant::now() < at) {
        report.playlist_fetches += 1;
        match client.get(&playlist).await {
            Ok((200, body)) => {
                for (duration, uri) in parse_playlist(&String::from_utf8_lossy(&body)) {
                    if !seen.insert(uri.clone()) {
                        continue;
                    }
                    total_ms += duration * 1000.0;
                    if !fetched_once {
                        report.segments_before_start += 1;
                        continue;
                    }
                    let (bytes, error) = match playlist.join(&uri) {
                        Ok(seg_url) => match client.get(&seg_url).await {
                            Ok((200, body)) => (body.len(), None),
                            Ok((status, _)) => (0, Some(format!("HTTP {status}"))),
                            Err(e) => (0, Some(e)),
                        },
                        Err(e) => (0, Some(e)),
                    };
                    report.segments.push(ProbedSegment {
                        uri,
                        end_ms: total_ms,
                        available_unix_ms: unix_ms(),
                        bytes,
                        error,
                    });
                }
                fetched_once = true;
            }
            Ok(_) => fetched_once = true, // not live yet: nothing listed
            Err(e) => {
                report.fetch_errors += 1;
                report.last_fetch_error = Some(e);
            }
        }
        tokio::select! {
            _ = sleep(POLL_INTERVAL) => {}
            changed = done.changed() => {
                if changed.is_err() {
                    break; // the publisher is gone
                }
            }
        }
    }
    report
}

/// A probed segment matched with the keyframe that closed it.
#[derive(Debug)]
struct Sample {
    uri: String,
    end_media_ms: f64,
    keyframe_media_ms: u64,
    delay_ms: f64,
}

fn match_segments(probe: &ProbeReport, keyframes: &[SentKeyframe]) -> (Vec<Sample>, u64) {
    let (mut samples, mut unmatched) = (Vec::new(), 0);
    let Some(first) = keyframes.first() else {
        return (samples, probe.segments.len() as u64);
    };
    for seg in probe.segments.iter().filter(|s| s.error.is_none()) {
        let end = first.media_ms as f64 + seg.end_ms;
        let closest = keyframes.iter().min_by(|a, b| {
            (a.media_ms as f64 - end)
                .abs()
                .total_cmp(&(b.media_ms as f64 - end).abs())
        });
        match closest {
            Some(kf) if (kf.media_ms as f64 - end).abs() <= MATCH_TOLERANCE_MS => {
                samples.push(Sample {
                    uri: seg.uri.clone(),
                    end_media_ms: end,
                    keyframe_media_ms: kf.media_ms,
                    delay_ms: seg.available_unix_ms - kf.sent_unix_ms,
                })
            }
            _ => unmatched += 1,
        }
    }
    (samples, unmatched)
}

fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

// ---------------------------------------------------------------------------------------------
// Main

/// The process's own CPU time (user + system), from /proc/self/stat (clock ticks of 1/100 s).
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let fields: Vec<&str> = stat
        .get(stat.rfind(')')? + 1..)?
        .split_whitespace()
        .collect();
    // Fields after the command: state(3) ... utime(14) stime(15).
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

fn read_lines(path: &PathBuf) -> Result<Vec<String>, String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect())
}

fn srt_json(c: &SrtCounters) -> Value {
    json!({
        "unique_packets": c.unique_packets,
        "retransmitted_packets": c.retransmitted_packets,
        "naks_received": c.naks_received,
        "dropped_packets": c.dropped_packets,
    })
}

fn short_key(key: &str) -> String {
    key.chars().take(4).collect()
}

fn opt_ms(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_string(), |v| format!("{v:.0} ms"))
}

async fn run(args: Args) -> Result<ExitCode, String> {
    let keys = match (&args.keys_file, &args.key_prefix) {
        (Some(path), _) => read_lines(path)?,
        (None, Some(prefix)) => (0..args.streams).map(|i| format!("{prefix}{i}")).collect(),
        (None, None) => return Err("give --keys-file or --key-prefix with --streams".into()),
    };
    if keys.is_empty() {
        return Err("no stream keys".into());
    }
    let probe_ids = match &args.probe_ids_file {
        Some(path) => {
            let ids = read_lines(path)?;
            if ids.len() < keys.len().min(args.probe) {
                return Err(format!(
                    "{} has fewer ids than probed publishers",
                    path.display()
                ));
            }
            ids
        }
        None => keys.clone(),
    };
    let clip = Arc::new(load_clip(&args.file)?);
    let target = if args.url.starts_with("srt://") {
        let srt =
            srt_caller::parse_srt_url(&args.url, args.srt_key_size, args.srt_latency_ms).await?;
        Target::Srt(Arc::new(srt), Arc::new(TsClip::build(&clip)?))
    } else {
        if args.passphrases_file.is_some() {
            return Err("--passphrases-file is for srt:// URLs".into());
        }
        Target::Rtmp(Arc::new(parse_rtmp_url(&args.url)?))
    };
    let passphrases = match &args.passphrases_file {
        Some(path) => {
            let lines = read_lines(path)?;
            if lines.len() < keys.len() {
                return Err(format!(
                    "{} has {} passphrases for {} keys",
                    path.display(),
                    lines.len(),
                    keys.len()
                ));
            }
            lines
        }
        None => Vec::new(),
    };
    let duration = Duration::from_secs(args.duration_secs);
    let ts_note = match &target {
        Target::Srt(_, ts) => format!(", {} TS payloads of 1316 bytes per loop", ts.chunks.len()),
        Target::Rtmp(_) => String::new(),
    };
    println!(
        "onair-loadgen: {} publishers -> {}, {} ({} tags, loop {} ms{ts_note}), {} s each, ramp {} ms",
        keys.len(),
        args.url,
        args.file.display(),
        clip.tags.len(),
        clip.loop_ms,
        args.duration_secs,
        args.ramp_ms
    );

    let started = Instant::now();
    let mut tasks = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        let probed = i < args.probe;
        let start_at = started + Duration::from_millis(args.ramp_ms * i as u64);
        let (done_tx, probe_task) = match (&args.probe_url_template, probed, probe_ids.get(i)) {
            (Some(template), true, Some(id)) => {
                let (tx, rx) = watch::channel(false);
                let probe_url = template.replace("{key}", id);
                let probe_at = start_at + Duration::from_secs(args.probe_start_secs);
                let stop_at = args.probe_secs.map(|d| probe_at + Duration::from_secs(d));
                let task = tokio::spawn(async move {
                    sleep_until(probe_at).await;
                    probe(probe_url, rx, stop_at).await
                });
                (Some(tx), Some(task))
            }
            _ => (None, None),
        };
        let (target, clip, key) = (target.clone(), clip.clone(), key.clone());
        let passphrase = passphrases.get(i).cloned();
        let publisher_task = tokio::spawn(async move {
            sleep_until(start_at).await;
            let report = match target {
                Target::Rtmp(url) => publisher(url, key, clip, duration, probed).await,
                Target::Srt(srt, ts) => {
                    srt_caller::publisher(srt, key, passphrase, ts, duration, probed).await
                }
            };
            // Stop the probe as soon as this publisher stops.
            if let Some(tx) = done_tx {
                let _ = tx.send(true);
            }
            report
        });
        tasks.push((keys[i].clone(), publisher_task, probe_task));
    }

    let mut publishers = Vec::new();
    let mut probes = Vec::new();
    for (key, publisher_task, probe_task) in tasks {
        let report = publisher_task.await.unwrap_or_else(|e| PublisherReport {
            key: key.clone(),
            error: Some(format!("publisher task failed: {e}")),
            ..Default::default()
        });
        if let Some(Ok(p)) = match probe_task {
            Some(task) => Some(task.await),
            None => None,
        } {
            probes.push((publishers.len(), p));
        }
        publishers.push(report);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds();

    // Summary.
    let errors = publishers.iter().filter(|p| p.error.is_some()).count();
    let connected = publishers.iter().filter(|p| p.connected).count();
    let (video, audio, bytes) = publishers.iter().fold((0, 0, 0), |(v, a, b), p| {
        (v + p.video_frames, a + p.audio_frames, b + p.bytes_sent)
    });
    let mut probe_json = Vec::new();
    let mut delays = Vec::new();
    let mut unmatched_total = 0;
    for (index, probe) in &probes {
        let (samples, unmatched) = match_segments(probe, &publishers[*index].keyframes);
        unmatched_total += unmatched;
        delays.extend(samples.iter().map(|s| s.delay_ms));
        probe_json.push(json!({
            "publisher": index,
            "key": short_key(&publishers[*index].key),
            "url": probe.url,
            "playlist_fetches": probe.playlist_fetches,
            "fetch_errors": probe.fetch_errors,
            "last_fetch_error": probe.last_fetch_error,
            "segments_before_start": probe.segments_before_start,
            "unmatched": unmatched,
            "segments": probe.segments.iter().map(|s| json!({
                "uri": s.uri, "end_ms": s.end_ms, "available_unix_ms": s.available_unix_ms,
                "bytes": s.bytes, "error": s.error,
            })).collect::<Vec<_>>(),
            "samples": samples.iter().map(|s| json!({
                "uri": s.uri, "end_media_ms": s.end_media_ms,
                "closing_keyframe_media_ms": s.keyframe_media_ms, "delay_ms": s.delay_ms,
            })).collect::<Vec<_>>(),
        }));
    }
    delays.sort_by(f64::total_cmp);
    let (p50, p95, max) = (
        percentile(&delays, 50.0),
        percentile(&delays, 95.0),
        delays.last().copied(),
    );

    println!(
        "publishers: {} started, {} connected, {} WITH ERRORS",
        publishers.len(),
        connected,
        errors
    );
    for (i, p) in publishers.iter().enumerate() {
        if let Some(e) = &p.error {
            println!("  #{i} {}…: {e}", short_key(&p.key));
        }
    }
    println!(
        "sent: {video} video + {audio} audio frames, {:.1} MB ({:.1} Mbit/s overall) in {elapsed:.1} s",
        bytes as f64 / 1e6,
        bytes as f64 * 8.0 / 1e6 / elapsed.max(0.001)
    );
    let srt_totals = publishers
        .iter()
        .filter_map(|p| p.srt)
        .reduce(|a, b| SrtCounters {
            unique_packets: a.unique_packets + b.unique_packets,
            retransmitted_packets: a.retransmitted_packets + b.retransmitted_packets,
            naks_received: a.naks_received + b.naks_received,
            dropped_packets: a.dropped_packets + b.dropped_packets,
        });
    if let Some(t) = srt_totals {
        println!(
            "SRT senders: {} packets, {} retransmitted, {} NAKs received, {} dropped as too late",
            t.unique_packets, t.retransmitted_packets, t.naks_received, t.dropped_packets
        );
    }
    if !probes.is_empty() {
        println!(
            "latency probe: {} segments matched, {} unmatched; delay p50 {}, p95 {}, max {}",
            delays.len(),
            unmatched_total,
            opt_ms(p50),
            opt_ms(p95),
            opt_ms(max)
        );
    }
    match cpu {
        Some(c) => println!(
            "generator CPU seconds: {c:.2} ({:.1}% of one core)",
            100.0 * c / elapsed.max(0.001)
        ),
        None => println!("generator CPU seconds: unknown (no /proc/self/stat)"),
    }

    if let Some(path) = &args.report {
        let mut report = json!({
            "url": args.url,
            "protocol": match &target { Target::Rtmp(_) => "rtmp", Target::Srt(..) => "srt" },
            "file": args.file.display().to_string(),
            "duration_secs": args.duration_secs,
            "ramp_ms": args.ramp_ms,
            "elapsed_secs": elapsed,
            "clip": {
                "video_frames": clip.tags.iter().filter(|t| t.video && t.frame).count(),
                "audio_frames": clip.tags.iter().filter(|t| !t.video && t.frame).count(),
                "other_tags": clip.tags.iter().filter(|t| !t.frame).count(),
                "loop_ms": clip.loop_ms,
                "audio_before_first_keyframe": clip.audio_before_first_keyframe,
            },
            "generator_cpu_seconds": cpu,
            "totals": {
                "publishers": publishers.len(),
                "connected": connected,
                "publishers_with_errors": errors,
                "video_frames": video,
                "audio_frames": audio,
                "bytes_sent": bytes,
            },
            "publishers": publishers.iter().map(|p| {
                let mut v = json!({
                    "key": short_key(&p.key),
                    "connected": p.connected,
                    "video_frames": p.video_frames,
                    "audio_frames": p.audio_frames,
                    "bytes_sent": p.bytes_sent,
                    "error": p.error,
                });
                if let Some(c) = p.srt {
                    v["srt"] = srt_json(&c);
                }
                if !p.keyframes.is_empty() {
                    v["keyframes"] = Value::from(p.keyframes.iter().map(|k| json!({
                        "media_ms": k.media_ms, "sent_unix_ms": k.sent_unix_ms,
                    })).collect::<Vec<_>>());
                }
                v
            }).collect::<Vec<_>>(),
            "probe": {
                "matched": delays.len(),
                "unmatched": unmatched_total,
                "delay_ms": { "p50": p50, "p95": p95, "max": max },
                "publishers": probe_json,
            },
        });
        if let Target::Srt(_, ts) = &target {
            report["clip"]["ts_payloads"] = Value::from(ts.chunks.len());
            report["clip"]["ts_packets"] = Value::from(ts.packets);
            report["totals"]["srt"] = srt_json(&srt_totals.unwrap_or_default());
        }
        let text = serde_json::to_string_pretty(&report).map_err(|e| format!("report: {e}"))?;
        std::fs::write(path, text).map_err(|e| format!("writing {}: {e}", path.display()))?;
        println!("report: {}", path.display());
    }
    Ok(if errors > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> ExitCode {
    match run(Args::parse()).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("onair-loadgen: {e}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clip_counts_coded_frames_like_ffprobe() {
        let clip = load_clip(&testkit::fixture("avc_aac_720p30.flv")).expect("the fixture loads");
        let frames = |video| {
            clip.tags
                .iter()
                .filter(|t| t.video == video && t.frame)
                .count()
        };
        // ffprobe -count_packets: 300 video, 470 audio; the file also ends with an AVC end of
        // sequence tag, sent on every loop but not a frame.
        assert_eq!((frames(true), frames(false)), (300, 470));
        assert_eq!(clip.tags.len(), 771);
        assert_eq!(clip.tags.iter().filter(|t| t.keyframe).count(), 5);
        assert_eq!(clip.audio_before_first_keyframe, 1);
    }
}
