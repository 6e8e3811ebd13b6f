//! A `psql` session kept open as the superuser ([`Cluster::session`]): statements sent one
//! after another on one connection, each answered as soon as the server has done it, without
//! paying for a new `psql` and a new connection each time (for timing a commit, say).

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, Write};
use std::process::{Child, ChildStdin, ChildStdout, Stdio};

use crate::cluster::Cluster;
use crate::error::Error;
use crate::user;

/// The line `psql` echoes after each piece of SQL: everything before it is that SQL's output.
const DONE: &str = "-- throwaway-postgres: done --";

/// An open `psql` session as the superuser over the Unix socket. Dropping it ends `psql`.
#[derive(Debug)]
pub struct Session {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    /// What `psql` wrote to stderr: read when it has stopped.
    stderr: File,
}

impl Cluster {
    /// Opens a `psql` session to the database as the superuser; like [`Cluster::psql`], it
    /// stops at the first error, and then every later call fails with it.
    pub fn session(&self) -> Result<Session, Error> {
        let stderr = tempfile::tempfile().map_err(Error::io("cannot make a file for psql"))?;
        let clone = stderr
            .try_clone()
            .map_err(Error::io("cannot make a file for psql"))?;
        let mut child = user::clean_command(self.psql_path())
            // No psqlrc, never a password prompt, quiet, unaligned tuples only, stop at the
            // first error; the SQL from stdin as it comes.
            .args(["-X", "-w", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d"])
            .arg(self.owner_url())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(clone)
            .spawn()
            .map_err(Error::io("cannot run psql"))?;
        let (stdin, stdout) = (child.stdin.take(), child.stdout.take());
        let stdout = BufReader::new(stdout.ok_or(Error::Stopped)?);
        let mut session = Session {
            child,
            stdin,
            stdout,
            stderr,
        };
        // Connected once this is answered.
        session.run("SELECT 1")?;
        Ok(session)
    }
}

impl Session {
    /// Runs `sql` (statements or psql commands, each committed on its own unless in a
    /// transaction block) and returns what it printed once the server has done all of it.
    pub fn run(&mut self, sql: &str) -> Result<String, Error> {
        let stdin = self.stdin.as_mut().ok_or(Error::Stopped)?;
        // The lone `;` ends a last statement left open; after one already ended, it is empty.
        let sent = writeln!(stdin, "{sql}\n;\n\\echo {DONE}").and_then(|()| stdin.flush());
        let mut output = String::new();
        let mut line = String::new();
        while sent.is_ok() {
            line.clear();
            match self.stdout.read_line(&mut line) {
                Ok(n) if n > 0 && line.trim_end() == DONE => return Ok(output),
                Ok(n) if n > 0 => output.push_str(&line),
                _ => break,
            }
        }
        Err(self.failure())
    }

    /// Why `psql` stopped: its exit status and what it wrote to stderr.
    fn failure(&mut self) -> Error {
        self.stdin = None;
        let status = match self.child.wait() {
            Ok(status) => status,
            Err(err) => return Error::io("cannot wait for psql")(err),
        };
        let mut output = String::new();
        let _ = self.stderr.rewind();
        let _ = self.stderr.read_to_string(&mut output);
        Error::Command {
            what: "psql session".to_owned(),
            status,
            output: output.trim().to_owned(),
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // The end of its input ends psql (every statement sent has been answered).
        self.stdin = None;
        let _ = self.child.wait();
    }
}
