//! The SQLite backend.
//!
//! One database file, `onair.db`, in the data directory. WAL journaling lets readers proceed
//! while one writer writes; the busy timeout makes a second process (the CLI next to a
//! running server) wait for the write lock instead of failing. Every write transaction
//! starts with a write, so SQLite never has to upgrade a read lock (which fails immediately
//! instead of waiting).
//!
//! The SQL below sticks to what SQLite and Postgres both accept (`$n` placeholders, bound
//! booleans, `ON CONFLICT ... DO UPDATE`, `LIMIT/OFFSET`), and the row structs decode through
//! sqlx's backend-generic `FromRow`, so a Postgres backend can reuse both.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use sqlx::FromRow;
use tokio::sync::watch;

use crate::access_token::{self, AccessToken, EnsureOutcome, IssuedAccessToken, Permissions};
use crate::asset::{
    normalize_new_asset_settings, Asset, AssetMedia, AssetPage, AssetPatch, AssetPlayback,
    AssetQuery, PlaybackOwner,
};
use crate::error::db_err;
use crate::ids;
use crate::lifecycle::{event_type, Broadcast, Event, LifecycleRecord, LifecycleState, Transition};
use crate::live_stream::{
    parse_policy, IngestProtocol, LatencyMode, LiveStream, LiveStreamPatch, LiveStreamStatus,
    NewLiveStream, PlaybackId, PlaybackPolicy, StatusChange,
};
use crate::signing_key::{SigningKey, SigningKeyRecord};
use crate::webhook::WebhookFailure;
use crate::{Store, StoreError, MAX_LIST_LIMIT};

/// Name of the database file inside the data directory.
pub const DB_FILE_NAME: &str = "onair.db";
/// How long a statement waits for another connection's (or process's) write lock.
pub const DEFAULT_BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Pooled connections per process: SQLite has one writer at a time anyway; a few
/// connections let reads proceed beside it.
const MAX_CONNECTIONS: u32 = 4;
/// Attempts at inserting a new random ID/key before a collision is reported (a collision of
/// 128+ random bits does not happen in practice; this only keeps the code honest).
const INSERT_ATTEMPTS: usize = 3;
/// Attempts at running migrations: two processes opening a fresh database at once race on
/// the migrations table; the loser retries and finds the work done.
const MIGRATE_ATTEMPTS: u32 = 4;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// Columns of `live_streams` decoded into [`LiveStreamRow`], in one place.
macro_rules! live_stream_columns {
    () => {
        "id, created_at, stream_key, status, new_asset_settings, passthrough, meta, \
         CAST(reconnect_window AS REAL) AS reconnect_window, latency_mode, max_continuous_duration, audio_only, test, \
         srt_passphrase, active_ingest_protocol, use_slate_for_standard_latency, \
         reconnect_slate_url, recent_asset_ids, active_asset_id, simulcast_targets, \
         embedded_subtitles"
    };
}

/// Selects one live stream by ID (`$1`).
const LIVE_STREAM_BY_ID: &str = concat!(
    "SELECT ",
    live_stream_columns!(),
    " FROM live_streams WHERE id = $1"
);

// After the macro above: the event log and lifecycle queries use it.
mod asset;
mod lifecycle;
mod signing_key;
mod webhook;

use lifecycle::{append_event, claim_stream_seq, end_broadcast, finish_with_event};

const ACCESS_TOKEN_COLUMNS: &str =
    "id, name, secret_salt, secret_hash, can_read, can_write, created_at, revoked";

/// The SQLite-backed [`Store`]. Cheap to clone (a pooled handle).
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pub(crate) pool: SqlitePool,
    path: Option<PathBuf>,
    /// Bumped after every write that may have appended to the event log (see
    /// [`SqliteStore::subscribe_events`]). Shared by the clones of one store.
    events_written: Arc<watch::Sender<u64>>,
}

impl SqliteStore {
    /// Opens (creating if needed) `data_dir/onair.db` and brings its schema up to date.
    ///
    /// Creates `data_dir` if it does not exist. Safe to call from several processes at
    /// once on the same directory.
    pub async fn open(data_dir: &Path) -> Result<SqliteStore, StoreError> {
        let path = data_dir.join(DB_FILE_NAME);
        let prepared = data_dir.to_path_buf();
        let db = path.clone();
        tokio::task::spawn_blocking(move || private_files(&prepared, &db))
            .await
            .map_err(|e| StoreError::Database(format!("preparing the data directory: {e}")))?
            .map_err(|e| {
                StoreError::Database(format!(
                    "preparing data directory {}: {e}",
                    data_dir.display()
                ))
            })?;
        let options = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // NORMAL is durable in WAL mode except for the last transactions on power loss.
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(DEFAULT_BUSY_TIMEOUT);
        let pool = SqlitePoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .connect_with(options)
            .await
            .map_err(|e| StoreError::Database(format!("opening {}: {e}", path.display())))?;
        store_opened(SqliteStore {
            pool,
            path: Some(path),
            events_written: Arc::new(watch::Sender::new(0)),
        })
        .await
    }

    /// A private in-memory database (for tests): gone when the store is dropped.
    pub async fn open_in_memory() -> Result<SqliteStore, StoreError> {
        let options = SqliteConnectOptions::from_str("sqlite::memory:")
            .map_err(db_err)?
            .foreign_keys(true);
        // One connection that never closes: an in-memory database lives only as long as a
        // connection to it.
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await
            .map_err(db_err)?;
        store_opened(SqliteStore {
            pool,
            path: None,
            events_written: Arc::new(watch::Sender::new(0)),
        })
        .await
    }

