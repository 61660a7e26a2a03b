//! H.264/AVC: the `AVCDecoderConfigurationRecord` that RTMP sends as the sequence header, and
//! the fields of the sequence parameter set that HLS needs (resolution, frame rate, codec string).

use bytes::Bytes;

use crate::bits::{rbsp, BitReader};
use crate::error::{MediaError, Result};
use crate::reader::ByteReader;

/// NAL unit types of H.264 that the muxer looks at.
pub mod nal {
    /// Instantaneous decoding refresh slice (a keyframe).
    pub const IDR: u8 = 5;
    /// Sequence parameter set.
    pub const SPS: u8 = 7;
    /// Picture parameter set.
    pub const PPS: u8 = 8;
    /// Access unit delimiter.
    pub const AUD: u8 = 9;
}

/// An `AVCDecoderConfigurationRecord` (ISO/IEC 14496-15, 5.3.3.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvcDecoderConfigurationRecord {
    /// `AVCProfileIndication`.
    pub profile: u8,
    /// `profile_compatibility` (the constraint flags byte).
    pub compatibility: u8,
    /// `AVCLevelIndication`.
    pub level: u8,
    /// Size in bytes of the NAL unit length prefix in frames (1, 2 or 4).
    pub nalu_length_size: u8,
    /// Sequence parameter sets, without start codes.
    pub sps: Vec<Bytes>,
    /// Picture parameter sets, without start codes.
    pub pps: Vec<Bytes>,
}

const WHAT: &str = "AVCDecoderConfigurationRecord";

impl AvcDecoderConfigurationRecord {
    /// Parses a record; refuses records without an SPS and a PPS.
    pub fn parse(data: Bytes) -> Result<Self> {
        let mut r = ByteReader::new(data, WHAT);
        let version = r.u8()?;
        if version != 1 {
            return Err(MediaError::invalid(
                WHAT,
                format!("configurationVersion {version}, expected 1"),
            ));
        }
        let profile = r.u8()?;
        let compatibility = r.u8()?;
        let level = r.u8()?;
        let nalu_length_size = (r.u8()? & 0x03) + 1;
        if nalu_length_size == 3 {
            return Err(MediaError::invalid(WHAT, "NAL unit length size 3"));
        }
        let num_sps = r.u8()? & 0x1f;
        let mut sps = Vec::with_capacity(usize::from(num_sps));
        for _ in 0..num_sps {
            let len = usize::from(r.u16()?);
            sps.push(r.take(len)?);
        }
        let num_pps = r.u8()?;
        let mut pps = Vec::with_capacity(usize::from(num_pps));
        for _ in 0..num_pps {
            let len = usize::from(r.u16()?);
            pps.push(r.take(len)?);
        }
        // Trailing bytes (chroma format extensions for high profiles) are allowed and ignored.
        if sps.iter().all(|s| s.is_empty()) {
            return Err(MediaError::invalid(WHAT, "no sequence parameter set"));
        }
        if pps.iter().all(|p| p.is_empty()) {
            return Err(MediaError::invalid(WHAT, "no picture parameter set"));
        }
        Ok(AvcDecoderConfigurationRecord {
            profile,
            compatibility,
            level,
            nalu_length_size,
            sps,
            pps,
        })
    }

    /// Serialises the record (used to build fixtures and, later, fMP4 init segments).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = vec![
            1,
            self.profile,
            self.compatibility,
            self.level,
            0xfc | (self.nalu_length_size - 1),
            0xe0 | self.sps.len() as u8,
        ];
        for s in &self.sps {
            out.extend_from_slice(&(s.len() as u16).to_be_bytes());
            out.extend_from_slice(s);
        }
        out.push(self.pps.len() as u8);
        for p in &self.pps {
            out.extend_from_slice(&(p.len() as u16).to_be_bytes());
            out.extend_from_slice(p);
        }
        out
    }

    /// The RFC 6381 codec string, `avc1.PPCCLL`.
    pub fn codec_string(&self) -> String {
        format!(
            "avc1.{:02x}{:02x}{:02x}",
            self.profile, self.compatibility, self.level
        )
    }

    /// Parses the first SPS.
    pub fn sps_info(&self) -> Result<SpsInfo> {
        let sps = self
            .sps
            .first()
            .ok_or_else(|| MediaError::invalid(WHAT, "no sequence parameter set"))?;
        parse_sps(sps)
    }
}

