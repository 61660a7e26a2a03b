//! The few store operations the session manager needs, mapped to its own small types.

use std::path::PathBuf;
use std::time::Duration;

use store::{IngestProtocol as StoreProtocol, LatencyMode, LiveStream, LiveStreamStatus, Store};

use crate::ingest::IngestProtocol;
use crate::lifecycle::{LifecycleConfig, State, StatusChange};

/// What a session needs to know about its live stream.
#[derive(Debug, Clone)]
pub(crate) struct StreamInfo {
    pub id: String,
    pub stream_key: String,
    /// The passphrase an SRT caller must encrypt with.
    pub srt_passphrase: String,
    pub disabled: bool,
    pub reduced_latency: bool,
    pub audio_only: bool,
    pub lifecycle: LifecycleConfig,
    pub playback_ids: Vec<store::PlaybackId>,
    /// Slate while the encoder is away (seeds/004): a reconnect window and reduced or low
    /// latency, or `use_slate_for_standard_latency`.
    pub slate: bool,
    /// The image to use as slate instead of the default one.
    pub reconnect_slate_url: Option<String>,
}

impl From<LiveStream> for StreamInfo {
    fn from(s: LiveStream) -> Self {
        StreamInfo {
            disabled: s.status == LiveStreamStatus::Disabled,
            // Low latency has no parts yet: it is served with the reduced target duration.
            reduced_latency: s.latency_mode != LatencyMode::Standard,
            audio_only: s.audio_only,
            lifecycle: LifecycleConfig {
                // Validated by the store: finite, 0..=1800 s.
                reconnect_window: Duration::try_from_secs_f64(s.reconnect_window)
                    .unwrap_or_default(),
                max_continuous_duration: Duration::from_secs(u64::from(s.max_continuous_duration)),
                test: s.test,
            },
            playback_ids: s.playback_ids,
            slate: s.reconnect_window > 0.0
                && (s.latency_mode != LatencyMode::Standard || s.use_slate_for_standard_latency),
            reconnect_slate_url: s.reconnect_slate_url,
            stream_key: s.stream_key,
            srt_passphrase: s.srt_passphrase,
            id: s.id,
        }
    }
}

pub(crate) async fn find_by_stream_key(
    store: &store::SqliteStore,
    key: &str,
) -> Result<Option<StreamInfo>, String> {
    let stream = store
        .find_live_stream_by_stream_key(key)
        .await
        .map_err(|e| e.to_string())?;
    Ok(stream.map(StreamInfo::from))
}

/// Whether the live stream still exists, is enabled and has this stream key (an admission
/// that raced a disable, key reset or delete is withdrawn).
pub(crate) async fn still_admissible(
    store: &store::SqliteStore,
    id: &str,
    key: &str,
) -> Result<bool, String> {
    let stream = store.get_live_stream(id).await.map_err(|e| e.to_string())?;
    Ok(stream.is_some_and(|s| s.status != LiveStreamStatus::Disabled && s.stream_key == key))
}

/// What a playback ID that is not live right now belongs to.
pub(crate) enum Owner {
    LiveStream(store::PlaybackPolicy),
    Asset(Box<store::AssetPlayback>),
    None,
}

pub(crate) async fn playback_owner(
    store: &store::SqliteStore,
    playback_id: &str,
) -> Result<Owner, String> {
    match store
        .playback_owner(playback_id)
        .await
        .map_err(|e| e.to_string())?
    {
        Some(store::PlaybackOwner::LiveStream { playback_id, .. }) => {
            Ok(Owner::LiveStream(playback_id.policy))
        }
        // Deleted in between: unknown.
        Some(store::PlaybackOwner::Asset { .. }) => Ok(store
            .find_asset_by_playback_id(playback_id)
            .await
            .map_err(|e| e.to_string())?
            .map_or(Owner::None, |a| Owner::Asset(Box::new(a)))),
        None => Ok(Owner::None),
    }
}

/// A lifecycle transition waiting to be written.
#[derive(Debug, Clone)]
pub(crate) struct TransitionRecord {
    pub live_stream_id: String,
    pub broadcast_id: String,
    /// Relative to the recordings directory.
    pub recording_dir: PathBuf,
    pub state: State,
    pub status: Option<StatusChange>,
    pub broadcast_started: bool,
    pub at_ms: u64,
    /// The recording as measured so far (for the broadcast's asset).
    pub media: Option<store::AssetMedia>,
}

