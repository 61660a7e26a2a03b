//! Assets in SQLite: created and completed inside the lifecycle's transactions, read and
//! edited by the API.

use std::collections::HashMap;
use std::fmt::Write as _;

use sqlx::sqlite::SqliteConnection;
use sqlx::FromRow;

use super::lifecycle::{append_event_object, next_stream_seq, EventRecord};
use super::{
    from_json, now_unix, now_unix_ms, stored_enum, stored_playback_id, to_json, SqliteStore,
};
use crate::asset::{
    Asset, AssetMedia, AssetMeta, AssetPage, AssetParts, AssetPatch, AssetPlayback, AssetQuery,
    AssetSettings, AssetStatus, PlaybackOwner, MAX_ASSET_LIST_LIMIT, MAX_RECENT_ASSET_IDS,
};
use crate::error::db_err;
use crate::ids;
use crate::lifecycle::{event_type, Event, LifecycleState};
use crate::live_stream::{PlaybackId, PlaybackPolicy};
use crate::StoreError;

const ASSET_SELECT: &str = "SELECT a.seq, a.id, a.live_stream_id, a.created_at_ms, a.status, \
     a.passthrough, a.meta, a.test, a.media, a.video_track_id, a.audio_track_id, \
     b.ended_at_ms, b.recording_dir FROM assets a JOIN broadcasts b ON b.id = a.id";

#[derive(FromRow)]
struct AssetRow {
    seq: i64,
    id: String,
    live_stream_id: String,
    created_at_ms: i64,
    status: String,
    passthrough: Option<String>,
    meta: Option<String>,
    test: bool,
    media: String,
    video_track_id: String,
    audio_track_id: String,
    ended_at_ms: Option<i64>,
    recording_dir: String,
}

impl AssetRow {
    fn media(&self) -> Result<AssetMedia, StoreError> {
        from_json("assets.media", &self.media)
    }

    fn into_asset(self, playback_ids: Vec<PlaybackId>) -> Result<Asset, StoreError> {
        let media = self.media()?;
        Ok(Asset::build(AssetParts {
            status: stored_enum("assets.status", &self.status, AssetStatus::parse)?,
            meta: self
                .meta
                .as_deref()
                .map(|m| from_json::<AssetMeta>("assets.meta", m))
                .transpose()?,
            id: self.id,
            created_at_ms: self.created_at_ms,
            playback_ids,
            passthrough: self.passthrough,
            test: self.test,
            media,
            live_stream_id: self.live_stream_id,
            is_live: self.ended_at_ms.is_none(),
            video_track_id: self.video_track_id,
            audio_track_id: self.audio_track_id,
        }))
    }
}

#[derive(FromRow)]
struct AssetPlaybackIdRow {
    id: String,
    asset_id: String,
    policy: String,
}

impl AssetPlaybackIdRow {
    fn into_playback_id(self) -> Result<PlaybackId, StoreError> {
        stored_playback_id(self.id, &self.policy)
    }
}

/// The asset playback ID `playback_id`, whichever asset it belongs to.
async fn find_playback_id(
    conn: &mut SqliteConnection,
    playback_id: &str,
) -> Result<Option<AssetPlaybackIdRow>, StoreError> {
    sqlx::query_as("SELECT id, asset_id, policy FROM asset_playback_ids WHERE id = $1")
        .bind(playback_id)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db_err)
}

/// Marks asset `id` as changed now: the first statement of the API's asset transactions, a
/// write, so the transaction holds the write lock from its start. `false` if there is no
/// such asset.
async fn touch(conn: &mut SqliteConnection, id: &str, now_ms: i64) -> Result<bool, StoreError> {
    let done = sqlx::query("UPDATE assets SET updated_at_ms = $2 WHERE id = $1")
        .bind(id)
        .bind(now_ms)
        .execute(&mut *conn)
        .await
        .map_err(db_err)?;
    Ok(done.rows_affected() > 0)
}

