//! The rules of `--database-url`, one test each: what is accepted, what is refused and how the
//! refusal reads.

use std::path::Path;

use super::*;

fn parse(url: &str) -> Result<DatabaseUrl, UrlError> {
    DatabaseUrl::parse(url, Some("catalog"))
}

fn refused(url: &str) -> UrlError {
    let err = parse(url).unwrap_err();
    let text = err.to_string();
    assert!(text.starts_with("--database-url"), "{text}");
    assert!(!text.contains('\n'), "one line: {text}");
    err
}

#[test]
fn verify_full_over_tcp_is_accepted_and_tls_is_required() {
    let url = parse("postgresql://db.example.com:6432/shop?sslmode=verify-full").unwrap();
    assert_eq!(url.transport(), Transport::Tcp);
    assert_eq!(url.config().get_ssl_mode(), SslMode::Require);
    assert_eq!(url.server_name(), Some("db.example.com"));
    assert_eq!(url.config().get_ports(), [6432]);
    assert_eq!(url.config().get_dbname(), Some("shop"));
    assert_eq!(url.to_string(), "db.example.com:6432/shop as catalog");
    // postgres:// is libpq's other spelling.
    let url = parse("postgres://10.0.0.5/shop?sslmode=verify-full").unwrap();
    assert_eq!(url.server_name(), Some("10.0.0.5"));
}

#[test]
fn a_tcp_url_without_sslmode_is_refused_saying_what_to_write() {
    let err = refused("postgresql://db/shop");
    assert_eq!(err, UrlError::NoSslMode);
    assert!(err.to_string().contains("add sslmode=verify-full"), "{err}");
}

#[test]
fn every_weaker_sslmode_is_refused_naming_what_it_lacks() {
    for (mode, lacks) in [
        ("disable", "plaintext"),
        ("allow", "falls back to plaintext"),
        ("prefer", "falls back to plaintext"),
        ("require", "does not check the server's certificate"),
        ("verify-ca", "its name"),
        ("verify_full", "not a libpq sslmode"),
    ] {
        let err = refused(&format!("postgresql://db/shop?sslmode={mode}"));
        let text = err.to_string();
        assert!(text.contains(&format!("sslmode={mode}")), "{text}");
        assert!(text.contains(lacks), "{text}");
        assert!(
            text.ends_with("write sslmode=verify-full instead"),
            "{text}"
        );
    }
}

#[test]
fn a_unix_socket_needs_no_tls() {
    let url = parse("postgresql:///shop?host=/run/pg&port=5433&user=postgres").unwrap();
    assert_eq!(url.transport(), Transport::UnixSocket);
    assert_eq!(url.config().get_ssl_mode(), SslMode::Disable);
    assert_eq!(url.config().get_user(), Some("postgres"));
    assert_eq!(url.config().get_dbname(), Some("shop"));
    assert_eq!(url.server_name(), None);
    assert_eq!(url.to_string(), "/run/pg/.s.PGSQL.5433/shop as postgres");
    // The folder percent-encoded in the authority, as libpq also takes it; any sslmode is moot.
    let url = parse("postgresql://%2Frun%2Fpg/shop?sslmode=require").unwrap();
    assert_eq!(url.transport(), Transport::UnixSocket);
    assert_eq!(url.config().get_ssl_mode(), SslMode::Disable);
}

#[test]
fn a_password_anywhere_is_refused_without_repeating_it() {
    for url in [
        "postgresql://catalog:s3cret@db/shop?sslmode=verify-full",
        "postgresql://catalog:@db/shop?sslmode=verify-full",
        "postgresql://db/shop?sslmode=verify-full&password=s3cret",
        "postgresql:///shop?host=/run/pg&password=s3cret",
        "postgresql://db/shop?sslmode=verify-full&pass%77ord=s3cret",
    ] {
        let err = refused(url);
        assert_eq!(err, UrlError::Password, "{url}");
        assert!(!err.to_string().contains("s3cret"));
    }
}

#[test]
fn sslcert_sslkey_and_sslrootcert_replace_catalog_files() {
    let url = parse(
        "postgresql://db/shop?sslmode=verify-full&sslrootcert=/pg/ca.pem\
         &sslcert=%2Fpg%2Fowner.pem&sslkey=/pg/owner.key",
    )
    .unwrap();
    let catalog = TlsFiles::in_dir(Path::new("/certs"), "catalog");
    let files = url.tls_files().apply(&catalog);
    assert_eq!(files.ca, Path::new("/pg/ca.pem"));
    assert_eq!(files.cert, Path::new("/pg/owner.pem"));
    assert_eq!(files.key, Path::new("/pg/owner.key"));
    // Only the ones given.
    let url = parse("postgresql://db/shop?sslmode=verify-full&sslrootcert=/pg/ca.pem").unwrap();
    let files = url.tls_files().apply(&catalog);
    assert_eq!(files.ca, Path::new("/pg/ca.pem"));
    assert_eq!(files.cert, catalog.cert);
    assert_eq!(files.key, catalog.key);
    assert_eq!(
        parse("postgresql://db/shop?sslmode=verify-full")
            .unwrap()
            .tls_files(),
        &TlsFileOverrides::default()
    );
}

