//! The bookkeeping of admission ([`Gate`]): which connections hold a slot, which have proven
//! themselves, which sit idle, and which one to drop to make room for a new one; a connection's
//! slot ([`Slot`]) and the handle its parts share ([`Handle`]): the deadline and eviction that
//! [`Handle::guard`] enforces, and the calls that prove it, mark it idle or busy.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::limits::{AT_CAPACITY, AtCapacity, Counts, Dropped, Limits, MetricNames};
use crate::throttle::{LOG_INTERVAL, Summary, ThrottledLog};

// A connection's phase. Moves: UNPROVEN -> BUSY (proved, under the gate's lock); BUSY <-> IDLE
// (lock-free); UNPROVEN or IDLE -> CLOSING (under the lock).
const UNPROVEN: u8 = 0;
const BUSY: u8 = 1;
const IDLE: u8 = 2;
const CLOSING: u8 = 3;

#[derive(Debug)]
struct Conn {
    id: u64,
    peer: SocketAddr,
    admitted: Instant,
    phase: AtomicU8,
    /// When it last went idle, on the gate's idle clock (a counter: older is smaller).
    idle_since: AtomicU64,
    /// Why it was told to close ([`Dropped::code`]), 0 if it was not.
    dropped: AtomicU8,
    /// A write the socket has not taken yet ([`Handle::writing`]): not evicted while idle.
    writing: AtomicBool,
    told: Notify,
}

impl Conn {
    fn phase(&self) -> u8 {
        self.phase.load(Ordering::Acquire)
    }
}

#[derive(Debug, Default)]
struct State {
    next_id: u64,
    /// Every connection holding a slot, in the order they were admitted.
    open: BTreeMap<u64, Arc<Conn>>,
    /// The unproven ones not told to close, oldest first.
    unproven: BTreeSet<u64>,
    /// Connections told to close that still hold their slot (until their task drops it).
    closing: usize,
    counts: Counts,
}

impl State {
    /// Tells `conn` (unproven, or idle won by compare-and-swap) to close, under the lock.
    fn tell(&mut self, conn: &Conn, why: Dropped) {
        conn.dropped.store(why.code(), Ordering::Release);
        conn.phase.store(CLOSING, Ordering::Release);
        conn.told.notify_one();
        self.closing += 1;
        match why {
            Dropped::UnprovenEvicted => self.counts.unproven_evicted += 1,
            Dropped::UnprovenTimeout => self.counts.unproven_timeout += 1,
            Dropped::IdleEvicted => self.counts.idle_evicted += 1,
        }
    }

    fn evict_oldest_unproven(&mut self) -> Option<(Dropped, SocketAddr)> {
        let id = self.unproven.pop_first()?;
        let conn = self.open.get(&id)?.clone();
        self.tell(&conn, Dropped::UnprovenEvicted);
        Some((Dropped::UnprovenEvicted, conn.peer))
    }

    /// The connection idle the longest, if any. A scan of the open connections: it runs only
    /// when every slot is taken and none is unproven, and keeps marking a connection idle or
    /// busy down to one atomic operation.
    fn evict_longest_idle(&mut self) -> Option<(Dropped, SocketAddr)> {
        loop {
            let oldest = self
                .open
                .values()
                .filter(|conn| conn.phase() == IDLE && !conn.writing.load(Ordering::Acquire))
                .min_by_key(|conn| conn.idle_since.load(Ordering::Acquire))?
                .clone();
            // Lost only to a request that has just begun on it: then look again.
            if oldest
                .phase
                .compare_exchange(IDLE, CLOSING, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                self.tell(&oldest, Dropped::IdleEvicted);
                return Some((Dropped::IdleEvicted, oldest.peer));
            }
        }
    }
}

/// Admits connections by one set of rules ([`Limits`]): every connection is unproven until the
/// server says it has proved itself ([`Handle::prove`]); unproven ones have a deadline and a
/// cap of their own; when a new connection comes while either cap is reached, the oldest
/// unproven connection is dropped to make room (so a flood of connections that never prove
/// themselves only ever evicts itself, and a client that proves itself within moments of
/// arriving is not evicted), then, if none is unproven, the connection idle the longest (for
/// servers that mark idle connections); only when every slot is held by a proven connection in
/// use is the new one refused.
///
/// Events are counted ([`Gate::counts`], and the metrics named in [`MetricNames`]) and logged
/// as one line per [`LOG_INTERVAL`] at most, with the count of each reason. Cheap to clone:
/// clones are the same gate.
#[derive(Clone)]
pub struct Gate {
    shared: Arc<Shared>,
}

struct Shared {
    limits: Limits,
    metrics: Recorded,
    state: Mutex<State>,
    idle_clock: AtomicU64,
    /// The listener's address, for the log lines (set by the accept loop).
    listener: Arc<OnceLock<SocketAddr>>,
    log: ThrottledLog,
}

impl fmt::Debug for Gate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gate")
            .field("limits", &self.shared.limits)
            .field("counts", &self.counts())
            .finish_non_exhaustive()
    }
}

