//! Request counters of the HTTP listener, as middleware over the API and playback routers
//! (`Router::layer`: it runs after routing, so the route template is known).
//!
//! The API is counted by route template (axum's [`MatchedPath`], `/video/v1/live-streams/{id}`),
//! never by raw path: ids in a label would make a series per object. Playback is counted by
//! what was asked for (multivariant playlist, media playlist, segment), from the route.

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use axum::Router;
use metrics::{HlsKind, Metrics};

/// Counts the API's requests (`onair_api_requests_total`).
pub fn api(router: Router, metrics: Metrics) -> Router {
    router.layer(axum::middleware::from_fn_with_state(metrics, count_api))
}

/// Counts playback's requests and bytes (`onair_hls_requests_total`, `onair_hls_sent_bytes_total`).
pub fn playback(router: Router, metrics: Metrics) -> Router {
    router.layer(axum::middleware::from_fn_with_state(metrics, count_hls))
}

async fn count_api(State(metrics): State<Metrics>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = method_label(request.method());
    let response = next.run(request).await;
    metrics.api_request(&route, method, response.status().as_u16());
    response
}

/// A fixed set of method labels (anything else is `other`: a peer picks the method).
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// What a playback route serves: `/{PLAYBACK_ID}.m3u8` the multivariant playlist,
/// `/{PLAYBACK_ID}/{file}` a media playlist (or, for a recording, a segment), deeper paths
/// segments.
fn hls_kind(route: Option<&str>, path: &str) -> HlsKind {
    match route {
        Some("/{file}") => HlsKind::Multivariant,
        Some("/{playback_id}/{file}") if path.ends_with(".m3u8") => HlsKind::Media,
        _ => HlsKind::Segment,
    }
}

async fn count_hls(State(metrics): State<Metrics>, request: Request, next: Next) -> Response {
    let kind = hls_kind(
        request
            .extensions()
            .get::<MatchedPath>()
            .map(|p| p.as_str()),
        request.uri().path(),
    );
    let response = next.run(request).await;
    // The body's size as known when the response starts (exact for playlists and segments
    // served from memory; the Content-Length otherwise).
    let bytes = axum::body::HttpBody::size_hint(response.body())
        .exact()
        .or_else(|| {
            response
                .headers()
                .get(axum::http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0);
    metrics.hls_served(kind, response.status().as_u16(), bytes);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn playback_routes_map_to_kinds() {
        assert_eq!(
            hls_kind(Some("/{file}"), "/abc.m3u8"),
            HlsKind::Multivariant
        );
        assert_eq!(
            hls_kind(Some("/{playback_id}/{file}"), "/abc/stream.m3u8"),
            HlsKind::Media
        );
        assert_eq!(
            hls_kind(Some("/{playback_id}/{file}"), "/abc/3.ts"),
            HlsKind::Segment
        );
        assert_eq!(
            hls_kind(Some("/{playback_id}/{broadcast_id}/{file}"), "/a/b/3.ts"),
            HlsKind::Segment
        );
    }
}
