//! The SRT listener (OnAir's driver around srt-protocol, supervised), the two-step admission
//! of each caller, and the connection tasks.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use session::{
    redact_stream_key, IngestEvent, IngestProtocol, PublishGrant, PublishRejection, PublishRequest,
    SrtAdmission,
};
use srt_protocol::options::Passphrase;
use srt_protocol::packet::{RejectReason, ServerRejectReason};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, Semaphore};
use tokio::time::{timeout, Instant};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::config::SrtConfig;
use crate::driver::{self, Request, SrtConnection};
use crate::error::ConnectionError;
use crate::sink::{PayloadSink, SinkFactory};
use crate::stream_id::{parse_stream_id, StreamIdError};

/// How long closing an SRT connection (its shutdown exchange) may take.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// The UDP receive buffer asked for: seconds of a few dozen 3-6 Mbit/s publishers, so a
/// scheduling hiccup of the listener task does not drop datagrams (the kernel caps it at
/// `net.core.rmem_max`).
const RECV_BUFFER: usize = 8 << 20;

/// A bound SRT listener, not yet serving: bind first (the binary fails before serving when
/// the port is taken), then [`SrtServer::serve`].
#[derive(Debug)]
pub struct SrtServer {
    socket: Arc<UdpSocket>,
    local_addr: SocketAddr,
    config: SrtConfig,
    /// [`SrtConfig::pacing`], replaceable while serving ([`SrtServer::pacing`]).
    pacing: session::Reloadable<session::PacingConfig>,
    metrics: metrics::ListenerMetrics,
}

impl SrtServer {
    /// Binds the UDP port (`0.0.0.0:6001` by default, see
    /// [`DEFAULT_SRT_ADDR`](crate::DEFAULT_SRT_ADDR); port 0 picks a free one).
    pub async fn bind(addr: SocketAddr, config: SrtConfig) -> io::Result<SrtServer> {
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::DGRAM,
            Some(socket2::Protocol::UDP),
        )?;
        if let Err(e) = socket.set_recv_buffer_size(RECV_BUFFER) {
            tracing::warn!(error = %e, "could not enlarge the SRT socket's receive buffer");
        }
        socket.set_nonblocking(true)?;
        socket.bind(&addr.into())?;
        let socket = UdpSocket::from_std(socket.into())?;
        let local_addr = socket.local_addr()?;
        Ok(SrtServer {
            socket: Arc::new(socket),
            local_addr,
            pacing: session::Reloadable::new(config.pacing),
            config,
            metrics: metrics::Metrics::new().listener("srt"),
        })
    }

    /// Counts its connections in `metrics` (a registry of its own otherwise).
    pub fn with_metrics(mut self, metrics: metrics::ListenerMetrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// The pacing of publishers, to replace while serving (a configuration reload): each
    /// publisher admitted afterwards is paced with the new values.
    pub fn pacing(&self) -> session::Reloadable<session::PacingConfig> {
        self.pacing.clone()
    }

    /// The bound address (with the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Accepts SRT callers until `shutdown` is cancelled, then waits for their connections to
    /// close (each one stops at once on shutdown).
    ///
    /// The listener ([`driver::run`]) catches what srt-protocol could panic on, so it is not
    /// expected to end; if it ever does (a bug), this loop logs it and starts it again on the
    /// same socket after [`SrtConfig::rebind_backoff`]. Its connections end with it (they
    /// receive their packets through it); encoders reconnect.
    pub async fn serve<A, F>(self, admission: A, sinks: F, shutdown: CancellationToken)
    where
        A: SrtAdmission,
        F: SinkFactory,
    {
        let SrtServer {
            socket,
            local_addr,
            config,
            pacing,
            metrics,
        } = self;
        tracing::info!(addr = %local_addr, protocol = "srt", "listening for publishers");
        let shared = Arc::new(Shared {
            admission,
            sinks,
            slots: Arc::new(Semaphore::new(config.max_connections)),
            config,
            pacing,
            metrics,
            shutdown: shutdown.clone(),
        });
        let tracker = TaskTracker::new();
        let mut starts = 0u64;
        loop {
            starts += 1;
            if starts > 1 {
                tracing::warn!(addr = %local_addr, starts, "SRT listener started again");
            }
            let (requests_tx, mut requests) = mpsc::channel(64);
            let listener_stop = shutdown.child_token();
            let mut listener = tokio::spawn(driver::run(
                Arc::clone(&socket),
                requests_tx,
                listener_stop.clone(),
            ));
            let stopped = loop {
                tokio::select! {
                    biased;
                    _ = shutdown.cancelled() => break true,
                    request = requests.recv() => match request {
                        // Each in a task of its own: the listener never waits for an
                        // admission.
                        Some(request) => {
                            tracker.spawn(handle_request(request, Arc::clone(&shared)));
                        }
                        None => break false,
                    },
                    ended = &mut listener => {
                        if let Err(e) = ended {
                            tracing::error!(addr = %local_addr, error = %e, "the SRT listener task failed");
                        }
                        break false;
                    }
                }
            };
            listener_stop.cancel();
            let _ = listener.await;
            if stopped {
                break;
            }
            tracing::error!(
                addr = %local_addr,
                "the SRT listener ended; its connections are lost; starting it again"
            );
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(shared.config.rebind_backoff) => {}
            }
        }
        tracker.close();
        let open = tracker.len();
        if open > 0 {
            tracing::info!(protocol = "srt", open, "waiting for connections to close");
        }
        tracker.wait().await;
        tracing::info!(protocol = "srt", "listener stopped");
    }
}

