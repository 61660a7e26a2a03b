//! AAC: the `AudioSpecificConfig` that RTMP sends as the sequence header, and the 7-byte ADTS
//! header that MPEG-TS carries in front of every raw AAC frame.

use bytes::Bytes;

use crate::bits::BitReader;
use crate::error::{MediaError, Result};

/// Sampling frequencies by ADTS/ASC index.
pub const SAMPLE_RATES: [u32; 13] = [
    96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
];

/// Samples per AAC frame (AAC-LC; HE-AAC core frames too).
pub const SAMPLES_PER_FRAME: u32 = 1024;

/// A parsed `AudioSpecificConfig` (ISO/IEC 14496-3, 1.6.2.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioSpecificConfig {
    /// The audio object type as signalled (2 = AAC-LC, 5 = HE-AAC/SBR, 29 = HE-AACv2/PS).
    pub object_type: u8,
    /// The core object type that ADTS carries (2 for HE-AAC with an LC core).
    pub core_object_type: u8,
    /// Index into [`SAMPLE_RATES`] of the core sampling frequency.
    pub sampling_index: u8,
    /// `channelConfiguration` (1 = mono, 2 = stereo, ... 7).
    pub channel_config: u8,
    /// The bytes as received.
    pub raw: Bytes,
}

const WHAT: &str = "AudioSpecificConfig";

fn read_object_type(r: &mut BitReader<'_>) -> Result<u8> {
    let t = r.bits(5)? as u8;
    Ok(if t == 31 { 32 + r.bits(6)? as u8 } else { t })
}

fn read_sampling_index(r: &mut BitReader<'_>) -> Result<u8> {
    let index = r.bits(4)? as u8;
    if index == 15 {
        let rate = r.bits(24)?;
        return SAMPLE_RATES
            .iter()
            .position(|&s| s == rate)
            .map(|i| i as u8)
            .ok_or_else(|| MediaError::invalid(WHAT, format!("sampling frequency {rate} Hz")));
    }
    if usize::from(index) >= SAMPLE_RATES.len() {
        return Err(MediaError::invalid(
            WHAT,
            format!("sampling frequency index {index}"),
        ));
    }
    Ok(index)
}

impl AudioSpecificConfig {
    /// Parses an `AudioSpecificConfig`; refuses what ADTS cannot carry.
    pub fn parse(raw: Bytes) -> Result<Self> {
        let mut r = BitReader::new(&raw, WHAT);
        let object_type = read_object_type(&mut r)?;
        let sampling_index = read_sampling_index(&mut r)?;
        let channel_config = r.bits(4)? as u8;
        let mut core_object_type = object_type;
        if object_type == 5 || object_type == 29 {
            // Explicit SBR/PS signalling: the extension rate, then the core object type.
            let _extension_rate = read_sampling_index(&mut r)?;
            core_object_type = read_object_type(&mut r)?;
        }
        if !(1..=4).contains(&core_object_type) {
            return Err(MediaError::UnsupportedCodec {
                codec: format!("AAC object type {core_object_type}"),
                reason: "ADTS in MPEG-TS carries AAC Main, LC, SSR and LTP only",
            });
        }
        if channel_config == 0 || channel_config > 7 {
            return Err(MediaError::invalid(
                WHAT,
                format!("channel configuration {channel_config} (program config elements are not supported)"),
            ));
        }
        Ok(AudioSpecificConfig {
            object_type,
            core_object_type,
            sampling_index,
            channel_config,
            raw,
        })
    }

    /// A minimal two-byte config (used by tests and for parsing ADTS input).
    pub fn new(object_type: u8, sampling_index: u8, channel_config: u8) -> Result<Self> {
        let b0 = (object_type << 3) | (sampling_index >> 1);
        let b1 = ((sampling_index & 1) << 7) | (channel_config << 3);
        Self::parse(Bytes::copy_from_slice(&[b0, b1]))
    }

    /// Core sampling frequency in Hz.
    pub fn sample_rate(&self) -> u32 {
        SAMPLE_RATES[usize::from(self.sampling_index)]
    }

    /// Number of channels.
    pub fn channels(&self) -> u8 {
        if self.channel_config == 7 {
            8
        } else {
            self.channel_config
        }
    }

    /// The RFC 6381 codec string, `mp4a.40.N`.
    pub fn codec_string(&self) -> String {
        format!("mp4a.40.{}", self.object_type)
    }

    /// Duration of one frame in 90 kHz ticks (rounded).
    pub fn frame_duration_90k(&self) -> u64 {
        (u64::from(SAMPLES_PER_FRAME) * 90_000).div_ceil(u64::from(self.sample_rate()))
    }

