//! The IO driver of one connection (house style 3): one task, `select!` over the socket, the
//! grant's kick token and shutdown; the protocol itself is the sans-IO
//! [`ServerProtocol`](crate::protocol::ServerProtocol).

use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use media::flv::TagKind;
use media::DemuxEvent;
use media::FlvDemuxer;
use session::{
    redact_stream_key as redact, Admission, IngestEvent, IngestProtocol, MediaBatcher, Pacer,
    PublishGrant, PublishRejection, PublishRequest,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::time::{timeout, timeout_at, Instant};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::config::{RtmpConfig, SharedRtmpConfig};
use crate::error::{ConnectionError, ProtocolError};
use crate::lowat::ReceiveMark;
use crate::protocol::{ProtocolEvent, ServerProtocol};
use crate::slots::Slot;

/// Bytes read from the socket at a time once the publish is admitted.
const READ_BUFFER: usize = 32 * 1024;

/// Bytes read at a time before admission: a handshake packet and any command fit, and a
/// thousand connections that never publish hold 4 MiB of buffers, not 32.
const READ_BUFFER_BEFORE_PUBLISH: usize = 4 * 1024;

/// How long the last replies (an error status, TLS close_notify) may take to leave.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// What a connection task needs, shared by all connections of a listener.
pub(crate) struct Listener<A> {
    pub(crate) admission: A,
    /// Read once per accepted connection (a reload changes it for the next ones).
    pub(crate) config: SharedRtmpConfig,
    pub(crate) tls: Option<TlsAcceptor>,
    pub(crate) protocol: IngestProtocol,
    pub(crate) shutdown: CancellationToken,
}

/// The protocol name in logs.
pub(crate) fn protocol_name(protocol: IngestProtocol) -> &'static str {
    protocol.listener_name()
}

/// Runs one accepted connection to its end and logs how it ended.
pub(crate) async fn run<A: Admission>(
    tcp: TcpStream,
    peer: SocketAddr,
    listener: Arc<Listener<A>>,
    slot: Slot,
    config: RtmpConfig,
) {
    let span = tracing::info_span!(
        "rtmp_connection",
        %peer,
        protocol = protocol_name(listener.protocol),
        live_stream_id = tracing::field::Empty,
    );
    async move {
        tracing::debug!("accepted");
        let deadline = Instant::now() + config.handshake_timeout;
        let fd = tcp.as_raw_fd();
        let (result, summary) = match listener.tls.clone() {
            None => {
                Connection::new(tcp, fd, peer, &listener, slot, config)
                    .run(deadline)
                    .await
            }
            Some(acceptor) => {
                let accepted: Result<_, ConnectionError> = tokio::select! {
                    biased;
                    _ = listener.shutdown.cancelled() => Err(ConnectionError::Shutdown),
                    _ = slot.closed().cancelled() => Err(ConnectionError::Evicted(slot.eviction())),
                    r = timeout_at(deadline, accept_tls(&acceptor, tcp)) => match r {
                        Err(_) => Err(ConnectionError::HandshakeTimeout(
                            config.handshake_timeout,
                        )),
                        Ok(accepted) => accepted,
                    },
                };
                match accepted {
                    Ok(stream) => {
                        Connection::new(stream, fd, peer, &listener, slot, config)
                            .run(deadline)
                            .await
                    }
                    Err(e) => (Err(e), None),
                }
            }
        };
        log_end(result, summary);
    }
    .instrument(span)
    .await;
}

/// The TLS handshake, after a look at the first byte: an encoder configured with `rtmp://`
/// and the RTMPS port sends RTMP's version byte 3 where a ClientHello (0x16) belongs, and
/// deserves a clearer log line than a TLS decoding error.
async fn accept_tls(
    acceptor: &TlsAcceptor,
    tcp: TcpStream,
) -> Result<tokio_rustls::server::TlsStream<TcpStream>, ConnectionError> {
    let mut first = [0u8; 1];
    if tcp.peek(&mut first).await? == 1 && first[0] == 3 {
        return Err(ConnectionError::PlainRtmpOnTlsPort);
    }
    acceptor.accept(tcp).await.map_err(ConnectionError::Tls)
}