/// Why a transition was not written.
#[derive(Debug)]
pub(crate) enum WriteError {
    /// The live stream no longer exists.
    Gone,
    /// The store refused it as inconsistent (not retried).
    Refused(String),
    /// The store failed (retry).
    Failed(String),
}

fn store_state(state: State) -> store::LifecycleState {
    match state {
        State::Idle => store::LifecycleState::Idle,
        State::Connected => store::LifecycleState::Connected,
        State::Recording => store::LifecycleState::Recording,
        State::Active => store::LifecycleState::Active,
        State::Disconnected => store::LifecycleState::Disconnected,
    }
}

pub(crate) fn lifecycle_state(state: store::LifecycleState) -> State {
    match state {
        store::LifecycleState::Idle => State::Idle,
        store::LifecycleState::Connected => State::Connected,
        store::LifecycleState::Recording => State::Recording,
        store::LifecycleState::Active => State::Active,
        store::LifecycleState::Disconnected => State::Disconnected,
    }
}

fn store_protocol(protocol: IngestProtocol) -> StoreProtocol {
    match protocol {
        IngestProtocol::Rtmp | IngestProtocol::Rtmps => StoreProtocol::Rtmp,
        IngestProtocol::Srt => StoreProtocol::Srt,
    }
}

/// Records the final measurements of an asset whose live stream is gone (best effort: the
/// media on disk is what matters, the numbers are its description).
pub(crate) async fn record_asset_media(
    store: &store::SqliteStore,
    asset_id: &str,
    media: &store::AssetMedia,
) {
    if let Err(e) = store.set_asset_media(asset_id, media).await {
        tracing::warn!(error = %e, "could not record the asset's media");
    }
}

/// Logs a warning (best effort: a few tries; a warning is not worth holding up the
/// transitions queued behind it).
pub(crate) async fn record_warning(
    store: &store::SqliteStore,
    live_stream_id: &str,
    warning: store::Warning,
    at_ms: i64,
) {
    let mut delay = crate::writer::FIRST_RETRY;
    for attempt in 1..=3 {
        match store
            .record_warning(live_stream_id, warning.clone(), at_ms)
            .await
        {
            Ok(_) => return,
            Err(store::StoreError::NotFound { .. }) => return,
            Err(e) if attempt == 3 => {
                tracing::warn!(error = %e, "could not record a warning");
            }
            Err(_) => {
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
        }
    }
}

/// Writes one transition with its event (one transaction in the store).
pub(crate) async fn record_transition(
    store: &store::SqliteStore,
    record: &TransitionRecord,
) -> Result<(), WriteError> {
    let status = record.status.map(|s| match s {
        StatusChange::Active(p) => store::StatusChange::Active(store_protocol(p)),
        StatusChange::Idle => store::StatusChange::Idle,
        StatusChange::Disabled => store::StatusChange::Disabled,
    });
    let broadcast = if record.broadcast_started {
        store::BroadcastChange::Start {
            id: record.broadcast_id.clone(),
            recording_dir: record.recording_dir.to_string_lossy().into_owned(),
        }
    } else if record.state == State::Idle {
        store::BroadcastChange::End
    } else {
        store::BroadcastChange::None
    };
    let transition = store::Transition {
        live_stream_id: record.live_stream_id.clone(),
        event_type: record.state.event_type().to_owned(),
        state: store_state(record.state),
        status,
        broadcast,
        at_ms: record.at_ms as i64,
        media: record.media.clone(),
    };
    match store.record_transition(transition).await {
        Ok(_) => Ok(()),
        Err(store::StoreError::NotFound { .. }) => Err(WriteError::Gone),
        // Refused as inconsistent with what the store holds (e.g. `active` after the stream
        // was disabled, or a broadcast the delete already ended): retrying cannot help.
        Err(e @ store::StoreError::Conflict(_)) => Err(WriteError::Refused(e.to_string())),
        Err(e) => Err(WriteError::Failed(e.to_string())),
    }
}
