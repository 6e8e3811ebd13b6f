//! `cargo xtask up --database` and the benchmark's database pass: a throwaway PostgreSQL
//! (`throwaway-postgres`, as the tests use) with TLS 1.3, `gen-certs`' server certificate and
//! `cert` authentication for `catalog`, migrated and loaded with the sample data by
//! `catalog-service migrate` and `import` (which loads other files too).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};
use throwaway_postgres::{Cluster, Options, Tls};

use crate::services::{StopSignal, wait_child};

/// Starts the cluster (its folder is removed when it is dropped) and prepares the catalog.
pub fn start(certs: &Path, bin_dir: &Path, stop: &StopSignal) -> Result<Cluster> {
    println!("starting a throwaway PostgreSQL (initdb, TLS 1.3, certificate authentication)...");
    let options = Options::new(Tls::in_certs_dir(certs), "shop").cert_role("catalog");
    let cluster = Cluster::start(options)?;
    println!("PostgreSQL is up on localhost:{}", cluster.port());
    as_owner(&cluster, bin_dir, &["migrate"], stop)?;
    as_owner(&cluster, bin_dir, &["import"], stop)?;
    Ok(cluster)
}

/// Runs `catalog-service ARGS` as the database's owner (`migrate`, `import` with or without
/// files) and waits for it to succeed.
pub fn as_owner(cluster: &Cluster, bin_dir: &Path, args: &[&str], stop: &StopSignal) -> Result<()> {
    let what = format!("catalog-service {}", args.join(" "));
    println!("{what}...");
    let mut cmd = Command::new(bin_dir.join("catalog-service"));
    cmd.args(args);
    cmd.arg("--database-url").arg(cluster.owner_url());
    let mut child = cmd.spawn().with_context(|| format!("cannot run {what}"))?;
    wait_child(&mut child, &what, stop, Duration::from_secs(600))
}

/// Prints a `psql` command that changes a price, to see the change in `/products` at once.
pub fn print_try(cluster: &Cluster) {
    let (psql, url) = (cluster.psql_path().display(), cluster.owner_url());
    println!("Then: {psql} '{url}' -c 'UPDATE products SET price_in_cents = 100 WHERE id = 1'");
    println!("      and curl again: Catalog follows the database as it changes.");
}
