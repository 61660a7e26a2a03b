//! The metrics listener (`--metrics-addr`, default `127.0.0.1:9090`): `GET /metrics` (the
//! Prometheus text format), `GET /healthz` (the process answers: 200 `ok`) and `GET /readyz`
//! (200 `ready`, or 503 with one line per failing check):
//! - **listeners**: every configured listener is bound and serving (not yet during start-up,
//!   no longer once shutdown has begun);
//! - **draining**: the gateway is not draining (`SIGUSR1`: it takes no new broadcasts, so a
//!   load balancer should send encoders elsewhere);
//! - **store**: the data directory takes a write (a probe file [`PROBE_FILE`] is written,
//!   synced and removed) and the database answers a query;
//! - **disk**: the data directory's file system has at least [`MIN_FREE_BYTES`] free for the
//!   gateway's user (`statvfs`'s available blocks).
//!
//! It is served by the same accept loop as the HTTP listener (timeouts, connection cap), on
//! a separate, by default loopback-only, address: scrapes and probes never queue behind
//! viewers, and the numbers are not published to the internet.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use metrics::Metrics;
use store::Store as _;

/// Below this much free space in the data directory the gateway is not ready: a few minutes
/// of one broadcast's segments at most, a sign the disk is about to fill.
pub const MIN_FREE_BYTES: u64 = 100 * 1024 * 1024;

/// The file `/readyz` writes (and removes) in the data directory to prove it is writable.
pub const PROBE_FILE: &str = ".readyz-probe";

/// How long one readiness check may take before it counts as failed.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// What `/readyz` checks; shared with `serve`, which says when the listeners are up.
#[derive(Debug)]
pub struct Readiness {
    listeners: AtomicBool,
    draining: AtomicBool,
    data_dir: PathBuf,
    store: store::SqliteStore,
}

impl Readiness {
    pub fn new(data_dir: &Path, store: store::SqliteStore) -> Arc<Self> {
        Arc::new(Readiness {
            listeners: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            data_dir: data_dir.to_path_buf(),
            store,
        })
    }

    /// Every listener is bound and serving (`true`), or shutdown has begun (`false`).
    pub fn set_listening(&self, up: bool) {
        self.listeners.store(up, Ordering::Relaxed);
    }

    /// The gateway drains (takes no new broadcasts) from now on: not ready.
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    /// The failing checks, one line each (empty: ready).
    pub async fn failures(&self) -> Vec<String> {
        let mut failed = Vec::new();
        if !self.listeners.load(Ordering::Relaxed) {
            failed.push("listeners: not serving (starting or shutting down)".to_owned());
        }
        if self.draining.load(Ordering::Relaxed) {
            failed.push("draining: no new broadcasts; exits when the running ones end".to_owned());
        }
        let dir = self.data_dir.clone();
        let probe = tokio::time::timeout(
            CHECK_TIMEOUT,
            tokio::task::spawn_blocking(move || probe_write(&dir)),
        )
        .await;
        match probe {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => failed.push(format!(
                "store: cannot write {}: {e}",
                self.data_dir.join(PROBE_FILE).display()
            )),
            Ok(Err(e)) => failed.push(format!("store: write probe failed: {e}")),
            Err(_) => failed.push(format!(
                "store: writing {} took over {CHECK_TIMEOUT:?}",
                self.data_dir.join(PROBE_FILE).display()
            )),
        }
        match tokio::time::timeout(CHECK_TIMEOUT, self.store.count_access_tokens()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => failed.push(format!("store: database query failed: {e}")),
            Err(_) => failed.push(format!(
                "store: database did not answer in {CHECK_TIMEOUT:?}"
            )),
        }
        match free_bytes(&self.data_dir) {
            Ok(free) if free >= MIN_FREE_BYTES => {}
            Ok(free) => failed.push(format!(
                "disk: {} MiB free in {}, below {} MiB",
                free / (1024 * 1024),
                self.data_dir.display(),
                MIN_FREE_BYTES / (1024 * 1024)
            )),
            Err(e) => failed.push(format!(
                "disk: cannot read free space of {}: {e}",
                self.data_dir.display()
            )),
        }
        failed
    }
}

/// Writes, syncs and removes the probe file: a read-only file system, a full disk, lost
/// permissions or a path that cannot be a file all fail here, as the database and the
/// recordings would.
fn probe_write(dir: &Path) -> std::io::Result<()> {
    use std::io::Write as _;
    let path = dir.join(PROBE_FILE);
    let mut file = std::fs::File::create(&path)?;
    file.write_all(b"ready?\n")?;
    file.sync_data()?;
    drop(file);
    std::fs::remove_file(&path)
}

/// Bytes available to an unprivileged user on the file system of `dir`.
fn free_bytes(dir: &Path) -> std::io::Result<u64> {
    let stat = rustix::fs::statvfs(dir)?;
    Ok(stat.f_bavail.saturating_mul(stat.f_frsize))
}

#[derive(Debug, Clone)]
struct AppState {
    metrics: Metrics,
    readiness: Arc<Readiness>,
}

/// `/metrics`, `/healthz`, `/readyz`.
pub fn router(metrics: Metrics, readiness: Arc<Readiness>) -> Router {
    Router::new()
        .route("/metrics", get(scrape))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(AppState { metrics, readiness })
}

async fn scrape(State(state): State<AppState>) -> Response {
    let text = state.metrics.render();
    ([(header::CONTENT_TYPE, Metrics::content_type())], text).into_response()
}

async fn healthz() -> Response {
    plain(StatusCode::OK, "ok\n".to_owned())
}

async fn readyz(State(state): State<AppState>) -> Response {
    let failed = state.readiness.failures().await;
    if failed.is_empty() {
        return plain(StatusCode::OK, "ready\n".to_owned());
    }
    let mut body = String::from("not ready\n");
    for line in failed {
        body.push_str(&line);
        body.push('\n');
    }
    plain(StatusCode::SERVICE_UNAVAILABLE, body)
}

fn plain(status: StatusCode, body: String) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}
