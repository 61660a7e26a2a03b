//! Fuzzes the FLV/RTMP tag path: the FLV file reader, and a demuxer fed tag bodies (video,
//! audio, script) as an RTMP peer would send them, with every frame it produces muxed to TS.
//! Input layout: a sequence of [kind byte][u16 length][timestamp u32][body].
#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use media::flv::{FlvReader, TagKind};
use media::{DemuxEvent, FlvDemuxer, TsMuxer};

fuzz_target!(|data: &[u8]| {
    // The same bytes as an FLV file.
    if let Ok(reader) = FlvReader::new(Bytes::copy_from_slice(data)) {
        for tag in reader.take(10_000) {
            if tag.is_err() {
                break;
            }
        }
    }
    let mut demuxer = FlvDemuxer::default();
    let mut muxer: Option<TsMuxer> = None;
    let mut out = BytesMut::new();
    let mut rest = data;
    while rest.len() >= 7 {
        let kind = match rest[0] % 3 {
            0 => TagKind::Video,
            1 => TagKind::Audio,
            _ => TagKind::Script,
        };
        let len = usize::from(u16::from_be_bytes([rest[1], rest[2]])).min(rest.len() - 7);
        let ts = u32::from_be_bytes([rest[3], rest[4], rest[5], rest[6]]);
        let body = Bytes::copy_from_slice(&rest[7..7 + len]);
        rest = &rest[7 + len..];
        match demuxer.handle_tag(kind, ts, body) {
            Ok(Some(DemuxEvent::Config(c))) => match &mut muxer {
                Some(m) => m.set_config(c),
                None => muxer = Some(TsMuxer::new(c)),
            },
            Ok(Some(DemuxEvent::Frame(f))) => {
                assert!(f.pts >= f.dts);
                if let Some(m) = &mut muxer {
                    let _ = m.write_frame(&f, &mut out);
                    assert_eq!(out.len() % 188, 0);
                }
            }
            _ => {}
        }
    }
});
