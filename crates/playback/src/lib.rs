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
//!
//! ## Playback policies
//!
//! A `public` playback ID plays for anyone who has it. A `signed` one plays only with
//! `?token=JWT` on its URLs (see [`token`]): the multivariant playlist, the media playlist
//! and every segment check the token, and the playlists of a signed ID carry it on the URLs
//! they list, so a player that loaded `/{PLAYBACK_ID}.m3u8?token=...` keeps playing until the
//! token expires. A missing, malformed, expired or foreign token, another audience, or a
//! signing key that was deleted gets `403` with a plain-text reason. Signed responses are
//! `Cache-Control: private`. A `drm` playback ID answers `403`: OnAir does not encrypt media.
#![forbid(unsafe_code)]

pub mod token;

use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use serde::Deserialize;
use session::manager::{PlaybackTarget, SessionManager};
use session::{LiveView, RecordedView};
use store::PlaybackPolicy;
use token::SigningKeys;
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
/// `Cache-Control` of a signed playback ID's playlists: for the bearer only.
pub const SIGNED_PLAYLIST_CACHE_CONTROL: &str = "private, max-age=1";
/// `Cache-Control` of a signed playback ID's segments.
pub const SIGNED_SEGMENT_CACHE_CONTROL: &str = "private, max-age=31536000, immutable";

/// What the handlers share.
#[derive(Debug, Clone)]
struct Playback {
    manager: SessionManager,
    keys: SigningKeys,
}

/// The playback routes, to merge into the HTTP listener's router. `keys` are the signing
/// keys that verify tokens of `signed` playback IDs (the API adds and removes them).
pub fn router(manager: SessionManager, keys: SigningKeys) -> Router {
    Router::new()
        .route("/{file}", get(multivariant))
        .route("/{playback_id}/{file}", get(media))
        .route("/{playback_id}/{broadcast_id}/{file}", get(segment))
        .layer(CorsLayer::new().allow_origin(Any).allow_methods([
            Method::GET,
            Method::HEAD,
            Method::OPTIONS,
        ]))
        .with_state(Playback { manager, keys })
}

/// The query of every playback URL: the token of a signed playback ID.
#[derive(Debug, Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

/// How a request may see a playback ID.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Access {
    /// Public (or unknown: the target answers 404 or 412).
    Open,
    /// Signed, with this valid token, which the playlists pass on.
    Signed(String),
}

impl Access {
    fn playlist_cache(&self, open: &'static str) -> &'static str {
        match self {
            Access::Open => open,
            Access::Signed(_) => SIGNED_PLAYLIST_CACHE_CONTROL,
        }
    }

    fn segment_cache(&self) -> &'static str {
        match self {
            Access::Open => SEGMENT_CACHE_CONTROL,
            Access::Signed(_) => SIGNED_SEGMENT_CACHE_CONTROL,
        }
    }

