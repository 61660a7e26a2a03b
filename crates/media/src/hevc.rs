//! H.265/HEVC: the `HEVCDecoderConfigurationRecord` that enhanced RTMP (`hvc1`) sends as the
//! sequence start, building one from parameter sets, and the SPS fields HLS needs.

use bytes::Bytes;

use crate::bits::{rbsp, BitReader};
use crate::error::{MediaError, Result};
use crate::reader::ByteReader;

/// NAL unit types of HEVC that the muxer looks at.
pub mod nal {
    /// First IRAP type (BLA_W_LP); IRAP pictures are 16..=23.
    pub const IRAP_FIRST: u8 = 16;
    /// Last IRAP type (reserved IRAP 23).
    pub const IRAP_LAST: u8 = 23;
    /// Video parameter set.
    pub const VPS: u8 = 32;
    /// Sequence parameter set.
    pub const SPS: u8 = 33;
    /// Picture parameter set.
    pub const PPS: u8 = 34;
    /// Access unit delimiter.
    pub const AUD: u8 = 35;
    /// Prefix SEI.
    pub const PREFIX_SEI: u8 = 39;
}

/// The NAL unit type of an HEVC NAL unit (from its two-byte header).
pub fn nal_type(nal_unit: &[u8]) -> Option<u8> {
    nal_unit.first().map(|b| (b >> 1) & 0x3f)
}

/// The general profile/tier/level of an HEVC stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProfileTierLevel {
    /// `general_profile_space` (0..=3).
    pub profile_space: u8,
    /// `general_tier_flag` (high tier when set).
    pub tier: bool,
    /// `general_profile_idc`.
    pub profile_idc: u8,
    /// `general_profile_compatibility_flags`.
    pub compatibility: u32,
    /// The 48 bits of `general_constraint_indicator_flags`.
    pub constraints: u64,
    /// `general_level_idc`.
    pub level_idc: u8,
}

/// An `HEVCDecoderConfigurationRecord` (ISO/IEC 14496-15, 8.3.3.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HevcDecoderConfigurationRecord {
    /// General profile, tier and level.
    pub ptl: ProfileTierLevel,
    /// `chromaFormat`.
    pub chroma_format: u8,
    /// `bitDepthLumaMinus8`.
    pub bit_depth_luma_minus8: u8,
    /// `bitDepthChromaMinus8`.
    pub bit_depth_chroma_minus8: u8,
    /// Size in bytes of the NAL unit length prefix in frames (1, 2 or 4).
    pub nalu_length_size: u8,
    /// Video parameter sets.
    pub vps: Vec<Bytes>,
    /// Sequence parameter sets.
    pub sps: Vec<Bytes>,
    /// Picture parameter sets.
    pub pps: Vec<Bytes>,
}

const WHAT: &str = "HEVCDecoderConfigurationRecord";

impl HevcDecoderConfigurationRecord {
    /// Parses a record; refuses records without a VPS, an SPS and a PPS.
    pub fn parse(data: Bytes) -> Result<Self> {
        let mut r = ByteReader::new(data, WHAT);
        let version = r.u8()?;
        if version != 1 {
            return Err(MediaError::invalid(
                WHAT,
                format!("configurationVersion {version}, expected 1"),
            ));
        }
        let b = r.u8()?;
        let ptl = ProfileTierLevel {
            profile_space: b >> 6,
            tier: b & 0x20 != 0,
            profile_idc: b & 0x1f,
            compatibility: r.u32()?,
            constraints: r.be(6)?,
            level_idc: r.u8()?,
        };
        r.skip(3)?; // min_spatial_segmentation_idc, parallelismType
        let chroma_format = r.u8()? & 0x03;
        let bit_depth_luma_minus8 = r.u8()? & 0x07;
        let bit_depth_chroma_minus8 = r.u8()? & 0x07;
        r.skip(2)?; // avgFrameRate
        let nalu_length_size = (r.u8()? & 0x03) + 1;
        if nalu_length_size == 3 {
            return Err(MediaError::invalid(WHAT, "NAL unit length size 3"));
        }
        let arrays = r.u8()?;
        let (mut vps, mut sps, mut pps) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..arrays {
            let nal_type = r.u8()? & 0x3f;
            let count = r.u16()?;
            for _ in 0..count {
                let len = usize::from(r.u16()?);
                let unit = r.take(len)?;
                match nal_type {
                    nal::VPS => vps.push(unit),
                    nal::SPS => sps.push(unit),
                    nal::PPS => pps.push(unit),
                    _ => {} // SEI arrays are allowed and not needed
                }
            }
        }
        for (name, set) in [("video", &vps), ("sequence", &sps), ("picture", &pps)] {
            if set.iter().all(|s| s.is_empty()) {
                return Err(MediaError::invalid(
                    WHAT,
                    format!("no {name} parameter set"),
                ));
            }
        }
        Ok(HevcDecoderConfigurationRecord {
            ptl,
            chroma_format,
            bit_depth_luma_minus8,
            bit_depth_chroma_minus8,
            nalu_length_size,
            vps,
            sps,
            pps,
        })
    }

