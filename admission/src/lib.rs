//! Admitting TCP connections: caps, deadlines, eviction. One set of rules for every server of
//! the workspace, whatever it speaks on top: Discount's mutual-TLS gRPC port (through `mtls`)
//! and Catalog's public HTTP/1.1 port.
//!
//! A connection is **unproven** until the server says it has proved itself: on Discount, its
//! mutual-TLS handshake completed with a client certificate from our CA; on Catalog, a whole
//! first request head arrived. Until then it has a short deadline, and unproven connections
//! are capped below the connection cap. When a new connection arrives while either cap is
//! reached, the **oldest unproven** connection is dropped to make room. Why this rule:
//!
//! - a flood of connections that never prove themselves (idle, or a partial TLS ClientHello or
//!   request head, then nothing) only ever evicts itself, however fast it reconnects;
//! - a real client proves itself within milliseconds of arriving, and a connection is evicted
//!   only once [`Limits::max_unproven`] newer ones have arrived after it: the cap is chosen so
//!   that this takes several times longer than a handshake, even under a flood
//!   ([`DEFAULT_MAX_UNPROVEN`]);
//! - refusing the newcomer instead (what a plain cap does) lets the flood keep every slot and
//!   shuts real clients out until the squatters' deadlines pass.
//!
//! At the connection cap, while the unproven are under their own cap (or none is left), a
//! server that marks its connections idle between requests (Catalog's HTTP keep-alive) gives up
//! the connection idle the longest first: an HTTP client reconnects for its next request, as it
//! does after an idle timeout, and the unproven keep their share of the slots however many idle
//! clients hold. With every slot proven and in use, the share shrinks to what is left. Discount does not:
//! its proven connections are its authenticated callers, each holding one long-lived HTTP/2
//! connection. Only when every slot is held by a proven connection in use is a new one
//! refused (closed before a byte is read).
//!
//! Everything dropped is counted by reason (`unproven_evicted`, `unproven_timeout`,
//! `idle_evicted`, `at_capacity`) in a counter the server names, and logged as one line per
//! interval with the counts ([`ThrottledLog`], which servers also use for their own floods of
//! events, such as refused handshakes), never one line per connection.
//!
//! A crate of its own because both servers use it and it is neither TLS (`mtls`, which uses it
//! for Discount's accept loop and must stay liftable without the services' runtime) nor HTTP;
//! it needs only Tokio, `metrics` and `tracing`.
//!
//! # Layout
//! - `limits`: the rules ([`Limits`]) and their defaults, the metrics' names, the reasons a
//!   connection is dropped, the counts.
//! - `gate`: the bookkeeping: [`Gate`], a connection's [`Slot`] and its [`Handle`] (deadline
//!   and eviction in [`Handle::guard`]; [`Handle::prove`], `idle`, `busy`).
//! - `accept`: [`accept_loop`], the loop both servers run, and [`bind`], a listener with a
//!   queue deep enough for a flood.
//! - `throttle`: [`ThrottledLog`], one line per interval with counts per reason.
//!
//! `accept` uses `gate` and `limits`; `gate` uses `limits` and `throttle`.

mod accept;
mod gate;
mod limits;
mod throttle;

pub use accept::{LISTEN_BACKLOG, accept_loop, bind};
pub use gate::{Gate, Handle, Slot};
pub use limits::{
    AT_CAPACITY, AtCapacity, Counts, DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_UNPROVEN,
    DEFAULT_UNPROVEN_TIMEOUT, Dropped, Limits, MetricNames,
};
pub use throttle::{FirstDetails, LOG_INTERVAL, Summary, ThrottledLog};
