//! The supervised srt-tokio listener, the two-step admission of each caller, and the
//! connection tasks.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use session::{
    redact_stream_key, IngestEvent, IngestProtocol, PublishGrant, PublishRejection, PublishRequest,
    SrtAdmission,
};
use srt_protocol::options::Passphrase;
use srt_protocol::packet::{RejectReason, ServerRejectReason};
use srt_protocol::settings::KeySettings;
use srt_tokio::{ConnectionRequest, SrtIncoming, SrtListener, SrtSocket};
use tokio::net::UdpSocket;
use tokio::sync::Semaphore;
use tokio::time::{timeout, Instant};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::config::SrtConfig;
use crate::error::ConnectionError;
use crate::sink::{PayloadSink, SinkFactory};
use crate::stream_id::{parse_stream_id, StreamIdError};

/// How long closing an SRT socket (its shutdown message) may take.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// A bound SRT listener, not yet serving: bind first (the binary fails before serving when
/// the port is taken), then [`SrtServer::serve`].
#[derive(Debug)]
pub struct SrtServer {
    socket: UdpSocket,
    local_addr: SocketAddr,
    config: SrtConfig,
}

impl SrtServer {
    /// Binds the UDP port (`0.0.0.0:6001` by default, see
    /// [`DEFAULT_SRT_ADDR`](crate::DEFAULT_SRT_ADDR); port 0 picks a free one).
    pub async fn bind(addr: SocketAddr, config: SrtConfig) -> io::Result<SrtServer> {
        let socket = UdpSocket::bind(addr).await?;
        let local_addr = socket.local_addr()?;
        Ok(SrtServer {
            socket,
            local_addr,
            config,
        })
    }

