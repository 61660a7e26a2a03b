//! The TS demuxer against real encoders: transport streams made by ffmpeg (libx264,
//! libx265, aac; mpeg2video and mp2 for the refusals) at test time, demuxed whole, in random
//! chunks, damaged, and remuxed through OnAir's own muxer.

use std::path::{Path, PathBuf};
use std::process::Command;

use bytes::BytesMut;
use media::demux::nal_units;
use media::ts_demux::TsDemuxStats;
use media::{DemuxEvent, Frame, MediaError, StreamConfig, Track, TsDemuxer, TsMuxer};

/// A deterministic xorshift generator, so that a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Encodes 3 s of test pattern and tone to `name.ts` with the given codec arguments.
fn encode(name: &str, codec_args: &[&str]) -> (PathBuf, Vec<u8>) {
    testkit::require_tool("ffmpeg");
    let dir = testkit::scratch_dir(&format!("ts_demux_{name}"));
    let path = dir.join(format!("{name}.ts"));
    let out = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-y"])
        .args(["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
        .args(["-t", "3"])
        .args(codec_args)
        .args(["-f", "mpegts"])
        .arg(&path)
        .output()
        .expect("ffmpeg runs");
    assert!(
        out.status.success(),
        "ffmpeg failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let data = std::fs::read(&path).expect("ffmpeg wrote the file");
    (path, data)
}

/// `tag` keeps the scratch directories of tests running in parallel apart.
fn h264_aac(tag: &str) -> (PathBuf, Vec<u8>) {
    encode(
        &format!("h264_{tag}"),
        &["-c:v", "libx264", "-g", "25", "-bf", "2", "-c:a", "aac"],
    )
}

fn hevc_aac(tag: &str) -> (PathBuf, Vec<u8>) {
    encode(
        &format!("hevc_{tag}"),
        &[
            "-c:v",
            "libx265",
            "-x265-params",
            "log-level=error:keyint=25:min-keyint=25",
            "-c:a",
            "aac",
        ],
    )
}

/// ffprobe's packet count of the first stream of `kind` (`v` or `a`).
fn packet_count(path: &Path, kind: &str) -> usize {
    let v = testkit::ffprobe(&[
        "-count_packets",
        "-select_streams",
        &format!("{kind}:0"),
        "-show_entries",
        "stream=nb_read_packets",
        path.to_str().expect("utf-8 path"),
    ]);
    v["streams"][0]["nb_read_packets"]
        .as_str()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no packet count in {v}"))
}

/// Demuxes `data` in chunks of the given sizes (the rest in one piece), then flushes.
fn demux(data: &[u8], sizes: impl Iterator<Item = usize>) -> (Vec<DemuxEvent>, TsDemuxStats) {
    let mut d = TsDemuxer::default();
    let mut events = Vec::new();
    let mut pos = 0;
    for n in sizes {
        if pos >= data.len() {
            break;
        }
        let end = (pos + n).min(data.len());
        d.handle_bytes_into(&data[pos..end], &mut events)
            .expect("not refused");
        pos = end;
    }
    d.handle_bytes_into(&data[pos..], &mut events)
        .expect("not refused");
    events.extend(d.flush());
    (events, d.stats())
}

fn frames(events: &[DemuxEvent], track: Track) -> Vec<Frame> {
    events
        .iter()
        .filter_map(|e| match e {
            DemuxEvent::Frame(f) if f.track == track => Some(f.clone()),
            _ => None,
        })
        .collect()
}

/// What every output must satisfy, damaged input or not: configuration before frames,
/// timestamps monotonic per track, pts >= dts, well-formed AVCC, video from a keyframe.
fn assert_well_formed(events: &[DemuxEvent]) {
    let mut config: Option<&StreamConfig> = None;
    let mut last = [None::<u64>; 2];
    let mut first_video = true;
    for e in events {
        match e {
            DemuxEvent::Config(c) => config = Some(c),
            DemuxEvent::Frame(f) => {
                let c = config.expect("configuration before frames");
                match f.track {
                    Track::Video => {
                        assert!(c.video.is_some());
                        let covered: usize = nal_units(&f.data).map(|u| u.len() + 4).sum();
                        assert_eq!(covered, f.data.len(), "AVCC covers the frame");
                        if first_video {
                            assert!(f.keyframe, "video starts with a keyframe");
                            first_video = false;
                        }
                    }
                    Track::Audio => assert!(c.audio.is_some()),
                }
                assert!(f.pts >= f.dts);
                assert!(!f.data.is_empty());
                let slot = &mut last[f.track as usize];
                if let Some(l) = *slot {
                    assert!(f.dts > l, "{} dts goes backwards", f.track.name());
                }
                *slot = Some(f.dts);
            }
            DemuxEvent::Metadata(_) => {}
        }
    }
}

fn check_real_encoder(path: &Path, data: &[u8], hevc: bool) {
    let (events, stats) = demux(data, std::iter::repeat(7 * 188));
    assert_well_formed(&events);
    let DemuxEvent::Config(config) = &events[0] else {
        panic!("first event {:?}", events[0]);
    };
    let video = config.video.as_ref().expect("video configured");
    assert!(config.audio.is_some(), "video and audio announced together");
    assert_eq!(video.is_hevc(), hevc);
    assert_eq!((video.width, video.height), (320, 240));
    let video_frames = frames(&events, Track::Video);
    let audio_frames = frames(&events, Track::Audio);
    assert_eq!(video_frames.len(), packet_count(path, "v"));
    assert_eq!(video_frames.len(), 75);
    assert_eq!(audio_frames.len(), packet_count(path, "a"));
    assert_eq!(video_frames.iter().filter(|f| f.keyframe).count(), 3);
    // The FLV path's clock: starts near 1 s.
    let start = video_frames[0].dts.min(audio_frames[0].dts);
    assert!((80_000..=100_000).contains(&start), "start {start}");
    // 25 fps and 1024 samples at 48 kHz.
    assert_eq!(video_frames[1].dts - video_frames[0].dts, 3600);
    assert_eq!(audio_frames[1].dts - audio_frames[0].dts, 1920);
    assert_eq!(
        stats,
        TsDemuxStats {
            packets: stats.packets,
            ..TsDemuxStats::default()
        }
    );

    // Random chunk sizes (1..=2000 bytes): the same events.
    for seed in [1, 2, 3] {
        let mut rng = Rng(seed);
        let sizes = std::iter::from_fn(move || Some(rng.below(2000) as usize + 1));
        let (chunked, _) = demux(data, sizes);
        assert_eq!(chunked, events, "seed {seed}");
    }
}

#[test]
fn h264_aac_from_ffmpeg_matches_ffprobe() {
    let (path, data) = h264_aac("probe");
    check_real_encoder(&path, &data, false);
}

#[test]
fn hevc_aac_from_ffmpeg_matches_ffprobe() {
    let (path, data) = hevc_aac("probe");
    check_real_encoder(&path, &data, true);
}

/// ffmpeg's TS -> demux -> OnAir's muxer -> demux: the same frames, and ffmpeg decodes the
/// remuxed stream without errors.
fn round_trip(name: &str, data: &[u8]) {
    let (events, _) = demux(data, std::iter::repeat(1316));
    let DemuxEvent::Config(config) = &events[0] else {
        panic!("first event {:?}", events[0]);
    };
    let mut muxer = TsMuxer::new(config.clone());
    let mut ts = BytesMut::new();
    muxer.write_tables(&mut ts).expect("tables");
    let input: Vec<Frame> = events
        .iter()
        .filter_map(|e| match e {
            DemuxEvent::Frame(f) => Some(f.clone()),
            _ => None,
        })
        .collect();
    for f in &input {
        if f.keyframe && f.track == Track::Video {
            muxer.write_tables(&mut ts).expect("tables");
        }
        muxer.write_frame(f, &mut ts).expect("frame");
    }
    let (again, stats) = demux(&ts, std::iter::repeat(1316));
    assert_eq!(stats.continuity_errors + stats.pes_dropped, 0);
    assert_eq!(&again[0], &events[0], "same configuration");
    for track in [Track::Video, Track::Audio] {
        let want: Vec<Frame> = input.iter().filter(|f| f.track == track).cloned().collect();
        let got = frames(&again, track);
        assert_eq!(got.len(), want.len());
        let offset = got[0].dts as i64 - want[0].dts as i64;
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(g.data, w.data);
            assert_eq!(g.keyframe, w.keyframe);
            assert_eq!(g.dts as i64 - w.dts as i64, offset);
            assert_eq!(g.pts as i64 - w.pts as i64, offset);
        }
    }
    let dir = testkit::scratch_dir(&format!("ts_demux_remux_{name}"));
    let path = dir.join("remuxed.ts");
    std::fs::write(&path, &ts).expect("write");
    let errors = testkit::ffmpeg_decode_errors(&path);
    assert!(errors.trim().is_empty(), "{errors}");
}

#[test]
fn h264_round_trip_through_onair_muxer() {
    round_trip("h264", &h264_aac("remux").1);
}

#[test]
fn hevc_round_trip_through_onair_muxer() {
    round_trip("hevc", &hevc_aac("remux").1);
}

/// Drops, duplicates and swaps packets, cuts some short and inserts garbage, as a bad network
/// would: `events` damages at random packets.
fn damage(data: &[u8], seed: u64, events: usize) -> Vec<u8> {
    let mut rng = Rng(seed);
    let mut packets: Vec<Vec<u8>> = data.chunks(188).map(<[u8]>::to_vec).collect();
    let mut what = vec![0u8; packets.len()];
    for k in 0..events {
        let i = rng.below(packets.len() as u64 - 1) as usize + 1;
        what[i] = (k % 5) as u8 + 1;
    }
    for (i, &w) in what.iter().enumerate().skip(1) {
        if w == 1 {
            packets.swap(i - 1, i);
        }
    }
    let mut out = Vec::new();
    for (p, what) in packets.iter().zip(what) {
        match what {
            2 => {} // lost
            3 => {
                out.extend_from_slice(p); // duplicated
                out.extend_from_slice(p);
            }
            4 => {
                let n = rng.below(400) as usize + 1;
                out.extend((0..n).map(|_| rng.next() as u8 | 0x40)); // garbage
                out.extend_from_slice(p);
            }
            5 => out.extend_from_slice(&p[..rng.below(187) as usize + 1]), // cut short
            _ => out.extend_from_slice(p),
        }
    }
    out
}

#[test]
fn damaged_input_is_survived_and_counted() {
    // Short GOPs (10 frames), so that some keyframes survive the damage.
    let h264 = encode(
        "damage_h264",
        &["-c:v", "libx264", "-g", "10", "-c:a", "aac"],
    );
    let hevc = encode(
        "damage_hevc",
        &[
            "-c:v",
            "libx265",
            "-x265-params",
            "log-level=error:keyint=10:min-keyint=10",
            "-c:a",
            "aac",
        ],
    );
    for (name, (_, data)) in [("h264", h264), ("hevc", hevc)] {
        let (clean, _) = demux(&data, std::iter::once(data.len()));
        let clean_video = frames(&clean, Track::Video).len();
        let mut total = TsDemuxStats::default();
        for seed in 1..=10u64 {
            let damaged = damage(&data, seed, 10);
            let mut rng = Rng(seed + 100);
            let sizes = std::iter::from_fn(move || Some(rng.below(2000) as usize + 1));
            let (events, stats) = demux(&damaged, sizes);
            assert_well_formed(&events);
            let context = format!("{name} seed {seed}: {stats:?}");
            total.continuity_errors += stats.continuity_errors;
            total.duplicate_packets += stats.duplicate_packets;
            total.resyncs += stats.resyncs;
            total.dropped_bytes += stats.dropped_bytes;
            total.pes_dropped += stats.pes_dropped;
            let video = frames(&events, Track::Video);
            // Most frames survive, and video comes back at keyframes after the damage.
            assert!(video.len() > clean_video / 2, "{} {context}", video.len());
            // Every lost frame is accounted for.
            assert!(
                video.len() as u64 + stats.pes_dropped + stats.frames_before_config
                    >= clean_video as u64,
                "{} {context}",
                video.len()
            );
            let keyframes = video.iter().filter(|f| f.keyframe).count();
            let clean_keyframes = frames(&clean, Track::Video)
                .iter()
                .filter(|f| f.keyframe)
                .count();
            assert!(
                keyframes >= 2 && keyframes + 6 >= clean_keyframes,
                "{keyframes} of {clean_keyframes} keyframes, {} of {clean_video} frames; {context}",
                video.len()
            );
            assert!(!frames(&events, Track::Audio).is_empty(), "{context}");
        }
        // Every kind of damage was seen and counted.
        assert!(total.continuity_errors > 0, "{name}: {total:?}");
        assert!(total.duplicate_packets > 0, "{name}: {total:?}");
        assert!(total.resyncs > 0, "{name}: {total:?}");
        assert!(total.dropped_bytes > 0, "{name}: {total:?}");
        assert!(total.pes_dropped > 0, "{name}: {total:?}");
    }
}

fn refusal(data: &[u8]) -> (String, String) {
    let mut d = TsDemuxer::default();
    for chunk in data.chunks(1316) {
        match d.handle_bytes(chunk) {
            Ok(events) => assert!(
                events.iter().all(|e| !matches!(e, DemuxEvent::Frame(_))),
                "no frame before the refusal"
            ),
            Err(MediaError::UnsupportedCodec { codec, reason }) => {
                let e = d.handle_bytes(&[]).expect_err("the refusal sticks");
                assert!(matches!(e, MediaError::UnsupportedCodec { .. }));
                return (codec, reason.to_owned());
            }
            Err(e) => panic!("unexpected error {e}"),
        }
    }
    panic!("not refused");
}

#[test]
fn mpeg2_video_and_mp2_audio_are_refused_by_name() {
    let (_, mpeg2) = encode("mpeg2", &["-c:v", "mpeg2video", "-c:a", "aac"]);
    let (codec, reason) = refusal(&mpeg2);
    assert_eq!(codec, "MPEG-2 video");
    assert!(reason.contains("H.264"), "{reason}");
    let (_, mp2) = encode("mp2", &["-c:v", "libx264", "-c:a", "mp2"]);
    let (codec, _) = refusal(&mp2);
    assert!(codec.contains("MP2"), "{codec}");
}
