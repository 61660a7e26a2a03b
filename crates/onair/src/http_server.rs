//! The HTTP listener (API and HLS playback), with the limits `axum::serve` leaves open.
//!
//! `axum::serve` reads request headers without a deadline, keeps idle connections forever,
//! accepts without a cap and writes to a reader that takes one byte a second for as long as
//! it likes. This loop serves the same router on hyper's HTTP/1 connection directly:
//! - **header read timeout** ([`HttpLimits::header_read_timeout`]): from the moment the
//!   server waits for a request (a new connection, or the next request on a keep-alive
//!   connection) its headers must be complete within this time, so a silent, slowloris or
//!   idle keep-alive connection is closed after it;
//! - **connection cap** ([`HttpLimits::max_connections`]): beyond it, new connections are
//!   closed at once (rate-limited warning);
//! - **slow readers** ([`HttpLimits::min_send_rate`], [`HttpLimits::send_window`]): while a
//!   response cannot be written because the peer does not read, the peer must take at least
//!   `min_send_rate` bytes a second over each `send_window`, or the connection is closed;
//! - **kernel memory** ([`HttpLimits::send_buffer`]): accepted sockets inherit a fixed send
//!   buffer from the listener instead of the kernel's auto-tuning (up to 4 MiB each).
//!
//! Each request carries the peer's address as axum's `ConnectInfo<SocketAddr>`, for the
//! API's per-address limit on failed authentication.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_service::Service as _;
use tracing::{info, warn};

/// A request's headers must be complete this long after the server starts waiting for it
/// (also the longest a keep-alive connection may stay idle). Players ask for a playlist or a
/// segment every few seconds; API clients send whole requests at once.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections served at once; more are closed on accept.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;

/// The slowest a peer may read a response it is being sent (bytes per second, measured over
/// [`DEFAULT_SEND_WINDOW`] while the socket is full). 4 KiB/s is 32 kbit/s, below any
/// rendition a player could keep up with.
pub const DEFAULT_MIN_SEND_RATE: u64 = 4096;

/// The window [`DEFAULT_MIN_SEND_RATE`] is measured over: a reader that takes nothing for
/// this long is disconnected.
pub const DEFAULT_SEND_WINDOW: Duration = Duration::from_secs(10);

/// Send buffer of each HTTP socket (the kernel doubles it for bookkeeping). 256 KiB keeps a
/// segment flowing at over 40 Mbit/s at 50 ms round trip, and bounds what a slow reader pins.
pub const DEFAULT_SEND_BUFFER: u32 = 256 * 1024;

/// How long shutdown lets responses in progress finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// How often, at most, refused connections are logged while the cap is reached.
const LIMIT_LOG_INTERVAL: Duration = Duration::from_secs(1);

/// The limits of the HTTP listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// See [`DEFAULT_HEADER_READ_TIMEOUT`].
    pub header_read_timeout: Duration,
    /// See [`DEFAULT_MAX_CONNECTIONS`].
    pub max_connections: usize,
    /// See [`DEFAULT_MIN_SEND_RATE`]; 0 turns the check off.
    pub min_send_rate: u64,
    /// See [`DEFAULT_SEND_WINDOW`].
    pub send_window: Duration,
    /// See [`DEFAULT_SEND_BUFFER`]; 0 leaves the kernel's auto-tuning.
    pub send_buffer: u32,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            min_send_rate: DEFAULT_MIN_SEND_RATE,
            send_window: DEFAULT_SEND_WINDOW,
            send_buffer: DEFAULT_SEND_BUFFER,
        }
    }
}

impl HttpLimits {
    /// Checks the values; called once before binding.
    pub fn validate(&self) -> Result<(), String> {
        if self.header_read_timeout < Duration::from_millis(100) {
            return Err("http header_read_timeout must be at least 0.1 s".into());
        }
        if self.max_connections == 0 {
            return Err("http max_connections must be at least 1".into());
        }
        if self.send_window < Duration::from_secs(1) {
            return Err("http send_window must be at least 1 s".into());
        }
        if self.send_buffer != 0 && self.send_buffer < 4096 {
            return Err("http send_buffer must be 0 (kernel default) or at least 4096".into());
        }
        Ok(())
    }
}

/// Binds the HTTP listener with [`HttpLimits::send_buffer`] set on the listening socket
/// (accepted sockets inherit it).
pub fn bind(addr: SocketAddr, limits: &HttpLimits) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    if limits.send_buffer > 0 {
        socket.set_send_buffer_size(limits.send_buffer)?;
    }
    socket.bind(addr)?;
    socket.listen(1024)
}

