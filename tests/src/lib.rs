//! The end-to-end test harness: real servers on `127.0.0.1:0`, certificates made in memory by
//! the same code as `cargo xtask gen-certs`, and clients that speak real mutual TLS.
//!
//! Servers are started in process and are ready as soon as the spawn function returns (their
//! listener is bound before it returns), so no test sleeps or polls for readiness.
//!
//! # Layout
//!
//! - `net`: loopback listeners, the [`Running`] server handle, and [`ClosedPort`], an address
//!   that refuses connections and that no one else can bind while a test holds it.
//! - `certs`: fresh PKIs and their parsing into TLS material.
//! - `servers`: the real Discount, and Catalog with its operations port.
//! - `fakes`: a Discount that counts what it is asked, and one that never answers.
//! - `resolver`: a name resolver whose answer the test sets.
//! - `proxy`: a TCP proxy that counts connections and whose target can be switched.
//! - `replica`: a real Discount replica that can be killed like a crashed process and restarted.
//! - `rotation`: both services serving from certificate files and reloading them.
//! - `client`: gRPC clients of Discount over mutual TLS or plaintext.
//! - `database`: a throwaway PostgreSQL cluster with a database per test, and Discount and
//!   Catalog serving the catalog from one of them over mutual TLS.
//! - `flood`: connections that never prove themselves, reopened as soon as they are closed,
//!   from a thread of their own; and the open-file limit raised for them.
//!
//! `net` and `certs` are used by the others, and `rotation` and `database` also use `servers`
//! (`rotation` also `proxy`);
//! no two modules import each other.
#![allow(clippy::unwrap_used, clippy::missing_panics_doc)]

mod certs;
mod client;
mod database;
mod fakes;
mod flood;
mod net;
mod proxy;
mod replica;
mod resolver;
mod rotation;
mod servers;

pub use certs::{anchors, identity, other_pki, service_pki};
pub use client::{grpc_client, mtls_channel, plaintext_grpc_client, status_chain, tls_connect};
pub use database::{
    HEALTH_INTERVAL, Shop, TestCluster, TestDatabase, load_products, shared_cluster, spawn_shop,
    spawn_shop_with,
};
pub use fakes::{CountingDiscount, spawn_black_hole, spawn_counting_discount};
pub use flood::{Flood, PARTIAL_CLIENT_HELLO, PARTIAL_REQUEST_HEAD, raise_open_file_limit};
pub use net::{ClosedPort, Running, closed_port};
pub use pki;
pub use proxy::{Proxy, spawn_proxy};
pub use replica::Replica;
pub use resolver::TestResolver;
pub use rotation::{RotatingPair, pem_serial, server_serial, spawn_rotating_pair};
pub use servers::{
    CatalogOptions, generated_catalog, spawn_catalog, spawn_catalog_balancing, spawn_catalog_for,
    spawn_catalog_watched, spawn_discount, spawn_discount_configured, spawn_discount_traced,
    spawn_discount_with, target,
};
