//! What a throwaway cluster's folder holds and how its server is configured: the folder's
//! layout, the TLS files copied in for the server user, `pg_hba.conf` (the superuser over the
//! socket, each certificate role over TLS from loopback, nothing else) and the settings
//! appended to `postgresql.conf`.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::Error;
use crate::user::ServerUser;

/// The server certificate and key, and the CA that client certificates must chain to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tls {
    /// The server's certificate (PEM, leaf first, then any intermediates).
    pub cert: PathBuf,
    /// The server's private key (PEM).
    pub key: PathBuf,
    /// The CA certificates client certificates are checked against (PEM).
    pub ca: PathBuf,
}

impl Tls {
    /// The files a `cargo xtask gen-certs` folder holds for PostgreSQL: `postgres.pem`,
    /// `postgres.key`, and `ca.pem` for the client certificates.
    pub fn in_folder(dir: &Path) -> Self {
        let [cert, key, ca] = ["postgres.pem", "postgres.key", "ca.pem"].map(|f| dir.join(f));
        Self { cert, key, ca }
    }
}

/// Where everything sits in a cluster's temporary folder.
#[derive(Debug, Clone)]
pub struct Layout {
    /// The temporary folder itself (owner-only, owned by the server user).
    pub root: PathBuf,
    /// The data directory `initdb` makes.
    pub data: PathBuf,
    /// The Unix socket's folder.
    pub socket_dir: PathBuf,
    /// The server log (`pg_ctl -l`).
    pub log: PathBuf,
    /// The copies of the TLS files the server reads.
    pub tls: Tls,
}

impl Layout {
    /// The layout inside `root`.
    pub fn new(root: &Path) -> Self {
        let tls = root.join("tls");
        Self {
            root: root.to_path_buf(),
            data: root.join("data"),
            socket_dir: root.join("socket"),
            log: root.join("server.log"),
            tls: Tls {
                cert: tls.join("server.crt"),
                key: tls.join("server.key"),
                ca: tls.join("client-ca.crt"),
            },
        }
    }

    /// Makes the socket and TLS folders and copies the TLS files in, every one owned by the
    /// server user and owner-only (PostgreSQL refuses a key that others can read).
    pub fn prepare(&self, from: &Tls, user: &ServerUser) -> Result<(), Error> {
        let tls_dir = self.tls.key.parent().unwrap_or(&self.root);
        for dir in [&self.socket_dir, tls_dir] {
            fs::create_dir(dir).map_err(Error::io(format!("cannot create {}", dir.display())))?;
            set_mode(dir, 0o700)?;
            user.give(dir)?;
        }
        for (source, copy) in [
            (&from.cert, &self.tls.cert),
            (&from.key, &self.tls.key),
            (&from.ca, &self.tls.ca),
        ] {
            let bytes =
                fs::read(source).map_err(Error::io(format!("cannot read {}", source.display())))?;
            write_private(copy, &bytes)?;
            user.give(copy)?;
        }
        Ok(())
    }
}

/// Refuses a database or role name that would need quoting anywhere (SQL, `pg_hba.conf`,
/// URLs): 1 to 63 lowercase ASCII letters, digits and `_`, not starting with a digit.
pub fn check_name(what: &'static str, name: &str) -> Result<(), Error> {
    let valid = (1..=63).contains(&name.len())
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if valid {
        Ok(())
    } else {
        Err(Error::Name {
            what,
            name: name.to_owned(),
        })
    }
}

/// `pg_hba.conf`: the superuser (and anyone) over the Unix socket, whose folder only the server
/// user can enter; each certificate role, to `databases` only, over TLS from loopback, by
/// certificate (`cert` checks the client certificate against `ssl_ca_file` and maps its common
/// name to the role). Nothing else over TCP: a connection no line matches is refused.
pub fn pg_hba(databases: &[String], cert_roles: &[String]) -> String {
    let database = databases.join(",");
    let mut hba = String::from(
        "# throwaway-postgres: the socket for the superuser, TLS client certificates over TCP.\n\
         # TYPE  DATABASE  USER  ADDRESS  METHOD\n\
         local all all trust\n",
    );
    for role in cert_roles {
        for address in ["127.0.0.1/32", "::1/128"] {
            hba.push_str(&format!("hostssl {database} {role} {address} cert\n"));
        }
    }
    hba
}

/// The settings appended to `postgresql.conf` (later lines win): listening on `listen` at
/// `port`, TLS 1.3 only with the copied files, no durability (the cluster is thrown away), and
/// connections logged.
pub fn settings(layout: &Layout, port: u16, listen: &[&str]) -> String {
    let quoted = |path: &Path| format!("'{}'", path.display().to_string().replace('\'', "''"));
    [
        "\n# throwaway-postgres: a cluster for tests, thrown away after them.".to_owned(),
        format!("listen_addresses = '{}'", listen.join(",")),
        format!("port = {port}"),
        format!("unix_socket_directories = {}", quoted(&layout.socket_dir)),
        "unix_socket_permissions = 0700".to_owned(),
        "ssl = on".to_owned(),
        format!("ssl_cert_file = {}", quoted(&layout.tls.cert)),
        format!("ssl_key_file = {}", quoted(&layout.tls.key)),
        format!("ssl_ca_file = {}", quoted(&layout.tls.ca)),
        "ssl_min_protocol_version = 'TLSv1.3'".to_owned(),
        "fsync = off".to_owned(),
        "synchronous_commit = off".to_owned(),
        "full_page_writes = off".to_owned(),
        "logging_collector = off".to_owned(),
        "log_connections = on".to_owned(),
        String::new(),
    ]
    .join("\n")
}

/// Writes `bytes` to a new file at `path`, readable by its owner only from the start.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    use std::os::unix::fs::OpenOptionsExt;
    let what = || format!("cannot write {}", path.display());
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(Error::io(what()))?;
    file.write_all(bytes).map_err(Error::io(what()))
}

fn set_mode(path: &Path, mode: u32) -> Result<(), Error> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(Error::io(format!("cannot chmod {}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_would_need_quoting_are_refused() {
        for good in ["shop", "catalog", "a_1", "_x", &"a".repeat(63)] {
            check_name("role", good).unwrap();
        }
        for bad in ["", "Shop", "1a", "a-b", "a b", "a\"b", "é", &"a".repeat(64)] {
            let err = check_name("role", bad).unwrap_err();
            assert!(matches!(err, Error::Name { what: "role", .. }), "{bad:?}");
        }
    }

    #[test]
    fn hba_allows_the_socket_and_certificate_roles_to_the_database_only() {
        let hba = pg_hba(&["shop".to_owned()], &["catalog".to_owned()]);
        let rules: Vec<_> = hba.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            rules,
            [
                "local all all trust",
                "hostssl shop catalog 127.0.0.1/32 cert",
                "hostssl shop catalog ::1/128 cert",
            ]
        );
    }

    #[test]
    fn settings_quote_paths_and_require_tls_1_3() {
        let layout = Layout::new(Path::new("/tmp/it's"));
        let conf = settings(&layout, 23456, &["127.0.0.1", "::1"]);
        assert!(
            conf.contains("listen_addresses = '127.0.0.1,::1'\n"),
            "{conf}"
        );
        assert!(conf.contains("port = 23456\n"), "{conf}");
        assert!(
            conf.contains("ssl_min_protocol_version = 'TLSv1.3'\n"),
            "{conf}"
        );
        assert!(
            conf.contains("unix_socket_directories = '/tmp/it''s/socket'\n"),
            "{conf}"
        );
    }
}