    /// Builds a record from parameter sets found in band (Annex-B input), taking profile, tier,
    /// level and chroma format from the SPS.
    pub fn from_parameter_sets(vps: Bytes, sps: Bytes, pps: Bytes) -> Result<Self> {
        let info = parse_sps(&sps)?;
        Ok(HevcDecoderConfigurationRecord {
            ptl: info.ptl,
            chroma_format: info.chroma_format_idc,
            bit_depth_luma_minus8: info.bit_depth_luma_minus8,
            bit_depth_chroma_minus8: info.bit_depth_chroma_minus8,
            nalu_length_size: 4,
            vps: vec![vps],
            sps: vec![sps],
            pps: vec![pps],
        })
    }

    /// Serialises the record.
    pub fn to_bytes(&self) -> Vec<u8> {
        let p = &self.ptl;
        let mut out = vec![
            1,
            (p.profile_space << 6) | (u8::from(p.tier) << 5) | (p.profile_idc & 0x1f),
        ];
        out.extend_from_slice(&p.compatibility.to_be_bytes());
        out.extend_from_slice(&p.constraints.to_be_bytes()[2..]);
        out.push(p.level_idc);
        out.extend_from_slice(&[0xf0, 0x00, 0xfc]);
        out.push(0xfc | self.chroma_format);
        out.push(0xf8 | self.bit_depth_luma_minus8);
        out.push(0xf8 | self.bit_depth_chroma_minus8);
        out.extend_from_slice(&[0, 0]);
        out.push(0x0f | (self.nalu_length_size - 1)); // 1 temporal layer, nested
        out.push(3);
        for (nal_type, set) in [
            (nal::VPS, &self.vps),
            (nal::SPS, &self.sps),
            (nal::PPS, &self.pps),
        ] {
            out.push(0x80 | nal_type);
            out.extend_from_slice(&(set.len() as u16).to_be_bytes());
            for unit in set {
                out.extend_from_slice(&(unit.len() as u16).to_be_bytes());
                out.extend_from_slice(unit);
            }
        }
        out
    }

    /// The RFC 6381 / ISO 14496-15 Annex E codec string, e.g. `hvc1.1.6.L93.B0`.
    pub fn codec_string(&self) -> String {
        let p = &self.ptl;
        let space = ["", "A", "B", "C"][usize::from(p.profile_space & 3)];
        let mut s = format!(
            "hvc1.{space}{}.{:X}.{}{}",
            p.profile_idc,
            p.compatibility.reverse_bits(),
            if p.tier { 'H' } else { 'L' },
            p.level_idc
        );
        let constraint_bytes = p.constraints.to_be_bytes();
        let bytes = &constraint_bytes[2..];
        let used = bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
        for b in &bytes[..used] {
            s.push_str(&format!(".{b:X}"));
        }
        s
    }

    /// Parses the first SPS.
    pub fn sps_info(&self) -> Result<HevcSpsInfo> {
        let sps = self
            .sps
            .first()
            .ok_or_else(|| MediaError::invalid(WHAT, "no sequence parameter set"))?;
        parse_sps(sps)
    }
}

/// What HLS needs from an HEVC sequence parameter set.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HevcSpsInfo {
    /// General profile, tier and level.
    pub ptl: ProfileTierLevel,
    /// `chroma_format_idc`.
    pub chroma_format_idc: u8,
    /// `bit_depth_luma_minus8`.
    pub bit_depth_luma_minus8: u8,
    /// `bit_depth_chroma_minus8`.
    pub bit_depth_chroma_minus8: u8,
    /// Display width in pixels (after the conformance window).
    pub width: u32,
    /// Display height in pixels (after the conformance window).
    pub height: u32,
}

const SPS: &str = "HEVC SPS";

