//! The error type of an SRT connection. A peer's bad input ends that peer's connection only;
//! none of these is ever a panic.

use std::io;

use media::MediaError;

/// Why an admitted caller's connection ended before the caller closed it.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    /// The grant's `kick` token was cancelled (stream disabled, key reset, deleted).
    #[error("disconnected by the session (kick)")]
    Kicked,
    /// The listener is shutting down.
    #[error("server shutting down")]
    Shutdown,
    /// The SRT socket failed.
    #[error("socket: {0}")]
    Io(#[from] io::Error),
    /// The payload sink (the TS demuxer) refused the caller's media.
    #[error("media: {0}")]
    Media(#[from] MediaError),
    /// The live stream's session stopped taking media.
    #[error("the live stream session has ended")]
    SessionGone,
}