    /// A receiver that changes after this process (any clone of this store) wrote to the event
    /// log, so readers of the log (webhook delivery) wake up instead of polling. Writes by
    /// other processes on the same database are not seen: poll as well, less often.
    pub fn subscribe_events(&self) -> watch::Receiver<u64> {
        self.events_written.subscribe()
    }

    /// Wakes [`SqliteStore::subscribe_events`] receivers (spurious wake-ups are harmless).
    fn events_changed(&self) {
        self.events_written.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// The database file, or `None` for an in-memory store.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Closes every connection (and checkpoints the WAL); use at shutdown.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let mut attempt = 1;
        loop {
            match MIGRATOR.run(&self.pool).await {
                Ok(()) => return Ok(()),
                Err(e) if attempt < MIGRATE_ATTEMPTS => {
                    tracing::debug!(attempt, error = %e, "migration failed, retrying");
                    tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt))).await;
                    attempt += 1;
                }
                Err(e) => return Err(StoreError::Database(format!("migrating: {e}"))),
            }
        }
    }

    /// One live stream selected by `sql` (which binds `key` as `$1`), with its playback IDs,
    /// read from one snapshot.
    async fn load_live_stream(
        &self,
        sql: &'static str,
        key: &str,
    ) -> Result<Option<LiveStream>, StoreError> {
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        let stream = load_in(&mut tx, sql, key).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(stream)
    }

    /// Inserts a new live stream with its playback IDs and its `created` event.
    async fn insert_live_stream(&self, s: &LiveStream, now_ms: i64) -> Result<(), StoreError> {
        let new_asset_settings = s.new_asset_settings.as_ref().map(to_json).transpose()?;
        let meta = s.meta.as_ref().map(to_json).transpose()?;
        let recent_asset_ids = to_json(&s.recent_asset_ids)?;
        let simulcast_targets = to_json(&s.simulcast_targets)?;
        let embedded_subtitles = to_json(&s.embedded_subtitles)?;
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        sqlx::query(
            "INSERT INTO live_streams (id, created_at, stream_key, status, new_asset_settings, \
             passthrough, reconnect_window, latency_mode, max_continuous_duration, audio_only, \
             test, srt_passphrase, active_ingest_protocol, use_slate_for_standard_latency, \
             reconnect_slate_url, recent_asset_ids, active_asset_id, simulcast_targets, \
             embedded_subtitles, updated_at, lifecycle_since_ms, meta) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, \
             $17, $18, $19, $20, $21, $22)",
        )
        .bind(&s.id)
        .bind(s.created_at)
        .bind(&s.stream_key)
        .bind(s.status.as_str())
        .bind(new_asset_settings)
        .bind(&s.passthrough)
        .bind(s.reconnect_window)
        .bind(s.latency_mode.as_str())
        .bind(i64::from(s.max_continuous_duration))
        .bind(s.audio_only)
        .bind(s.test)
        .bind(&s.srt_passphrase)
        .bind(s.active_ingest_protocol.map(IngestProtocol::as_str))
        .bind(s.use_slate_for_standard_latency)
        .bind(&s.reconnect_slate_url)
        .bind(recent_asset_ids)
        .bind(&s.active_asset_id)
        .bind(simulcast_targets)
        .bind(embedded_subtitles)
        .bind(s.created_at)
        .bind(now_ms)
        .bind(meta)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        for p in &s.playback_ids {
            sqlx::query(
                "INSERT INTO playback_ids (id, live_stream_id, policy, created_at) \
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(&p.id)
            .bind(&s.id)
            .bind(p.policy.as_str())
            .bind(s.created_at)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        }
        let claim = claim_stream_seq(&mut tx, &s.id)
            .await?
            .ok_or_else(|| StoreError::Database(format!("live stream {} vanished", s.id)))?;
        append_event(
            &mut tx,
            s,
            LifecycleState::Idle,
            claim.last_event_seq,
            event_type::CREATED,
            None,
            now_ms,
        )
        .await?;
        tx.commit().await.map_err(db_err)
    }
}

impl Store for SqliteStore {
    async fn create_live_stream(&self, params: NewLiveStream) -> Result<LiveStream, StoreError> {
        let settings = params.validate()?;
        let mut attempt = 1;
        loop {
            let now_ms = now_unix_ms();
            let stream = LiveStream {
                id: ids::live_stream_id(),
                stream_key: ids::stream_key(),
                status: LiveStreamStatus::Idle,
                playback_ids: settings
                    .playback_policies
                    .iter()
                    .map(|&policy| PlaybackId {
                        id: ids::playback_id(),
                        policy,
                    })
                    .collect(),
                created_at: now_ms.div_euclid(1000),
                new_asset_settings: settings.new_asset_settings.clone(),
                passthrough: settings.passthrough.clone(),
                meta: settings.meta.clone(),
                reconnect_window: settings.reconnect_window,
                latency_mode: settings.latency_mode,
                max_continuous_duration: settings.max_continuous_duration,
                audio_only: settings.audio_only,
                test: settings.test,
                srt_passphrase: ids::srt_passphrase(),
                active_ingest_protocol: None,
                use_slate_for_standard_latency: settings.use_slate_for_standard_latency,
                reconnect_slate_url: settings.reconnect_slate_url.clone(),
                recent_asset_ids: Vec::new(),
                active_asset_id: None,
                simulcast_targets: Vec::new(),
                embedded_subtitles: settings.embedded_subtitles.clone(),
            };
            match self.insert_live_stream(&stream, now_ms).await {
                Ok(()) => {
                    self.events_changed();
                    tracing::debug!(live_stream_id = %stream.id, "live stream created");
                    return Ok(stream);
                }
                Err(StoreError::Conflict(_)) if attempt < INSERT_ATTEMPTS => attempt += 1,
                Err(e) => return Err(e),
            }
        }
    }