/// How a connection ended without error.
#[derive(Debug)]
pub(crate) enum End {
    /// The peer closed the connection.
    PeerClosed,
    /// The peer ended its publish (`deleteStream`).
    PublishFinished,
}

fn log_end(result: Result<End, ConnectionError>, summary: Option<Summary>) {
    let published = summary.as_ref().filter(|s| s.published);
    match (result, published) {
        (Ok(end), Some(s)) => tracing::info!(
            how = ?end,
            events = s.events,
            bytes = s.bytes,
            seconds = s.seconds,
            paced_ms = s.paced_ms,
            "publisher disconnected"
        ),
        (Ok(end), None) => tracing::debug!(how = ?end, "connection closed"),
        (Err(e @ (ConnectionError::Media(_) | ConnectionError::Protocol(_))), Some(s)) => {
            tracing::warn!(
                error = %e,
                events = s.events,
                bytes = s.bytes,
                seconds = s.seconds,
                "publisher disconnected: bad input"
            );
        }
        (Err(e), Some(s)) => tracing::info!(
            reason = %e,
            events = s.events,
            bytes = s.bytes,
            seconds = s.seconds,
            "publisher disconnected"
        ),
        (
            Err(
                e @ (ConnectionError::Protocol(ProtocolError::NotRtmp { .. })
                | ConnectionError::PlainRtmpOnTlsPort),
            ),
            None,
        ) => {
            tracing::info!(error = %e, "closed a connection that is not RTMP");
        }
        (
            Err(
                e @ (ConnectionError::HandshakeTimeout(_)
                | ConnectionError::Tls(_)
                | ConnectionError::Protocol(ProtocolError::Handshake(_))),
            ),
            None,
        ) => tracing::debug!(error = %e, "closed during the handshake"),
        (Err(e @ (ConnectionError::Media(_) | ConnectionError::Protocol(_))), None) => {
            tracing::warn!(error = %e, "closed: bad input from the peer");
        }
        // Evictions are logged by the slots (rate-limited); a flood must not flood the log.
        (Err(e @ ConnectionError::Evicted(_)), None) => tracing::debug!(reason = %e, "closed"),
        (Err(e), None) => tracing::info!(reason = %e, "connection closed"),
    }
}

/// What a connection did, for the closing log line.
#[derive(Debug)]
struct Summary {
    published: bool,
    events: u64,
    bytes: u64,
    seconds: u64,
    /// Time the publisher was not read because it ran ahead of real time or its bitrate.
    paced_ms: u64,
}

struct Connection<'a, S, A> {
    stream: S,
    /// The TCP socket under `stream` (owned by it).
    fd: RawFd,
    /// Its receive low-water mark, once the publish is admitted.
    receive_mark: Option<ReceiveMark>,
    peer: SocketAddr,
    listener: &'a Listener<A>,
    protocol: ServerProtocol,
    demuxer: FlvDemuxer,
    grant: Option<PublishGrant>,
    /// The grant's kick token; a token nobody cancels until then.
    kick: CancellationToken,
    slot: Slot,
    /// What [`Slot::set_pending`] was last told.
    reported_pending: usize,
    pacer: Pacer,
    /// Media on its way to the session.
    batcher: MediaBatcher,
    /// The listener's configuration when this connection was accepted.
    config: RtmpConfig,
    established_at: Option<Instant>,
    events: u64,
    bytes: u64,
}

