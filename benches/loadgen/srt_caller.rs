//! One SRT publisher: an srt-tokio caller (streamid = the stream key, the stream's passphrase)
//! sending the shared [`TsClip`] in real time.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use srt_tokio::options::ByteCount;
use srt_tokio::SrtSocket;
use tokio::time::{sleep_until, timeout, Instant};

use crate::ts_clip::{TsClip, PACKETS_PER_PAYLOAD, PAYLOAD_SIZE};
use crate::{unix_ms, PublisherReport, SentKeyframe, SrtCounters, SETUP_TIMEOUT};

/// How long the caller keeps the connection open after its last payload. SRT live mode drops
/// whatever the receiver has not released (its latency, 120 ms by default) or not yet
/// recovered when the connection closes; a second covers both with room for retransmissions.
const LINGER: Duration = Duration::from_secs(1);
/// How long closing may take once the linger is over (nothing is lost if it does not finish).
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// The caller's send buffer: libsrt's default (8192 packets), what srt-tokio's receiver has too.
/// srt-tokio 0.4.4's sender default is 46,592 bytes, 32 packets: one keyframe of the clip
/// (about 80 payloads at once) overflowed it, the sender dropped packets from the buffer's
/// front and then sent nothing more (a 20 s run delivered 29 payloads, to OnAir as to
/// `srt-live-transmit`).
const SEND_BUFFER: ByteCount = ByteCount(8192 * 1500);
/// SRT's passphrase length limits (srt-tokio panics outside them).
const PASSPHRASE_LEN: std::ops::RangeInclusive<usize> = 10..=79;

/// Where and how the publishers call.
#[derive(Debug, Clone)]
pub struct SrtTarget {
    pub addr: SocketAddr,
    /// AES key length in bytes (16, 24 or 32) when a passphrase is given.
    pub key_size: u16,
    /// The latency the caller asks for (sender and receiver).
    pub latency: Duration,
}

/// Parses `srt://HOST:PORT` (no path or query: the stream id and passphrase come from the
/// keys and passphrases files) and resolves it once.
pub async fn parse_srt_url(url: &str, key_size: u16, latency_ms: u64) -> Result<SrtTarget, String> {
    let authority = url
        .strip_prefix("srt://")
        .ok_or_else(|| format!("not an srt:// URL: {url}"))?
        .trim_end_matches('/');
    if authority.contains(['/', '?']) {
        return Err(format!(
            "{url}: give srt://HOST:PORT only (the stream id is the key, the passphrase comes from --passphrases-file)"
        ));
    }
    if !matches!(key_size, 16 | 24 | 32) {
        return Err(format!("SRT key size {key_size}: give 16, 24 or 32"));
    }
    let addr = tokio::net::lookup_host(authority)
        .await
        .map_err(|e| format!("{url}: {e}"))?
        .next()
        .ok_or_else(|| format!("{url}: no address"))?;
    Ok(SrtTarget {
        addr,
        key_size,
        latency: Duration::from_millis(latency_ms),
    })
}

async fn setup(
    target: &SrtTarget,
    key: &str,
    passphrase: Option<&str>,
) -> Result<SrtSocket, String> {
    let mut builder = SrtSocket::builder().latency(target.latency).set(|o| {
        o.connect.timeout = SETUP_TIMEOUT;
        o.sender.buffer_size = SEND_BUFFER;
    });
    if let Some(passphrase) = passphrase {
        if !PASSPHRASE_LEN.contains(&passphrase.len()) {
            return Err(format!(
                "passphrase of {} bytes (SRT takes 10 to 79)",
                passphrase.len()
            ));
        }
        builder = builder.encryption(target.key_size, passphrase);
    }
    builder
        .call(target.addr, Some(key))
        .await
        .map_err(|e| match e.kind() {
            io::ErrorKind::ConnectionRefused => format!("connect refused: {e}"),
            io::ErrorKind::TimedOut => format!("no SRT handshake within {SETUP_TIMEOUT:?}"),
            _ => format!("connect: {e}"),
        })
}

