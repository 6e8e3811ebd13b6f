//! The subcommands on Catalog's command line: `probe` as before, `migrate` and `import` with
//! their own flags and the serving flags they share, and `--database-url` checked when serving.

use clap::{CommandFactory, Parser};

use super::*;
use crate::config::{Cli, ConfigError};

fn cli(args: &[&str]) -> Result<Cli, clap::Error> {
    Cli::try_parse_from(std::iter::once("catalog-service").chain(args.iter().copied()))
}

const URL: &str = "postgresql://db/shop?sslmode=verify-full";

#[test]
fn probe_still_works() {
    let parsed = cli(&["probe", "http://127.0.0.1:9465/healthz"]).unwrap();
    let Some(Command::Shared(service_runtime::probe::Command::Probe { url })) = parsed.command
    else {
        panic!("{:?}", parsed.command);
    };
    assert_eq!(url, "http://127.0.0.1:9465/healthz");
}

#[test]
fn migrate_takes_the_url_and_the_role_defaulting_to_catalog() {
    let parsed = cli(&["migrate", "--database-url", URL]).unwrap();
    let Some(Command::Migrate(args)) = parsed.command else {
        panic!("{:?}", parsed.command);
    };
    assert_eq!(args.catalog_role.as_str(), "catalog");
    assert_eq!(parsed.database_url.as_deref(), Some(URL));

    // The shared flag may also come before the subcommand.
    let parsed = cli(&["--database-url", URL, "migrate", "--catalog-role", "reader"]).unwrap();
    let Some(Command::Migrate(args)) = parsed.command else {
        panic!("{:?}", parsed.command);
    };
    assert_eq!(args.catalog_role.as_str(), "reader");
    assert_eq!(parsed.database_url.as_deref(), Some(URL));
}

#[test]
fn a_bad_role_name_is_refused_naming_the_flag() {
    for bad in ["pg_read_all_data", "a;b", ""] {
        let err = cli(&["migrate", "--catalog-role", bad])
            .unwrap_err()
            .to_string();
        assert!(err.contains("--catalog-role"), "{err}");
    }
}

#[test]
fn import_shares_the_serving_data_flags_and_has_a_chunk_size() {
    let parsed = cli(&[
        "import",
        "--database-url",
        URL,
        "--products",
        "p.json",
        "--customers",
        "c.json",
    ])
    .unwrap();
    let Some(Command::Import(args)) = &parsed.command else {
        panic!("{:?}", parsed.command);
    };
    assert_eq!(args.chunk_rows, 10_000);
    assert_eq!(
        parsed.products.as_deref(),
        Some(std::path::Path::new("p.json"))
    );
    assert_eq!(
        parsed.customers.as_deref(),
        Some(std::path::Path::new("c.json"))
    );
    let parsed = cli(&["import", "--chunk-rows", "500"]).unwrap();
    let Some(Command::Import(args)) = parsed.command else {
        panic!("{:?}", parsed.command);
    };
    assert_eq!(args.chunk_rows, 500);
    for bad in ["0", "100001", "many"] {
        let err = cli(&["import", "--chunk-rows", bad])
            .unwrap_err()
            .to_string();
        assert!(err.contains("--chunk-rows"), "{err}");
    }
}

#[test]
fn each_new_flag_has_its_variable() {
    let command = Cli::command();
    let env = |command: &clap::Command, id: &str| {
        command
            .get_arguments()
            .find(|arg| arg.get_id() == id)
            .and_then(|arg| arg.get_env())
            .and_then(|env| env.to_str())
            .map(str::to_owned)
    };
    assert_eq!(
        env(&command, "database_url").as_deref(),
        Some("DATABASE_URL")
    );
    let migrate = command.find_subcommand("migrate").unwrap();
    assert_eq!(
        env(migrate, "catalog_role").as_deref(),
        Some("CATALOG_DATABASE_ROLE")
    );
    let import = command.find_subcommand("import").unwrap();
    assert_eq!(
        env(import, "chunk_rows").as_deref(),
        Some("CATALOG_IMPORT_CHUNK_ROWS")
    );
}

#[test]
fn the_url_variable_value_is_never_shown_in_help() {
    let command = Cli::command();
    let arg = command
        .get_arguments()
        .find(|arg| arg.get_id() == "database_url")
        .unwrap();
    assert!(arg.is_hide_env_values_set());
}

#[test]
fn serving_checks_the_url_and_defaults_the_role_to_catalog() {
    let parsed = cli(&["--database-url", "postgresql://db/shop?sslmode=require"]).unwrap();
    let err = parsed.settings().unwrap_err();
    assert!(matches!(err, ConfigError::Database(_)), "{err}");
    assert!(
        err.to_string()
            .starts_with("--database-url has sslmode=require"),
        "{err}"
    );

    let parsed = cli(&["--database-url", URL]).unwrap();
    let url = parsed.database_url().unwrap().unwrap();
    assert_eq!(url.config().get_user(), Some("catalog"));
    assert!(cli(&[]).unwrap().database_url().unwrap().is_none());
}

#[tokio::test]
async fn migrate_without_a_url_says_which_flag_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let settings =
        mtls::ReloadSettings::from_flags(mtls::TlsFiles::in_dir(dir.path(), "catalog"), 10, 12);
    let args = MigrateArgs {
        catalog_role: "catalog".parse().unwrap(),
    };
    let err = migrate(None, settings, args).await.unwrap_err().to_string();
    assert!(err.contains("--database-url"), "{err}");
}

#[tokio::test]
async fn import_checks_the_files_before_connecting() {
    let dir = tempfile::tempdir().unwrap();
    let products = dir.path().join("products.json");
    std::fs::write(
        &products,
        r#"[{"id": 1, "slug": "a", "description": "", "price_in_cents": 1},
            {"id": 2, "slug": "a", "description": "", "price_in_cents": 2}]"#,
    )
    .unwrap();
    let settings =
        mtls::ReloadSettings::from_flags(mtls::TlsFiles::in_dir(dir.path(), "catalog"), 10, 12);
    let files = DataFiles {
        products: Some(products),
        customers: None,
    };
    // A database that does not exist: the bad file must be named before any connection.
    let url = "postgresql:///shop?host=/nonexistent";
    let err = import(Some(url), settings, files, ImportArgs { chunk_rows: 10 })
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("products.json: record 2: duplicate slug \"a\""),
        "{err}"
    );
    assert!(err.ends_with("nothing was imported"), "{err}");
}
