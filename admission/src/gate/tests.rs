//! The gate's rules on their own, without sockets: eviction order, caps, deadlines, on a paused
//! clock where time matters.

use std::time::Duration;

use super::*;

const PEER: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 1);

fn gate(max_connections: usize, max_unproven: usize) -> Gate {
    let limits = Limits {
        max_connections,
        max_unproven,
        unproven_timeout: Duration::from_secs(10),
    };
    Gate::new(limits, MetricNames::default())
}

fn admit(gate: &Gate) -> Slot {
    gate.admit(PEER).expect("admitted")
}

/// Why the gate told `slot` to close, if it did (a guard over a finished future reports it
/// first: the gate's word wins).
async fn told(slot: &Slot) -> Option<Dropped> {
    slot.guard(std::future::ready(())).await.err()
}

#[tokio::test]
async fn past_the_unproven_cap_the_oldest_unproven_connection_makes_room() {
    let gate = gate(10, 3);
    let [a, b, c] = [admit(&gate), admit(&gate), admit(&gate)];
    assert!(b.prove());
    let d = admit(&gate);
    assert_eq!(
        told(&a).await,
        None,
        "a, c, d: three unproven, none dropped yet"
    );
    let e = admit(&gate);
    assert_eq!(
        told(&a).await,
        Some(Dropped::UnprovenEvicted),
        "a was the oldest"
    );
    let f = admit(&gate);
    assert_eq!(told(&c).await, Some(Dropped::UnprovenEvicted), "then c");
    for kept in [&b, &d, &e, &f] {
        assert_eq!(told(kept).await, None);
    }
    assert!(!a.prove(), "too late to prove itself once told to close");
    let counts = gate.counts();
    assert_eq!(
        (counts.admitted, counts.proven, counts.unproven_evicted),
        (6, 1, 2)
    );
    assert_eq!(
        (counts.open, counts.unproven),
        (6, 3),
        "a and c hold slots until dropped"
    );
    drop((a, c));
    assert_eq!(gate.counts().open, 4);
}

#[tokio::test]
async fn at_the_connection_cap_the_longest_idle_goes_while_the_unproven_are_under_their_cap() {
    let gate = gate(4, 2);
    let [a, b] = [admit(&gate), admit(&gate)];
    assert!(a.prove() && b.prove());
    a.idle();
    b.idle();
    let [c, d] = [admit(&gate), admit(&gate)];
    assert!(d.prove());
    // Full, with one unproven (c) under the unproven cap of two: the longest idle gives way,
    // so the unproven keep their share however many slots proven connections hold.
    let e = admit(&gate);
    assert_eq!(told(&a).await, Some(Dropped::IdleEvicted));
    assert_eq!(told(&c).await, None, "the unproven one stays");
    assert_eq!(told(&b).await, None);
    // Nothing idle any more (a request begins on b, e proves itself): the oldest unproven goes.
    b.busy();
    assert!(e.prove());
    let f = admit(&gate);
    assert_eq!(told(&c).await, Some(Dropped::UnprovenEvicted));
    // Every slot proven and in use: a new connection is refused.
    assert!(f.prove());
    assert_eq!(gate.admit(PEER).err(), Some(AtCapacity));
    for kept in [&b, &d, &e, &f] {
        assert_eq!(told(kept).await, None);
    }
    // b idle again: it goes for the next one.
    b.idle();
    let g = admit(&gate);
    assert_eq!(told(&b).await, Some(Dropped::IdleEvicted));
    let counts = gate.counts();
    assert_eq!(
        (
            counts.unproven_evicted,
            counts.idle_evicted,
            counts.at_capacity
        ),
        (1, 2, 1)
    );
    drop(g);
}

#[tokio::test]
async fn at_both_caps_the_oldest_unproven_goes_before_any_idle_one() {
    let gate = gate(3, 1);
    let a = admit(&gate);
    assert!(a.prove());
    a.idle();
    let b = admit(&gate);
    let c = admit(&gate);
    // c arrived with b, unproven, at the unproven cap: b went for it; a, idle, stayed.
    assert_eq!(told(&b).await, Some(Dropped::UnprovenEvicted));
    assert_eq!(told(&a).await, None);
    drop(c);
}

#[tokio::test]
async fn an_unproven_connection_does_not_go_idle() {
    let gate = gate(1, 1);
    let a = admit(&gate);
    a.idle();
    assert!(!a.is_proven());
    // Still unproven, so still the one to go.
    let _b = admit(&gate);
    assert_eq!(told(&a).await, Some(Dropped::UnprovenEvicted));
}