/// Serves `app` on `listener` until `shutdown`, then lets responses in progress finish for a
/// few seconds. `limits` is read at each accept: a configuration reload changes them for the
/// connections accepted afterwards (except [`HttpLimits::send_buffer`], a socket option of
/// the listening socket, set by [`bind`]).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: session::Reloadable<HttpLimits>,
    metrics: metrics::ListenerMetrics,
    shutdown: CancellationToken,
) {
    // Open connections; each one's task holds an `OpenConnection` that counts it.
    let open = Arc::new(AtomicUsize::new(0));
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
                    // Out of file descriptors, usually: back off instead of spinning.
                    warn!(error = %e, "http accept failed");
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(Duration::from_millis(100)) => continue,
                    }
                }
            },
        };
        let limits = limits.get();
        if open.load(Ordering::Relaxed) >= limits.max_connections {
            metrics.refused("connection_limit");
            refused += 1;
            if last_refusal_log.is_none_or(|t| t.elapsed() >= LIMIT_LOG_INTERVAL) {
                warn!(%peer, max_connections = limits.max_connections, refused, "http connection limit reached: closing new connections");
                last_refusal_log = Some(Instant::now());
            }
            drop(tcp);
            continue;
        }
        let permit = OpenConnection::new(&open);
        let app = app.clone();
        let shutdown = shutdown.clone();
        let open = metrics.connection();
        tracker.spawn(async move {
            serve_connection(tcp, peer, app, limits, shutdown).await;
            drop((permit, open));
        });
    }
    drop(listener);
    tracker.close();
    tracker.wait().await;
    info!("http listener stopped");
}

/// Counts one open connection while it lives (only the accept loop creates them, so the
/// check and the increment need no lock).
struct OpenConnection(Arc<AtomicUsize>);

impl OpenConnection {
    fn new(open: &Arc<AtomicUsize>) -> Self {
        open.fetch_add(1, Ordering::Relaxed);
        OpenConnection(Arc::clone(open))
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn serve_connection(
    tcp: TcpStream,
    peer: SocketAddr,
    app: Router,
    limits: HttpLimits,
    shutdown: CancellationToken,
) {
    let io = TokioIo::new(SlowReaderGuard::new(tcp, limits));
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        app.clone().call(request)
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .serve_connection(io, service)
        .with_upgrades();
    tokio::pin!(connection);
    let result = tokio::select! {
        r = connection.as_mut() => r,
        _ = shutdown.cancelled() => {
            connection.as_mut().graceful_shutdown();
            match tokio::time::timeout(SHUTDOWN_GRACE, connection.as_mut()).await {
                Ok(r) => r,
                Err(_) => return,
            }
        }
    };
    if let Err(e) = result {
        // Timeouts, resets and slow readers are the peer's business: debug only.
        tracing::debug!(%peer, error = %e, "http connection ended");
    }
}

/// Closes a connection whose peer reads responses slower than [`HttpLimits::min_send_rate`]:
/// a window starts when a write finds the socket full; if fewer than `min_send_rate` x
/// `send_window` bytes were written when it ends, writing fails with `TimedOut`. A peer that
/// reads fast enough never has the socket full for long; an idle connection has nothing to
/// write and is left to the header read timeout.
struct SlowReaderGuard {
    inner: TcpStream,
    min_bytes: u64,
    window: Duration,
    /// The window in progress: its end, and the bytes written since it started.
    current: Option<(Pin<Box<Sleep>>, u64)>,
}

impl SlowReaderGuard {
    fn new(inner: TcpStream, limits: HttpLimits) -> Self {
        SlowReaderGuard {
            inner,
            min_bytes: limits
                .min_send_rate
                .saturating_mul(limits.send_window.as_secs()),
            window: limits.send_window,
            current: None,
        }
    }

    /// After the inner write returned `Pending`: starts a window, or judges the one that
    /// ended (registering the timer so the task wakes when it ends).
    fn poll_window(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        loop {
            let Some((end, written)) = &mut self.current else {
                let end = Box::pin(tokio::time::sleep(self.window));
                self.current = Some((end, 0));
                continue;
            };
            ready!(end.as_mut().poll(cx));
            if *written < self.min_bytes {
                return Poll::Ready(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "peer reads slower than the minimum send rate",
                ));
            }
            self.current = None;
        }
    }

    fn wrote(&mut self, n: usize) {
        if let Some((end, written)) = &mut self.current {
            if end.is_elapsed() {
                // The socket took data after the window ended: it was not full all along (a
                // peer that stays behind is caught when the timer wakes the blocked write).
                // The next full socket starts a new window.
                self.current = None;
            } else {
                *written += n as u64;
            }
        }
    }
}

impl AsyncRead for SlowReaderGuard {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for SlowReaderGuard {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_write(cx, buf) {
            Poll::Ready(Ok(n)) => {
                this.wrote(n);
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => match this.poll_window(cx) {
                Poll::Ready(e) => Poll::Ready(Err(e)),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_write_vectored(cx, bufs) {
            Poll::Ready(Ok(n)) => {
                this.wrote(n);
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => match this.poll_window(cx) {
                Poll::Ready(e) => Poll::Ready(Err(e)),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
