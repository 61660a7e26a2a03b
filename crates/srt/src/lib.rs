//! # OnAir SRT ingest
//!
//! The SRT listener (`srt://HOST:6001?streamid=STREAM_KEY&passphrase=SRT_PASSPHRASE`): an
//! I/O driver of OnAir's own around srt-protocol's sans-IO handshake and connection code, and
//! the admission of its callers through the session's [`session::ingest`] contract, as the
//! RTMP listener does. Demuxing is not here: each admitted caller's payloads (MPEG-TS, not
//! always 188-aligned) go to a [`PayloadSink`] made by the [`SinkFactory`] given to
//! [`SrtServer::serve`], and the [`media::DemuxEvent`]s it returns go to the session.
//!
//! ## How to drive it
//!
//! ```no_run
//! # async fn run(sessions: session::SessionManager) -> std::io::Result<()> {
//! use tokio_util::sync::CancellationToken;
//! let shutdown = CancellationToken::new();
//! let server = srt::SrtServer::bind("0.0.0.0:6001".parse().unwrap(), srt::SrtConfig::default()).await?;
//! // One MPEG-TS demuxer per caller (what `onair serve` does).
//! let timestamps = media::timestamp::TimestampConfig::default();
//! server.serve(sessions, move |_: &str| media::TsDemuxer::new(timestamps), shutdown).await;
//! # Ok(()) }
//! ```
//!
//! ## Admission, in two steps
//!
//! Every live stream has an `srt_passphrase`, and a caller must encrypt with it. SRT checks the
//! passphrase inside the handshake (the caller's key material must unwrap with it), so the
//! listener needs the passphrase *before* it answers:
//!
//! 1. the streamid gives the stream key ([`parse_stream_id`]: plain, `#!::r=KEY,m=publish`,
//!    percent-encoded);
//! 2. [`SrtAdmission::srt_passphrase`](session::SrtAdmission::srt_passphrase) looks the
//!    passphrase up, refusing unknown keys and disabled streams (`Server(Forbidden)`) and
//!    streams with a live publisher (`Server(Conflict)`), without side effects;
//! 3. the handshake is completed with the passphrase and the caller's own key size; a wrong
//!    passphrase is refused there by srt-protocol (`Core(BadSecret)`), a caller without
//!    encryption too (`Core(Unsecure)`);
//! 4. [`Admission::publish`](session::Admission::publish) grants the publish, as for RTMP. A
//!    refusal here (a race with another encoder) can only close the connection.
//!
//! Refusals are logged with the key redacted.
//!
//! An admitted caller is paced ([`session::pacing`], [`SrtConfig::pacing`]): when its media
//! runs more than 10 s ahead of the wall clock or over the bitrate ceiling, it is not read
//! until it is back within bounds; meanwhile its packets queue and then drop, as under any
//! backpressure, so a stream key cannot fill the disk faster than a real broadcast would.
//!
//! ## Why not srt-tokio's listener
//!
//! srt-tokio 0.4.4 (the I/O half of the same project) runs one listener task that parses every
//! datagram and routes every connection's packets. srt-protocol panics on input a peer can
//! send (a handshake with a packet-filter, group or non-`live` congestion extension, which
//! real libsrt callers send with `packetfilter=fec`, bonding or `transtype=file`; a
//! key-material response where a request belongs; NAKs with a broken loss list; congestion
//! warnings and peer errors), and with srt-tokio one such datagram ended the listener task and
//! every connection with it; one full connection queue also stalled all the others. The
//! driver here (`driver.rs`) keeps srt-protocol's logic and fixes the I/O around it:
//!
//! - every datagram is checked before the parser sees it (`guard.rs`): what is known to panic
//!   is refused with libsrt's own reject reason (`Filter`, `Group`, `Congestion`, `Rogue`) or
//!   dropped; every call into srt-protocol is also run under `catch_unwind`, so an unknown
//!   panic ends one handshake or one connection, never the listener;
//! - connected callers' packets are routed by the driver straight to their connection, which
//!   runs in the caller's own task; a connection that falls behind loses packets (SRT
//!   retransmits them), never holds up the others;
//! - handshake state is bounded (peers in handshake at once, in total and per IP address, and
//!   how long each may stay);
//! - srt-protocol never finishes a conclusion without the SRT handshake extension (it answers
//!   `NotHandled` and keeps the request): admission is bounded by
//!   [`SrtConfig::admission_timeout`].
//!
//! The listener is still supervised: should its task ever end, [`SrtServer::serve`] logs it and
//! starts it again on the same socket.
#![forbid(unsafe_code)]

pub mod config;
mod driver;
pub mod error;
mod guard;
mod server;
pub mod sink;
pub mod stream_id;

pub use config::{
    SrtConfig, DEFAULT_ADMISSION_TIMEOUT, DEFAULT_MAX_CONNECTIONS, DEFAULT_REBIND_BACKOFF,
    DEFAULT_SRT_ADDR,
};
pub use error::ConnectionError;
pub use server::{reject_reason, SrtServer};
pub use sink::{DiscardSink, PayloadSink, SinkFactory};
pub use stream_id::{parse_stream_id, StreamIdError};
