//! A running throwaway cluster: made with `initdb` in a temporary folder, started with
//! `pg_ctl` on a port it managed to bind itself, given its database and certificate roles,
//! queried with the installation's `psql`, and stopped and removed when dropped.

use std::hash::{BuildHasher, RandomState};
use std::io::Write;
use std::ops::Range;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Stdio;
use std::time::SystemTime;

use tempfile::TempDir;

use crate::binaries::Binaries;
use crate::config::{self, Layout, Tls};
use crate::error::Error;
use crate::guardian::Guardian;
use crate::user::{self, ServerUser};

/// The superuser `initdb` makes; it connects over the Unix socket only.
pub const SUPERUSER: &str = "postgres";

/// The ports a cluster picks from by default: below Linux's default ephemeral range
/// (32768-60999), where port-0 binds and outgoing connections take theirs, so a random pick
/// rarely meets one of them. PostgreSQL cannot listen on port 0, so a taken pick is simply
/// tried again with another.
pub const DEFAULT_PORTS: Range<u16> = 20000..32000;

/// How many random ports a start tries before it gives up.
const PORT_ATTEMPTS: usize = 8;

/// How long `pg_ctl` waits for the server to accept connections, in seconds: a bound on a
/// stall (a start takes well under a second), not a wait.
const START_TIMEOUT_SECS: &str = "120";

/// What a cluster is started with.
#[derive(Debug, Clone)]
pub struct Options {
    /// The server's certificate and key, and the CA for client certificates.
    pub tls: Tls,
    /// The database to create, owned by the superuser.
    pub database: String,
    /// Roles created with LOGIN and allowed in over TCP, to `database` only, by client
    /// certificate only (its common name must be the role).
    pub cert_roles: Vec<String>,
    /// The ports to pick from at random ([`DEFAULT_PORTS`]).
    pub ports: Range<u16>,
}

impl Options {
    /// A cluster with `database` and no certificate role yet.
    pub fn new(tls: Tls, database: impl Into<String>) -> Self {
        Self {
            tls,
            database: database.into(),
            cert_roles: Vec::new(),
            ports: DEFAULT_PORTS,
        }
    }

    /// Adds a certificate role.
    pub fn cert_role(mut self, role: impl Into<String>) -> Self {
        self.cert_roles.push(role.into());
        self
    }
}

/// A throwaway PostgreSQL cluster. Dropping it stops the server at once and removes its folder;
/// should the process end without dropping it, its guardian does the same.
#[derive(Debug)]
pub struct Cluster {
    binaries: Binaries,
    user: ServerUser,
    layout: Layout,
    database: String,
    /// Every database made so far (the first is `database`), each open to `cert_roles`.
    databases: Vec<String>,
    /// The roles allowed in over TCP by certificate.
    cert_roles: Vec<String>,
    /// The addresses it listens on: 127.0.0.1, and ::1 where this machine has it.
    listen: Vec<&'static str>,
    /// `postgresql.conf` as `initdb` wrote it; the cluster's settings follow it.
    initdb_conf: String,
    port: u16,
    running: bool,
    // Dropped in this order, after `Drop::drop` has stopped the server.
    _guardian: Guardian,
    _dir: TempDir,
}

