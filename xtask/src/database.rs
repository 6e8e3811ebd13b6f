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
    for (step, args) in [("migrate", &["migrate"][..]), ("import", &["import"][..])] {
        println!("catalog-service {step}...");
        let mut child = Command::new(bin_dir.join("catalog-service"))
            .args(args)
            .args(["--database-url", &cluster.owner_url()])
            .spawn()
            .with_context(|| format!("cannot run catalog-service {step}"))?;
        wait_child(
            &mut child,
            &format!("catalog-service {step}"),
            stop,
            Duration::from_secs(600),
        )?;
    }
    Ok(cluster)
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
