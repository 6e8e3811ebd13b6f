//! Running the real `catalog-service` binary for the process tests: start it on port 0 (both
//! its public port and its operations port) with certificates made here, and learn its
//! addresses and readiness from its own log.
#![allow(dead_code, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};
use tokio::sync::watch;

/// How long a child may take to log what a test waits for.
const LOG_GUARD: Duration = Duration::from_secs(30);

/// A child's stderr, read in the background as it comes (so that the child never blocks on a
/// full pipe) and kept for the test to wait on.
#[derive(Debug)]
pub struct Log(watch::Receiver<String>);

impl Log {
    /// Takes `child`'s piped stderr and starts reading it.
    pub fn capture(child: &mut Child) -> Self {
        let mut stderr = child.stderr.take().expect("stderr is piped");
        let (tx, rx) = watch::channel(String::new());
        tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            loop {
                match stderr.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        tx.send_modify(|log| log.push_str(&String::from_utf8_lossy(&buf[..n])))
                    }
                }
            }
        });
        Self(rx)
    }

    /// Waits until a whole line containing `needle` has been logged and returns it; panics if
    /// the child closes its stderr (exits) first, or after 30 s.
    pub async fn line_with(&self, needle: &str) -> String {
        let find = |log: &str| {
            let whole = &log[..log.rfind('\n').map_or(0, |end| end + 1)];
            whole
                .lines()
                .find(|line| line.contains(needle))
                .map(str::to_owned)
        };
        let mut log = self.0.clone();
        let seen = tokio::time::timeout(LOG_GUARD, log.wait_for(|log| find(log).is_some()))
            .await
            .unwrap_or_else(|_| panic!("no {needle:?} logged in time: {}", *self.0.borrow()))
            .map(|log| log.clone())
            .unwrap_or_else(|_| panic!("exited without logging {needle:?}: {}", *self.0.borrow()));
        find(&seen).unwrap()
    }

    /// Everything logged so far.
    pub fn all(&self) -> String {
        self.0.borrow().clone()
    }

    /// The `addr=` field of the first line containing `needle`, once it is logged.
    pub async fn addr_of(&self, needle: &str) -> SocketAddr {
        let line = self.line_with(needle).await;
        // `addr=127.0.0.1:1` in text, `"addr":"127.0.0.1:1"` in JSON.
        line.split([' ', ','])
            .find_map(|field| {
                field
                    .strip_prefix("addr=")
                    .or_else(|| field.strip_prefix(r#""addr":""#)?.strip_suffix('"'))
            })
            .and_then(|addr| addr.parse().ok())
            .unwrap_or_else(|| panic!("no addr in {line:?}"))
    }
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
    let certs = tempfile::tempdir().unwrap();
    pki::certs_dir::gen_certs(&pki::certs_dir::GenCerts::new(certs.path().to_owned(), 1)).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_catalog-service"))
        .args(["--listen", "127.0.0.1:0"])
        .args(["--ops-listen", "127.0.0.1:0"])
        .args(["--discount-addr", &discount.to_string()])
        .arg("--certs-dir")
        .arg(certs.path())
        .args(extra)
        .env_clear()
        .envs(vars.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let log = Log::capture(&mut child);
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
