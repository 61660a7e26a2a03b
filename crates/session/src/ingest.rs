//! The contract between an ingest listener (RTMP, RTMPS, SRT) and the session manager.
//!
//! Admission is a request with an answer (house style 2): the listener turns the protocol's
//! publish request into a [`PublishRequest`] and awaits [`Admission::publish`]. A rejected
//! publisher gets the protocol's own error and is closed. An accepted one gets a
//! [`PublishGrant`]: it sends what its demuxer produces through [`IngestSender`] and stops
//! when the grant's `kick` token is cancelled (stream disabled, key reset, shutdown).

use std::future::Future;
use std::net::SocketAddr;

use media::DemuxEvent;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Events buffered between one publisher and its session. When the session falls this far
/// behind, the publisher's connection waits (backpressure reaches the encoder through TCP)
/// instead of memory growing.
pub const INGEST_CHANNEL_CAPACITY: usize = 1024;

/// The ingest protocols. `as_str` gives the seeds' `active_ingest_protocol` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IngestProtocol {
    /// RTMP on the plain port.
    Rtmp,
    /// RTMP over TLS.
    Rtmps,
    /// SRT.
    Srt,
}

impl IngestProtocol {
    /// `rtmp` (for RTMP and RTMPS, as the seeds report both) or `srt`.
    pub fn as_str(self) -> &'static str {
        match self {
            IngestProtocol::Rtmp | IngestProtocol::Rtmps => "rtmp",
            IngestProtocol::Srt => "srt",
        }
    }

    /// The listener it came through: `rtmp`, `rtmps` or `srt` (logs, metrics labels).
    pub fn listener_name(self) -> &'static str {
        match self {
            IngestProtocol::Rtmps => "rtmps",
            IngestProtocol::Rtmp => "rtmp",
            IngestProtocol::Srt => "srt",
        }
    }
}

/// A stream key as logs may show it: at most its first 4 characters, and never more than half
/// of it (house style 11: never log a key in full). One function for every listener.
pub fn redact_stream_key(key: &str) -> String {
    let shown = (key.chars().count() / 2).min(4);
    let mut out: String = key.chars().take(shown).collect();
    out.push('…');
    out
}

/// A publisher asks to go live.
#[derive(Debug, Clone)]
pub struct PublishRequest {
    /// The stream key as the encoder sent it.
    pub stream_key: String,
    /// How it connected.
    pub protocol: IngestProtocol,
    /// The encoder's address.
    pub peer: SocketAddr,
}

/// Why a publisher was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishRejection {
    /// No live stream has this stream key.
    #[error("unknown stream key")]
    UnknownStreamKey,
    /// The live stream is disabled.
    #[error("live stream is disabled")]
    Disabled,
    /// Another encoder is already publishing to this live stream.
    #[error("live stream already has a publisher")]
    AlreadyPublishing,
    /// The gateway is shutting down.
    #[error("server is shutting down")]
    ShuttingDown,
    /// The gateway is draining: it starts no new broadcast (an encoder reconnecting to a
    /// broadcast that is still running is admitted), and exits when the last one ends.
    #[error("server is draining: no new broadcasts")]
    Draining,
    /// The store or another internal part failed.
    #[error("internal error: {0}")]
    Internal(String),
}

impl PublishRejection {
    /// The `reason` label of `onair_listener_connections_refused_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            PublishRejection::UnknownStreamKey => "unknown_stream_key",
            PublishRejection::Disabled => "disabled",
            PublishRejection::AlreadyPublishing => "already_publishing",
            PublishRejection::ShuttingDown => "shutting_down",
            PublishRejection::Draining => "draining",
            PublishRejection::Internal(_) => "internal",
        }
    }
}

/// What a publisher sends to its session.
#[derive(Debug, Clone)]
pub enum IngestEvent {
    /// Output of the connection's demuxer.
    Media(DemuxEvent),
}

/// The sending half of a publisher's channel to its session. Dropping it tells the session
/// that the publisher has gone.
#[derive(Debug, Clone)]
pub struct IngestSender {
    tx: mpsc::Sender<IngestEvent>,
}

impl IngestSender {
    /// A bounded channel of [`INGEST_CHANNEL_CAPACITY`] events.
    pub fn channel() -> (IngestSender, mpsc::Receiver<IngestEvent>) {
        let (tx, rx) = mpsc::channel(INGEST_CHANNEL_CAPACITY);
        (IngestSender { tx }, rx)
    }

    /// Sends an event if the channel has room: `Ok(None)` when sent, `Ok(Some(event))` when
    /// the channel is full (send it with [`IngestSender::send`]). `Err` means the session is
    /// gone.
    pub fn try_send(&self, event: IngestEvent) -> Result<Option<IngestEvent>, SessionGone> {
        match self.tx.try_send(event) {
            Ok(()) => Ok(None),
            Err(mpsc::error::TrySendError::Full(event)) => Ok(Some(event)),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(SessionGone),
        }
    }

    /// Sends an event, waiting while the session is behind. `Err` means the session is gone
    /// and the publisher should disconnect.
    pub async fn send(&self, event: IngestEvent) -> Result<(), SessionGone> {
        self.tx.send(event).await.map_err(|_| SessionGone)
    }
}

/// The session no longer accepts media from this publisher.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the live stream session has ended")]
pub struct SessionGone;

/// An accepted publisher.
#[derive(Debug)]
pub struct PublishGrant {
    /// The live stream being published (for logs; never the key).
    pub live_stream_id: String,
    /// Where media goes.
    pub media: IngestSender,
    /// Cancelled when the publisher must disconnect (disable, key reset, deletion, shutdown).
    pub kick: CancellationToken,
}

/// Admits publishers: implemented by the session manager, and by test doubles.
pub trait Admission: Clone + Send + Sync + 'static {
    /// Decides on a publish request.
    fn publish(
        &self,
        request: PublishRequest,
    ) -> impl Future<Output = Result<PublishGrant, PublishRejection>> + Send;
}

/// The first step of an SRT admission. An SRT caller encrypts with its live stream's
/// passphrase, and the listener must know that passphrase before it answers the handshake
/// (the caller's key material is checked while the handshake completes, and a wrong
/// passphrase is refused with SRT's own reason). So the SRT listener asks for the passphrase
/// first, then completes the handshake, then asks [`Admission::publish`] as every protocol
/// does. This step has no side effect: a caller with a wrong passphrase never reaches the
/// session (no broadcast starts, no event is written).
pub trait SrtAdmission: Admission {
    /// The `srt_passphrase` of the live stream with this stream key, if a publisher could be
    /// admitted now: the same refusals as [`Admission::publish`] (unknown key, disabled,
    /// already publishing), checked early. `publish` still decides; this is a pre-check.
    fn srt_passphrase(
        &self,
        stream_key: &str,
    ) -> impl Future<Output = Result<String, PublishRejection>> + Send;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_keys() {
        assert_eq!(redact_stream_key("good-key"), "good…");
        assert_eq!(redact_stream_key("sk_1234567890abcdef"), "sk_1…");
        assert_eq!(redact_stream_key("abc"), "a…");
        assert_eq!(redact_stream_key(""), "…");
        assert_eq!(redact_stream_key("ключ-ключ"), "ключ…");
    }
}