    async fn get_live_stream(&self, id: &str) -> Result<Option<LiveStream>, StoreError> {
        self.load_live_stream(LIVE_STREAM_BY_ID, id).await
    }

    async fn list_live_streams(
        &self,
        page: u32,
        limit: u32,
        status: Option<LiveStreamStatus>,
    ) -> Result<Vec<LiveStream>, StoreError> {
        if page == 0 {
            return Err(StoreError::invalid("page", "pages start at 1"));
        }
        if limit == 0 || limit > MAX_LIST_LIMIT {
            return Err(StoreError::invalid(
                "limit",
                format!("must be between 1 and {MAX_LIST_LIMIT}"),
            ));
        }
        let offset = i64::from(page - 1) * i64::from(limit);
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        let query = match status {
            Some(status) => sqlx::query_as::<_, LiveStreamRow>(concat!(
                "SELECT ",
                live_stream_columns!(),
                " FROM live_streams WHERE status = $1 ORDER BY seq DESC LIMIT $2 OFFSET $3"
            ))
            .bind(status.as_str()),
            None => sqlx::query_as::<_, LiveStreamRow>(concat!(
                "SELECT ",
                live_stream_columns!(),
                " FROM live_streams ORDER BY seq DESC LIMIT $1 OFFSET $2"
            )),
        };
        let rows = query
            .bind(i64::from(limit))
            .bind(offset)
            .fetch_all(&mut *tx)
            .await
            .map_err(db_err)?;
        let ids: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
        let mut playback_ids = playback_ids_of(&mut tx, &ids).await?;
        tx.commit().await.map_err(db_err)?;
        rows.into_iter()
            .map(|row| {
                let ids = playback_ids.remove(&row.id).unwrap_or_default();
                row.into_live_stream(ids)
            })
            .collect()
    }

