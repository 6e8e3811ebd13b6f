//! The end-to-end test harness (being split into modules by job; see `servers`).
#![allow(clippy::unwrap_used, clippy::missing_panics_doc)]

mod servers;
pub use servers::*;
