//! FLV: the file container (for fixtures, the load generator and recordings) and the audio and
//! video tag bodies that RTMP delivers unchanged, legacy and enhanced RTMP (FourCC) alike.

use bytes::{BufMut, Bytes};

use crate::error::{MediaError, Result};
use crate::reader::ByteReader;

/// The type of an FLV tag (the same numbers as RTMP message types).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagKind {
    /// Audio data (type 8).
    Audio,
    /// Video data (type 9).
    Video,
    /// Script data, AMF0 (type 18).
    Script,
}

impl TagKind {
    /// The tag type byte.
    pub fn type_id(self) -> u8 {
        match self {
            TagKind::Audio => 8,
            TagKind::Video => 9,
            TagKind::Script => 18,
        }
    }
}

/// One tag of an FLV file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlvTag {
    /// What the body holds.
    pub kind: TagKind,
    /// Timestamp in milliseconds (32 bits, with the extension byte).
    pub timestamp: u32,
    /// The tag body, sharing the file's allocation.
    pub body: Bytes,
}

const FILE: &str = "FLV file";

/// Reads the tags of an FLV file held in memory. Tags of unknown types are skipped; the first
/// malformed tag ends the iteration with an error.
#[derive(Debug)]
pub struct FlvReader {
    r: ByteReader,
    failed: bool,
}

impl FlvReader {
    /// Checks the FLV header and positions the reader on the first tag.
    pub fn new(data: Bytes) -> Result<Self> {
        let mut r = ByteReader::new(data, FILE);
        let signature = r.take(3)?;
        if signature.as_ref() != b"FLV" {
            return Err(MediaError::invalid(FILE, "missing FLV signature"));
        }
        r.u8()?; // version
        r.u8()?; // flags (advisory; tracks are found from the tags)
        let header_len = r.u32()? as usize;
        if header_len < 9 {
            return Err(MediaError::invalid(FILE, "header shorter than 9 bytes"));
        }
        r.skip(header_len - 9)?;
        r.u32()?; // PreviousTagSize0
        Ok(FlvReader { r, failed: false })
    }

    fn read_tag(&mut self) -> Result<Option<FlvTag>> {
        loop {
            if self.r.is_empty() {
                return Ok(None);
            }
            let type_id = self.r.u8()? & 0x1f; // bit 5 is the (unsupported) encryption filter
            let size = self.r.u24()? as usize;
            let ts = self.r.u24()?;
            let ts_ext = self.r.u8()?;
            self.r.u24()?; // stream id
            let body = self.r.take(size)?;
            self.r.u32()?; // PreviousTagSize
            let kind = match type_id {
                8 => TagKind::Audio,
                9 => TagKind::Video,
                18 => TagKind::Script,
                _ => continue,
            };
            return Ok(Some(FlvTag {
                kind,
                timestamp: (u32::from(ts_ext) << 24) | ts,
                body,
            }));
        }
    }
}

impl Iterator for FlvReader {
    type Item = Result<FlvTag>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        match self.read_tag() {
            Ok(tag) => tag.map(Ok),
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

/// Writes an FLV file header (with PreviousTagSize0).
pub fn write_header(out: &mut impl BufMut, has_audio: bool, has_video: bool) {
    out.put_slice(b"FLV\x01");
    out.put_u8((u8::from(has_audio) << 2) | u8::from(has_video));
    out.put_u32(9);
    out.put_u32(0);
}

/// Writes one FLV tag with its trailing PreviousTagSize. Bodies larger than 16 MiB cannot be
/// represented and are refused.
pub fn write_tag(out: &mut impl BufMut, kind: TagKind, timestamp: u32, body: &[u8]) -> Result<()> {
    if body.len() >= 1 << 24 {
        return Err(MediaError::invalid("FLV tag", "body larger than 16 MiB"));
    }
    out.put_u8(kind.type_id());
    out.put_uint(body.len() as u64, 3);
    out.put_uint(u64::from(timestamp & 0x00ff_ffff), 3);
    out.put_u8((timestamp >> 24) as u8);
    out.put_uint(0, 3);
    out.put_slice(body);
    out.put_u32(body.len() as u32 + 11);
    Ok(())
}

/// Video codecs that FLV/RTMP can announce and OnAir carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlvVideoCodec {
    /// H.264 (legacy codec id 7, or FourCC `avc1`).
    Avc,
    /// H.265 (FourCC `hvc1`, or the widespread non-standard legacy codec id 12).
    Hevc,
}

/// A parsed video tag body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VideoPacket {
    /// The decoder configuration record (`avcC` / `hvcC`).
    SequenceHeader {
        /// The codec it configures.
        codec: FlvVideoCodec,
        /// The record.
        record: Bytes,
    },
    /// Coded frame data: NAL units with length prefixes.
    Frame {
        /// The codec.
        codec: FlvVideoCodec,
        /// A keyframe (frame type 1).
        keyframe: bool,
        /// Composition time offset in ms (PTS - DTS).
        composition_ms: i32,
        /// The length-prefixed NAL units.
        data: Bytes,
    },
    /// End of sequence.
    EndOfSequence,
    /// Nothing for the media path (video info/command frames, enhanced metadata).
    Ignored,
}

