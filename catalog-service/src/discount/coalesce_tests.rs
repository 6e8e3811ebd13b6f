//! The tests of the coalescer's bookkeeping: when a request leads, queues, opens another slot
//! or is refused, and what each batch takes.

use super::*;

/// Entries are numbers: every one live and weighing 1, unless a test says otherwise.
fn coalescer(
    rpcs_in_flight: usize,
    max_requests_per_rpc: usize,
    max_queued: usize,
) -> Coalescer<u32> {
    with(
        rpcs_in_flight,
        max_requests_per_rpc,
        max_queued,
        |_| true,
        |_| 1,
    )
}

fn with(
    rpcs_in_flight: usize,
    max_requests_per_rpc: usize,
    max_queued: usize,
    is_live: fn(&u32) -> bool,
    weight: fn(&u32) -> usize,
) -> Coalescer<u32> {
    let settings = CoalesceSettings {
        rpcs_in_flight,
        max_requests_per_rpc,
        max_products_per_rpc: 1_000,
        max_queued,
    };
    Coalescer::new(settings, is_live, weight)
}

/// `ms` milliseconds into a test.
fn at(ms: u64) -> Instant {
    thread_local!(static START: Instant = Instant::now());
    START.with(|start| *start + Duration::from_millis(ms))
}