/// Playback IDs of the given assets, grouped by asset, oldest first.
async fn playback_ids_of(
    conn: &mut SqliteConnection,
    asset_ids: &[&str],
) -> Result<HashMap<String, Vec<PlaybackId>>, StoreError> {
    let mut grouped: HashMap<String, Vec<PlaybackId>> = HashMap::new();
    if asset_ids.is_empty() {
        return Ok(grouped);
    }
    let mut sql =
        String::from("SELECT id, asset_id, policy FROM asset_playback_ids WHERE asset_id IN (");
    for i in 1..=asset_ids.len() {
        if i > 1 {
            sql.push_str(", ");
        }
        let _ = write!(sql, "${i}");
    }
    sql.push_str(") ORDER BY seq");
    let mut query = sqlx::query_as::<_, AssetPlaybackIdRow>(&sql);
    for id in asset_ids {
        query = query.bind(*id);
    }
    for row in query.fetch_all(&mut *conn).await.map_err(db_err)? {
        grouped
            .entry(row.asset_id.clone())
            .or_default()
            .push(row.into_playback_id()?);
    }
    Ok(grouped)
}

async fn load_row(conn: &mut SqliteConnection, id: &str) -> Result<Option<AssetRow>, StoreError> {
    sqlx::query_as(&format!("{ASSET_SELECT} WHERE a.id = $1"))
        .bind(id)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db_err)
}

async fn rows_into_assets(
    conn: &mut SqliteConnection,
    rows: Vec<AssetRow>,
) -> Result<Vec<Asset>, StoreError> {
    let ids: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
    let mut playback_ids = playback_ids_of(conn, &ids).await?;
    rows.into_iter()
        .map(|row| {
            let ids = playback_ids.remove(&row.id).unwrap_or_default();
            row.into_asset(ids)
        })
        .collect()
}

/// The asset `id` as the API shows it.
pub(super) async fn load_in(
    conn: &mut SqliteConnection,
    id: &str,
) -> Result<Option<Asset>, StoreError> {
    let Some(row) = load_row(conn, id).await? else {
        return Ok(None);
    };
    Ok(rows_into_assets(conn, vec![row]).await?.pop())
}