/// What HLS needs from a sequence parameter set.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SpsInfo {
    /// Display width in pixels (after cropping).
    pub width: u32,
    /// Display height in pixels (after cropping).
    pub height: u32,
    /// Frame rate from the VUI timing information, when present.
    pub frame_rate: Option<f64>,
}

const SPS: &str = "H.264 SPS";

/// Parses an H.264 sequence parameter set NAL unit (with its one-byte NAL header).
pub fn parse_sps(nal_unit: &[u8]) -> Result<SpsInfo> {
    if nal_unit.first().map(|b| b & 0x1f) != Some(nal::SPS) {
        return Err(MediaError::invalid(SPS, "not an SPS NAL unit"));
    }
    let data = rbsp(&nal_unit[1..]);
    let mut r = BitReader::new(&data, SPS);
    let profile_idc = r.bits(8)?;
    r.skip(16)?; // constraint flags, level_idc
    r.ue()?; // seq_parameter_set_id
    let mut chroma_format_idc = 1;
    let mut separate_colour_plane = false;
    if matches!(
        profile_idc,
        100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135
    ) {
        chroma_format_idc = r.ue()?;
        if chroma_format_idc > 3 {
            return Err(MediaError::invalid(SPS, "chroma_format_idc above 3"));
        }
        if chroma_format_idc == 3 {
            separate_colour_plane = r.bit()?;
        }
        r.ue()?; // bit_depth_luma_minus8
        r.ue()?; // bit_depth_chroma_minus8
        r.skip(1)?; // qpprime_y_zero_transform_bypass_flag
        if r.bit()? {
            // seq_scaling_matrix_present_flag
            let lists = if chroma_format_idc == 3 { 12 } else { 8 };
            for i in 0..lists {
                if r.bit()? {
                    skip_scaling_list(&mut r, if i < 6 { 16 } else { 64 })?;
                }
            }
        }
    }
    r.ue()?; // log2_max_frame_num_minus4
    match r.ue()? {
        0 => {
            r.ue()?; // log2_max_pic_order_cnt_lsb_minus4
        }
        1 => {
            r.skip(1)?;
            r.se()?;
            r.se()?;
            let cycle = r.ue()?;
            if cycle > 255 {
                return Err(MediaError::invalid(
                    SPS,
                    "num_ref_frames_in_pic_order_cnt_cycle",
                ));
            }
            for _ in 0..cycle {
                r.se()?;
            }
        }
        2 => {}
        other => {
            return Err(MediaError::invalid(
                SPS,
                format!("pic_order_cnt_type {other}"),
            ))
        }
    }
    r.ue()?; // max_num_ref_frames
    r.skip(1)?; // gaps_in_frame_num_value_allowed_flag
    let width_mbs = u64::from(r.ue()?) + 1;
    let height_map_units = u64::from(r.ue()?) + 1;
    let frame_mbs_only = r.bit()?;
    if !frame_mbs_only {
        r.skip(1)?; // mb_adaptive_frame_field_flag
    }
    r.skip(1)?; // direct_8x8_inference_flag
    let (mut crop_x, mut crop_y) = (0u64, 0u64);
    if r.bit()? {
        let (left, right, top, bottom) = (r.ue()?, r.ue()?, r.ue()?, r.ue()?);
        let chroma_array_type = if separate_colour_plane {
            0
        } else {
            chroma_format_idc
        };
        let (sub_w, sub_h) = match chroma_array_type {
            1 => (2, 2),
            2 => (2, 1),
            _ => (1, 1),
        };
        let unit_y = sub_h * (2 - u64::from(frame_mbs_only));
        crop_x = sub_w * (u64::from(left) + u64::from(right));
        crop_y = unit_y * (u64::from(top) + u64::from(bottom));
    }
    let full_w = width_mbs * 16;
    let full_h = height_map_units * 16 * (2 - u64::from(frame_mbs_only));
    if crop_x >= full_w || crop_y >= full_h || full_w > 16384 || full_h > 16384 {
        return Err(MediaError::invalid(SPS, "picture size out of range"));
    }
    let mut frame_rate = None;
    if r.bit()? {
        frame_rate = parse_vui_frame_rate(&mut r).unwrap_or(None);
    }
    Ok(SpsInfo {
        width: (full_w - crop_x) as u32,
        height: (full_h - crop_y) as u32,
        frame_rate,
    })
}

