//! Webhook cursors and failures, in SQLite.

use sqlx::FromRow;

use super::{corrupt, SqliteStore};
use crate::error::db_err;
use crate::webhook::{check_endpoint_key, WebhookFailure};
use crate::StoreError;

fn to_i64(field: &'static str, value: u64) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| StoreError::invalid(field, "out of range"))
}

fn from_i64(column: &str, value: i64) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| corrupt(column, &value.to_string()))
}

impl SqliteStore {
    pub(super) async fn load_webhook_cursor(
        &self,
        endpoint_key: &str,
        now_ms: i64,
    ) -> Result<u64, StoreError> {
        check_endpoint_key(endpoint_key)?;
        // A new endpoint starts at the current end of the log: it gets what happens from now
        // on, not the whole history. Created in the same statement that reads the end, so an
        // event written meanwhile is either before the cursor or delivered. (`WHERE true`:
        // without it SQLite reads `ON CONFLICT` as a join constraint of the `SELECT`.)
        sqlx::query(
            "INSERT INTO webhook_cursors (endpoint_key, delivered_seq, updated_at_ms) \
             SELECT $1, COALESCE(MAX(seq), 0), $2 FROM events WHERE true \
             ON CONFLICT (endpoint_key) DO NOTHING",
        )
        .bind(endpoint_key)
        .bind(now_ms)
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        let seq: i64 =
            sqlx::query_scalar("SELECT delivered_seq FROM webhook_cursors WHERE endpoint_key = $1")
                .bind(endpoint_key)
                .fetch_one(&self.pool)
                .await
                .map_err(db_err)?;
        from_i64("webhook_cursors.delivered_seq", seq)
    }

    pub(super) async fn store_webhook_cursor(
        &self,
        endpoint_key: &str,
        delivered_seq: u64,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        check_endpoint_key(endpoint_key)?;
        let seq = to_i64("delivered_seq", delivered_seq)?;
        upsert_cursor(&self.pool, endpoint_key, seq, now_ms).await
    }

    pub(super) async fn insert_webhook_failure(
        &self,
        f: &WebhookFailure,
    ) -> Result<(), StoreError> {
        check_endpoint_key(&f.endpoint_key)?;
        let seq = to_i64("event_seq", f.event_seq)?;
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        sqlx::query(
            "INSERT INTO webhook_failures (endpoint_key, event_seq, event_id, attempts, reason, \
             failed_at_ms) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&f.endpoint_key)
        .bind(seq)
        .bind(&f.event_id)
        .bind(to_i64("attempts", f.attempts)?)
        .bind(&f.reason)
        .bind(f.failed_at_ms)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        upsert_cursor(&mut *tx, &f.endpoint_key, seq, f.failed_at_ms).await?;
        tx.commit().await.map_err(db_err)
    }

    pub(super) async fn load_webhook_failures(
        &self,
        endpoint_key: &str,
    ) -> Result<Vec<WebhookFailure>, StoreError> {
        let rows: Vec<FailureRow> = sqlx::query_as(
            "SELECT endpoint_key, event_seq, event_id, attempts, reason, failed_at_ms \
             FROM webhook_failures WHERE endpoint_key = $1 ORDER BY seq",
        )
        .bind(endpoint_key)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.into_iter()
            .map(|r| {
                Ok(WebhookFailure {
                    event_seq: from_i64("webhook_failures.event_seq", r.event_seq)?,
                    attempts: from_i64("webhook_failures.attempts", r.attempts)?,
                    endpoint_key: r.endpoint_key,
                    event_id: r.event_id,
                    reason: r.reason,
                    failed_at_ms: r.failed_at_ms,
                })
            })
            .collect()
    }
}

/// Moves a cursor forward (never back: a late writer cannot undo a newer delivery).
async fn upsert_cursor<'c, E>(
    conn: E,
    endpoint_key: &str,
    seq: i64,
    now_ms: i64,
) -> Result<(), StoreError>
where
    E: sqlx::Executor<'c, Database = sqlx::Sqlite>,
{
    sqlx::query(
        "INSERT INTO webhook_cursors (endpoint_key, delivered_seq, updated_at_ms) \
         VALUES ($1, $2, $3) ON CONFLICT (endpoint_key) DO UPDATE SET \
         delivered_seq = CASE WHEN excluded.delivered_seq > webhook_cursors.delivered_seq \
         THEN excluded.delivered_seq ELSE webhook_cursors.delivered_seq END, \
         updated_at_ms = excluded.updated_at_ms",
    )
    .bind(endpoint_key)
    .bind(seq)
    .bind(now_ms)
    .execute(conn)
    .await
    .map_err(db_err)?;
    Ok(())
}

#[derive(FromRow)]
struct FailureRow {
    endpoint_key: String,
    event_seq: i64,
    event_id: String,
    attempts: i64,
    reason: String,
    failed_at_ms: i64,
}
