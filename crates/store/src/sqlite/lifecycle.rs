//! The broadcast lifecycle and the event log, in SQLite.
//!
//! Every transaction that logs an event follows one pattern:
//!
//! 1. [`claim_stream_seq`] bumps the live stream's `last_event_seq`. It is the transaction's
//!    first statement and a write, so the transaction holds the write lock from its start
//!    (see the module doc of `sqlite`), and two writers of the same stream queue behind each
//!    other instead of both reading the same number. It also says whether the stream exists
//!    and returns the stored state the change depends on.
//! 2. The change itself.
//! 3. [`append_event`] with the live stream read back inside the same transaction, so the
//!    event's object is exactly what the API shows after the change.
//!
//! A transaction that turns out to change nothing is rolled back, which gives the claimed
//! number back: `stream_seq` has no gaps.

use std::collections::HashMap;

use sqlx::sqlite::{Sqlite, SqliteConnection};
use sqlx::{FromRow, Transaction};

use super::{
    asset, corrupt, load_in, playback_ids_of, stored_enum, to_json, LiveStreamRow, SqliteStore,
    LIVE_STREAM_BY_ID,
};
use crate::error::db_err;
use crate::ids;
use crate::lifecycle::{
    event_type, Broadcast, BroadcastChange, Event, LifecycleRecord, LifecycleState, Transition,
};
use crate::live_stream::{IngestProtocol, LiveStream, LiveStreamStatus, StatusChange};
use crate::{StoreError, MAX_LIST_LIMIT};

const EVENT_COLUMNS: &str = "seq, id, live_stream_id, stream_seq, event_type, broadcast_id, \
     created_at_ms, object, lifecycle_state";
const BROADCAST_COLUMNS: &str = "id, live_stream_id, started_at_ms, ended_at_ms, recording_dir";

/// A live stream's next event number and the stored state a change depends on.
#[derive(FromRow)]
pub(super) struct Claim {
    /// The `stream_seq` of the event this transaction writes.
    pub(super) last_event_seq: i64,
    pub(super) status: String,
    active_ingest_protocol: Option<String>,
    lifecycle_state: String,
    pub(super) broadcast_id: Option<String>,
    lifecycle_since_ms: i64,
}

impl Claim {
    /// The stream's lifecycle state before this transaction's change.
    pub(super) fn state(&self) -> Result<LifecycleState, StoreError> {
        stored_enum(
            "lifecycle_state",
            &self.lifecycle_state,
            LifecycleState::parse,
        )
    }
}

/// Step 1 of every event-writing transaction (see the module doc); `None` if there is no
/// live stream `id`.
pub(super) async fn claim_stream_seq(
    conn: &mut SqliteConnection,
    id: &str,
) -> Result<Option<Claim>, StoreError> {
    sqlx::query_as(
        "UPDATE live_streams SET last_event_seq = last_event_seq + 1 WHERE id = $1 \
         RETURNING last_event_seq, status, active_ingest_protocol, lifecycle_state, \
         broadcast_id, lifecycle_since_ms",
    )
    .bind(id)
    .fetch_optional(&mut *conn)
    .await
    .map_err(db_err)
}

/// Appends the event showing `stream` as it is now, in lifecycle `state`.
pub(super) async fn append_event(
    conn: &mut SqliteConnection,
    stream: &LiveStream,
    state: LifecycleState,
    stream_seq: i64,
    event_type: &str,
    broadcast_id: Option<&str>,
    at_ms: i64,
) -> Result<Event, StoreError> {
    let object = serde_json::to_value(stream)
        .map_err(|e| StoreError::Database(format!("encoding the event object: {e}")))?;
    append_event_object(
        conn,
        EventRecord {
            live_stream_id: &stream.id,
            object,
            state,
            stream_seq,
            event_type,
            broadcast_id,
            at_ms,
        },
    )
    .await
}

/// One row of the event log to append: `object` is the API JSON of what the event is about
/// (the live stream, or for `video.asset.*` the asset).
pub(super) struct EventRecord<'a> {
    pub live_stream_id: &'a str,
    pub object: serde_json::Value,
    pub state: LifecycleState,
    pub stream_seq: i64,
    pub event_type: &'a str,
    pub broadcast_id: Option<&'a str>,
    pub at_ms: i64,
}

