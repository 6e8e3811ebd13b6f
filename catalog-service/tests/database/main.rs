//! The real `catalog-service` binary against a real PostgreSQL: its `migrate` and `import`
//! subcommands, and serving its catalog from the database over mutual TLS 1.3 (changes
//! followed, forged notifications ignored, a rotated certificate used on the next connection).
//! One throwaway cluster for this binary, a database of its own per test, so tests run in
//! parallel (and each in a process of its own under nextest).
#![allow(clippy::unwrap_used)]

#[path = "../common/mod.rs"]
mod common;

mod cluster;
mod commands;
mod rotation;
mod serving;