impl Cluster {
    /// Makes, starts and prepares a cluster: `initdb` in a new temporary folder, TLS and
    /// `pg_hba.conf` as [`config`] says, a free port, `opts.database` and `opts.cert_roles`.
    pub fn start(opts: Options) -> Result<Self, Error> {
        config::check_name("database", &opts.database)?;
        for role in &opts.cert_roles {
            config::check_name("role", role)?;
        }
        if opts.ports.is_empty() {
            return Err(Error::Start {
                reason: format!("no port to pick from in {:?}", opts.ports),
                log: String::new(),
            });
        }
        let binaries = Binaries::find()?;
        let user = ServerUser::for_this_process()?;
        let dir = tempfile::Builder::new()
            .prefix("throwaway-postgres-")
            .permissions(std::fs::Permissions::from_mode(0o700))
            .tempdir()
            .map_err(Error::io("cannot create a temporary folder"))?;
        user.give(dir.path())?;
        let layout = Layout::new(dir.path());
        let guardian = Guardian::spawn(&user, &binaries.pg_ctl(), &layout.data, &layout.root)?;
        // From here on, an error drops the half-made cluster, which cleans up after itself.
        let mut cluster = Self {
            binaries,
            user,
            layout,
            databases: vec![opts.database.clone()],
            database: opts.database,
            cert_roles: opts.cert_roles.clone(),
            listen: listen_addresses(),
            initdb_conf: String::new(),
            port: 0,
            running: false,
            _guardian: guardian,
            _dir: dir,
        };
        cluster.layout.prepare(&opts.tls, &cluster.user)?;
        cluster.initdb()?;
        write(
            &cluster.layout.data.join("pg_hba.conf"),
            &config::pg_hba(&cluster.databases, &opts.cert_roles),
        )?;
        cluster.start_on_a_free_port(&opts.ports)?;
        let mut sql = format!("CREATE DATABASE {};\n", cluster.database);
        for role in &opts.cert_roles {
            sql.push_str(&format!("CREATE ROLE {role} LOGIN;\n"));
        }
        cluster.psql_at(&cluster.socket_url(SUPERUSER), &sql)?;
        Ok(cluster)
    }

    /// The TCP port, the same across restarts.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The folder holding the Unix socket (`.s.PGSQL.<port>`), which only the server user (and
    /// root) can enter.
    pub fn socket_dir(&self) -> &Path {
        &self.layout.socket_dir
    }

    /// The cluster's temporary folder: data, socket, TLS copies and log.
    pub fn dir(&self) -> &Path {
        &self.layout.root
    }

    /// The installation's `psql`.
    pub fn psql_path(&self) -> &Path {
        &self.binaries.psql
    }

    /// The database the cluster was started with.
    pub fn database(&self) -> &str {
        &self.database
    }

    /// A libpq URL for the superuser over the Unix socket, to the database.
    pub fn owner_url(&self) -> String {
        self.socket_url(&self.database)
    }

    /// A libpq URL for `user` over TLS to `localhost`, checking the server's certificate and
    /// host name (`sslmode=verify-full`); the client adds its certificate, key and CA.
    pub fn tls_url(&self, user: &str) -> String {
        self.tls_url_to(&self.database, user)
    }

    /// [`Cluster::owner_url`], to `database`.
    pub fn owner_url_to(&self, database: &str) -> String {
        self.socket_url(database)
    }

    /// [`Cluster::tls_url`], to `database`.
    pub fn tls_url_to(&self, database: &str, user: &str) -> String {
        let port = self.port;
        format!("postgresql://localhost:{port}/{database}?user={user}&sslmode=verify-full")
    }

    /// Makes another database, owned by the superuser and open to the certificate roles like
    /// the first (`pg_hba.conf` rewritten and reloaded): tests sharing one cluster each get a
    /// database of their own.
    pub fn create_database(&mut self, database: &str) -> Result<(), Error> {
        config::check_name("database", database)?;
        self.psql_at(
            &self.socket_url(SUPERUSER),
            &format!("CREATE DATABASE {database};\n"),
        )?;
        self.databases.push(database.to_owned());
        write(
            &self.layout.data.join("pg_hba.conf"),
            &config::pg_hba(&self.databases, &self.cert_roles),
        )?;
        self.reload_config()
    }

