//! The rules a [`Gate`](crate::Gate) admits connections by ([`Limits`]) and their defaults,
//! the names of the metrics it records ([`MetricNames`]), why it drops a connection
//! ([`Dropped`], [`AtCapacity`]) and what it has done so far ([`Counts`]).

use std::time::Duration;

/// Most connections open at once, by default: below the common soft limit of 1024 file
/// descriptors, leaving room for the process's other descriptors.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1000;

/// Most unproven connections at once, by default. A new connection evicts the oldest unproven
/// one once this many are unproven, so a connection that has just arrived survives this many
/// arrivals after its own: at the 10,000 to 20,000 connections a second a reconnecting flood
/// gets accepted at on a 2-core machine, 25 to 50 ms, several times what a TLS 1.3 handshake
/// or a first request head takes on such a machine under that flood (a few ms). Half the
/// default connection cap, so that proven connections always keep at least half the slots to
/// themselves, and handshakes in progress stay bounded in memory and CPU.
pub const DEFAULT_MAX_UNPROVEN: usize = 500;

/// How long a connection has to prove itself, by default.
pub const DEFAULT_UNPROVEN_TIMEOUT: Duration = Duration::from_secs(10);

/// The rules a [`Gate`](crate::Gate) admits connections by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections open at once, unproven ones included (at least 1).
    pub max_connections: usize,
    /// Unproven connections at once (at least 1, at most `max_connections`).
    pub max_unproven: usize,
    /// How long a connection may stay unproven, from its admission.
    pub unproven_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_unproven: DEFAULT_MAX_UNPROVEN,
            unproven_timeout: DEFAULT_UNPROVEN_TIMEOUT,
        }
    }
}

impl Limits {
    /// The limits in force: each cap at least 1, and unproven connections at most all of them.
    pub fn effective(self) -> Self {
        let max_connections = self.max_connections.max(1);
        Self {
            max_connections,
            max_unproven: self.max_unproven.clamp(1, max_connections),
            unproven_timeout: self.unproven_timeout,
        }
    }
}

/// The names of the metrics a gate records (`None`: not recorded). The caller names them, so
/// each service keeps its own metric names. The gate takes their handles when it is made: the
/// process's metrics recorder must be installed by then.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MetricNames {
    /// A gauge of the connections open (holding a slot).
    pub open: Option<&'static str>,
    /// A counter of connections dropped or refused, labelled `reason`: `unproven_evicted`,
    /// `unproven_timeout`, `idle_evicted` or `at_capacity`.
    pub dropped: Option<&'static str>,
}

/// Why the gate closed a connection it had admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dropped {
    /// Unproven, and the oldest unproven when room was needed.
    UnprovenEvicted,
    /// Still unproven at its deadline.
    UnprovenTimeout,
    /// Idle (between requests), and the longest idle when room was needed with no unproven
    /// connection left to drop.
    IdleEvicted,
}

impl Dropped {
    /// Its `reason` label in metrics and logs.
    pub const fn label(self) -> &'static str {
        match self {
            Dropped::UnprovenEvicted => "unproven_evicted",
            Dropped::UnprovenTimeout => "unproven_timeout",
            Dropped::IdleEvicted => "idle_evicted",
        }
    }

    pub(crate) fn code(self) -> u8 {
        match self {
            Dropped::UnprovenEvicted => 1,
            Dropped::UnprovenTimeout => 2,
            Dropped::IdleEvicted => 3,
        }
    }

    pub(crate) fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(Dropped::UnprovenEvicted),
            2 => Some(Dropped::UnprovenTimeout),
            3 => Some(Dropped::IdleEvicted),
            _ => None,
        }
    }
}

/// The `reason` label of a connection closed unanswered because every slot was held by proven
/// connections in use.
pub const AT_CAPACITY: &str = "at_capacity";

/// A new connection refused: every slot is held by a proven connection in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AtCapacity;

/// What a gate has done so far, and what it holds now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Connections admitted.
    pub admitted: u64,
    /// Connections that proved themselves.
    pub proven: u64,
    /// Unproven connections dropped to make room.
    pub unproven_evicted: u64,
    /// Unproven connections dropped at their deadline.
    pub unproven_timeout: u64,
    /// Idle connections dropped to make room.
    pub idle_evicted: u64,
    /// New connections refused because every slot was held by a proven one in use.
    pub at_capacity: u64,
    /// Connections holding a slot now (those told to close included, until they have).
    pub open: usize,
    /// Unproven connections now.
    pub unproven: usize,
    /// Proven connections idle now (between requests).
    pub idle: usize,
}
