//! Group commit for discount RPCs: the queue and the slots that decide, for each HTTP request,
//! whether its RPC goes out now or waits to go out together with others.
//!
//! A request that finds no RPC in flight and nobody waiting sends its own RPC at once (no timer,
//! no hand-off: the low-load path is what it was). While an RPC is in flight, requests queue;
//! when it completes, its slot takes everything queued (up to a bound) as the next RPC. So the
//! batch grows by itself under load and the fixed cost of an RPC is shared by all the requests
//! in it. Another slot opens (up to the bound on RPCs in flight) in two cases:
//! - a batch's worth is waiting (as many requests as the largest RPC in flight carries): it goes
//!   out now, beside the RPC in flight, instead of idling until that one is back and then going
//!   out twice as large. Catalog and Discount then work on one batch while the other travels;
//! - every RPC in flight has been out longer than twice the usual time of an RPC that succeeded
//!   (or nothing has succeeded yet): the next request goes out at once, with those queued
//!   behind the slow RPCs, so a slow or hung replica holds up the requests it carries, not the
//!   ones after them.
//!
//! So a lone request opens a second slot only beside an RPC that carries one request itself (light
//! load, where going at once is what keeps it fast); under load the batches stay whole (at 32
//! concurrent requests, opening a second slot for any request made 4 in 10 RPCs carry a single
//! request, halving the batches). The queue is bounded: a full queue is a fast "no", never a
//! wait.
//!
//! This is only the bookkeeping, generic over what is queued, so it can be tested on its own;
//! sending the RPCs is [`super::groups`]' job. No crate offers this shape (a bounded MPSC with
//! in-flight slots and take-all-on-completion), hence the few lines here.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// The coalescer's bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CoalesceSettings {
    /// Most discount RPCs in flight at once. Requests arriving while one is in flight queue;
    /// another one opens when a batch's worth is waiting or those in flight are slow (see the
    /// module's documentation).
    pub rpcs_in_flight: usize,
    /// Most requests one coalesced RPC carries.
    pub max_requests_per_rpc: usize,
    /// Most products one coalesced RPC carries, all its requests together (a request is never
    /// split: one larger than this goes alone). Keeps an RPC far below the server's limits on
    /// products and message size, so a batch is never refused for its size.
    pub max_products_per_rpc: usize,
    /// Most requests waiting; beyond it a request is answered at once with full prices.
    pub max_queued: usize,
}

impl Default for CoalesceSettings {
    fn default() -> Self {
        Self {
            rpcs_in_flight: 2,
            max_requests_per_rpc: 128,
            max_products_per_rpc: 20_000,
            max_queued: 1024,
        }
    }
}

/// What [`Coalescer::admit`] decided for a request.
#[derive(Debug, PartialEq, Eq)]
pub enum Admission<T> {
    /// A slot was free and may open with nobody waiting to go with the request (or no room
    /// for it to wait): the caller sends its own RPC now, holding the slot from the instant it
    /// gave `admit`, and hands the slot on with [`Coalescer::take_batch`] when done.
    Lead,
    /// The request was queued: an RPC in flight will carry it when its slot frees up.
    Queued,
    /// The request was queued, and with it a batch's worth is waiting, or every RPC in flight
    /// is slow: the caller sends this batch (the oldest of those waiting, not necessarily its
    /// own request) on a new slot,
    /// started at the instant it gave `admit`, and hands that slot on with
    /// [`Coalescer::take_batch`] when done.
    Send(Vec<T>),
    /// The queue is full.
    Full,
}

/// The queue of requests waiting for an RPC and the slots in use.
#[derive(Debug)]
pub struct Coalescer<T> {
    state: Mutex<State<T>>,
    settings: CoalesceSettings,
    /// Whether a queued request still waits; one that stopped is left out of its batch.
    is_live: fn(&T) -> bool,
    /// A queued request's weight against the batch's product budget.
    weight: fn(&T) -> usize,
}

#[derive(Debug)]
struct State<T> {
    queue: VecDeque<T>,
    /// The RPCs in flight, one per slot in use. Invariant: the queue is non-empty only while a
    /// slot is in use, so a queued request always has an RPC in flight that will pick it up.
    in_flight: Vec<InFlight>,
    /// How long RPCs that succeeded usually take: a moving average of the last few (zero
    /// before the first).
    usual: Duration,
}

/// One slot's RPC.
#[derive(Debug, Clone, Copy)]
struct InFlight {
    started: Instant,
    /// How many requests it carries.
    carries: usize,
}

impl<T> State<T> {
    /// Whether `rpc` has been out for longer than twice the usual time at `now`.
    fn is_slow(&self, rpc: &InFlight, now: Instant) -> bool {
        now.saturating_duration_since(rpc.started) > self.usual * 2
    }

    /// Whether every RPC in flight is slow at `now` (true with none in flight).
    fn all_slow(&self, now: Instant) -> bool {
        self.in_flight.iter().all(|rpc| self.is_slow(rpc, now))
    }

    /// Whether a batch's worth is waiting at `now`: at least as many requests as the largest
    /// RPC in flight at its usual speed carries. A slow RPC does not count: one hung with a
    /// large batch would otherwise set a size the queue never reaches.
    fn batch_waiting(&self, now: Instant) -> bool {
        let usual = self.in_flight.iter().filter(|rpc| !self.is_slow(rpc, now));
        let largest = usual.map(|rpc| rpc.carries).max();
        largest.is_some_and(|largest| self.queue.len() >= largest)
    }

