//! What the cluster tests share: certificates from `gen-certs` in a temporary folder (the CA,
//! PostgreSQL's server certificate, Catalog's client certificate and one for `reports`, a role
//! without a `pg_hba.conf` line), a cluster started with them, and libpq URLs that present a
//! client certificate.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use pki::certs_dir::{GenCerts, gen_certs};
use tempfile::TempDir;
use throwaway_postgres::{Cluster, Options, Tls};

/// The database every test cluster has.
pub const DATABASE: &str = "shop";

/// A folder with `ca`, `discount`, `catalog`, `postgres` and `reports` certificates.
pub fn certs() -> TempDir {
    let dir = tempfile::tempdir().unwrap();
    gen_certs(&GenCerts::new(dir.path(), 1)).unwrap();
    gen_certs(&GenCerts {
        services: vec!["reports".into()],
        ..GenCerts::new(dir.path(), 1)
    })
    .unwrap();
    dir
}

/// The cluster's TLS files from `certs`.
pub fn tls(certs: &Path) -> Tls {
    Tls::in_folder(certs)
}

/// A cluster with database `shop` and the certificate role `catalog`.
pub fn start(certs: &Path) -> Cluster {
    Cluster::start(Options::new(tls(certs), DATABASE).cert_role("catalog")).unwrap()
}

/// The cluster's TLS URL for `user`, presenting `<cert>.pem` (if any) and trusting the CA,
/// plus `extra` (`&key=value...`).
pub fn client_url(
    cluster: &Cluster,
    certs: &Path,
    user: &str,
    cert: Option<&str>,
    extra: &str,
) -> String {
    let mut url = cluster.tls_url(user);
    url.push_str(&format!("&sslrootcert={}", certs.join("ca.pem").display()));
    if let Some(cert) = cert {
        let (pem, key) = (
            certs.join(format!("{cert}.pem")),
            certs.join(format!("{cert}.key")),
        );
        url.push_str(&format!(
            "&sslcert={}&sslkey={}",
            pem.display(),
            key.display()
        ));
    }
    url.push_str(extra);
    url
}

/// Waits until `done` holds, or fails naming `what` after a deadline that only turns a stall
/// into a failure; the pause between checks only paces the polling. The deadline stays well
/// under a minute: a server whose folder is gone stops by itself within a minute (it checks
/// its lock file), which must not pass for a stop this crate made.
pub fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let give_up = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < give_up, "never happened: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether process `pid` has ended (gone, or a zombie nobody has reaped yet).
pub fn has_ended(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // `pid (comm) S ...`: the state follows the last ')'.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
    }
}