/// Appends one event row.
pub(super) async fn append_event_object(
    conn: &mut SqliteConnection,
    e: EventRecord<'_>,
) -> Result<Event, StoreError> {
    let id = ids::event_id();
    let seq: i64 = sqlx::query_scalar(
        "INSERT INTO events (id, live_stream_id, stream_seq, event_type, broadcast_id, \
         created_at_ms, object, lifecycle_state) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
         RETURNING seq",
    )
    .bind(&id)
    .bind(e.live_stream_id)
    .bind(e.stream_seq)
    .bind(e.event_type)
    .bind(e.broadcast_id)
    .bind(e.at_ms)
    .bind(to_json(&e.object)?)
    .bind(e.state.as_str())
    .fetch_one(&mut *conn)
    .await
    .map_err(db_err)?;
    Ok(Event {
        seq: stored_u64("events.seq", seq)?,
        id,
        live_stream_id: e.live_stream_id.to_owned(),
        stream_seq: stored_u64("events.stream_seq", e.stream_seq)?,
        event_type: e.event_type.to_owned(),
        broadcast_id: e.broadcast_id.map(str::to_owned),
        created_at_ms: e.at_ms,
        object: e.object,
        state: Some(e.state),
    })
}

/// The next `stream_seq` of a live stream for a further event of the same transaction (or of
/// a change that is not the stream's own, such as an asset update). A deleted stream has no
/// counter left: its events go on after the highest number it logged (nothing else writes
/// for it any more).
pub(super) async fn next_stream_seq(
    conn: &mut SqliteConnection,
    live_stream_id: &str,
) -> Result<i64, StoreError> {
    if let Some(claim) = claim_stream_seq(conn, live_stream_id).await? {
        return Ok(claim.last_event_seq);
    }
    let (last,): (i64,) =
        sqlx::query_as("SELECT COALESCE(MAX(stream_seq), 0) FROM events WHERE live_stream_id = $1")
            .bind(live_stream_id)
            .fetch_one(&mut *conn)
            .await
            .map_err(db_err)?;
    Ok(last + 1)
}

/// Steps 3 and commit for the API's own changes: logs `event_type` with the stream as it now
/// is (and its current broadcast) and returns the stream.
pub(super) async fn finish_with_event(
    mut tx: Transaction<'_, Sqlite>,
    id: &str,
    claim: Claim,
    event_type: &str,
    at_ms: i64,
) -> Result<LiveStream, StoreError> {
    let stream = load_in(&mut tx, LIVE_STREAM_BY_ID, id)
        .await?
        .ok_or_else(|| StoreError::Database(format!("live stream {id} vanished")))?;
    append_event(
        &mut tx,
        &stream,
        claim.state()?,
        claim.last_event_seq,
        event_type,
        claim.broadcast_id.as_deref(),
        at_ms,
    )
    .await?;
    tx.commit().await.map_err(db_err)?;
    Ok(stream)
}

/// Sets the end of a broadcast that has not ended yet.
pub(super) async fn end_broadcast(
    conn: &mut SqliteConnection,
    broadcast_id: &str,
    at_ms: i64,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE broadcasts SET ended_at_ms = $2 WHERE id = $1 AND ended_at_ms IS NULL")
        .bind(broadcast_id)
        .bind(at_ms)
        .execute(&mut *conn)
        .await
        .map_err(db_err)?;
    Ok(())
}

/// The status columns after `change`, with the rules of `set_status`.
fn apply_status(
    id: &str,
    status: LiveStreamStatus,
    protocol: Option<IngestProtocol>,
    change: Option<StatusChange>,
) -> Result<(LiveStreamStatus, Option<IngestProtocol>), StoreError> {
    use LiveStreamStatus::{Active, Disabled, Idle};
    Ok(match change {
        None => (status, protocol),
        // Only enable ends "disabled".
        Some(StatusChange::Idle) if status == Disabled => (Disabled, None),
        Some(StatusChange::Idle) => (Idle, None),
        Some(StatusChange::Active(_)) if status == Disabled => {
            return Err(StoreError::Conflict(format!(
                "live stream {id} is disabled"
            )))
        }
        Some(StatusChange::Active(p)) => (Active, Some(p)),
        Some(StatusChange::Disabled) => (Disabled, None),
    })
}

