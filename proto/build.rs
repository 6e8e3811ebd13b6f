//! Compiles `ecommerce.proto` with the pure-Rust `protox` parser, so building needs no `protoc`,
//! and keeps the encoded descriptors for gRPC server reflection.

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "ecommerce.proto";
    println!("cargo:rerun-if-changed={proto}");
    let descriptors = protox::compile([proto], ["."])?;
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("ecommerce_descriptor.bin"),
        descriptors.encode_to_vec(),
    )?;
    // No `connect` helper on the client: it would need tonic's transport, and callers bring their
    // own (mutual-TLS) channel anyway.
    // Default stubs answer UNIMPLEMENTED for RPCs a server does not implement, so a server
    // (or a test double) written against an older contract keeps compiling as RPCs are added.
    // The codec is the crate's own (`src/codec.rs`): prost's messages, encoded and decoded in
    // one pass each.
    // `PriceGroup` and `Discounts` are the crate's own (`src/packed.rs`: the same messages, with
    // their packed lists sized once when decoded).
    tonic_prost_build::configure()
        .codec_path("crate::codec::ProtoCodec")
        .extern_path(".ecommerce.PriceGroup", "crate::packed::PriceGroup")
        .extern_path(".ecommerce.Discounts", "crate::packed::Discounts")
        .build_transport(false)
        .generate_default_stubs(true)
        .compile_fds(descriptors)?;
    Ok(())
}
