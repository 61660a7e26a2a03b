//! The connection slots of one listener, and who gives way when they run out.
//!
//! A peer that has not been admitted (no accepted `publish`) has proved nothing: it may be a
//! port scanner, a slowloris or an encoder a few milliseconds from publishing. So:
//! - admitted publishers are never displaced;
//! - when the listener is full, a new connection closes the **oldest unadmitted** one (an
//!   encoder's handshake, `connect` and `publish` take milliseconds; a parked peer is old),
//!   and is refused only when every slot holds an admitted publisher;
//! - one IP address holds at most a few unadmitted connections (a new one closes that
//!   address's oldest), so one host cannot fill the listener on its own;
//! - the bytes unadmitted connections hold (incomplete messages) are summed, and over the
//!   listener's budget the oldest unadmitted connections are closed.
//!
//! One std mutex over one state struct (house style 5): every operation is a few map
//! updates, never held across an `.await`, and taken once per accept, per admission and per
//! read of an unadmitted connection only.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How often, at most, evictions are logged (with a count) while they happen.
const EVICTION_LOG_INTERVAL: Duration = Duration::from_secs(1);

/// Why an unadmitted connection was closed to make room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Eviction {
    /// The listener was full and a newer connection took the slot.
    ListenerFull,
    /// Its address had too many unadmitted connections and a newer one took the slot.
    AddressLimit,
    /// Unadmitted connections together held more bytes than the listener's budget.
    MemoryBudget,
}

impl std::fmt::Display for Eviction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Eviction::ListenerFull => "listener full: oldest unadmitted connection closed",
            Eviction::AddressLimit => {
                "too many unadmitted connections from this address: oldest closed"
            }
            Eviction::MemoryBudget => {
                "unadmitted connections exceed the listener's memory budget: oldest closed"
            }
        })
    }
}

/// Limits of a listener's slots.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct SlotLimits {
    pub(crate) max_connections: usize,
    pub(crate) max_unadmitted_per_address: usize,
    pub(crate) max_unadmitted_bytes: usize,
}

struct Unadmitted {
    ip: IpAddr,
    bytes: usize,
    close: CancellationToken,
    reason: Arc<OnceLock<Eviction>>,
}

#[derive(Default)]
struct State {
    /// Under the lock with the counts: a configuration reload changes them.
    limits: SlotLimits,
    next_id: u64,
    /// All open connections, admitted or not.
    open: usize,
    /// Unadmitted connections by age (ids increase).
    unadmitted: BTreeMap<u64, Unadmitted>,
    per_address: HashMap<IpAddr, usize>,
    unadmitted_bytes: usize,
    evicted: u64,
    last_log: Option<Instant>,
}

impl State {
    fn evict(&mut self, id: u64, reason: Eviction) {
        let Some(entry) = self.unadmitted.remove(&id) else {
            return;
        };
        self.forget(&entry);
        self.open -= 1;
        let _ = entry.reason.set(reason);
        entry.close.cancel();
        self.evicted += 1;
        if self
            .last_log
            .is_none_or(|t| t.elapsed() >= EVICTION_LOG_INTERVAL)
        {
            tracing::warn!(
                ip = %entry.ip,
                reason = %reason,
                evicted_total = self.evicted,
                unadmitted = self.unadmitted.len(),
                "closed an unadmitted connection"
            );
            self.last_log = Some(Instant::now());
        }
    }

    /// Removes an unadmitted entry's share of the per-address and byte counts.
    fn forget(&mut self, entry: &Unadmitted) {
        self.unadmitted_bytes -= entry.bytes;
        if let Some(n) = self.per_address.get_mut(&entry.ip) {
            *n -= 1;
            if *n == 0 {
                self.per_address.remove(&entry.ip);
            }
        }
    }

    fn oldest(&self, ip: Option<IpAddr>) -> Option<u64> {
        self.unadmitted
            .iter()
            .find(|(_, e)| ip.is_none_or(|ip| e.ip == ip))
            .map(|(id, _)| *id)
    }
}

/// The slots of one listener.
pub(crate) struct Slots {
    state: Mutex<State>,
}

impl Slots {
    pub(crate) fn new(limits: SlotLimits) -> Arc<Self> {
        Arc::new(Slots {
            state: Mutex::new(State {
                limits,
                ..State::default()
            }),
        })
    }

    /// New limits (a configuration reload), applied from the next connection on: nobody is
    /// closed because of them until then.
    pub(crate) fn set_limits(&self, limits: SlotLimits) {
        self.lock().limits = limits;
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent between statements: a panic elsewhere cannot leave it
        // half-updated, so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A slot for a new connection from `ip`, closing older unadmitted connections as
    /// needed; `None` when every slot holds an admitted publisher.
    pub(crate) fn open(self: &Arc<Self>, ip: IpAddr) -> Option<Slot> {
        let mut state = self.lock();
        if state.per_address.get(&ip).copied().unwrap_or(0)
            >= state.limits.max_unadmitted_per_address
        {
            if let Some(id) = state.oldest(Some(ip)) {
                state.evict(id, Eviction::AddressLimit);
            }
        }
        if state.open >= state.limits.max_connections {
            let id = state.oldest(None)?;
            state.evict(id, Eviction::ListenerFull);
        }
        let id = state.next_id;
        state.next_id += 1;
        state.open += 1;
        *state.per_address.entry(ip).or_default() += 1;
        let close = CancellationToken::new();
        let reason = Arc::new(OnceLock::new());
        state.unadmitted.insert(
            id,
            Unadmitted {
                ip,
                bytes: 0,
                close: close.clone(),
                reason: Arc::clone(&reason),
            },
        );
        Some(Slot {
            slots: Arc::clone(self),
            id,
            admitted: false,
            close,
            reason,
        })
    }

    /// Open connections, admitted or not (for tests and logs).
    #[cfg(test)]
    fn counts(&self) -> (usize, usize, usize) {
        let state = self.lock();
        (state.open, state.unadmitted.len(), state.unadmitted_bytes)
    }
}

/// One connection's slot; dropping it frees the slot.
pub(crate) struct Slot {
    slots: Arc<Slots>,
    id: u64,
    admitted: bool,
    close: CancellationToken,
    reason: Arc<OnceLock<Eviction>>,
}

impl Slot {
    /// Cancelled when the connection was closed to make room; [`Slot::eviction`] says why.
    pub(crate) fn closed(&self) -> &CancellationToken {
        &self.close
    }