/// What every request task shares.
struct Shared<A, F> {
    admission: A,
    sinks: F,
    config: SrtConfig,
    pacing: session::Reloadable<session::PacingConfig>,
    slots: Arc<Semaphore>,
    shutdown: CancellationToken,
    metrics: metrics::ListenerMetrics,
}

/// The SRT reject reason for a refused publish (the log says more; the peer never learns
/// whether a key exists).
pub fn reject_reason(rejection: &PublishRejection) -> RejectReason {
    match rejection {
        PublishRejection::UnknownStreamKey | PublishRejection::Disabled => {
            RejectReason::Server(ServerRejectReason::Forbidden)
        }
        PublishRejection::AlreadyPublishing => RejectReason::Server(ServerRejectReason::Conflict),
        PublishRejection::ShuttingDown | PublishRejection::Draining => {
            RejectReason::Server(ServerRejectReason::Down)
        }
        PublishRejection::Internal(_) => {
            RejectReason::Server(ServerRejectReason::InternalServerError)
        }
    }
}

/// How a caller's request ended before media flowed, for the log.
enum Refusal {
    /// Refused with an SRT reject reason.
    Rejected(RejectReason, String),
    /// The caller never connected or went away.
    Gone(String),
}

async fn handle_request<A: SrtAdmission, F: SinkFactory>(
    request: Request,
    shared: Arc<Shared<A, F>>,
) {
    let peer = request.remote();
    let span = tracing::info_span!(
        "srt_connection",
        %peer,
        protocol = "srt",
        live_stream_id = tracing::field::Empty,
    );
    async move {
        let Ok(permit) = Arc::clone(&shared.slots).try_acquire_owned() else {
            shared.metrics.refused("connection_limit");
            reject(
                request,
                RejectReason::Server(ServerRejectReason::Overload),
                "connection limit reached",
            )
            .await;
            return;
        };
        match admit(request, &shared).await {
            Err(Refusal::Rejected(reason, why)) => {
                tracing::info!(?reason, why = %why, "caller refused");
            }
            Err(Refusal::Gone(why)) => tracing::info!(why = %why, "caller not connected"),
            Ok((socket, grant, key)) => {
                let _open = shared.metrics.connection();
                tracing::Span::current().record("live_stream_id", grant.live_stream_id.as_str());
                tracing::info!(key = %redact_stream_key(&key), "publishing");
                let sink = shared.sinks.new_sink(&grant.live_stream_id);
                let started = Instant::now();
                let mut connection = Connection {
                    socket,
                    grant,
                    sink,
                    pacer: session::Pacer::new(shared.pacing.get()),
                    batcher: session::MediaBatcher::new(),
                    payloads: 0,
                    bytes: 0,
                };
                let result = connection.run(&shared.shutdown).await;
                connection.socket.close(CLOSE_GRACE).await;
                let seconds = started.elapsed().as_secs();
                match result {
                    Ok(()) => tracing::info!(
                        payloads = connection.payloads,
                        bytes = connection.bytes,
                        seconds,
                        "publisher disconnected"
                    ),
                    Err(e @ ConnectionError::Media(_)) => tracing::warn!(
                        error = %e,
                        payloads = connection.payloads,
                        bytes = connection.bytes,
                        seconds,
                        "publisher disconnected: bad input"
                    ),
                    Err(e) => tracing::info!(
                        reason = %e,
                        payloads = connection.payloads,
                        bytes = connection.bytes,
                        seconds,
                        "publisher disconnected"
                    ),
                }
            }
        }
        drop(permit);
    }
    .instrument(span)
    .await;
}

/// Sends a rejection (the listener turns it into a handshake reply with the reason).
async fn reject(request: Request, reason: RejectReason, why: &str) {
    tracing::info!(?reason, why, "caller refused");
    request.reject(reason).await;
}

