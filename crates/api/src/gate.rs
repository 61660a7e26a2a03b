//! The gate every API request passes before its handler: a tracing span, the request
//! timeout, basic auth against the store's access tokens, the read/write permission, the
//! per-token rate limit, and the declared body size.

use std::net::SocketAddr;
use std::time::Instant;

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{header, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use store::Store;
use tracing::{field, info_span, Instrument, Span};

use crate::auth::{authorize, credentials};
use crate::error::ApiError;
use crate::rate_limit::{retry_after_secs, RequestClass};
use crate::ApiState;

/// The middleware (installed with `route_layer`, so only matched API routes pass it and the
/// listener's other routers are untouched).
pub(crate) async fn gate(State(api): State<ApiState>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    let span = info_span!(
        "api",
        method = %request.method(),
        route = %route,
        token_id = field::Empty,
    );
    let timeout = api.config().request_timeout;
    async move {
        let response = match tokio::time::timeout(timeout, admit(&api, request, next)).await {
            Ok(Ok(response)) => response,
            Ok(Err(e)) => e.into_response(),
            Err(_) => ApiError::RequestTimeout.into_response(),
        };
        tracing::debug!(status = response.status().as_u16(), "answered");
        response
    }
    .instrument(span)
    .await
}

async fn admit(api: &ApiState, mut request: Request, next: Next) -> Result<Response, ApiError> {
    // The peer's address, when the listener provides it (the binary's does): failed
    // authentication is limited per address (see `auth_failures`).
    let client = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    if let Some(ip) = client {
        api.auth_failures()
            .check(ip, Instant::now())
            .map_err(|wait| ApiError::TooManyRequests {
                retry_after_secs: retry_after_secs(wait),
            })?;
    }
    let failed = |token_id: &str| {
        if let Some(ip) = client {
            api.auth_failures().record(ip, token_id, Instant::now());
        }
        ApiError::Unauthorized
    };
    let credentials = credentials(request.headers()).map_err(|_| failed(""))?;
    let permissions = api
        .store()
        .verify_access_token(&credentials.id, &credentials.secret)
        .await?
        .ok_or_else(|| failed(&credentials.id))?;
    // The token ID is not a secret (the seeds: "safe to log").
    Span::current().record("token_id", credentials.id.as_str());
    authorize(request.method(), permissions)?;
    // For handlers that answer with them (`/system/v1/whoami`).
    request.extensions_mut().insert(permissions);
    let class = if request.method() == Method::POST {
        RequestClass::Post
    } else {
        RequestClass::Other
    };
    api.limiter()
        .check(&credentials.id, class, Instant::now())
        .map_err(|wait| ApiError::TooManyRequests {
            retry_after_secs: retry_after_secs(wait),
        })?;
    // Handlers that read a body enforce the limit while reading (chunked uploads too); this
    // refuses a declared oversized body on every route, before anything is read.
    let limit = api.config().max_body_bytes;
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    Ok(next.run(request).await)
}
