//! # OnAir REST API
//!
//! The `/video/v1` resources of the hosted live-streaming API the gateway stands in for, so
//! that code and official SDKs written against it work with only the base URL and the
//! credentials changed. This crate is the HTTP layer only: it authenticates, checks and
//! limits requests, and turns them into calls on the [`store`] (metadata) and the
//! [`session::SessionManager`] (kicking live encoders); it owns no data except the
//! simulcast targets (see below) and the rate-limit buckets.
//!
//! ```no_run
//! # async fn demo(sessions: session::SessionManager) -> std::io::Result<()> {
//! let state = api::ApiState::new(sessions, api::ApiConfig::default());
//! let app = api::router(state); // merge with the playback router on the same listener
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! // With the peer's address (`ConnectInfo`), failed authentication is limited per address.
//! let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
//! axum::serve(listener, app).await
//! # }
//! ```
//!
//! ## Routes
//!
//! | method and path (under `/video/v1`) | answer |
//! | --- | --- |
//! | `POST /live-streams` | `201`, the live stream |
//! | `GET /live-streams?page=&limit=&status=&stream_key=` | `200`, a page of live streams, newest first |
//! | `GET /live-streams/{id}` | `200`, the live stream |
//! | `PATCH /live-streams/{id}` | `200`, the updated live stream |
//! | `DELETE /live-streams/{id}` | `204`; a running broadcast ends (its encoder is disconnected) |
//! | `POST /live-streams/{id}/reset-stream-key` | `201`, the live stream with its new key; the encoder on the old key is disconnected, the broadcast waits for its reconnect window |
//! | `PUT /live-streams/{id}/complete` | `200 {"data": {}}`; the running broadcast ends now (encoder disconnected, stream idle), answered once that is written |
//! | `PUT /live-streams/{id}/disable` | `200 {"data": {}}`; the running broadcast ends, new encoders are refused |
//! | `PUT /live-streams/{id}/enable` | `200 {"data": {}}` |
//! | `POST /live-streams/{id}/playback-ids` | `201`, `{"id", "policy"}` |
//! | `GET /live-streams/{id}/playback-ids/{playback_id}` | `200`, `{"id", "policy"}` |
//! | `DELETE /live-streams/{id}/playback-ids/{playback_id}` | `204` |
//! | `POST /live-streams/{id}/simulcast-targets` | `201`, `{"id", "url", "stream_key", "passthrough", "status": "idle"}`; `409` past [`MAX_TARGETS_PER_LIVE_STREAM`] |
//! | `GET /live-streams/{id}/simulcast-targets/{target_id}` | `200`, the target |
//! | `DELETE /live-streams/{id}/simulcast-targets/{target_id}` | `204` |
//! | `GET /assets?limit=&page=&cursor=&live_stream_id=` | `200`, `{"data": [assets], "next_cursor"}`, newest first (`limit` 25 by default, at most 100; `next_cursor` is `null` on the last page) |
//! | `GET /assets/{id}` | `200`, the asset |
//! | `PATCH /assets/{id}` | `200`, the asset with its new `passthrough` / `meta` |
//! | `DELETE /assets/{id}` | `204`; its playback IDs and its recording on disk go too; `409` while its broadcast goes on |
//! | `GET /assets/{id}/input-info` | `200`, `[{"settings": {}, "file": {"container_format", "tracks"}}]` |
//! | `POST /assets/{id}/playback-ids` | `201`, `{"id", "policy"}` |
//! | `GET /assets/{id}/playback-ids/{playback_id}` | `200`, `{"id", "policy"}` |
//! | `DELETE /assets/{id}/playback-ids/{playback_id}` | `204` |
//! | `GET /playback-ids/{playback_id}` | `200`, `{"id", "policy", "object": {"type": "live_stream" \| "asset", "id"}}` |
//! | `GET /openapi.json` | `200`, OnAir's OpenAPI 3.1 document ([`openapi_document`]), without credentials |
//!
//! Routes under `/system/v1`, behind the same gate:
//!
//! | method and path | answer |
//! | --- | --- |
//! | `POST /system/v1/signing-keys` | `201`, `{"id", "created_at", "private_key"}`: a new RSA key pair for playback tokens; `private_key` (base64 of a PEM) is returned only here, only the public key is kept |
//! | `GET /system/v1/signing-keys?page=&limit=` | `200`, a page of `{"id", "created_at"}`, newest first (`limit` 25 by default, at most 100) |
//! | `GET /system/v1/signing-keys/{id}` | `200`, `{"id", "created_at"}` |
//! | `DELETE /system/v1/signing-keys/{id}` | `204`; tokens signed with it stop playing at once |
//! | `GET /system/v1/webhook-events/stream` | `200 text/event-stream`: the event log as Server-Sent Events, each the webhook envelope of [`events::envelope`] (`503` beyond [`MAX_EVENT_STREAMS`]) |
//! | `GET /system/v1/whoami` | `200`, the token's environment (the official CLI asks it first) |
//!
//! The stream lives here rather than in `events` because it is an API route: it needs this
//! crate's authentication, rate limit and error format, and `events` stays free of HTTP
//! serving; it reuses `events`' envelope so that both carry the same bytes.
//!
//! Every success is wrapped like the hosted API: `{"data": ...}`; every response (errors
//! included) has `Cache-Control: no-store`, as they carry stream keys. Request bodies are the
//! seeds' fields ([`store::NewLiveStream`], [`store::LiveStreamPatch`]); unknown fields are
//! ignored, as the hosted API accepts fields this gateway does not implement, and the older
//! request forms (`playback_policy`, `reduced_latency`, a top-level `title`) are answered in
//! the current ones. A route under a live stream or an asset answers `404` for a missing one
//! before it reads the body.
//!
//! The OpenAPI document is generated from the handlers' `#[utoipa::path]` annotations and the
//! request and response types (`openapi.rs`): a route added without its annotation is missing
//! from it, which `crates/onair/tests/api_conformance.rs` (schemathesis) and the document's
//! own unit test notice. An asset's
//! `PATCH` ([`store::AssetPatch`]) is the exception: it has only `passthrough` and `meta`, and
//! refuses any other field (`400` naming it) rather than ignore a misplaced one.
//!
//! Simulcast targets (in a create body or through their routes) are validated and kept **in
//! memory** in this crate until the store has operations for them: they are returned in the
//! live stream's `simulcast_targets`, always `idle` (nothing restreams yet), and are lost on
//! restart.
//!
//! ## Authentication
//!
//! HTTP basic auth with an access token: `Authorization: Basic base64(TOKEN_ID:SECRET)`,
//! checked with [`store::Store::verify_access_token`]. `GET` and `HEAD` need the read
//! permission, every other method the write permission. Missing, malformed or wrong
//! credentials get `401` with `WWW-Authenticate: Basic realm="OnAir"`; a valid token without
//! the permission gets `403`. Unknown paths under `/video/v1` also require authentication
//! (then `404`), so they reveal nothing to anonymous callers.
//!
//! ## Errors
//!
//! Every error is `{"error": {"type": "...", "messages": ["..."]}}` ([`ApiError`]): `400
//! invalid_parameters` (malformed JSON, a non-JSON `Content-Type`, a body that is not an
//! object, a value of the wrong type, an unknown enum value or an out-of-range number; the
//! message names the field and what it takes, never a Rust type), `401 unauthorized`, `403 forbidden`, `404 not_found`, `405
//! method_not_allowed`, `408 request_timeout`, `409 conflict`, `413 payload_too_large`, `429
//! too_many_requests` (with `Retry-After`) and `500 internal_error` (details only in the log).
//!
//! ## Limits
//!
//! Bodies are limited to [`ApiConfig::max_body_bytes`] (64 KiB by default), whether declared
//! with `Content-Length` or sent chunked; each request has [`ApiConfig::request_timeout`].
//! Each access token has two token buckets, one for `POST` (sustained 1 request/s, burst 10
//! by default) and one for every other method (5/s, burst 50), like the seeds' rate limits.
//! The limiter lives in memory, per process, behind a sync mutex never held across an
//! `.await`; buckets that have refilled are pruned every minute and their number is capped.
//!
//! ## Mounting
//!
//! [`router`] answers only its own paths: its middleware is installed per route, and it sets
//! no fallback, so the binary can `merge` it with the playback router on one listener.
#![forbid(unsafe_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::{header, HeaderValue};
use axum::routing::{any, get, post, put};
use axum::Router;
use playback::token::SigningKeys;
use session::SessionManager;
use store::SqliteStore;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower_http::set_header::SetResponseHeaderLayer;