    /// Makes the server re-read its configuration files and waits until it has: a session
    /// started after this sees the new `pg_hba.conf` (the reload itself is asynchronous).
    fn reload_config(&self) -> Result<(), Error> {
        let url = self.socket_url(SUPERUSER);
        let asked = self.psql_at(&url, "SELECT now(); SELECT pg_reload_conf();\n")?;
        let asked = asked.lines().next().unwrap_or_default().to_owned();
        let check = format!("SELECT pg_conf_load_time() >= '{asked}'::timestamptz;\n");
        let give_up = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while self.psql_at(&url, &check)?.trim() != "t" {
            if std::time::Instant::now() > give_up {
                return Err(Error::Start {
                    reason: "the server did not reload its configuration within 30 s".into(),
                    log: self.log(),
                });
            }
            // Paces the polling of a condition; not a wait for it.
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        Ok(())
    }

    /// Runs `sql` (one or more statements, or psql commands) as the superuser over the socket
    /// and returns what it printed: unaligned, tuples only (`-At`), so `SHOW ssl` gives `on\n`.
    pub fn psql(&self, sql: &str) -> Result<String, Error> {
        self.psql_at(&self.owner_url(), sql)
    }

    /// As [`Cluster::psql`], connecting to `url` (any libpq URL or `key=value` string) as the
    /// calling user; for a client certificate, libpq wants its key owner-only.
    pub fn psql_at(&self, url: &str, sql: &str) -> Result<String, Error> {
        if !self.running {
            return Err(Error::Stopped);
        }
        let mut child = user::clean_command(&self.binaries.psql)
            // No psqlrc, never a password prompt, quiet, unaligned tuples only, stop at the
            // first error, the SQL from stdin.
            .args([
                "-X",
                "-w",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-f",
                "-",
                "-d",
            ])
            .arg(url)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(Error::io("cannot run psql"))?;
        let stdin = child.stdin.take();
        // Written from another thread: psql may fill its output pipe before it reads all input.
        let output = std::thread::scope(|scope| {
            scope.spawn(move || stdin.map(|mut stdin| stdin.write_all(sql.as_bytes())));
            child.wait_with_output()
        })
        .map_err(Error::io("cannot run psql"))?;
        let output = user::check("psql", output)?;
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Stops the server (`pg_ctl stop -m fast`: sessions are ended, data is kept).
    pub fn stop(&mut self) -> Result<(), Error> {
        if self.running {
            self.pg_ctl_stop("fast")?;
            self.running = false;
        }
        Ok(())
    }

    /// Stops the server if it runs and starts it again on the same port, with the same data.
    pub fn restart(&mut self) -> Result<(), Error> {
        self.stop()?;
        if self.start_on(self.port)? {
            return Ok(());
        }
        Err(Error::Start {
            reason: format!("port {} was taken while the server was stopped", self.port),
            log: self.log(),
        })
    }

    /// The server's log, for diagnostics (empty if it cannot be read).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.layout.log).unwrap_or_default()
    }

    /// The server's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        let pid_file = std::fs::read_to_string(self.layout.data.join("postmaster.pid")).ok()?;
        pid_file.lines().next()?.trim().parse().ok()
    }

    fn socket_url(&self, database: &str) -> String {
        let host = percent_encode(&self.layout.socket_dir.display().to_string());
        let port = self.port;
        format!("postgresql:///{database}?host={host}&port={port}&user={SUPERUSER}")
    }

    fn initdb(&mut self) -> Result<(), Error> {
        let mut initdb = self.user.command(self.binaries.initdb(), &self.layout.root);
        initdb.arg("-D").arg(&self.layout.data).args([
            "-U",
            SUPERUSER,
            "-E",
            "UTF8",
            "--locale=C",
            "--auth-local=trust",
            "--auth-host=reject",
            "--no-sync",
        ]);
        let what = format!(
            "initdb in {} (it runs as the server user, so every folder above it must let that \
             user through; TMPDIR chooses where it goes)",
            self.layout.root.display()
        );
        user::run(&what, &mut initdb)?;
        let conf = self.layout.data.join("postgresql.conf");
        self.initdb_conf = std::fs::read_to_string(&conf)
            .map_err(Error::io(format!("cannot read {}", conf.display())))?;
        Ok(())
    }

    fn start_on_a_free_port(&mut self, ports: &Range<u16>) -> Result<(), Error> {
        let mut taken = Vec::new();
        for _ in 0..PORT_ATTEMPTS {
            let port = random_port(ports);
            if self.start_on(port)? {
                return Ok(());
            }
            taken.push(port);
        }
        Err(Error::Start {
            reason: format!("every port tried was taken: {taken:?}"),
            log: self.log(),
        })
    }