/// The two-step admission: streamid and encryption, then the passphrase lookup, then the
/// handshake with the caller's key size (srt-protocol checks its key material), then the
/// session's `publish`.
async fn admit<A: SrtAdmission, F>(
    request: Request,
    shared: &Shared<A, F>,
) -> Result<(SrtConnection, PublishGrant, String), Refusal> {
    let peer = request.remote();
    let refuse = |reason: RejectReason, why: String| Refusal::Rejected(reason, why);
    let parsed = match request.stream_id() {
        None => Err(StreamIdError::NoKey),
        Some(sid) => parse_stream_id(sid),
    };
    let key = match parsed {
        Ok(key) => key,
        Err(e) => {
            let reason = match e {
                StreamIdError::NotPublish(_) => ServerRejectReason::BadMode,
                StreamIdError::NoKey => ServerRejectReason::BadRequest,
            };
            request.reject(RejectReason::Server(reason)).await;
            return Err(refuse(RejectReason::Server(reason), e.to_string()));
        }
    };
    tracing::info!(key = %redact_stream_key(&key), key_size = ?request.key_size(), "publish requested");

    // Every OnAir stream has a passphrase, and `Request::accept` always answers with the key
    // size the caller announced (srt-protocol panics on a mismatch, and on accepting a caller
    // that sends key material without a passphrase). libsrt callers that leave `pbkeylen` at
    // its default (ffmpeg without `pbkeylen`) announce no key size (`Unspecified`) yet send
    // 16-byte key material, which srt-protocol unwraps as 16 bytes; a caller without any key
    // material is refused with `Core(Unsecure)`.
    let limit = shared.config.admission_timeout;
    let lookup = tokio::select! {
        biased;
        _ = shared.shutdown.cancelled() => Err(PublishRejection::ShuttingDown),
        r = timeout(limit, shared.admission.srt_passphrase(&key)) => r.unwrap_or_else(|_| {
            Err(PublishRejection::Internal(format!("passphrase lookup did not answer within {limit:?}")))
        }),
    };
    let passphrase = match lookup.and_then(|p| {
        Passphrase::try_from(p).map_err(|e| {
            PublishRejection::Internal(format!("the stream's SRT passphrase is unusable: {e}"))
        })
    }) {
        Ok(passphrase) => passphrase,
        Err(rejection) => {
            let reason = reject_reason(&rejection);
            request.reject(reason).await;
            return Err(refuse(reason, rejection.to_string()));
        }
    };

    // A wrong passphrase fails here: srt-protocol cannot unwrap the caller's key material,
    // answers the handshake with `Core(BadSecret)` and `accept` returns an error.
    // Bounded: srt-protocol never finishes a conclusion that lacks the SRT handshake
    // extension (it answers `NotHandled` and keeps the request).
    let accepted = timeout(limit, request.accept(passphrase))
        .await
        .unwrap_or_else(|_| {
            Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the handshake did not finish in time",
            ))
        });
    let socket = match accepted {
        Ok(socket) => socket,
        Err(e) => {
            return Err(Refusal::Gone(format!(
                "handshake not completed ({e}): wrong passphrase (refused with BadSecret), no \
                 encryption (refused with Unsecure), or the caller went away"
            )))
        }
    };

    let publish = PublishRequest {
        stream_key: key.clone(),
        protocol: IngestProtocol::Srt,
        peer,
    };
    let decision = tokio::select! {
        biased;
        _ = shared.shutdown.cancelled() => Err(PublishRejection::ShuttingDown),
        r = timeout(limit, shared.admission.publish(publish)) => r.unwrap_or_else(|_| {
            Err(PublishRejection::Internal(format!("admission did not answer within {limit:?}")))
        }),
    };
    match decision {
        Ok(grant) => Ok((socket, grant, key)),
        Err(rejection) => {
            // The handshake is over: SRT has no reject after it, only a close. The
            // pre-check above refuses the usual cases (unknown, disabled, already live) with
            // a reason; this is the race it cannot see.
            let mut socket = socket;
            socket.close(CLOSE_GRACE).await;
            Err(Refusal::Gone(format!(
                "publish refused after the handshake, connection closed: {rejection}"
            )))
        }
    }
}

/// One admitted caller: payloads from the socket into the sink, events to the session.
struct Connection<S> {
    socket: SrtConnection,
    grant: PublishGrant,
    sink: S,
    pacer: session::Pacer,
    /// Media on its way to the session.
    batcher: session::MediaBatcher,
    payloads: u64,
    bytes: u64,
}

