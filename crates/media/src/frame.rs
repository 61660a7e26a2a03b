//! The one media model every input is turned into: [`Frame`]s on a 90 kHz clock, plus the
//! codec configuration of each track ([`StreamConfig`]).

use std::sync::Arc;

use bytes::Bytes;

use crate::aac::AudioSpecificConfig;
use crate::avc::AvcDecoderConfigurationRecord;
use crate::error::Result;
use crate::hevc::HevcDecoderConfigurationRecord;

/// Ticks per second of every timestamp in the model (the MPEG-TS clock).
pub const TIMESCALE: u64 = 90_000;

/// Which track a frame belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Track {
    /// The video track.
    Video,
    /// The audio track.
    Audio,
}

impl Track {
    /// `video` or `audio`.
    pub fn name(self) -> &'static str {
        match self {
            Track::Video => "video",
            Track::Audio => "audio",
        }
    }
}

/// One access unit.
///
/// Video `data` is a sequence of NAL units, each behind a 4-byte big-endian length (AVCC with
/// `lengthSizeMinusOne = 3`), without parameter sets being required in band. Audio `data` is
/// one raw AAC frame (no ADTS header). Both share the allocation of the bytes they were
/// received in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Video or audio.
    pub track: Track,
    /// Presentation time in 90 kHz ticks; never below `dts`.
    pub pts: u64,
    /// Decoding time in 90 kHz ticks; strictly increasing within a track.
    pub dts: u64,
    /// A random access point (IDR/IRAP for video; every audio frame).
    pub keyframe: bool,
    /// The payload, as described above.
    pub data: Bytes,
}

/// The video codecs OnAir carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VideoCodec {
    /// H.264 with its decoder configuration.
    H264(AvcDecoderConfigurationRecord),
    /// H.265 with its decoder configuration.
    H265(HevcDecoderConfigurationRecord),
}

/// Configuration of the video track, derived once per sequence header.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoConfig {
    /// The codec and its decoder configuration record.
    pub codec: VideoCodec,
    /// Parameter sets (VPS, SPS, PPS) in decoding order, without start codes; the muxer puts
    /// them in front of every keyframe.
    pub parameter_sets: Vec<Bytes>,
    /// RFC 6381 codec string for `CODECS`.
    pub codec_string: String,
    /// Display width in pixels.
    pub width: u32,
    /// Display height in pixels.
    pub height: u32,
    /// Frame rate signalled in the bitstream, when it is.
    pub frame_rate: Option<f64>,
}

impl VideoConfig {
    /// Builds the configuration from an H.264 decoder configuration record.
    pub fn from_avc(record: AvcDecoderConfigurationRecord) -> Result<Self> {
        let info = record.sps_info()?;
        let parameter_sets = record.sps.iter().chain(&record.pps).cloned().collect();
        Ok(VideoConfig {
            codec_string: record.codec_string(),
            parameter_sets,
            width: info.width,
            height: info.height,
            frame_rate: info.frame_rate,
            codec: VideoCodec::H264(record),
        })
    }

    /// Builds the configuration from an HEVC decoder configuration record.
    pub fn from_hevc(record: HevcDecoderConfigurationRecord) -> Result<Self> {
        let info = record.sps_info()?;
        let parameter_sets = record
            .vps
            .iter()
            .chain(&record.sps)
            .chain(&record.pps)
            .cloned()
            .collect();
        Ok(VideoConfig {
            codec_string: record.codec_string(),
            parameter_sets,
            width: info.width,
            height: info.height,
            frame_rate: None,
            codec: VideoCodec::H265(record),
        })
    }

    /// Whether this is HEVC.
    pub fn is_hevc(&self) -> bool {
        matches!(self.codec, VideoCodec::H265(_))
    }

    /// The NAL unit type of a NAL unit of this codec.
    pub fn nal_type(&self, nal_unit: &[u8]) -> Option<u8> {
        match self.codec {
            VideoCodec::H264(_) => nal_unit.first().map(|b| b & 0x1f),
            VideoCodec::H265(_) => crate::hevc::nal_type(nal_unit),
        }
    }
}

/// Configuration of the audio track.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioConfig {
    /// The AAC configuration.
    pub asc: AudioSpecificConfig,
}

impl AudioConfig {
    /// RFC 6381 codec string for `CODECS`.
    pub fn codec_string(&self) -> String {
        self.asc.codec_string()
    }
}

/// The tracks of a stream and their configuration. Shared cheaply (`Arc`) between the
/// demuxer, the muxer and the playlists.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StreamConfig {
    /// The video track, if the stream has one.
    pub video: Option<Arc<VideoConfig>>,
    /// The audio track, if the stream has one.
    pub audio: Option<Arc<AudioConfig>>,
}

impl StreamConfig {
    /// The `CODECS` attribute value, video first.
    pub fn codecs(&self) -> String {
        let mut parts = Vec::new();
        if let Some(v) = &self.video {
            parts.push(v.codec_string.clone());
        }
        if let Some(a) = &self.audio {
            parts.push(a.codec_string());
        }
        parts.join(",")
    }
}
