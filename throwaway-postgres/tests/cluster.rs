//! A throwaway cluster's life: it starts (as the `postgres` user when the tests run as root),
//! `psql` runs SQL as the superuser over the socket, a restart keeps the port and the data, and
//! dropping it, or ending the process without dropping it, stops the server and removes the
//! folder.
#![allow(clippy::unwrap_used)]

mod common;

use std::os::unix::fs::MetadataExt;
use std::process::Command;

use throwaway_postgres::{Error, SUPERUSER};

#[test]
fn a_cluster_starts_and_psql_runs_sql_as_the_superuser_over_the_socket() {
    let certs = common::certs();
    let cluster = common::start(certs.path());
    let port = cluster.port();
    assert!(port >= 1024, "{port}");
    assert!(
        cluster
            .socket_dir()
            .join(format!(".s.PGSQL.{port}"))
            .exists()
    );
    assert_eq!(
        cluster.owner_url(),
        format!(
            "postgresql:///shop?host={}&port={port}&user=postgres",
            cluster.socket_dir().display()
        )
    );
    let who = cluster
        .psql("SELECT current_user, current_database(), inet_server_port() IS NULL")
        .unwrap();
    assert_eq!(who, format!("{SUPERUSER}|shop|t\n"));
    // Several statements, each on its own (CREATE DATABASE refuses a transaction block).
    let out = cluster
        .psql("CREATE DATABASE other; SELECT 1; SELECT 'two';")
        .unwrap();
    assert_eq!(out, "1\ntwo\n");
    let err = cluster.psql("SELEC 1").unwrap_err().to_string();
    assert!(err.contains("syntax error"), "{err}");
    // The superuser owns the database; the certificate role exists and may log in.
    let owners = cluster
        .psql(
            "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'shop';
             SELECT rolcanlogin, rolsuper FROM pg_roles WHERE rolname = 'catalog';",
        )
        .unwrap();
    assert_eq!(owners, "postgres\nt|f\n");
}

#[test]
fn the_server_runs_as_the_postgres_user_when_the_caller_is_root_in_a_folder_of_its_own() {
    let certs = common::certs();
    let cluster = common::start(certs.path());
    let status = std::fs::read_to_string(format!("/proc/{}/status", cluster.pid().unwrap()));
    let uid_line = |status: &str| {
        let line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
        line.split_whitespace().nth(2).unwrap().to_owned() // the effective uid
    };
    let server_uid = uid_line(&status.unwrap());
    let own_uid = uid_line(&std::fs::read_to_string("/proc/self/status").unwrap());
    if own_uid == "0" {
        let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
        let postgres = passwd.lines().find(|l| l.starts_with("postgres:")).unwrap();
        assert_eq!(server_uid, postgres.split(':').nth(2).unwrap());
    } else {
        assert_eq!(server_uid, own_uid);
    }
    assert!(cluster.log().contains("database system is ready"));
    // The folder, and the key copied in, are the server user's and owner-only.
    for (path, mode) in [
        (cluster.dir().to_path_buf(), 0o700),
        (cluster.socket_dir().to_path_buf(), 0o700),
        (cluster.dir().join("tls/server.key"), 0o600),
    ] {
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.uid().to_string(), server_uid, "{}", path.display());
        assert_eq!(meta.mode() & 0o777, mode, "{}", path.display());
    }
}

#[test]
fn a_restart_keeps_the_port_and_the_data() {
    let certs = common::certs();
    let mut cluster = common::start(certs.path());
    let port = cluster.port();
    cluster
        .psql("CREATE TABLE kept (n int); INSERT INTO kept VALUES (42);")
        .unwrap();
    cluster.restart().unwrap();
    assert_eq!(cluster.port(), port);
    assert_eq!(cluster.psql("SELECT n FROM kept").unwrap(), "42\n");
    assert_eq!(cluster.psql("SHOW port").unwrap(), format!("{port}\n"));

    cluster.stop().unwrap();
    assert!(matches!(cluster.psql("SELECT 1"), Err(Error::Stopped)));
    assert_eq!(cluster.pid(), None);
    cluster.restart().unwrap();
    assert_eq!(cluster.port(), port);
    assert_eq!(cluster.psql("SELECT n FROM kept").unwrap(), "42\n");
}