#[test]
fn the_system_root_store_is_refused() {
    let err = refused("postgresql://db/shop?sslmode=verify-full&sslrootcert=system");
    assert_eq!(err, UrlError::SystemRoots);
}

#[test]
fn the_role_defaults_to_the_one_given_else_to_libpq_default() {
    let url = parse("postgresql://db/shop?sslmode=verify-full").unwrap();
    assert_eq!(url.config().get_user(), Some("catalog"));
    let url = parse("postgresql://reader@db/shop?sslmode=verify-full").unwrap();
    assert_eq!(url.config().get_user(), Some("reader"));
    let url = parse("postgresql://db/shop?sslmode=verify-full&user=other").unwrap();
    assert_eq!(url.config().get_user(), Some("other"));
    let url = DatabaseUrl::parse("postgresql:///shop?host=/run/pg", None).unwrap();
    assert_eq!(url.config().get_user(), None);
}

#[test]
fn other_libpq_keys_are_kept() {
    let url = parse(
        "postgresql://db.internal:5433/shop?sslmode=verify-full&hostaddr=10.1.2.3\
         &connect_timeout=3&application_name=catalog-7&options=-c%20statement_timeout%3D5s\
         &keepalives_idle=30&target_session_attrs=read-write",
    )
    .unwrap();
    let config = url.config();
    assert_eq!(
        config.get_hostaddrs(),
        ["10.1.2.3".parse::<std::net::IpAddr>().unwrap()]
    );
    assert_eq!(url.server_name(), Some("db.internal"));
    assert_eq!(config.get_ports(), [5433]);
    assert_eq!(config.get_connect_timeout(), Some(&Duration::from_secs(3)));
    assert_eq!(config.get_application_name(), Some("catalog-7"));
    assert_eq!(config.get_options(), Some("-c statement_timeout=5s"));
    assert_eq!(config.get_keepalives_idle(), Duration::from_secs(30));
}

#[test]
fn connect_timeout_and_application_name_have_defaults() {
    let url = parse("postgresql://db/shop?sslmode=verify-full").unwrap();
    assert_eq!(
        url.config().get_connect_timeout(),
        Some(&DEFAULT_CONNECT_TIMEOUT)
    );
    assert_eq!(url.config().get_application_name(), Some(APPLICATION_NAME));
}

#[test]
fn keys_tokio_postgres_does_not_know_are_named() {
    let err = refused("postgresql://db/shop?sslmode=verify-full&sslcrl=/pg/crl.pem");
    assert!(err.to_string().contains("unknown option `sslcrl`"), "{err}");
    let err = refused("postgresql://db:notaport/shop?sslmode=verify-full");
    assert!(err.to_string().contains("port"), "{err}");
}

#[test]
fn key_value_strings_are_not_urls() {
    assert_eq!(
        refused("host=db dbname=shop sslmode=verify-full"),
        UrlError::NotAUrl
    );
    assert_eq!(refused("https://db/shop"), UrlError::NotAUrl);
}

#[test]
fn hosts_must_be_given_named_and_of_one_kind() {
    assert_eq!(refused("postgresql:///shop"), UrlError::NoHost);
    assert_eq!(
        refused("postgresql:///shop?hostaddr=10.0.0.1&sslmode=verify-full"),
        UrlError::HostaddrWithoutHost
    );
    assert_eq!(
        refused("postgresql://db/shop?host=/run/pg&sslmode=verify-full"),
        UrlError::MixedTransports
    );
}

#[test]
fn direct_tls_negotiation_is_refused() {
    assert_eq!(
        refused("postgresql://db/shop?sslmode=verify-full&sslnegotiation=direct"),
        UrlError::DirectNegotiation
    );
}

#[test]
fn the_port_is_given_once() {
    assert_eq!(
        refused("postgresql://db/shop?sslmode=verify-full&port=5433"),
        UrlError::PortTwice
    );
    let url = parse("postgresql://a:5433,b/shop?sslmode=verify-full").unwrap();
    assert_eq!(url.config().get_ports(), [5433, 5432]);
    assert_eq!(url.to_string(), "a:5433,b:5432/shop as catalog");
}
