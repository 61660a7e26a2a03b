//! `GET /system/v1/webhook-events/stream`: the store's event log as Server-Sent Events, for
//! the official CLI's `mux webhooks listen` (COMPAT.md, "The CLI").
//!
//! On connect: an event named `connected` (data `{}`), then every event written to the log
//! after the connection (or after `Last-Event-ID`, a `seq`), in `seq` order, each as
//!
//! ```text
//! id: <seq>
//! event: <type>
//! data: <the webhook envelope, one line of JSON>
//! ```
//!
//! and a comment line (`: keep-alive`) every [`HEARTBEAT_INTERVAL`] of silence.
//!
//! Memory per client is bounded: one task per stream reads the log in pages of
//! [`EVENT_STREAM_PAGE`] events when the store says it wrote some, and hands each page to the
//! response body through a channel of capacity one, so a client that does not read holds at
//! most the TCP send buffer, the page being written and one page waiting. At most
//! [`MAX_EVENT_STREAMS`] streams are open at once; more are answered `503`. Streams end on
//! shutdown.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use store::{SqliteStore, Store};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::error::ApiError;
use crate::openapi::Data;
use crate::ApiState;

/// The longest silence on a stream: then a comment line keeps proxies from closing it.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(15);

/// At most this many streams are open at once; more are answered `503`.
pub const MAX_EVENT_STREAMS: usize = 64;

/// Events read from the log (and sent as one chunk) at a time.
pub const EVENT_STREAM_PAGE: u32 = 50;

/// The handler: admits the stream (the gate has authenticated it), then answers at once with
/// the headers and a body fed by [`feed`].
#[utoipa::path(
    get,
    path = "/system/v1/webhook-events/stream",
    tag = "system",
    operation_id = "stream-webhook-events",
    responses((status = 200, description = "Server-Sent Events: each `data` one webhook envelope; an event named `connected` first", content_type = "text/event-stream", body = String), (status = 503, description = "Too many streams"))
)]
pub(crate) async fn webhook_event_stream(
    State(api): State<ApiState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let permit = api
        .event_streams()
        .clone()
        .try_acquire_owned()
        .map_err(|_| ApiError::TooManyStreams)?;
    let store = api.store().clone();
    // Subscribed before the log's end is read: an event written in between still wakes us.
    let wake = store.subscribe_events();
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let after = match resume {
        Some(seq) => seq,
        None => store.last_event_seq().await?,
    };
    let (tx, mut rx) = mpsc::channel::<Bytes>(1);
    let feeder = Feeder {
        store,
        environment: api.environment().clone(),
        heartbeat: api.heartbeat_interval(),
        shutdown: api.shutdown().clone(),
    };
    tokio::spawn(async move {
        feeder.feed(after, wake, tx).await;
        drop(permit);
    });
    let body = Body::from_stream(futures_util::stream::poll_fn(move |cx| {
        rx.poll_recv(cx).map(|chunk| chunk.map(Ok::<_, Infallible>))
    }));
    let mut response = body.into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // Asks nginx-like proxies not to buffer the stream.
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}

struct Feeder {
    store: SqliteStore,
    environment: events::Environment,
    heartbeat: Duration,
    shutdown: CancellationToken,
}

impl Feeder {
    /// Sends `connected`, then every event after `after`, until the client goes away, the
    /// store's notifier closes, or shutdown.
    async fn feed(self, mut after: u64, mut wake: watch::Receiver<u64>, tx: mpsc::Sender<Bytes>) {
        if tx
            .send(Bytes::from_static(b"event: connected\ndata: {}\n\n"))
            .await
            .is_err()
        {
            return;
        }
        let mut heartbeat =
            tokio::time::interval_at(tokio::time::Instant::now() + self.heartbeat, self.heartbeat);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            // Everything written so far, a page at a time.
            loop {
                let page = match self.store.list_events(after, EVENT_STREAM_PAGE).await {
                    Ok(page) => page,
                    Err(e) => {
                        tracing::warn!(error = %e, "event stream: reading the log failed");
                        return;
                    }
                };
                let Some(last) = page.last() else { break };
                after = last.seq;
                let full = page.len() >= EVENT_STREAM_PAGE as usize;
                let chunk = self.encode(&page);
                tokio::select! {
                    sent = tx.send(chunk) => if sent.is_err() { return },
                    () = self.shutdown.cancelled() => return,
                }
                heartbeat.reset();
                if !full {
                    break;
                }
            }
            tokio::select! {
                changed = wake.changed() => if changed.is_err() { return },
                _ = heartbeat.tick() => {
                    if tx.send(Bytes::from_static(b": keep-alive\n\n")).await.is_err() {
                        return;
                    }
                }
                () = tx.closed() => return,
                () = self.shutdown.cancelled() => return,
            }
        }
    }

    /// One SSE message per event: `id` its seq, `event` its type, `data` its envelope.
    fn encode(&self, page: &[store::Event]) -> Bytes {
        let mut out = String::new();
        for event in page {
            let envelope = events::envelope::envelope(event, &self.environment);
            // serde_json escapes control characters: the JSON is one line.
            let data = envelope.to_string();
            // The type comes from the store's fixed set; keep the field one line regardless.
            let name: String = event
                .event_type
                .chars()
                .filter(|c| *c != '\n' && *c != '\r')
                .collect();
            out.push_str(&format!(
                "id: {}\nevent: {name}\ndata: {data}\n\n",
                event.seq
            ));
        }
        Bytes::from(out)
    }
}

/// `GET /system/v1/whoami`: what the official CLI asks to learn the environment of its
/// credentials (`data.environment_id`) before `mux webhooks listen`.
#[utoipa::path(
    get,
    path = "/system/v1/whoami",
    tag = "system",
    operation_id = "whoami",
    responses((status = 200, description = "The access token's environment", body = Data<Whoami>))
)]
pub(crate) async fn whoami(
    State(api): State<ApiState>,
    headers: HeaderMap,
    axum::Extension(permissions): axum::Extension<store::Permissions>,
) -> Result<Response, ApiError> {
    let token_id = crate::auth::credentials(&headers)?.id;
    let mut granted = Vec::new();
    if permissions.read {
        granted.push("video:read");
    }
    if permissions.write {
        granted.push("video:write");
    }
    let environment = api.environment();
    crate::handlers::data(
        axum::http::StatusCode::OK,
        Whoami {
            access_token_name: token_id,
            environment_id: environment.id.clone(),
            environment_name: environment.name.clone(),
            environment_type: "development",
            organization_id: environment.id.clone(),
            organization_name: "OnAir",
            permissions: granted,
        },
    )
}

/// What `GET /system/v1/whoami` answers in `data`.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct Whoami {
    /// The access token's ID.
    access_token_name: String,
    environment_id: String,
    environment_name: String,
    /// Always `development`.
    environment_type: &'static str,
    organization_id: String,
    /// Always `OnAir`.
    organization_name: &'static str,
    /// `video:read` and/or `video:write`.
    permissions: Vec<&'static str>,
}
