//! The Discount service: a tonic gRPC server, reachable only over mutual TLS, that applies the
//! shop's discount rule.
//!
//! # Layout
//! - [`authz`]: the allow-list of caller identities per RPC.
//! - [`rule`]: the business rule as a pure function over `rust_decimal` (no I/O, no gRPC).
//! - [`apply`]: the RPCs' work once the caller is allowed: input checks, the rule applied to
//!   each product (or group of products), the answer; [`prices`]: the same for the compact
//!   `ApplyDiscountPrices`, Catalog's RPC.
//! - [`service`]: the `ecommerce.Discount` handlers: authorization, then [`apply`], then the
//!   access-log line and metrics of each RPC.
//! - [`server`]: serves the handlers on an already-bound listener through rustls, until a
//!   shutdown future completes; and whether it accepts RPCs, its readiness on the operations
//!   port (served by `service_runtime::ops`).
//! - [`limits`]: the defaults of the limits per connection and per message, and the layer that
//!   answers an oversized message `RESOURCE_EXHAUSTED`.
//! - [`metric_descriptions`]: the `# HELP` text and unit of every metric Discount exports,
//!   described once at start, and the names of the counters the mTLS accept loop records.
//! - [`config`]: command-line flags and their environment variables, turned into a
//!   [`server::ServerSettings`] before anything is bound.

pub mod apply;
pub mod authz;
pub mod config;
pub mod limits;
pub mod metric_descriptions;
pub mod prices;
pub mod rule;
pub mod server;
pub mod service;