    /// Why the connection was evicted, once [`Slot::closed`] is cancelled.
    pub(crate) fn eviction(&self) -> Eviction {
        self.reason.get().copied().unwrap_or(Eviction::ListenerFull)
    }

    /// Reports the bytes this unadmitted connection holds now. Over the listener's budget,
    /// the oldest unadmitted connections are closed (possibly this one).
    pub(crate) fn set_pending(&self, bytes: usize) {
        if self.admitted {
            return;
        }
        let mut state = self.slots.lock();
        let Some(entry) = state.unadmitted.get_mut(&self.id) else {
            return; // evicted already
        };
        let before = entry.bytes;
        entry.bytes = bytes;
        state.unadmitted_bytes = state.unadmitted_bytes - before + bytes;
        while state.unadmitted_bytes > state.limits.max_unadmitted_bytes {
            let Some(id) = state.oldest(None) else { break };
            state.evict(id, Eviction::MemoryBudget);
        }
    }

    /// The connection's publish was admitted: it is never evicted from now on. `false` when
    /// it was evicted while admission was being decided (the connection must close).
    pub(crate) fn admit(&mut self) -> bool {
        if self.admitted {
            return true;
        }
        let mut state = self.slots.lock();
        let Some(entry) = state.unadmitted.remove(&self.id) else {
            return false;
        };
        state.forget(&entry);
        self.admitted = true;
        true
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut state = self.slots.lock();
        if self.admitted {
            state.open -= 1;
        } else if let Some(entry) = state.unadmitted.remove(&self.id) {
            state.forget(&entry);
            state.open -= 1;
        }
        // Otherwise it was evicted, and its counts were removed then.
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slots(max_connections: usize, per_address: usize, bytes: usize) -> Arc<Slots> {
        Slots::new(SlotLimits {
            max_connections,
            max_unadmitted_per_address: per_address,
            max_unadmitted_bytes: bytes,
        })
    }

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, n])
    }

    #[test]
    fn a_full_listener_closes_its_oldest_unadmitted_connection_never_a_publisher() {
        let s = slots(3, 10, 1 << 20);
        let mut publisher = s.open(ip(1)).unwrap();
        assert!(publisher.admit());
        let a = s.open(ip(2)).unwrap();
        let b = s.open(ip(3)).unwrap();
        let c = s.open(ip(4)).unwrap();
        assert!(a.closed().is_cancelled(), "oldest unadmitted gives way");
        assert_eq!(a.eviction(), Eviction::ListenerFull);
        assert!(!b.closed().is_cancelled() && !c.closed().is_cancelled());
        assert!(!publisher.closed().is_cancelled());
        assert_eq!(s.counts(), (3, 2, 0));
        drop(a);
        assert_eq!(
            s.counts(),
            (3, 2, 0),
            "an evicted slot was freed when evicted"
        );
        // All admitted: new connections are refused.
        let mut b = b;
        let mut c = c;
        assert!(b.admit() && c.admit());
        assert!(s.open(ip(5)).is_none());
        drop(publisher);
        assert!(s.open(ip(5)).is_some());
        assert_eq!(s.counts(), (2, 0, 0), "the dropped new slot freed itself");
    }

    #[test]
    fn one_address_holds_few_unadmitted_connections() {
        let s = slots(100, 2, 1 << 20);
        let a = s.open(ip(1)).unwrap();
        let b = s.open(ip(1)).unwrap();
        let other = s.open(ip(2)).unwrap();
        let c = s.open(ip(1)).unwrap();
        assert!(a.closed().is_cancelled());
        assert_eq!(a.eviction(), Eviction::AddressLimit);
        assert!(!b.closed().is_cancelled() && !c.closed().is_cancelled());
        assert!(!other.closed().is_cancelled());
        // An admitted publisher no longer counts against its address.
        let mut b = b;
        assert!(b.admit());
        let d = s.open(ip(1)).unwrap();
        assert!(!c.closed().is_cancelled() && !d.closed().is_cancelled());
        // Evicted while admission was decided: the admission must not keep the slot.
        let mut a = a;
        assert!(!a.admit());
    }

    #[test]
    fn the_byte_budget_closes_the_oldest_unadmitted_connections() {
        let s = slots(100, 100, 100);
        let a = s.open(ip(1)).unwrap();
        let b = s.open(ip(2)).unwrap();
        a.set_pending(60);
        b.set_pending(30);
        assert_eq!(s.counts(), (2, 2, 90));
        let c = s.open(ip(3)).unwrap();
        c.set_pending(20);
        assert!(a.closed().is_cancelled());
        assert_eq!(a.eviction(), Eviction::MemoryBudget);
        assert!(!b.closed().is_cancelled() && !c.closed().is_cancelled());
        assert_eq!(s.counts(), (2, 2, 50));
        b.set_pending(0);
        assert_eq!(s.counts(), (2, 2, 20));
        drop(c);
        assert_eq!(s.counts(), (1, 1, 0));
    }
}
