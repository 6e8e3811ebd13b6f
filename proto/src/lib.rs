//! The Catalog/Discount wire contract and nothing else: the Rust types and the tonic client and
//! server generated from `ecommerce.proto` (compiled by `protox` at build time, so no `protoc`
//! is needed; two messages, in `src/packed.rs`, written out), and the encoded descriptor set for
//! gRPC server reflection.
//!
//! Both services depend on this crate, so the messages they exchange cannot drift apart; a
//! third-party client needs only this crate (prost and tonic's codegen), not the services' TLS
//! or runtime.

pub mod codec;
mod packed;

/// Generated from `proto/ecommerce.proto` (package `ecommerce`), with `PriceGroup` and
/// `Discounts` from `src/packed.rs`.
#[allow(missing_docs, missing_debug_implementations, clippy::all)]
pub mod pb {
    tonic::include_proto!("ecommerce");

    pub use crate::packed::{Discounts, PriceGroup};

    /// The encoded `FileDescriptorSet` of `ecommerce.proto`, for gRPC server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/ecommerce_descriptor.bin"));
}