const VIDEO: &str = "FLV video tag";

fn unsupported_video(codec: &str) -> MediaError {
    MediaError::UnsupportedCodec {
        codec: codec.to_owned(),
        reason: "HLS over MPEG-TS carries H.264 and HEVC video only",
    }
}

/// Parses the body of a video tag / RTMP video message.
pub fn parse_video_tag(body: Bytes) -> Result<VideoPacket> {
    let mut r = ByteReader::new(body, VIDEO);
    let b = r.u8()?;
    if b & 0x80 != 0 {
        return parse_enhanced_video(b, &mut r);
    }
    let frame_type = b >> 4;
    let codec = match b & 0x0f {
        7 => FlvVideoCodec::Avc,
        12 => FlvVideoCodec::Hevc,
        2 => return Err(unsupported_video("Sorenson H.263")),
        3 => return Err(unsupported_video("Screen video")),
        4 => return Err(unsupported_video("On2 VP6")),
        5 => return Err(unsupported_video("On2 VP6 with alpha")),
        6 => return Err(unsupported_video("Screen video v2")),
        other => {
            return Err(MediaError::invalid(
                VIDEO,
                format!("unknown codec id {other}"),
            ));
        }
    };
    if frame_type == 5 {
        return Ok(VideoPacket::Ignored);
    }
    let packet_type = r.u8()?;
    let composition_ms = r.i24()?;
    match packet_type {
        0 => Ok(VideoPacket::SequenceHeader {
            codec,
            record: r.rest(),
        }),
        1 => Ok(VideoPacket::Frame {
            codec,
            keyframe: frame_type == 1,
            composition_ms,
            data: r.rest(),
        }),
        2 => Ok(VideoPacket::EndOfSequence),
        other => Err(MediaError::invalid(
            VIDEO,
            format!("AVC packet type {other}"),
        )),
    }
}

fn parse_enhanced_video(b: u8, r: &mut ByteReader) -> Result<VideoPacket> {
    let frame_type = (b >> 4) & 0x07;
    let packet_type = b & 0x0f;
    match packet_type {
        6 => {
            return Err(MediaError::UnsupportedCodec {
                codec: "enhanced RTMP multitrack video".into(),
                reason: "one video track per stream is supported",
            })
        }
        7 => {
            return Err(MediaError::invalid(
                VIDEO,
                "enhanced RTMP ModEx packets are not supported",
            ));
        }
        _ => {}
    }
    let fourcc = r.take(4)?;
    let codec = match fourcc.as_ref() {
        b"avc1" => FlvVideoCodec::Avc,
        b"hvc1" => FlvVideoCodec::Hevc,
        b"av01" => return Err(unsupported_video("AV1 (av01)")),
        b"vp09" => return Err(unsupported_video("VP9 (vp09)")),
        b"vp08" => return Err(unsupported_video("VP8 (vp08)")),
        other => {
            return Err(unsupported_video(&format!(
                "FourCC {:?}",
                String::from_utf8_lossy(other)
            )))
        }
    };
    if frame_type == 5 {
        return Ok(VideoPacket::Ignored);
    }
    match packet_type {
        0 => Ok(VideoPacket::SequenceHeader {
            codec,
            record: r.rest(),
        }),
        1 | 3 => {
            let composition_ms = if packet_type == 1 { r.i24()? } else { 0 };
            Ok(VideoPacket::Frame {
                codec,
                keyframe: frame_type == 1,
                composition_ms,
                data: r.rest(),
            })
        }
        2 => Ok(VideoPacket::EndOfSequence),
        4 => Ok(VideoPacket::Ignored),
        other => Err(MediaError::invalid(
            VIDEO,
            format!("enhanced video packet type {other}"),
        )),
    }
}

/// A parsed audio tag body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AudioPacket {
    /// The `AudioSpecificConfig`.
    SequenceHeader(Bytes),
    /// One raw AAC frame.
    Frame(Bytes),
}

const AUDIO: &str = "FLV audio tag";

fn unsupported_audio(codec: &str) -> MediaError {
    MediaError::UnsupportedCodec {
        codec: codec.to_owned(),
        reason: "OnAir carries AAC audio only",
    }
}

