//! Running the real `catalog-service` binary for the process tests: start it on port 0 (both
//! its public port and its operations port) with certificates made here (or a folder the test
//! gives), and learn its addresses and readiness from its own log; or run it until it exits on
//! its own; and a Discount address that refuses connections, for the tests that need nothing
//! more of Discount.
#![allow(dead_code, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::Duration;

use process_testing::Log;
use tokio::process::{Child, Command};

/// A loopback port that refuses connections while the socket lives (bound, never listening):
/// a Discount that is down, for tests that need nothing more of it.
pub fn refusing_port() -> (tokio::net::TcpSocket, SocketAddr) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(([127, 0, 0, 1], 0).into()).unwrap();
    let addr = socket.local_addr().unwrap();
    (socket, addr)
}

/// Runs the binary with `args` and a clean environment until it exits on its own (a start-up
/// refused, or a subcommand done), at most a minute; returns its status and output.
pub async fn run_to_exit(args: &[&str]) -> Output {
    let child = Command::new(env!("CARGO_BIN_EXE_catalog-service"))
        .args(args)
        .env_clear()
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(Duration::from_secs(60), child)
        .await
        .expect("catalog-service should exit on its own, not serve")
        .expect("catalog-service runs")
}

/// A running `catalog-service`, killed when dropped.
#[derive(Debug)]
pub struct Catalog {
    /// The process.
    pub child: Child,
    /// Where it listens (it bound port 0 and logged the port it got).
    pub addr: SocketAddr,
    /// Where its operations port listens (`/healthz`, `/readyz`, `/metrics`), likewise.
    pub ops_addr: SocketAddr,
    /// Its stderr.
    pub log: Log,
    /// Its certificates (and Discount's), removed when dropped.
    pub certs: tempfile::TempDir,
}

/// Starts Catalog on `127.0.0.1:0` (and its operations port too) with certificates made here
/// and Discount at `discount`; returns once it logs the addresses it listens on (no polling,
/// no sleep).
pub async fn start_catalog(discount: SocketAddr, extra: &[&str]) -> Catalog {
    start_catalog_with(discount, extra, &[]).await
}

/// [`start_catalog`], with the environment variables `vars` (and no others).
pub async fn start_catalog_with(
    discount: SocketAddr,
    extra: &[&str],
    vars: &[(&str, &str)],
) -> Catalog {
    start_catalog_in(new_certs(), discount, extra, vars).await
}

/// [`start_catalog_with`], with the certificates in `certs` (a folder as `gen-certs` writes
/// it) instead of new ones.
pub async fn start_catalog_in(
    certs: tempfile::TempDir,
    discount: SocketAddr,
    extra: &[&str],
    vars: &[(&str, &str)],
) -> Catalog {
    let mut args = vec!["--ops-listen", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    let (child, log) = spawn_catalog_in(certs.path(), discount, &args, vars);
    let addr = log.addr_of("Catalog listening").await;
    let ops_addr = log.addr_of("Catalog operations port listening").await;
    Catalog {
        child,
        addr,
        ops_addr,
        log,
        certs,
    }
}

/// A new temporary folder with certificates from `gen-certs` (a new CA).
pub fn new_certs() -> tempfile::TempDir {
    let certs = tempfile::tempdir().unwrap();
    pki::certs_dir::gen_certs(&pki::certs_dir::GenCerts::new(certs.path().to_owned(), 1)).unwrap();
    certs
}

/// Starts Catalog on `127.0.0.1:0` with certificates made here (returned: removed when
/// dropped), Discount at `discount`, the flags `extra` (where its operations port is, say) and
/// the environment variables `vars` (and no others); does not wait.
pub fn spawn_catalog(
    discount: SocketAddr,
    extra: &[&str],
    vars: &[(&str, &str)],
) -> (Child, Log, tempfile::TempDir) {
    let certs = new_certs();
    let (child, log) = spawn_catalog_in(certs.path(), discount, extra, vars);
    (child, log, certs)
}

/// [`spawn_catalog`], with the certificates in `certs`.
pub fn spawn_catalog_in(
    certs: &Path,
    discount: SocketAddr,
    extra: &[&str],
    vars: &[(&str, &str)],
) -> (Child, Log) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_catalog-service"))
        .args(["--listen", "127.0.0.1:0"])
        .args(["--discount-addr", &discount.to_string()])
        .arg("--certs-dir")
        .arg(certs)
        .args(extra)
        .env_clear()
        .envs(vars.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let log = Log::capture(&mut child);
    (child, log)
}
