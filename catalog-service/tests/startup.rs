//! Start-up failures of the real `catalog-service` binary: each stops it with one clear line
//! naming the setting and the cause, and a non-zero exit, never a panic.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use process_testing::single_error_line;
use tokio::process::Command;

/// Runs the binary with `args` and a clean environment; it must exit on its own.
async fn run(args: &[&str]) -> Output {
    let child = Command::new(env!("CARGO_BIN_EXE_catalog-service"))
        .args(args)
        .env_clear()
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(Duration::from_secs(30), child)
        .await
        .expect("catalog-service should exit at start-up, not serve")
        .expect("catalog-service runs")
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

#[tokio::test]
async fn bad_products_file_names_file_record_and_problem() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            r#"[{"id":1,"slug":"a","description":"","price_in_cents":1},{"id":1,"slug":"b","description":"","price_in_cents":1}]"#,
            "record 2: duplicate id 1",
        ),
        (
            r#"[{"id":1,"slug":"a","description":"","price_in_cents":-1}]"#,
            "record 1: product 1: price_in_cents must not be negative",
        ),
        (
            r#"[{"id":1,"slug":"a","price_in_cents":1}]"#,
            "record 1: invalid product: missing field `description`",
        ),
        (
            r#"[{"id":1,"slug":"a","description":"","price_in_cents":1,"stock":3}]"#,
            "record 1: invalid product: unknown field `stock`",
        ),
    ];
    for (i, (text, problem)) in cases.into_iter().enumerate() {
        let file = write(dir.path(), &format!("products-{i}.json"), text);
        let line = single_error_line(&run(&["--products", &file]).await);
        assert!(line.contains(&format!("{file}: {problem}")), "{line}");
    }
}

#[tokio::test]
async fn bad_customers_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "customers.json",
        r#"[{"id":-4,"first_name":"A","last_name":"B"}]"#,
    );
    let line = single_error_line(&run(&["--customers", &file]).await);
    assert!(
        line.contains(&format!("{file}: record 1: id must be positive, got -4")),
        "{line}"
    );
}

#[tokio::test]
async fn missing_certificates_point_to_gen_certs() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().to_str().unwrap();
    let line = single_error_line(&run(&["--certs-dir", certs]).await);
    assert!(line.contains(&format!("{certs}/ca.pem")), "{line}");
    assert!(line.contains("cargo xtask gen-certs"), "{line}");
}

#[tokio::test]
async fn malformed_flag_value_is_refused_by_name() {
    let output = run(&["--discount-timeout-ms", "soon"]).await;
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--discount-timeout-ms"), "{stderr}");
}

fn certs() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    pki::certs_dir::gen_certs(&pki::certs_dir::GenCerts::new(dir.path().to_owned(), 1)).unwrap();
    dir
}

#[tokio::test]
async fn key_that_does_not_match_the_certificate_is_named() {
    let certs = certs();
    let dir = certs.path().to_str().unwrap();
    let key = format!("{dir}/discount.key");
    let line = single_error_line(&run(&["--certs-dir", dir, "--key", &key]).await);
    assert!(
        line.contains("private key does not match the certificate"),
        "{line}"
    );
    assert!(line.contains("catalog.pem"), "{line}");
}

#[tokio::test]
async fn port_already_in_use_is_named() {
    let certs = certs();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = certs.path().to_str().unwrap();
    let line = single_error_line(&run(&["--certs-dir", dir, "--listen", &addr]).await);
    assert!(
        line.contains(&format!("--listen {addr}: cannot bind")),
        "{line}"
    );
    assert!(line.to_lowercase().contains("in use"), "{line}");
}

#[tokio::test]
async fn ops_port_already_in_use_is_named() {
    let certs = certs();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = certs.path().to_str().unwrap();
    let args = [
        "--certs-dir",
        dir,
        "--listen",
        "127.0.0.1:0",
        "--ops-listen",
        &addr,
    ];
    let line = single_error_line(&run(&args).await);
    assert!(
        line.contains(&format!("--ops-listen {addr}: cannot bind")),
        "{line}"
    );
}
