//! The `onair` binary: configuration, command line and wiring of the gateway's crates. The
//! only crate that uses `anyhow` and the only one that reads the configuration file.
//!
//! - `onair serve`: the gateway (RTMP, RTMPS and SRT ingest; HLS playback and the REST API
//!   over HTTP; Prometheus metrics).
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
use clap::{CommandFactory as _, FromArgMatches as _, Parser, Subcommand};

use crate::config::{FileConfig, Latency, LogFormat, ServeArgs};

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
    /// Run the gateway: RTMP, RTMPS and SRT ingest, HLS playback and the REST API over HTTP,
    /// Prometheus metrics and health checks.
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
        /// Segment target duration: `standard` (4 s) or `reduced` (2 s) [config: `[hls] latency_mode`;
        /// default: standard].
        #[arg(long, value_enum, env = "ONAIR_LATENCY_MODE")]
        latency_mode: Option<Latency>,
    },
}

/// The command line, with `serve`'s flags listed at the end of `onair --help` too (the
/// gateway is what a newcomer runs first, and its flags are the ones they look for). The
/// listing is rendered from `serve`'s own definition, so the two never disagree.
fn command() -> clap::Command {
    let mut command = Cli::command();
    // Built first, so that `serve`'s usage reads `onair serve` and lists the global options.
    command.build();
    let serve_help = command
        .find_subcommand_mut("serve")
        .map(|serve| serve.render_help().to_string())
        .unwrap_or_default();
    command.after_help(format!("`onair serve`:\n{serve_help}"))
}

/// Runs the command; an error ends the process with status 1 and one line on standard error
/// (the whole cause chain, each cause once): what a supervisor's log shows.
fn main() {
    if let Err(e) = run() {
        eprintln!("Error: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let matches = command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let file = FileConfig::load(cli.config.as_deref())?;
    match cli.command {
        Command::Serve(mut args) => {
            if let Some(("serve", serve)) = matches.subcommand() {
                args.from_env = from_env(serve);
            }
            let format = file.log_format(args.log_format);
            let log = serve::init_logging(format, file.log_filter());
            let result = file
                .serve(&args, cli.data_dir.as_deref())
                .and_then(|settings| {
                    // SIGHUP reads the file again and merges it with the same flags (and
                    // where they came from, for the errors).
                    let source = reload::ReloadSource {
                        config: cli.config.clone(),
                        args,
                        data_dir: cli.data_dir.clone(),
                    };
                    serve::run(settings, source, log)
                });
            if let (Err(e), LogFormat::Json) = (&result, format) {
                // A log collector reading JSON lines gets the reason as one of them too.
                tracing::error!(error = format!("{e:#}"), "onair serve cannot start");
            }
            result
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

/// The ids of the arguments whose value came from their environment variable.
fn from_env(matches: &clap::ArgMatches) -> Vec<String> {
    matches
        .ids()
        .filter(|id| {
            matches.value_source(id.as_str()) == Some(clap::parser::ValueSource::EnvVariable)
        })
        .map(|id| id.as_str().to_owned())
        .collect()
}