    async fn delete_live_stream(&self, id: &str) -> Result<bool, StoreError> {
        let now_ms = now_unix_ms();
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        let Some(claim) = claim_stream_seq(&mut tx, id).await? else {
            return Ok(false);
        };
        // The event shows the stream as it was last; its history (events, broadcasts) stays.
        let stream = load_in(&mut tx, LIVE_STREAM_BY_ID, id)
            .await?
            .ok_or_else(|| StoreError::Database(format!("live stream {id} vanished")))?;
        // The claimed number goes to the first event written; `deleted` is the stream's last.
        let mut stream_seq = Some(claim.last_event_seq);
        if let Some(broadcast_id) = &claim.broadcast_id {
            // Deleting ends the broadcast; nobody is left to record its end otherwise.
            end_broadcast(&mut tx, broadcast_id, now_ms).await?;
            if asset::exists_in(&mut tx, broadcast_id).await? {
                asset::complete_in(&mut tx, id, broadcast_id, now_ms).await?;
                for kind in [
                    event_type::ASSET_READY,
                    event_type::ASSET_LIVE_STREAM_COMPLETED,
                ] {
                    asset::append_event_in(
                        &mut tx,
                        broadcast_id,
                        kind,
                        claim.state()?,
                        stream_seq.take(),
                        now_ms,
                    )
                    .await?;
                }
            }
        }
        let stream_seq = match stream_seq {
            Some(seq) => seq,
            None => lifecycle::next_stream_seq(&mut tx, id).await?,
        };
        append_event(
            &mut tx,
            &stream,
            claim.state()?,
            stream_seq,
            event_type::DELETED,
            claim.broadcast_id.as_deref(),
            now_ms,
        )
        .await?;
        // Playback IDs go with it (ON DELETE CASCADE).
        sqlx::query("DELETE FROM live_streams WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        self.events_changed();
        tracing::debug!(live_stream_id = %id, "live stream deleted");
        Ok(true)
    }

    async fn find_live_stream_by_stream_key(
        &self,
        stream_key: &str,
    ) -> Result<Option<LiveStream>, StoreError> {
        self.load_live_stream(
            concat!(
                "SELECT ",
                live_stream_columns!(),
                " FROM live_streams WHERE stream_key = $1"
            ),
            stream_key,
        )
        .await
    }

    async fn reset_stream_key(&self, id: &str) -> Result<Option<LiveStream>, StoreError> {
        let mut attempt = 1;
        loop {
            let now_ms = now_unix_ms();
            let mut tx = self.pool.begin().await.map_err(db_err)?;
            let Some(claim) = claim_stream_seq(&mut tx, id).await? else {
                return Ok(None);
            };
            let result = sqlx::query(
                "UPDATE live_streams SET stream_key = $2, srt_passphrase = $3, updated_at = $4 \
                 WHERE id = $1",
            )
            .bind(id)
            .bind(ids::stream_key())
            .bind(ids::srt_passphrase())
            .bind(now_ms.div_euclid(1000))
            .execute(&mut *tx)
            .await
            .map_err(db_err);
            match result {
                Ok(_) => {}
                // Dropping the transaction rolls the claimed event number back too.
                Err(StoreError::Conflict(_)) if attempt < INSERT_ATTEMPTS => {
                    attempt += 1;
                    continue;
                }
                Err(e) => return Err(e),
            }
            let stream = finish_with_event(tx, id, claim, event_type::UPDATED, now_ms).await?;
            self.events_changed();
            tracing::debug!(live_stream_id = %id, "stream key reset");
            return Ok(Some(stream));
        }
    }

    async fn set_status(
        &self,
        id: &str,
        change: StatusChange,
    ) -> Result<Option<LiveStream>, StoreError> {
        let now = now_unix();
        let query = match change {
            // Neither idle nor active may overwrite "disabled": only enable does that.
            StatusChange::Idle => sqlx::query(
                "UPDATE live_streams SET status = $2, active_ingest_protocol = NULL, \
                 updated_at = $3 WHERE id = $1 AND status <> $4",
            )
            .bind(id)
            .bind(LiveStreamStatus::Idle.as_str())
            .bind(now)
            .bind(LiveStreamStatus::Disabled.as_str()),
            StatusChange::Active(protocol) => sqlx::query(
                "UPDATE live_streams SET status = $2, active_ingest_protocol = $3, \
                 updated_at = $4 WHERE id = $1 AND status <> $5",
            )
            .bind(id)
            .bind(LiveStreamStatus::Active.as_str())
            .bind(protocol.as_str())
            .bind(now)
            .bind(LiveStreamStatus::Disabled.as_str()),
            StatusChange::Disabled => sqlx::query(
                "UPDATE live_streams SET status = $2, active_ingest_protocol = NULL, \
                 updated_at = $3 WHERE id = $1",
            )
            .bind(id)
            .bind(LiveStreamStatus::Disabled.as_str())
            .bind(now),
        };
        let changed = query
            .execute(&self.pool)
            .await
            .map_err(db_err)?
            .rows_affected()
            > 0;
        let stream = self.get_live_stream(id).await?;
        if let (false, StatusChange::Active(_), Some(s)) = (changed, change, &stream) {
            if s.status == LiveStreamStatus::Disabled {
                return Err(StoreError::Conflict(format!(
                    "live stream {id} is disabled"
                )));
            }
        }
        Ok(stream)
    }

    async fn disable_live_stream(&self, id: &str) -> Result<Option<LiveStream>, StoreError> {
        self.change_disabled(id, true).await
    }

    async fn enable_live_stream(&self, id: &str) -> Result<Option<LiveStream>, StoreError> {
        self.change_disabled(id, false).await
    }

    async fn update_live_stream(
        &self,
        id: &str,
        patch: LiveStreamPatch,
    ) -> Result<Option<LiveStream>, StoreError> {
        let changes = patch.validate()?;
        if changes.is_empty() {
            // Nothing changes, so nothing is written and no event is logged.
            return self.get_live_stream(id).await;
        }
        let now_ms = now_unix_ms();
        let mut sets: Vec<(&'static str, Value)> = Vec::new();
        if let Some(mode) = changes.latency_mode {
            sets.push(("latency_mode", Value::Text(Some(mode.as_str().to_owned()))));
        }
        if let Some(w) = changes.reconnect_window {
            sets.push(("reconnect_window", Value::Real(w)));
        }
        if let Some(d) = changes.max_continuous_duration {
            sets.push(("max_continuous_duration", Value::Int(i64::from(d))));
        }
        if let Some(p) = changes.passthrough {
            sets.push(("passthrough", Value::Text(p)));
        }
        if let Some(b) = changes.use_slate_for_standard_latency {
            sets.push(("use_slate_for_standard_latency", Value::Bool(b)));
        }
        if let Some(url) = changes.reconnect_slate_url {
            sets.push(("reconnect_slate_url", Value::Text(url)));
        }
        if let Some(settings) = changes.new_asset_settings {
            let json = settings.as_ref().map(to_json).transpose()?;
            sets.push(("new_asset_settings", Value::Text(json)));
        }
        if let Some(meta) = changes.meta {
            let json = meta.as_ref().map(to_json).transpose()?;
            sets.push(("meta", Value::Text(json)));
        }
        sets.push(("updated_at", Value::Int(now_ms.div_euclid(1000))));

        // Column names come from the fixed list above, never from input.
        let mut sql = String::from("UPDATE live_streams SET ");
        for (i, (column, _)) in sets.iter().enumerate() {
            if i > 0 {
                sql.push_str(", ");
            }
            let _ = write!(sql, "{column} = ${}", i + 2);
        }
        sql.push_str(" WHERE id = $1");
        let mut query = sqlx::query(&sql).bind(id);
        for (_, value) in sets {
            query = match value {
                Value::Int(n) => query.bind(n),
                Value::Real(x) => query.bind(x),
                Value::Text(t) => query.bind(t),
                Value::Bool(b) => query.bind(b),
            };
        }
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        let Some(claim) = claim_stream_seq(&mut tx, id).await? else {
            return Ok(None);
        };
        query.execute(&mut *tx).await.map_err(db_err)?;
        let stream = finish_with_event(tx, id, claim, event_type::UPDATED, now_ms).await?;
        self.events_changed();
        Ok(Some(stream))
    }

    async fn add_playback_id(
        &self,
        live_stream_id: &str,
        policy: PlaybackPolicy,
    ) -> Result<PlaybackId, StoreError> {
        let playback_id = PlaybackId {
            id: ids::playback_id(),
            policy,
        };
        // Inserting through a SELECT makes "the live stream exists" part of the same statement.
        let done = sqlx::query(
            "INSERT INTO playback_ids (id, live_stream_id, policy, created_at) \
             SELECT $1, id, $2, $3 FROM live_streams WHERE id = $4",
        )
        .bind(&playback_id.id)
        .bind(policy.as_str())
        .bind(now_unix())
        .bind(live_stream_id)
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::not_found("live stream", live_stream_id));
        }
        Ok(playback_id)
    }