mod assets;
mod auth;
mod auth_failures;
mod body;
mod config;
mod error;
mod event_stream;
mod extract;
mod gate;
mod handlers;
mod openapi;
mod rate_limit;
mod signing_keys;
mod simulcast;

pub use config::{
    ApiConfig, RateLimit, DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_RATE_LIMIT_BUCKETS,
    DEFAULT_OTHER_BURST, DEFAULT_OTHER_RATE_PER_SECOND, DEFAULT_POST_BURST,
    DEFAULT_POST_RATE_PER_SECOND, DEFAULT_REQUEST_TIMEOUT,
};
pub use error::{ApiError, ConfigError, WWW_AUTHENTICATE_VALUE};
pub use event_stream::{EVENT_STREAM_PAGE, HEARTBEAT_INTERVAL, MAX_EVENT_STREAMS};
pub use handlers::{DEFAULT_PAGE_LIMIT, MAX_PAGE_LIMIT};
pub use openapi::OPENAPI_PATH;

/// OnAir's OpenAPI 3 document (JSON), as served at [`OPENAPI_PATH`].
pub fn openapi_document() -> &'static str {
    openapi::document()
}
pub use signing_keys::DEFAULT_SIGNING_KEY_PAGE_LIMIT;
pub use simulcast::{MAX_TARGETS_PER_LIVE_STREAM, MAX_TARGET_STREAM_KEY_LEN};