/// Whether broadcast `id` has become an asset.
pub(super) async fn exists_in(conn: &mut SqliteConnection, id: &str) -> Result<bool, StoreError> {
    let found: Option<(i64,)> = sqlx::query_as("SELECT seq FROM assets WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db_err)?;
    Ok(found.is_some())
}

/// Creates the asset of broadcast `id` of live stream `live_stream_id` (from its
/// `new_asset_settings`), makes it the stream's `active_asset_id` and appends it to
/// `recent_asset_ids`.
pub(super) async fn create_in(
    conn: &mut SqliteConnection,
    id: &str,
    live_stream_id: &str,
    at_ms: i64,
) -> Result<(), StoreError> {
    let (settings, test, recent): (Option<String>, bool, String) = sqlx::query_as(
        "SELECT new_asset_settings, test, recent_asset_ids FROM live_streams WHERE id = $1",
    )
    .bind(live_stream_id)
    .fetch_one(&mut *conn)
    .await
    .map_err(db_err)?;
    // Validated when it was set; a value stored by an older version that no longer parses
    // gives an asset with the defaults rather than no asset.
    let settings = settings
        .as_deref()
        .and_then(|s| serde_json::from_str(s).ok())
        .and_then(|v| AssetSettings::parse(&v).ok())
        .unwrap_or_default();
    sqlx::query(
        "INSERT INTO assets (id, live_stream_id, created_at_ms, status, passthrough, meta, test, \
         video_track_id, audio_track_id, updated_at_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $3)",
    )
    .bind(id)
    .bind(live_stream_id)
    .bind(at_ms)
    .bind(AssetStatus::Preparing.as_str())
    .bind(&settings.passthrough)
    .bind(settings.meta.as_ref().map(to_json).transpose()?)
    .bind(test)
    .bind(ids::track_id())
    .bind(ids::track_id())
    .execute(&mut *conn)
    .await
    .map_err(db_err)?;
    for policy in &settings.playback_policies {
        insert_playback_id(conn, id, *policy).await?;
    }
    let mut recent: Vec<String> = from_json("recent_asset_ids", &recent)?;
    recent.push(id.to_owned());
    let excess = recent.len().saturating_sub(MAX_RECENT_ASSET_IDS);
    recent.drain(..excess);
    sqlx::query(
        "UPDATE live_streams SET active_asset_id = $2, recent_asset_ids = $3 WHERE id = $1",
    )
    .bind(live_stream_id)
    .bind(id)
    .bind(to_json(&recent)?)
    .execute(&mut *conn)
    .await
    .map_err(db_err)?;
    Ok(())
}

async fn insert_playback_id(
    conn: &mut SqliteConnection,
    asset_id: &str,
    policy: PlaybackPolicy,
) -> Result<PlaybackId, StoreError> {
    let playback_id = PlaybackId {
        id: ids::playback_id(),
        policy,
    };
    sqlx::query(
        "INSERT INTO asset_playback_ids (id, asset_id, policy, created_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(&playback_id.id)
    .bind(asset_id)
    .bind(policy.as_str())
    .bind(now_unix())
    .execute(&mut *conn)
    .await
    .map_err(db_err)?;
    Ok(playback_id)
}

/// Records what the session measured about asset `id`.
pub(super) async fn set_media_in(
    conn: &mut SqliteConnection,
    id: &str,
    media: &AssetMedia,
    at_ms: i64,
) -> Result<bool, StoreError> {
    let done = sqlx::query("UPDATE assets SET media = $2, updated_at_ms = $3 WHERE id = $1")
        .bind(id)
        .bind(to_json(media)?)
        .bind(at_ms)
        .execute(&mut *conn)
        .await
        .map_err(db_err)?;
    Ok(done.rows_affected() > 0)
}

/// The broadcast of asset `id` of `live_stream_id` ended: the asset is ready and no longer the
/// stream's active asset.
pub(super) async fn complete_in(
    conn: &mut SqliteConnection,
    live_stream_id: &str,
    id: &str,
    at_ms: i64,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE assets SET status = $2, updated_at_ms = $3 WHERE id = $1 AND status = $4")
        .bind(id)
        .bind(AssetStatus::Ready.as_str())
        .bind(at_ms)
        .bind(AssetStatus::Preparing.as_str())
        .execute(&mut *conn)
        .await
        .map_err(db_err)?;
    sqlx::query(
        "UPDATE live_streams SET active_asset_id = NULL WHERE id = $1 AND active_asset_id = $2",
    )
    .bind(live_stream_id)
    .bind(id)
    .execute(&mut *conn)
    .await
    .map_err(db_err)?;
    Ok(())
}

/// Appends a `video.asset.*` event showing asset `id` as it now is. `stream_seq` is the
/// number already claimed for it, or `None` to claim the next one.
pub(super) async fn append_event_in(
    conn: &mut SqliteConnection,
    id: &str,
    kind: &str,
    state: LifecycleState,
    stream_seq: Option<i64>,
    at_ms: i64,
) -> Result<Event, StoreError> {
    let asset = load_in(conn, id)
        .await?
        .ok_or_else(|| StoreError::Database(format!("asset {id} vanished")))?;
    append_asset_event(conn, &asset, kind, state, stream_seq, at_ms).await
}

async fn append_asset_event(
    conn: &mut SqliteConnection,
    asset: &Asset,
    kind: &str,
    state: LifecycleState,
    stream_seq: Option<i64>,
    at_ms: i64,
) -> Result<Event, StoreError> {
    let stream_seq = match stream_seq {
        Some(seq) => seq,
        None => next_stream_seq(conn, &asset.live_stream_id).await?,
    };
    let object = serde_json::to_value(asset)
        .map_err(|e| StoreError::Database(format!("encoding the event object: {e}")))?;
    append_event_object(
        conn,
        EventRecord {
            live_stream_id: &asset.live_stream_id,
            object,
            state,
            stream_seq,
            event_type: kind,
            broadcast_id: Some(&asset.id),
            at_ms,
        },
    )
    .await
}

/// The lifecycle state of `live_stream_id` for an event that is not a transition (idle if the
/// stream is gone).
async fn current_state(
    conn: &mut SqliteConnection,
    live_stream_id: &str,
) -> Result<LifecycleState, StoreError> {
    let state: Option<(String,)> =
        sqlx::query_as("SELECT lifecycle_state FROM live_streams WHERE id = $1")
            .bind(live_stream_id)
            .fetch_optional(&mut *conn)
            .await
            .map_err(db_err)?;
    match state {
        Some((s,)) => stored_enum("lifecycle_state", &s, LifecycleState::parse),
        None => Ok(LifecycleState::Idle),
    }
}

fn check_limit(limit: u32) -> Result<(), StoreError> {
    if limit == 0 || limit > MAX_ASSET_LIST_LIMIT {
        return Err(StoreError::invalid(
            "limit",
            format!("must be between 1 and {MAX_ASSET_LIST_LIMIT}"),
        ));
    }
    Ok(())
}

impl SqliteStore {
    pub(super) async fn load_asset(&self, id: &str) -> Result<Option<Asset>, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(db_err)?;
        load_in(&mut conn, id).await
    }

    pub(super) async fn load_assets(&self, query: AssetQuery) -> Result<AssetPage, StoreError> {
        check_limit(query.limit)?;
        if query.page == 0 && query.cursor.is_none() {
            return Err(StoreError::invalid("page", "must be at least 1"));
        }
        // The cursor is the `seq` of the last asset of the previous page (newest first).
        let before =
            match query.cursor.as_deref().filter(|c| !c.is_empty()) {
                Some(c) => Some(c.parse::<i64>().ok().filter(|n| *n > 0).ok_or_else(|| {
                    StoreError::invalid("cursor", "is not a cursor of this list")
                })?),
                None => None,
            };
        let offset = if before.is_some() {
            0
        } else {
            (i64::from(query.page) - 1) * i64::from(query.limit)
        };
        // Placeholders are numbered in the order they appear.
        let (filter, limit_at) = if query.live_stream_id.is_some() {
            (" AND a.live_stream_id = $2", 3)
        } else {
            ("", 2)
        };
        let sql = format!(
            "{ASSET_SELECT} WHERE a.seq < $1{filter} ORDER BY a.seq DESC LIMIT ${limit_at} \
             OFFSET ${}",
            limit_at + 1
        );
        let mut q = sqlx::query_as::<_, AssetRow>(&sql).bind(before.unwrap_or(i64::MAX));
        if let Some(ls) = &query.live_stream_id {
            q = q.bind(ls);
        }
        let q = q.bind(i64::from(query.limit) + 1).bind(offset);
        let mut conn = self.pool.acquire().await.map_err(db_err)?;
        let mut rows = q.fetch_all(&mut *conn).await.map_err(db_err)?;
        let more = rows.len() > query.limit as usize;
        rows.truncate(query.limit as usize);
        let next_cursor = more
            .then(|| rows.last().map(|r| r.seq.to_string()))
            .flatten();
        let assets = rows_into_assets(&mut conn, rows).await?;
        Ok(AssetPage {
            assets,
            next_cursor,
        })
    }

    pub(super) async fn patch_asset(
        &self,
        id: &str,
        patch: AssetPatch,
    ) -> Result<Option<Asset>, StoreError> {
        patch.validate()?;
        let now_ms = now_unix_ms();
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        // The first statement writes: the transaction holds the write lock from here.
        if !touch(&mut tx, id, now_ms).await? {
            return Ok(None);
        }
        if patch.is_empty() {
            let asset = load_in(&mut tx, id).await?;
            tx.commit().await.map_err(db_err)?;
            return Ok(asset);
        }
        if let Some(passthrough) = &patch.passthrough {
            sqlx::query("UPDATE assets SET passthrough = $2 WHERE id = $1")
                .bind(id)
                .bind(passthrough)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
        }
        if let Some(meta) = &patch.meta {
            sqlx::query("UPDATE assets SET meta = $2 WHERE id = $1")
                .bind(id)
                .bind(meta.as_ref().map(to_json).transpose()?)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
        }
        let asset = load_in(&mut tx, id)
            .await?
            .ok_or_else(|| StoreError::Database(format!("asset {id} vanished")))?;
        let state = current_state(&mut tx, &asset.live_stream_id).await?;
        append_asset_event(
            &mut tx,
            &asset,
            event_type::ASSET_UPDATED,
            state,
            None,
            now_ms,
        )
        .await?;
        tx.commit().await.map_err(db_err)?;
        self.events_changed();
        Ok(Some(asset))
    }

    pub(super) async fn remove_asset(
        &self,
        id: &str,
    ) -> Result<Option<(Asset, String)>, StoreError> {
        let now_ms = now_unix_ms();
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        if !touch(&mut tx, id, now_ms).await? {
            return Ok(None);
        }
        let row = load_row(&mut tx, id)
            .await?
            .ok_or_else(|| StoreError::Database(format!("asset {id} vanished")))?;
        if row.ended_at_ms.is_none() {
            return Err(StoreError::Conflict(format!(
                "asset {id} is still being recorded: complete its live stream first"
            )));
        }
        let recording_dir = row.recording_dir.clone();
        let asset = rows_into_assets(&mut tx, vec![row])
            .await?
            .pop()
            .ok_or_else(|| StoreError::Database(format!("asset {id} vanished")))?;
        let state = current_state(&mut tx, &asset.live_stream_id).await?;
        append_asset_event(
            &mut tx,
            &asset,
            event_type::ASSET_DELETED,
            state,
            None,
            now_ms,
        )
        .await?;
        // Its playback IDs go with it (ON DELETE CASCADE).
        sqlx::query("DELETE FROM assets WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        self.events_changed();
        Ok(Some((asset, recording_dir)))
    }

    pub(super) async fn record_asset_media(
        &self,
        id: &str,
        media: &AssetMedia,
    ) -> Result<bool, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(db_err)?;
        set_media_in(&mut conn, id, media, now_unix_ms()).await
    }

    pub(super) async fn load_asset_media(
        &self,
        id: &str,
    ) -> Result<Option<AssetMedia>, StoreError> {
        let media: Option<(String,)> = sqlx::query_as("SELECT media FROM assets WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?;
        media.map(|(m,)| from_json("assets.media", &m)).transpose()
    }

    pub(super) async fn add_asset_playback(
        &self,
        asset_id: &str,
        policy: PlaybackPolicy,
    ) -> Result<PlaybackId, StoreError> {
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        if !touch(&mut tx, asset_id, now_unix_ms()).await? {
            return Err(StoreError::not_found("asset", asset_id));
        }
        let playback_id = insert_playback_id(&mut tx, asset_id, policy).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(playback_id)
    }

    pub(super) async fn load_asset_playback_id(
        &self,
        asset_id: &str,
        playback_id: &str,
    ) -> Result<Option<PlaybackId>, StoreError> {
        let row: Option<AssetPlaybackIdRow> = sqlx::query_as(
            "SELECT id, asset_id, policy FROM asset_playback_ids WHERE id = $1 AND asset_id = $2",
        )
        .bind(playback_id)
        .bind(asset_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        row.map(AssetPlaybackIdRow::into_playback_id).transpose()
    }

    pub(super) async fn remove_asset_playback_id(
        &self,
        asset_id: &str,
        playback_id: &str,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM asset_playback_ids WHERE id = $1 AND asset_id = $2")
            .bind(playback_id)
            .bind(asset_id)
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(done.rows_affected() > 0)
    }

    pub(super) async fn load_playback_owner(
        &self,
        playback_id: &str,
    ) -> Result<Option<PlaybackOwner>, StoreError> {
        let live: Option<(String, String, String)> =
            sqlx::query_as("SELECT id, live_stream_id, policy FROM playback_ids WHERE id = $1")
                .bind(playback_id)
                .fetch_optional(&self.pool)
                .await
                .map_err(db_err)?;
        if let Some((id, owner, policy)) = live {
            return Ok(Some(PlaybackOwner::LiveStream {
                id: owner,
                playback_id: stored_playback_id(id, &policy)?,
            }));
        }
        let mut conn = self.pool.acquire().await.map_err(db_err)?;
        let asset = find_playback_id(&mut conn, playback_id).await?;
        asset
            .map(|row| {
                let id = row.asset_id.clone();
                Ok(PlaybackOwner::Asset {
                    id,
                    playback_id: row.into_playback_id()?,
                })
            })
            .transpose()
    }

    pub(super) async fn load_asset_playback(
        &self,
        playback_id: &str,
    ) -> Result<Option<AssetPlayback>, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(db_err)?;
        let pid = find_playback_id(&mut conn, playback_id).await?;
        let Some(pid) = pid else {
            return Ok(None);
        };
        let Some(row) = load_row(&mut conn, &pid.asset_id).await? else {
            return Ok(None);
        };
        let media = row.media()?;
        let recording_dir = row.recording_dir.clone();
        let Some(asset) = rows_into_assets(&mut conn, vec![row]).await?.pop() else {
            return Ok(None);
        };
        Ok(Some(AssetPlayback {
            asset,
            playback_id: pid.into_playback_id()?,
            recording_dir,
            media,
        }))
    }
}