impl Gate {
    /// A gate admitting by `limits` ([`Limits::effective`]) and recording `metrics`.
    pub fn new(limits: Limits, metrics: MetricNames) -> Self {
        let limits = limits.effective();
        let listener: Arc<OnceLock<SocketAddr>> = Arc::default();
        let named = listener.clone();
        Self {
            shared: Arc::new(Shared {
                limits,
                metrics: Recorded::new(metrics),
                state: Mutex::default(),
                idle_clock: AtomicU64::new(0),
                listener,
                log: ThrottledLog::new(LOG_INTERVAL, move |summary| {
                    log_line(named.get(), limits, summary);
                }),
            }),
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> Limits {
        self.shared.limits
    }

    /// What the gate has done so far and holds now.
    pub fn counts(&self) -> Counts {
        let state = self.shared.lock();
        Counts {
            open: state.open.len(),
            unproven: state.unproven.len(),
            idle: state.open.values().filter(|c| c.phase() == IDLE).count(),
            ..state.counts
        }
    }

    /// Admits a connection from `peer`, unproven, making room if needed (see [`Gate`]), or
    /// refuses it. Either way, what was done is counted and logged.
    pub fn admit(&self, peer: SocketAddr) -> Result<Slot, AtCapacity> {
        let limits = self.shared.limits;
        let mut dropped = [None, None];
        let admitted = {
            let mut state = self.shared.lock();
            if state.unproven.len() >= limits.max_unproven {
                dropped[0] = state.evict_oldest_unproven();
            }
            let full = state.open.len() - state.closing >= limits.max_connections;
            // While the unproven have fewer than their share, an idle keep-alive connection
            // gives way first: otherwise a flood would shrink the unproven pool to the slots
            // proven connections leave, and a real newcomer would survive fewer arrivals than
            // `max_unproven` promises. At the unproven cap (evicted just above) or with nothing
            // idle, the oldest unproven goes.
            let room = !full || {
                dropped[1] = if state.unproven.len() < limits.max_unproven {
                    state
                        .evict_longest_idle()
                        .or_else(|| state.evict_oldest_unproven())
                } else {
                    state
                        .evict_oldest_unproven()
                        .or_else(|| state.evict_longest_idle())
                };
                dropped[1].is_some()
            };
            if room {
                let id = state.next_id;
                state.next_id += 1;
                let conn = Arc::new(Conn {
                    id,
                    peer,
                    admitted: Instant::now(),
                    phase: AtomicU8::new(UNPROVEN),
                    idle_since: AtomicU64::new(0),
                    dropped: AtomicU8::new(0),
                    writing: AtomicBool::new(false),
                    told: Notify::new(),
                });
                state.open.insert(id, conn.clone());
                state.unproven.insert(id);
                state.counts.admitted += 1;
                Ok(conn)
            } else {
                state.counts.at_capacity += 1;
                Err(AtCapacity)
            }
        };
        for (why, peer) in dropped.into_iter().flatten() {
            self.record(why.label(), peer);
        }
        match admitted {
            Ok(conn) => {
                if let Some(open) = &self.shared.metrics.open {
                    open.increment(1.0);
                }
                Ok(Slot {
                    handle: Handle {
                        gate: self.clone(),
                        conn,
                    },
                })
            }
            Err(AtCapacity) => {
                self.record(AT_CAPACITY, peer);
                Err(AtCapacity)
            }
        }
    }

    /// Names the listener in the gate's log lines.
    pub(crate) fn listening_on(&self, addr: SocketAddr) {
        let _ = self.shared.listener.set(addr);
    }

    fn record(&self, reason: &'static str, peer: SocketAddr) {
        if let Some(dropped) = self.shared.metrics.dropped(reason) {
            dropped.increment(1);
        }
        self.shared.log.record(reason, || peer.to_string());
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The gate's metrics, their handles taken once from the process's recorder (so it must be
/// installed before the gate is made): a connection then costs an atomic operation or two, not
/// a look-up by name.
struct Recorded {
    open: Option<metrics::Gauge>,
    /// One counter per reason, in the order of [`Recorded::REASONS`].
    dropped: Option<[metrics::Counter; 4]>,
}

impl Recorded {
    const REASONS: [&'static str; 4] = [
        Dropped::UnprovenEvicted.label(),
        Dropped::UnprovenTimeout.label(),
        Dropped::IdleEvicted.label(),
        AT_CAPACITY,
    ];

    fn new(names: MetricNames) -> Self {
        Self {
            open: names.open.map(|name| metrics::gauge!(name)),
            dropped: names.dropped.map(|name| {
                Self::REASONS.map(|reason| metrics::counter!(name, "reason" => reason))
            }),
        }
    }

    fn dropped(&self, reason: &str) -> Option<&metrics::Counter> {
        let at = Self::REASONS.iter().position(|known| *known == reason)?;
        self.dropped.as_ref().map(|counters| &counters[at])
    }
}

/// The gate's one line per interval.
fn log_line(listener: Option<&SocketAddr>, limits: Limits, summary: &Summary) {
    let listener = listener.map(ToString::to_string).unwrap_or_default();
    let Limits {
        max_connections,
        max_unproven,
        unproven_timeout,
    } = limits;
    if summary.count(AT_CAPACITY) > 0 {
        tracing::warn!(%listener, dropped = %summary, first = %summary.firsts(), max_connections,
            "connections dropped to keep within the connection limits, some refused because \
             every slot was held by a proven connection in use (raise the connection limit if \
             they are legitimate); counts since the last such line");
    } else {
        tracing::warn!(%listener, dropped = %summary, first = %summary.firsts(), max_connections,
            max_unproven, ?unproven_timeout,
            "connections that had not proved themselves dropped, to make room or at their \
             deadline; counts since the last such line");
    }
}

/// The handle the parts of one connection share: to enforce its deadline and eviction
/// ([`Handle::guard`]), and to say it has proved itself, is idle or busy. Cheap to clone; the
/// slot itself is held by the [`Slot`].
#[derive(Debug, Clone)]
pub struct Handle {
    gate: Gate,
    conn: Arc<Conn>,
}

impl Handle {
    /// Runs `connection` (the connection's work: its handshake, or its whole life) until it
    /// completes, or until the gate drops the connection: evicted to make room, or still
    /// unproven at its deadline. What the gate drops is counted and logged by the gate.
    pub async fn guard<F: Future>(&self, connection: F) -> Result<F::Output, Dropped> {
        let deadline = self.conn.admitted + self.gate.shared.limits.unproven_timeout;
        let mut connection = std::pin::pin!(connection);
        let mut deadline_passed = false;
        loop {
            if let Some(why) = Dropped::from_code(self.conn.dropped.load(Ordering::Acquire)) {
                return Err(why);
            }
            tokio::select! {
                biased;
                () = self.conn.told.notified() => {}
                () = tokio::time::sleep_until(deadline), if !deadline_passed => {
                    deadline_passed = true;
                    if self.expire() {
                        return Err(Dropped::UnprovenTimeout);
                    }
                }
                output = &mut connection => return Ok(output),
            }
        }
    }

    /// The connection has proved itself: no deadline from now on, and never evicted while
    /// busy. False if the gate has already told it to close (it must close).
    pub fn prove(&self) -> bool {
        match self.conn.phase() {
            BUSY | IDLE => return true,
            CLOSING => return false,
            _ => {}
        }
        let mut state = self.gate.shared.lock();
        if self.conn.phase() != UNPROVEN {
            return self.conn.phase() != CLOSING;
        }
        self.conn.phase.store(BUSY, Ordering::Release);
        state.unproven.remove(&self.conn.id);
        state.counts.proven += 1;
        true
    }

    /// Whether the connection has proved itself.
    pub fn is_proven(&self) -> bool {
        matches!(self.conn.phase(), BUSY | IDLE)
    }

    /// Whether the connection has a write the socket has not taken yet: an idle connection
    /// whose last answer is still going out is not evicted (a server may count itself idle
    /// once the answer is in its own buffer, before it is on the wire).
    pub fn writing(&self, pending: bool) {
        self.conn.writing.store(pending, Ordering::Release);
    }

    /// The proven connection waits for its next request: it may be evicted, the longest idle
    /// first, when room is needed and no connection is unproven. No effect on an unproven one.
    pub fn idle(&self) {
        let now = self.gate.shared.idle_clock.fetch_add(1, Ordering::Relaxed);
        self.conn.idle_since.store(now, Ordering::Release);
        let _ = self
            .conn
            .phase
            .compare_exchange(BUSY, IDLE, Ordering::AcqRel, Ordering::Acquire);
    }

    /// The idle connection has work again (a request has begun): no longer evicted.
    pub fn busy(&self) {
        if self.conn.phase() == IDLE {
            let _ =
                self.conn
                    .phase
                    .compare_exchange(IDLE, BUSY, Ordering::AcqRel, Ordering::Acquire);
        }
    }

    /// Drops the connection if it is still unproven (its deadline has passed).
    fn expire(&self) -> bool {
        {
            let mut state = self.gate.shared.lock();
            if self.conn.phase() != UNPROVEN {
                return false;
            }
            state.unproven.remove(&self.conn.id);
            state.tell(&self.conn, Dropped::UnprovenTimeout);
        }
        self.gate
            .record(Dropped::UnprovenTimeout.label(), self.conn.peer);
        true
    }
}

/// One connection's place among the gate's `max_connections`: held until dropped. Drop it
/// before the socket closes, so that a peer that sees the close can count on the slot being
/// free. Dereferences to its [`Handle`].
#[derive(Debug)]
pub struct Slot {
    handle: Handle,
}

impl std::ops::Deref for Slot {
    type Target = Handle;

    fn deref(&self) -> &Handle {
        &self.handle
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let shared = &self.handle.gate.shared;
        {
            let mut state = shared.lock();
            let conn = &self.handle.conn;
            state.open.remove(&conn.id);
            match conn.phase() {
                UNPROVEN => {
                    state.unproven.remove(&conn.id);
                }
                CLOSING => state.closing -= 1,
                _ => {}
            }
        }
        if let Some(open) = &shared.metrics.open {
            open.decrement(1.0);
        }
    }
}

#[cfg(test)]
mod tests;
