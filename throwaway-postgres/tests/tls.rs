//! Who gets in over TCP: a certificate role over TLS 1.3 with its own client certificate, and
//! nobody else. Older TLS, no TLS, no client certificate, another certificate's name, another
//! role (even one with a good certificate from the same CA), the superuser, another database:
//! each refused, by the server, with its reason. Connections are libpq's (`psql`), with
//! `sslmode=verify-full` against the CA.
#![allow(clippy::unwrap_used)]

mod common;

use common::client_url;

/// `psql_at`'s error for `url`, which must be refused.
fn refused(cluster: &throwaway_postgres::Cluster, url: &str) -> String {
    match cluster.psql_at(url, "SELECT current_user") {
        Ok(out) => panic!("{url} was let in: {out}"),
        Err(err) => err.to_string(),
    }
}

#[test]
fn a_certificate_role_logs_in_over_tls_1_3_with_its_certificate() {
    let certs = common::certs();
    let cluster = common::start(certs.path());
    let url = client_url(&cluster, certs.path(), "catalog", Some("catalog"), "");
    let out = cluster
        .psql_at(
            &url,
            "SELECT current_user, current_database(), version, client_dn \
             FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
        )
        .unwrap();
    assert_eq!(out, "catalog|shop|TLSv1.3|/O=Shop/CN=catalog\n");
    // By address too, on each loopback address the server listens on.
    let by_ip = url.replace("localhost", "127.0.0.1");
    assert_eq!(cluster.psql_at(&by_ip, "SELECT 1").unwrap(), "1\n");
    if std::net::TcpListener::bind("[::1]:0").is_ok() {
        let by_ipv6 = url.replace("localhost", "[::1]");
        assert_eq!(cluster.psql_at(&by_ipv6, "SELECT 1").unwrap(), "1\n");
    }
    assert!(
        cluster
            .log()
            .contains("connection authorized: user=catalog database=shop")
    );
}

#[test]
fn only_tls_1_3_is_accepted() {
    let certs = common::certs();
    let cluster = common::start(certs.path());
    assert_eq!(
        cluster.psql("SHOW ssl_min_protocol_version").unwrap(),
        "TLSv1.3\n"
    );
    let tls_1_2 = client_url(
        &cluster,
        certs.path(),
        "catalog",
        Some("catalog"),
        "&ssl_max_protocol_version=TLSv1.2",
    );
    let err = refused(&cluster, &tls_1_2);
    assert!(
        err.contains("SSL error: tlsv1 alert protocol version"),
        "{err}"
    );
    // The server logs its side once the client has its alert: wait for the line.
    common::wait_until("the server logs the refused protocol", || {
        cluster
            .log()
            .contains("could not accept SSL connection: unsupported protocol")
    });
}

#[test]
fn tcp_is_refused_to_every_other_role_database_and_way_in() {
    let certs = common::certs();
    let cluster = common::start(certs.path());
    cluster.psql("CREATE ROLE reports LOGIN").unwrap();
    let dir = certs.path();
    let no_entry = |user: &str, database: &str, encryption: &str| {
        format!(
            "no pg_hba.conf entry for host \"127.0.0.1\", user \"{user}\", database \"{database}\", {encryption}"
        )
    };
    let by_ip = |url: String| url.replace("localhost", "127.0.0.1");

    // A role with no line, though its certificate is good and names it.
    let err = refused(
        &cluster,
        &by_ip(client_url(&cluster, dir, "reports", Some("reports"), "")),
    );
    assert!(
        err.contains(&no_entry("reports", "shop", "SSL encryption")),
        "{err}"
    );
    // The superuser, over TCP.
    let err = refused(
        &cluster,
        &by_ip(client_url(&cluster, dir, "postgres", Some("catalog"), "")),
    );
    assert!(
        err.contains(&no_entry("postgres", "shop", "SSL encryption")),
        "{err}"
    );
    // The certificate role without TLS.
    let plain = format!(
        "postgresql://127.0.0.1:{}/shop?user=catalog&sslmode=disable",
        cluster.port()
    );
    let err = refused(&cluster, &plain);
    assert!(
        err.contains(&no_entry("catalog", "shop", "no encryption")),
        "{err}"
    );
    // The certificate role, to another database.
    let other = by_ip(client_url(&cluster, dir, "catalog", Some("catalog"), ""))
        .replace("/shop?", "/postgres?");
    let err = refused(&cluster, &other);
    assert!(
        err.contains(&no_entry("catalog", "postgres", "SSL encryption")),
        "{err}"
    );
    // The certificate role without a client certificate.
    let err = refused(&cluster, &client_url(&cluster, dir, "catalog", None, ""));
    assert!(
        err.contains("connection requires a valid client certificate"),
        "{err}"
    );
    // The certificate role with another role's certificate.
    let err = refused(
        &cluster,
        &client_url(&cluster, dir, "catalog", Some("reports"), ""),
    );
    assert!(
        err.contains("certificate authentication failed for user \"catalog\""),
        "{err}"
    );
}
