//! # OnAir slate media
//!
//! The slate is what viewers see while a live stream's encoder is away ("we'll be right
//! back"): a still picture as H.264 video plus silent AAC, with the live stream's size, frame
//! rate and audio format, so that the HLS playlist keeps advancing and players keep playing.
//!
//! This is the only encoding OnAir does, and it happens once per broadcast:
//!
//! ```text
//! PNG/JPEG ──▶ decode (bounded) ──▶ letterbox onto black W x H ──▶ BT.709 I420
//!          ──▶ OpenH264: one GOP (IDR + P frames that repeat it) ──▶ Slate
//!                                   silent AAC-LC frame (constant) ─┘
//! Slate::run(start) ──▶ SlateRun::frames_until(t) ──▶ media::Frame (re-stamped, bytes shared)
//! ```
//!
//! [`Slate::render`] does the expensive part (decoding, scaling, encoding: tens to hundreds
//! of milliseconds; see `docs/PERFORMANCE.md`). After that, [`Slate::run`] and
//! [`SlateRun::frames_until`] only stamp timestamps on shared [`bytes::Bytes`]: cycling the
//! GOP (each cycle starts with the IDR) and repeating the silent frame with timestamps from
//! running frame and sample counts, so that any run length keeps audio and video in step.
//!
//! Like `media` and `hls` the crate is sans-IO: no files, no clocks. The caller feeds the
//! frames and [`Slate::config`] to the segmenter exactly as if they came from an encoder: the
//! video configuration is built through `media`'s own `AvcDecoderConfigurationRecord` and
//! [`media::VideoConfig::from_avc`].
//!
//! ```no_run
//! use std::time::Duration;
//! use slate::{AudioSpec, Slate, SlateSpec};
//!
//! let spec = SlateSpec {
//!     width: 1280,
//!     height: 720,
//!     frame_rate: 30.0,
//!     gop_duration: Duration::from_secs(2),
//!     audio: Some(AudioSpec { sample_rate: 48_000, channels: 2 }),
//! };
//! let slate = Slate::render(slate::default_image(), &spec)?;
//! let mut run = slate.run(90_000); // continue where the live stream stopped
//! let first_two_seconds = run.frames_until(90_000 + 2 * 90_000);
//! # Ok::<(), slate::SlateError>(())
//! ```
#![forbid(unsafe_code)]

mod bits;
mod error;
mod h264;
mod picture;
mod run;
mod silence;
mod sps;
mod timing;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use media::{AudioConfig, StreamConfig, VideoConfig};

pub use error::SlateError;
pub use run::SlateRun;

use timing::FrameRate;

/// The largest image file [`Slate::render`] accepts, in bytes (10 MiB).
pub const MAX_IMAGE_BYTES: usize = 10 * 1024 * 1024;
/// The most pixels an image may have (16 Mpx, e.g. 4096x4096 or a 4K frame). Checked from the
/// file's header before decoding: a decoded picture takes 3 to 8 bytes a pixel.
pub const MAX_IMAGE_PIXELS: u64 = 16 * 1024 * 1024;
/// The most frames in the slate's GOP (bounds the encoding time and memory).
pub const MAX_GOP_FRAMES: u64 = 600;
/// The highest frame rate a slate is encoded at.
pub const MAX_FRAME_RATE: f64 = 120.0;

/// OpenH264's largest picture: 3840 on the long side, 2160 on the short one.
const MAX_LONG_SIDE: u32 = 3840;
const MAX_SHORT_SIDE: u32 = 2160;
const MIN_SIDE: u32 = 16;

/// OnAir's own slate ("We'll be right back"), 1920x1080 PNG, drawn by
/// `crates/slate/assets/make_default_slate.py`.
pub fn default_image() -> &'static [u8] {
    include_bytes!("../assets/default_slate.png")
}

/// What to render: the live stream's picture size, frame rate and audio format.
#[derive(Debug, Clone, PartialEq)]
pub struct SlateSpec {
    /// Picture width in pixels (even, 16 to 3840).
    pub width: u32,
    /// Picture height in pixels (even, 16 to 3840; the shorter side at most 2160).
    pub height: u32,
    /// Frames per second (above 0, at most [`MAX_FRAME_RATE`]); 29.97 and the other
    /// `N * 1000 / 1001` rates are kept exact.
    pub frame_rate: f64,
    /// Duration of the encoded GOP, which a run repeats: a keyframe comes every this long.
    /// Rounded to whole frames; 2 to [`MAX_GOP_FRAMES`] frames.
    pub gop_duration: Duration,
    /// The live stream's AAC, or `None` for a slate without audio.
    pub audio: Option<AudioSpec>,
}

/// The live stream's AAC format, which the silent audio matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AudioSpec {
    /// Sampling rate in Hz: one of the 13 AAC sampling frequencies (96000 ... 7350).
    pub sample_rate: u32,
    /// Channels: 1 to 6, or 8 (7.1). Other counts (0, 7, more than 8) have no AAC channel
    /// configuration and get stereo.
    pub channels: u8,
}

/// The silent audio of a slate.
#[derive(Debug, Clone)]
pub(crate) struct SilentAudio {
    pub(crate) frame: Bytes,
    pub(crate) sample_rate: u32,
}

