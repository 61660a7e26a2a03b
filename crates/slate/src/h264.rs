//! Encoding the slate picture as one GOP of H.264 with OpenH264: an IDR, then P frames that
//! repeat it (every macroblock skipped, a few bytes each), in constrained baseline profile at
//! the lowest level that fits, with the exact size (cropped) and the frame rate in the SPS.

use bytes::Bytes;
use media::avc::{nal, AvcDecoderConfigurationRecord};
use openh264::encoder::{
    Complexity, Encoder, EncoderConfig, FrameRate as EncoderFrameRate, FrameType, IntraFramePeriod,
    Level, Profile, RateControlMode, UsageType, VuiConfig,
};
use openh264::formats::YUVBuffer;
use openh264::{OpenH264API, Timestamp};

use crate::error::SlateError;
use crate::sps;
use crate::timing::FrameRate;

/// The encoded GOP: the decoder configuration and each frame as AVCC (4-byte lengths),
/// without parameter sets (the muxer puts them in front of every keyframe).
#[derive(Debug)]
pub(crate) struct EncodedGop {
    pub(crate) record: AvcDecoderConfigurationRecord,
    pub(crate) frames: Vec<Bytes>,
}

/// Levels of Table A-1 of H.264: (level_idc, max macroblocks per second, max frame size in
/// macroblocks, OpenH264's name for it).
const LEVELS: &[(u8, u64, u64, Level)] = &[
    (10, 1_485, 99, Level::Level_1_0),
    (11, 3_000, 396, Level::Level_1_1),
    (12, 6_000, 396, Level::Level_1_2),
    (13, 11_880, 396, Level::Level_1_3),
    (20, 11_880, 396, Level::Level_2_0),
    (21, 19_800, 792, Level::Level_2_1),
    (22, 20_250, 1_620, Level::Level_2_2),
    (30, 40_500, 1_620, Level::Level_3_0),
    (31, 108_000, 3_600, Level::Level_3_1),
    (32, 216_000, 5_120, Level::Level_3_2),
    (40, 245_760, 8_192, Level::Level_4_0),
    (42, 522_240, 8_704, Level::Level_4_2),
    (50, 589_824, 22_080, Level::Level_5_0),
    (51, 983_040, 36_864, Level::Level_5_1),
    (52, 2_073_600, 36_864, Level::Level_5_2),
];

/// The lowest level whose frame size (including the per-dimension bound
/// `sqrt(8 * MaxFS)`) and macroblock rate fit.
fn level_for(width: u32, height: u32, rate: FrameRate) -> Option<(u8, Level)> {
    let (mbs_w, mbs_h) = (
        u64::from(width.div_ceil(16)),
        u64::from(height.div_ceil(16)),
    );
    let frame_mbs = mbs_w * mbs_h;
    let mbs_per_sec = (frame_mbs * u64::from(rate.num)).div_ceil(u64::from(rate.den));
    LEVELS
        .iter()
        .find(|(_, max_mbps, max_fs, _)| {
            frame_mbs <= *max_fs
                && mbs_w * mbs_w <= 8 * max_fs
                && mbs_h * mbs_h <= 8 * max_fs
                && mbs_per_sec <= *max_mbps
        })
        .map(|&(idc, _, _, level)| (idc, level))
}

fn encoder_error(e: openh264::Error) -> SlateError {
    SlateError::Encoder(e.to_string())
}

/// The NAL units of an Annex-B buffer (OpenH264 writes 4-byte start codes), without their
/// start codes.
fn split_annex_b(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    media::annexb::split(data).filter(|n| !n.is_empty())
}