/// The next batch of a slot that started at `started`, done at `now`.
fn next(c: &Coalescer<u32>, started: u64, now: u64) -> Option<Vec<u32>> {
    c.take_batch(at(started), at(now))
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
fn a_batch_s_worth_waiting_goes_out_beside_the_rpc_in_flight() {
    let c = coalescer(2, 8, 8);
    c.record(Duration::from_millis(10));
    assert_eq!(c.admit(at(0), || 0), Admission::Lead);
    // The lead carries one request: one waiting is as large a batch, and goes out at once.
    assert_eq!(c.admit(at(1), || 1), Admission::Send(vec![1]));
    // Both slots in use: however many wait, the bound holds until one is done.
    for i in 2..=4 {
        assert_eq!(c.admit(at(1), || i), Admission::Queued);
    }
    assert_eq!(next(&c, 0, 2), Some(vec![2, 3, 4]));
    assert_eq!(next(&c, 1, 3), None);
    // One slot in use, carrying three: fewer waiting are not a batch's worth yet; the
    // third is, and the batch takes the oldest first.
    assert_eq!(c.admit(at(4), || 5), Admission::Queued);
    assert_eq!(c.admit(at(4), || 6), Admission::Queued);
    assert_eq!(c.admit(at(5), || 7), Admission::Send(vec![5, 6, 7]));
    assert_eq!(c.admit(at(6), || 8), Admission::Queued);
    assert_eq!(next(&c, 2, 7), Some(vec![8]));
    assert_eq!(next(&c, 5, 8), None);
    assert_eq!(next(&c, 7, 9), None);
    assert_eq!(c.queued(), 0);
}

#[test]
fn a_batch_handed_out_on_admission_keeps_the_product_budget_and_may_leave_its_own_request() {
    // Entries are their own weight in products; the budget is 1,000.
    let c = with(2, 8, 8, |_| true, |w| *w as usize);
    c.record(Duration::from_millis(10));
    assert_eq!(c.admit(at(0), || 0), Admission::Lead);
    assert_eq!(c.admit(at(1), || 900), Admission::Send(vec![900]));
    assert_eq!(c.admit(at(1), || 600), Admission::Queued);
    assert_eq!(c.admit(at(1), || 300), Admission::Queued);
    assert_eq!(next(&c, 0, 2), Some(vec![600, 300]));
    assert_eq!(next(&c, 1, 3), None);
    // One slot in use, carrying two: the second waiting makes a batch's worth, but the budget
    // takes only the oldest, and the request that made it stays queued for the next RPC.
    assert_eq!(c.admit(at(4), || 800), Admission::Queued);
    assert_eq!(c.admit(at(4), || 400), Admission::Send(vec![800]));
    assert_eq!(c.queued(), 1);
}

#[test]
fn a_slow_rpc_s_batch_does_not_set_the_size_of_a_batch_s_worth() {
    let c = coalescer(3, 8, 8);
    c.record(Duration::from_millis(10));
    // One slot in use, started at 4, carrying three.
    assert_eq!(c.admit(at(0), || 0), Admission::Lead);
    assert_eq!(c.admit(at(1), || 1), Admission::Send(vec![1]));
    assert_eq!(c.admit(at(2), || 2), Admission::Send(vec![2]));
    for i in 3..=5 {
        assert_eq!(c.admit(at(3), || i), Admission::Queued);
    }
    assert_eq!(next(&c, 0, 4), Some(vec![3, 4, 5]));
    assert_eq!(next(&c, 1, 5), None);
    assert_eq!(next(&c, 2, 5), None);
    assert_eq!(c.admit(at(6), || 6), Admission::Queued);
    // Past twice the usual time it is slow: a request goes out at once beside it, with the
    // one queued; from then on the batch in flight at its usual speed (two requests) sets the
    // size: two waiting go out together, where the slow one's three would have kept them
    // waiting.
    assert_eq!(c.admit(at(30), || 7), Admission::Send(vec![6, 7]));
    assert_eq!(c.admit(at(31), || 8), Admission::Queued);
    assert_eq!(c.admit(at(31), || 9), Admission::Send(vec![8, 9]));
}

#[test]
fn another_rpc_opens_only_while_those_in_flight_are_slow_or_a_batch_waits() {
    let c = coalescer(2, 8, 8);
    // Before any RPC has succeeded, nothing is usual: another opens at once.
    assert_eq!(c.admit(at(0), || 0), Admission::Lead);
    assert_eq!(c.admit(at(1), || 0), Admission::Lead);
    assert_eq!(next(&c, 0, 5), None);
    assert_eq!(next(&c, 1, 5), None);
    // RPCs that succeeded in 10 ms make the usual time 10 ms. One slot then carries two.
    c.record(Duration::from_millis(10));
    in_flight_carrying_two(&c, 100);
    // At the usual speed a request waits for the RPC in flight, and goes out with it...
    assert_eq!(c.admit(at(115), || 3), Admission::Queued);
    assert_eq!(next(&c, 103, 118), Some(vec![3]));
    assert_eq!(next(&c, 118, 126), None);
    // ...but one that has been out longer than twice the usual time lets another open, with
    // those waiting behind it, up to the bound.
    in_flight_carrying_two(&c, 200);
    assert_eq!(c.admit(at(221), || 4), Admission::Queued);
    assert_eq!(c.admit(at(230), || 5), Admission::Send(vec![4, 5]));
    assert_eq!(c.admit(at(400), || 6), Admission::Queued);
    assert_eq!(c.queued(), 1);
    // A slow RPC that succeeds raises the usual time by an eighth of the difference, and
    // counts for no more than four times the usual.
    c.record(Duration::from_millis(18));
    assert_eq!(c.lock().usual, Duration::from_millis(11));
    c.record(Duration::from_secs(10));
    assert_eq!(c.lock().usual, Duration::from_micros(11_000 * 11 / 8));
}

/// From `t` ms, with nothing in flight: one slot carrying two requests, started at
/// `t + 3`, and nothing else in flight or queued.
fn in_flight_carrying_two(c: &Coalescer<u32>, t: u64) {
    assert_eq!(c.admit(at(t), || 0), Admission::Lead);
    assert_eq!(c.admit(at(t + 1), || 1), Admission::Send(vec![1]));
    assert_eq!(c.admit(at(t + 2), || 2), Admission::Queued);
    assert_eq!(c.admit(at(t + 2), || 3), Admission::Queued);
    assert_eq!(next(c, t, t + 3), Some(vec![2, 3]));
    assert_eq!(next(c, t + 1, t + 3), None);
    assert_eq!(c.queued(), 0);
}

#[test]
fn a_slow_rpc_holds_up_no_request_arriving_after_it_nor_those_queued_behind_it() {
    let c = coalescer(2, 8, 8);
    c.record(Duration::from_millis(10));
    in_flight_carrying_two(&c, 0);
    // Within the usual time, a request queues behind it.
    assert_eq!(c.admit(at(5), || 4), Admission::Queued);
    // Past twice the usual time the RPC is slow: the next request goes out at once, and the
    // one queued behind the slow RPC goes with it, first.
    assert_eq!(c.admit(at(30), || 5), Admission::Send(vec![4, 5]));
    // Both slots in use: the bound holds.
    assert_eq!(c.admit(at(100), || 6), Admission::Queued);
}

#[test]
fn behind_a_slow_rpc_with_nothing_queued_a_request_goes_out_on_its_own() {
    let c = coalescer(2, 8, 8);
    c.record(Duration::from_millis(10));
    assert_eq!(c.admit(at(0), || 0), Admission::Lead);
    // Slow, nothing queued: on its own, no hand-off.
    assert_eq!(c.admit(at(30), || 1), Admission::Lead);
    assert_eq!(c.queued(), 0);
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
    let c = with(1, 100, 100, |_| true, |w| *w as usize);
    assert_eq!(c.admit(at(0), || 0), Admission::Lead);
    for weight in [400, 500, 200, 1_500, 300] {
        c.admit(at(0), || weight);
    }
    assert_eq!(next(&c, 0, 1), Some(vec![400, 500]));
    assert_eq!(next(&c, 1, 2), Some(vec![200]));
    assert_eq!(next(&c, 2, 3), Some(vec![1_500]));
    assert_eq!(next(&c, 3, 4), Some(vec![300]));
    assert_eq!(next(&c, 4, 5), None);
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
    // Odd entries stopped waiting.
    let c = with(1, 8, 8, |i| i.is_multiple_of(2), |_| 1);
    assert_eq!(c.admit(at(0), || 0), Admission::Lead);
    for i in 1..=4 {
        c.admit(at(0), || i);
    }
    assert_eq!(next(&c, 0, 1), Some(vec![2, 4]));
    // Only dead requests left: the slot is freed.
    c.admit(at(1), || 5);
    assert_eq!(next(&c, 1, 2), None);
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
