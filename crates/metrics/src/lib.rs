//! OnAir's Prometheus metrics: one [`Metrics`] handle owns a [`prometheus::Registry`] of its
//! own (never the crate's global default registry) and every metric family of the gateway.
//! The binary makes one and hands clones to the listeners, the session manager, playback,
//! the API and webhook delivery; `GET /metrics` renders it with [`Metrics::render`].
//!
//! Driving it:
//! - a listener takes its [`ListenerMetrics`] once ([`Metrics::listener`]) and holds an
//!   [`OpenConnection`] guard per connection (accepted, open) or calls
//!   [`ListenerMetrics::refused`] with a reason;
//! - a broadcast takes its [`StreamMetrics`] once when it starts ([`Metrics::stream`]): every
//!   per-frame counter is a cached handle (one relaxed atomic add, no label lookup); dropping
//!   it when the broadcast ends removes the stream's series, so label values do not pile up;
//! - HTTP middleware reports requests ([`Metrics::hls_served`], [`Metrics::api_request`]);
//! - webhook delivery reports outcomes and its backlog ([`Metrics::webhook_delivery`],
//!   [`Metrics::set_webhook_backlog_age`]).
//!
//! Names follow Prometheus' conventions: the `onair_` prefix, base units in the name
//! (`_seconds`, `_bytes`), `_total` on counters. Process basics use the standard `process_`
//! names (read from `/proc` on Linux) so that existing dashboards work.

mod process;
mod stream;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use prometheus::{Encoder as _, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

pub use stream::{DropReason, StreamMetrics};

/// The states a live stream's broadcast goes through (`onair_live_stream_state`).
pub const STREAM_STATES: [&str; 4] = ["connected", "recording", "active", "disconnected"];

/// What an HLS request asked for (`kind` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HlsKind {
    /// The multivariant playlist (`/{PLAYBACK_ID}.m3u8`).
    Multivariant,
    /// A media playlist.
    Media,
    /// A media segment.
    Segment,
}

impl HlsKind {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            HlsKind::Multivariant => "multivariant",
            HlsKind::Media => "media",
            HlsKind::Segment => "segment",
        }
    }
}

/// A failed registration: two families with one name (a bug caught by the tests).
fn register<C: prometheus::core::Collector + Clone + 'static>(registry: &Registry, c: &C) -> C {
    #[allow(clippy::expect_used)]
    registry
        .register(Box::new(c.clone()))
        .expect("metric families have distinct names");
    c.clone()
}

fn opts(name: &str, help: &str) -> Opts {
    Opts::new(name, help)
}

#[allow(clippy::expect_used)]
fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    register(
        registry,
        &IntCounterVec::new(opts(name, help), labels).expect("valid metric options"),
    )
}

#[allow(clippy::expect_used)]
fn gauge_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    register(
        registry,
        &IntGaugeVec::new(opts(name, help), labels).expect("valid metric options"),
    )
}

/// Families of the listeners.
#[derive(Debug)]
struct ListenerFamilies {
    open: IntGaugeVec,
    accepted: IntCounterVec,
    refused: IntCounterVec,
}

#[derive(Debug)]
struct HttpFamilies {
    hls_requests: IntCounterVec,
    hls_bytes: IntCounterVec,
    api_requests: IntCounterVec,
}

#[derive(Debug)]
struct WebhookFamilies {
    deliveries: IntCounterVec,
    backlog_age: prometheus::Gauge,
}

#[derive(Debug)]
struct Inner {
    registry: Registry,
    listeners: ListenerFamilies,
    streams: stream::StreamFamilies,
    http: HttpFamilies,
    webhooks: WebhookFamilies,
    process: process::ProcessMetrics,
    /// Each webhook endpoint's oldest undelivered event (unix ms; 0: caught up).
    backlogs: Mutex<Vec<Arc<AtomicU64>>>,
    /// Live stream id -> the broadcast whose series are current (see [`StreamMetrics`]).
    live: Mutex<HashMap<String, stream::LiveEntry>>,
}