/// Encodes `frames` frames of the I420 picture `yuv` (`width` x `height`, both even).
pub(crate) fn encode_gop(
    yuv: Vec<u8>,
    width: u32,
    height: u32,
    frames: usize,
    rate: FrameRate,
) -> Result<EncodedGop, SlateError> {
    let (_, level) = level_for(width, height, rate).ok_or_else(|| {
        SlateError::InvalidSpec(format!(
            "{width}x{height} at {} fps is beyond H.264 level 5.2",
            rate.as_f64()
        ))
    })?;
    let config = EncoderConfig::new()
        .usage_type(UsageType::CameraVideoRealTime)
        .profile(Profile::Baseline)
        .level(level)
        .max_frame_rate(EncoderFrameRate::from_hz(rate.as_f64() as f32))
        // A fixed quantiser (OpenH264's default layer QP, 26): a still picture is encoded
        // once, so there is no rate to control, and the rate-controlled modes spend ~600
        // bytes on every P frame refining what the IDR already shows.
        .rate_control_mode(RateControlMode::Off)
        // Every frame must come out: a skipped frame would leave a hole in the GOP.
        .skip_frames(false)
        .scene_change_detect(false)
        .background_detection(false)
        // Periodic IDRs are the run's business (each GOP cycle starts with the IDR).
        .intra_frame_period(IntraFramePeriod::from_num_frames(frames as u32))
        // One thread: a one-off encode next to live streams should not take every core.
        .num_threads(1)
        // Measured: 15% faster than the default (medium) for the same GOP size and quality.
        .complexity(Complexity::Low)
        .vui(VuiConfig::bt709());
    let mut encoder =
        Encoder::with_api_config(OpenH264API::from_source(), config).map_err(encoder_error)?;
    let picture = YUVBuffer::from_vec(yuv, width as usize, height as usize);

    let (mut sps, mut pps) = (None, None);
    let mut out = Vec::with_capacity(frames);
    for i in 0..frames {
        let millis = i as u64 * 1000 * u64::from(rate.den) / u64::from(rate.num);
        let stream = encoder
            .encode_at(&picture, Timestamp::from_millis(millis))
            .map_err(encoder_error)?;
        let expected = if i == 0 { FrameType::IDR } else { FrameType::P };
        if stream.frame_type() != expected {
            return Err(SlateError::Encoder(format!(
                "frame {i} came out as {:?}, expected {expected:?}",
                stream.frame_type()
            )));
        }
        let annex_b = stream.to_vec();
        let mut avcc = Vec::with_capacity(annex_b.len());
        for unit in split_annex_b(&annex_b) {
            match unit[0] & 0x1f {
                nal::SPS => sps = Some(Bytes::copy_from_slice(unit)),
                nal::PPS => pps = Some(Bytes::copy_from_slice(unit)),
                _ => {
                    avcc.extend_from_slice(&(unit.len() as u32).to_be_bytes());
                    avcc.extend_from_slice(unit);
                }
            }
        }
        if avcc.is_empty() {
            return Err(SlateError::Encoder(format!("frame {i} has no slice")));
        }
        out.push(Bytes::from(avcc));
    }
    let sps = sps.ok_or_else(|| SlateError::Encoder("no SPS".into()))?;
    let pps = pps.ok_or_else(|| SlateError::Encoder("no PPS".into()))?;
    // fps = time_scale / (2 * num_units_in_tick): one tick per field, two per frame.
    let sps = Bytes::from(sps::with_timing(&sps, rate.den, rate.num * 2)?);
    if sps.len() < 4 {
        return Err(SlateError::Encoder("SPS too short".into()));
    }
    // The record repeats what the SPS says (OpenH264 may raise a level it finds too low).
    let record = AvcDecoderConfigurationRecord {
        profile: sps[1],
        compatibility: sps[2],
        level: sps[3],
        nalu_length_size: 4,
        sps: vec![sps],
        pps: vec![pps],
    };
    Ok(EncodedGop {
        record,
        frames: out,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_fit_common_formats() {
        let at = |w, h, num, den| level_for(w, h, FrameRate { num, den }).map(|l| l.0);
        assert_eq!(at(1280, 720, 30, 1), Some(31));
        assert_eq!(at(1280, 720, 60, 1), Some(32));
        assert_eq!(at(1920, 1080, 25, 1), Some(40));
        assert_eq!(at(1920, 1080, 30_000, 1001), Some(40));
        assert_eq!(at(1920, 1080, 60, 1), Some(42));
        assert_eq!(at(640, 360, 30, 1), Some(30));
        assert_eq!(at(3840, 2160, 30, 1), Some(51));
        // Portrait 1080x1920 fits level 4.0's frame size and per-dimension bound.
        assert_eq!(at(1080, 1920, 30, 1), Some(40));
        assert_eq!(at(3840, 2160, 120, 1), None);
    }
}
