//! `cargo xtask up --database`: a throwaway PostgreSQL (`throwaway-postgres`, as the tests use)
//! with TLS 1.3, `gen-certs`' server certificate and `cert` authentication for `catalog`,
//! migrated and loaded with the sample data by `catalog-service migrate` and `import`.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::Context;
use throwaway_postgres::{Cluster, Options, Tls};

use crate::services::{StopSignal, wait_child};

/// Starts the cluster (its folder is removed when it is dropped) and prepares the catalog.
pub fn start(certs: &Path, bin_dir: &Path, stop: &StopSignal) -> anyhow::Result<Cluster> {
    println!("starting a throwaway PostgreSQL (initdb, TLS 1.3, certificate authentication)...");
    let tls = Tls {
        cert: certs.join("postgres.pem"),
        key: certs.join("postgres.key"),
        ca: certs.join("ca.pem"),
    };
    let cluster = Cluster::start(Options::new(tls, "shop").cert_role("catalog"))?;
    println!("PostgreSQL is up on localhost:{}", cluster.port());
    owner_command(&cluster, bin_dir, &["migrate"], stop)?;
    owner_command(&cluster, bin_dir, &["import"], stop)?;
    Ok(cluster)
}

/// Runs `catalog-service ARGS` as the database's owner (`migrate`, `import` with or without
/// files) and waits for it to succeed.
pub fn owner_command(
    cluster: &Cluster,
    bin_dir: &Path,
    args: &[&str],
    stop: &StopSignal,
) -> anyhow::Result<()> {
    let what = format!("catalog-service {}", args.join(" "));
    println!("{what}...");
    let mut child = Command::new(bin_dir.join("catalog-service"))
        .args(args)
        .args(["--database-url", &cluster.owner_url()])
        .spawn()
        .with_context(|| format!("cannot run {what}"))?;
    wait_child(&mut child, &what, stop, Duration::from_secs(600))
}

/// Prints a `psql` command that changes a price, to see the change in `/products` at once.
pub fn print_try(cluster: &Cluster) {
    let psql = cluster.psql_path().display();
    let url = cluster.owner_url();
    println!(
        "Then: {psql} '{url}' -c 'UPDATE products SET price_in_cents = 100 WHERE id = 1'\n      \
         and curl again: Catalog follows the database as it changes."
    );
}
