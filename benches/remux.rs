//! Remux throughput of the media core on one core: FLV bytes in, MPEG-TS segments out, for the
//! 720p30 3 Mbit/s H.264/AAC fixture (10 s). Run with `cargo bench -p onair-benches --bench remux`.
#![allow(clippy::unwrap_used, missing_docs)]

use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use hls::{Segmenter, SegmenterConfig};
use media::flv::{FlvReader, FlvTag};
use media::{DemuxEvent, FlvDemuxer, TsMuxer};

fn load() -> (Bytes, Vec<FlvTag>) {
    let data = Bytes::from(std::fs::read(testkit::fixture("avc_aac_720p30.flv")).unwrap());
    let tags = FlvReader::new(data.clone())
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    (data, tags)
}

/// Demux + segment + mux, as the live path does per tag; returns TS bytes produced.
fn remux(tags: &[FlvTag]) -> usize {
    let mut demuxer = FlvDemuxer::default();
    let mut segmenter = Segmenter::new(SegmenterConfig::default());
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_000_000);
    let mut out = 0;
    for tag in tags {
        match demuxer
            .handle_tag(tag.kind, tag.timestamp, tag.body.clone())
            .unwrap()
        {
            Some(DemuxEvent::Config(c)) => {
                out += segmenter.handle_config(c).map_or(0, |s| s.data.len())
            }
            Some(DemuxEvent::Frame(f)) => {
                out += segmenter
                    .handle_frame(&f, now)
                    .unwrap()
                    .map_or(0, |s| s.data.len());
            }
            _ => {}
        }
    }
    out + segmenter.finish().map_or(0, |s| s.data.len())
}

fn benches(c: &mut Criterion) {
    let (data, tags) = load();
    let tag_bytes: u64 = tags.iter().map(|t| t.body.len() as u64).sum();
    let ts_bytes = remux(&tags);
    eprintln!(
        "fixture: {} bytes of FLV, {} bytes of tag bodies, {} tags -> {} bytes of TS",
        data.len(),
        tag_bytes,
        tags.len(),
        ts_bytes
    );

    let mut g = c.benchmark_group("remux_720p30");
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.bench_function("flv_to_ts_segments", |b| b.iter(|| remux(&tags)));
    g.bench_function("flv_read_and_demux", |b| {
        b.iter(|| {
            let mut demuxer = FlvDemuxer::default();
            let mut frames = 0;
            for tag in FlvReader::new(data.clone()).unwrap() {
                let tag = tag.unwrap();
                if let Some(DemuxEvent::Frame(_)) = demuxer
                    .handle_tag(tag.kind, tag.timestamp, tag.body)
                    .unwrap()
                {
                    frames += 1;
                }
            }
            frames
        })
    });
    // TS muxing alone, over frames demuxed once.
    let mut demuxer = FlvDemuxer::default();
    let mut config = None;
    let mut frames = Vec::new();
    for tag in &tags {
        match demuxer
            .handle_tag(tag.kind, tag.timestamp, tag.body.clone())
            .unwrap()
        {
            Some(DemuxEvent::Config(c)) => config = Some(c),
            Some(DemuxEvent::Frame(f)) => frames.push(f),
            _ => {}
        }
    }
    let config = config.unwrap();
    g.bench_function("ts_mux_only", |b| {
        b.iter(|| {
            let mut muxer = TsMuxer::new(config.clone());
            let mut out = BytesMut::with_capacity(ts_bytes + 4096);
            for f in &frames {
                muxer.write_frame(f, &mut out).unwrap();
            }
            out.len()
        })
    });
    g.finish();
}

criterion_group! {
    name = remux_benches;
    config = Criterion::default().measurement_time(Duration::from_secs(10));
    targets = benches
}
criterion_main!(remux_benches);