fn skip_scaling_list(r: &mut BitReader<'_>, size: usize) -> Result<()> {
    let (mut last, mut next) = (8i32, 8i32);
    for _ in 0..size {
        if next != 0 {
            let delta = r.se()?;
            if !(-128..=127).contains(&delta) {
                return Err(MediaError::invalid(
                    SPS,
                    format!("delta_scale {delta} out of range"),
                ));
            }
            next = (last + delta + 256).rem_euclid(256);
        }
        if next != 0 {
            last = next;
        }
    }
    Ok(())
}

/// Reads the VUI up to `timing_info`; a VUI that ends early just has no frame rate.
fn parse_vui_frame_rate(r: &mut BitReader<'_>) -> Result<Option<f64>> {
    if r.bit()? {
        // aspect_ratio_info_present_flag
        if r.bits(8)? == 255 {
            r.skip(32)?;
        }
    }
    if r.bit()? {
        r.skip(1)?; // overscan_appropriate_flag
    }
    if r.bit()? {
        r.skip(4)?; // video_format, video_full_range_flag
        if r.bit()? {
            r.skip(24)?;
        }
    }
    if r.bit()? {
        r.ue()?;
        r.ue()?;
    }
    if r.bit()? {
        let num_units_in_tick = r.bits(32)?;
        let time_scale = r.bits(32)?;
        if num_units_in_tick > 0 && time_scale > 0 {
            let fps = f64::from(time_scale) / (2.0 * f64::from(num_units_in_tick));
            if (0.5..=1000.0).contains(&fps) {
                return Ok(Some(fps));
            }
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SPS of libx264 1280x720, High profile, level 3.1, 30 fps timing.
    const SPS_720P: &[u8] = &[
        0x67, 0x64, 0x00, 0x1f, 0xac, 0xd9, 0x40, 0x50, 0x05, 0xbb, 0x01, 0x6a, 0x02, 0x02, 0x02,
        0x80, 0x00, 0x00, 0x03, 0x00, 0x80, 0x00, 0x00, 0x1e, 0x07, 0x8c, 0x18, 0xcb,
    ];

    #[test]
    fn parses_sps_resolution_and_rate() {
        let info = parse_sps(SPS_720P).unwrap();
        assert_eq!((info.width, info.height), (1280, 720));
        assert_eq!(info.frame_rate, Some(30.0));
    }

    #[test]
    fn record_roundtrip_and_codec_string() {
        let rec = AvcDecoderConfigurationRecord {
            profile: 0x64,
            compatibility: 0,
            level: 0x1f,
            nalu_length_size: 4,
            sps: vec![Bytes::from_static(SPS_720P)],
            pps: vec![Bytes::from_static(&[0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0])],
        };
        let parsed = AvcDecoderConfigurationRecord::parse(Bytes::from(rec.to_bytes())).unwrap();
        assert_eq!(parsed, rec);
        assert_eq!(parsed.codec_string(), "avc1.64001f");
    }

    #[test]
    fn refuses_empty_and_truncated_records() {
        assert!(AvcDecoderConfigurationRecord::parse(Bytes::new()).is_err());
        assert!(
            AvcDecoderConfigurationRecord::parse(Bytes::from_static(&[1, 0x64, 0, 0x1f])).is_err()
        );
        // One SPS announced with 0x40 bytes but only 2 present.
        assert!(AvcDecoderConfigurationRecord::parse(Bytes::from_static(&[
            1, 0x64, 0, 0x1f, 0xff, 0xe1, 0x00, 0x40, 0x67, 0x64
        ]))
        .is_err());
        assert!(parse_sps(&[0x67]).is_err());
        // Found by the decoder_configs fuzz target: a scaling list delta of -2^31.
        let crash = [
            103u8, 100, 59, 0, 47, 249, 0, 0, 0, 0, 94, 110, 99, 111, 100, 101, 114, 0, 0, 0, 0,
            255, 255, 255, 18, 24, 1, 1, 12, 255, 0, 60, 26, 103, 100,
        ];
        assert!(parse_sps(&crash).is_err());
        assert!(parse_sps(&[]).is_err());
    }
}