/// The prefix every route of this crate is under.
pub const PATH_PREFIX: &str = "/video/v1";

/// What the handlers share: the store, the session manager, the configuration, the rate
/// limiter and the simulcast targets. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ApiState {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    sessions: SessionManager,
    /// A std `RwLock`: read (and copied out) per request, replaced on a reload, never held
    /// across an `.await`.
    config: std::sync::RwLock<ApiConfig>,
    limiter: rate_limit::RateLimiter,
    auth_failures: auth_failures::AuthFailures,
    simulcast: simulcast::SimulcastTargets,
    events: EventStreams,
    stream_permits: Arc<Semaphore>,
    signing_keys: SigningKeys,
}

/// What the webhook event stream needs beyond the store: see [`ApiState::with_event_streams`].
#[derive(Debug, Clone)]
pub struct EventStreams {
    /// Named in every envelope (the webhooks' environment).
    pub environment: events::Environment,
    /// Cancelled on shutdown: open streams end.
    pub shutdown: CancellationToken,
    /// [`HEARTBEAT_INTERVAL`] (shorter in tests).
    pub heartbeat: Duration,
}

impl Default for EventStreams {
    fn default() -> Self {
        EventStreams {
            environment: events::Environment::default(),
            shutdown: CancellationToken::new(),
            heartbeat: HEARTBEAT_INTERVAL,
        }
    }
}

impl ApiState {
    /// The API over `sessions` and its store. `config` should have passed
    /// [`ApiConfig::validate`]; a zero bucket count is raised to one.
    pub fn new(sessions: SessionManager, config: ApiConfig) -> Self {
        Self::with_event_streams(sessions, config, EventStreams::default())
    }

    /// [`ApiState::new`], with the environment, shutdown token and heartbeat of
    /// `GET /system/v1/webhook-events/stream`.
    pub fn with_event_streams(
        sessions: SessionManager,
        config: ApiConfig,
        events: EventStreams,
    ) -> Self {
        let limit_failed_logins = config.limit_failed_logins;
        let limiter = rate_limit::RateLimiter::new(
            config.post_rate_limit,
            config.other_rate_limit,
            config.max_rate_limit_buckets,
            Instant::now(),
        );
        ApiState {
            inner: Arc::new(Inner {
                sessions,
                config: std::sync::RwLock::new(config),
                limiter,
                auth_failures: auth_failures::AuthFailures::new(limit_failed_logins),
                simulcast: simulcast::SimulcastTargets::default(),
                events,
                stream_permits: Arc::new(Semaphore::new(MAX_EVENT_STREAMS)),
                signing_keys: SigningKeys::default(),
            }),
        }
    }

    /// The metadata store (the session manager's).
    pub fn store(&self) -> &SqliteStore {
        self.inner.sessions.store()
    }

    /// The session manager.
    pub fn sessions(&self) -> &SessionManager {
        &self.inner.sessions
    }

    /// The signing keys that verify playback tokens: created and deleted through this API,
    /// to be handed to [`playback::router`]. Empty until [`ApiState::load_signing_keys`].
    pub fn signing_keys(&self) -> &SigningKeys {
        &self.inner.signing_keys
    }

    /// Loads the stored signing keys into [`ApiState::signing_keys`] (at start); how many
    /// there are.
    pub async fn load_signing_keys(&self) -> Result<usize, playback::token::LoadError> {
        self.inner.signing_keys.load_from(self.store()).await
    }

