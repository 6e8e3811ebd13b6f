//! Project automation, as a library so that the test harness builds certificates with exactly
//! the code that `cargo xtask gen-certs` uses.
//!
//! # Layout
//! - [`pki`]: the private CA and the service certificates, built in memory with rcgen.
//! - [`certs_dir`]: writing a PKI to a folder (keys owner-only) and reusing an existing CA.
//! - `main.rs`: the `cargo xtask` command line (`gen-certs`, `up`, `bench`); its private modules
//!   `services.rs` (child processes that never outlive it, shared by `up` and `bench`) and
//!   `bench/` (the wrk load benchmark) are not part of this library, so the test harness does
//!   not compile them.

pub mod certs_dir;
pub mod pki;

use std::path::{Path, PathBuf};

/// The workspace root, whatever the caller's working directory.
pub fn workspace_root() -> PathBuf {
    let xtask = Path::new(env!("CARGO_MANIFEST_DIR"));
    xtask.parent().unwrap_or(xtask).to_path_buf()
}