impl SqliteStore {
    pub(super) async fn apply_transition(&self, t: Transition) -> Result<Event, StoreError> {
        t.validate()?;
        let id = t.live_stream_id.as_str();
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        // Every early return below drops `tx`, which rolls back: nothing is written.
        let claim = claim_stream_seq(&mut tx, id)
            .await?
            .ok_or_else(|| StoreError::not_found("live stream", id))?;
        let old_state = claim.state()?;
        let old_status = stored_enum("status", &claim.status, LiveStreamStatus::parse)?;
        let old_protocol = claim
            .active_ingest_protocol
            .as_deref()
            .map(|p| stored_enum("active_ingest_protocol", p, IngestProtocol::parse))
            .transpose()?;
        let (status, protocol) = apply_status(id, old_status, old_protocol, t.status)?;

        // (current broadcast after the transition, broadcast of the event)
        let (current, event_broadcast) = match (&t.broadcast, &claim.broadcast_id) {
            (BroadcastChange::None, current) => (current.clone(), current.clone()),
            (BroadcastChange::Start { .. }, Some(current)) => {
                return Err(StoreError::Conflict(format!(
                    "live stream {id} already has broadcast {current}"
                )))
            }
            (BroadcastChange::Start { id: new, .. }, None) => {
                (Some(new.clone()), Some(new.clone()))
            }
            (BroadcastChange::End, None) => {
                return Err(StoreError::Conflict(format!(
                    "live stream {id} has no broadcast to end"
                )))
            }
            (BroadcastChange::End, Some(current)) => (None, Some(current.clone())),
        };
        if current.is_some() == (t.state == LifecycleState::Idle) {
            return Err(StoreError::Conflict(format!(
                "live stream {id}: state {} {} a broadcast",
                t.state,
                if current.is_some() {
                    "cannot have"
                } else {
                    "needs"
                }
            )));
        }

        match &t.broadcast {
            BroadcastChange::None => {}
            BroadcastChange::Start { recording_dir, .. } => {
                sqlx::query(
                    "INSERT INTO broadcasts (id, live_stream_id, started_at_ms, recording_dir) \
                     VALUES ($1, $2, $3, $4)",
                )
                .bind(&current)
                .bind(id)
                .bind(t.at_ms)
                .bind(recording_dir)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
            }
            BroadcastChange::End => {
                if let Some(ended) = &event_broadcast {
                    end_broadcast(&mut tx, ended, t.at_ms).await?;
                }
            }
        }

        // The broadcast's asset: created with its first recorded media, completed with it.
        let mut asset_created = false;
        let mut asset_completed = false;
        if let Some(b) = &event_broadcast {
            let exists = asset::exists_in(&mut tx, b).await?;
            if !exists && t.state == LifecycleState::Recording && current.is_some() {
                asset::create_in(&mut tx, b, id, t.at_ms).await?;
                asset_created = true;
            }
            if exists || asset_created {
                if let Some(media) = &t.media {
                    asset::set_media_in(&mut tx, b, media, t.at_ms).await?;
                }
                if t.broadcast == BroadcastChange::End {
                    asset::complete_in(&mut tx, id, b, t.at_ms).await?;
                    asset_completed = true;
                }
            }
        }

        let since_ms = if t.state == old_state {
            claim.lifecycle_since_ms
        } else {
            t.at_ms
        };
        sqlx::query(
            "UPDATE live_streams SET status = $2, active_ingest_protocol = $3, \
             lifecycle_state = $4, broadcast_id = $5, lifecycle_since_ms = $6, updated_at = $7 \
             WHERE id = $1",
        )
        .bind(id)
        .bind(status.as_str())
        .bind(protocol.map(IngestProtocol::as_str))
        .bind(t.state.as_str())
        .bind(&current)
        .bind(since_ms)
        .bind(t.at_ms.div_euclid(1000))
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;

        let stream = load_in(&mut tx, LIVE_STREAM_BY_ID, id)
            .await?
            .ok_or_else(|| StoreError::Database(format!("live stream {id} vanished")))?;
        let event = append_event(
            &mut tx,
            &stream,
            t.state,
            claim.last_event_seq,
            &t.event_type,
            event_broadcast.as_deref(),
            t.at_ms,
        )
        .await?;
        // The asset's events follow the lifecycle event that caused them (`recording`, `idle`).
        if let Some(b) = event_broadcast.as_deref() {
            let asset_events: &[&str] = match (asset_created, asset_completed) {
                (true, _) => &[event_type::ASSET_CREATED],
                (false, true) => &[
                    event_type::ASSET_READY,
                    event_type::ASSET_LIVE_STREAM_COMPLETED,
                ],
                (false, false) => &[],
            };
            for kind in asset_events {
                asset::append_event_in(&mut tx, b, kind, t.state, None, t.at_ms).await?;
            }
        }
        tx.commit().await.map_err(db_err)?;
        tracing::debug!(
            live_stream_id = %id,
            from = %old_state,
            to = %t.state,
            event = %t.event_type,
            stream_seq = event.stream_seq,
            "lifecycle transition recorded"
        );
        Ok(event)
    }

