//! Group commit for discount RPCs: the queue and the slots that decide, for each HTTP request,
//! whether its RPC goes out now or waits to go out together with others.
//!
//! A request that finds a free slot and nobody waiting sends its own RPC at once (no timer, no
//! hand-off: the low-load path is what it was). While every slot is busy, requests queue; when
//! an RPC completes, its slot takes everything queued (up to a bound) as the next RPC. So the
//! batch grows by itself under load and the fixed cost of an RPC is shared by all the requests
//! in it. The queue is bounded: a full queue is a fast "no", never a wait.
//!
//! This is only the bookkeeping, generic over what is queued, so it can be tested on its own;
//! sending the RPCs is [`super::groups`]' job. No crate offers this shape (a bounded MPSC with
//! in-flight slots and take-all-on-completion), hence the few lines here.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard, PoisonError};

/// The coalescer's bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CoalesceSettings {
    /// Most discount RPCs in flight at once; requests arriving while all are busy queue.
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
    /// slot, and hands the slot on with [`Coalescer::take_batch`] when done.
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
    /// Slots in use. Invariant: the queue is non-empty only while every slot is in use, so a
    /// queued request always has an RPC in flight that will pick it up.
    in_flight: usize,
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
                in_flight: 0,
            }),
            settings,
        }
    }

    /// Takes a slot if one is free and nobody waits; else queues `entry()` if there is room.
    /// `entry` runs only when the request is queued.
    pub fn admit(&self, entry: impl FnOnce() -> T) -> Admission {
        let mut state = self.lock();
        if state.queue.is_empty() && state.in_flight < self.settings.rpcs_in_flight {
            state.in_flight += 1;
            Admission::Lead
        } else if state.queue.len() >= self.settings.max_queued {
            Admission::Full
        } else {
            state.queue.push_back(entry());
            Admission::Queued
        }
    }

    /// Called by a slot's holder when its RPC is done: the next batch for the same slot (the
    /// waiting requests for which `is_live` holds, oldest first, up to the bounds on requests
    /// and on their total `weight` in products), or `None`, and then the slot is free.
    pub fn take_batch(
        &self,
        is_live: impl Fn(&T) -> bool,
        weight: impl Fn(&T) -> usize,
    ) -> Option<Vec<T>> {
        // Requests that stopped waiting, dropped after the lock is released (dropping one
        // wakes nobody, but its parts are not the lock's business).
        let mut stale = Vec::new();
        let mut state = self.lock();
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
        if batch.is_empty() {
            state.in_flight -= 1;
        }
        drop(state);
        drop(stale);
        (!batch.is_empty()).then_some(batch)
    }

    /// Frees a slot without sending anything more on it (its holder cannot: the runtime is
    /// shutting down). When it was the last slot in use, nobody would pick up the requests
    /// still queued, so they are returned, for the caller to answer.
    pub fn release(&self) -> Vec<T> {
        let mut state = self.lock();
        state.in_flight = state.in_flight.saturating_sub(1);
        if state.in_flight == 0 {
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

    #[test]
    fn with_a_free_slot_a_request_goes_out_at_once() {
        let c = coalescer(2, 8, 8);
        assert_eq!(c.admit(|| 1), Admission::Lead);
        assert_eq!(c.admit(|| 2), Admission::Lead);
        assert_eq!(c.queued(), 0);
    }

    #[test]
    fn while_every_slot_is_busy_requests_queue_and_go_out_together() {
        let c = coalescer(1, 8, 8);
        assert_eq!(c.admit(|| 0), Admission::Lead);
        for i in 1..=3 {
            assert_eq!(c.admit(|| i), Admission::Queued);
        }
        assert_eq!(c.take_batch(|_| true, |_| 1), Some(vec![1, 2, 3]));
        // The slot stays taken for that batch; with nothing more queued it is freed.
        assert_eq!(c.admit(|| 4), Admission::Queued);
        assert_eq!(c.take_batch(|_| true, |_| 1), Some(vec![4]));
        assert_eq!(c.take_batch(|_| true, |_| 1), None);
        assert_eq!(c.admit(|| 5), Admission::Lead);
    }

    #[test]
    fn a_batch_is_bounded_and_the_rest_waits_for_the_next() {
        let c = coalescer(1, 2, 8);
        assert_eq!(c.admit(|| 0), Admission::Lead);
        for i in 1..=5 {
            c.admit(|| i);
        }
        assert_eq!(c.take_batch(|_| true, |_| 1), Some(vec![1, 2]));
        assert_eq!(c.take_batch(|_| true, |_| 1), Some(vec![3, 4]));
        assert_eq!(c.take_batch(|_| true, |_| 1), Some(vec![5]));
        assert_eq!(c.take_batch(|_| true, |_| 1), None);
    }

    #[test]
    fn a_batch_stays_within_its_product_budget_and_a_heavy_request_goes_alone() {
        // Entries are their own weight in products; the budget is 1,000.
        let c = coalescer(1, 100, 100);
        assert_eq!(c.admit(|| 0), Admission::Lead);
        for weight in [400, 500, 200, 1_500, 300] {
            c.admit(|| weight);
        }
        let take = || c.take_batch(|_| true, |w| *w as usize);
        assert_eq!(take(), Some(vec![400, 500]));
        assert_eq!(take(), Some(vec![200]));
        assert_eq!(take(), Some(vec![1_500]));
        assert_eq!(take(), Some(vec![300]));
        assert_eq!(take(), None);
    }

    #[test]
    fn a_full_queue_says_no_at_once() {
        let c = coalescer(1, 8, 2);
        assert_eq!(c.admit(|| 0), Admission::Lead);
        assert_eq!(c.admit(|| 1), Admission::Queued);
        assert_eq!(c.admit(|| 2), Admission::Queued);
        assert_eq!(c.admit(|| 3), Admission::Full);
        assert_eq!(c.queued(), 2);
    }

    #[test]
    fn requests_that_stopped_waiting_are_skipped() {
        let c = coalescer(1, 8, 8);
        assert_eq!(c.admit(|| 0), Admission::Lead);
        for i in 1..=4 {
            c.admit(|| i);
        }
        assert_eq!(c.take_batch(|i| i % 2 == 0, |_| 1), Some(vec![2, 4]));
        // Only dead requests left: the slot is freed.
        c.admit(|| 5);
        assert_eq!(c.take_batch(|_| false, |_| 1), None);
        assert_eq!(c.admit(|| 6), Admission::Lead);
    }

    #[test]
    fn a_released_slot_can_be_taken_again() {
        let c = coalescer(1, 8, 8);
        assert_eq!(c.admit(|| 0), Admission::Lead);
        assert_eq!(c.release(), Vec::<u32>::new());
        assert_eq!(c.admit(|| 1), Admission::Lead);
    }

    #[test]
    fn releasing_the_last_slot_hands_back_what_nobody_else_would_send() {
        let c = coalescer(2, 8, 8);
        assert_eq!(c.admit(|| 0), Admission::Lead);
        assert_eq!(c.admit(|| 1), Admission::Lead);
        c.admit(|| 2);
        // Another slot is still in use: it will take the queue.
        assert_eq!(c.release(), Vec::<u32>::new());
        assert_eq!(c.release(), vec![2]);
        assert_eq!(c.queued(), 0);
    }
}
