//! `onair live-streams ...`: manage live streams directly in the data directory's database
//! (SQLite allows it while the server runs). Each command prints the live stream object as
//! JSON, the same object the REST API returns in `data`.

use std::path::Path;

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use store::{LiveStreamStatus, NewLiveStream, SqliteStore, Store};

/// The live-streams commands.
#[derive(Debug, Subcommand)]
pub enum LiveStreamsCommand {
    /// Create a live stream (one public playback ID unless --playback-policy says otherwise).
    Create {
        /// `standard`, `reduced` or `low`.
        #[arg(long)]
        latency_mode: Option<String>,
        /// Seconds to wait for a reconnecting encoder (0..=1800).
        #[arg(long)]
        reconnect_window: Option<i64>,
        /// Seconds a broadcast may last (60..=43200).
        #[arg(long)]
        max_continuous_duration: Option<i64>,
        /// Playback policy of each playback ID to create (`public`, `signed`); repeatable.
        #[arg(long = "playback-policy")]
        playback_policies: Vec<String>,
        /// Arbitrary metadata (at most 255 characters).
        #[arg(long)]
        passthrough: Option<String>,
        /// Process only the audio track.
        #[arg(long)]
        audio_only: bool,
        /// A test stream.
        #[arg(long)]
        test: bool,
    },
    /// List live streams, newest first.
    List {
        /// Page number, from 1.
        #[arg(long, default_value_t = 1)]
        page: u32,
        /// Live streams per page (1..=100).
        #[arg(long, default_value_t = 10)]
        limit: u32,
        /// Only streams with this status (`idle`, `active`, `disabled`).
        #[arg(long)]
        status: Option<String>,
    },
    /// Show one live stream.
    Get {
        /// The live stream ID.
        id: String,
    },
    /// Delete a live stream.
    Delete {
        /// The live stream ID.
        id: String,
    },
    /// Give a live stream a new stream key (the old one stops working).
    ResetStreamKey {
        /// The live stream ID.
        id: String,
    },
    /// Refuse new broadcasts on a live stream.
    Disable {
        /// The live stream ID.
        id: String,
    },
    /// Accept broadcasts again.
    Enable {
        /// The live stream ID.
        id: String,
    },
}

/// Runs a command against the store in `data_dir`.
pub fn run(command: LiveStreamsCommand, data_dir: &Path) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(execute(command, data_dir))
}

fn print(value: &impl serde::Serialize) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

fn found<T>(value: Option<T>, id: &str) -> Result<T> {
    value.with_context(|| format!("no live stream with ID {id:?}"))
}

async fn execute(command: LiveStreamsCommand, data_dir: &Path) -> Result<()> {
    let store = SqliteStore::open(data_dir)
        .await
        .with_context(|| format!("opening the database in {}", data_dir.display()))?;
    match command {
        LiveStreamsCommand::Create {
            latency_mode,
            reconnect_window,
            max_continuous_duration,
            playback_policies,
            passthrough,
            audio_only,
            test,
        } => {
            let params = NewLiveStream {
                playback_policies: (!playback_policies.is_empty()).then_some(playback_policies),
                latency_mode,
                reconnect_window,
                max_continuous_duration,
                passthrough,
                audio_only,
                test,
                ..NewLiveStream::default()
            };
            print(&store.create_live_stream(params).await?)
        }
        LiveStreamsCommand::List {
            page,
            limit,
            status,
        } => {
            if !(1..=100).contains(&limit) || page == 0 {
                bail!("--limit must be 1..=100 and --page at least 1");
            }
            let status =
                match status.as_deref() {
                    None => None,
                    Some(s) => Some(LiveStreamStatus::parse(s).with_context(|| {
                        format!("unknown status {s:?} (idle, active, disabled)")
                    })?),
                };
            print(&store.list_live_streams(page, limit, status).await?)
        }
        LiveStreamsCommand::Get { id } => print(&found(store.get_live_stream(&id).await?, &id)?),
        LiveStreamsCommand::Delete { id } => {
            if !store.delete_live_stream(&id).await? {
                bail!("no live stream with ID {id:?}");
            }
            print(&serde_json::json!({ "deleted": id }))
        }
        LiveStreamsCommand::ResetStreamKey { id } => {
            print(&found(store.reset_stream_key(&id).await?, &id)?)
        }
        LiveStreamsCommand::Disable { id } => {
            print(&found(store.disable_live_stream(&id).await?, &id)?)
        }
        LiveStreamsCommand::Enable { id } => {
            print(&found(store.enable_live_stream(&id).await?, &id)?)
        }
    }
}
