//! Group commit for discount RPCs: the queue and the slots that decide, for each HTTP request,
//! whether its RPC goes out now or waits to go out together with others.
//!
//! A request that finds no RPC in flight and nobody waiting sends its own RPC at once (no timer,
//! no hand-off: the low-load path is what it was). While an RPC is in flight, requests queue;
//! when it completes, its slot takes everything queued (up to a bound) as the next RPC. So the
//! batch grows by itself under load and the fixed cost of an RPC is shared by all the requests
//! in it. Another slot opens (up to the bound on RPCs in flight) only when every RPC in flight
//! has been out longer than twice the usual time of an RPC that succeeded (or before any has):
//! a slow or hung replica then holds up the requests it carries, not the ones after them, while
//! at full speed no RPC goes out carrying one lone request beside a busy one (at 32 concurrent
//! requests, two RPCs in flight otherwise made 4 in 10 RPCs carry a single request, halving the
//! batches). The queue is bounded: a full queue is a fast "no", never a wait.
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
    /// another one opens only while those in flight are slow (see the module's documentation).
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// A slot was free and nobody was waiting: the caller sends its own RPC now, holding the
    /// slot from the instant it gave `admit`, and hands the slot on with
    /// [`Coalescer::take_batch`] when done.
    Lead,
    /// The request was queued: an RPC in flight will carry it when its slot frees up.
    Queued,
    /// The queue is full.
    Full,
}

/// The queue of requests waiting for an RPC and the count of slots in use.
#[derive(Debug)]
pub struct Coalescer<T> {
    state: Mutex<State<T>>,
    settings: CoalesceSettings,
}

#[derive(Debug)]
struct State<T> {
    queue: VecDeque<T>,
    /// When each slot in use started its RPC (one entry per slot in use). Invariant: the queue
    /// is non-empty only while a slot is in use, so a queued request always has an RPC in
    /// flight that will pick it up.
    started: Vec<Instant>,
    /// How long RPCs that succeeded usually take: a moving average of the last few (zero
    /// before the first).
    usual: Duration,
}

impl<T> State<T> {
    /// Whether another slot may open now: none is in use, or every RPC in flight has been out
    /// for longer than twice the usual time.
    fn may_open(&self, now: Instant) -> bool {
        self.started
            .iter()
            .all(|started| now.saturating_duration_since(*started) > self.usual * 2)
    }

    /// The slot that started at `started` is done with its RPC.
    fn done(&mut self, started: Instant) {
        let i = self.started.iter().position(|s| *s == started);
        // Every holder passes the start it was given; a slot is freed all the same.
        debug_assert!(i.is_some(), "no slot in use started at {started:?}");
        let i = i.unwrap_or(self.started.len().saturating_sub(1));
        if i < self.started.len() {
            self.started.swap_remove(i);
        }
    }
}

impl<T> Coalescer<T> {
    /// An empty coalescer with these bounds (each at least 1).
    pub fn new(settings: CoalesceSettings) -> Self {
        let settings = CoalesceSettings {
            rpcs_in_flight: settings.rpcs_in_flight.max(1),
            max_requests_per_rpc: settings.max_requests_per_rpc.max(1),
            max_products_per_rpc: settings.max_products_per_rpc.max(1),
            max_queued: settings.max_queued.max(1),
        };
        Self {
            state: Mutex::new(State {
                queue: VecDeque::with_capacity(settings.max_queued.min(1024)),
                started: Vec::with_capacity(settings.rpcs_in_flight.min(64)),
                usual: Duration::ZERO,
            }),
            settings,
        }
    }