    async fn get_playback_id(
        &self,
        live_stream_id: &str,
        playback_id: &str,
    ) -> Result<Option<PlaybackId>, StoreError> {
        let row: Option<PlaybackIdRow> = sqlx::query_as(
            "SELECT id, live_stream_id, policy FROM playback_ids \
             WHERE id = $1 AND live_stream_id = $2",
        )
        .bind(playback_id)
        .bind(live_stream_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        row.map(PlaybackIdRow::into_playback_id).transpose()
    }

    async fn delete_playback_id(
        &self,
        live_stream_id: &str,
        playback_id: &str,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM playback_ids WHERE id = $1 AND live_stream_id = $2")
            .bind(playback_id)
            .bind(live_stream_id)
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(done.rows_affected() > 0)
    }

    async fn find_by_playback_id(
        &self,
        playback_id: &str,
    ) -> Result<Option<(LiveStream, PlaybackId)>, StoreError> {
        let row: Option<PlaybackIdRow> =
            sqlx::query_as("SELECT id, live_stream_id, policy FROM playback_ids WHERE id = $1")
                .bind(playback_id)
                .fetch_optional(&self.pool)
                .await
                .map_err(db_err)?;
        let Some(row) = row else {
            return Ok(None);
        };
        let live_stream_id = row.live_stream_id.clone();
        let playback_id = row.into_playback_id()?;
        // None if the stream was deleted in between.
        Ok(self
            .get_live_stream(&live_stream_id)
            .await?
            .map(|stream| (stream, playback_id)))
    }

    async fn playback_owner(&self, playback_id: &str) -> Result<Option<PlaybackOwner>, StoreError> {
        self.load_playback_owner(playback_id).await
    }

    async fn get_asset(&self, id: &str) -> Result<Option<Asset>, StoreError> {
        self.load_asset(id).await
    }

    async fn list_assets(&self, query: AssetQuery) -> Result<AssetPage, StoreError> {
        self.load_assets(query).await
    }

    async fn update_asset(&self, id: &str, patch: AssetPatch) -> Result<Option<Asset>, StoreError> {
        self.patch_asset(id, patch).await
    }

    async fn delete_asset(&self, id: &str) -> Result<Option<(Asset, String)>, StoreError> {
        self.remove_asset(id).await
    }

    async fn set_asset_media(&self, id: &str, media: &AssetMedia) -> Result<bool, StoreError> {
        self.record_asset_media(id, media).await
    }

    async fn asset_media(&self, id: &str) -> Result<Option<AssetMedia>, StoreError> {
        self.load_asset_media(id).await
    }

    async fn add_asset_playback_id(
        &self,
        asset_id: &str,
        policy: PlaybackPolicy,
    ) -> Result<PlaybackId, StoreError> {
        self.add_asset_playback(asset_id, policy).await
    }

    async fn get_asset_playback_id(
        &self,
        asset_id: &str,
        playback_id: &str,
    ) -> Result<Option<PlaybackId>, StoreError> {
        self.load_asset_playback_id(asset_id, playback_id).await
    }

    async fn delete_asset_playback_id(
        &self,
        asset_id: &str,
        playback_id: &str,
    ) -> Result<bool, StoreError> {
        self.remove_asset_playback_id(asset_id, playback_id).await
    }

    async fn find_asset_by_playback_id(
        &self,
        playback_id: &str,
    ) -> Result<Option<AssetPlayback>, StoreError> {
        self.load_asset_playback(playback_id).await
    }

    async fn create_access_token(
        &self,
        name: &str,
        permissions: Permissions,
    ) -> Result<IssuedAccessToken, StoreError> {
        access_token::validate_name(name)?;
        permissions.validate()?;
        let secret = ids::access_token_secret();
        let salt = ids::salt();
        let hash = access_token::hash_secret(&salt, &secret);
        let mut attempt = 1;
        loop {
            let token = AccessToken {
                id: ids::access_token_id(),
                name: name.to_owned(),
                permissions,
                created_at: now_unix(),
                revoked: false,
            };
            let result = sqlx::query(
                "INSERT INTO access_tokens (id, name, secret_salt, secret_hash, can_read, \
                 can_write, created_at, revoked) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(&token.id)
            .bind(&token.name)
            .bind(&salt)
            .bind(&hash)
            .bind(permissions.read)
            .bind(permissions.write)
            .bind(token.created_at)
            .bind(false)
            .execute(&self.pool)
            .await
            .map_err(db_err);
            match result {
                Ok(_) => {
                    tracing::info!(token_id = %token.id, name = %token.name, "access token created");
                    return Ok(IssuedAccessToken { token, secret });
                }
                Err(StoreError::Conflict(_)) if attempt < INSERT_ATTEMPTS => attempt += 1,
                Err(e) => return Err(e),
            }
        }
    }

    async fn ensure_access_token(
        &self,
        id: &str,
        secret: &str,
        permissions: Permissions,
    ) -> Result<EnsureOutcome, StoreError> {
        access_token::validate_token_id(id)?;
        access_token::validate_secret(secret)?;
        permissions.validate()?;
        let existing = self.access_token_row(id).await?;
        if let Some(row) = &existing {
            if !row.revoked
                && row.permissions() == permissions
                && access_token::secret_matches(&row.secret_salt, &row.secret_hash, secret)
            {
                return Ok(EnsureOutcome::Unchanged);
            }
        }
        let salt = ids::salt();
        let hash = access_token::hash_secret(&salt, secret);
        sqlx::query(
            "INSERT INTO access_tokens (id, name, secret_salt, secret_hash, can_read, can_write, \
             created_at, revoked) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (id) DO UPDATE SET secret_salt = excluded.secret_salt, \
             secret_hash = excluded.secret_hash, can_read = excluded.can_read, \
             can_write = excluded.can_write, revoked = excluded.revoked",
        )
        .bind(id)
        .bind(access_token::ENSURED_TOKEN_NAME)
        .bind(&salt)
        .bind(&hash)
        .bind(permissions.read)
        .bind(permissions.write)
        .bind(now_unix())
        .bind(false)
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        let outcome = if existing.is_some() {
            EnsureOutcome::Updated
        } else {
            EnsureOutcome::Created
        };
        tracing::info!(token_id = %id, ?outcome, "access token ensured");
        Ok(outcome)
    }

    async fn verify_access_token(
        &self,
        id: &str,
        secret: &str,
    ) -> Result<Option<Permissions>, StoreError> {
        match self.access_token_row(id).await? {
            Some(row) => {
                let matches =
                    access_token::secret_matches(&row.secret_salt, &row.secret_hash, secret);
                Ok((matches && !row.revoked).then(|| row.permissions()))
            }
            None => {
                // Hash anyway, so an unknown ID takes as long as a wrong secret.
                let _ = access_token::secret_matches(UNKNOWN_SALT, UNKNOWN_HASH, secret);
                Ok(None)
            }
        }
    }

    async fn get_access_token(&self, id: &str) -> Result<Option<AccessToken>, StoreError> {
        Ok(self
            .access_token_row(id)
            .await?
            .map(AccessTokenRow::into_access_token))
    }

    async fn list_access_tokens(&self) -> Result<Vec<AccessToken>, StoreError> {
        let sql = format!("SELECT {ACCESS_TOKEN_COLUMNS} FROM access_tokens ORDER BY seq");
        let rows: Vec<AccessTokenRow> = sqlx::query_as(&sql)
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(rows
            .into_iter()
            .map(AccessTokenRow::into_access_token)
            .collect())
    }

    async fn revoke_access_token(&self, id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE access_tokens SET revoked = $2 WHERE id = $1")
            .bind(id)
            .bind(true)
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        let found = done.rows_affected() > 0;
        if found {
            tracing::info!(token_id = %id, "access token revoked");
        }
        Ok(found)
    }

    async fn count_access_tokens(&self) -> Result<u64, StoreError> {
        let count: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM access_tokens WHERE revoked = $1")
                .bind(false)
                .fetch_one(&self.pool)
                .await
                .map_err(db_err)?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    async fn record_transition(&self, t: Transition) -> Result<Event, StoreError> {
        let event = self.apply_transition(t).await?;
        self.events_changed();
        Ok(event)
    }

    async fn record_warning(
        &self,
        live_stream_id: &str,
        warning: crate::Warning,
        at_ms: i64,
    ) -> Result<Vec<Event>, StoreError> {
        let events = self.log_warning(live_stream_id, warning, at_ms).await?;
        self.events_changed();
        Ok(events)
    }

    async fn lifecycle(&self, live_stream_id: &str) -> Result<Option<LifecycleRecord>, StoreError> {
        self.lifecycle_record(live_stream_id).await
    }

    async fn unfinished_lifecycles(
        &self,
    ) -> Result<Vec<(LiveStream, LifecycleRecord, Option<Broadcast>)>, StoreError> {
        self.load_unfinished_lifecycles().await
    }

    async fn get_broadcast(&self, id: &str) -> Result<Option<Broadcast>, StoreError> {
        self.load_broadcast(id).await
    }

    async fn list_events(&self, after: u64, limit: u32) -> Result<Vec<Event>, StoreError> {
        self.load_events_after(after, limit).await
    }

    async fn live_stream_events(&self, live_stream_id: &str) -> Result<Vec<Event>, StoreError> {
        self.load_live_stream_events(live_stream_id).await
    }

    async fn webhook_cursor(&self, endpoint_key: &str) -> Result<u64, StoreError> {
        self.load_webhook_cursor(endpoint_key, now_unix_ms()).await
    }

    async fn advance_webhook_cursor(
        &self,
        endpoint_key: &str,
        delivered_seq: u64,
    ) -> Result<(), StoreError> {
        self.store_webhook_cursor(endpoint_key, delivered_seq, now_unix_ms())
            .await
    }

    async fn record_webhook_failure(&self, failure: WebhookFailure) -> Result<(), StoreError> {
        self.insert_webhook_failure(&failure).await
    }

    async fn webhook_failures(
        &self,
        endpoint_key: &str,
    ) -> Result<Vec<WebhookFailure>, StoreError> {
        self.load_webhook_failures(endpoint_key).await
    }

    async fn create_signing_key(&self, public_key_der: &[u8]) -> Result<SigningKey, StoreError> {
        self.insert_signing_key(public_key_der, now_unix()).await
    }

    async fn get_signing_key(&self, id: &str) -> Result<Option<SigningKey>, StoreError> {
        self.load_signing_key(id).await
    }

    async fn list_signing_keys(
        &self,
        page: u32,
        limit: u32,
    ) -> Result<Vec<SigningKey>, StoreError> {
        self.load_signing_keys(page, limit).await
    }

    async fn signing_key_records(&self) -> Result<Vec<SigningKeyRecord>, StoreError> {
        self.load_signing_key_records().await
    }

    async fn delete_signing_key(&self, id: &str) -> Result<bool, StoreError> {
        self.remove_signing_key(id).await
    }
}

impl SqliteStore {
    /// Disables (`true`) or enables (`false`) a live stream, with its event when the status
    /// changes. Disabling clears the ingest protocol; enabling affects only a disabled stream.
    async fn change_disabled(
        &self,
        id: &str,
        disable: bool,
    ) -> Result<Option<LiveStream>, StoreError> {
        let now_ms = now_unix_ms();
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        let Some(claim) = claim_stream_seq(&mut tx, id).await? else {
            return Ok(None);
        };
        let disabled = LiveStreamStatus::Disabled.as_str();
        if (claim.status == disabled) == disable {
            // Nothing to do: give the claimed event number back.
            let stream = load_in(&mut tx, LIVE_STREAM_BY_ID, id).await?;
            tx.rollback().await.map_err(db_err)?;
            return Ok(stream);
        }
        let (query, event) = if disable {
            (
                sqlx::query(
                    "UPDATE live_streams SET status = $2, active_ingest_protocol = NULL, \
                     updated_at = $3 WHERE id = $1",
                )
                .bind(id)
                .bind(disabled),
                event_type::DISABLED,
            )
        } else {
            (
                sqlx::query("UPDATE live_streams SET status = $2, updated_at = $3 WHERE id = $1")
                    .bind(id)
                    .bind(LiveStreamStatus::Idle.as_str()),
                event_type::ENABLED,
            )
        };
        query
            .bind(now_ms.div_euclid(1000))
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        let stream = finish_with_event(tx, id, claim, event, now_ms).await?;
        self.events_changed();
        tracing::debug!(live_stream_id = %id, status = %stream.status.as_str(), "status changed");
        Ok(Some(stream))
    }

    async fn access_token_row(&self, id: &str) -> Result<Option<AccessTokenRow>, StoreError> {
        let sql = format!("SELECT {ACCESS_TOKEN_COLUMNS} FROM access_tokens WHERE id = $1");
        sqlx::query_as(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)
    }
}

/// One live stream selected by `sql` (which binds `key` as `$1`), with its playback IDs, read
/// on `conn` (inside the caller's transaction).
async fn load_in(
    conn: &mut SqliteConnection,
    sql: &'static str,
    key: &str,
) -> Result<Option<LiveStream>, StoreError> {
    let row: Option<LiveStreamRow> = sqlx::query_as(sql)
        .bind(key)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db_err)?;
    match row {
        None => Ok(None),
        Some(row) => {
            let mut playback_ids = playback_ids_of(conn, std::slice::from_ref(&row.id)).await?;
            let ids = playback_ids.remove(&row.id).unwrap_or_default();
            Ok(Some(row.into_live_stream(ids)?))
        }
    }
}

/// Runs the migrations on a freshly opened store.
async fn store_opened(store: SqliteStore) -> Result<SqliteStore, StoreError> {
    store.migrate().await?;
    tracing::debug!(path = ?store.path, "store opened");
    Ok(store)
}

const UNKNOWN_SALT: &str = "00000000000000000000000000000000";
const UNKNOWN_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// A value bound in a dynamically built `UPDATE`.
enum Value {
    Int(i64),
    Real(f64),
    Text(Option<String>),
    Bool(bool),
}

/// Playback IDs of the given live streams, grouped by live stream, oldest first.
async fn playback_ids_of(
    conn: &mut SqliteConnection,
    live_stream_ids: &[String],
) -> Result<HashMap<String, Vec<PlaybackId>>, StoreError> {
    let mut grouped: HashMap<String, Vec<PlaybackId>> = HashMap::new();
    if live_stream_ids.is_empty() {
        return Ok(grouped);
    }
    let mut sql = String::from(
        "SELECT id, live_stream_id, policy FROM playback_ids WHERE live_stream_id IN (",
    );
    for i in 1..=live_stream_ids.len() {
        if i > 1 {
            sql.push_str(", ");
        }
        let _ = write!(sql, "${i}");
    }
    sql.push_str(") ORDER BY seq");
    let mut query = sqlx::query_as::<_, PlaybackIdRow>(&sql);
    for id in live_stream_ids {
        query = query.bind(id);
    }
    let rows = query.fetch_all(&mut *conn).await.map_err(db_err)?;
    for row in rows {
        let live_stream_id = row.live_stream_id.clone();
        grouped
            .entry(live_stream_id)
            .or_default()
            .push(row.into_playback_id()?);
    }
    Ok(grouped)
}

#[derive(FromRow)]
struct LiveStreamRow {
    id: String,
    created_at: i64,
    stream_key: String,
    status: String,
    new_asset_settings: Option<String>,
    passthrough: Option<String>,
    meta: Option<String>,
    reconnect_window: f64,
    latency_mode: String,
    max_continuous_duration: i64,
    audio_only: bool,
    test: bool,
    srt_passphrase: String,
    active_ingest_protocol: Option<String>,
    use_slate_for_standard_latency: bool,
    reconnect_slate_url: Option<String>,
    recent_asset_ids: String,
    active_asset_id: Option<String>,
    simulcast_targets: String,
    embedded_subtitles: String,
}

impl LiveStreamRow {
    fn into_live_stream(self, playback_ids: Vec<PlaybackId>) -> Result<LiveStream, StoreError> {
        Ok(LiveStream {
            status: stored_enum("status", &self.status, LiveStreamStatus::parse)?,
            latency_mode: stored_enum("latency_mode", &self.latency_mode, LatencyMode::parse)?,
            active_ingest_protocol: self
                .active_ingest_protocol
                .as_deref()
                .map(|p| stored_enum("active_ingest_protocol", p, IngestProtocol::parse))
                .transpose()?,
            // Stored as sent once normalised; older rows may hold the legacy forms.
            new_asset_settings: self
                .new_asset_settings
                .as_deref()
                .map(|s| from_json("new_asset_settings", s).map(normalize_new_asset_settings))
                .transpose()?,
            meta: self
                .meta
                .as_deref()
                .map(|s| from_json("meta", s))
                .transpose()?,
            reconnect_window: self.reconnect_window,
            max_continuous_duration: stored_u32(
                "max_continuous_duration",
                self.max_continuous_duration,
            )?,
            recent_asset_ids: from_json("recent_asset_ids", &self.recent_asset_ids)?,
            simulcast_targets: from_json("simulcast_targets", &self.simulcast_targets)?,
            embedded_subtitles: from_json("embedded_subtitles", &self.embedded_subtitles)?,
            id: self.id,
            created_at: self.created_at,
            stream_key: self.stream_key,
            playback_ids,
            passthrough: self.passthrough,
            audio_only: self.audio_only,
            test: self.test,
            srt_passphrase: self.srt_passphrase,
            use_slate_for_standard_latency: self.use_slate_for_standard_latency,
            reconnect_slate_url: self.reconnect_slate_url,
            active_asset_id: self.active_asset_id,
        })
    }
}

#[derive(FromRow)]
struct PlaybackIdRow {
    id: String,
    live_stream_id: String,
    policy: String,
}

impl PlaybackIdRow {
    fn into_playback_id(self) -> Result<PlaybackId, StoreError> {
        stored_playback_id(self.id, &self.policy)
    }
}

#[derive(FromRow)]
struct AccessTokenRow {
    id: String,
    name: String,
    secret_salt: String,
    secret_hash: String,
    can_read: bool,
    can_write: bool,
    created_at: i64,
    revoked: bool,
}

impl AccessTokenRow {
    fn permissions(&self) -> Permissions {
        Permissions {
            read: self.can_read,
            write: self.can_write,
        }
    }

    fn into_access_token(self) -> AccessToken {
        AccessToken {
            permissions: self.permissions(),
            id: self.id,
            name: self.name,
            created_at: self.created_at,
            revoked: self.revoked,
        }
    }
}

/// A playback ID row's ID and policy (of a live stream or an asset).
fn stored_playback_id(id: String, policy: &str) -> Result<PlaybackId, StoreError> {
    let policy = parse_policy("policy", policy).map_err(|_| corrupt("policy", policy))?;
    Ok(PlaybackId { id, policy })
}

fn corrupt(column: &str, value: &str) -> StoreError {
    StoreError::Database(format!("stored {column} is invalid: {value:?}"))
}

fn stored_enum<T>(
    column: &str,
    value: &str,
    parse: fn(&str) -> Option<T>,
) -> Result<T, StoreError> {
    parse(value).ok_or_else(|| corrupt(column, value))
}

fn stored_u32(column: &str, value: i64) -> Result<u32, StoreError> {
    u32::try_from(value).map_err(|_| corrupt(column, &value.to_string()))
}

fn from_json<T: serde::de::DeserializeOwned>(column: &str, text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text)
        .map_err(|e| StoreError::Database(format!("stored {column} is invalid JSON: {e}")))
}

fn to_json<T: serde::Serialize + ?Sized>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value)
        .map_err(|e| StoreError::Database(format!("encoding JSON column: {e}")))
}

/// Milliseconds since the Unix epoch (0 if the clock is before it), for events of the API's
/// own changes (lifecycle transitions bring their time with them).
fn now_unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Seconds since the Unix epoch (0 if the clock is before it).
fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The data directory (created 0700 if missing) and the database file (0600, created empty
/// if missing): the database holds stream keys and access token hashes. SQLite gives its
/// `-wal` and `-shm` files the database file's mode. Existing files that others could read
/// are tightened, with a warning.
fn private_files(data_dir: &Path, db: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(data_dir)?;
    let mut options = std::fs::OpenOptions::new();
    options.append(true).create(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(db)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let wal = db.with_extension("db-wal");
        let shm = db.with_extension("db-shm");
        for path in [db, wal.as_path(), shm.as_path()] {
            let Ok(meta) = std::fs::metadata(path) else {
                continue;
            };
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                tracing::warn!(path = %path.display(), mode = format!("{mode:o}"), "database file was readable by others: now 0600");
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
            }
        }
    }
    Ok(())
}
