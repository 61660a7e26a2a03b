//! Fuzzes the decoder configuration parsers a peer feeds through sequence headers:
//! AVCDecoderConfigurationRecord (and its SPS), HEVCDecoderConfigurationRecord (and its SPS),
//! AudioSpecificConfig, ADTS headers, and AMF0 script data.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use media::aac::{parse_adts, AudioSpecificConfig};
use media::amf0::{decode_all, Metadata};
use media::avc::{self, AvcDecoderConfigurationRecord};
use media::hevc::{self, HevcDecoderConfigurationRecord};
use media::VideoConfig;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let bytes = Bytes::copy_from_slice(rest);
    match selector % 6 {
        0 => {
            if let Ok(rec) = AvcDecoderConfigurationRecord::parse(bytes) {
                let _ = VideoConfig::from_avc(rec);
            }
        }
        1 => {
            if let Ok(rec) = HevcDecoderConfigurationRecord::parse(bytes) {
                let _ = rec.codec_string();
                let _ = VideoConfig::from_hevc(rec);
            }
        }
        2 => {
            let _ = avc::parse_sps(rest);
            let _ = hevc::parse_sps(rest);
        }
        3 => {
            if let Ok(asc) = AudioSpecificConfig::parse(bytes) {
                let _ = asc.adts_header(rest.len());
                let _ = asc.frame_duration_90k();
            }
        }
        4 => {
            let _ = parse_adts(rest);
            let _ = media::annexb::split(rest).count();
        }
        _ => {
            let _ = decode_all(bytes.clone());
            let _ = Metadata::parse_script_data(bytes);
        }
    }
});
