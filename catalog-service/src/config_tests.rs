//! The tests of the command-line flags: defaults, ranges, variables, and the settings they make.

use clap::CommandFactory;

use super::*;

#[test]
fn defaults_match_the_documented_ports() {
    let cli = Cli::try_parse_from(["catalog-service"]).unwrap();
    assert_eq!(cli.listen.port(), 11080);
    assert_eq!(cli.ops.ops_listen.to_string(), "127.0.0.1:9465");
    assert_eq!(cli.discount_addr.len(), 1);
    assert_eq!(cli.discount_addr[0].to_string(), "127.0.0.1:11443");
    assert!(cli.discount_timeout_ms < 1000);
}

#[test]
fn discount_host_without_port_gets_the_default_port() {
    let cli = Cli::try_parse_from(["catalog-service", "--discount-addr", "discount"]).unwrap();
    assert_eq!(cli.discount_addr[0].to_string(), "discount:11443");
}

#[test]
fn several_discount_replicas_can_be_listed() {
    let cli = Cli::try_parse_from([
        "catalog-service",
        "--discount-addr",
        "10.0.0.1,10.0.0.2:9000,discount-2",
    ])
    .unwrap();
    let addrs: Vec<String> = cli.discount_addr.iter().map(ToString::to_string).collect();
    assert_eq!(
        addrs,
        ["10.0.0.1:11443", "10.0.0.2:9000", "discount-2:11443"]
    );
}

#[test]
fn bad_values_name_the_flag() {
    for args in [
        &["--discount-addr", "http://x"][..],
        &["--listen", "nope"],
        &["--discount-timeout-ms", "0"],
        &["--discount-addr", "a,,b"],
        &["--discount-health-interval-ms", "5"],
        &["--discount-max-connection-age-secs", "forever"],
        &["--discount-rpcs-in-flight", "0"],
        &["--discount-max-requests-per-rpc", "0"],
        &["--discount-max-products-per-rpc", "999"],
        &["--discount-max-queued", "none"],
        &["--discount-fallback-concurrency", "0"],
        &["--discount-fallback-max-in-flight", "0"],
        &["--ops-listen", "9465"],
        &["--http-max-connections", "0"],
        &["--http-max-unproven-connections", "0"],
        &["--http-header-timeout-ms", "0"],
        &["--http-idle-timeout-ms", "forever"],
        &["--http-max-concurrent-requests", "0"],
    ] {
        let err =
            Cli::try_parse_from(std::iter::once("catalog-service").chain(args.iter().copied()))
                .unwrap_err()
                .to_string();
        assert!(err.contains(args[0]), "{err}");
    }
}

#[test]
fn connections_to_discount_are_renewed_every_30_minutes_unless_0_says_never() {
    let dir = tempfile::tempdir().unwrap();
    pki::certs_dir::gen_certs(&pki::certs_dir::GenCerts::new(dir.path(), 1)).unwrap();
    let certs = dir.path().to_str().unwrap();
    let age = |extra: &[&str]| {
        let args = ["catalog-service", "--certs-dir", certs];
        let cli = Cli::try_parse_from(args.iter().chain(extra)).unwrap();
        cli.settings().unwrap().discount.replicas.max_connection_age
    };
    assert_eq!(age(&[]), Some(Duration::from_secs(1800)));
    assert_eq!(age(&["--discount-max-connection-age-secs", "0"]), None);
}

#[test]
fn coalescing_and_fallback_limits_have_defaults_and_flags() {
    let dir = tempfile::tempdir().unwrap();
    pki::certs_dir::gen_certs(&pki::certs_dir::GenCerts::new(dir.path(), 1)).unwrap();
    let certs = dir.path().to_str().unwrap();
    let settings = |extra: &[&str]| {
        let args = ["catalog-service", "--certs-dir", certs];
        let cli = Cli::try_parse_from(args.iter().chain(extra)).unwrap();
        cli.settings().unwrap().discount
    };
    let defaults = settings(&[]);
    assert_eq!(defaults.coalescing, CoalesceSettings::default());
    assert_eq!(defaults.fallback, FallbackSettings::default());
    let tuned = settings(&[
        "--discount-rpcs-in-flight=3",
        "--discount-max-requests-per-rpc=16",
        "--discount-max-products-per-rpc=5000",
        "--discount-max-queued=100",
        "--discount-fallback-concurrency=2",
        "--discount-fallback-max-in-flight=10",
    ]);
    assert_eq!(
        tuned.coalescing,
        CoalesceSettings {
            rpcs_in_flight: 3,
            max_requests_per_rpc: 16,
            max_products_per_rpc: 5000,
            max_queued: 100,
        }
    );
    assert_eq!(
        tuned.fallback,
        FallbackSettings {
            per_request: 2,
            max_in_flight: 10,
        }
    );
}

