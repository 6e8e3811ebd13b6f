//! Choosing the replica for an RPC ([`Picker`]): power of two choices among the replicas in
//! rotation, the one with fewer RPCs in flight winning; with every replica out of rotation,
//! one of them as a last resort, for one RPC at a time (a [`Trial`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::connection::Replica;

/// The replica [`Picker::pick`] chose for an RPC.
#[derive(Debug)]
pub(crate) struct Picked {
    pub(crate) replica: Arc<Replica>,
    /// Every replica was out of rotation: this one is tried anyway (the one trial allowed at
    /// a time, held until dropped), and no other after it.
    pub(crate) last_resort: Option<Trial>,
    /// Replicas in rotation, not yet tried, other than this one: where a retry could go.
    pub(crate) others_in_rotation: usize,
}

/// Why [`Picker::pick`] chose no replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NoPick {
    /// None known, or all of them tried already.
    NoneLeft,
    /// Every replica is out of rotation and another RPC is trying one of them now.
    TrialInFlight,
}

/// The right to try a replica while every replica is out of rotation; one at a time.
#[derive(Debug)]
pub(crate) struct Trial(Arc<AtomicBool>);

impl Drop for Trial {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// Where the random picks come from, and who holds the trial.
#[derive(Debug)]
pub(super) struct Picker {
    /// Source of the random picks.
    seq: AtomicU64,
    /// Set while an RPC tries a replica out of rotation (see [`Trial`]).
    trial: Arc<AtomicBool>,
}

impl Picker {
    pub(super) fn new() -> Self {
        Self {
            seq: AtomicU64::new(seed()),
            trial: Arc::new(AtomicBool::new(false)),
        }
    }

    /// A fresh random number (also used to spread connection renewals).
    pub(super) fn random(&self) -> u64 {
        splitmix64(self.seq.fetch_add(1, Ordering::Relaxed))
    }

    /// Picks a replica for the next RPC, skipping those in `tried`: power of two choices among
    /// the replicas in rotation, or among all of them when none is (a last resort, for one RPC
    /// at a time).
    pub(super) fn pick(
        &self,
        replicas: &[Arc<Replica>],
        tried: &[SocketAddr],
    ) -> Result<Picked, NoPick> {
        // Each flag read once, so that a replica leaving the rotation meanwhile cannot make
        // the choice below come up empty.
        let mut candidates: Vec<(&Arc<Replica>, bool)> = replicas
            .iter()
            .filter(|r| !tried.contains(&r.addr))
            .map(|r| (r, r.in_rotation()))
            .collect();
        let last_resort = !candidates.iter().any(|&(_, in_rotation)| in_rotation);
        if !last_resort {
            candidates.retain(|&(_, in_rotation)| in_rotation);
        }
        if candidates.is_empty() {
            return Err(NoPick::NoneLeft);
        }
        let trial = if last_resort {
            if self
                .trial
                .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_err()
            {
                return Err(NoPick::TrialInFlight);
            }
            Some(Trial(self.trial.clone()))
        } else {
            None
        };
        let replica = self.two_choices(&candidates).ok_or(NoPick::NoneLeft)?;
        Ok(Picked {
            replica,
            others_in_rotation: if trial.is_some() {
                0
            } else {
                candidates.len() - 1
            },
            last_resort: trial,
        })
    }

    fn two_choices(&self, candidates: &[(&Arc<Replica>, bool)]) -> Option<Arc<Replica>> {
        let count = candidates.len() as u64;
        if count <= 1 {
            return candidates.first().map(|&(r, _)| Arc::clone(r));
        }
        let random = self.random();
        let first = (random % count) as usize;
        let step = 1 + ((random >> 32) % (count - 1)) as usize;
        let (a, b) = (
            candidates[first].0,
            candidates[(first + step) % candidates.len()].0,
        );
        let load = |r: &Replica| r.state.in_flight.load(Ordering::Relaxed);
        Some(Arc::clone(if load(b) < load(a) { b } else { a }))
    }
}

/// A per-process seed, so that two Catalogs do not pick in lock-step.
fn seed() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::process::id())
}

/// A fast, well-mixed 64-bit hash of a counter: random enough to pick replicas.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