    /// Starts the server on `port`: `Ok(false)` if another program holds that port on one of
    /// the addresses (the server is then stopped again), `Ok(true)` once it accepts connections
    /// on every address.
    fn start_on(&mut self, port: u16) -> Result<bool, Error> {
        let settings = config::settings(&self.layout, port, &self.listen);
        write(
            &self.layout.data.join("postgresql.conf"),
            &format!("{}{settings}", self.initdb_conf),
        )?;
        let log_start = std::fs::metadata(&self.layout.log).map_or(0, |m| m.len());
        let output = self
            .user
            .command(self.binaries.pg_ctl(), &self.layout.root)
            .arg("start")
            .arg("-D")
            .arg(&self.layout.data)
            .arg("-l")
            .arg(&self.layout.log)
            .args(["-w", "-t", START_TIMEOUT_SECS])
            .output()
            .map_err(Error::io("cannot run pg_ctl"))?;
        let log = self.log_since(log_start);
        let port_taken = log.contains("Address already in use");
        if let Err(err) = user::check("pg_ctl start", output) {
            if port_taken {
                return Ok(false);
            }
            return Err(Error::Start {
                reason: err.to_string(),
                log,
            });
        }
        self.running = true;
        self.port = port;
        let missing: Vec<_> = self
            .listen
            .iter()
            .filter(|address| !log.contains(&listening_line(address, port)))
            .collect();
        if missing.is_empty() {
            return Ok(true);
        }
        // It started on some addresses only: where the others are not ours, try another port.
        self.pg_ctl_stop("immediate")?;
        self.running = false;
        if port_taken {
            return Ok(false);
        }
        Err(Error::Start {
            reason: format!("it did not listen on {missing:?}"),
            log,
        })
    }

    fn pg_ctl_stop(&self, mode: &str) -> Result<(), Error> {
        let mut pg_ctl = self.user.command(self.binaries.pg_ctl(), &self.layout.root);
        pg_ctl.arg("stop").arg("-D").arg(&self.layout.data).args([
            "-m",
            mode,
            "-w",
            "-t",
            START_TIMEOUT_SECS,
        ]);
        user::run("pg_ctl stop", &mut pg_ctl).map(drop)
    }

    fn log_since(&self, offset: u64) -> String {
        let log = self.log();
        let offset = usize::try_from(offset).unwrap_or(usize::MAX);
        log.get(offset..).unwrap_or(&log).to_owned()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Also after a failed start or a stop that failed: whatever runs, stop it at once.
        if self.layout.data.join("postmaster.pid").exists() {
            let _ = self.pg_ctl_stop("immediate");
        }
    }
}

/// The line the server logs for each address it listens on.
fn listening_line(address: &str, port: u16) -> String {
    let family = if address.contains(':') {
        "IPv6"
    } else {
        "IPv4"
    };
    format!("listening on {family} address \"{address}\", port {port}")
}

/// 127.0.0.1, and ::1 if this machine has it (a container may have no IPv6 at all): checked by
/// binding port 0 there, which takes no port anyone else wants.
fn listen_addresses() -> Vec<&'static str> {
    let mut listen = vec!["127.0.0.1"];
    if std::net::TcpListener::bind("[::1]:0").is_ok() {
        listen.push("::1");
    }
    listen
}

/// A random port in `ports` (not empty).
fn random_port(ports: &Range<u16>) -> u16 {
    // std's RandomState is seeded randomly per process and differs on each call: enough to
    // spread parallel clusters over the range without a dependency.
    let seed = RandomState::new().hash_one((std::process::id(), SystemTime::now()));
    let span = u64::from(ports.end.saturating_sub(ports.start)).max(1);
    ports.start + u16::try_from(seed % span).unwrap_or(0)
}

/// `value` for a libpq URL's query: every byte other than unreserved ones and `/` as `%XX`.
fn percent_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn write(path: &Path, contents: &str) -> Result<(), Error> {
    std::fs::write(path, contents).map_err(Error::io(format!("cannot write {}", path.display())))
}

#[cfg(test)]
#[path = "cluster_tests.rs"]
mod tests;
