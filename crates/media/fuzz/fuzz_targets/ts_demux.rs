//! Fuzzes the MPEG-TS demuxer an SRT peer feeds: the input is cut into chunks (sizes taken
//! from the first bytes) as datagrams would arrive, every frame it produces is checked
//! (configuration first, timestamps monotonic per track, well-formed AVCC) and muxed back to
//! TS.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use media::demux::nal_units;
use media::{DemuxEvent, Track, TsDemuxer, TsMuxer};

fuzz_target!(|data: &[u8]| {
    let Some((&chunking, rest)) = data.split_first() else {
        return;
    };
    let mut demuxer = TsDemuxer::default();
    let mut muxer: Option<TsMuxer> = None;
    let mut out = BytesMut::new();
    let mut last_dts = [None::<u64>; 2];
    let mut events = Vec::new();
    let mut pos = 0;
    let mut step = usize::from(chunking) * 7 + 1;
    let mut refused = false;
    while pos < rest.len() {
        let end = (pos + step).min(rest.len());
        if demuxer.handle_bytes_into(&rest[pos..end], &mut events).is_err() {
            refused = true;
            break;
        }
        pos = end;
        step = step * 5 % 1999 + 1;
    }
    if !refused {
        events.extend(demuxer.flush());
    }
    for event in events {
        match event {
            DemuxEvent::Config(c) => match &mut muxer {
                Some(m) => m.set_config(c),
                None => muxer = Some(TsMuxer::new(c)),
            },
            DemuxEvent::Frame(f) => {
                assert!(f.pts >= f.dts);
                let slot = &mut last_dts[f.track as usize];
                if let Some(last) = *slot {
                    assert!(f.dts > last, "dts goes backwards");
                }
                *slot = Some(f.dts);
                assert!(!f.data.is_empty());
                if f.track == Track::Video {
                    let covered: usize = nal_units(&f.data).map(|u| u.len() + 4).sum();
                    assert_eq!(covered, f.data.len(), "AVCC covers the frame");
                }
                let m = muxer.as_mut().expect("configuration before the first frame");
                let configured = match f.track {
                    Track::Video => m.config().video.is_some(),
                    Track::Audio => m.config().audio.is_some(),
                };
                assert!(configured, "frame of a track without configuration");
                m.write_frame(&f, &mut out).expect("muxable");
                assert_eq!(out.len() % 188, 0);
            }
            DemuxEvent::Metadata(_) => {}
        }
    }
});
