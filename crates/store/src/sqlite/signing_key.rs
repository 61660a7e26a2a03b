//! Signing keys, in SQLite.

use sqlx::FromRow;

use super::SqliteStore;
use crate::error::db_err;
use crate::ids;
use crate::signing_key::{
    check_public_key, SigningKey, SigningKeyRecord, MAX_SIGNING_KEY_LIST_LIMIT,
};
use crate::StoreError;

#[derive(FromRow)]
struct Row {
    id: String,
    created_at: i64,
}

impl From<Row> for SigningKey {
    fn from(r: Row) -> Self {
        SigningKey {
            id: r.id,
            created_at: r.created_at,
        }
    }
}

#[derive(FromRow)]
struct RecordRow {
    id: String,
    created_at: i64,
    public_key: Vec<u8>,
}

impl SqliteStore {
    pub(super) async fn insert_signing_key(
        &self,
        public_key_der: &[u8],
        now: i64,
    ) -> Result<SigningKey, StoreError> {
        check_public_key(public_key_der)?;
        let key = SigningKey {
            id: ids::signing_key_id(),
            created_at: now,
        };
        sqlx::query("INSERT INTO signing_keys (id, public_key, created_at) VALUES ($1, $2, $3)")
            .bind(&key.id)
            .bind(public_key_der)
            .bind(key.created_at)
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(key)
    }

    pub(super) async fn load_signing_key(
        &self,
        id: &str,
    ) -> Result<Option<SigningKey>, StoreError> {
        let row: Option<Row> =
            sqlx::query_as("SELECT id, created_at FROM signing_keys WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await
                .map_err(db_err)?;
        Ok(row.map(SigningKey::from))
    }

    pub(super) async fn load_signing_keys(
        &self,
        page: u32,
        limit: u32,
    ) -> Result<Vec<SigningKey>, StoreError> {
        if page == 0 {
            return Err(StoreError::invalid("page", "pages start at 1"));
        }
        if limit == 0 || limit > MAX_SIGNING_KEY_LIST_LIMIT {
            return Err(StoreError::invalid(
                "limit",
                format!("must be between 1 and {MAX_SIGNING_KEY_LIST_LIMIT}"),
            ));
        }
        let offset = i64::from(page - 1) * i64::from(limit);
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT id, created_at FROM signing_keys ORDER BY seq DESC LIMIT $1 OFFSET $2",
        )
        .bind(i64::from(limit))
        .bind(offset)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(rows.into_iter().map(SigningKey::from).collect())
    }

    pub(super) async fn load_signing_key_records(
        &self,
    ) -> Result<Vec<SigningKeyRecord>, StoreError> {
        let rows: Vec<RecordRow> =
            sqlx::query_as("SELECT id, created_at, public_key FROM signing_keys ORDER BY seq")
                .fetch_all(&self.pool)
                .await
                .map_err(db_err)?;
        Ok(rows
            .into_iter()
            .map(|r| SigningKeyRecord {
                key: SigningKey {
                    id: r.id,
                    created_at: r.created_at,
                },
                public_key_der: r.public_key,
            })
            .collect())
    }

    pub(super) async fn remove_signing_key(&self, id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM signing_keys WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(done.rows_affected() > 0)
    }
}
