//! The error types of the RTMP layer. A peer's bad input is one of these values and ends that
//! peer's connection only; none of them is ever a panic.

use std::io;

use media::MediaError;
use session::PublishRejection;

/// Why a TLS acceptor could not be built (at startup, from the operator's files).
///
/// The messages do not repeat their cause: it is the error's `source()`, and an error
/// report (`anyhow`'s `{:#}`) prints the chain, so `: {source}` here would print it twice.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A certificate or key file could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: String,
        /// What the OS said.
        source: io::Error,
    },
    /// The certificate file holds no PEM certificate.
    #[error("{path} holds no PEM certificate")]
    NoCertificate {
        /// The file.
        path: String,
    },
    /// The key file holds no PEM private key (PKCS#8, PKCS#1 or SEC1).
    #[error("{path} holds no PEM private key")]
    NoPrivateKey {
        /// The file.
        path: String,
    },
    /// The private key is not the certificate's.
    #[error("the private key in {key} does not belong to the certificate in {cert}")]
    KeyMismatch {
        /// The certificate file.
        cert: String,
        /// The key file.
        key: String,
    },
    /// rustls refused the certificate or key.
    #[error("TLS configuration refused")]
    Rustls(#[from] rustls::Error),
    /// The self-signed development certificate could not be generated.
    #[error("generating the development certificate")]
    Generate(#[from] rcgen::Error),
}

/// A peer broke the RTMP protocol, or asked for something OnAir does not do. Produced by the
/// sans-IO [`ServerProtocol`](crate::protocol::ServerProtocol).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProtocolError {
    /// The first byte was not RTMP's version byte 3 (an HTTP request, a TLS ClientHello on the
    /// plain port, a port scanner).
    #[error("not an RTMP peer: first byte {first_byte:#04x} ({hint})")]
    NotRtmp {
        /// The byte received.
        first_byte: u8,
        /// What the byte suggests the peer is.
        hint: &'static str,
    },
    /// The RTMP handshake failed.
    #[error("RTMP handshake failed: {0}")]
    Handshake(String),
    /// A chunk header referred to a chunk stream that never had a full header.
    #[error("chunk stream {csid} continued before its first full header")]
    NoPreviousHeader {
        /// The chunk stream id.
        csid: u32,
    },
    /// A message longer than the configured limit.
    #[error("message of {size} bytes exceeds the limit of {max}")]
    MessageTooLarge {
        /// Announced length.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// Incomplete messages of this connection would hold more than the configured bytes.
    #[error("more than {max} bytes of incomplete messages")]
    TooMuchPending {
        /// The limit.
        max: usize,
    },
    /// The peer used more chunk stream ids than the configured limit.
    #[error("more than {max} chunk streams")]
    TooManyChunkStreams {
        /// The limit.
        max: usize,
    },
    /// Set Chunk Size with 0, the top bit set, or above the configured maximum.
    #[error("invalid chunk size {size}")]
    InvalidChunkSize {
        /// The size announced.
        size: u32,
    },
    /// A protocol control message too short for its type.
    #[error("malformed {what} message")]
    MalformedControl {
        /// The message type.
        what: &'static str,
    },
    /// An aggregate message whose sub-messages do not add up to its length.
    #[error("malformed aggregate message: {0}")]
    MalformedAggregate(&'static str),
    /// A command message that is not AMF0 this layer can read.
    #[error("malformed command: {0}")]
    MalformedCommand(String),
    /// The command session (connect, createStream, publish) failed.
    #[error("RTMP session: {0}")]
    Session(String),
    /// The peer broke the order of the publish workflow (a second connect, a second publish,
    /// too many streams).
    #[error("protocol violation: {0}")]
    Violation(&'static str),
    /// The peer asked to play: OnAir only ingests.
    #[error("play requested: this server only accepts publishers")]
    PlayNotSupported,
    /// A method was called in a state that does not allow it (a bug in the driver).
    #[error("{0} called in the wrong state")]
    WrongState(&'static str),
}

/// Why a connection ended before the peer closed it. Logged by the connection's task; never
/// crosses connections.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    /// The grant's `kick` token was cancelled (stream disabled, key reset, deleted).
    #[error("disconnected by the session (kick)")]
    Kicked,
    /// The listener is shutting down.
    #[error("server shutting down")]
    Shutdown,
    /// Closed before admission to make room (see [`crate::Eviction`]).
    #[error("closed before admission: {0}")]
    Evicted(crate::slots::Eviction),
    /// Reading or writing the socket failed.
    #[error("socket: {0}")]
    Io(#[from] io::Error),
    /// The TLS handshake failed.
    #[error("TLS handshake: {0}")]
    Tls(io::Error),
    /// A plain RTMP handshake arrived on the RTMPS listener.
    #[error("plain RTMP sent to the RTMPS port (use rtmps:// or the RTMP port)")]
    PlainRtmpOnTlsPort,
    /// TLS and RTMP handshakes did not complete in time.
    #[error("handshake not completed within {0:?}")]
    HandshakeTimeout(std::time::Duration),
    /// The peer did not ask to publish in time.
    #[error("no publish request within {0:?}")]
    PublishTimeout(std::time::Duration),
    /// The peer sent nothing for too long.
    #[error("no data for {0:?}")]
    IdleTimeout(std::time::Duration),
    /// The peer broke the protocol.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// Audio or video the gateway cannot carry (an unsupported codec, a malformed frame).
    #[error("media: {0}")]
    Media(#[from] MediaError),
    /// Admission did not answer in time; the publisher was refused.
    #[error("admission did not answer within {0:?}")]
    AdmissionTimeout(std::time::Duration),
    /// Admission refused the publisher.
    #[error("publish refused: {0}")]
    Rejected(PublishRejection),
    /// The live stream's session stopped taking media.
    #[error("the live stream session has ended")]
    SessionGone,
}
