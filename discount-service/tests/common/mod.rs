//! Running the real `discount-service` binary for the process tests: certificates made here, a
//! clean environment, gRPC and the operations port on ports of its own choosing (read from its
//! log), and Discount clients over mutual TLS.
#![allow(dead_code, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::Duration;

use ecommerce_proto::pb::discount_client::DiscountClient;
use process_testing::Log;
use tokio::process::{Child, Command};
use tonic::transport::Channel;

/// A fresh certificate folder, as `cargo xtask gen-certs` writes it.
pub fn certs() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    pki::certs_dir::gen_certs(&pki::certs_dir::GenCerts::new(dir.path(), 1)).unwrap();
    dir
}

/// The binary with `args`, no environment variables, killed when dropped.
pub fn command(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_discount-service"));
    command.args(args).env_clear().kill_on_drop(true);
    command
}

/// Runs the binary with `args` until it exits (at start-up, or a `probe`).
pub async fn run(args: &[&str]) -> Output {
    tokio::time::timeout(Duration::from_secs(30), command(args).output())
        .await
        .expect("discount-service should exit at start-up")
        .unwrap()
}

/// The binary serving gRPC and its operations port, each on a port of its own choosing.
pub struct Discount {
    /// The process, killed when dropped.
    pub child: Child,
    /// Its stderr.
    pub log: Log,
    /// Where it serves gRPC (read from its log).
    pub grpc: SocketAddr,
    /// Where its operations port listens (read from its log).
    pub ops: SocketAddr,
}

/// Starts the binary with its certificates in `dir`, gRPC and the operations port both on
/// `127.0.0.1:0`; returns once it has logged both addresses (and so is ready).
pub async fn start_with_ops_port(dir: &str) -> Discount {
    start_with_ops_port_and(dir, &[]).await
}

/// [`start_with_ops_port`] with more flags.
pub async fn start_with_ops_port_and(dir: &str, flags: &[&str]) -> Discount {
    let mut args = vec!["--ops-listen", "127.0.0.1:0"];
    args.extend_from_slice(flags);
    start(dir, &args).await
}

/// Starts the binary with its certificates in `dir`, gRPC on `127.0.0.1:0`, and `flags`, which
/// must open its operations port; returns once it has logged both addresses.
pub async fn start(dir: &str, flags: &[&str]) -> Discount {
    let (child, log) = spawn(dir, flags, &[]);
    let ops = log.addr_of("Discount operations port listening").await;
    let grpc = log.addr_of("Discount listening").await;
    Discount {
        child,
        log,
        grpc,
        ops,
    }
}

/// Spawns the binary with its certificates in `dir`, gRPC on `127.0.0.1:0`, `flags`, and the
/// environment variables `vars` (and no others), its stderr captured; does not wait.
pub fn spawn(dir: &str, flags: &[&str], vars: &[(&str, &str)]) -> (Child, Log) {
    let mut child = command(&["--certs-dir", dir, "--listen", "127.0.0.1:0"])
        .args(flags)
        .envs(vars.iter().copied())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = Log::capture(&mut child);
    (child, log)
}

/// A channel over mutual TLS to `addr`, trusting the CA in `certs`, presenting Catalog's
/// certificate from there or, without `with_certificate`, none.
pub fn channel(addr: SocketAddr, certs: &Path, with_certificate: bool) -> Channel {
    let (identity, anchors) = mtls::TlsFiles::in_dir(certs, "catalog").load().unwrap();
    let identity = with_certificate.then_some(&identity);
    let config = mtls::client_config(&anchors, identity, None).unwrap();
    mtls::lazy_channel(config, addr, "localhost").unwrap()
}

/// A Discount client over [`channel`].
pub fn grpc_client(
    addr: SocketAddr,
    certs: &Path,
    with_certificate: bool,
) -> DiscountClient<Channel> {
    DiscountClient::new(channel(addr, certs, with_certificate))
}