    /// The configuration (a copy: [`ApiState::reconfigure`] may replace it).
    pub fn config(&self) -> ApiConfig {
        self.inner
            .config
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Applies a new configuration (a reload) to the requests that come next: body size,
    /// request timeout, rate limits (every token's buckets start full again) and the limit on
    /// failed logins. `max_rate_limit_buckets` keeps its value from the start. `config`
    /// should have passed [`ApiConfig::validate`].
    pub fn reconfigure(&self, mut config: ApiConfig) {
        let mut current = self.inner.config.write().unwrap_or_else(|e| e.into_inner());
        config.max_rate_limit_buckets = current.max_rate_limit_buckets;
        if config.post_rate_limit != current.post_rate_limit
            || config.other_rate_limit != current.other_rate_limit
        {
            self.inner
                .limiter
                .set_limits(config.post_rate_limit, config.other_rate_limit);
        }
        self.inner
            .auth_failures
            .set_limit(config.limit_failed_logins);
        *current = config;
    }

    fn limiter(&self) -> &rate_limit::RateLimiter {
        &self.inner.limiter
    }

    fn auth_failures(&self) -> &auth_failures::AuthFailures {
        &self.inner.auth_failures
    }

    fn simulcast(&self) -> &simulcast::SimulcastTargets {
        &self.inner.simulcast
    }

    fn environment(&self) -> &events::Environment {
        &self.inner.events.environment
    }

    fn shutdown(&self) -> &CancellationToken {
        &self.inner.events.shutdown
    }

    fn heartbeat_interval(&self) -> Duration {
        self.inner.events.heartbeat
    }

    fn event_streams(&self) -> &Arc<Semaphore> {
        &self.inner.stream_permits
    }
}

/// The API's routes under [`PATH_PREFIX`], ready to serve or to merge with other routers.
pub fn router(state: ApiState) -> Router {
    use assets as a;
    use handlers as h;
    const LS: &str = "/video/v1/live-streams/{live_stream_id}";
    const ASSET: &str = "/video/v1/assets/{asset_id}";
    Router::new()
        .route(
            "/video/v1/live-streams",
            get(h::list_live_streams).post(h::create_live_stream),
        )
        .route(
            LS,
            get(h::get_live_stream)
                .patch(h::update_live_stream)
                .delete(h::delete_live_stream),
        )
        .route(&format!("{LS}/reset-stream-key"), post(h::reset_stream_key))
        .route(&format!("{LS}/complete"), put(h::complete_live_stream))
        .route(&format!("{LS}/disable"), put(h::disable_live_stream))
        .route(&format!("{LS}/enable"), put(h::enable_live_stream))
        .route(&format!("{LS}/playback-ids"), post(h::create_playback_id))
        .route(
            &format!("{LS}/playback-ids/{{playback_id}}"),
            get(h::get_playback_id).delete(h::delete_playback_id),
        )
        .route(
            &format!("{LS}/simulcast-targets"),
            post(h::create_simulcast_target),
        )
        .route(
            &format!("{LS}/simulcast-targets/{{simulcast_target_id}}"),
            get(h::get_simulcast_target).delete(h::delete_simulcast_target),
        )
        .route("/video/v1/assets", get(a::list_assets))
        .route(
            ASSET,
            get(a::get_asset)
                .patch(a::update_asset)
                .delete(a::delete_asset),
        )
        .route(&format!("{ASSET}/input-info"), get(a::input_info))
        .route(
            &format!("{ASSET}/playback-ids"),
            post(a::create_playback_id),
        )
        .route(
            &format!("{ASSET}/playback-ids/{{playback_id}}"),
            get(a::get_playback_id).delete(a::delete_playback_id),
        )
        .route(
            "/video/v1/playback-ids/{playback_id}",
            get(h::lookup_playback_id),
        )
        .route("/system/v1/whoami", get(event_stream::whoami))
        .route(
            "/system/v1/signing-keys",
            get(signing_keys::list_signing_keys).post(signing_keys::create_signing_key),
        )
        .route(
            "/system/v1/signing-keys/{signing_key_id}",
            get(signing_keys::get_signing_key).delete(signing_keys::delete_signing_key),
        )
        .route(
            "/system/v1/webhook-events/stream",
            get(event_stream::webhook_event_stream),
        )
        .route("/video/v1/{*rest}", any(h::unknown_route))
        .method_not_allowed_fallback(h::method_not_allowed)
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            gate::gate,
        ))
        // Responses carry stream keys: no proxy or client may keep them. Outermost, so that
        // the gate's refusals get the header too.
        .route_layer(SetResponseHeaderLayer::if_not_present(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ))
        // After the gate: the document is public (it describes the API, it holds no data).
        .route(OPENAPI_PATH, get(openapi::openapi_json))
        .with_state(state)
}
