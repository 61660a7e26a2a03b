//! OnAir's own I/O driver around srt-protocol's sans-IO listener and connections.
//!
//! srt-tokio 0.4.4's listener task parses every datagram and routes every connection's
//! packets; one datagram that panics its parser ends that task and every connection with it,
//! and one full connection queue stalls all of them. This driver keeps srt-protocol's
//! handshake and ARQ logic ([`MultiplexListener`], [`DuplexConnection`]) and does the I/O
//! itself:
//!
//! - one listener task reads the UDP socket, checks each datagram ([`crate::guard`]) and
//!   routes packets of connected callers straight to their connection's channel; only
//!   handshakes (and packets of unknown peers) reach the [`MultiplexListener`];
//! - every call into srt-protocol is [`guarded`]: a panic in the multiplexer resets the
//!   pending handshakes (their callers retry), a panic in a connection ends that connection;
//!   neither stops the listener or touches other connections;
//! - a connection whose channel is full loses that packet (SRT retransmits it), it never
//!   holds up the others;
//! - handshake state is bounded: at most [`MAX_PENDING`] peers in handshake at once (a new
//!   peer beyond it evicts the oldest, so a flood cannot keep a real caller out for long) and
//!   [`MAX_PENDING_PER_IP`] per IP address (beyond it, that address's new peers are dropped),
//!   each forgotten after [`PENDING_TTL`];
//! - each connection runs in its caller's task ([`SrtConnection::recv`]): packets in, timers,
//!   acknowledgements out, payloads returned to the caller without another channel.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use srt_protocol::connection::{Connection, DuplexConnection};
use srt_protocol::listener::{
    AccessControlRequest, AccessControlResponse, Action, Input, MultiplexListener, ResultOf,
    SessionId,
};
use srt_protocol::options::{KeySize, StreamId};
use srt_protocol::packet::{Packet, RejectReason, ServerRejectReason};
use srt_protocol::settings::{ConnInitSettings, KeySettings};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::guard::{self, guarded, Datagram, Panicked};

/// Peers in handshake at once; a further new peer evicts the oldest.
pub const MAX_PENDING: usize = 4096;
/// Peers in handshake at once from one IP address.
pub const MAX_PENDING_PER_IP: usize = 256;
/// How long a peer may stay in handshake (or keep sending to a connection that ended) before
/// its state is forgotten.
pub const PENDING_TTL: Duration = Duration::from_secs(10);
/// Packets queued for one connection; more are dropped (and retransmitted by SRT).
const CONNECTION_QUEUE: usize = 1024;
/// Admission requests waiting for the server loop; more are refused with `Overload`.
const REQUEST_QUEUE: usize = 256;
/// Largest datagram read (SRT's packets fit in an Ethernet MTU).
const DATAGRAM_MAX: usize = 2048;
/// Datagrams read per wake-up before yielding.
const READ_BATCH: usize = 64;
/// How often expired handshakes and closed connections are swept.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// A caller's handshake waiting for OnAir's decision (the streamid and key size are known,
/// the passphrase is not checked yet).
#[derive(Debug)]
pub struct Request {
    request: AccessControlRequest,
    session: SessionId,
    responses: mpsc::Sender<(SessionId, AccessControlResponse)>,
    opened: oneshot::Receiver<Opened>,
    socket: Arc<UdpSocket>,
}

/// What the listener hands a request's task when the handshake completes.
#[derive(Debug)]
struct Opened {
    connection: Connection,
    packets: mpsc::Receiver<Packet>,
}

impl Request {
    /// The caller's address.
    pub fn remote(&self) -> SocketAddr {
        self.request.remote
    }

    /// The caller's streamid, if it sent one.
    pub fn stream_id(&self) -> Option<&StreamId> {
        self.request.stream_id.as_ref()
    }

    /// The key size the caller announced (`Unspecified` when it left the default).
    pub fn key_size(&self) -> KeySize {
        self.request.key_size
    }

    /// Refuses the caller with an SRT reject reason.
    pub async fn reject(self, reason: RejectReason) {
        let _ = self
            .responses
            .send((self.session, AccessControlResponse::Rejected(reason)))
            .await;
    }