    /// The 7-byte ADTS header (no CRC) for a raw frame of `payload_len` bytes.
    pub fn adts_header(&self, payload_len: usize) -> Result<[u8; 7]> {
        let frame_len = payload_len + 7;
        if frame_len > 0x1fff {
            return Err(MediaError::invalid(
                "AAC frame",
                format!("{payload_len} bytes is too large for ADTS"),
            ));
        }
        let profile = self.core_object_type - 1;
        let fl = frame_len as u32;
        Ok([
            0xff,
            0xf1, // MPEG-4, layer 0, no CRC
            (profile << 6) | (self.sampling_index << 2) | (self.channel_config >> 2),
            ((self.channel_config & 3) << 6) | ((fl >> 11) as u8 & 0x03),
            (fl >> 3) as u8,
            (((fl & 7) << 5) as u8) | 0x1f,
            0xfc, // buffer fullness 0x7ff (VBR), one raw data block
        ])
    }
}

/// One frame of an ADTS stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdtsFrame {
    /// Header length (7, or 9 with CRC).
    pub header_len: usize,
    /// Whole frame length including the header.
    pub frame_len: usize,
    /// Core object type (ADTS profile + 1).
    pub object_type: u8,
    /// Sampling frequency index.
    pub sampling_index: u8,
    /// Channel configuration.
    pub channel_config: u8,
}

/// Parses the ADTS header at the start of `data`.
pub fn parse_adts(data: &[u8]) -> Result<AdtsFrame> {
    const ADTS: &str = "ADTS header";
    if data.len() < 7 {
        return Err(MediaError::Truncated {
            what: ADTS,
            needed: 7 - data.len(),
        });
    }
    if data[0] != 0xff || data[1] & 0xf6 != 0xf0 {
        return Err(MediaError::invalid(ADTS, "missing syncword"));
    }
    let header_len = if data[1] & 1 == 0 { 9 } else { 7 };
    let frame_len =
        (usize::from(data[3] & 3) << 11) | (usize::from(data[4]) << 3) | usize::from(data[5] >> 5);
    if frame_len < header_len {
        return Err(MediaError::invalid(
            ADTS,
            format!("frame length {frame_len}"),
        ));
    }
    let sampling_index = (data[2] >> 2) & 0x0f;
    if usize::from(sampling_index) >= SAMPLE_RATES.len() {
        return Err(MediaError::invalid(
            ADTS,
            format!("sampling frequency index {sampling_index}"),
        ));
    }
    Ok(AdtsFrame {
        header_len,
        frame_len,
        object_type: (data[2] >> 6) + 1,
        sampling_index,
        channel_config: ((data[2] & 1) << 2) | (data[3] >> 6),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lc_and_builds_adts() {
        // AAC-LC, 44.1 kHz, stereo
        let asc = AudioSpecificConfig::parse(Bytes::from_static(&[0x12, 0x10])).unwrap();
        assert_eq!(asc.object_type, 2);
        assert_eq!(asc.sample_rate(), 44100);
        assert_eq!(asc.channels(), 2);
        assert_eq!(asc.codec_string(), "mp4a.40.2");
        let h = asc.adts_header(100).unwrap();
        assert_eq!(h[..2], [0xff, 0xf1]);
        let len = (u32::from(h[3] & 3) << 11) | (u32::from(h[4]) << 3) | u32::from(h[5] >> 5);
        assert_eq!(len, 107);
        assert!(asc.adts_header(10_000).is_err());
        let mut frame = h.to_vec();
        frame.extend_from_slice(&[0; 100]);
        let parsed = parse_adts(&frame).unwrap();
        assert_eq!((parsed.header_len, parsed.frame_len), (7, 107));
        assert_eq!(
            (
                parsed.object_type,
                parsed.sampling_index,
                parsed.channel_config
            ),
            (2, 4, 2)
        );
        assert!(parse_adts(&frame[..5]).is_err());
    }

    #[test]
    fn he_aac_uses_its_lc_core() {
        // object type 5, 24 kHz core (index 6), stereo, extension 48 kHz (index 3), core type 2
        let asc =
            AudioSpecificConfig::parse(Bytes::from_static(&[0x2b, 0x11, 0x88, 0x00])).unwrap();
        assert_eq!(asc.object_type, 5);
        assert_eq!(asc.core_object_type, 2);
        assert_eq!(asc.codec_string(), "mp4a.40.5");
    }

    #[test]
    fn refuses_bad_configs() {
        assert!(AudioSpecificConfig::parse(Bytes::new()).is_err());
        assert!(AudioSpecificConfig::parse(Bytes::from_static(&[0x12])).is_err());
        // sampling index 13 is reserved
        assert!(AudioSpecificConfig::parse(Bytes::from_static(&[0x16, 0x90])).is_err());
        // object type 42 (USAC) cannot go into ADTS
        assert!(matches!(
            AudioSpecificConfig::parse(Bytes::from_static(&[0xf8, 0x28, 0x10, 0x00])),
            Err(MediaError::UnsupportedCodec { .. })
        ));
    }
}