/// Parses the body of an audio tag / RTMP audio message.
pub fn parse_audio_tag(body: Bytes) -> Result<AudioPacket> {
    let mut r = ByteReader::new(body, AUDIO);
    let b = r.u8()?;
    match b >> 4 {
        10 => match r.u8()? {
            0 => Ok(AudioPacket::SequenceHeader(r.rest())),
            1 => Ok(AudioPacket::Frame(r.rest())),
            other => Err(MediaError::invalid(
                AUDIO,
                format!("AAC packet type {other}"),
            )),
        },
        9 => {
            let packet_type = b & 0x0f;
            if packet_type == 5 || packet_type == 7 {
                return Err(MediaError::UnsupportedCodec {
                    codec: "enhanced RTMP multitrack/ModEx audio".into(),
                    reason: "one AAC audio track per stream is supported",
                });
            }
            let fourcc = r.take(4)?;
            match fourcc.as_ref() {
                b"mp4a" => match packet_type {
                    0 => Ok(AudioPacket::SequenceHeader(r.rest())),
                    1 => Ok(AudioPacket::Frame(r.rest())),
                    other => Err(MediaError::invalid(
                        AUDIO,
                        format!("enhanced audio packet type {other}"),
                    )),
                },
                b"Opus" => Err(unsupported_audio("Opus")),
                b"fLaC" => Err(unsupported_audio("FLAC")),
                b"ac-3" => Err(unsupported_audio("AC-3")),
                b"ec-3" => Err(unsupported_audio("E-AC-3")),
                b".mp3" => Err(unsupported_audio("MP3")),
                other => Err(unsupported_audio(&format!(
                    "FourCC {:?}",
                    String::from_utf8_lossy(other)
                ))),
            }
        }
        0 | 3 => Err(unsupported_audio("Linear PCM")),
        1 => Err(unsupported_audio("ADPCM")),
        2 | 14 => Err(unsupported_audio("MP3")),
        4..=6 => Err(unsupported_audio("Nellymoser")),
        7 => Err(unsupported_audio("G.711 A-law")),
        8 => Err(unsupported_audio("G.711 mu-law")),
        11 => Err(unsupported_audio("Speex")),
        other => Err(MediaError::invalid(
            AUDIO,
            format!("unknown sound format {other}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_roundtrip() {
        let mut out = Vec::new();
        write_header(&mut out, true, true);
        write_tag(&mut out, TagKind::Video, 0x0123_4567, &[0x17, 0, 0, 0, 0]).unwrap();
        write_tag(&mut out, TagKind::Audio, 5, &[0xaf, 1, 9]).unwrap();
        let tags: Vec<_> = FlvReader::new(Bytes::from(out))
            .unwrap()
            .collect::<Result<_>>()
            .unwrap();
        assert_eq!(tags.len(), 2);
        assert_eq!(tags[0].timestamp, 0x0123_4567);
        assert_eq!(tags[1].kind, TagKind::Audio);
        assert_eq!(tags[1].body.as_ref(), &[0xaf, 1, 9]);
    }

    #[test]
    fn truncated_file_is_an_error() {
        let mut out = Vec::new();
        write_header(&mut out, false, true);
        write_tag(
            &mut out,
            TagKind::Video,
            0,
            &[0x17, 1, 0, 0, 0, 0, 0, 0, 1, 0x65],
        )
        .unwrap();
        out.truncate(out.len() - 6);
        let mut reader = FlvReader::new(Bytes::from(out)).unwrap();
        assert!(matches!(
            reader.next(),
            Some(Err(MediaError::Truncated { .. }))
        ));
        assert!(reader.next().is_none());
    }

    #[test]
    fn video_tags() {
        let p = parse_video_tag(Bytes::from_static(&[
            0x27, 1, 0xff, 0xff, 0xfe, 0, 0, 0, 1, 0x41,
        ]))
        .unwrap();
        assert_eq!(
            p,
            VideoPacket::Frame {
                codec: FlvVideoCodec::Avc,
                keyframe: false,
                composition_ms: -2,
                data: Bytes::from_static(&[0, 0, 0, 1, 0x41]),
            }
        );
        let hevc =
            parse_video_tag(Bytes::from_static(&[0x90, b'h', b'v', b'c', b'1', 1, 2, 3])).unwrap();
        assert!(matches!(
            hevc,
            VideoPacket::SequenceHeader {
                codec: FlvVideoCodec::Hevc,
                ..
            }
        ));
        let err = parse_video_tag(Bytes::from_static(&[0x90, b'a', b'v', b'0', b'1'])).unwrap_err();
        assert!(err.to_string().contains("AV1"), "{err}");
        let err = parse_video_tag(Bytes::from_static(&[0x12, 0])).unwrap_err();
        assert!(err.to_string().contains("Sorenson"), "{err}");
        assert!(parse_video_tag(Bytes::from_static(&[0x1f])).is_err());
        assert!(parse_video_tag(Bytes::new()).is_err());
        assert!(parse_video_tag(Bytes::from_static(&[0x17, 0])).is_err());
    }

    #[test]
    fn audio_tags() {
        assert_eq!(
            parse_audio_tag(Bytes::from_static(&[0xaf, 0, 0x12, 0x10])).unwrap(),
            AudioPacket::SequenceHeader(Bytes::from_static(&[0x12, 0x10]))
        );
        let err = parse_audio_tag(Bytes::from_static(&[0x2f, 0])).unwrap_err();
        assert!(err.to_string().contains("MP3"), "{err}");
        let err = parse_audio_tag(Bytes::from_static(&[0x91, b'O', b'p', b'u', b's'])).unwrap_err();
        assert!(err.to_string().contains("Opus"), "{err}");
        assert!(parse_audio_tag(Bytes::from_static(&[0xaf])).is_err());
    }
}