/// Sends one payload, counting it and the frames that end in its first `packets` packets.
async fn send(
    socket: &mut SrtSocket,
    clip: &TsClip,
    (index, pass, packets): (usize, u64, usize),
    record_keyframes: bool,
    report: &mut PublisherReport,
) -> Result<(), String> {
    let payload = clip.payload(index, pass, packets);
    socket
        .send((std::time::Instant::now(), payload))
        .await
        .map_err(|e| format!("send: {e} (the connection is closed)"))?;
    report.bytes_sent += PAYLOAD_SIZE as u64;
    let sent_unix_ms = unix_ms();
    for end in clip.chunks[index]
        .ends
        .iter()
        .filter(|e| usize::from(e.at) <= packets)
    {
        if end.video {
            report.video_frames += 1;
            if end.keyframe && record_keyframes {
                report.keyframes.push(SentKeyframe {
                    media_ms: end.media_ms + pass * clip.loop_ms,
                    sent_unix_ms,
                });
            }
        } else {
            report.audio_frames += 1;
        }
    }
    Ok(())
}

/// Waits until `until`, failing if the server closes the connection meanwhile.
async fn wait(socket: &mut SrtSocket, until: Instant) -> Result<(), String> {
    loop {
        tokio::select! {
            _ = sleep_until(until) => return Ok(()),
            // The listener sends no data; the stream ends when the connection closes.
            item = socket.next() => match item {
                None => return Err("server closed the connection".into()),
                Some(Err(e)) => return Err(format!("receive: {e}")),
                Some(Ok(_)) => {}
            },
        }
    }
}

/// Sends the clip in real time until `duration` has passed since the connection was accepted,
/// then completes the frame in flight, lingers and closes.
async fn stream_clip(
    socket: &mut SrtSocket,
    clip: &TsClip,
    duration: Duration,
    record_keyframes: bool,
    report: &mut PublisherReport,
) -> Result<(), String> {
    let start = Instant::now();
    let end = start + duration;
    let (mut index, mut pass) = (0usize, 0u64);
    let mut last_sent: Option<usize> = None;
    let advance = |index: &mut usize, pass: &mut u64| {
        *index += 1;
        if *index == clip.chunks.len() {
            *index = 0;
            *pass += 1;
        }
    };
    loop {
        let chunk = &clip.chunks[index];
        let due = start + Duration::from_millis(chunk.due_ms + pass * clip.loop_ms);
        if due >= end {
            break;
        }
        if due > Instant::now() {
            wait(socket, due).await?;
        }
        let whole = (index, pass, PACKETS_PER_PAYLOAD);
        send(socket, clip, whole, record_keyframes, report).await?;
        last_sent = Some(index);
        advance(&mut index, &mut pass);
    }
    // Do not leave a frame cut: send on to the end of the one in flight, the rest of that
    // payload null packets.
    if last_sent.is_some_and(|i| !clip.chunks[i].boundary_at_end) {
        loop {
            let packets = clip.chunks[index]
                .first_boundary
                .map_or(PACKETS_PER_PAYLOAD, usize::from);
            send(
                socket,
                clip,
                (index, pass, packets),
                record_keyframes,
                report,
            )
            .await?;
            if packets < PACKETS_PER_PAYLOAD || clip.chunks[index].boundary_at_end {
                break;
            }
            advance(&mut index, &mut pass);
        }
    }
    wait(socket, Instant::now() + LINGER).await?;
    // The watch stream yields the latest statistics at once.
    if let Some(stats) = socket.statistics().clone().next().await {
        report.srt = Some(SrtCounters {
            unique_packets: stats.tx_unique_data,
            retransmitted_packets: stats.tx_retransmit_data,
            naks_received: stats.rx_nak,
            dropped_packets: stats.tx_dropped_data,
        });
    }
    let _ = timeout(CLOSE_TIMEOUT, socket.close_and_finish()).await;
    Ok(())
}

pub async fn publisher(
    target: Arc<SrtTarget>,
    key: String,
    passphrase: Option<String>,
    clip: Arc<TsClip>,
    duration: Duration,
    record_keyframes: bool,
) -> PublisherReport {
    let mut report = PublisherReport {
        key: key.clone(),
        ..Default::default()
    };
    let result = match setup(&target, &key, passphrase.as_deref()).await {
        Err(e) => Err(e),
        Ok(mut socket) => {
            report.connected = true;
            stream_clip(&mut socket, &clip, duration, record_keyframes, &mut report).await
        }
    };
    report.error = result.err();
    report
}
