//! # OnAir playback
//!
//! HLS delivery over HTTP by playback ID, on the shared HTTP listener:
//!
//! | path | what |
//! | --- | --- |
//! | `GET /{PLAYBACK_ID}.m3u8` | multivariant playlist |
//! | `GET /{PLAYBACK_ID}/stream.m3u8` | live media playlist (sliding window) |
//! | `GET /{PLAYBACK_ID}/{BROADCAST_ID}/{N}.ts` | segment `N` of the current broadcast: from memory while in the live window, then from the recording on disk |
//!
//! The same paths serve an asset by one of its playback IDs (`BROADCAST_ID` is then the
//! asset's ID, which is its broadcast's): the whole recording so far while the broadcast is
//! live (DVR: an `EVENT` playlist from the first segment), then on demand (`VOD` with
//! `EXT-X-ENDLIST`). Everything is read from the recording on disk; an asset with nothing
//! recorded yet answers `412`, a deleted one `404`.
//!
//! A known playback ID whose live stream is not active (or has no playable segment yet)
//! answers `412 Precondition Failed`; unknown IDs and paths answer `404`. While the encoder
//! is away inside the reconnect window the broadcast goes on: the playlists keep answering
//! `200`. Every response carries `Access-Control-Allow-Origin: *`. Playlists are cacheable
//! for one second (`max-age=1`), segments forever (`immutable`): segment URLs carry the
//! broadcast, so a URL never names other bytes later (a segment of an earlier broadcast
//! answers `404`).
#![forbid(unsafe_code)]

use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use session::manager::{PlaybackTarget, SessionManager};
use session::{LiveView, RecordedView};
use tower_http::cors::{Any, CorsLayer};

/// `Content-Type` of playlists.
pub const PLAYLIST_CONTENT_TYPE: &str = "application/vnd.apple.mpegurl";
/// `Content-Type` of segments.
pub const SEGMENT_CONTENT_TYPE: &str = "video/mp2t";
/// `Cache-Control` of playlists: short, they change every segment.
pub const PLAYLIST_CACHE_CONTROL: &str = "public, max-age=1";
/// `Cache-Control` of an asset's playlists once it is on demand.
pub const VOD_PLAYLIST_CACHE_CONTROL: &str = "public, max-age=60";
/// `Cache-Control` of segments: they never change.
pub const SEGMENT_CACHE_CONTROL: &str = "public, max-age=31536000, immutable";

/// The playback routes, to merge into the HTTP listener's router.
pub fn router(manager: SessionManager) -> Router {
    Router::new()
        .route("/{file}", get(multivariant))
        .route("/{playback_id}/{file}", get(media))
        .route("/{playback_id}/{broadcast_id}/{file}", get(segment))
        .layer(CorsLayer::new().allow_origin(Any).allow_methods([
            Method::GET,
            Method::HEAD,
            Method::OPTIONS,
        ]))
        .with_state(manager)
}

fn text(status: StatusCode, body: &'static str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}

fn not_found() -> Response {
    text(StatusCode::NOT_FOUND, "not found\n")
}

fn not_active() -> Response {
    text(
        StatusCode::PRECONDITION_FAILED,
        "the live stream is not active\n",
    )
}

fn body(content_type: &'static str, cache: &'static str, data: Bytes) -> Response {
    let mut response = data.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    response
}

/// Playback IDs are URL-safe alphanumerics; anything else cannot exist.
fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 255
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// What a playback ID shows.
enum Target {
    Live(std::sync::Arc<LiveView>),
    Recorded(RecordedView),
}

async fn target(manager: &SessionManager, playback_id: &str) -> Result<Target, Response> {
    if !valid_id(playback_id) {
        return Err(not_found());
    }
    match manager.playback(playback_id).await {
        PlaybackTarget::Live(view) => Ok(Target::Live(view)),
        PlaybackTarget::Recorded(view) => Ok(Target::Recorded(view)),
        PlaybackTarget::NotActive => Err(not_active()),
        PlaybackTarget::Unknown => Err(not_found()),
    }
}

/// `Cache-Control` of an asset's playlist: short while its broadcast is live (it grows), a
/// minute once it is on demand (it changes no more, but a deleted asset must stop playing).
fn recorded_cache_control(view: &RecordedView) -> &'static str {
    if view.is_live() {
        PLAYLIST_CACHE_CONTROL
    } else {
        VOD_PLAYLIST_CACHE_CONTROL
    }
}

