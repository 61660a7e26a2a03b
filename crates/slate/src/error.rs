//! The errors of rendering a slate.

use thiserror::Error;

/// Why a slate could not be rendered. An image from a user is never a reason to panic: every
/// problem with it is one of these.
#[derive(Debug, Error)]
pub enum SlateError {
    /// The image file is larger than [`crate::MAX_IMAGE_BYTES`].
    #[error("slate image of {bytes} bytes is larger than the limit of {max} bytes")]
    ImageTooLarge {
        /// Size of the file.
        bytes: usize,
        /// The limit.
        max: usize,
    },
    /// The image has more than [`crate::MAX_IMAGE_PIXELS`] pixels (or a zero dimension).
    #[error("slate image of {width}x{height} pixels is outside the limit of 1 to {max} pixels")]
    TooManyPixels {
        /// Width from the image header.
        width: u64,
        /// Height from the image header.
        height: u64,
        /// The limit.
        max: u64,
    },
    /// The bytes are neither PNG nor JPEG.
    #[error("slate image is not a PNG or JPEG file")]
    UnsupportedFormat,
    /// The PNG or JPEG file is malformed or truncated.
    #[error("slate image is not a valid {format} file: {reason}")]
    Decode {
        /// `PNG` or `JPEG`.
        format: &'static str,
        /// What the decoder said.
        reason: String,
    },
    /// The [`crate::SlateSpec`] cannot be rendered (odd or out-of-range size, frame rate, GOP
    /// duration, or an AAC sample rate that has no sampling index).
    #[error("invalid slate spec: {0}")]
    InvalidSpec(String),
    /// The H.264 encoder failed or produced something unexpected.
    #[error("H.264 encoder: {0}")]
    Encoder(String),
    /// `media` refused the configuration built for the slate (a bug if it happens).
    #[error(transparent)]
    Media(#[from] media::MediaError),
}