#[test]
fn dropping_the_cluster_stops_the_server_and_removes_its_folder() {
    let certs = common::certs();
    let cluster = common::start(certs.path());
    let dir = cluster.dir().to_path_buf();
    let pid = cluster.pid().unwrap();
    assert!(dir.join("data/PG_VERSION").is_file());
    assert!(!common::has_ended(pid));
    drop(cluster);
    assert!(!dir.exists(), "{} is still there", dir.display());
    common::wait_until("the server process ends", || common::has_ended(pid));
}

/// Environment variable that makes [`child_exits_without_dropping_its_cluster`] run: the
/// certificate folder it uses.
const CHILD_CERTS: &str = "THROWAWAY_POSTGRES_TEST_CHILD_CERTS";

/// Run by the next test in a process of its own: starts a cluster, prints its folder and server
/// process id, and exits at once, dropping nothing. Does nothing when run on its own.
#[test]
#[ignore = "run by a_process_that_ends_without_dropping_its_cluster_leaves_nothing_behind"]
fn child_exits_without_dropping_its_cluster() {
    let Some(certs) = std::env::var_os(CHILD_CERTS) else {
        return;
    };
    let cluster = common::start(std::path::Path::new(&certs));
    println!("dir={}", cluster.dir().display());
    println!("pid={}", cluster.pid().unwrap());
    std::process::exit(0);
}

#[test]
fn a_process_that_ends_without_dropping_its_cluster_leaves_nothing_behind() {
    let certs = common::certs();
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "--nocapture"])
        .arg("child_exits_without_dropping_its_cluster")
        .env(CHILD_CERTS, certs.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let value = |key: &str| {
        let line = stdout.lines().find_map(|l| l.strip_prefix(key));
        line.unwrap_or_else(|| panic!("no {key} in {stdout}"))
            .to_owned()
    };
    let dir = std::path::PathBuf::from(value("dir="));
    let pid: u32 = value("pid=").parse().unwrap();
    common::wait_until("the guardian stops the server", || common::has_ended(pid));
    common::wait_until("the guardian removes the folder", || !dir.exists());
}

#[test]
fn another_database_is_open_to_the_certificate_roles_at_once() {
    let certs = common::certs();
    let mut cluster = common::start(certs.path());
    cluster.create_database("second").unwrap();
    let url = common::client_url(&cluster, certs.path(), "catalog", Some("catalog"), "").replacen(
        &format!("/{}?", common::DATABASE),
        "/second?",
        1,
    );
    assert_eq!(
        cluster.psql_at(&url, "SELECT current_database();").unwrap(),
        "second\n"
    );
}

#[test]
fn a_session_answers_each_statement_on_one_connection_and_stops_at_the_first_error() {
    let certs = common::certs();
    let cluster = common::start(certs.path());
    let mut session = cluster.session().unwrap();
    let backend = session.run("SELECT pg_backend_pid()").unwrap();
    session
        .run("CREATE TABLE t (id integer PRIMARY KEY, n integer)")
        .unwrap();
    session.run("INSERT INTO t VALUES (1, 10);").unwrap();
    // Committed when answered: another connection sees it.
    assert_eq!(cluster.psql("SELECT n FROM t").unwrap(), "10\n");
    let out = session
        .run("UPDATE t SET n = n + 1; SELECT n FROM t; SELECT 'two'")
        .unwrap();
    assert_eq!(out, "11\ntwo\n");
    assert_eq!(
        session.run("SELECT pg_backend_pid()").unwrap(),
        backend,
        "the same connection"
    );
    let err = session.run("SELEC 1").unwrap_err().to_string();
    assert!(
        err.starts_with("psql session failed") && err.contains("syntax error"),
        "{err}"
    );
    assert!(matches!(session.run("SELECT 1"), Err(Error::Stopped)));
}
