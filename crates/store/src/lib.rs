//! OnAir's metadata store: live streams, their playback IDs, API access tokens, and the
//! broadcast lifecycle with its event log.
//!
//! This is the only crate that talks to the database. Everything above it (the REST API, the
//! session manager admitting publishers, HLS playback resolving playback IDs, the CLI) goes
//! through the [`Store`] trait, whose methods speak in domain types ([`LiveStream`],
//! [`PlaybackId`], [`AccessToken`], ...) and return [`StoreError`]. The resource types
//! serialize to exactly the JSON objects of the hosted API the gateway imitates, so the API
//! layer wraps them in `{"data": ...}` and adds nothing.
//!
//! # Backends
//!
//! [`SqliteStore`] is the default backend: one `onair.db` file in the data directory, in WAL
//! mode with a 5 s busy timeout, so a running server and the `onair` CLI can use the same
//! file at the same time. Queries are checked at run time (no `DATABASE_URL` at build time)
//! and written in portable SQL (`$1` placeholders, `ON CONFLICT`, no SQLite-only functions);
//! migrations live in one folder per dialect (`migrations/sqlite/`) and run at open. A
//! Postgres backend is another implementation of [`Store`] with its own migrations folder;
//! callers do not change.
//!
//! # Usage
//!
//! ```no_run
//! use store::{NewLiveStream, SqliteStore, Store, StatusChange, IngestProtocol};
//!
//! # async fn demo() -> Result<(), store::StoreError> {
//! let store = SqliteStore::open(std::path::Path::new("./data")).await?;
//! let stream = store.create_live_stream(NewLiveStream::default()).await?;
//! // An encoder connects with the stream key:
//! if let Some(found) = store.find_live_stream_by_stream_key(&stream.stream_key).await? {
//!     store.set_status(&found.id, StatusChange::Active(IngestProtocol::Rtmp)).await?;
//! }
//! println!("{}", serde_json::to_string(&stream).unwrap_or_default());
//! # Ok(()) }
//! ```
//!
//! # The event log
//!
//! Every change of a live stream is written in one transaction with an [`Event`] row: the
//! API's own changes (created, updated, disabled, enabled, deleted) and the session manager's
//! lifecycle [`Transition`]s ([`Store::record_transition`]). Events are numbered globally
//! ([`Event::seq`], for readers of the whole log such as webhook delivery) and per live stream
//! ([`Event::stream_seq`], 1, 2, 3, ... without gaps), and carry the stream's API JSON as of
//! that moment, and its lifecycle state. Events and broadcasts outlive the stream they belong
//! to. Webhook delivery keeps its place in the log per endpoint
//! ([`Store::webhook_cursor`], [`Store::advance_webhook_cursor`]) and records the events it
//! gave up on ([`WebhookFailure`]); [`SqliteStore::subscribe_events`] wakes it when an event
//! is written.
//!
//! # Conventions
//!
//! - Looking up something that may not exist answers `Ok(None)` (or `Ok(false)` for deletes);
//!   [`StoreError::NotFound`] is for operations that need another row to exist.
//! - Parameters are validated before anything is written; a bad value is
//!   [`StoreError::InvalidField`] naming the API field.
//! - Secrets never appear in `Debug` output, logs, or (for access tokens) the database.

#![forbid(unsafe_code)]

use std::future::Future;

mod access_token;
mod asset;
mod error;
mod ids;
mod lifecycle;
mod live_stream;
mod signing_key;
mod sqlite;
mod webhook;

pub use access_token::{
    AccessToken, EnsureOutcome, IssuedAccessToken, Permissions, ENSURED_TOKEN_NAME,
    MAX_TOKEN_ID_LEN, MAX_TOKEN_SECRET_LEN,
};
pub use asset::{
    iso8601_millis, Asset, AssetMedia, AssetMeta, AssetPage, AssetPatch, AssetPlayback,
    AssetProgress, AssetQuery, AssetStatus, AssetTrack, AudioMedia, PlaybackOwner, RecordingKind,
    RecordingTime, RecordingTimeJson, VideoMedia, DEFAULT_ASSET_LIST_LIMIT, MAX_ASSET_LIST_LIMIT,
    MAX_META_CHARS, MAX_RECENT_ASSET_IDS,
};
pub use error::{OptionExt, StoreError};
pub use lifecycle::{
    event_type, Broadcast, BroadcastChange, Event, LifecycleRecord, LifecycleState, Transition,
    Warning,
};
pub use live_stream::{
    EmbeddedSubtitle, IngestProtocol, LatencyMode, LiveStream, LiveStreamChanges, LiveStreamPatch,
    LiveStreamSettings, LiveStreamStatus, NewAssetSettings, NewLiveStream, OneOrMorePolicies,
    PlaybackId, PlaybackPolicy, StatusChange, DEFAULT_MAX_CONTINUOUS_DURATION,
    DEFAULT_RECONNECT_WINDOW_LOW_LATENCY, DEFAULT_RECONNECT_WINDOW_STANDARD, MAX_PASSTHROUGH_CHARS,
    MAX_PLAYBACK_POLICIES_PER_REQUEST, MAX_RECONNECT_WINDOW, MAX_URL_LEN,
    MIN_MAX_CONTINUOUS_DURATION,
};
pub use signing_key::{
    SigningKey, SigningKeyRecord, MAX_PUBLIC_KEY_LEN, MAX_SIGNING_KEY_LIST_LIMIT,
};
pub use sqlite::{SqliteStore, DB_FILE_NAME, DEFAULT_BUSY_TIMEOUT};
pub use webhook::{WebhookFailure, MAX_ENDPOINT_KEY_LEN};

