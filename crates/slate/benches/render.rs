//! Slate figures for docs/PERFORMANCE.md: time and peak memory of `Slate::render` at 720p and
//! 1080p, bytes per GOP, and the per-segment cost of a run (re-stamping only).
//!
//! ```text
//! cargo bench -p slate --bench render            # each size in its own process, 5 renders
//! cargo bench -p slate --bench render -- 1080p   # one size
//! ```
//!
//! Peak memory is the process's high-water mark (`VmHWM`) after the renders minus the one
//! before them, so each size runs in a fresh process (the parent re-runs this binary).
#![allow(clippy::unwrap_used)]

use std::process::Command;
use std::time::{Duration, Instant};

use media::TIMESCALE;
use slate::{AudioSpec, Slate, SlateSpec};

const RENDERS: usize = 5;
const SEGMENTS: u64 = 20_000;

fn spec(name: &str) -> Option<SlateSpec> {
    let (width, height) = match name {
        "720p" => (1280, 720),
        "1080p" => (1920, 1080),
        _ => return None,
    };
    Some(SlateSpec {
        width,
        height,
        frame_rate: 30.0,
        gop_duration: Duration::from_secs(2),
        audio: Some(AudioSpec {
            sample_rate: 48_000,
            channels: 2,
        }),
    })
}

/// `VmHWM` (peak resident set) of this process in KiB.
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

fn bench(name: &str, spec: &SlateSpec) {
    let before = peak_rss_kib();
    let mut times = Vec::new();
    let mut slate = None;
    for _ in 0..RENDERS {
        let t = Instant::now();
        let rendered = Slate::render(slate::default_image(), spec).unwrap();
        times.push(t.elapsed());
        // Keep one slate alive while the next renders, as a gateway holding a slate would.
        slate = Some(rendered);
    }
    let peak = peak_rss_kib().saturating_sub(before);
    let slate = slate.unwrap();
    let all: Vec<String> = times.iter().map(|t| ms(*t)).collect();
    times.sort();
    println!(
        "{name}: render ms min {} median {} max {} (runs: {}); peak RSS +{:.1} MiB",
        ms(times[0]),
        ms(times[times.len() / 2]),
        ms(times[times.len() - 1]),
        all.join(", "),
        peak as f64 / 1024.0,
    );
    println!(
        "{name}: GOP of {} frames = {} bytes (IDR {} bytes, P frames {} bytes total)",
        slate.gop_frames(),
        slate.gop_bytes(),
        slate.run(0).frames_until(1)[0].data.len(),
        slate.gop_bytes() - slate.run(0).frames_until(1)[0].data.len(),
    );
    // Per-segment cost: a 2 s segment's frames (60 video, ~94 audio), SEGMENTS times.
    let mut run = slate.run(0);
    let (mut frames, mut bytes) = (0usize, 0usize);
    let t = Instant::now();
    for segment in 1..=SEGMENTS {
        let batch = run.frames_until(segment * 2 * TIMESCALE);
        frames += batch.len();
        bytes += batch.iter().map(|f| f.data.len()).sum::<usize>();
        std::hint::black_box(&batch);
    }
    let per_segment = t.elapsed() / SEGMENTS as u32;
    println!(
        "{name}: frames_until per 2 s segment {:.2} us ({} frames, {} bytes of shared payload a segment)",
        per_segment.as_secs_f64() * 1e6,
        frames as u64 / SEGMENTS,
        bytes as u64 / SEGMENTS,
    );
}

fn main() {
    let sizes: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| spec(a).is_some())
        .collect();
    if sizes.is_empty() {
        let me = std::env::current_exe().unwrap();
        for size in ["720p", "1080p"] {
            let status = Command::new(&me).arg(size).status().unwrap();
            assert!(status.success());
        }
        return;
    }
    for size in sizes {
        bench(&size, &spec(&size).unwrap());
    }
}