    /// The slot that started at `started` is done with its RPC.
    fn done(&mut self, started: Instant) {
        let i = self.in_flight.iter().position(|rpc| rpc.started == started);
        // Every holder passes the start it was given; a slot is freed all the same.
        debug_assert!(i.is_some(), "no slot in use started at {started:?}");
        let i = i.unwrap_or(self.in_flight.len().saturating_sub(1));
        if i < self.in_flight.len() {
            self.in_flight.swap_remove(i);
        }
    }
}

impl<T> Coalescer<T> {
    /// An empty coalescer with these bounds (each at least 1), which leaves out of a batch the
    /// requests for which `is_live` no longer holds and counts each request's `weight` against
    /// the batch's product budget.
    pub fn new(
        settings: CoalesceSettings,
        is_live: fn(&T) -> bool,
        weight: fn(&T) -> usize,
    ) -> Self {
        let settings = CoalesceSettings {
            rpcs_in_flight: settings.rpcs_in_flight.max(1),
            max_requests_per_rpc: settings.max_requests_per_rpc.max(1),
            max_products_per_rpc: settings.max_products_per_rpc.max(1),
            max_queued: settings.max_queued.max(1),
        };
        Self {
            state: Mutex::new(State {
                queue: VecDeque::with_capacity(settings.max_queued.min(1024)),
                in_flight: Vec::with_capacity(settings.rpcs_in_flight.min(64)),
                usual: Duration::ZERO,
            }),
            settings,
            is_live,
            weight,
        }
    }

    /// Takes a slot, started at `now`, if one is free and may open (see the module's
    /// documentation); else queues `entry()` if there is room, and hands out a batch for a new
    /// slot if a batch's worth is now waiting. `entry` runs only when the request is queued.
    pub fn admit(&self, now: Instant, entry: impl FnOnce() -> T) -> Admission<T> {
        let mut stale = Vec::new();
        let mut state = self.lock();
        let free = state.in_flight.len() < self.settings.rpcs_in_flight;
        let slow = free && state.all_slow(now);
        let full = state.queue.len() >= self.settings.max_queued;
        // With nothing waiting (always so with nothing in flight), or no room to wait, a
        // request that may open a slot goes out at once on its own; its slot takes the queue
        // when its RPC is done.
        if slow && (state.queue.is_empty() || full) {
            state.in_flight.push(InFlight {
                started: now,
                carries: 1,
            });
            return Admission::Lead;
        }
        if full {
            return Admission::Full;
        }
        state.queue.push_back(entry());
        // Behind RPCs that are all slow, those waiting go out now with this request, oldest
        // first, rather than wait for one of them to come back.
        let batch = if slow || (free && state.batch_waiting(now)) {
            self.take(&mut state, now, &mut stale)
        } else {
            None
        };
        drop(state);
        drop(stale);
        batch.map_or(Admission::Queued, Admission::Send)
    }

    /// An RPC succeeded after `took`: it counts for an eighth of the usual time (the first
    /// one for all), and for no more than four times the usual, so one that waited out a hung
    /// replica before its retry succeeded moves the average a little, not a lot.
    pub fn record(&self, took: Duration) {
        let mut state = self.lock();
        state.usual = if state.usual.is_zero() {
            took
        } else {
            (state.usual * 7 + took.min(state.usual * 4)) / 8
        };
    }

    /// Called at `now` by the holder of the slot that started its RPC at `started`, when that
    /// RPC is done: the next batch for the same slot, started at `now` (the waiting requests
    /// still live, oldest first, up to the bounds on requests and on their total weight in
    /// products), or `None`, and then the slot is free.
    pub fn take_batch(&self, started: Instant, now: Instant) -> Option<Vec<T>> {
        // Requests that stopped waiting, dropped after the lock is released (dropping one
        // wakes nobody, but its parts are not the lock's business).
        let mut stale = Vec::new();
        let mut state = self.lock();
        state.done(started);
        let batch = self.take(&mut state, now, &mut stale);
        drop(state);
        drop(stale);
        batch
    }

    /// The next batch from the queue, on a slot started at `now`, or `None` (no slot taken).
    /// Requests that stopped waiting go to `stale`.
    fn take(&self, state: &mut State<T>, now: Instant, stale: &mut Vec<T>) -> Option<Vec<T>> {
        let mut batch = Vec::new();
        let mut total = 0usize;
        while batch.len() < self.settings.max_requests_per_rpc {
            let Some(entry) = state.queue.front() else {
                break;
            };
            let weight = (self.weight)(entry);
            if total.saturating_add(weight) > self.settings.max_products_per_rpc
                && !batch.is_empty()
            {
                // It waits for the next RPC, as its first request.
                break;
            }
            let Some(entry) = state.queue.pop_front() else {
                break;
            };
            // A request that stopped waiting (its deadline passed) is dropped here.
            if (self.is_live)(&entry) {
                total = total.saturating_add(weight);
                batch.push(entry);
            } else {
                stale.push(entry);
            }
        }
        if batch.is_empty() {
            return None;
        }
        state.in_flight.push(InFlight {
            started: now,
            carries: batch.len(),
        });
        Some(batch)
    }

    /// Frees the slot that started at `started` without sending anything more on it (its
    /// holder cannot: the runtime is shutting down). When it was the last slot in use, nobody
    /// would pick up the requests still queued, so they are returned, for the caller to answer.
    pub fn release(&self, started: Instant) -> Vec<T> {
        let mut state = self.lock();
        state.done(started);
        if state.in_flight.is_empty() {
            state.queue.drain(..).collect()
        } else {
            Vec::new()
        }
    }

    /// Requests waiting now.
    pub fn queued(&self) -> usize {
        self.lock().queue.len()
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // The state is a queue and a list of slots, consistent after every statement.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
#[path = "coalesce_tests.rs"]
mod tests;