/// The gateway's metrics; cheap to clone (one registry behind an `Arc`).
#[derive(Debug, Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// A new registry with every family registered (nothing global: tests make their own).
    pub fn new() -> Self {
        let registry = Registry::new();
        let r = &registry;
        let listeners = ListenerFamilies {
            open: gauge_vec(
                r,
                "onair_listener_connections_open",
                "Connections open on a listener (rtmp, rtmps, srt, http).",
                &["listener"],
            ),
            accepted: counter_vec(
                r,
                "onair_listener_connections_accepted_total",
                "Connections a listener accepted.",
                &["listener"],
            ),
            refused: counter_vec(
                r,
                "onair_listener_connections_refused_total",
                "Connections or publish requests a listener refused, by reason.",
                &["listener", "reason"],
            ),
        };
        let streams = stream::StreamFamilies::new(r);
        let http = HttpFamilies {
            hls_requests: counter_vec(
                r,
                "onair_hls_requests_total",
                "HLS playback requests by kind (multivariant, media, segment) and status code.",
                &["kind", "status"],
            ),
            hls_bytes: counter_vec(
                r,
                "onair_hls_sent_bytes_total",
                "Bytes of HLS response bodies by kind and status code.",
                &["kind", "status"],
            ),
            api_requests: counter_vec(
                r,
                "onair_api_requests_total",
                "REST API requests by route template, method and status code.",
                &["route", "method", "status"],
            ),
        };
        #[allow(clippy::expect_used)]
        let webhooks = WebhookFamilies {
            deliveries: counter_vec(
                r,
                "onair_webhook_deliveries_total",
                "Webhook delivery attempts by outcome (delivered, rejected: non-2xx answer, failed: no answer, gave_up: retry period over).",
                &["outcome"],
            ),
            backlog_age: register(
                r,
                &prometheus::Gauge::new(
                    "onair_webhook_backlog_age_seconds",
                    "Age of the oldest event not yet delivered to every endpoint (0: none).",
                )
                .expect("valid metric options"),
            ),
        };
        let process = process::ProcessMetrics::new(r);
        let build = IntGauge::with_opts(
            Opts::new("onair_build_info", "OnAir's version (value 1).")
                .const_label("version", env!("CARGO_PKG_VERSION")),
        );
        #[allow(clippy::expect_used)]
        register(r, &build.expect("valid metric options")).set(1);
        Metrics {
            inner: Arc::new(Inner {
                listeners,
                streams,
                http,
                webhooks,
                process,
                registry,
                live: Mutex::new(HashMap::new()),
                backlogs: Mutex::new(Vec::new()),
            }),
        }
    }

    /// The registry (to register more collectors or gather in tests).
    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    /// The counters of one listener (`rtmp`, `rtmps`, `srt`, `http`); take it once.
    pub fn listener(&self, name: &'static str) -> ListenerMetrics {
        let l = &self.inner.listeners;
        ListenerMetrics {
            name,
            open: l.open.with_label_values(&[name]),
            accepted: l.accepted.with_label_values(&[name]),
            refused: l.refused.clone(),
        }
    }

    /// The series of the broadcast of `live_stream_id` that starts now; they disappear when
    /// the returned handle is dropped (unless a newer broadcast of the stream took them over).
    pub fn stream(&self, live_stream_id: &str) -> StreamMetrics {
        StreamMetrics::new(self, live_stream_id)
    }

    /// A publish request refused by admission (`unknown_stream_key`, `disabled`, …) on
    /// `listener`; the listeners' own refusals go through [`ListenerMetrics::refused`].
    pub fn listener_refused(&self, listener: &str, reason: &str) {
        self.inner
            .listeners
            .refused
            .with_label_values(&[listener, reason])
            .inc();
    }

    /// One HLS response of `bytes` body bytes.
    pub fn hls_served(&self, kind: HlsKind, status: u16, bytes: u64) {
        let status = status.to_string();
        let status = status.as_str();
        let h = &self.inner.http;
        h.hls_requests
            .with_label_values(&[kind.as_str(), status])
            .inc();
        if bytes > 0 {
            h.hls_bytes
                .with_label_values(&[kind.as_str(), status])
                .inc_by(bytes);
        }
    }

    /// One API request; `route` is the route template (`/video/v1/live-streams/{id}`), never
    /// the raw path (its ids would make a series per object).
    pub fn api_request(&self, route: &str, method: &str, status: u16) {
        self.inner
            .http
            .api_requests
            .with_label_values(&[route, method, &status.to_string()])
            .inc();
    }

    /// One webhook delivery attempt's outcome (`delivered`, `rejected`, `failed`).
    pub fn webhook_delivery(&self, outcome: &'static str) {
        self.inner
            .webhooks
            .deliveries
            .with_label_values(&[outcome])
            .inc();
    }

    /// One webhook endpoint's place in the event log, for `onair_webhook_backlog_age_seconds`
    /// (the age of the oldest event some endpoint has not delivered yet, computed at scrape).
    pub fn webhook_backlog(&self) -> WebhookBacklog {
        let oldest = Arc::new(AtomicU64::new(0));
        lock(&self.inner.backlogs).push(Arc::clone(&oldest));
        WebhookBacklog { oldest }
    }

    /// The text exposition format (`GET /metrics`), after refreshing what is computed at
    /// scrape time (process figures, last-segment ages).
    pub fn render(&self) -> String {
        self.inner.process.refresh();
        let now_ms = unix_ms(SystemTime::now());
        for entry in lock(&self.inner.live).values() {
            entry.refresh(now_ms);
        }
        let oldest = lock(&self.inner.backlogs)
            .iter()
            .map(|o| o.load(Ordering::Relaxed))
            .filter(|&ms| ms > 0)
            .min();
        self.inner
            .webhooks
            .backlog_age
            .set(oldest.map_or(0.0, |ms| now_ms.saturating_sub(ms) as f64 / 1000.0));
        let mut out = Vec::new();
        let encoder = prometheus::TextEncoder::new();
        if let Err(e) = encoder.encode(&self.inner.registry.gather(), &mut out) {
            return format!("# encoding failed: {e}\n");
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    /// The content type of [`Metrics::render`]'s output.
    pub fn content_type() -> &'static str {
        prometheus::TEXT_FORMAT
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// One listener's connection counters.
#[derive(Debug, Clone)]
pub struct ListenerMetrics {
    name: &'static str,
    open: IntGauge,
    accepted: prometheus::IntCounter,
    refused: IntCounterVec,
}

impl ListenerMetrics {
    /// A connection was accepted: counted, and open until the guard is dropped.
    pub fn connection(&self) -> OpenConnection {
        self.accepted.inc();
        self.open.inc();
        OpenConnection {
            open: self.open.clone(),
        }
    }

    /// A connection or publish request was refused (`connection_limit`,
    /// `unknown_stream_key`, …).
    pub fn refused(&self, reason: &str) {
        self.refused.with_label_values(&[self.name, reason]).inc();
    }
}

/// Where one webhook endpoint is in the event log (see [`Metrics::webhook_backlog`]).
#[derive(Debug, Clone)]
pub struct WebhookBacklog {
    oldest: Arc<AtomicU64>,
}

impl WebhookBacklog {
    /// The endpoint is delivering an event created at `created_at_ms` (unix ms), or is
    /// caught up (`None`).
    pub fn set_oldest(&self, created_at_ms: Option<u64>) {
        self.oldest
            .store(created_at_ms.unwrap_or(0), Ordering::Relaxed);
    }
}

/// An open connection (see [`ListenerMetrics::connection`]).
#[derive(Debug)]
pub struct OpenConnection {
    open: IntGauge,
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.open.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_streams_series_go_when_its_broadcast_ends() {
        let metrics = Metrics::new();
        let stream = metrics.stream("abc123");
        stream.frame_in(1000);
        stream.frame_dropped(stream::DropReason::Timestamp);
        stream.set_state("active");
        stream.segment_written(100_000, 4.0);
        let text = metrics.render();
        assert!(
            text.contains(r#"onair_live_stream_frames_received_total{live_stream_id="abc123"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"onair_live_stream_state{live_stream_id="abc123",state="active"} 1"#),
            "{text}"
        );
        assert!(text.contains("onair_live_stream_last_segment_age_seconds{"));
        // A newer broadcast of the same stream keeps the series when the older handle goes.
        let newer = metrics.stream("abc123");
        drop(stream);
        assert!(metrics.render().contains(r#"live_stream_id="abc123""#));
        drop(newer);
        let text = metrics.render();
        assert!(!text.contains("abc123"), "{text}");
    }

    #[test]
    fn listeners_http_and_webhooks() {
        let metrics = Metrics::new();
        let rtmp = metrics.listener("rtmp");
        let conn = rtmp.connection();
        rtmp.refused("connection_limit");
        metrics.hls_served(HlsKind::Segment, 200, 5000);
        metrics.api_request("/video/v1/live-streams/{id}", "GET", 404);
        metrics.webhook_delivery("delivered");
        let backlog = metrics.webhook_backlog();
        metrics.webhook_backlog().set_oldest(None);
        backlog.set_oldest(Some(unix_ms(SystemTime::now()) - 2500));
        let text = metrics.render();
        for line in [
            r#"onair_listener_connections_open{listener="rtmp"} 1"#,
            r#"onair_listener_connections_accepted_total{listener="rtmp"} 1"#,
            r#"onair_listener_connections_refused_total{listener="rtmp",reason="connection_limit"} 1"#,
            r#"onair_hls_sent_bytes_total{kind="segment",status="200"} 5000"#,
            r#"onair_api_requests_total{method="GET",route="/video/v1/live-streams/{id}",status="404"} 1"#,
            r#"onair_webhook_deliveries_total{outcome="delivered"} 1"#,
            "onair_webhook_backlog_age_seconds 2.5",
            "onair_build_info{version=",
        ] {
            assert!(text.contains(line), "{line} missing in\n{text}");
        }
        drop(conn);
        assert!(metrics
            .render()
            .contains(r#"onair_listener_connections_open{listener="rtmp"} 0"#));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn process_basics_on_linux() {
        let text = Metrics::new().render();
        for name in [
            "process_cpu_seconds_total ",
            "process_resident_memory_bytes ",
            "process_open_fds ",
            "process_start_time_seconds ",
            "process_threads ",
        ] {
            assert!(text.contains(name), "{name} missing in\n{text}");
        }
    }
}

/// The operator's guide lists every family, and the Grafana dashboard uses only real ones.
#[cfg(test)]
mod docs {
    use super::*;

    fn families() -> Vec<String> {
        let metrics = Metrics::new();
        // Vec families appear in a scrape only once they have a series.
        let _stream = metrics.stream("x");
        let _conn = metrics.listener("rtmp").connection();
        metrics.listener("rtmp").refused("connection_limit");
        metrics.hls_served(HlsKind::Media, 200, 1);
        metrics.api_request("/", "GET", 200);
        metrics.webhook_delivery("delivered");
        let _ = metrics.render();
        metrics
            .registry()
            .gather()
            .iter()
            .map(|f| f.name().to_owned())
            .collect()
    }

    #[test]
    fn operations_guide_lists_every_metric() {
        let guide = include_str!("../../../docs/OPERATIONS.md");
        let families = families();
        assert!(families.len() >= 20, "{families:?}");
        for name in families {
            assert!(
                guide.contains(&format!("`{name}`"))
                    || (name.starts_with("process_") && guide.contains(&name)),
                "docs/OPERATIONS.md does not list {name}"
            );
        }
    }

    #[test]
    fn dashboard_uses_only_real_metrics() {
        let dashboard = include_str!("../../../docs/grafana/onair.json");
        let families = families();
        let mut used = 0;
        for word in dashboard.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            if word.starts_with("onair_") || word.starts_with("process_") {
                used += 1;
                assert!(
                    families.iter().any(|f| f == word),
                    "docs/grafana/onair.json uses {word}, which OnAir does not export"
                );
            }
        }
        assert!(used > 20);
    }
}