impl<'a, S, A> Connection<'a, S, A>
where
    S: AsyncRead + AsyncWrite + Unpin,
    A: Admission,
{
    fn new(
        stream: S,
        fd: RawFd,
        peer: SocketAddr,
        listener: &'a Listener<A>,
        slot: Slot,
        config: RtmpConfig,
    ) -> Self {
        Connection {
            stream,
            fd,
            receive_mark: None,
            peer,
            listener,
            protocol: ServerProtocol::new(&config),
            demuxer: FlvDemuxer::new(config.timestamps),
            grant: None,
            kick: CancellationToken::new(),
            slot,
            reported_pending: 0,
            pacer: Pacer::new(config.pacing),
            batcher: MediaBatcher::new(),
            config,
            established_at: None,
            events: 0,
            bytes: 0,
        }
    }

    async fn run(
        mut self,
        handshake_deadline: Instant,
    ) -> (Result<End, ConnectionError>, Option<Summary>) {
        let started = Instant::now();
        let result = self.run_inner(handshake_deadline).await;
        // What the connection received is recorded, however it ended (unless the session
        // let it go: then nobody takes it).
        if let (Some(message), Some(grant)) = (self.batcher.take(), &self.grant) {
            if let Ok(Some(message)) = grant.media.try_send(message) {
                let _ = timeout(CLOSE_GRACE, grant.media.send(message)).await;
            }
        }
        if !matches!(result, Err(ConnectionError::Io(_))) {
            // Best effort: the last replies (an error status) and a clean close (TLS
            // close_notify, TCP FIN).
            let _ = timeout(CLOSE_GRACE, async {
                if let Some(bytes) = self.protocol.take_output() {
                    self.stream.write_all(&bytes).await?;
                }
                self.stream.shutdown().await
            })
            .await;
        }
        let summary = Summary {
            published: self.grant.is_some(),
            events: self.events,
            bytes: self.bytes,
            seconds: started.elapsed().as_secs(),
            paced_ms: u64::try_from(self.pacer.waited().as_millis()).unwrap_or(u64::MAX),
        };
        (result, Some(summary))
    }

    /// When the connection times out if no input arrives, and the error it ends with: the
    /// handshake deadline, then the publish deadline (counted from the end of the handshake),
    /// and always the idle timeout after the last input.
    fn deadline(
        &self,
        handshake_deadline: Instant,
        last_input: Instant,
    ) -> (Instant, ConnectionError) {
        let config = &self.config;
        match (self.established_at, &self.grant) {
            (None, _) => (
                handshake_deadline,
                ConnectionError::HandshakeTimeout(config.handshake_timeout),
            ),
            (Some(at), None) if at + config.publish_timeout < last_input + config.idle_timeout => (
                at + config.publish_timeout,
                ConnectionError::PublishTimeout(config.publish_timeout),
            ),
            _ => (
                last_input + config.idle_timeout,
                ConnectionError::IdleTimeout(config.idle_timeout),
            ),
        }
    }

    async fn run_inner(&mut self, handshake_deadline: Instant) -> Result<End, ConnectionError> {
        let mut buf = vec![0u8; READ_BUFFER_BEFORE_PUBLISH];
        // Shutdown, eviction and the kick are watched by a task of their own that answers on
        // one oneshot channel: a publisher sends dozens of messages a second, and polling three
        // cancellation tokens (a mutex and a waiter list each) on every read showed up in
        // profiles, where a pending oneshot receiver is one atomic load.
        let (kick_tx, kick_rx) = oneshot::channel();
        let mut kick_tx = Some(kick_tx);
        let mut stop = session::ingest::watch_cancellation(
            self.listener.shutdown.child_token(),
            self.slot.closed().clone(),
            kick_rx,
        );
        // The timer lives across reads too (registering with the timer wheel on every read
        // showed up as well). It is moved later only when it fires, and earlier when the
        // connection's state brings its deadline forward (the publish deadline can come
        // before the handshake's, a held media batch before both).
        let mut last_input = Instant::now();
        let mut timer_deadline = self.deadline(handshake_deadline, last_input).0;
        let timer = tokio::time::sleep_until(timer_deadline);
        tokio::pin!(timer);
        loop {
            let n = tokio::select! {
                biased;
                _ = &mut stop => return Err(self.stop_reason()),
                () = &mut timer => {
                    let now = Instant::now();
                    if self.batcher.deadline().is_some_and(|d| d <= now) {
                        if let Some(message) = self.batcher.take() {
                            self.send(message).await?;
                        }
                    }
                    if let Some(mark) = &mut self.receive_mark {
                        mark.handle_deadline(now);
                    }
                    let (deadline, on_timeout) = self.deadline(handshake_deadline, last_input);
                    if deadline <= now {
                        return Err(on_timeout);
                    }
                    timer_deadline = self.next_deadline(deadline);
                    timer.as_mut().reset(timer_deadline);
                    continue;
                }
                r = self.stream.read(&mut buf) => match r {
                    Ok(0) => return Ok(End::PeerClosed),
                    Ok(n) => n,
                    Err(e) => return Err(ConnectionError::Io(e)),
                },
            };
            last_input = Instant::now();
            self.bytes += n as u64;
            if self.grant.is_some() {
                self.pacer.handle_bytes(n, last_input);
            }
            if let Some(mark) = &mut self.receive_mark {
                mark.handle_read(n, last_input);
            }
            self.protocol.handle_input(&buf[..n])?;
            if self.established_at.is_none() && self.protocol.is_established() {
                self.established_at = Some(Instant::now());
                tracing::debug!("RTMP handshake complete");
            }
            self.flush().await?;
            while let Some(event) = self.protocol.poll_event()? {
                match event {
                    ProtocolEvent::PublishRequested { stream_key, app } => {
                        self.admit(stream_key, app).await?;
                        if let Some(tx) = kick_tx.take() {
                            let _ = tx.send(self.kick.clone());
                        }
                        buf.resize(READ_BUFFER, 0);
                        self.receive_mark = Some(ReceiveMark::new(self.fd, Instant::now()));
                    }
                    ProtocolEvent::Media {
                        kind,
                        timestamp,
                        body,
                    } => self.forward(kind, timestamp, body, last_input).await?,
                    ProtocolEvent::PublishFinished => {
                        self.flush().await?;
                        return Ok(End::PublishFinished);
                    }
                }
                self.flush().await?;
            }
            self.flush().await?;
            if self.grant.is_none() {
                let pending = self.protocol.pending_bytes();
                if pending != self.reported_pending {
                    self.reported_pending = pending;
                    self.slot.set_pending(pending);
                }
            } else if self.pace().await? {
                // Not reading while paced is not the peer's silence.
                last_input = Instant::now();
            }
            let deadline = self.next_deadline(self.deadline(handshake_deadline, last_input).0);
            if deadline < timer_deadline {
                timer_deadline = deadline;
                timer.as_mut().reset(deadline);
            }
        }
    }

    /// The earliest of `deadline` (the connection's own), the held media batch's and the
    /// receive mark's.
    fn next_deadline(&self, deadline: Instant) -> Instant {
        [
            self.batcher.deadline(),
            self.receive_mark.as_ref().and_then(ReceiveMark::deadline),
        ]
        .into_iter()
        .flatten()
        .fold(deadline, Instant::min)
    }

    /// Why the stop signal came.
    fn stop_reason(&self) -> ConnectionError {
        if self.listener.shutdown.is_cancelled() {
            ConnectionError::Shutdown
        } else if self.slot.closed().is_cancelled() {
            ConnectionError::Evicted(self.slot.eviction())
        } else {
            ConnectionError::Kicked
        }
    }

    /// Waits while the publisher is ahead of real time or over its bitrate ceiling (see
    /// [`session::pacing`]): not reading is the backpressure, TCP slows the encoder down.
    /// `true` when it waited.
    async fn pace(&mut self) -> Result<bool, ConnectionError> {
        let now = Instant::now();
        let Some(until) = self.pacer.resume_at(now) else {
            return Ok(false);
        };
        tokio::select! {
            biased;
            _ = self.listener.shutdown.cancelled() => return Err(ConnectionError::Shutdown),
            _ = self.kick.cancelled() => return Err(ConnectionError::Kicked),
            () = tokio::time::sleep_until(until) => {}
        }
        self.pacer.record_wait(now, Instant::now());
        Ok(true)
    }

    /// Sends what the protocol has to send, giving up on shutdown, kick or a peer that does
    /// not read for the idle timeout.
    async fn flush(&mut self) -> Result<(), ConnectionError> {
        while let Some(bytes) = self.protocol.take_output() {
            let idle = self.config.idle_timeout;
            let stream = &mut self.stream;
            tokio::select! {
                biased;
                _ = self.listener.shutdown.cancelled() => return Err(ConnectionError::Shutdown),
                _ = self.kick.cancelled() => return Err(ConnectionError::Kicked),
                r = timeout(idle, async {
                    stream.write_all(&bytes).await?;
                    stream.flush().await
                }) => match r {
                    Err(_) => return Err(ConnectionError::IdleTimeout(idle)),
                    Ok(r) => r?,
                },
            }
        }
        Ok(())
    }

    async fn admit(&mut self, stream_key: String, app: String) -> Result<(), ConnectionError> {
        tracing::info!(key = %redact(&stream_key), app = %app, "publish requested");
        let request = PublishRequest {
            stream_key,
            protocol: self.listener.protocol,
            peer: self.peer,
        };
        let limit = self.config.admission_timeout;
        let decision = tokio::select! {
            biased;
            _ = self.listener.shutdown.cancelled() => return Err(ConnectionError::Shutdown),
            decision = timeout(limit, self.listener.admission.publish(request)) => decision,
        };
        let Ok(decision) = decision else {
            self.protocol
                .reject_publish("NetStream.Publish.Denied", "internal error")?;
            return Err(ConnectionError::AdmissionTimeout(limit));
        };
        match decision {
            Ok(grant) => {
                tracing::Span::current().record("live_stream_id", grant.live_stream_id.as_str());
                if !self.slot.admit() {
                    // Closed to make room while admission was decided; the grant is dropped
                    // and the session sees its publisher leave.
                    return Err(ConnectionError::Evicted(self.slot.eviction()));
                }
                self.protocol.accept_publish()?;
                self.kick = grant.kick.clone();
                self.grant = Some(grant);
                tracing::info!("publishing");
                Ok(())
            }
            Err(rejection) => {
                let (code, description) = rejection_status(&rejection);
                self.protocol.reject_publish(code, description)?;
                Err(ConnectionError::Rejected(rejection))
            }
        }
    }

    async fn forward(
        &mut self,
        kind: TagKind,
        timestamp: u32,
        body: Bytes,
        now: Instant,
    ) -> Result<(), ConnectionError> {
        let event = match self.demuxer.handle_tag(kind, timestamp, body) {
            Ok(Some(event)) => event,
            Ok(None) => return Ok(()),
            Err(e) if kind == TagKind::Script => {
                tracing::debug!(error = %e, "ignoring malformed metadata");
                return Ok(());
            }
            Err(e) => return Err(ConnectionError::Media(e)),
        };
        if self.grant.is_none() {
            return Ok(());
        }
        if let DemuxEvent::Frame(frame) = &event {
            self.pacer.handle_frame(frame, now);
        }
        self.events += 1;
        match self.batcher.push(event, now) {
            Some(message) => self.send(message).await,
            None => Ok(()),
        }
    }

    /// Sends media to the session (a publishing connection only).
    async fn send(&mut self, message: IngestEvent) -> Result<(), ConnectionError> {
        let Some(grant) = &self.grant else {
            return Ok(());
        };
        // Usually the channel has room; only a full one needs the waiting below.
        let Some(message) = grant
            .media
            .try_send(message)
            .map_err(|_| ConnectionError::SessionGone)?
        else {
            return Ok(());
        };
        // Awaiting the bounded channel is the backpressure: while the session is behind, this
        // connection stops reading and TCP slows the encoder down.
        tokio::select! {
            biased;
            _ = self.listener.shutdown.cancelled() => Err(ConnectionError::Shutdown),
            _ = self.kick.cancelled() => Err(ConnectionError::Kicked),
            sent = grant.media.send(message) => sent.map_err(|_| ConnectionError::SessionGone),
        }
    }
}

/// The RTMP status code and description sent for a rejection (never the key itself).
fn rejection_status(rejection: &PublishRejection) -> (&'static str, &'static str) {
    match rejection {
        PublishRejection::UnknownStreamKey => ("NetStream.Publish.BadName", "unknown stream key"),
        PublishRejection::Disabled => ("NetStream.Publish.BadName", "live stream is disabled"),
        PublishRejection::AlreadyPublishing => (
            "NetStream.Publish.BadName",
            "live stream already has a publisher",
        ),
        PublishRejection::ShuttingDown => ("NetStream.Publish.Denied", "server is shutting down"),
        PublishRejection::Draining => (
            "NetStream.Publish.Denied",
            "server is draining: no new broadcasts, try another server",
        ),
        PublishRejection::Internal(_) => ("NetStream.Publish.Denied", "internal error"),
    }
}
