//! The Catalog service: an axum HTTP API that lists the shop's products and, for a known
//! customer, asks Discount (gRPC over mutual TLS) what they pay.
//!
//! # Layout
//! - [`catalog`]: products and customers: the embedded default data, the data files and the
//!   rules they must obey.
//! - [`store`]: the [`store::ProductStore`] interface the HTTP layer reads products through,
//!   the in-memory implementation, and the JSON rendering of pages.
//! - [`discount`]: the client side of Discount: one long-lived mTLS channel, the batch RPC with
//!   a fallback to per-product calls, a deadline, and the reasons a discount can fail.
//! - [`http`]: the router, the `X-USER-ID` extractor and the error responses.
//! - [`openapi`]: the OpenAPI 3 document served at `/openapi.json`, generated from the code.
//! - [`app`]: [`app::Application`], which binds everything to a listener and runs it.
//! - [`config`]: command-line flags and their environment variables, turned into
//!   [`app::Settings`] before any port is bound.

pub mod app;
pub mod catalog;
pub mod config;
pub mod discount;
pub mod http;
pub mod openapi;
pub mod replicas;
pub mod store;