    /// Completes the handshake with this passphrase and the caller's own key size. Fails when
    /// the caller's key material does not unwrap with it (refused with `Core(BadSecret)`), when
    /// it sent none (`Core(Unsecure)`), or when the caller went away.
    pub async fn accept(
        self,
        passphrase: srt_protocol::options::Passphrase,
    ) -> io::Result<SrtConnection> {
        // Always the caller's key size: srt-protocol panics on a mismatch (see `guard`).
        let key = KeySettings {
            key_size: self.request.key_size,
            passphrase,
        };
        self.responses
            .send((self.session, AccessControlResponse::Accepted(Some(key))))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::NotConnected, "the SRT listener stopped"))?;
        let opened = self.opened.await.map_err(|_| {
            io::Error::new(
                io::ErrorKind::ConnectionRefused,
                "the handshake did not complete",
            )
        })?;
        Ok(SrtConnection::new(opened, self.socket))
    }
}

/// What the multiplexer asked for, without its borrow of the multiplexer.
enum Step {
    Send(Packet, SocketAddr),
    RequestAccess(SessionId, AccessControlRequest),
    Reject(SessionId, Option<(Packet, SocketAddr)>),
    Open(SessionId, Box<(Option<(Packet, SocketAddr)>, Connection)>),
    Delegate(SessionId, Packet),
    Drop(SessionId),
    Statistics,
    Wait,
}

impl From<Action<'_>> for Step {
    fn from(action: Action<'_>) -> Step {
        match action {
            Action::SendPacket((packet, to)) => Step::Send(packet, to),
            Action::RequestAccess(id, request) => Step::RequestAccess(id, request),
            Action::RejectConnection(id, packet) => Step::Reject(id, packet),
            Action::OpenConnection(id, opened) => Step::Open(id, opened),
            Action::DelegatePacket(id, (packet, _)) => Step::Delegate(id, packet),
            Action::DropConnection(id) => Step::Drop(id),
            Action::UpdateStatistics(_) => Step::Statistics,
            Action::WaitForInput | Action::Close => Step::Wait,
        }
    }
}

/// A peer the multiplexer knows (in handshake, or unknown traffic).
#[derive(Debug)]
struct Pending {
    since: Instant,
    /// Set while OnAir decides; the listener sends the connection through it.
    opened: Option<oneshot::Sender<Opened>>,
}

/// Counters of what the listener dropped, logged at shutdown and when they grow.
#[derive(Debug, Default)]
struct Dropped {
    malformed: u64,
    refused: u64,
    busy: u64,
    evicted: u64,
    queue_full: u64,
    panics: u64,
}

/// The listener task's state.
struct Listener {
    socket: Arc<UdpSocket>,
    local: SocketAddr,
    settings: ConnInitSettings,
    multiplex: MultiplexListener,
    pending: HashMap<SocketAddr, Pending>,
    /// `pending`'s peers in the order they arrived (entries of peers already forgotten are
    /// skipped when met), for eviction and expiry.
    order: VecDeque<(SocketAddr, Instant)>,
    per_ip: HashMap<IpAddr, usize>,
    routes: HashMap<SocketAddr, mpsc::Sender<Packet>>,
    requests: mpsc::Sender<Request>,
    responses_tx: mpsc::Sender<(SessionId, AccessControlResponse)>,
    out: BytesMut,
    dropped: Dropped,
}

/// Runs the listener on `socket` until `shutdown`, sending each caller's handshake to
/// `requests`. Connections already opened keep their channels until they are dropped here
/// (at return), which ends them.
pub async fn run(
    socket: Arc<UdpSocket>,
    requests: mpsc::Sender<Request>,
    shutdown: CancellationToken,
) {
    let Ok(local) = socket.local_addr() else {
        tracing::error!("the SRT socket has no local address");
        return;
    };
    let settings = ConnInitSettings::default();
    let (responses_tx, mut responses) = mpsc::channel(REQUEST_QUEUE);
    let mut listener = Listener {
        multiplex: MultiplexListener::new(Instant::now(), local, settings.clone()),
        socket,
        local,
        settings,
        pending: HashMap::new(),
        order: VecDeque::new(),
        per_ip: HashMap::new(),
        routes: HashMap::new(),
        requests,
        responses_tx,
        out: BytesMut::with_capacity(DATAGRAM_MAX),
        dropped: Dropped::default(),
    };
    let mut buf = vec![0u8; DATAGRAM_MAX];
    let mut sweep = tokio::time::interval(SWEEP_EVERY);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            Some((session, response)) = responses.recv() => {
                listener.feed(Input::AccessResponse(Some((session, response))));
            }
            ready = listener.socket.readable() => {
                if let Err(e) = ready {
                    tracing::warn!(error = %e, "SRT socket not readable");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
                for _ in 0..READ_BATCH {
                    match listener.socket.try_recv_from(&mut buf) {
                        Ok((n, from)) => listener.datagram(&buf[..n], from),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        // ICMP errors reported on the socket and the like: not fatal.
                        Err(e) => {
                            tracing::debug!(error = %e, "SRT socket read failed");
                            break;
                        }
                    }
                }
            }
            _ = sweep.tick() => listener.sweep(),
        }
    }
    let d = &listener.dropped;
    tracing::info!(
        malformed = d.malformed,
        refused = d.refused,
        busy = d.busy,
        evicted = d.evicted,
        queue_full = d.queue_full,
        panics = d.panics,
        "SRT listener stopped; datagrams dropped"
    );
}

