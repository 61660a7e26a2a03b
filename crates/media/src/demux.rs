//! Turns FLV tags / RTMP media messages into the model: [`DemuxEvent`]s carrying
//! [`StreamConfig`] changes, [`Frame`]s and [`Metadata`].

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};

use crate::aac::AudioSpecificConfig;
use crate::amf0::Metadata;
use crate::avc::{self, AvcDecoderConfigurationRecord};
use crate::error::{MediaError, Result};
use crate::flv::{self, AudioPacket, FlvVideoCodec, TagKind, VideoPacket};
use crate::frame::{AudioConfig, Frame, StreamConfig, Track, VideoCodec, VideoConfig};
use crate::hevc::{self, HevcDecoderConfigurationRecord};
use crate::timestamp::{TimestampConfig, TimestampMapper};

/// What one tag produced.
#[derive(Debug, Clone, PartialEq)]
pub enum DemuxEvent {
    /// The track configuration changed (a new or different sequence header).
    Config(StreamConfig),
    /// A media frame.
    Frame(Frame),
    /// `onMetaData` arrived.
    Metadata(Metadata),
}

/// Counters a demuxer keeps about input it had to drop.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DemuxStats {
    /// Frames that arrived before their track's sequence header.
    pub frames_before_config: u64,
    /// Empty frames (no payload).
    pub empty_frames: u64,
}

/// Demultiplexes the tags of one FLV stream (an FLV file, or one RTMP publish).
#[derive(Debug, Default)]
pub struct FlvDemuxer {
    mapper: TimestampMapper,
    config: StreamConfig,
    nalu_length_size: u8,
    stats: DemuxStats,
}

impl FlvDemuxer {
    /// A demuxer with the given timestamp limits.
    pub fn new(timestamps: TimestampConfig) -> Self {
        FlvDemuxer {
            mapper: TimestampMapper::new(timestamps),
            ..Default::default()
        }
    }

    /// The current track configuration.
    pub fn config(&self) -> &StreamConfig {
        &self.config
    }

    /// What was dropped so far.
    pub fn stats(&self) -> DemuxStats {
        self.stats
    }

    /// The timestamp mapper (for its rebase count).
    pub fn timestamps(&self) -> &TimestampMapper {
        &self.mapper
    }

    /// Handles one tag body. `Ok(None)` means the tag carried nothing for the media path (a
    /// repeated sequence header, a command frame, a frame before its configuration).
    pub fn handle_tag(
        &mut self,
        kind: TagKind,
        timestamp: u32,
        body: Bytes,
    ) -> Result<Option<DemuxEvent>> {
        match kind {
            TagKind::Video => self.handle_video(timestamp, flv::parse_video_tag(body)?),
            TagKind::Audio => self.handle_audio(timestamp, flv::parse_audio_tag(body)?),
            TagKind::Script => Ok(Metadata::parse_script_data(body)?.map(DemuxEvent::Metadata)),
        }
    }

