//! What the process tests of both services, and `cargo xtask bench`, do alike when they run a
//! service's real binary as a child process: read its stderr in the background and wait for a
//! line ([`Log`], [`whole_line_with`]), learn the addresses it logs ([`addr_in`],
//! [`addr_field`]), stop it with SIGTERM and wait for its exit within a bound
//! ([`sigterm`], [`sighup`], [`exit_within`]), check that a failed start-up says one line
//! ([`single_error_line`]), read its Prometheus `/metrics` ([`metrics_of`], [`metric`],
//! [`assert_families_described`]), check that its operations port answers as every
//! service's does ([`assert_operations_port`]) or is not there ([`listening_ports`]), read its
//! peak memory ([`peak_resident_kib`]), and wait with a deadline for what can only be polled
//! ([`poll_until`]). A blocking program (the benchmark, `cargo xtask up`) runs its services
//! as [`Services`]: each logging to a file, waited on until it logs where it listens, and
//! stopped with SIGTERM, then SIGKILL ([`terminate_within`]), when dropped.
//!
//! The services' tests and the benchmark share it so each helper is written once. It knows
//! nothing of Catalog or Discount beyond the shape of their log lines and metrics.

mod exit;
mod log;
mod memory;
mod ops;
mod poll;
mod prometheus;
mod services;

pub use exit::{exit_within, sighup, sigterm, single_error_line};
pub use log::{LOG_GUARD, Log, addr_field, addr_in, whole_line_with};
pub use memory::peak_resident_kib;
pub use ops::{Answer, ask, assert_operations_port, listening_ports};
pub use poll::poll_until;
pub use prometheus::{assert_families_described, families_and_help, metric, metrics_of};
pub use services::{Services, terminate_within};
