//! A replica's standing, shared by all its connections, old and renewed: in or out of
//! rotation, the RPCs in flight that picking weighs, and the moves in and out of rotation.
//! Failed RPCs take a replica out with a back-off that doubles for ejections in a row; health
//! checks take it out without one; passing health checks (once the back-off is over) and
//! successful trials put it back.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use super::settings::ReplicaSettings;

/// What Catalog knows of a replica, whichever connection an RPC uses: an RPC failing on a
/// connection that was just renewed still takes the replica out.
#[derive(Debug)]
pub(super) struct ReplicaState {
    in_rotation: AtomicBool,
    pub(super) in_flight: AtomicUsize,
    /// The back-off after RPC failures. Locked only when the replica leaves or rejoins the
    /// rotation, never to send an RPC.
    ejection: Mutex<Ejection>,
}

impl ReplicaState {
    pub(super) fn new() -> Arc<Self> {
        Arc::new(Self {
            in_rotation: AtomicBool::new(true),
            in_flight: AtomicUsize::new(0),
            ejection: Mutex::new(Ejection {
                strikes: 0,
                out_until: None,
                in_since: Instant::now(),
            }),
        })
    }

    fn ejection(&self) -> MutexGuard<'_, Ejection> {
        self.ejection.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether new RPCs may be sent to the replica.
    pub(super) fn in_rotation(&self) -> bool {
        self.in_rotation.load(Ordering::Relaxed)
    }

    /// Puts the replica at `addr`, which answered its health check, back in rotation (unless
    /// it is still backing off after a failed RPC), or takes it out if it did not answer.
    /// True when it moved.
    pub(super) fn record_health(&self, addr: SocketAddr, health: Result<(), String>) -> bool {
        match health {
            Ok(()) => {
                if self.in_rotation() {
                    return false;
                }
                let ejection = self.ejection();
                if ejection
                    .out_until
                    .is_some_and(|until| Instant::now() < until)
                {
                    return false;
                }
                self.put_back(addr, ejection, "its health check passed")
            }
            Err(reason) => {
                // The health check is the authority here: the replica is back as soon as it
                // answers SERVING, so no back-off.
                let _ejection = self.ejection();
                if self.in_rotation.swap(false, Ordering::Relaxed) {
                    ejected(addr, "health", &reason, None);
                    return true;
                }
                false
            }
        }
    }

    /// Takes the replica at `addr` out of rotation after a failed RPC: until a health check
    /// finds it serving, and for at least its back-off. True when it was in rotation.
    pub(super) fn take_out(
        &self,
        addr: SocketAddr,
        settings: &ReplicaSettings,
        why: &'static str,
        detail: &str,
    ) -> bool {
        let now = Instant::now();
        let mut ejection = self.ejection();
        // RPCs that fail together on a replica count as one ejection.
        if !self.in_rotation.swap(false, Ordering::Relaxed) {
            return false;
        }
        let max = settings.max_ejection_time;
        let stayed_long = now.saturating_duration_since(ejection.in_since) >= max;
        ejection.strikes = if stayed_long {
            1
        } else {
            ejection.strikes.saturating_add(1)
        };
        let back_off = back_off(settings.base_ejection_time, max, ejection.strikes);
        ejection.out_until = Some(now + back_off);
        drop(ejection);
        ejected(addr, why, detail, Some(back_off));
        true
    }

    /// Puts the replica at `addr` back in rotation after an RPC tried on it as a last resort
    /// (a trial) succeeded: it works, whatever its back-off says. True when it was out.
    pub(super) fn trial_succeeded(&self, addr: SocketAddr) -> bool {
        if !self.in_rotation() {
            return self.put_back(addr, self.ejection(), "a trial RPC succeeded");
        }
        false
    }

    /// Puts the replica back in rotation (its ejection record locked by the caller). True
    /// when it was out.
    fn put_back(
        &self,
        addr: SocketAddr,
        mut ejection: MutexGuard<'_, Ejection>,
        why: &'static str,
    ) -> bool {
        if !self.in_rotation.swap(true, Ordering::Relaxed) {
            ejection.out_until = None;
            ejection.in_since = Instant::now();
            drop(ejection);
            tracing::info!(replica = %addr, why, "Discount replica back in rotation");
            return true;
        }
        false
    }
}

/// A replica's record of ejections by failed RPCs.
#[derive(Debug)]
struct Ejection {
    /// Ejections in a row: without a stay of `max_ejection_time` in rotation between them.
    strikes: u32,
    /// Not back in rotation before this, whatever its health check says.
    out_until: Option<Instant>,
    /// When it last joined the rotation.
    in_since: Instant,
}

/// Logs and counts an ejection.
fn ejected(addr: SocketAddr, why: &'static str, detail: &str, back_off: Option<Duration>) {
    match back_off {
        Some(back_off) => tracing::warn!(replica = %addr, reason = why, detail,
            ?back_off, "Discount replica taken out of rotation"),
        None => tracing::warn!(replica = %addr, reason = why, detail,
            "Discount replica taken out of rotation"),
    }
    metrics::counter!("catalog_discount_replica_ejections_total", "reason" => why).increment(1);
}

/// How long the `strikes`-th ejection in a row lasts at least: `base` doubled for each
/// earlier one, capped at `max`.
fn back_off(base: Duration, max: Duration, strikes: u32) -> Duration {
    let doublings = strikes.saturating_sub(1).min(31);
    base.saturating_mul(1 << doublings).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn back_off_doubles_up_to_the_cap() {
        let base = Duration::from_millis(500);
        let max = Duration::from_secs(30);
        let got: Vec<u64> = [0, 1, 2, 3, 6, 7, 40, u32::MAX]
            .into_iter()
            .map(|strikes| back_off(base, max, strikes).as_millis() as u64)
            .collect();
        assert_eq!(got, [500, 500, 1000, 2000, 16000, 30000, 30000, 30000]);
    }
}
