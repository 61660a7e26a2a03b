//! Digital silence as raw AAC-LC frames.
//!
//! A silent frame needs no encoder: each channel element is an `individual_channel_stream`
//! with `max_sfb = 0`, so it has no scale factor bands and no spectral data, and decodes to
//! 1024 zero samples per channel at any sampling rate (ISO/IEC 14496-3, 4.4.2). For mono that
//! is the well-known `01 40 20 07`, for stereo `21 10 04 60 8c 1c`. Channel configurations 3 to
//! 7 are the same elements in the order of Table 1.19 (SCE, CPE, ..., LFE).

use bytes::Bytes;
use media::aac::{AudioSpecificConfig, SAMPLE_RATES};

use crate::bits::BitWriter;
use crate::error::SlateError;

/// AAC-LC, the only object type of the slate's audio.
const AAC_LC: u8 = 2;

/// `id_syn_ele` values.
const ID_SCE: u32 = 0;
const ID_CPE: u32 = 1;
const ID_LFE: u32 = 3;
const ID_END: u32 = 7;

/// The channel configuration for `channels`: 1 to 6 are configurations 1 to 6, 8 is 7 (7.1).
/// There is no configuration for 0, 7 or more than 8 channels without a program config
/// element; those fall back to stereo (2).
pub(crate) fn channel_config(channels: u8) -> u8 {
    match channels {
        1..=6 => channels,
        8 => 7,
        _ => 2,
    }
}

/// The `AudioSpecificConfig` of silent AAC-LC at `sample_rate` (which must have a sampling
/// frequency index) with `channel_config`.
pub(crate) fn audio_specific_config(
    sample_rate: u32,
    channel_config: u8,
) -> Result<AudioSpecificConfig, SlateError> {
    let index = SAMPLE_RATES
        .iter()
        .position(|&r| r == sample_rate)
        .ok_or_else(|| {
            SlateError::InvalidSpec(format!(
                "AAC sample rate {sample_rate} Hz has no sampling frequency index (one of {SAMPLE_RATES:?})"
            ))
        })?;
    Ok(AudioSpecificConfig::new(
        AAC_LC,
        index as u8,
        channel_config,
    )?)
}

/// Writes an `individual_channel_stream` with no bands. `ics_info` is written unless the
/// element shares it (`common_window`).
fn silent_ics(w: &mut BitWriter, with_ics_info: bool) {
    w.bits(8, 100); // global_gain: irrelevant without bands
    if with_ics_info {
        silent_ics_info(w);
    }
    // section_data and scale_factor_data are empty with max_sfb = 0.
    w.bit(false); // pulse_data_present
    w.bit(false); // tns_data_present
    w.bit(false); // gain_control_data_present
}

fn silent_ics_info(w: &mut BitWriter) {
    w.bit(false); // ics_reserved_bit
    w.bits(2, 0); // window_sequence: ONLY_LONG_SEQUENCE
    w.bit(true); // window_shape: KBD
    w.bits(6, 0); // max_sfb
    w.bit(false); // predictor_data_present
}

/// One raw AAC-LC frame (no ADTS header) of silence for `channel_config` (1 to 7).
pub(crate) fn silent_frame(channel_config: u8) -> Bytes {
    let elements: &[u32] = match channel_config {
        1 => &[ID_SCE],
        3 => &[ID_SCE, ID_CPE],
        4 => &[ID_SCE, ID_CPE, ID_SCE],
        5 => &[ID_SCE, ID_CPE, ID_CPE],
        6 => &[ID_SCE, ID_CPE, ID_CPE, ID_LFE],
        7 => &[ID_SCE, ID_CPE, ID_CPE, ID_CPE, ID_LFE],
        _ => &[ID_CPE],
    };
    let mut w = BitWriter::default();
    let mut instances = [0u32; 4];
    for &id in elements {
        w.bits(3, id);
        w.bits(4, instances[id as usize]); // element_instance_tag
        instances[id as usize] += 1;
        if id == ID_CPE {
            w.bit(true); // common_window
            silent_ics_info(&mut w);
            w.bits(2, 0); // ms_mask_present
            silent_ics(&mut w, false);
            silent_ics(&mut w, false);
        } else {
            silent_ics(&mut w, true);
        }
    }
    w.bits(3, ID_END);
    w.align_zero();
    Bytes::from(w.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mono_and_stereo_are_the_usual_silent_frames_but_for_the_gain() {
        // The published frames (global_gain 160 and 140) with this module's gain of 100.
        let mono = silent_frame(1);
        assert_eq!(mono.len(), 4);
        assert_eq!(mono[..], [0x00, 0xc8, 0x20, 0x07]);
        let stereo = silent_frame(2);
        assert_eq!(stereo.len(), 6);
        assert_eq!(stereo[..2], [0x21, 0x10]);
        assert_eq!(stereo[5] & 0x1c, 0x1c, "ends with ID_END");
    }

    #[test]
    fn channel_configs_and_fallback() {
        assert_eq!(channel_config(1), 1);
        assert_eq!(channel_config(6), 6);
        assert_eq!(channel_config(8), 7);
        for odd in [0, 7, 9, 255] {
            assert_eq!(channel_config(odd), 2, "{odd} channels fall back to stereo");
        }
    }

    #[test]
    fn config_for_every_sample_rate_index() {
        for (i, &rate) in SAMPLE_RATES.iter().enumerate() {
            let asc = audio_specific_config(rate, 2).unwrap();
            assert_eq!(
                (asc.object_type, asc.sampling_index as usize, asc.channels()),
                (2, i, 2)
            );
        }
        assert!(matches!(
            audio_specific_config(44_000, 2),
            Err(SlateError::InvalidSpec(_))
        ));
    }
}