#[test]
fn http_limits_have_defaults_flags_and_variables() {
    let limits = |args: &[&str]| {
        let args = std::iter::once("catalog-service").chain(args.iter().copied());
        Cli::try_parse_from(args).unwrap().http_limits()
    };
    assert_eq!(limits(&[]), HttpLimits::default());
    assert_eq!(
        HttpLimits::default(),
        HttpLimits {
            max_connections: 1000,
            max_unproven: 500,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(90),
            max_concurrent_requests: 512,
        }
    );
    let tuned = HttpLimits {
        max_connections: 7,
        max_unproven: 5,
        header_timeout: Duration::from_millis(1500),
        idle_timeout: Duration::from_millis(2500),
        max_concurrent_requests: 3,
    };
    let flags = limits(&[
        "--http-max-connections=7",
        "--http-max-unproven-connections=5",
        "--http-header-timeout-ms=1500",
        "--http-idle-timeout-ms=2500",
        "--http-max-concurrent-requests=3",
    ]);
    assert_eq!(flags, tuned);
    assert_eq!(
        tuned.admission(),
        admission::Limits {
            max_connections: 7,
            max_unproven: 5,
            unproven_timeout: Duration::from_millis(1500),
        }
    );
    // Each flag's variable, as a container sets them.
    let command = Cli::command();
    let vars: std::collections::HashMap<&str, &str> = command
        .get_arguments()
        .filter_map(|arg| Some((arg.get_id().as_str(), arg.get_env()?.to_str()?)))
        .collect();
    assert_eq!(vars["ops_listen"], "CATALOG_OPS_LISTEN");
    assert_eq!(vars["max_connections"], "CATALOG_HTTP_MAX_CONNECTIONS");
    assert_eq!(
        vars["max_unproven_connections"],
        "CATALOG_HTTP_MAX_UNPROVEN_CONNECTIONS"
    );
    assert_eq!(
        vars["http_header_timeout_ms"],
        "CATALOG_HTTP_HEADER_TIMEOUT_MS"
    );
    assert_eq!(vars["http_idle_timeout_ms"], "CATALOG_HTTP_IDLE_TIMEOUT_MS");
    assert_eq!(
        vars["http_max_concurrent_requests"],
        "CATALOG_HTTP_MAX_CONCURRENT_REQUESTS"
    );
}

#[test]
fn missing_files_name_the_path_and_the_fix() {
    let cli = Cli::try_parse_from(["catalog-service", "--certs-dir", "/nonexistent"]).unwrap();
    let err = cli.settings().unwrap_err().to_string();
    assert!(err.contains("/nonexistent/ca.pem"), "{err}");
    assert!(err.contains("gen-certs"), "{err}");
}

#[test]
fn without_files_the_data_is_the_embedded_sample_which_never_changes() {
    let cli = Cli::try_parse_from(["catalog-service"]).unwrap();
    assert!(matches!(cli.data_source().unwrap(), DataSource::Fixed(_)));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("p.json");
    std::fs::write(&file, "[]").unwrap();
    let cli =
        Cli::try_parse_from(["catalog-service", "--products", file.to_str().unwrap()]).unwrap();
    assert!(matches!(cli.data_source().unwrap(), DataSource::Files(..)));
}

#[test]
fn serving_refuses_data_files_beside_a_database() {
    let cli = Cli::try_parse_from([
        "catalog-service",
        "--products",
        "p.json",
        "--database-url",
        "postgresql://db.example/shop?sslmode=verify-full",
    ])
    .unwrap();
    let err = cli.data_source().unwrap_err().to_string();
    assert!(err.contains("give one or the other"), "{err}");
}

#[test]
fn database_limits_have_defaults_and_flags() {
    let cli = Cli::try_parse_from(["catalog-service"]).unwrap();
    assert_eq!(
        (
            cli.database_health_interval_ms,
            cli.database_max_pending_changes,
            cli.database_max_backoff_ms,
            cli.database_timeout_secs,
            cli.database_max_connection_age_secs,
        ),
        (1000, 100_000, 10_000, 30, 1800)
    );
    for args in [
        &["--database-health-interval-ms", "10"][..],
        &["--database-max-pending-changes", "0"],
        &["--database-max-backoff-ms", "5"],
        &["--database-timeout-secs", "0"],
        &["--database-max-connection-age-secs", "forever"],
    ] {
        let err =
            Cli::try_parse_from(std::iter::once("catalog-service").chain(args.iter().copied()))
                .unwrap_err()
                .to_string();
        assert!(err.contains(args[0]), "{err}");
    }
}
