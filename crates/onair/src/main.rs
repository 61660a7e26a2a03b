//! The `onair` binary: configuration, command line and wiring of the gateway's crates. The
//! only crate that uses `anyhow`.
//!
//! Today it packages FLV recordings into HLS with the same media core and segmenter the live
//! path uses (`onair remux`); the listeners (`onair serve`) build on it next.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use clap::{Parser, Subcommand, ValueEnum};
use hls::{LatencyMode, Packager, SegmentInfo, SegmenterConfig};
use media::flv::FlvReader;
use media::timestamp::TimestampConfig;
use media::{FlvDemuxer, TIMESCALE};

/// OnAir: a self-hosted live-streaming ingest gateway.
#[derive(Debug, Parser)]
#[command(name = "onair", version, about)]
struct Cli {
    /// TOML configuration file (see config/onair.toml for every key and its default).
    #[arg(long, global = true, env = "ONAIR_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Package an FLV file (H.264 or HEVC, AAC) into HLS: MPEG-TS segments, a VOD media
    /// playlist (`stream.m3u8`) and a multivariant playlist (`index.m3u8`).
    Remux {
        /// The FLV file to read.
        input: PathBuf,
        /// The directory to write; created if missing.
        output: PathBuf,
        /// Segment target duration: `standard` (4 s) or `reduced` (2 s) [config: hls.latency_mode;
        /// default: standard].
        #[arg(long, value_enum, env = "ONAIR_LATENCY_MODE")]
        latency_mode: Option<Latency>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
enum Latency {
    Standard,
    Reduced,
}

impl From<Latency> for LatencyMode {
    fn from(l: Latency) -> Self {
        match l {
            Latency::Standard => LatencyMode::Standard,
            Latency::Reduced => LatencyMode::Reduced,
        }
    }
}

/// The configuration file (`config/onair.toml` documents every key).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
struct FileConfig {
    hls: HlsFileConfig,
    timestamps: TimestampFileConfig,
}

#[derive(Debug, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
struct HlsFileConfig {
    latency_mode: Latency,
    live_window: usize,
    max_segment_duration_secs: u64,
}

impl Default for HlsFileConfig {
    fn default() -> Self {
        HlsFileConfig {
            latency_mode: Latency::Standard,
            live_window: hls::DEFAULT_WINDOW,
            max_segment_duration_secs: hls::segmenter::DEFAULT_MAX_SEGMENT_DURATION.as_secs(),
        }
    }
}

#[derive(Debug, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
struct TimestampFileConfig {
    max_forward_jump_ms: i64,
    max_backward_jump_ms: i64,
}

impl Default for TimestampFileConfig {
    fn default() -> Self {
        TimestampFileConfig {
            max_forward_jump_ms: media::timestamp::DEFAULT_MAX_FORWARD_JUMP_MS,
            max_backward_jump_ms: media::timestamp::DEFAULT_MAX_BACKWARD_JUMP_MS,
        }
    }
}

/// Validated settings of the media pipeline.
#[derive(Debug, Clone, Copy)]
struct PipelineSettings {
    segmenter: SegmenterConfig,
    window: usize,
    timestamps: TimestampConfig,
}

impl FileConfig {
    fn load(path: Option<&Path>) -> Result<Self> {
        let Some(path) = path else {
            return Ok(FileConfig::default());
        };
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("invalid config {}", path.display()))
    }

    fn pipeline(&self, latency_flag: Option<Latency>) -> Result<PipelineSettings> {
        let mode = latency_flag.unwrap_or(self.hls.latency_mode);
        let mut segmenter = SegmenterConfig::for_latency(mode.into());
        if self.hls.live_window == 0 {
            bail!("hls.live_window must be at least 1");
        }
        segmenter.max_segment_duration = Duration::from_secs(self.hls.max_segment_duration_secs);
        if segmenter.max_segment_duration < segmenter.target_duration {
            bail!(
                "hls.max_segment_duration_secs ({}) must not be below the target duration ({} s)",
                self.hls.max_segment_duration_secs,
                segmenter.target_duration.as_secs()
            );
        }
        let t = &self.timestamps;
        if t.max_forward_jump_ms < 1 || t.max_backward_jump_ms < 1 {
            bail!("timestamps.max_forward_jump_ms and max_backward_jump_ms must be positive");
        }
        Ok(PipelineSettings {
            segmenter,
            window: self.hls.live_window,
            timestamps: TimestampConfig {
                max_forward_jump_ms: t.max_forward_jump_ms,
                max_backward_jump_ms: t.max_backward_jump_ms,
            },
        })
    }
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let file = FileConfig::load(cli.config.as_deref())?;
    match cli.command {
        Command::Remux {
            input,
            output,
            latency_mode,
        } => remux(&input, &output, file.pipeline(latency_mode)?),
    }
}

fn segment_name(sequence: u64) -> String {
    format!("{sequence}.ts")
}

/// FLV file -> segments and playlists. Segment timestamps in the playlist
/// (`EXT-X-PROGRAM-DATE-TIME`) count from the file's modification time.
fn remux(input: &Path, output: &Path, settings: PipelineSettings) -> Result<()> {
    let data = std::fs::read(input).with_context(|| format!("reading {}", input.display()))?;
    let started = std::fs::metadata(input)
        .and_then(|m| m.modified())
        .unwrap_or(SystemTime::UNIX_EPOCH);
    std::fs::create_dir_all(output).with_context(|| format!("creating {}", output.display()))?;
    let reader = FlvReader::new(Bytes::from(data))
        .with_context(|| format!("{} is not an FLV file", input.display()))?;
    let mut demuxer = FlvDemuxer::new(settings.timestamps);
    let mut packager = Packager::new(settings.segmenter, settings.window);
    let write = |segment: Option<hls::Segment>| -> Result<()> {
        if let Some(s) = segment {
            let path = output.join(segment_name(s.sequence));
            std::fs::write(&path, &s.data)
                .with_context(|| format!("writing {}", path.display()))?;
        }
        Ok(())
    };
    let mut first_dts = None;
    for (index, tag) in reader.enumerate() {
        let tag = tag.with_context(|| format!("FLV tag {index}"))?;
        let event = demuxer
            .handle_tag(tag.kind, tag.timestamp, tag.body)
            .with_context(|| format!("FLV tag {index} at {} ms", tag.timestamp))?;
        if let Some(event) = event {
            let dts = match &event {
                media::DemuxEvent::Frame(f) => f.dts,
                _ => 0,
            };
            let since_start = dts.saturating_sub(*first_dts.get_or_insert(dts));
            let now = started + Duration::from_micros(since_start * 1_000_000 / TIMESCALE);
            write(
                packager
                    .handle_event(event, now)
                    .with_context(|| format!("FLV tag {index}"))?,
            )?;
        }
    }
    write(packager.finish())?;
    let playlist = packager.playlist();
    if playlist.segments().is_empty() {
        bail!(
            "{} holds no playable media (no keyframe or no sequence header)",
            input.display()
        );
    }
    let uri = |s: &SegmentInfo| segment_name(s.sequence);
    std::fs::write(output.join("stream.m3u8"), playlist.render_event(uri))?;
    std::fs::write(
        output.join("index.m3u8"),
        packager.multivariant("stream.m3u8"),
    )?;
    let total: f64 = playlist
        .segments()
        .iter()
        .map(SegmentInfo::duration_secs)
        .sum();
    let dropped = demuxer.stats();
    println!(
        "{}: {} segments, {:.3} s, codecs {} -> {}",
        input.display(),
        playlist.segments().len(),
        total,
        packager
            .segmenter()
            .stream_config()
            .map(media::StreamConfig::codecs)
            .unwrap_or_default(),
        output.join("index.m3u8").display()
    );
    if dropped.frames_before_config > 0 || packager.segmenter().stats().frames_before_keyframe > 0 {
        println!(
            "dropped: {} frames before their sequence header, {} before the first keyframe",
            dropped.frames_before_config,
            packager.segmenter().stats().frames_before_keyframe
        );
    }
    Ok(())
}