    /// A playlist as this request should get it: a signed ID's URLs carry the token.
    fn playlist(&self, text: String) -> Bytes {
        match self {
            Access::Open => Bytes::from(text),
            Access::Signed(token) => Bytes::from(with_token(&text, token)),
        }
    }
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn forbidden(reason: String) -> Response {
    (
        StatusCode::FORBIDDEN,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{reason}\n"),
    )
        .into_response()
}

/// Checks a request against a playback ID's policy; the reason of a refusal (`403`).
fn authorize(
    policy: Option<PlaybackPolicy>,
    playback_id: &str,
    token: Option<&str>,
    keys: &SigningKeys,
) -> Result<Access, String> {
    match policy {
        None | Some(PlaybackPolicy::Public) => Ok(Access::Open),
        Some(PlaybackPolicy::Signed) => {
            let token = token.unwrap_or("");
            match token::verify(token, playback_id, now_unix(), keys) {
                Ok(()) => Ok(Access::Signed(token.to_owned())),
                Err(e) => Err(e.to_string()),
            }
        }
        Some(PlaybackPolicy::Drm) => Err(
            "this playback ID's policy is drm, and OnAir does not encrypt media (no DRM): \
             give the stream a public or signed playback ID"
                .to_owned(),
        ),
    }
}

/// `text` with `token` on every URL it lists (URI lines and `URI="..."` attributes).
fn with_token(text: &str, token: &str) -> String {
    fn append(uri: &str, token: &str, out: &mut String) {
        out.push_str(uri);
        out.push(if uri.contains('?') { '&' } else { '?' });
        out.push_str("token=");
        out.push_str(token);
    }
    let mut out = String::with_capacity(text.len() + 64);
    for line in text.split_inclusive('\n') {
        let (body, end) = match line.strip_suffix('\n') {
            Some(b) => (b, "\n"),
            None => (line, ""),
        };
        if body.trim().is_empty() {
            out.push_str(body);
        } else if !body.starts_with('#') {
            append(body, token, &mut out);
        } else if let Some(at) = body.find("URI=\"") {
            let start = at + "URI=\"".len();
            match body[start..].find('"') {
                Some(len) => {
                    out.push_str(&body[..start]);
                    append(&body[start..start + len], token, &mut out);
                    out.push_str(&body[start + len..]);
                }
                None => out.push_str(body),
            }
        } else {
            out.push_str(body);
        }
        out.push_str(end);
    }
    out
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

/// Resolves a playback ID and checks the request against its policy (before anything about
/// the stream's state is told).
async fn target(
    state: &Playback,
    playback_id: &str,
    token: Option<&str>,
) -> Result<(Target, Access), Response> {
    if !valid_id(playback_id) {
        return Err(not_found());
    }
    let resolved = state.manager.resolve_playback(playback_id).await;
    let access = authorize(resolved.policy, playback_id, token, &state.keys).map_err(forbidden)?;
    match resolved.target {
        PlaybackTarget::Live(view) => Ok((Target::Live(view), access)),
        PlaybackTarget::Recorded(view) => Ok((Target::Recorded(view), access)),
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
async fn recorded_playlist(view: &RecordedView, access: &Access) -> Response {
    match view.media_playlist().await {
        Ok(Some(text)) => body(
            PLAYLIST_CONTENT_TYPE,
            access.playlist_cache(recorded_cache_control(view)),
            access.playlist(text),
        ),
        Ok(None) => not_active(),
        Err(e) => {
            tracing::warn!(error = %e, asset_id = view.asset_id(), "could not read a recording");
            text(StatusCode::INTERNAL_SERVER_ERROR, "recording unreadable\n")
        }
    }
}

async fn multivariant(
    State(state): State<Playback>,
    Path(file): Path<String>,
    Query(query): Query<TokenQuery>,
) -> Response {
    let Some(playback_id) = file.strip_suffix(".m3u8") else {
        return not_found();
    };
    let (view, access) = match target(&state, playback_id, query.token.as_deref()).await {
        Ok((Target::Live(v), access)) => (v, access),
        Ok((Target::Recorded(v), access)) => {
            return body(
                PLAYLIST_CONTENT_TYPE,
                access.playlist_cache(recorded_cache_control(&v)),
                access.playlist(v.multivariant(playback_id)),
            )
        }
        Err(r) => return r,
    };
    match view.multivariant(playback_id) {
        Some(text) => body(
            PLAYLIST_CONTENT_TYPE,
            access.playlist_cache(PLAYLIST_CACHE_CONTROL),
            access.playlist(text),
        ),
        None => not_active(),
    }
}

async fn media(
    State(state): State<Playback>,
    Path((playback_id, file)): Path<(String, String)>,
    Query(query): Query<TokenQuery>,
) -> Response {
    let (view, access) = match target(&state, &playback_id, query.token.as_deref()).await {
        Ok((Target::Live(v), access)) => (v, access),
        Ok((Target::Recorded(v), access)) if file == "stream.m3u8" => {
            return recorded_playlist(&v, &access).await
        }
        Ok((Target::Recorded(_), _)) => return not_found(),
        Err(r) => return r,
    };
    if file == "stream.m3u8" {
        return match view.media_playlist() {
            Some(p) => match access {
                Access::Open => body(PLAYLIST_CONTENT_TYPE, PLAYLIST_CACHE_CONTROL, p),
                Access::Signed(_) => body(
                    PLAYLIST_CONTENT_TYPE,
                    SIGNED_PLAYLIST_CACHE_CONTROL,
                    access.playlist(String::from_utf8_lossy(&p).into_owned()),
                ),
            },
            None => not_active(),
        };
    }
    not_found()
}

async fn segment(
    State(state): State<Playback>,
    Path((playback_id, broadcast_id, file)): Path<(String, String, String)>,
    Query(query): Query<TokenQuery>,
) -> Response {
    let (view, access) = match target(&state, &playback_id, query.token.as_deref()).await {
        Ok((Target::Live(v), access)) => (v, access),
        Ok((Target::Recorded(v), access)) => {
            if broadcast_id != v.asset_id() {
                return not_found();
            }
            let Some(path) = v.segment_path(&file) else {
                return not_found();
            };
            return match tokio::fs::read(&path).await {
                Ok(data) => body(
                    SEGMENT_CONTENT_TYPE,
                    access.segment_cache(),
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
        return body(SEGMENT_CONTENT_TYPE, access.segment_cache(), data);
    }
    // Slid out of the in-memory window: players a little behind still get it, from disk.
    if let Some(path) = view.recorded_segment(sequence) {
        if let Ok(data) = tokio::fs::read(&path).await {
            return body(
                SEGMENT_CONTENT_TYPE,
                access.segment_cache(),
                Bytes::from(data),
            );
        }
    }
    not_found()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_playlist_carries_the_token_on_every_url_it_lists() {
        let media = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.000,\nB1/0.ts\n\
                     #EXT-X-DISCONTINUITY\n#EXTINF:2.000,\nB1/1.ts?x=1\n";
        assert_eq!(
            with_token(media, "a.b.c"),
            "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.000,\nB1/0.ts?token=a.b.c\n\
             #EXT-X-DISCONTINUITY\n#EXTINF:2.000,\nB1/1.ts?x=1&token=a.b.c\n"
        );
        assert_eq!(
            with_token(
                "#EXT-X-MAP:URI=\"init.mp4\",BYTERANGE=\"1@0\"\n\nP/stream.m3u8",
                "t"
            ),
            "#EXT-X-MAP:URI=\"init.mp4?token=t\",BYTERANGE=\"1@0\"\n\nP/stream.m3u8?token=t"
        );
    }

    #[test]
    fn policies_decide_before_the_stream_state_is_told() {
        let keys = SigningKeys::default();
        assert_eq!(
            authorize(Some(PlaybackPolicy::Public), "P", None, &keys).ok(),
            Some(Access::Open)
        );
        assert_eq!(authorize(None, "P", None, &keys).ok(), Some(Access::Open));
        let refused = |policy, token| authorize(Some(policy), "P", token, &keys).err();
        assert!(refused(PlaybackPolicy::Signed, None).is_some_and(|r| r.contains("?token=")));
        assert!(refused(PlaybackPolicy::Signed, Some("x.y.z")).is_some_and(|r| r.contains("JWT")));
        assert!(refused(PlaybackPolicy::Drm, None).is_some_and(|r| r.contains("drm")));
        assert_eq!(forbidden("no".into()).status(), StatusCode::FORBIDDEN);
    }
}
