//! Errors: what a request can fail with, and how each failure is answered.
//!
//! Every error response has the hosted API's shape,
//! `{"error": {"type": "not_found", "messages": ["..."]}}`, with a JSON content type.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use store::StoreError;
use utoipa::ToSchema;

/// The `WWW-Authenticate` challenge sent with every `401`.
pub const WWW_AUTHENTICATE_VALUE: &str = "Basic realm=\"OnAir\"";

/// A failed request. Each variant is one status code and one error `type`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// `400 invalid_parameters`: malformed JSON, a wrong content type, an unknown enum value
    /// or an out-of-range number. The message names the field.
    #[error("{0}")]
    InvalidParameters(String),
    /// `401 unauthorized`: no credentials, a malformed `Authorization` header, an unknown or
    /// revoked access token, or a wrong secret. Answered with `WWW-Authenticate: Basic`.
    #[error("unauthorized request: use HTTP basic auth with an access token ID and secret")]
    Unauthorized,
    /// `403 forbidden`: the access token lacks the read or write permission the request needs.
    #[error("this access token does not have {0} permission")]
    Forbidden(&'static str),
    /// `404 not_found`: no such resource (or route).
    #[error("{0}")]
    NotFound(String),
    /// `405 method_not_allowed`: the route exists but not with this method.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// `408 request_timeout`: the request (body included) took too long.
    #[error("the request took too long")]
    RequestTimeout,
    /// `503 service_unavailable`: too many webhook event streams are open
    /// ([`crate::MAX_EVENT_STREAMS`]).
    #[error("too many event streams are open; try again later")]
    TooManyStreams,
    /// `409 conflict`: the request contradicts the stored state.
    #[error("{0}")]
    Conflict(String),
    /// `413 payload_too_large`: the body is larger than the configured limit.
    #[error("the request body is larger than {limit} bytes")]
    PayloadTooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// `429 too_many_requests`: the access token's rate limit is exhausted; answered with
    /// `Retry-After`.
    #[error("too many requests: retry in {retry_after_secs} s")]
    TooManyRequests {
        /// Whole seconds until a request will be accepted again.
        retry_after_secs: u64,
    },
    /// `500 internal_error`: the store failed. Details go to the log, not to the client.
    #[error("internal error")]
    Internal,
}

impl ApiError {
    /// `404` for a live stream.
    pub(crate) fn live_stream_not_found() -> Self {
        ApiError::NotFound("live stream not found".to_owned())
    }

    /// The status code this error is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::InvalidParameters(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::TooManyStreams => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The `type` of the error body.
    pub fn error_type(&self) -> &'static str {
        match self {
            ApiError::InvalidParameters(_) => "invalid_parameters",
            ApiError::Unauthorized => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::RequestTimeout => "request_timeout",
            ApiError::TooManyStreams => "service_unavailable",
            ApiError::Conflict(_) => "conflict",
            ApiError::PayloadTooLarge { .. } => "payload_too_large",
            ApiError::TooManyRequests { .. } => "too_many_requests",
            ApiError::Internal => "internal_error",
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::InvalidField { .. } => ApiError::InvalidParameters(e.to_string()),
            StoreError::NotFound { resource, .. } => {
                ApiError::NotFound(format!("{resource} not found"))
            }
            StoreError::Conflict(message) => ApiError::Conflict(message),
            other => {
                tracing::error!(error = %other, "store failed");
                ApiError::Internal
            }
        }
    }
}

/// Every error answer: `{"error": {"type", "messages"}}`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ErrorBody {
    error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ErrorDetail {
    /// One per status: `invalid_parameters`, `unauthorized`, `forbidden`, `not_found`,
    /// `method_not_allowed`, `request_timeout`, `conflict`, `payload_too_large`,
    /// `too_many_requests`, `service_unavailable`, `internal_error`.
    #[serde(rename = "type")]
    #[schema(value_type = String)]
    kind: &'static str,
    /// What to fix, in words (one message).
    messages: Vec<String>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                kind: self.error_type(),
                messages: vec![self.to_string()],
            },
        };
        let mut response = (self.status(), Json(body)).into_response();
        let headers = response.headers_mut();
        match &self {
            ApiError::Unauthorized => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(WWW_AUTHENTICATE_VALUE),
                );
            }
            ApiError::TooManyRequests { retry_after_secs } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
            }
            _ => {}
        }
        response
    }
}

/// A bad [`crate::ApiConfig`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// `max_body_bytes` is zero.
    #[error("the API's maximum body size must be at least 1 byte")]
    MaxBodyBytes,
    /// `request_timeout` is zero.
    #[error("the API's request timeout must be longer than zero")]
    RequestTimeout,
    /// A rate limit is not a positive rate with a burst of at least 1.
    #[error("invalid API rate limit for {class}: {reason}")]
    RateLimit {
        /// `POST` or `other methods`.
        class: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// `max_rate_limit_buckets` is zero.
    #[error("the API must keep at least one rate-limit bucket")]
    MaxRateLimitBuckets,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unauthorized_carries_the_challenge() {
        let response = ApiError::Unauthorized.into_response();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            response.headers().get(header::WWW_AUTHENTICATE),
            Some(&HeaderValue::from_static("Basic realm=\"OnAir\""))
        );
    }

    #[test]
    fn store_errors_map_to_statuses() {
        let invalid: ApiError = StoreError::invalid("reconnect_window", "too big").into();
        assert_eq!(invalid.status(), StatusCode::BAD_REQUEST);
        assert!(invalid.to_string().contains("reconnect_window"));
        let missing: ApiError = StoreError::not_found("live stream", "x").into();
        assert_eq!(missing.status(), StatusCode::NOT_FOUND);
        let db: ApiError = StoreError::Database("disk on fire".into()).into();
        assert_eq!(db, ApiError::Internal);
        assert!(!db.to_string().contains("disk"));
    }

    #[test]
    fn rate_limited_carries_retry_after() {
        let response = ApiError::TooManyRequests {
            retry_after_secs: 3,
        }
        .into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(
            response.headers().get(header::RETRY_AFTER),
            Some(&HeaderValue::from(3u64))
        );
    }
}
