//! The broadcast lifecycle as stored: where a live stream is, its broadcasts, and the event
//! log that every change is written with.
//!
//! The session manager's state machine decides; the store only records. Each decision is a
//! [`Transition`], applied by [`Store::record_transition`](crate::Store::record_transition)
//! in one transaction together with its [`Event`] row, so the log never misses a change and
//! never shows one that did not happen. The API's own changes (create, update, reset of the
//! stream key, disable, enable, delete) append to the same log in the same way. Webhook
//! delivery reads the log by [`Event::seq`] as its outbox.
//!
//! None of this appears in the live stream's API JSON: the lifecycle state is internal, and
//! the API shows only `status` (`idle`/`active`/`disabled`).

use std::fmt;
use std::path::{Component, Path};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{AssetMedia, StatusChange, StoreError};

/// Event types the store writes itself, and those of the broadcast lifecycle.
pub mod event_type {
    /// A live stream was created.
    pub const CREATED: &str = "video.live_stream.created";
    /// A live stream's settings or stream key changed.
    pub const UPDATED: &str = "video.live_stream.updated";
    /// A live stream was deleted (the last event of that stream).
    pub const DELETED: &str = "video.live_stream.deleted";
    /// A live stream was disabled.
    pub const DISABLED: &str = "video.live_stream.disabled";
    /// A disabled live stream was enabled.
    pub const ENABLED: &str = "video.live_stream.enabled";
    /// An encoder was admitted.
    pub const CONNECTED: &str = "video.live_stream.connected";
    /// The first media arrived and is being recorded.
    pub const RECORDING: &str = "video.live_stream.recording";
    /// The first playable segment exists: viewers can watch.
    pub const ACTIVE: &str = "video.live_stream.active";
    /// The encoder went away; the reconnect window runs.
    pub const DISCONNECTED: &str = "video.live_stream.disconnected";
    /// The broadcast is over.
    pub const IDLE: &str = "video.live_stream.idle";
    /// A non-fatal problem with a live stream (e.g. its `reconnect_slate_url` could not be
    /// used).
    pub const WARNING: &str = "video.live_stream.warning";
    /// The same problem, about the asset being recorded.
    pub const ASSET_WARNING: &str = "video.asset.warning";
    /// A broadcast recorded its first media: its asset exists (right after `recording`).
    pub const ASSET_CREATED: &str = "video.asset.created";
    /// The asset is complete and playable on demand (right after `idle`).
    pub const ASSET_READY: &str = "video.asset.ready";
    /// The asset's live stream went idle (right after `video.asset.ready`).
    pub const ASSET_LIVE_STREAM_COMPLETED: &str = "video.asset.live_stream_completed";
    /// An asset's `passthrough` or `meta` changed.
    pub const ASSET_UPDATED: &str = "video.asset.updated";
    /// An asset was deleted, with its media.
    pub const ASSET_DELETED: &str = "video.asset.deleted";

    /// Whether `event_type` is about an asset (its event object is the asset).
    pub fn is_asset(event_type: &str) -> bool {
        event_type.starts_with("video.asset.")
    }
}

/// Where a live stream is in its broadcast lifecycle (stored; `idle` by default).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LifecycleState {
    /// No broadcast.
    Idle,
    /// An encoder was admitted; no media yet.
    Connected,
    /// Media arrives and is recorded; nothing playable yet.
    Recording,
    /// Playable.
    Active,
    /// The encoder is gone; waiting for it within the reconnect window.
    Disconnected,
}

impl LifecycleState {
    /// Every state, in lifecycle order.
    pub const ALL: &'static [LifecycleState] = &[
        LifecycleState::Idle,
        LifecycleState::Connected,
        LifecycleState::Recording,
        LifecycleState::Active,
        LifecycleState::Disconnected,
    ];

    /// The stored (and serialized) name.
    pub fn as_str(self) -> &'static str {
        match self {
            LifecycleState::Idle => "idle",
            LifecycleState::Connected => "connected",
            LifecycleState::Recording => "recording",
            LifecycleState::Active => "active",
            LifecycleState::Disconnected => "disconnected",
        }
    }

    /// Parses a stored name; `None` for anything else.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|state| state.as_str() == s)
    }
}

impl fmt::Display for LifecycleState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One broadcast: from the admission of an encoder for an idle stream until the stream goes
/// idle. Reconnects within the window continue the same broadcast.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Broadcast {
    /// 44 characters `[A-Za-z0-9]`, like live stream IDs.
    pub id: String,
    /// The live stream it belongs to (which may since have been deleted).
    pub live_stream_id: String,
    /// When it started, unix milliseconds.
    pub started_at_ms: i64,
    /// When it ended, unix milliseconds; `None` while it goes on.
    pub ended_at_ms: Option<i64>,
    /// Where its recording lives, relative to the recordings directory.
    pub recording_dir: String,
}