/// A rendered slate: one encoded GOP of H.264, a silent AAC-LC frame, and their
/// configuration. Cheap to share (`Arc<Slate>`) between the runs of many streams of the
/// same format.
#[derive(Clone)]
pub struct Slate {
    config: StreamConfig,
    pub(crate) gop: Vec<Bytes>,
    pub(crate) frame_rate: FrameRate,
    pub(crate) audio: Option<SilentAudio>,
}

impl std::fmt::Debug for Slate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slate")
            .field("codecs", &self.config.codecs())
            .field("gop_frames", &self.gop.len())
            .field("gop_bytes", &self.gop_bytes())
            .field("frame_rate", &self.frame_rate)
            .field("audio", &self.audio)
            .finish()
    }
}

fn validate(spec: &SlateSpec) -> Result<(FrameRate, usize), SlateError> {
    let invalid = |what: String| Err(SlateError::InvalidSpec(what));
    let (w, h) = (spec.width, spec.height);
    if w % 2 != 0 || h % 2 != 0 {
        return invalid(format!("{w}x{h}: width and height must be even (4:2:0)"));
    }
    if w.min(h) < MIN_SIDE || w.max(h) > MAX_LONG_SIDE || w.min(h) > MAX_SHORT_SIDE {
        return invalid(format!(
            "{w}x{h}: sides must be {MIN_SIDE} to {MAX_LONG_SIDE}, the shorter at most {MAX_SHORT_SIDE}"
        ));
    }
    let rate = match FrameRate::from_f64(spec.frame_rate) {
        Some(rate) if spec.frame_rate <= MAX_FRAME_RATE => rate,
        _ => {
            return invalid(format!(
                "frame rate {} is not above 0 and at most {MAX_FRAME_RATE}",
                spec.frame_rate
            ))
        }
    };
    let frames = rate.frames_in(spec.gop_duration.as_secs_f64());
    if !(2.0..=MAX_GOP_FRAMES as f64).contains(&frames) {
        return invalid(format!(
            "a GOP of {:?} at {} fps is {frames} frames, not 2 to {MAX_GOP_FRAMES}",
            spec.gop_duration, spec.frame_rate
        ));
    }
    Ok((rate, frames as usize))
}

impl Slate {
    /// Decodes `image` (PNG or JPEG; refused when larger than [`MAX_IMAGE_BYTES`] or with
    /// more than [`MAX_IMAGE_PIXELS`] pixels), letterboxes or scales it onto a black
    /// `width` x `height` canvas keeping its aspect ratio, encodes one GOP of H.264 (the IDR,
    /// then P frames that repeat it, at `frame_rate`, `gop_duration` long) and prepares the
    /// silent AAC-LC frame for `audio`.
    ///
    /// Takes tens to hundreds of milliseconds of CPU (more in debug builds): call it off the
    /// async runtime (`spawn_blocking`).
    pub fn render(image: &[u8], spec: &SlateSpec) -> Result<Slate, SlateError> {
        let (frame_rate, frames) = validate(spec)?;
        // Audio first: a bad sample rate is cheap to refuse.
        let audio = match spec.audio {
            Some(a) => {
                let channel_config = silence::channel_config(a.channels);
                let asc = silence::audio_specific_config(a.sample_rate, channel_config)?;
                Some((
                    SilentAudio {
                        frame: silence::silent_frame(channel_config),
                        sample_rate: a.sample_rate,
                    },
                    AudioConfig { asc },
                ))
            }
            None => None,
        };
        let (width, height) = (spec.width as usize, spec.height as usize);
        let picture = picture::decode(image)?;
        let canvas = picture::letterbox(&picture, width, height);
        drop(picture);
        let yuv = picture::to_i420(&canvas);
        drop(canvas);
        let gop = h264::encode_gop(yuv, spec.width, spec.height, frames, frame_rate)?;
        let video = VideoConfig::from_avc(gop.record)?;
        if (video.width, video.height) != (spec.width, spec.height) {
            return Err(SlateError::Encoder(format!(
                "SPS says {}x{}, expected {}x{}",
                video.width, video.height, spec.width, spec.height
            )));
        }
        let (audio, audio_config) = audio.unzip();
        Ok(Slate {
            config: StreamConfig {
                video: Some(Arc::new(video)),
                audio: audio_config.map(Arc::new),
            },
            gop: gop.frames,
            frame_rate,
            audio,
        })
    }

    /// The H.264 video configuration, and the AAC audio configuration when the spec had
    /// audio.
    pub fn config(&self) -> &StreamConfig {
        &self.config
    }

    /// A continuous run of slate media whose first frame has dts `start` (90 kHz).
    pub fn run(&self, start: u64) -> SlateRun<'_> {
        SlateRun::new(self, start)
    }

    /// Like [`Slate::run`], holding the slate by an `Arc` (a run that is kept next to its
    /// slate, e.g. in a live stream's session, without borrowing it).
    pub fn run_shared(slate: &std::sync::Arc<Slate>, start: u64) -> SlateRun<'static> {
        SlateRun::shared(std::sync::Arc::clone(slate), start)
    }

    /// Frames in the encoded GOP (a keyframe every this many video frames).
    pub fn gop_frames(&self) -> usize {
        self.gop.len()
    }

    /// Bytes of H.264 in the encoded GOP (AVCC, without parameter sets).
    pub fn gop_bytes(&self) -> usize {
        self.gop.iter().map(Bytes::len).sum()
    }
}

#[cfg(test)]
mod tests;