impl Listener {
    /// One datagram from `from`.
    fn datagram(&mut self, datagram: &[u8], from: SocketAddr) {
        let packet = match guard::classify(datagram, self.local.is_ipv6()) {
            Datagram::Packet(packet) => packet,
            Datagram::Malformed(e) => {
                self.dropped.malformed += 1;
                if self.dropped.malformed.is_power_of_two() {
                    tracing::debug!(%from, error = %e, total = self.dropped.malformed, "malformed SRT datagram dropped");
                }
                return;
            }
            Datagram::Refuse { reply, why } => {
                self.dropped.refused += 1;
                // Counted, and logged at powers of two: a flood of such handshakes does not
                // flood the log. (The reply is smaller than the handshake: no amplification.)
                if self.dropped.refused.is_power_of_two() {
                    tracing::info!(peer = %from, why, total = self.dropped.refused, "SRT caller refused: it asked for {why}");
                }
                self.send(&reply, from);
                return;
            }
        };
        if let Some(route) = self.routes.get(&from) {
            if !guard::for_connection(&packet) {
                return;
            }
            match route.try_send(packet) {
                Ok(()) => return,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    self.dropped.queue_full += 1;
                    return;
                }
                // The connection ended: the peer is new again (a reconnect from the same port).
                Err(mpsc::error::TrySendError::Closed(packet)) => {
                    self.routes.remove(&from);
                    return self.handshake_packet(packet, from);
                }
            }
        }
        self.handshake_packet(packet, from);
    }

    fn handshake_packet(&mut self, packet: Packet, from: SocketAddr) {
        if !self.pending.contains_key(&from) {
            let per_ip = self.per_ip.get(&from.ip()).copied().unwrap_or(0);
            if per_ip >= MAX_PENDING_PER_IP {
                self.dropped.busy += 1;
                if self.dropped.busy.is_power_of_two() {
                    tracing::warn!(peer = %from, total = self.dropped.busy, "SRT handshake dropped: too many peers in handshake from one address");
                }
                return;
            }
            if self.pending.len() >= MAX_PENDING {
                self.dropped.evicted += 1;
                if self.dropped.evicted.is_power_of_two() {
                    tracing::warn!(
                        total = self.dropped.evicted,
                        "SRT handshakes evicted: too many peers in handshake"
                    );
                }
                self.expire(|_| true, 1);
            }
            let since = Instant::now();
            self.pending.insert(
                from,
                Pending {
                    since,
                    opened: None,
                },
            );
            self.order.push_back((from, since));
            *self.per_ip.entry(from.ip()).or_default() += 1;
            if self.order.len() > 2 * MAX_PENDING {
                // Mostly entries of peers already forgotten: keep the live ones, in order.
                let pending = &self.pending;
                self.order
                    .retain(|(peer, since)| pending.get(peer).is_some_and(|p| p.since == *since));
            }
        }
        self.feed(Input::Packet(Ok((packet, from))));
    }

    /// Runs the multiplexer from `input` until it waits for more.
    fn feed(&mut self, input: Input) {
        let mut input = input;
        loop {
            let now = Instant::now();
            let multiplex = &mut self.multiplex;
            let step = match guarded(|| Step::from(multiplex.handle_input(now, input))) {
                Ok(step) => step,
                Err(Panicked) => return self.reset_multiplex(),
            };
            input = match step {
                Step::Send(packet, to) => {
                    self.send(&packet, to);
                    Input::Success(ResultOf::SendPacket(to))
                }
                Step::RequestAccess(session, request) => self.request_access(session, request),
                Step::Reject(session, packet) => {
                    if let Some((packet, to)) = packet {
                        self.send(&packet, to);
                    }
                    self.forget(session.0);
                    Input::Success(ResultOf::RejectConnection(session))
                }
                Step::Open(session, opened) => {
                    let (packet, connection) = *opened;
                    if let Some((packet, to)) = packet {
                        self.send(&packet, to);
                    }
                    self.open(session, connection);
                    // From now on this peer's packets are routed here, not through the
                    // multiplexer: it forgets the session.
                    Input::Success(ResultOf::DropConnection(session))
                }
                Step::Delegate(session, packet) => {
                    if let Some(route) = self.routes.get(&session.0) {
                        let _ = route.try_send(packet);
                    }
                    Input::Success(ResultOf::DelegatePacket(session))
                }
                Step::Drop(session) => {
                    self.forget(session.0);
                    Input::Success(ResultOf::DropConnection(session))
                }
                Step::Statistics => Input::Success(ResultOf::UpdateStatistics),
                Step::Wait => return,
            };
        }
    }

    fn request_access(&mut self, session: SessionId, request: AccessControlRequest) -> Input {
        let (opened_tx, opened) = oneshot::channel();
        let request = Request {
            request,
            session,
            responses: self.responses_tx.clone(),
            opened,
            socket: Arc::clone(&self.socket),
        };
        match self.requests.try_send(request) {
            Ok(()) => {
                if let Some(pending) = self.pending.get_mut(&session.0) {
                    pending.opened = Some(opened_tx);
                }
                Input::Success(ResultOf::RequestAccess(session))
            }
            // The server loop is behind (or gone): refuse now rather than wait.
            Err(_) => {
                self.dropped.busy += 1;
                Input::AccessResponse(Some((
                    session,
                    AccessControlResponse::Rejected(RejectReason::Server(
                        ServerRejectReason::Overload,
                    )),
                )))
            }
        }
    }

    fn open(&mut self, session: SessionId, connection: Connection) {
        let opened = self.forget(session.0).and_then(|pending| pending.opened);
        let Some(opened_tx) = opened else {
            // Nobody waits for it (the admission gave up): the caller times out.
            return;
        };
        let (tx, packets) = mpsc::channel(CONNECTION_QUEUE);
        if opened_tx
            .send(Opened {
                connection,
                packets,
            })
            .is_ok()
        {
            self.routes.insert(session.0, tx);
        }
    }

    /// Removes a peer's handshake state (ours; the multiplexer's goes with the input that
    /// follows).
    fn forget(&mut self, peer: SocketAddr) -> Option<Pending> {
        let pending = self.pending.remove(&peer)?;
        if let Some(count) = self.per_ip.get_mut(&peer.ip()) {
            *count -= 1;
            if *count == 0 {
                self.per_ip.remove(&peer.ip());
            }
        }
        Some(pending)
    }

    /// Forgets handshakes older than [`PENDING_TTL`] and routes of ended connections.
    fn sweep(&mut self) {
        let now = Instant::now();
        self.expire(|since| now.duration_since(since) > PENDING_TTL, usize::MAX);
        self.routes.retain(|_, route| !route.is_closed());
        self.feed(Input::Timer);
    }

    /// Forgets up to `limit` of the oldest handshakes, while `old(since)` holds for them.
    fn expire(&mut self, old: impl Fn(Instant) -> bool, limit: usize) {
        let mut forgotten = 0;
        while forgotten < limit {
            let Some(&(peer, since)) = self.order.front() else {
                break;
            };
            let live = self.pending.get(&peer).is_some_and(|p| p.since == since);
            if live && !old(since) {
                break;
            }
            self.order.pop_front();
            if live {
                self.forget(peer);
                self.feed(Input::Success(ResultOf::DropConnection(SessionId(peer))));
                forgotten += 1;
            }
        }
    }

    /// srt-protocol's multiplexer panicked: start a new one. Handshakes in progress are lost
    /// (their callers retry or time out); connections are not affected (they are routed here).
    fn reset_multiplex(&mut self) {
        self.dropped.panics += 1;
        tracing::error!(
            handshakes_lost = self.pending.len(),
            "srt-protocol's handshake code failed on a peer's packet; handshakes in progress \
             are restarted, connections continue"
        );
        self.multiplex = MultiplexListener::new(Instant::now(), self.local, self.settings.clone());
        self.pending.clear();
        self.order.clear();
        self.per_ip.clear();
    }

    fn send(&mut self, packet: &Packet, to: SocketAddr) {
        send(&self.socket, &mut self.out, packet, to);
    }
}