/// The lifecycle part of a live stream row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LifecycleRecord {
    /// The current state.
    pub state: LifecycleState,
    /// The current broadcast; `None` exactly when idle.
    pub broadcast_id: Option<String>,
    /// When the current state was entered, unix milliseconds.
    pub state_since_ms: i64,
}

/// What a [`Transition`] does to the stream's broadcast.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BroadcastChange {
    /// Nothing: the current broadcast (if any) goes on.
    None,
    /// A new broadcast starts (the stream must have none) and becomes current.
    Start {
        /// Its identifier, chosen by the caller with [`new_broadcast_id`](crate::new_broadcast_id)
        /// (the session names the recording and the segment URLs after it before anything is
        /// written).
        id: String,
        /// Where its recording will live, relative to the recordings directory.
        recording_dir: String,
    },
    /// The current broadcast ends (the stream must have one).
    End,
}

/// One step of the session manager's state machine, to be recorded with its event.
///
/// After the transition, a stream has a current broadcast exactly when its state is not
/// [`LifecycleState::Idle`]; a transition that would break this is refused.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    /// The live stream.
    pub live_stream_id: String,
    /// The event to log, e.g. [`event_type::CONNECTED`].
    pub event_type: String,
    /// The new state (equal to the old one for events that are not state changes).
    pub state: LifecycleState,
    /// An API status change applied in the same transaction, with the rules of
    /// [`Store::set_status`](crate::Store::set_status): `Idle` leaves a disabled stream
    /// disabled, `Active` on a disabled stream is a conflict.
    pub status: Option<StatusChange>,
    /// What happens to the broadcast.
    pub broadcast: BroadcastChange,
    /// When it happened, unix milliseconds (given, never read from the clock by the store).
    pub at_ms: i64,
    /// What the session measured about the broadcast's recording so far, recorded on its
    /// asset (if it has one yet).
    pub media: Option<AssetMedia>,
}

impl Transition {
    /// Checks what can be checked without the stored row.
    pub(crate) fn validate(&self) -> Result<(), StoreError> {
        if self.event_type.trim().is_empty() {
            return Err(StoreError::invalid("event_type", "must not be empty"));
        }
        if let BroadcastChange::Start { id, recording_dir } = &self.broadcast {
            if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
                return Err(StoreError::invalid(
                    "broadcast_id",
                    "must be 1 to 64 ASCII letters and digits",
                ));
            }
            check_recording_dir(recording_dir)?;
        }
        Ok(())
    }
}

/// A recording directory must stay inside the data directory: relative, no `..`.
fn check_recording_dir(dir: &str) -> Result<(), StoreError> {
    let path = Path::new(dir);
    let inside = !dir.is_empty()
        && path
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    if inside {
        Ok(())
    } else {
        Err(StoreError::invalid(
            "recording_dir",
            format!("must be a relative path inside the data directory, got {dir:?}"),
        ))
    }
}

/// A non-fatal problem to report with [`Store::record_warning`](crate::Store::record_warning):
/// `warning` in the events' data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Warning {
    /// A short machine-readable kind, e.g. `slate_image_unavailable`.
    #[serde(rename = "type")]
    pub kind: String,
    /// What happened, for people.
    pub message: String,
}

/// One row of the event log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Position in the whole log: strictly increasing, never reused.
    pub seq: u64,
    /// Unique ID (UUID-shaped); webhooks use it as the event ID.
    pub id: String,
    /// The live stream it is about (which may since have been deleted).
    pub live_stream_id: String,
    /// Position among this live stream's events: 1, 2, 3, ... without gaps.
    pub stream_seq: u64,
    /// E.g. `video.live_stream.active`.
    pub event_type: String,
    /// The stream's current broadcast, or the one this event ended (for asset events: the
    /// asset, whose ID is its broadcast's).
    pub broadcast_id: Option<String>,
    /// When it happened, unix milliseconds.
    pub created_at_ms: i64,
    /// What the event is about as of this event: exactly its API JSON (the live stream; the
    /// asset for `video.asset.*` events).
    pub object: Value,
    /// The stream's lifecycle state as of this event; `None` for events written before the
    /// state was logged (migration 0003).
    pub state: Option<LifecycleState>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip() {
        for &state in LifecycleState::ALL {
            assert_eq!(LifecycleState::parse(state.as_str()), Some(state));
            assert_eq!(
                serde_json::to_value(state).unwrap(),
                Value::String(state.as_str().to_owned())
            );
        }
        assert_eq!(LifecycleState::parse("Idle"), None);
    }

    #[test]
    fn recording_dir_stays_inside_the_data_dir() {
        for ok in ["recordings/abc", "abc", "./a/b"] {
            assert!(check_recording_dir(ok).is_ok(), "{ok}");
        }
        for bad in ["", "/abs", "../up", "a/../../b"] {
            assert!(check_recording_dir(bad).is_err(), "{bad}");
        }
    }
}
