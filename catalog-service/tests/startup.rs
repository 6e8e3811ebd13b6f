//! Start-up failures of the real `catalog-service` binary: each stops it with one clear line
//! naming the setting and the cause, and a non-zero exit, never a panic: among them a
//! `--database-url` that does not verify the server fully or carries a password, or that comes
//! with data files.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::Output;

use process_testing::single_error_line;

/// Runs the binary with `args` and a clean environment; it must exit on its own.
async fn run(args: &[&str]) -> Output {
    common::run_to_exit(args).await
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

#[tokio::test]
async fn a_database_url_that_does_not_verify_the_server_fully_is_refused() {
    for (url, problem) in [
        (
            "postgresql://db.example:5432/shop?sslmode=require",
            "has sslmode=require, which does not check the server's certificate: write \
             sslmode=verify-full instead",
        ),
        (
            "postgresql://db.example:5432/shop",
            "has no sslmode: a TCP connection must check the server's certificate and name, \
             so add sslmode=verify-full",
        ),
    ] {
        let line = single_error_line(&run(&["--database-url", url]).await);
        assert!(
            line.contains(&format!("--database-url {problem}")),
            "{line}"
        );
        assert!(
            !line.contains("db.example"),
            "the URL is not repeated: {line}"
        );
    }
}

#[tokio::test]
async fn a_database_url_with_a_password_is_refused_without_repeating_it() {
    for url in [
        "postgresql://catalog:hunter2@db.example/shop?sslmode=verify-full",
        "postgresql://db.example/shop?sslmode=verify-full&password=hunter2",
    ] {
        let line = single_error_line(&run(&["--database-url", url]).await);
        assert!(line.contains("--database-url carries a password"), "{line}");
        assert!(!line.contains("hunter2"), "{line}");
    }
}

#[tokio::test]
async fn a_database_url_with_data_files_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "products.json", "[]");
    let url = "postgresql://db.example/shop?sslmode=verify-full";
    let line = single_error_line(&run(&["--database-url", url, "--products", &file]).await);
    assert!(line.contains("give one or the other"), "{line}");
    assert!(line.contains("--database-url"), "{line}");
    assert!(line.contains("--products"), "{line}");
}
