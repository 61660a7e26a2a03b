//! # OnAir SRT ingest
//!
//! The SRT listener (`srt://HOST:6001?streamid=STREAM_KEY&passphrase=SRT_PASSPHRASE`) on
//! srt-tokio, and the admission of its callers through the session's [`session::ingest`]
//! contract, as the RTMP listener does. Demuxing is not here: each admitted caller's payloads
//! (MPEG-TS, not always 188-aligned) go to a [`PayloadSink`] made by the [`SinkFactory`] given
//! to [`SrtServer::serve`], and the [`media::DemuxEvent`]s it returns go to the session.
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
//! 3. the handshake is completed with `KeySettings { caller's key size, passphrase }`; a wrong
//!    passphrase is refused there by srt-tokio (`Core(BadSecret)`), a caller without
//!    encryption too (`Core(Unsecure)`);
//! 4. [`Admission::publish`](session::Admission::publish) grants the publish, as for RTMP. A
//!    refusal here (a race with another encoder) can only close the connection.
//!
//! Refusals are logged with the key redacted.
//!
//! ## Guards around srt-tokio 0.4.4
//!
//! - `ConnectionRequest::accept(None)` for a caller that sends key material, and
//!   `accept(Some)` with a key size other than the caller's, hit `unimplemented!` in
//!   srt-protocol and panic the listener task. This crate never calls `accept(None)` and always
//!   uses the key size the caller announced, `Unspecified` included: libsrt callers with the
//!   default `pbkeylen` (ffmpeg without `pbkeylen=`) announce none and send 16-byte key
//!   material, which srt-protocol unwraps with `Unspecified` as 16 bytes.
//! - Other panics remain reachable from the network inside the listener task: a handshake
//!   with an SRT extension of type 0, 6, 7 or 8 in the configuration position
//!   (`unimplemented!("Implement other kinds")` in the packet parser, before any admission),
//!   or a key-material *response* where a request belongs. The listener is therefore
//!   supervised: when its task ends, [`SrtServer::serve`] logs it and binds the same address
//!   again. Connections open at that moment are lost (srt-tokio routes their packets through
//!   the listener task); encoders reconnect.
//! - `ConnectionRequest::accept` never returns when srt-protocol cannot finish the handshake
//!   (a conclusion without the SRT handshake extension: it answers `NotHandled` and keeps the
//!   request); it is bounded by [`SrtConfig::admission_timeout`].
//! - srt-tokio's listener stops routing every connection's packets while one connection's
//!   queue is full, so a connection never waits on its session: see the slow-consumer policy
//!   (disconnect) in `Connection::forward`.
#![forbid(unsafe_code)]

pub mod config;
pub mod error;
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