/// An asset's media playlist; `412` while nothing is recorded yet.
async fn recorded_playlist(view: &RecordedView) -> Response {
    match view.media_playlist().await {
        Ok(Some(text)) => body(
            PLAYLIST_CONTENT_TYPE,
            recorded_cache_control(view),
            Bytes::from(text),
        ),
        Ok(None) => not_active(),
        Err(e) => {
            tracing::warn!(error = %e, asset_id = view.asset_id(), "could not read a recording");
            text(StatusCode::INTERNAL_SERVER_ERROR, "recording unreadable\n")
        }
    }
}

async fn multivariant(State(manager): State<SessionManager>, Path(file): Path<String>) -> Response {
    let Some(playback_id) = file.strip_suffix(".m3u8") else {
        return not_found();
    };
    let view = match target(&manager, playback_id).await {
        Ok(Target::Live(v)) => v,
        Ok(Target::Recorded(v)) => {
            return body(
                PLAYLIST_CONTENT_TYPE,
                recorded_cache_control(&v),
                Bytes::from(v.multivariant(playback_id)),
            )
        }
        Err(r) => return r,
    };
    match view.multivariant(playback_id) {
        Some(text) => body(
            PLAYLIST_CONTENT_TYPE,
            PLAYLIST_CACHE_CONTROL,
            Bytes::from(text),
        ),
        None => not_active(),
    }
}

async fn media(
    State(manager): State<SessionManager>,
    Path((playback_id, file)): Path<(String, String)>,
) -> Response {
    let view = match target(&manager, &playback_id).await {
        Ok(Target::Live(v)) => v,
        Ok(Target::Recorded(v)) if file == "stream.m3u8" => return recorded_playlist(&v).await,
        Ok(Target::Recorded(_)) => return not_found(),
        Err(r) => return r,
    };
    if file == "stream.m3u8" {
        return match view.media_playlist() {
            Some(p) => body(PLAYLIST_CONTENT_TYPE, PLAYLIST_CACHE_CONTROL, p),
            None => not_active(),
        };
    }
    not_found()
}

async fn segment(
    State(manager): State<SessionManager>,
    Path((playback_id, broadcast_id, file)): Path<(String, String, String)>,
) -> Response {
    let view = match target(&manager, &playback_id).await {
        Ok(Target::Live(v)) => v,
        Ok(Target::Recorded(v)) => {
            if broadcast_id != v.asset_id() {
                return not_found();
            }
            let Some(path) = v.segment_path(&file) else {
                return not_found();
            };
            return match tokio::fs::read(&path).await {
                Ok(data) => body(
                    SEGMENT_CONTENT_TYPE,
                    SEGMENT_CACHE_CONTROL,
                    Bytes::from(data),
                ),
                Err(_) => not_found(),
            };
        }
        Err(r) => return r,
    };
    if broadcast_id != view.broadcast_id() {
        return not_found();
    }
    let Some(sequence) = file.strip_suffix(".ts").and_then(|n| n.parse::<u64>().ok()) else {
        return not_found();
    };
    if let Some(data) = view.segment(sequence) {
        return body(SEGMENT_CONTENT_TYPE, SEGMENT_CACHE_CONTROL, data);
    }
    // Slid out of the in-memory window: players a little behind still get it, from disk.
    if let Some(path) = view.recorded_segment(sequence) {
        if let Ok(data) = tokio::fs::read(&path).await {
            return body(
                SEGMENT_CONTENT_TYPE,
                SEGMENT_CACHE_CONTROL,
                Bytes::from(data),
            );
        }
    }
    not_found()
}