    pub(super) async fn log_warning(
        &self,
        id: &str,
        warning: crate::Warning,
        at_ms: i64,
    ) -> Result<Vec<Event>, StoreError> {
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        let claim = claim_stream_seq(&mut tx, id)
            .await?
            .ok_or_else(|| StoreError::not_found("live stream", id))?;
        let state = claim.state()?;
        let stream = load_in(&mut tx, LIVE_STREAM_BY_ID, id)
            .await?
            .ok_or_else(|| StoreError::Database(format!("live stream {id} vanished")))?;
        let warning = serde_json::to_value(&warning)
            .map_err(|e| StoreError::Database(format!("encoding the warning: {e}")))?;
        // The object as the API shows it, plus `warning`.
        let with_warning = |object: Result<serde_json::Value, serde_json::Error>| {
            let mut object = object
                .map_err(|e| StoreError::Database(format!("encoding the event object: {e}")))?;
            if let Some(map) = object.as_object_mut() {
                map.insert("warning".to_owned(), warning.clone());
            }
            Ok::<_, StoreError>(object)
        };
        let mut events = vec![
            append_event_object(
                &mut tx,
                EventRecord {
                    live_stream_id: id,
                    object: with_warning(serde_json::to_value(&stream))?,
                    state,
                    stream_seq: claim.last_event_seq,
                    event_type: event_type::WARNING,
                    broadcast_id: claim.broadcast_id.as_deref(),
                    at_ms,
                },
            )
            .await?,
        ];
        if let Some(b) = claim.broadcast_id.as_deref() {
            if let Some(asset) = asset::load_in(&mut tx, b).await? {
                let stream_seq = next_stream_seq(&mut tx, id).await?;
                events.push(
                    append_event_object(
                        &mut tx,
                        EventRecord {
                            live_stream_id: id,
                            object: with_warning(serde_json::to_value(&asset))?,
                            state,
                            stream_seq,
                            event_type: event_type::ASSET_WARNING,
                            broadcast_id: Some(b),
                            at_ms,
                        },
                    )
                    .await?,
                );
            }
        }
        tx.commit().await.map_err(db_err)?;
        Ok(events)
    }

    pub(super) async fn lifecycle_record(
        &self,
        id: &str,
    ) -> Result<Option<LifecycleRecord>, StoreError> {
        let row: Option<LifecycleRow> = sqlx::query_as(
            "SELECT lifecycle_state, broadcast_id AS current_broadcast_id, lifecycle_since_ms \
             FROM live_streams WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        row.map(LifecycleRow::into_record).transpose()
    }

    pub(super) async fn load_unfinished_lifecycles(
        &self,
    ) -> Result<Vec<(LiveStream, LifecycleRecord, Option<Broadcast>)>, StoreError> {
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        let rows: Vec<UnfinishedRow> = sqlx::query_as(concat!(
            "SELECT ",
            live_stream_columns!(),
            ", lifecycle_state, broadcast_id AS current_broadcast_id, lifecycle_since_ms \
             FROM live_streams WHERE lifecycle_state <> $1 ORDER BY seq"
        ))
        .bind(LifecycleState::Idle.as_str())
        .fetch_all(&mut *tx)
        .await
        .map_err(db_err)?;
        let broadcast_rows: Vec<BroadcastRow> = sqlx::query_as(&format!(
            "SELECT {BROADCAST_COLUMNS} FROM broadcasts WHERE id IN \
             (SELECT broadcast_id FROM live_streams WHERE lifecycle_state <> $1)"
        ))
        .bind(LifecycleState::Idle.as_str())
        .fetch_all(&mut *tx)
        .await
        .map_err(db_err)?;
        let ids: Vec<String> = rows.iter().map(|r| r.stream.id.clone()).collect();
        let mut playback_ids = playback_ids_of(&mut tx, &ids).await?;
        tx.commit().await.map_err(db_err)?;

        let mut broadcasts: HashMap<String, Broadcast> = broadcast_rows
            .into_iter()
            .map(|row| (row.id.clone(), row.into_broadcast()))
            .collect();
        rows.into_iter()
            .map(|row| {
                let record = row.lifecycle.into_record()?;
                let broadcast = record
                    .broadcast_id
                    .as_ref()
                    .and_then(|b| broadcasts.remove(b));
                let ids = playback_ids.remove(&row.stream.id).unwrap_or_default();
                Ok((row.stream.into_live_stream(ids)?, record, broadcast))
            })
            .collect()
    }

    pub(super) async fn load_broadcast(&self, id: &str) -> Result<Option<Broadcast>, StoreError> {
        let row: Option<BroadcastRow> = sqlx::query_as(&format!(
            "SELECT {BROADCAST_COLUMNS} FROM broadcasts WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(row.map(BroadcastRow::into_broadcast))
    }

    pub(super) async fn load_events_after(
        &self,
        after: u64,
        limit: u32,
    ) -> Result<Vec<Event>, StoreError> {
        if limit == 0 || limit > MAX_LIST_LIMIT {
            return Err(StoreError::invalid(
                "limit",
                format!("must be between 1 and {MAX_LIST_LIMIT}"),
            ));
        }
        let Ok(after) = i64::try_from(after) else {
            return Ok(Vec::new()); // beyond any stored seq
        };
        let rows: Vec<EventRow> = sqlx::query_as(&format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE seq > $1 ORDER BY seq LIMIT $2"
        ))
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.into_iter().map(EventRow::into_event).collect()
    }

    /// The `seq` of the newest event of the log, `0` when it is empty: where a reader that
    /// wants only what is written from now on starts (the SSE stream of the API).
    pub async fn last_event_seq(&self) -> Result<u64, StoreError> {
        let (seq,): (i64,) = sqlx::query_as("SELECT COALESCE(MAX(seq), 0) FROM events")
            .fetch_one(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(u64::try_from(seq).unwrap_or(0))
    }

    pub(super) async fn load_live_stream_events(
        &self,
        live_stream_id: &str,
    ) -> Result<Vec<Event>, StoreError> {
        let rows: Vec<EventRow> = sqlx::query_as(&format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE live_stream_id = $1 ORDER BY stream_seq"
        ))
        .bind(live_stream_id)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.into_iter().map(EventRow::into_event).collect()
    }
}

fn stored_u64(column: &str, value: i64) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| corrupt(column, &value.to_string()))
}

