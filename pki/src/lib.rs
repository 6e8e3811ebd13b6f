//! The project's private PKI: issuing the CA and the service certificates with rcgen, used by
//! `cargo xtask gen-certs` and by every test that needs certificates, so both make exactly the
//! same ones.
//!
//! # Layout
//! - [`issue`]: the private CA, server certificates (serverAuth, DNS/IP SANs) and client
//!   certificates (clientAuth), each carrying a SPIFFE URI identity, built in memory. Its items
//!   are re-exported here.
//! - [`certs_dir`]: writing a PKI to a folder (keys owner-only, atomically) and reusing an
//!   existing CA, as `gen-certs` does.

pub mod certs_dir;
pub mod issue;

pub use issue::*;