#[tokio::test]
async fn connections_told_to_close_do_not_count_against_the_cap_and_a_dropped_slot_frees_one() {
    let gate = gate(2, 2);
    let [a, b] = [admit(&gate), admit(&gate)];
    let c = admit(&gate);
    let d = admit(&gate);
    // a and b were told to close; c and d took their places.
    assert_eq!(told(&a).await, Some(Dropped::UnprovenEvicted));
    assert_eq!(told(&b).await, Some(Dropped::UnprovenEvicted));
    assert_eq!(gate.counts().open, 4, "until their tasks drop them");
    drop((a, b));
    assert!(c.prove() && d.prove());
    assert_eq!(gate.admit(PEER).err(), Some(AtCapacity));
    drop(c);
    let e = admit(&gate);
    assert_eq!(gate.counts().open, 2);
    drop((d, e));
    assert_eq!(
        gate.counts(),
        Counts {
            admitted: 5,
            proven: 2,
            unproven_evicted: 2,
            at_capacity: 1,
            ..Counts::default()
        }
    );
}

#[tokio::test(start_paused = true)]
async fn an_unproven_connection_is_dropped_at_its_deadline_and_a_proven_one_never() {
    let gate = gate(10, 10);
    let (a, b) = (admit(&gate), admit(&gate));
    let started = Instant::now();
    let guarded = tokio::spawn(async move {
        let outcome = a.guard(std::future::pending::<()>()).await;
        (outcome, started.elapsed())
    });
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(b.prove());
    let (outcome, after) = guarded.await.unwrap();
    assert_eq!(outcome, Err(Dropped::UnprovenTimeout));
    assert_eq!(after, Duration::from_secs(10));
    // Long past its deadline, the proven one is still running.
    let still = tokio::time::timeout(
        Duration::from_secs(3600),
        b.guard(std::future::pending::<()>()),
    )
    .await;
    assert!(still.is_err(), "{still:?}");
    let counts = gate.counts();
    assert_eq!((counts.unproven_timeout, counts.unproven), (1, 0));
}

#[tokio::test(start_paused = true)]
async fn the_deadline_counts_from_admission_not_from_the_guard() {
    let gate = gate(10, 10);
    let a = admit(&gate);
    tokio::time::sleep(Duration::from_secs(9)).await;
    let started = Instant::now();
    let outcome = a.guard(std::future::pending::<()>()).await;
    assert_eq!(outcome, Err(Dropped::UnprovenTimeout));
    assert_eq!(started.elapsed(), Duration::from_secs(1));
}

#[tokio::test]
async fn the_work_s_own_end_is_returned_when_nothing_drops_it() {
    let gate = gate(10, 10);
    let a = admit(&gate);
    assert_eq!(a.guard(async { 7 }).await, Ok(7));
}

#[test]
fn caps_are_at_least_one_and_unproven_at_most_every_connection() {
    let limits = |max_connections, max_unproven| {
        Limits {
            max_connections,
            max_unproven,
            unproven_timeout: Duration::from_secs(1),
        }
        .effective()
    };
    assert_eq!(
        (limits(0, 0).max_connections, limits(0, 0).max_unproven),
        (1, 1)
    );
    assert_eq!(limits(10, 50).max_unproven, 10);
    assert_eq!(limits(1000, 500).max_unproven, 500);
    let defaults = Limits::default();
    assert_eq!(
        (
            defaults.max_connections,
            defaults.max_unproven,
            defaults.unproven_timeout
        ),
        (1000, 500, Duration::from_secs(10))
    );
}

#[tokio::test]
async fn an_idle_connection_with_a_write_pending_is_not_evicted() {
    let gate = gate(2, 2);
    let [a, b] = [admit(&gate), admit(&gate)];
    assert!(a.prove() && b.prove());
    a.idle();
    b.idle();
    // a idle the longest, but its last answer is still going out: b goes instead.
    a.writing(true);
    let c = admit(&gate);
    assert_eq!(told(&b).await, Some(Dropped::IdleEvicted));
    assert_eq!(told(&a).await, None);
    // Written out: a may go now.
    a.writing(false);
    assert!(c.prove());
    let d = admit(&gate);
    assert_eq!(told(&a).await, Some(Dropped::IdleEvicted));
    drop(d);
}
