//! The accept loop: one task per connection, a connection limit, structured shutdown.

use std::sync::Arc;
use std::time::Duration;

use session::{Admission, IngestProtocol, IngestRuntimes};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{RtmpConfig, SharedRtmpConfig};
use crate::connection::{self, protocol_name, Listener};
use crate::slots::{SlotLimits, Slots};

/// Pause after a failed `accept` (out of file descriptors, for example) before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// How often, at most, refused connections are logged while the limit is reached.
const LIMIT_LOG_INTERVAL: Duration = Duration::from_secs(1);

/// Accepts RTMP publishers on `listener` until `shutdown` is cancelled, then waits for its
/// connections to close (each one stops at once on shutdown).
///
/// With `tls: Some`, this is the RTMPS listener: connections are TLS first and publish
/// requests carry [`IngestProtocol::Rtmps`]. Each connection runs in its own task; a peer's
/// error, timeout or panic ends only that connection. When [`RtmpConfig::max_connections`]
/// are open, a new connection closes the oldest one that is not admitted yet, and is itself
/// closed at once only when every connection is an admitted publisher (see `slots`).
/// `metrics` counts accepted, open and refused connections (`connection_limit`). Connections
/// run on `runtimes` (the accept loop itself runs where it is spawned).
pub async fn serve<A: Admission>(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    admission: A,
    config: impl Into<SharedRtmpConfig>,
    metrics: metrics::ListenerMetrics,
    runtimes: IngestRuntimes,
    shutdown: CancellationToken,
) {
    let protocol = if tls.is_some() {
        IngestProtocol::Rtmps
    } else {
        IngestProtocol::Rtmp
    };
    let name = protocol_name(protocol);
    match listener.local_addr() {
        Ok(addr) => tracing::info!(%addr, protocol = name, "listening for publishers"),
        Err(e) => tracing::warn!(error = %e, protocol = name, "listening (address unknown)"),
    }
    let config: SharedRtmpConfig = config.into();
    let mut limits = slot_limits(&config.get());
    let slots = Slots::new(limits);
    let shared = Arc::new(Listener {
        admission,
        config,
        tls,
        protocol,
        shutdown: shutdown.clone(),
    });
    let tracker = TaskTracker::new();
    let mut refused = 0u64;
    let mut last_refusal_log: Option<Instant> = None;
    loop {
        let (tcp, peer) = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, protocol = name, "accept failed");
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(ACCEPT_BACKOFF) => continue,
                    }
                }
            },
        };
        // The configuration of this connection: a reload applies from the next accept on.
        let config = shared.config.get();
        if slot_limits(&config) != limits {
            limits = slot_limits(&config);
            slots.set_limits(limits);
        }
        let max_connections = limits.max_connections;
        let Some(slot) = slots.open(peer.ip()) else {
            metrics.refused("connection_limit");
            refused += 1;
            if last_refusal_log.is_none_or(|t| t.elapsed() >= LIMIT_LOG_INTERVAL) {
                tracing::warn!(
                    %peer,
                    protocol = name,
                    max_connections,
                    refused,
                    "connection limit reached, every connection is a publisher: closing new connections"
                );
                last_refusal_log = Some(Instant::now());
            }
            drop(tcp);
            continue;
        };
        // Replies are small and latency matters more than packet count.
        let _ = tcp.set_nodelay(true);
        let shared = Arc::clone(&shared);
        let open = metrics.connection();
        if runtimes.threads() == 0 {
            tracker.spawn(async move {
                connection::run(tcp, peer, shared, slot, config).await;
                drop(open);
            });
            continue;
        }
        // To another runtime: the socket leaves this runtime's reactor and joins that one's.
        let tcp = match tcp.into_std() {
            Ok(tcp) => tcp,
            Err(e) => {
                tracing::warn!(%peer, error = %e, protocol = name, "cannot hand the connection over");
                continue;
            }
        };
        let tracked = tracker.token();
        runtimes.spawn(move || async move {
            match TcpStream::from_std(tcp) {
                Ok(tcp) => connection::run(tcp, peer, shared, slot, config).await,
                Err(e) => {
                    tracing::warn!(%peer, error = %e, "cannot register the connection");
                }
            }
            drop(open);
            drop(tracked);
        });
    }
    drop(listener);
    tracker.close();
    let open = tracker.len();
    if open > 0 {
        tracing::info!(protocol = name, open, "waiting for connections to close");
    }
    tracker.wait().await;
    tracing::info!(protocol = name, "listener stopped");
}

fn slot_limits(config: &RtmpConfig) -> SlotLimits {
    SlotLimits {
        max_connections: config.max_connections,
        max_unadmitted_per_address: config.max_unadmitted_per_address,
        max_unadmitted_bytes: config.max_unadmitted_bytes,
    }
}
