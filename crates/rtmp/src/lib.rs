//! # OnAir RTMP and RTMPS ingest
//!
//! The listeners encoders (OBS, Wirecast, vMix, GStreamer, ffmpeg, phone apps) publish to.
//! Each connection is turned into the gateway's one model as early as possible: RTMP audio,
//! video and data messages go through a [`media::FlvDemuxer`] per connection, and every
//! [`media::DemuxEvent`] goes to the live stream's session through the admission contract of
//! the `session` crate.
//!
//! ```text
//! TCP (TLS) ─▶ connection task ─▶ ServerProtocol (sans-IO) ─▶ PublishRequested ─▶ Admission::publish
//!                 select! over          │                                  ◀── grant / rejection
//!                 socket, stop          └─▶ Media { kind, ts, body } ─▶ FlvDemuxer ─▶ MediaBatcher
//!                 signal, timer                                ─▶ IngestSender (bounded: backpressure)
//! ```
//!
//! ## Driving it
//!
//! ```no_run
//! # async fn example<A: session::Admission>(admission: A) -> std::io::Result<()> {
//! use rtmp::{dev_tls_acceptor, serve, RtmpConfig};
//! use session::IngestRuntimes;
//! use tokio_util::sync::CancellationToken;
//!
//! let shutdown = CancellationToken::new();
//! let metrics = metrics::Metrics::new(); // scraped at /metrics by the binary
//! // Connections on two single-threaded runtimes of their own (`IngestRuntimes::shared()`
//! // runs them on this runtime).
//! let (runtimes, threads) = IngestRuntimes::start(2)?;
//! let plain = tokio::net::TcpListener::bind("0.0.0.0:5222").await?;
//! let tls = tokio::net::TcpListener::bind("0.0.0.0:443").await?;
//! let acceptor = dev_tls_acceptor(["localhost"]).expect("certificate");
//! tokio::join!(
//!     serve(plain, None, admission.clone(), RtmpConfig::default(), metrics.listener("rtmp"),
//!         runtimes.clone(), shutdown.clone()),
//!     serve(tls, Some(acceptor), admission, RtmpConfig::default(), metrics.listener("rtmps"),
//!         runtimes, shutdown.clone()),
//! );
//! if let Some(threads) = threads {
//!     tokio::task::spawn_blocking(move || threads.stop()).await?;
//! }
//! # Ok(()) }
//! ```
//!
//! [`serve`] returns after `shutdown` is cancelled and every connection has closed.
//!
//! Both can change while serving, without touching established connections (the binary does
//! it on SIGHUP): give [`serve`] a [`SharedRtmpConfig`] and `set` a new [`RtmpConfig`] on
//! it (each accepted connection takes the current one), and build the acceptor from an
//! [`RtmpsTls`], whose `reload_files` swaps the certificate for the next handshakes (a key
//! that does not match is refused and the old pair stays). Encoders
//! may use the full URL (`rtmp://HOST:PORT/app/KEY`, as ffmpeg does) or a server URL and a
//! stream key (`rtmp://HOST:PORT/app` + `KEY`, as OBS and Wirecast do): both arrive as a
//! `connect` to an application and a `publish` whose name is the key. The key is the publish
//! name without any `?query`. Any application name is accepted; the key alone admits.
//! Rejected publishers get `NetStream.Publish.BadName` (unknown, disabled or busy key) or
//! `NetStream.Publish.Denied` and are disconnected. A granted publisher is disconnected when
//! the grant's `kick` token is cancelled. Logs carry a span per connection with `peer`,
//! `protocol` and, once admitted, `live_stream_id`; stream keys are never logged beyond their
//! first four characters.
//!
//! ## Timeouts and limits ([`RtmpConfig`])
//!
//! - TLS and RTMP handshakes must complete within 5 s; a peer whose first byte is not RTMP's
//!   version 3 (an HTTP request, a TLS ClientHello on the plain port) is closed at once.
//! - After the handshake, a publish request must come within 15 s and admission must answer
//!   it within 10 s; afterwards any 30 s without a byte closes the connection.
//! - At most 1000 connections per listener. A connection that is not admitted yet (no
//!   accepted `publish`) never keeps an encoder out: when the listener is full, the oldest
//!   unadmitted connection is closed for the new one; only admitted publishers are never
//!   displaced. At most 16 unadmitted connections per IP address (a 17th closes that
//!   address's oldest).
//! - Until its publish is admitted, a connection may hold at most 64 KiB of incomplete
//!   messages, and all unadmitted connections of a listener together at most 16 MiB (over
//!   it, the oldest unadmitted connections are closed). Connections read through a 4 KiB
//!   buffer until admitted. So a peer that authenticates nothing costs a few KiB.
//! - Admitted: messages up to 8 MiB, at most 16 MiB of incomplete messages per connection,
//!   at most 64 chunk stream ids; any chunk size the protocol allows (payloads stream into their
//!   message, so the chunk size does not drive memory). Every channel and buffer is bounded;
//!   media waits on the session's bounded channel (backpressure reaches the encoder via TCP).
//! - Pacing ([`session::pacing`]): a publisher whose media runs more than 10 s ahead of the
//!   wall clock, or that sends more than 60 Mbit/s (beyond a 2 s burst), is not read from
//!   until it is back within bounds: TCP slows the encoder down, nobody is disconnected.
//!
//! ## rml_rtmp, and what replaced which part of it
//!
//! rml_rtmp 0.8 is sans-IO and proven against ffmpeg, so it stays for what it does well:
//! the handshake and the command workflow (`connect`, `createStream`, `publish` with
//! `accept_request`/`reject_request`, `deleteStream`). The `adapter` module is the only one
//! that sees its types. Its known gaps, each covered by a conformance test in
//! `tests/conformance.rs`, are handled by OnAir's own code in front of it:
//!
//! - **Chunk streams** ([`chunk::ChunkDecoder`] replaces its `ChunkDeserializer`): rml_rtmp
//!   keeps one payload buffer for all chunk streams, so interleaved chunks of two messages
//!   on different chunk stream ids corrupt each other; its buffers are unbounded and some of
//!   its header arithmetic can overflow on hostile input. OnAir reassembles messages per
//!   chunk stream id, bounded, and gives rml_rtmp only whole command messages, each re-chunked
//!   as a single type-0 chunk.
//! - **AMF0** ([`command::Command`]): rml_amf0 cannot read Date, Long String or Reference,
//!   and rml_rtmp panics on a command of fewer than three values. Commands are decoded with
//!   the media crate's bounded AMF0 decoder, then re-encoded with only the types rml_amf0
//!   reads (Date as Number, Long String as String, Reference as Null), so a `connect` with
//!   a Date succeeds instead of failing; a command that is not AMF0 at all closes only its
//!   connection.
//! - **Publish type**: rml_rtmp compares `live`/`record`/`append` case-sensitively and refuses
//!   `LIVE`; the type is lower-cased (and defaulted to `live`) before it sees it.
//! - **Custom replies**: rml_rtmp has no hook for `releaseStream`, `FCPublish` and
//!   `FCUnpublish`; OnAir answers them (`_result`, `onFCPublish`, `onFCUnpublish`), adds an
//!   `onStatus` error after rml_rtmp's `_error` on rejection, answers pings and sends
//!   acknowledgements, on a chunk stream id of its own so rml_rtmp's header compression stays
//!   valid.
//! - **Media** never goes through rml_rtmp: audio, video and data messages of the accepted
//!   stream go straight to the demuxer (rml_rtmp can also panic on a short `@setDataFrame`).
//!
//! Calls into rml_rtmp are additionally wrapped in `catch_unwind`, so a panic left in it ends
//! one connection with an error. Two fuzz targets live in `crates/rtmp/fuzz` (outside the
//! workspace, nightly): `cargo +nightly fuzz run server_protocol` feeds arbitrary bytes after
//! a handshake to [`protocol::ServerProtocol`], `chunk_decoder` to [`chunk::ChunkDecoder`]
//! with its bounds asserted.
// One `unsafe` call, measured worth it: `setsockopt(SO_RCVLOWAT)` in `lowat` (rustix and
// socket2 lack the option; see docs/PERFORMANCE.md).
#![deny(unsafe_code)]

mod adapter;
pub mod chunk;
pub mod command;
pub mod config;
mod connection;
pub mod error;
mod lowat;
pub mod protocol;
mod server;
mod slots;
mod tls;

pub use config::{
    RtmpConfig, SharedRtmpConfig, DEFAULT_ADMISSION_TIMEOUT, DEFAULT_HANDSHAKE_TIMEOUT,
    DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_CHUNK_SIZE, DEFAULT_MAX_CHUNK_STREAMS,
    DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_MESSAGE_SIZE, DEFAULT_MAX_PENDING_BYTES,
    DEFAULT_MAX_PENDING_BYTES_BEFORE_PUBLISH, DEFAULT_MAX_UNADMITTED_BYTES,
    DEFAULT_MAX_UNADMITTED_PER_ADDRESS, DEFAULT_OUTGOING_CHUNK_SIZE, DEFAULT_PUBLISH_TIMEOUT,
    DEFAULT_WINDOW_ACK_SIZE,
};
pub use error::{ConnectionError, ProtocolError, TlsError};
pub use protocol::{ProtocolEvent, ServerProtocol};
pub use server::serve;
pub use slots::Eviction;
pub use tls::{dev_tls_acceptor, load_tls_acceptor, RtmpsTls};