    fn handle_video(&mut self, timestamp: u32, packet: VideoPacket) -> Result<Option<DemuxEvent>> {
        match packet {
            VideoPacket::SequenceHeader { codec, record } => {
                let (config, length_size) = match codec {
                    FlvVideoCodec::Avc => {
                        let rec = AvcDecoderConfigurationRecord::parse(record)?;
                        let size = rec.nalu_length_size;
                        (VideoConfig::from_avc(rec)?, size)
                    }
                    FlvVideoCodec::Hevc => {
                        let rec = HevcDecoderConfigurationRecord::parse(record)?;
                        let size = rec.nalu_length_size;
                        (VideoConfig::from_hevc(rec)?, size)
                    }
                };
                self.nalu_length_size = length_size;
                if self.config.video.as_deref() == Some(&config) {
                    return Ok(None);
                }
                self.config.video = Some(Arc::new(config));
                Ok(Some(DemuxEvent::Config(self.config.clone())))
            }
            VideoPacket::Frame {
                codec,
                keyframe: _,
                composition_ms,
                data,
            } => {
                let Some(video) = self.config.video.clone() else {
                    self.stats.frames_before_config += 1;
                    return Ok(None);
                };
                let configured = match video.codec {
                    VideoCodec::H264(_) => FlvVideoCodec::Avc,
                    VideoCodec::H265(_) => FlvVideoCodec::Hevc,
                };
                if codec != configured {
                    return Err(MediaError::invalid(
                        "FLV video tag",
                        format!("{codec:?} frame on a {configured:?} stream without a new sequence header"),
                    ));
                }
                if data.is_empty() {
                    self.stats.empty_frames += 1;
                    return Ok(None);
                }
                let (data, keyframe) = normalize_nal_units(&video, data, self.nalu_length_size)?;
                let ts = self.mapper.map(Track::Video, timestamp, composition_ms);
                Ok(Some(DemuxEvent::Frame(Frame {
                    track: Track::Video,
                    pts: ts.pts,
                    dts: ts.dts,
                    keyframe,
                    data,
                })))
            }
            VideoPacket::EndOfSequence | VideoPacket::Ignored => Ok(None),
        }
    }

    fn handle_audio(&mut self, timestamp: u32, packet: AudioPacket) -> Result<Option<DemuxEvent>> {
        match packet {
            AudioPacket::SequenceHeader(raw) => {
                let config = AudioConfig {
                    asc: AudioSpecificConfig::parse(raw)?,
                };
                if self.config.audio.as_deref() == Some(&config) {
                    return Ok(None);
                }
                self.config.audio = Some(Arc::new(config));
                Ok(Some(DemuxEvent::Config(self.config.clone())))
            }
            AudioPacket::Frame(data) => {
                if self.config.audio.is_none() {
                    self.stats.frames_before_config += 1;
                    return Ok(None);
                }
                if data.is_empty() {
                    self.stats.empty_frames += 1;
                    return Ok(None);
                }
                let ts = self.mapper.map(Track::Audio, timestamp, 0);
                Ok(Some(DemuxEvent::Frame(Frame {
                    track: Track::Audio,
                    pts: ts.pts,
                    dts: ts.dts,
                    keyframe: true,
                    data,
                })))
            }
        }
    }
}

const NALU: &str = "video NAL unit";

/// Checks every NAL unit length against the data, converts 1- and 2-byte length prefixes to
/// 4-byte ones (the only case that copies), and says whether the access unit is a keyframe
/// (contains an IDR / IRAP picture).
fn normalize_nal_units(video: &VideoConfig, data: Bytes, length_size: u8) -> Result<(Bytes, bool)> {
    let size = usize::from(length_size);
    let mut keyframe = false;
    let mut pos = 0;
    let mut count = 0;
    while pos < data.len() {
        let Some(prefix) = data.get(pos..pos + size) else {
            return Err(MediaError::Truncated {
                what: NALU,
                needed: pos + size - data.len(),
            });
        };
        let len = prefix
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        let start = pos + size;
        let Some(unit) = data.get(start..start + len) else {
            return Err(MediaError::invalid(
                NALU,
                format!(
                    "length {len} runs past the end of the frame ({} bytes left)",
                    data.len() - start
                ),
            ));
        };
        keyframe |= match video.codec {
            VideoCodec::H264(_) => unit.first().is_some_and(|b| b & 0x1f == avc::nal::IDR),
            VideoCodec::H265(_) => hevc::nal_type(unit)
                .is_some_and(|t| (hevc::nal::IRAP_FIRST..=hevc::nal::IRAP_LAST).contains(&t)),
        };
        pos = start + len;
        count += 1;
    }
    if count == 0 {
        return Err(MediaError::invalid(NALU, "frame holds no NAL unit"));
    }
    if size == 4 {
        return Ok((data, keyframe));
    }
    let mut out = BytesMut::with_capacity(data.len() + count * (4 - size));
    let mut pos = 0;
    while pos < data.len() {
        let len = data[pos..pos + size]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        out.put_u32(len as u32);
        out.put_slice(&data[pos + size..pos + size + len]);
        pos += size + len;
    }
    Ok((out.freeze(), keyframe))
}

