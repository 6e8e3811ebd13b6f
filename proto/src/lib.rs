//! The contract between Catalog and Discount, and the plumbing both ends of it share.
//!
//! Both services depend on this crate, so the messages they exchange and the way the channel is
//! secured cannot drift apart.
//!
//! # Layout
//! - [`pb`]: the Rust types and the tonic client and server generated from `ecommerce.proto`
//!   (compiled by `protox` at build time: no `protoc` needed).
//! - [`tls`]: mutual TLS over rustls: loading PEM material, TLS 1.3-only server and client
//!   configurations, the accept loop that hands authenticated connections to tonic, the connector
//!   that opens them for a tonic channel, and the caller identity read from a certificate.
//! - [`reload`]: certificate rotation without restarts: reloading TLS files on change or
//!   SIGHUP into the configuration new connections use.
//! - [`request_id`]: the `x-request-id` that ties one request's log lines together across
//!   both services.
//! - [`runtime`]: what every binary does the same way: logging set-up, the Tokio runtime, the
//!   shutdown signal and the drain deadline.
//! - [`probe`]: `<service> probe URL`, the health check that container images run.

pub mod probe;
pub mod reload;
pub mod request_id;
pub mod runtime;
pub mod tls;

/// Generated from `proto/ecommerce.proto` (package `ecommerce`).
#[allow(missing_docs, missing_debug_implementations, clippy::all)]
pub mod pb {
    tonic::include_proto!("ecommerce");

    /// The encoded `FileDescriptorSet` of `ecommerce.proto`, for gRPC server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/ecommerce_descriptor.bin"));
}