/// A new broadcast identifier: 44 ASCII letters and digits, like live stream IDs.
pub fn new_broadcast_id() -> String {
    ids::broadcast_id()
}

/// Largest page size [`Store::list_live_streams`] accepts.
pub const MAX_LIST_LIMIT: u32 = 1000;

/// The store's operations, independent of the database behind them.
///
/// Every method is `async` and its future is `Send`, so handlers on a multi-threaded runtime
/// can await them. Implementations are cheap to share (`SqliteStore` is a pooled handle and
/// `Clone`).
pub trait Store: Send + Sync + 'static {
    // ---- live streams ----

    /// Validates `params` ([`NewLiveStream::validate`]) and creates a live stream with a new
    /// ID, stream key and SRT passphrase, status idle, and one playback ID per requested
    /// policy (one public playback ID by default). Logs [`event_type::CREATED`].
    fn create_live_stream(
        &self,
        params: NewLiveStream,
    ) -> impl Future<Output = Result<LiveStream, StoreError>> + Send;

    /// The live stream with this ID.
    fn get_live_stream(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Option<LiveStream>, StoreError>> + Send;

    /// One page of live streams, newest first. `page` starts at 1; `limit` is
    /// 1..=[`MAX_LIST_LIMIT`]; `status` filters when given.
    fn list_live_streams(
        &self,
        page: u32,
        limit: u32,
        status: Option<LiveStreamStatus>,
    ) -> impl Future<Output = Result<Vec<LiveStream>, StoreError>> + Send;

    /// Deletes a live stream and its playback IDs; `false` if there was none. Its events and
    /// broadcasts are kept: the current broadcast (if any) ends, and
    /// [`event_type::DELETED`] is logged with the stream as it was last.
    fn delete_live_stream(&self, id: &str)
        -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// The live stream an encoder publishing with `stream_key` belongs to (any status: the
    /// caller decides what a disabled stream means).
    fn find_live_stream_by_stream_key(
        &self,
        stream_key: &str,
    ) -> impl Future<Output = Result<Option<LiveStream>, StoreError>> + Send;

    /// Replaces the stream key (and the SRT passphrase, the other ingest credential); the old
    /// key stops matching immediately. `None` if there is no such live stream. Logs
    /// [`event_type::UPDATED`].
    fn reset_stream_key(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Option<LiveStream>, StoreError>> + Send;

    /// Applies a status transition (see [`StatusChange`]) and returns the stream as it now
    /// is. Activating a disabled stream is [`StoreError::Conflict`]; going idle leaves a
    /// disabled stream disabled. Logs no event: the session manager records status changes
    /// with [`Store::record_transition`].
    fn set_status(
        &self,
        id: &str,
        change: StatusChange,
    ) -> impl Future<Output = Result<Option<LiveStream>, StoreError>> + Send;

    /// Disables a live stream (no new broadcasts; clears the ingest protocol). Logs
    /// [`event_type::DISABLED`] unless it already was disabled. The lifecycle is left to the
    /// session manager (which kicks the encoder and records the way to idle).
    fn disable_live_stream(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Option<LiveStream>, StoreError>> + Send;

    /// Enables a disabled live stream (it becomes idle) and logs [`event_type::ENABLED`];
    /// other statuses are left as they are, and nothing is logged.
    fn enable_live_stream(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Option<LiveStream>, StoreError>> + Send;

    /// Validates `patch` ([`LiveStreamPatch::validate`]) and applies it, logging
    /// [`event_type::UPDATED`]; an empty patch writes and logs nothing.
    fn update_live_stream(
        &self,
        id: &str,
        patch: LiveStreamPatch,
    ) -> impl Future<Output = Result<Option<LiveStream>, StoreError>> + Send;

    // ---- playback IDs ----

    /// Adds a playback ID to a live stream; [`StoreError::NotFound`] if the stream does not
    /// exist.
    fn add_playback_id(
        &self,
        live_stream_id: &str,
        policy: PlaybackPolicy,
    ) -> impl Future<Output = Result<PlaybackId, StoreError>> + Send;

    /// A playback ID of this live stream.
    fn get_playback_id(
        &self,
        live_stream_id: &str,
        playback_id: &str,
    ) -> impl Future<Output = Result<Option<PlaybackId>, StoreError>> + Send;

    /// Removes a playback ID of this live stream; `false` if it had none with that ID.
    fn delete_playback_id(
        &self,
        live_stream_id: &str,
        playback_id: &str,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Resolves a playback URL: the live stream a playback ID belongs to, and the ID itself.
    fn find_by_playback_id(
        &self,
        playback_id: &str,
    ) -> impl Future<Output = Result<Option<(LiveStream, PlaybackId)>, StoreError>> + Send;

    /// What a playback ID belongs to: a live stream or an asset.
    fn playback_owner(
        &self,
        playback_id: &str,
    ) -> impl Future<Output = Result<Option<PlaybackOwner>, StoreError>> + Send;

    // ---- assets ----

    /// One asset.
    fn get_asset(&self, id: &str)
        -> impl Future<Output = Result<Option<Asset>, StoreError>> + Send;

    /// One page of assets, newest first (see [`AssetQuery`]).
    fn list_assets(
        &self,
        query: AssetQuery,
    ) -> impl Future<Output = Result<AssetPage, StoreError>> + Send;

    /// Validates and applies `patch` (passthrough, meta), logging
    /// [`event_type::ASSET_UPDATED`] unless it is empty.
    fn update_asset(
        &self,
        id: &str,
        patch: AssetPatch,
    ) -> impl Future<Output = Result<Option<Asset>, StoreError>> + Send;

    /// Deletes an asset and its playback IDs, logging [`event_type::ASSET_DELETED`]; returns
    /// it as it was and its recording directory (relative to the recordings directory), whose
    /// media the caller removes. [`StoreError::Conflict`] while its broadcast goes on.
    fn delete_asset(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Option<(Asset, String)>, StoreError>> + Send;

    /// Records what the session measured about an asset's media outside a transition (the
    /// live stream was deleted meanwhile); `false` if there is no such asset.
    fn set_asset_media(
        &self,
        id: &str,
        media: &AssetMedia,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// What was last recorded about an asset's media ([`Transition::media`]); `None` if there
    /// is no such asset.
    fn asset_media(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Option<AssetMedia>, StoreError>> + Send;

    /// Adds a playback ID to an asset; [`StoreError::NotFound`] if there is no such asset.
    fn add_asset_playback_id(
        &self,
        asset_id: &str,
        policy: PlaybackPolicy,
    ) -> impl Future<Output = Result<PlaybackId, StoreError>> + Send;

    /// A playback ID of this asset.
    fn get_asset_playback_id(
        &self,
        asset_id: &str,
        playback_id: &str,
    ) -> impl Future<Output = Result<Option<PlaybackId>, StoreError>> + Send;

    /// Removes a playback ID of this asset; `false` if it had none with that ID.
    fn delete_asset_playback_id(
        &self,
        asset_id: &str,
        playback_id: &str,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Resolves an asset's playback URL.
    fn find_asset_by_playback_id(
        &self,
        playback_id: &str,
    ) -> impl Future<Output = Result<Option<AssetPlayback>, StoreError>> + Send;

    // ---- access tokens ----

    /// Creates a token with a new ID and secret. The secret is returned once and only its
    /// salted hash is stored.
    fn create_access_token(
        &self,
        name: &str,
        permissions: Permissions,
    ) -> impl Future<Output = Result<IssuedAccessToken, StoreError>> + Send;

    /// Makes sure the token `id` exists, authenticates with `secret`, has `permissions` and
    /// is not revoked (how `ONAIR_ACCESS_TOKEN=ID:SECRET` works). Idempotent.
    fn ensure_access_token(
        &self,
        id: &str,
        secret: &str,
        permissions: Permissions,
    ) -> impl Future<Output = Result<EnsureOutcome, StoreError>> + Send;

    /// The permissions of token `id` if `secret` is its secret and it is not revoked.
    fn verify_access_token(
        &self,
        id: &str,
        secret: &str,
    ) -> impl Future<Output = Result<Option<Permissions>, StoreError>> + Send;

    /// One token, without its secret.
    fn get_access_token(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Option<AccessToken>, StoreError>> + Send;

    /// Every token (revoked ones included), oldest first.
    fn list_access_tokens(
        &self,
    ) -> impl Future<Output = Result<Vec<AccessToken>, StoreError>> + Send;

    /// Revokes a token; `false` if there is no token with that ID.
    fn revoke_access_token(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// How many tokens are usable (not revoked): zero means the server should create one.
    fn count_access_tokens(&self) -> impl Future<Output = Result<u64, StoreError>> + Send;

    // ---- signing keys ----

    /// Stores the public key of a new signing key under a new ID.
    fn create_signing_key(
        &self,
        public_key_der: &[u8],
    ) -> impl Future<Output = Result<SigningKey, StoreError>> + Send;

    /// One signing key.
    fn get_signing_key(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Option<SigningKey>, StoreError>> + Send;

    /// One page of signing keys, newest first. `page` starts at 1; `limit` is
    /// 1..=[`MAX_SIGNING_KEY_LIST_LIMIT`].
    fn list_signing_keys(
        &self,
        page: u32,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<SigningKey>, StoreError>> + Send;

    /// Every signing key with its public key (what playback loads at start).
    fn signing_key_records(
        &self,
    ) -> impl Future<Output = Result<Vec<SigningKeyRecord>, StoreError>> + Send;

    /// Deletes a signing key; `false` if there was none.
    fn delete_signing_key(&self, id: &str)
        -> impl Future<Output = Result<bool, StoreError>> + Send;

    // ---- broadcast lifecycle and events ----

    /// Applies a transition of the session manager in one transaction: the live stream's
    /// lifecycle columns (and `status`/`active_ingest_protocol` when `t.status` is given), the
    /// broadcast row, and the event row. Returns the event, whose `broadcast_id` is the
    /// current broadcast or the one just ended.
    ///
    /// [`StoreError::NotFound`] if the live stream does not exist; [`StoreError::Conflict`]
    /// (and nothing written) for `Active` on a disabled stream, `Start` while a broadcast is
    /// current, `End` without one, or a result where "has a broadcast" and "is not idle"
    /// disagree; [`StoreError::InvalidField`] for an empty `event_type` or a `recording_dir`
    /// outside the data directory.
    fn record_transition(
        &self,
        t: Transition,
    ) -> impl Future<Output = Result<Event, StoreError>> + Send;

    /// Logs a non-fatal problem of live stream `live_stream_id`: [`event_type::WARNING`] with
    /// the stream (and `warning`), then, if its current broadcast has an asset,
    /// [`event_type::ASSET_WARNING`] with the asset (and `warning`), in one transaction.
    /// Nothing else changes. [`StoreError::NotFound`] if the stream does not exist.
    fn record_warning(
        &self,
        live_stream_id: &str,
        warning: Warning,
        at_ms: i64,
    ) -> impl Future<Output = Result<Vec<Event>, StoreError>> + Send;

    /// The lifecycle record of a live stream; `None` if there is no such stream.
    fn lifecycle(
        &self,
        live_stream_id: &str,
    ) -> impl Future<Output = Result<Option<LifecycleRecord>, StoreError>> + Send;

    /// Live streams whose lifecycle is not idle (what a crash left behind), oldest stream
    /// first, with their record and current broadcast.
    fn unfinished_lifecycles(
        &self,
    ) -> impl Future<
        Output = Result<Vec<(LiveStream, LifecycleRecord, Option<Broadcast>)>, StoreError>,
    > + Send;

    /// A broadcast, ended or not, of any live stream (deleted ones included).
    fn get_broadcast(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Option<Broadcast>, StoreError>> + Send;

    /// Events with `seq > after`, oldest first, at most `limit` (1..=[`MAX_LIST_LIMIT`]).
    fn list_events(
        &self,
        after: u64,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<Event>, StoreError>> + Send;

    /// Every event of one live stream, oldest first (also after the stream was deleted).
    fn live_stream_events(
        &self,
        live_stream_id: &str,
    ) -> impl Future<Output = Result<Vec<Event>, StoreError>> + Send;

    // ---- webhook delivery ----

    /// The [`Event::seq`] up to which `endpoint_key` has been delivered (delivery resumes
    /// after it). An endpoint seen for the first time gets a cursor at the current end of the
    /// log, stored at once: it receives the events from now on, also across restarts.
    fn webhook_cursor(
        &self,
        endpoint_key: &str,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Records that every event up to `delivered_seq` is done for `endpoint_key`. The cursor
    /// only moves forward.
    fn advance_webhook_cursor(
        &self,
        endpoint_key: &str,
        delivered_seq: u64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Records that delivery gave up on an event and moves the endpoint's cursor past it, in
    /// one transaction.
    fn record_webhook_failure(
        &self,
        failure: WebhookFailure,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The events delivery gave up on for `endpoint_key`, oldest first.
    fn webhook_failures(
        &self,
        endpoint_key: &str,
    ) -> impl Future<Output = Result<Vec<WebhookFailure>, StoreError>> + Send;
}

#[cfg(test)]
mod tests;