/// Parses an HEVC SPS NAL unit (with its two-byte NAL header) up to the bit depths.
pub fn parse_sps(nal_unit: &[u8]) -> Result<HevcSpsInfo> {
    if nal_type(nal_unit) != Some(nal::SPS) || nal_unit.len() < 3 {
        return Err(MediaError::invalid(SPS, "not an SPS NAL unit"));
    }
    let data = rbsp(&nal_unit[2..]);
    let mut r = BitReader::new(&data, SPS);
    r.skip(4)?; // sps_video_parameter_set_id
    let max_sub_layers_minus1 = r.bits(3)?;
    r.skip(1)?; // sps_temporal_id_nesting_flag
    let b = r.bits(8)?;
    let compatibility = r.bits(32)?;
    let constraints = (u64::from(r.bits(16)?) << 32) | u64::from(r.bits(32)?);
    let level_idc = r.bits(8)? as u8;
    let ptl = ProfileTierLevel {
        profile_space: (b >> 6) as u8,
        tier: b & 0x20 != 0,
        profile_idc: (b & 0x1f) as u8,
        compatibility,
        constraints,
        level_idc,
    };
    let mut sub_profile = [false; 8];
    let mut sub_level = [false; 8];
    for i in 0..max_sub_layers_minus1 as usize {
        sub_profile[i] = r.bit()?;
        sub_level[i] = r.bit()?;
    }
    if max_sub_layers_minus1 > 0 {
        for _ in max_sub_layers_minus1..8 {
            r.skip(2)?;
        }
    }
    for i in 0..max_sub_layers_minus1 as usize {
        if sub_profile[i] {
            r.skip(88)?;
        }
        if sub_level[i] {
            r.skip(8)?;
        }
    }
    r.ue()?; // sps_seq_parameter_set_id
    let chroma_format_idc = r.ue()?;
    if chroma_format_idc > 3 {
        return Err(MediaError::invalid(SPS, "chroma_format_idc above 3"));
    }
    let mut separate_colour_plane = false;
    if chroma_format_idc == 3 {
        separate_colour_plane = r.bit()?;
    }
    let full_w = u64::from(r.ue()?);
    let full_h = u64::from(r.ue()?);
    let (mut crop_x, mut crop_y) = (0u64, 0u64);
    if r.bit()? {
        let (sub_w, sub_h) = match (chroma_format_idc, separate_colour_plane) {
            (1, _) => (2, 2),
            (2, _) => (2, 1),
            _ => (1, 1),
        };
        let (left, right, top, bottom) = (r.ue()?, r.ue()?, r.ue()?, r.ue()?);
        crop_x = sub_w * (u64::from(left) + u64::from(right));
        crop_y = sub_h * (u64::from(top) + u64::from(bottom));
    }
    if full_w == 0
        || full_h == 0
        || crop_x >= full_w
        || crop_y >= full_h
        || full_w > 16888
        || full_h > 16888
    {
        return Err(MediaError::invalid(SPS, "picture size out of range"));
    }
    let bit_depth_luma_minus8 = r.ue()?;
    let bit_depth_chroma_minus8 = r.ue()?;
    if bit_depth_luma_minus8 > 8 || bit_depth_chroma_minus8 > 8 {
        return Err(MediaError::invalid(SPS, "bit depth above 16"));
    }
    Ok(HevcSpsInfo {
        ptl,
        chroma_format_idc: chroma_format_idc as u8,
        bit_depth_luma_minus8: bit_depth_luma_minus8 as u8,
        bit_depth_chroma_minus8: bit_depth_chroma_minus8 as u8,
        width: (full_w - crop_x) as u32,
        height: (full_h - crop_y) as u32,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codec_string_of_main_profile() {
        let rec = HevcDecoderConfigurationRecord {
            ptl: ProfileTierLevel {
                profile_space: 0,
                tier: false,
                profile_idc: 1,
                compatibility: 0x6000_0000,
                constraints: 0xb000_0000_0000,
                level_idc: 93,
            },
            chroma_format: 1,
            bit_depth_luma_minus8: 0,
            bit_depth_chroma_minus8: 0,
            nalu_length_size: 4,
            vps: vec![Bytes::from_static(&[0x40, 0x01])],
            sps: vec![Bytes::from_static(&[0x42, 0x01])],
            pps: vec![Bytes::from_static(&[0x44, 0x01])],
        };
        assert_eq!(rec.codec_string(), "hvc1.1.6.L93.B0");
        let parsed = HevcDecoderConfigurationRecord::parse(Bytes::from(rec.to_bytes())).unwrap();
        assert_eq!(parsed, rec);
    }

    #[test]
    fn refuses_records_without_parameter_sets() {
        assert!(HevcDecoderConfigurationRecord::parse(Bytes::new()).is_err());
        let mut bytes = vec![1u8; 22];
        bytes.push(0); // no arrays
        assert!(HevcDecoderConfigurationRecord::parse(Bytes::from(bytes)).is_err());
        assert!(parse_sps(&[0x42, 0x01]).is_err());
    }
}