    /// The bound address (with the real port when bound to port 0). A rebind after the
    /// listener died binds this same address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Accepts SRT callers until `shutdown` is cancelled, then waits for their connections to
    /// close (each one stops at once on shutdown).
    ///
    /// The srt-tokio listener runs in a task of its own, which a hostile or unusual handshake
    /// can panic (see the crate documentation). When it dies, its connections die with it
    /// (they receive their packets through it); this loop logs the death and binds the same
    /// address again, so later callers are served.
    pub async fn serve<A, F>(self, admission: A, sinks: F, shutdown: CancellationToken)
    where
        A: SrtAdmission,
        F: SinkFactory,
    {
        let SrtServer {
            socket,
            local_addr,
            config,
        } = self;
        tracing::info!(addr = %local_addr, protocol = "srt", "listening for publishers");
        let shared = Arc::new(Shared {
            admission,
            sinks,
            slots: Arc::new(Semaphore::new(config.max_connections)),
            config,
            shutdown: shutdown.clone(),
        });
        let tracker = TaskTracker::new();
        let mut socket = Some(socket);
        let mut binds = 0u64;
        loop {
            let (listener, mut incoming) = match start_listener(socket.take(), local_addr).await {
                Ok(started) => started,
                Err(e) => {
                    tracing::error!(addr = %local_addr, error = %e, "SRT listener failed to start; retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(shared.config.rebind_backoff) => continue,
                    }
                }
            };
            binds += 1;
            if binds > 1 {
                tracing::warn!(addr = %local_addr, binds, "SRT listener bound again");
            }
            let requests = incoming.incoming();
            let stopped = loop {
                tokio::select! {
                    biased;
                    _ = shutdown.cancelled() => break true,
                    request = requests.next() => match request {
                        Some(request) => {
                            // Handled in a task of its own at once: srt-tokio's listener waits
                            // (and stops delivering every connection's packets) while its
                            // queue of requests is full.
                            let shared = Arc::clone(&shared);
                            tracker.spawn(handle_request(request, shared));
                        }
                        None => break false,
                    },
                }
            };
            // Dropping the listener closes its task (its close channel's sender goes).
            // `SrtListener::close` is not used: it unwraps the task's result, so it panics
            // itself when the task had panicked.
            drop(incoming);
            drop(listener);
            if stopped {
                break;
            }
            tracing::error!(
                addr = %local_addr,
                "the srt-tokio listener task ended (it panicked on a peer's packet); its \
                 connections are lost; binding again"
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

/// Starts srt-tokio's listener on `socket`, or on a new socket bound to `addr` (a rebind).
async fn start_listener(
    socket: Option<UdpSocket>,
    addr: SocketAddr,
) -> io::Result<(SrtListener, SrtIncoming)> {
    let socket = match socket {
        Some(socket) => socket,
        None => UdpSocket::bind(addr).await?,
    };
    SrtListener::builder().socket(socket).bind(addr).await
}

/// What every request task shares.
struct Shared<A, F> {
    admission: A,
    sinks: F,
    config: SrtConfig,
    slots: Arc<Semaphore>,
    shutdown: CancellationToken,
}

/// The SRT reject reason for a refused publish (the log says more; the peer never learns
/// whether a key exists).
pub fn reject_reason(rejection: &PublishRejection) -> RejectReason {
    match rejection {
        PublishRejection::UnknownStreamKey | PublishRejection::Disabled => {
            RejectReason::Server(ServerRejectReason::Forbidden)
        }
        PublishRejection::AlreadyPublishing => RejectReason::Server(ServerRejectReason::Conflict),
        PublishRejection::ShuttingDown => RejectReason::Server(ServerRejectReason::Down),
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
    request: ConnectionRequest,
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
                tracing::Span::current().record("live_stream_id", grant.live_stream_id.as_str());
                tracing::info!(key = %redact_stream_key(&key), "publishing");
                let sink = shared.sinks.new_sink(&grant.live_stream_id);
                let started = Instant::now();
                let mut connection = Connection {
                    socket,
                    grant,
                    sink,
                    payloads: 0,
                    bytes: 0,
                };
                let result = connection.run(&shared.shutdown).await;
                let _ = timeout(CLOSE_GRACE, connection.socket.close()).await;
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
async fn reject(request: ConnectionRequest, reason: RejectReason, why: &str) {
    tracing::info!(?reason, why, "caller refused");
    let _ = request.reject(reason).await;
}

/// The two-step admission: streamid and encryption, then the passphrase lookup, then the
/// handshake with the caller's key size (srt-tokio checks its key material), then the
/// session's `publish`.
async fn admit<A: SrtAdmission, F>(
    request: ConnectionRequest,
    shared: &Shared<A, F>,
) -> Result<(SrtSocket, PublishGrant, String), Refusal> {
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
            let _ = request.reject(RejectReason::Server(reason)).await;
            return Err(refuse(RejectReason::Server(reason), e.to_string()));
        }
    };
    tracing::info!(key = %redact_stream_key(&key), key_size = ?request.key_size(), "publish requested");

    // GUARD: srt-tokio panics its listener task on `accept(None)` for a caller that sends key
    // material, and on `accept(Some)` with another key size than the one the caller
    // announced. Every OnAir stream has a passphrase, so `accept(None)` is never called, and
    // the key size is always the caller's own. libsrt callers that leave `pbkeylen` at its
    // default (ffmpeg without `pbkeylen`) announce no key size (`Unspecified`) yet send
    // 16-byte key material: `Unspecified` in our settings matches them too (srt-protocol
    // reads it as 16 bytes), and a caller without any key material is then refused by
    // srt-tokio with `Core(Unsecure)`.
    let key_size = request.key_size();

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
            let _ = request.reject(reason).await;
            return Err(refuse(reason, rejection.to_string()));
        }
    };

    // A wrong passphrase fails here: srt-tokio cannot unwrap the caller's key material,
    // answers the handshake with `Core(BadSecret)` and `accept` returns an error.
    // Bounded: srt-tokio leaves `accept` waiting forever when the caller's conclusion lacks
    // its handshake extension (srt-protocol answers `NotHandled` and keeps the request).
    let accepted = timeout(
        limit,
        request.accept(Some(KeySettings {
            key_size,
            passphrase,
        })),
    )
    .await
    .unwrap_or_else(|_| {
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "srt-tokio did not finish the handshake in time",
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
            let _ = timeout(CLOSE_GRACE, socket.close()).await;
            Err(Refusal::Gone(format!(
                "publish refused after the handshake, connection closed: {rejection}"
            )))
        }
    }
}

/// One admitted caller: payloads from the socket into the sink, events to the session.
struct Connection<S> {
    socket: SrtSocket,
    grant: PublishGrant,
    sink: S,
    payloads: u64,
    bytes: u64,
}

impl<S: PayloadSink> Connection<S> {
    async fn run(&mut self, shutdown: &CancellationToken) -> Result<(), ConnectionError> {
        let kick = self.grant.kick.clone();
        loop {
            let item = tokio::select! {
                biased;
                _ = shutdown.cancelled() => return Err(ConnectionError::Shutdown),
                _ = kick.cancelled() => return Err(ConnectionError::Kicked),
                item = self.socket.next() => item,
            };
            match item {
                // srt-tokio ends the stream when the caller closes or its peer idle timeout
                // (5 s without a packet) expires.
                None => break,
                Some(Err(e)) => return Err(ConnectionError::Io(e)),
                Some(Ok((_, payload))) => {
                    self.payloads += 1;
                    self.bytes += payload.len() as u64;
                    let events = self.sink.handle_payload(payload)?;
                    self.forward(events)?;
                }
            }
        }
        let last = self.sink.finish();
        self.forward(last)
    }

    /// Slow-consumer policy: disconnect. The session's channel holds
    /// [`session::ingest::INGEST_CHANNEL_CAPACITY`] events (seconds of media); when it is
    /// full the publisher is dropped instead of waiting, because waiting here would stop
    /// reading this socket, which fills srt-tokio's per-connection queues and then blocks
    /// its listener task, stalling every other SRT caller. The reconnect window covers the
    /// encoder's return.
    fn forward(&mut self, events: Vec<media::DemuxEvent>) -> Result<(), ConnectionError> {
        for event in events {
            match self.grant.media.try_send(IngestEvent::Media(event)) {
                Ok(None) => {}
                Ok(Some(_)) => return Err(ConnectionError::SessionBehind),
                Err(_) => return Err(ConnectionError::SessionGone),
            }
        }
        Ok(())
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
