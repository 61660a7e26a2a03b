//! Errors of webhook configuration and start-up. Delivery failures are not errors: they are
//! retried, logged, and finally recorded in the store.

/// What can go wrong before delivery starts.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// The endpoint URL does not parse or is not `http`/`https`.
    #[error("invalid webhook URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given (without credentials it may contain).
        url: String,
        /// Why.
        reason: String,
    },
    /// The endpoint has no secret (every delivery is signed).
    #[error("webhook {url} has no secret: every webhook is signed, give it one")]
    MissingSecret {
        /// The endpoint.
        url: String,
    },
    /// The environment name or ID is empty.
    #[error("webhook environment {field} must not be empty")]
    InvalidEnvironment {
        /// `name` or `id`.
        field: &'static str,
    },
    /// The HTTP client could not be built (TLS set-up).
    #[error("building the webhook HTTP client: {0}")]
    Client(String),
}