/// Sends one packet without waiting: a full socket buffer loses it (SRT retransmits).
fn send(socket: &UdpSocket, out: &mut BytesMut, packet: &Packet, to: SocketAddr) {
    out.clear();
    packet.serialize(out);
    if let Err(e) = socket.try_send_to(out, to) {
        if e.kind() != io::ErrorKind::WouldBlock {
            tracing::debug!(peer = %to, error = %e, "SRT send failed");
        }
    }
}

/// One connected caller: srt-protocol's connection state, driven by its caller's task.
#[derive(Debug)]
pub struct SrtConnection {
    connection: DuplexConnection,
    packets: mpsc::Receiver<Packet>,
    socket: Arc<UdpSocket>,
    remote: SocketAddr,
    out: BytesMut,
}

/// What the connection's state machine has for its task.
enum Poll {
    Data(Bytes),
    Closed,
    Wait(Instant),
}

impl SrtConnection {
    fn new(opened: Opened, socket: Arc<UdpSocket>) -> SrtConnection {
        let remote = opened.connection.settings.remote;
        SrtConnection {
            connection: DuplexConnection::new(opened.connection),
            packets: opened.packets,
            socket,
            remote,
            out: BytesMut::with_capacity(DATAGRAM_MAX),
        }
    }

    /// The next payload the caller sent, in order (SRT's latency buffer releases it), or
    /// `None` when the caller closed or its peer idle timeout (5 s of silence) expired.
    /// Cancel-safe: nothing is lost when the future is dropped between payloads.
    pub async fn recv(&mut self) -> io::Result<Option<Bytes>> {
        loop {
            let now = Instant::now();
            let connection = &mut self.connection;
            let (socket, out) = (&self.socket, &mut self.out);
            let poll = guarded(|| {
                while let Some((packet, to)) = connection.next_packet(now) {
                    send(socket, out, &packet, to);
                }
                if let Some((_, data)) = connection.next_data(now) {
                    return Poll::Data(data);
                }
                if !connection.is_open() {
                    return Poll::Closed;
                }
                let next = connection.check_timers(now);
                while let Some((packet, to)) = connection.next_packet(now) {
                    send(socket, out, &packet, to);
                }
                Poll::Wait(next)
            })
            .map_err(|Panicked| state_failed())?;
            let wake = match poll {
                Poll::Data(data) => return Ok(Some(data)),
                Poll::Closed => return Ok(None),
                Poll::Wait(next) => next.max(now + Duration::from_micros(100)),
            };
            tokio::select! {
                _ = tokio::time::sleep_until(wake.into()) => {}
                packet = self.packets.recv() => match packet {
                    Some(packet) => {
                        self.handle(packet)?;
                        // Everything already queued, in one wake-up.
                        while let Ok(packet) = self.packets.try_recv() {
                            self.handle(packet)?;
                        }
                    }
                    None => {
                        return Err(io::Error::new(
                            io::ErrorKind::NotConnected,
                            "the SRT listener stopped",
                        ))
                    }
                },
            }
        }
    }

    fn handle(&mut self, packet: Packet) -> io::Result<()> {
        let connection = &mut self.connection;
        let remote = self.remote;
        guarded(|| connection.handle_packet_input(Instant::now(), Ok((packet, remote))))
            .map_err(|Panicked| state_failed())
    }

    /// Closes the connection: SRT's shutdown to the caller, waiting at most `grace` for the
    /// exchange. Payloads still arriving are discarded.
    pub async fn close(&mut self, grace: Duration) {
        let connection = &mut self.connection;
        if guarded(|| connection.handle_data_input(Instant::now(), None)).is_err() {
            return;
        }
        let _ = tokio::time::timeout(grace, async {
            while let Ok(Some(_)) = self.recv().await {}
        })
        .await;
    }
}

fn state_failed() -> io::Error {
    io::Error::other("srt-protocol's connection code failed on the caller's packet")
}