    /// Takes a slot, started at `now`, if one is free and may open (see the module's
    /// documentation); else queues `entry()` if there is room. `entry` runs only when the
    /// request is queued.
    pub fn admit(&self, now: Instant, entry: impl FnOnce() -> T) -> Admission {
        let mut state = self.lock();
        // With nothing in flight the queue is empty (the invariant); with RPCs in flight that
        // are all slow, a request goes out at once, ahead of those queued behind them, which
        // the slot takes with it when its own RPC is done.
        if state.started.len() < self.settings.rpcs_in_flight && state.may_open(now) {
            state.started.push(now);
            Admission::Lead
        } else if state.queue.len() >= self.settings.max_queued {
            Admission::Full
        } else {
            state.queue.push_back(entry());
            Admission::Queued
        }
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
    /// for which `is_live` holds, oldest first, up to the bounds on requests and on their total
    /// `weight` in products), or `None`, and then the slot is free.
    pub fn take_batch(
        &self,
        (started, now): (Instant, Instant),
        is_live: impl Fn(&T) -> bool,
        weight: impl Fn(&T) -> usize,
    ) -> Option<Vec<T>> {
        // Requests that stopped waiting, dropped after the lock is released (dropping one
        // wakes nobody, but its parts are not the lock's business).
        let mut stale = Vec::new();
        let mut state = self.lock();
        state.done(started);
        let mut batch = Vec::new();
        let mut total = 0usize;
        while batch.len() < self.settings.max_requests_per_rpc {
            let Some(entry) = state.queue.front() else {
                break;
            };
            let heavy = total.saturating_add(weight(entry)) > self.settings.max_products_per_rpc;
            if heavy && !batch.is_empty() {
                // It waits for the next RPC, as its first request.
                break;
            }
            let Some(entry) = state.queue.pop_front() else {
                break;
            };
            // A request that stopped waiting (its deadline passed) is dropped here.
            if is_live(&entry) {
                total = total.saturating_add(weight(&entry));
                batch.push(entry);
            } else {
                stale.push(entry);
            }
        }
        if !batch.is_empty() {
            state.started.push(now);
        }
        drop(state);
        drop(stale);
        (!batch.is_empty()).then_some(batch)
    }

    /// Frees the slot that started at `started` without sending anything more on it (its
    /// holder cannot: the runtime is shutting down). When it was the last slot in use, nobody
    /// would pick up the requests still queued, so they are returned, for the caller to answer.
    pub fn release(&self, started: Instant) -> Vec<T> {
        let mut state = self.lock();
        state.done(started);
        if state.started.is_empty() {
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
        // The state is a queue and a counter, consistent after every statement.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn coalescer(
        rpcs_in_flight: usize,
        max_requests_per_rpc: usize,
        max_queued: usize,
    ) -> Coalescer<u32> {
        Coalescer::new(CoalesceSettings {
            rpcs_in_flight,
            max_requests_per_rpc,
            max_products_per_rpc: 1_000,
            max_queued,
        })
    }

    /// `ms` milliseconds into a test.
    fn at(ms: u64) -> Instant {
        thread_local!(static START: Instant = Instant::now());
        START.with(|start| *start + Duration::from_millis(ms))
    }

    /// The next batch of a slot that started at `started`, done at `now`, every request live
    /// and weighing 1.
    fn next(c: &Coalescer<u32>, started: u64, now: u64) -> Option<Vec<u32>> {
        c.take_batch((at(started), at(now)), |_| true, |_| 1)
    }

    #[test]
    fn with_nothing_in_flight_a_request_goes_out_at_once() {
        let c = coalescer(2, 8, 8);
        assert_eq!(c.admit(at(0), || 1), Admission::Lead);
        assert_eq!(c.queued(), 0);
        assert_eq!(next(&c, 0, 1), None);
        assert_eq!(c.admit(at(2), || 2), Admission::Lead);
    }

    #[test]
    fn while_an_rpc_is_in_flight_requests_queue_and_go_out_together() {
        let c = coalescer(1, 8, 8);
        assert_eq!(c.admit(at(0), || 0), Admission::Lead);
        for i in 1..=3 {
            assert_eq!(c.admit(at(0), || i), Admission::Queued);
        }
        assert_eq!(next(&c, 0, 1), Some(vec![1, 2, 3]));
        // The slot stays taken for that batch; with nothing more queued it is freed.
        assert_eq!(c.admit(at(1), || 4), Admission::Queued);
        assert_eq!(next(&c, 1, 2), Some(vec![4]));
        assert_eq!(next(&c, 2, 3), None);
        assert_eq!(c.admit(at(3), || 5), Admission::Lead);
    }

    #[test]
    fn another_rpc_opens_only_while_those_in_flight_are_slow() {
        let c = coalescer(2, 8, 8);
        // Before any RPC has succeeded, nothing is usual: another opens at once.
        assert_eq!(c.admit(at(0), || 0), Admission::Lead);
        assert_eq!(c.admit(at(1), || 0), Admission::Lead);
        assert_eq!(next(&c, 0, 5), None);
        assert_eq!(next(&c, 1, 5), None);
        // RPCs that succeeded in 10 ms make the usual time 10 ms.
        c.record(Duration::from_millis(10));
        assert_eq!(c.admit(at(100), || 0), Admission::Lead);
        // At the usual speed a request waits for the RPC in flight, and goes out with it...
        assert_eq!(c.admit(at(115), || 1), Admission::Queued);
        assert_eq!(next(&c, 100, 118), Some(vec![1]));
        assert_eq!(next(&c, 118, 126), None);
        // ...but one that has been out longer than twice the usual time lets another open,
        // up to the bound.
        assert_eq!(c.admit(at(200), || 0), Admission::Lead);
        assert_eq!(c.admit(at(219), || 2), Admission::Queued);
        assert_eq!(next(&c, 200, 219), Some(vec![2]));
        assert_eq!(c.admit(at(240), || 3), Admission::Lead);
        assert_eq!(c.admit(at(400), || 4), Admission::Queued);
        assert_eq!(c.queued(), 1);
        // A slow RPC that succeeds raises the usual time by an eighth of the difference, and
        // counts for no more than four times the usual.
        c.record(Duration::from_millis(18));
        assert_eq!(c.lock().usual, Duration::from_millis(11));
        c.record(Duration::from_secs(10));
        assert_eq!(c.lock().usual, Duration::from_micros(11_000 * 11 / 8));
    }

    #[test]
    fn a_slow_rpc_does_not_hold_up_requests_arriving_after_it_though_others_queued() {
        let c = coalescer(2, 8, 8);
        c.record(Duration::from_millis(10));
        assert_eq!(c.admit(at(0), || 0), Admission::Lead);
        // Within the usual time, requests queue behind it.
        assert_eq!(c.admit(at(5), || 1), Admission::Queued);
        // Past twice the usual time the RPC is slow: the next request goes out at once though
        // one is queued, and its slot takes the queued one when it is done.
        assert_eq!(c.admit(at(30), || 2), Admission::Lead);
        assert_eq!(next(&c, 30, 32), Some(vec![1]));
        // Both slots in use: the bound holds.
        assert_eq!(c.admit(at(100), || 3), Admission::Queued);
    }

    #[test]
    fn a_batch_is_bounded_and_the_rest_waits_for_the_next() {
        let c = coalescer(1, 2, 8);
        assert_eq!(c.admit(at(0), || 0), Admission::Lead);
        for i in 1..=5 {
            c.admit(at(0), || i);
        }
        assert_eq!(next(&c, 0, 1), Some(vec![1, 2]));
        assert_eq!(next(&c, 1, 2), Some(vec![3, 4]));
        assert_eq!(next(&c, 2, 3), Some(vec![5]));
        assert_eq!(next(&c, 3, 4), None);
    }

    #[test]
    fn a_batch_stays_within_its_product_budget_and_a_heavy_request_goes_alone() {
        // Entries are their own weight in products; the budget is 1,000.
        let c = coalescer(1, 100, 100);
        assert_eq!(c.admit(at(0), || 0), Admission::Lead);
        for weight in [400, 500, 200, 1_500, 300] {
            c.admit(at(0), || weight);
        }
        let take = |n: u64| c.take_batch((at(n), at(n + 1)), |_| true, |w| *w as usize);
        assert_eq!(take(0), Some(vec![400, 500]));
        assert_eq!(take(1), Some(vec![200]));
        assert_eq!(take(2), Some(vec![1_500]));
        assert_eq!(take(3), Some(vec![300]));
        assert_eq!(take(4), None);
    }

    #[test]
    fn a_full_queue_says_no_at_once() {
        let c = coalescer(1, 8, 2);
        assert_eq!(c.admit(at(0), || 0), Admission::Lead);
        assert_eq!(c.admit(at(0), || 1), Admission::Queued);
        assert_eq!(c.admit(at(0), || 2), Admission::Queued);
        assert_eq!(c.admit(at(0), || 3), Admission::Full);
        assert_eq!(c.queued(), 2);
    }

    #[test]
    fn requests_that_stopped_waiting_are_skipped() {
        let c = coalescer(1, 8, 8);
        assert_eq!(c.admit(at(0), || 0), Admission::Lead);
        for i in 1..=4 {
            c.admit(at(0), || i);
        }
        let live = |i: &u32| i.is_multiple_of(2);
        assert_eq!(c.take_batch((at(0), at(1)), live, |_| 1), Some(vec![2, 4]));
        // Only dead requests left: the slot is freed.
        c.admit(at(1), || 5);
        assert_eq!(c.take_batch((at(1), at(2)), |_| false, |_| 1), None);
        assert_eq!(c.admit(at(2), || 6), Admission::Lead);
    }

    #[test]
    fn a_released_slot_can_be_taken_again() {
        let c = coalescer(1, 8, 8);
        assert_eq!(c.admit(at(0), || 0), Admission::Lead);
        assert_eq!(c.release(at(0)), Vec::<u32>::new());
        assert_eq!(c.admit(at(1), || 1), Admission::Lead);
    }

    #[test]
    fn releasing_the_last_slot_hands_back_what_nobody_else_would_send() {
        let c = coalescer(2, 8, 8);
        assert_eq!(c.admit(at(0), || 0), Admission::Lead);
        // Nothing is usual yet: any age is slow enough to open another.
        assert_eq!(c.admit(at(1), || 1), Admission::Lead);
        c.admit(at(1), || 2);
        // Another slot is still in use: it will take the queue.
        assert_eq!(c.release(at(0)), Vec::<u32>::new());
        assert_eq!(c.release(at(1)), vec![2]);
        assert_eq!(c.queued(), 0);
    }
}
