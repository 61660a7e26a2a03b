//! The `onair` binary: configuration, command line and wiring of the gateway's crates. The
//! only crate that uses `anyhow` and the only one that reads the configuration file.
//!
//! - `onair serve`: the gateway (RTMP, RTMPS, HTTP playback).
//! - `onair live-streams ...`: manage live streams through the REST API (prints JSON).
//! - `onair assets list|get|update|delete`: manage assets through the REST API (prints JSON).
//! - `onair access-tokens ...`: create, list and revoke API access tokens.
//! - `onair webhooks test URL --secret S`: send one signed sample webhook to a receiver.
//! - `onair remux`: package an FLV file into HLS with the live pipeline.
#![forbid(unsafe_code)]

mod api_client;
mod cli;
mod config;
mod http_metrics;
mod http_server;
mod metrics_listener;
mod reload;
mod remux;
mod serve;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};

use crate::config::{FileConfig, Latency, ServeArgs};

/// OnAir: a self-hosted live-streaming ingest gateway.
#[derive(Debug, Parser)]
#[command(name = "onair", version, about)]
struct Cli {
    /// TOML configuration file (see config/onair.toml for every key and its default).
    #[arg(long, global = true, env = "ONAIR_CONFIG")]
    config: Option<PathBuf>,
    /// Directory of the database and recordings [default: ./data].
    #[arg(long, global = true, env = "ONAIR_DATA_DIR")]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway: RTMP and RTMPS ingest, HLS playback over HTTP.
    Serve(ServeArgs),
    /// Manage live streams through the server's REST API (prints the live stream as JSON).
    LiveStreams {
        #[command(flatten)]
        api: cli::ApiArgs,
        #[command(subcommand)]
        command: cli::LiveStreamsCommand,
    },
    /// Manage assets (the recordings of broadcasts) through the server's REST API (prints
    /// JSON).
    Assets {
        #[command(flatten)]
        api: cli::ApiArgs,
        #[command(subcommand)]
        command: cli::AssetsCommand,
    },
    /// Manage API access tokens in the data directory (works while the server runs).
    #[command(subcommand)]
    AccessTokens(cli::AccessTokensCommand),
    /// Webhook tools: send a signed test event to a receiver.
    #[command(subcommand)]
    Webhooks(cli::WebhooksCommand),
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

fn main() -> Result<()> {
    let cli = Cli::parse();
    let file = FileConfig::load(cli.config.as_deref())?;
    match cli.command {
        Command::Serve(args) => {
            let log = serve::init_logging(file.log_filter());
            let settings = file.serve(&args, cli.data_dir.as_deref())?;
            let source = reload::ReloadSource {
                config: cli.config.clone(),
                args,
                data_dir: cli.data_dir.clone(),
            };
            serve::run(settings, source, log)
        }
        Command::LiveStreams { api, command } => cli::run_live_streams(command, &api),
        Command::Assets { api, command } => cli::run_assets(command, &api),
        Command::AccessTokens(command) => {
            cli::run_access_tokens(command, &file.data_dir(cli.data_dir.as_deref()))
        }
        Command::Webhooks(command) => cli::run_webhooks(command),
        Command::Remux {
            input,
            output,
            latency_mode,
        } => remux::remux(&input, &output, file.pipeline(latency_mode)?),
    }
}
