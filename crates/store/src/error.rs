//! The store's error type.

/// Everything a store operation can fail with.
///
/// Lookups whose answer may legitimately be "nothing" (`get_*`, `find_*`, `delete_*`,
/// `reset_stream_key`, ...) return `Ok(None)` / `Ok(false)` rather than [`StoreError::NotFound`];
/// `NotFound` is for operations that need some *other* row to exist, such as adding a playback
/// ID to a live stream. [`OptionExt::or_not_found`] turns the former into the latter when a
/// caller (the REST API) wants a single error path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A row the operation depends on does not exist.
    #[error("{resource} not found: {id}")]
    NotFound {
        /// What kind of row, e.g. `"live stream"`.
        resource: &'static str,
        /// The identifier that was looked up.
        id: String,
    },
    /// A caller-supplied value is out of range or malformed; `field` is the API field name
    /// (e.g. `reconnect_window`) so the REST layer can report it as-is.
    #[error("invalid {field}: {reason}")]
    InvalidField {
        /// The offending field, named as in the API.
        field: &'static str,
        /// Why it was rejected, in words suitable for an API error message.
        reason: String,
    },
    /// The operation contradicts the stored state: a uniqueness constraint (duplicate ID or
    /// stream key) or an impossible status transition (activating a disabled live stream).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The database (or the data directory) failed, or a stored row could not be decoded.
    #[error("database error: {0}")]
    Database(String),
}

impl StoreError {
    /// An [`StoreError::InvalidField`] for `field`.
    pub fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        StoreError::InvalidField {
            field,
            reason: reason.into(),
        }
    }

    /// A [`StoreError::NotFound`] for `resource` `id`.
    pub fn not_found(resource: &'static str, id: impl Into<String>) -> Self {
        StoreError::NotFound {
            resource,
            id: id.into(),
        }
    }
}

/// Converts the `Option` answer of a lookup into [`StoreError::NotFound`].
pub trait OptionExt<T> {
    /// `Some(v)` becomes `Ok(v)`; `None` becomes `NotFound { resource, id }`.
    fn or_not_found(self, resource: &'static str, id: &str) -> Result<T, StoreError>;
}

impl<T> OptionExt<T> for Option<T> {
    fn or_not_found(self, resource: &'static str, id: &str) -> Result<T, StoreError> {
        self.ok_or_else(|| StoreError::not_found(resource, id))
    }
}

/// Maps a sqlx error: unique-constraint violations are conflicts, the rest is a database error.
/// Kept private so that sqlx does not leak into the public API.
pub(crate) fn db_err(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => StoreError::Conflict(d.to_string()),
        _ => StoreError::Database(e.to_string()),
    }
}
