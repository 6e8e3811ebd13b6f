//! The balancer's own tests: ejections and their back-off, and connection renewal, driven
//! through [`Replicas`] on a replica where nothing listens, in paused time.

use std::sync::atomic::Ordering;

use tokio::time::Instant;

use super::*;

const BASE: Duration = Duration::from_secs(1);
const MAX: Duration = Duration::from_secs(8);

/// One replica on a fixed address where nothing listens.
fn one_replica() -> (Arc<Replicas>, Arc<Replica>) {
    one_replica_with(ReplicaSettings {
        base_ejection_time: BASE,
        max_ejection_time: MAX,
        ..ReplicaSettings::default()
    })
}

fn one_replica_with(settings: ReplicaSettings) -> (Arc<Replicas>, Arc<Replica>) {
    let replicas = unreachable_replicas(&[1], settings);
    let replica = replicas.snapshot().replicas[0].clone();
    (replicas, replica)
}

/// How long after an RPC ejection the replica's passing health checks bring it back.
async fn time_out(replicas: &Replicas, replica: &Replica) -> Duration {
    let step = Duration::from_millis(250);
    let start = Instant::now();
    replicas.take_out(replica, "timeout", "test");
    assert!(!replica.in_rotation());
    while !replica.in_rotation() {
        tokio::time::advance(step).await;
        replicas.record_health(replica, Ok(()));
    }
    start.elapsed()
}

#[tokio::test(start_paused = true)]
async fn ejections_in_a_row_keep_a_replica_out_longer_despite_passing_health_checks() {
    let (replicas, replica) = one_replica();
    let mut times = Vec::new();
    for _ in 0..5 {
        times.push(time_out(&replicas, &replica).await.as_millis());
    }
    assert_eq!(times, [1000, 2000, 4000, 8000, 8000]);
}

#[tokio::test(start_paused = true)]
async fn a_long_stay_in_rotation_resets_the_back_off() {
    let (replicas, replica) = one_replica();
    time_out(&replicas, &replica).await;
    time_out(&replicas, &replica).await;
    tokio::time::advance(MAX).await;
    assert_eq!(time_out(&replicas, &replica).await, BASE);
}

#[tokio::test(start_paused = true)]
async fn a_failed_health_check_has_no_back_off() {
    let (replicas, replica) = one_replica();
    replicas.record_health(&replica, Err("NOT_SERVING".into()));
    assert!(!replica.in_rotation());
    replicas.record_health(&replica, Ok(()));
    assert!(replica.in_rotation());
    // Nor does it count as a strike: the next RPC ejection is the first.
    assert_eq!(time_out(&replicas, &replica).await, BASE);
}

#[tokio::test(start_paused = true)]
async fn rpcs_failing_together_count_as_one_ejection() {
    let (replicas, replica) = one_replica();
    replicas.take_out(&replica, "timeout", "first");
    replicas.take_out(&replica, "unreachable", "second, already out");
    tokio::time::advance(BASE).await;
    replicas.record_health(&replica, Ok(()));
    assert!(replica.in_rotation());
}

#[tokio::test(start_paused = true)]
async fn a_successful_trial_puts_a_replica_back_despite_its_back_off() {
    let (replicas, replica) = one_replica();
    replicas.take_out(&replica, "timeout", "test");
    replicas.record_health(&replica, Ok(()));
    assert!(!replica.in_rotation(), "backing off");
    replicas.trial_succeeded(&replica);
    assert!(replica.in_rotation());
}

fn aging_replica() -> (Arc<Replicas>, Arc<Replica>) {
    one_replica_with(ReplicaSettings {
        max_connection_age: Some(Duration::from_secs(60)),
        ..ReplicaSettings::default()
    })
}

#[tokio::test(start_paused = true)]
async fn a_renewed_connection_shares_the_replicas_state_with_the_old_one() {
    let (replicas, old) = aging_replica();
    // Out of rotation, so the new connection is used without a health check first.
    replicas.take_out(&old, "timeout", "test");
    tokio::time::advance(Duration::from_secs(70)).await;
    replicas.renew_connections().await;
    let new = replicas.snapshot().replicas[0].clone();
    assert!(!Arc::ptr_eq(&old, &new), "the connection was renewed");
    assert!(!new.in_rotation(), "still out of rotation");
    // What happens on the old connection counts for the replica.
    let in_flight = old.start();
    assert_eq!(new.state.in_flight.load(Ordering::Relaxed), 1);
    drop(in_flight);
    replicas.trial_succeeded(&old);
    assert!(new.in_rotation());
}

#[tokio::test(start_paused = true)]
async fn a_replica_keeps_its_connection_while_a_new_one_fails_its_health_check() {
    // Nothing listens at the replica's address: the new connection cannot answer.
    let (replicas, old) = aging_replica();
    tokio::time::advance(Duration::from_secs(70)).await;
    replicas.renew_connections().await;
    let kept = replicas.snapshot().replicas[0].clone();
    assert!(kept.in_rotation(), "a failed renewal takes nothing out");
    assert!(Arc::ptr_eq(&kept.state, &old.state));
    assert!(kept.renew_not_before.is_some(), "tried again later");
    // Not before RENEW_RETRY.
    replicas.renew_connections().await;
    assert!(Arc::ptr_eq(&kept, &replicas.snapshot().replicas[0]));
}