/// Iterates over the NAL units of a model video frame (4-byte length prefixes). Stops at the
/// first inconsistency; frames from [`FlvDemuxer`] are already validated.
pub fn nal_units(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut pos = 0usize;
    std::iter::from_fn(move || {
        let prefix = data.get(pos..pos + 4)?;
        let len = u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]) as usize;
        let unit = data.get(pos + 4..pos + 4 + len)?;
        pos += 4 + len;
        Some(unit)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn avc_sequence_header() -> Bytes {
        let rec = AvcDecoderConfigurationRecord {
            profile: 0x42,
            compatibility: 0xc0,
            level: 0x1e,
            nalu_length_size: 4,
            // 320x240 baseline SPS from x264
            sps: vec![Bytes::from_static(&[
                0x67, 0x42, 0xc0, 0x1e, 0xd9, 0x01, 0x41, 0xfb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00,
                0x10, 0x00, 0x00, 0x03, 0x03, 0xc0, 0xf1, 0x62, 0xe4, 0x80,
            ])],
            pps: vec![Bytes::from_static(&[0x68, 0xcb, 0x83, 0xcb, 0x20])],
        };
        let mut body = vec![0x17, 0, 0, 0, 0];
        body.extend(rec.to_bytes());
        Bytes::from(body)
    }

    #[test]
    fn frames_before_config_are_dropped_and_counted() {
        let mut d = FlvDemuxer::default();
        let frame = Bytes::from_static(&[0x17, 1, 0, 0, 0, 0, 0, 0, 1, 0x65]);
        assert_eq!(
            d.handle_tag(TagKind::Video, 0, frame.clone()).unwrap(),
            None
        );
        assert_eq!(d.stats().frames_before_config, 1);
        let cfg = d
            .handle_tag(TagKind::Video, 0, avc_sequence_header())
            .unwrap();
        let Some(DemuxEvent::Config(cfg)) = cfg else {
            panic!("no config")
        };
        let video = cfg.video.unwrap();
        assert_eq!((video.width, video.height), (320, 240));
        // The same sequence header again is not a change.
        assert_eq!(
            d.handle_tag(TagKind::Video, 0, avc_sequence_header())
                .unwrap(),
            None
        );
        let Some(DemuxEvent::Frame(f)) = d.handle_tag(TagKind::Video, 0, frame).unwrap() else {
            panic!("no frame")
        };
        assert!(f.keyframe);
        assert_eq!(nal_units(&f.data).collect::<Vec<_>>(), vec![&[0x65][..]]);
    }

    #[test]
    fn nal_length_past_the_end_is_an_error() {
        let mut d = FlvDemuxer::default();
        d.handle_tag(TagKind::Video, 0, avc_sequence_header())
            .unwrap();
        let bad = Bytes::from_static(&[0x17, 1, 0, 0, 0, 0, 0, 0, 9, 0x65]);
        let err = d.handle_tag(TagKind::Video, 0, bad).unwrap_err();
        assert!(err.to_string().contains("runs past the end"), "{err}");
        let short = Bytes::from_static(&[0x17, 1, 0, 0, 0, 0, 0]);
        assert!(d.handle_tag(TagKind::Video, 0, short).is_err());
    }

    #[test]
    fn zero_byte_sequence_headers_are_errors() {
        let mut d = FlvDemuxer::default();
        assert!(d
            .handle_tag(TagKind::Video, 0, Bytes::from_static(&[0x17, 0, 0, 0, 0]))
            .is_err());
        assert!(d
            .handle_tag(TagKind::Audio, 0, Bytes::from_static(&[0xaf, 0]))
            .is_err());
    }
}