/// The lifecycle columns of `live_streams` (`broadcast_id` selected as
/// `current_broadcast_id`, so it cannot be confused with a broadcast's own `id`).
#[derive(FromRow)]
struct LifecycleRow {
    lifecycle_state: String,
    current_broadcast_id: Option<String>,
    lifecycle_since_ms: i64,
}

impl LifecycleRow {
    fn into_record(self) -> Result<LifecycleRecord, StoreError> {
        Ok(LifecycleRecord {
            state: stored_enum(
                "lifecycle_state",
                &self.lifecycle_state,
                LifecycleState::parse,
            )?,
            broadcast_id: self.current_broadcast_id,
            state_since_ms: self.lifecycle_since_ms,
        })
    }
}

#[derive(FromRow)]
struct UnfinishedRow {
    #[sqlx(flatten)]
    stream: LiveStreamRow,
    #[sqlx(flatten)]
    lifecycle: LifecycleRow,
}

#[derive(FromRow)]
struct BroadcastRow {
    id: String,
    live_stream_id: String,
    started_at_ms: i64,
    ended_at_ms: Option<i64>,
    recording_dir: String,
}

impl BroadcastRow {
    fn into_broadcast(self) -> Broadcast {
        Broadcast {
            id: self.id,
            live_stream_id: self.live_stream_id,
            started_at_ms: self.started_at_ms,
            ended_at_ms: self.ended_at_ms,
            recording_dir: self.recording_dir,
        }
    }
}

#[derive(FromRow)]
struct EventRow {
    seq: i64,
    id: String,
    live_stream_id: String,
    stream_seq: i64,
    event_type: String,
    broadcast_id: Option<String>,
    created_at_ms: i64,
    object: String,
    lifecycle_state: Option<String>,
}

impl EventRow {
    fn into_event(self) -> Result<Event, StoreError> {
        Ok(Event {
            seq: stored_u64("events.seq", self.seq)?,
            stream_seq: stored_u64("events.stream_seq", self.stream_seq)?,
            object: super::from_json("events.object", &self.object)?,
            id: self.id,
            live_stream_id: self.live_stream_id,
            event_type: self.event_type,
            broadcast_id: self.broadcast_id,
            created_at_ms: self.created_at_ms,
            state: self
                .lifecycle_state
                .as_deref()
                .map(|s| stored_enum("events.lifecycle_state", s, LifecycleState::parse))
                .transpose()?,
        })
    }
}
