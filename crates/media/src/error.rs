//! The error type of the media core.

/// Everything that can go wrong while parsing or muxing media.
///
/// Every variant describes bad or unsupported input from a peer (an encoder or a file);
/// none of them is a bug in OnAir, and none of them is ever a panic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MediaError {
    /// The input ended before a structure it announced was complete.
    #[error("truncated {what}: need {needed} more bytes")]
    Truncated {
        /// The structure being read.
        what: &'static str,
        /// How many bytes were missing (at least).
        needed: usize,
    },
    /// A structure had a value the specification does not allow.
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// The structure being read.
        what: &'static str,
        /// What was wrong with it.
        reason: String,
    },
    /// A codec that OnAir recognises but cannot carry in HLS over MPEG-TS.
    #[error("unsupported codec {codec}: {reason}")]
    UnsupportedCodec {
        /// The codec's name (for example `AV1` or `Sorenson H.263`).
        codec: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// A media frame arrived before the sequence header that configures its track.
    #[error("{track} frame before its sequence header")]
    MissingConfig {
        /// `video` or `audio`.
        track: &'static str,
    },
}

impl MediaError {
    pub(crate) fn invalid(what: &'static str, reason: impl Into<String>) -> Self {
        MediaError::Invalid {
            what,
            reason: reason.into(),
        }
    }
}

/// Shorthand for results of the media core.
pub type Result<T, E = MediaError> = std::result::Result<T, E>;
