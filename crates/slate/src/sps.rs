//! Signalling the frame rate in an H.264 SPS: OpenH264 writes a VUI without
//! `timing_info`, so players would have to guess the slate's frame rate. This rewrites the
//! encoder's SPS with `timing_info` (and `fixed_frame_rate_flag`) spliced into its VUI, every
//! other bit copied as it was.

use media::annexb::rbsp as to_rbsp;

use crate::bits::{from_rbsp, BitReader, BitWriter};
use crate::error::SlateError;

/// `profile_idc` values whose SPS carries the chroma format and bit depth fields.
const HIGH_PROFILES: &[u32] = &[100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135];

fn unexpected(what: &str) -> SlateError {
    SlateError::Encoder(format!("unexpected SPS from the encoder: {what}"))
}

/// Returns `sps` (a NAL unit with its header byte, no start code) with VUI timing information
/// for a frame rate of `time_scale / (2 * num_units_in_tick)`.
pub(crate) fn with_timing(
    sps: &[u8],
    num_units_in_tick: u32,
    time_scale: u32,
) -> Result<Vec<u8>, SlateError> {
    let (&header, payload) = sps.split_first().ok_or_else(|| unexpected("empty"))?;
    if header & 0x1f != 7 {
        return Err(unexpected("not an SPS NAL unit"));
    }
    let rbsp = to_rbsp(payload);
    // The rbsp_stop_one_bit: everything before it is syntax, everything after is padding.
    let last = rbsp
        .iter()
        .rposition(|&b| b != 0)
        .ok_or_else(|| unexpected("no stop bit"))?;
    let stop_bit = last * 8 + 7 - rbsp[last].trailing_zeros() as usize;

    let mut r = BitReader::new(&rbsp);
    let mut w = BitWriter::default();
    let profile_idc = r.bits(8)?;
    r.bits(16)?; // constraint flags, level_idc
    r.ue()?; // seq_parameter_set_id
    if HIGH_PROFILES.contains(&profile_idc) {
        if r.ue()? == 3 {
            r.bit()?; // separate_colour_plane_flag
        }
        r.ue()?; // bit_depth_luma_minus8
        r.ue()?; // bit_depth_chroma_minus8
        r.bit()?; // qpprime_y_zero_transform_bypass_flag
        if r.bit()? {
            return Err(unexpected("scaling matrices"));
        }
    }
    r.ue()?; // log2_max_frame_num_minus4
    match r.ue()? {
        0 => {
            r.ue()?;
        }
        1 => {
            r.bit()?;
            r.se()?;
            r.se()?;
            for _ in 0..r.ue()?.min(255) {
                r.se()?;
            }
        }
        _ => {}
    }
    r.ue()?; // max_num_ref_frames
    r.bit()?; // gaps_in_frame_num_value_allowed_flag
    r.ue()?; // pic_width_in_mbs_minus1
    r.ue()?; // pic_height_in_map_units_minus1
    if !r.bit()? {
        r.bit()?; // mb_adaptive_frame_field_flag
    }
    r.bit()?; // direct_8x8_inference_flag
    if r.bit()? {
        for _ in 0..4 {
            r.ue()?; // frame_crop_*_offset
        }
    }
    r.copy_span(0, &mut w);
    let vui_present = r.bit()?;
    w.bit(true);
    let mut rest_from = r.position();
    if vui_present {
        let vui_start = r.position();
        if r.bit()? && r.bits(8)? == 255 {
            r.bits(32)?; // sar_width, sar_height
        }
        if r.bit()? {
            r.bit()?; // overscan_appropriate_flag
        }
        if r.bit()? {
            r.bits(4)?; // video_format, video_full_range_flag
            if r.bit()? {
                r.bits(24)?; // colour description
            }
        }
        if r.bit()? {
            r.ue()?;
            r.ue()?;
        }
        r.copy_span(vui_start, &mut w);
        if r.bit()? {
            r.bits(32)?;
            r.bits(32)?;
            r.bit()?;
        }
        rest_from = r.position();
    } else {
        // aspect_ratio_info, overscan_info, video_signal_type, chroma_loc_info: absent.
        w.bits(4, 0);
    }
    w.bit(true); // timing_info_present_flag
    w.bits(32, num_units_in_tick);
    w.bits(32, time_scale);
    w.bit(true); // fixed_frame_rate_flag
    if vui_present {
        // The rest of the VUI (HRD, pic_struct, bitstream_restriction) as it was.
        let mut rest = BitReader::new(&rbsp);
        rest.bits(rest_from as u32 % 8)?;
        for _ in 0..rest_from / 8 {
            rest.bits(8)?;
        }
        while rest.position() < stop_bit {
            w.bit(rest.bit()?);
        }
    } else {
        w.bits(3, 0); // no NAL HRD, no VCL HRD, no pic_struct
        w.bit(false); // bitstream_restriction_flag
    }
    if !vui_present && rest_from != stop_bit {
        return Err(unexpected("data after vui_parameters_present_flag"));
    }
    w.trailing_bits();
    let mut out = vec![header];
    out.extend(from_rbsp(&w.into_bytes()));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use media::avc::parse_sps;

    /// OpenH264's 1920x1080 constrained-baseline SPS with a BT.709 VUI and no timing.
    const SPS_OPENH264_1080P: &[u8] = &[
        0x67, 0x42, 0xc0, 0x28, 0x8c, 0x68, 0x07, 0x80, 0x22, 0x7e, 0x59, 0xa8, 0x08, 0x08, 0x08,
        0x3c, 0x22, 0x11, 0xa8,
    ];

    #[test]
    fn adds_timing_to_a_vui_without_it() {
        assert_eq!(parse_sps(SPS_OPENH264_1080P).unwrap().frame_rate, None);
        let sps = with_timing(SPS_OPENH264_1080P, 1001, 60_000).unwrap();
        let info = parse_sps(&sps).unwrap();
        assert_eq!((info.width, info.height), (1920, 1080));
        let fps = info.frame_rate.unwrap();
        assert!((fps - 29.97).abs() < 0.001, "{fps}");
    }

    #[test]
    fn replaces_existing_timing() {
        let at_30 = with_timing(SPS_OPENH264_1080P, 1, 60).unwrap();
        let sps = with_timing(&at_30, 1, 50).unwrap();
        let info = parse_sps(&sps).unwrap();
        assert_eq!(
            (info.width, info.height, info.frame_rate),
            (1920, 1080, Some(25.0))
        );
        // The old timing is replaced, not added to, and what follows it is kept.
        assert_eq!(sps.len(), at_30.len());
        assert_eq!(with_timing(&sps, 1, 60).unwrap(), at_30);
    }

    #[test]
    fn adds_a_vui_when_there_is_none() {
        // The 1080p SPS with vui_parameters_present_flag cleared and the VUI cut off.
        let mut w = BitWriter::default();
        let rbsp = to_rbsp(&SPS_OPENH264_1080P[1..]);
        let mut r = BitReader::new(&rbsp);
        // Up to and including frame cropping, as in with_timing: 8+16 bits, then fields.
        r.bits(24).unwrap();
        for _ in 0..3 {
            r.ue().unwrap(); // sps id, log2_max_frame_num, poc type (2)
        }
        r.ue().unwrap(); // max_num_ref_frames
        r.bit().unwrap();
        r.ue().unwrap();
        r.ue().unwrap();
        r.bit().unwrap(); // frame_mbs_only_flag = 1
        r.bit().unwrap();
        assert!(r.bit().unwrap(), "cropped to 1080");
        for _ in 0..4 {
            r.ue().unwrap();
        }
        r.copy_span(0, &mut w);
        w.bit(false);
        w.trailing_bits();
        let mut bare = vec![0x67];
        bare.extend(from_rbsp(&w.into_bytes()));
        assert_eq!(parse_sps(&bare).unwrap().frame_rate, None);
        let sps = with_timing(&bare, 1, 60).unwrap();
        let info = parse_sps(&sps).unwrap();
        assert_eq!(
            (info.width, info.height, info.frame_rate),
            (1920, 1080, Some(30.0))
        );
    }

    #[test]
    fn refuses_what_is_not_an_sps() {
        assert!(with_timing(&[], 1, 60).is_err());
        assert!(with_timing(&[0x68, 0xce, 0x3c, 0x80], 1, 60).is_err());
        assert!(with_timing(&[0x67, 0x42, 0xc0], 1, 60).is_err());
    }
}