impl<S: PayloadSink> Connection<S> {
    async fn run(&mut self, shutdown: &CancellationToken) -> Result<(), ConnectionError> {
        let result = self.run_inner(shutdown).await;
        // What the caller sent is recorded, however the connection ended (unless the session
        // let it go: then nobody takes it).
        if let Some(message) = self.batcher.take() {
            if let Ok(Some(message)) = self.grant.media.try_send(message) {
                let _ = timeout(CLOSE_GRACE, self.grant.media.send(message)).await;
            }
        }
        result
    }

    async fn run_inner(&mut self, shutdown: &CancellationToken) -> Result<(), ConnectionError> {
        // Shutdown and the kick, watched by a task of their own: a caller sends hundreds of
        // payloads a second, and polling two cancellation tokens for each showed up in
        // profiles (see `session::ingest::watch_cancellation`).
        let (_, no_later) = tokio::sync::oneshot::channel();
        let mut stop = session::ingest::watch_cancellation(
            shutdown.child_token(),
            self.grant.kick.clone(),
            no_later,
        );
        let stopped = || {
            if shutdown.is_cancelled() {
                ConnectionError::Shutdown
            } else {
                ConnectionError::Kicked
            }
        };
        // Fires when media the batcher holds must go although the caller went quiet.
        let quiet = tokio::time::sleep(Duration::ZERO);
        tokio::pin!(quiet);
        let mut armed = false;
        loop {
            let item = tokio::select! {
                biased;
                _ = &mut stop => return Err(stopped()),
                () = &mut quiet, if armed => {
                    armed = false;
                    if let Some(message) = self.batcher.take() {
                        self.send(message).await?;
                    }
                    continue;
                }
                item = self.socket.recv() => item,
            };
            match item {
                // The caller closed, or its peer idle timeout (5 s without a packet) expired.
                Ok(None) => break,
                Err(e) => return Err(ConnectionError::Io(e)),
                Ok(Some(payload)) => {
                    let now = Instant::now();
                    self.payloads += 1;
                    self.bytes += payload.len() as u64;
                    self.pacer.handle_bytes(payload.len(), now);
                    let events = self.sink.handle_payload(payload)?;
                    self.forward(events, now).await?;
                    if !armed {
                        if let Some(deadline) = self.batcher.deadline() {
                            quiet.as_mut().reset(deadline);
                            armed = true;
                        }
                    }
                    // Real-time pacing (session::pacing): a caller ahead of the wall clock or
                    // over the bitrate ceiling is not read until it is back within bounds;
                    // meanwhile its packets queue and then drop, as under backpressure.
                    if let Some(until) = self.pacer.resume_at(Instant::now()) {
                        tokio::select! {
                            biased;
                            _ = &mut stop => return Err(stopped()),
                            () = tokio::time::sleep_until(until) => {}
                        }
                    }
                }
            }
        }
        let last = self.sink.finish();
        self.forward(last, Instant::now()).await
    }

    /// Hands events to the batcher, and what it gives back to the session.
    async fn forward(
        &mut self,
        events: Vec<media::DemuxEvent>,
        now: Instant,
    ) -> Result<(), ConnectionError> {
        for event in events {
            if let media::DemuxEvent::Frame(frame) = &event {
                self.pacer.handle_frame(frame, now);
            }
            if let Some(message) = self.batcher.push(event, now) {
                self.send(message).await?;
            }
        }
        Ok(())
    }

    /// Backpressure, as for RTMP: the connection waits for the session's channel
    /// ([`session::ingest::INGEST_CHANNEL_CAPACITY`] batches, seconds of media). While it
    /// waits, the listener queues this caller's packets and then drops them (SRT retransmits
    /// within its latency, or the caller drops what is too late); other callers are not held
    /// up.
    async fn send(&mut self, message: IngestEvent) -> Result<(), ConnectionError> {
        self.grant
            .media
            .send(message)
            .await
            .map_err(|_| ConnectionError::SessionGone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_map_to_srt_reasons_without_revealing_which_keys_exist() {
        let server = |r| RejectReason::Server(r);
        assert_eq!(
            reject_reason(&PublishRejection::UnknownStreamKey),
            server(ServerRejectReason::Forbidden)
        );
        assert_eq!(
            reject_reason(&PublishRejection::Disabled),
            server(ServerRejectReason::Forbidden)
        );
        assert_eq!(
            reject_reason(&PublishRejection::AlreadyPublishing),
            server(ServerRejectReason::Conflict)
        );
        assert_eq!(
            reject_reason(&PublishRejection::ShuttingDown),
            server(ServerRejectReason::Down)
        );
        assert_eq!(
            reject_reason(&PublishRejection::Internal("x".into())),
            server(ServerRejectReason::InternalServerError)
        );
    }
}
