//! The few store operations the session manager needs, mapped to its own small types.

use store::{IngestProtocol as StoreProtocol, LatencyMode, LiveStreamStatus, StatusChange, Store};

use crate::ingest::IngestProtocol;

/// What a session needs to know about its live stream.
#[derive(Debug, Clone)]
pub(crate) struct StreamInfo {
    pub id: String,
    pub disabled: bool,
    pub reduced_latency: bool,
    pub playback_ids: Vec<String>,
}

pub(crate) async fn find_by_stream_key(
    store: &store::SqliteStore,
    key: &str,
) -> Result<Option<StreamInfo>, String> {
    let stream = store
        .find_live_stream_by_stream_key(key)
        .await
        .map_err(|e| e.to_string())?;
    Ok(stream.map(|s| StreamInfo {
        disabled: s.status == LiveStreamStatus::Disabled,
        // Low latency has no parts yet: it is served with the reduced target duration.
        reduced_latency: s.latency_mode != LatencyMode::Standard,
        playback_ids: s.playback_ids.into_iter().map(|p| p.id).collect(),
        id: s.id,
    }))
}

pub(crate) async fn playback_exists(
    store: &store::SqliteStore,
    playback_id: &str,
) -> Result<bool, String> {
    Ok(store
        .find_by_playback_id(playback_id)
        .await
        .map_err(|e| e.to_string())?
        .is_some())
}

pub(crate) async fn set_active(
    store: &store::SqliteStore,
    id: &str,
    protocol: IngestProtocol,
) -> Result<(), String> {
    let protocol = match protocol {
        IngestProtocol::Rtmp | IngestProtocol::Rtmps => StoreProtocol::Rtmp,
        IngestProtocol::Srt => StoreProtocol::Srt,
    };
    store
        .set_status(id, StatusChange::Active(protocol))
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

pub(crate) async fn set_idle_unless_disabled(
    store: &store::SqliteStore,
    id: &str,
) -> Result<(), String> {
    // The store leaves a disabled stream disabled.
    store
        .set_status(id, StatusChange::Idle)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}
