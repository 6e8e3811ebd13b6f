//! Why a throwaway cluster could not be set up, started, stopped or queried: one error type,
//! each message saying what failed and carrying what the failing command or the server said.

use std::io;
use std::process::ExitStatus;

/// What went wrong with a throwaway cluster.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No PostgreSQL server binaries were found.
    #[error(
        "no PostgreSQL server binaries (initdb, pg_ctl) under /usr/lib/postgresql/*/bin or on \
         PATH: install Debian's `postgresql` package (apt-get install postgresql)"
    )]
    NotInstalled,
    /// Running as root, with no `postgres` user to run the server as.
    #[error(
        "running as root, and there is no `postgres` user to run the server as (PostgreSQL \
         refuses to run as root): install Debian's `postgresql` package, which creates it"
    )]
    NoServerUser,
    /// A database or role name this crate does not accept.
    #[error(
        "invalid {what} {name:?}: use 1 to 63 lowercase letters, digits and '_', not starting \
         with a digit"
    )]
    Name {
        /// "database" or "role".
        what: &'static str,
        /// The name given.
        name: String,
    },
    /// A file operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done, with the path.
        what: String,
        /// The cause.
        source: io::Error,
    },
    /// A PostgreSQL command (initdb, pg_ctl, psql) failed.
    #[error("{what} failed ({status}): {output}")]
    Command {
        /// The command and what it was for.
        what: String,
        /// Its exit status.
        status: ExitStatus,
        /// What it wrote to stderr (and stdout, if stderr was empty).
        output: String,
    },
    /// The server did not start.
    #[error("the PostgreSQL server did not start: {reason}\n--- server log ---\n{log}")]
    Start {
        /// Why, in a few words.
        reason: String,
        /// The server's log of the attempt.
        log: String,
    },
    /// The cluster was stopped (and not started again).
    #[error("the cluster is stopped")]
    Stopped,
}

impl Error {
    /// An [`Error::Io`] for `what`.
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(io::Error) -> Self {
        let what = what.into();
        move |source| Self::Io { what, source }
    }
}
