//! Who the server runs as, and running PostgreSQL's programs: as root, every server-side
//! program runs as the unprivileged `postgres` user (initdb and postgres refuse root) and the
//! files it uses are handed to that user; otherwise everything runs as the caller. Commands get
//! a clean environment for libpq (no inherited `PG*` variables) and English messages.

use std::ffi::OsStr;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use crate::error::Error;

/// The account that runs the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerUser {
    /// `(uid, gid)` to switch to, or `None` to run as the caller.
    ids: Option<(u32, u32)>,
}

impl ServerUser {
    /// The `postgres` user when running as root (from `/etc/passwd`), else the caller.
    pub fn for_this_process() -> Result<Self, Error> {
        if !rustix::process::geteuid().is_root() {
            return Ok(Self { ids: None });
        }
        let passwd =
            std::fs::read_to_string("/etc/passwd").map_err(Error::io("cannot read /etc/passwd"))?;
        let ids = lookup(&passwd, "postgres").ok_or(Error::NoServerUser)?;
        Ok(Self { ids: Some(ids) })
    }

    /// Hands `path` to the server user (nothing to do when that is the caller).
    pub fn give(&self, path: &Path) -> Result<(), Error> {
        match self.ids {
            Some((uid, gid)) => std::os::unix::fs::chown(path, Some(uid), Some(gid))
                .map_err(Error::io(format!("cannot chown {}", path.display()))),
            None => Ok(()),
        }
    }

    /// `program`, set to run as the server user in `dir` (a folder it can enter).
    pub fn command(&self, program: impl AsRef<OsStr>, dir: &Path) -> Command {
        let mut command = clean_command(program);
        command.current_dir(dir);
        if let Some((uid, gid)) = self.ids {
            // std also drops root's supplementary groups when it switches user.
            std::os::unix::process::CommandExt::uid(&mut command, uid);
            std::os::unix::process::CommandExt::gid(&mut command, gid);
        }
        command
    }
}

/// `program` with no inherited libpq variables (`PGHOST`, `PGSSLMODE`, ...: every setting comes
/// from the arguments) and untranslated messages.
pub fn clean_command(program: impl AsRef<OsStr>) -> Command {
    let mut command = Command::new(program);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("PG") {
            command.env_remove(name);
        }
    }
    command.env("LC_ALL", "C").stdin(Stdio::null());
    command
}

/// Runs `command` to completion; its output, or an error named `what` with what it wrote.
pub fn run(what: &str, command: &mut Command) -> Result<Output, Error> {
    let output = command
        .output()
        .map_err(Error::io(format!("cannot run {what}")))?;
    check(what, output)
}

/// `output` if its command succeeded, else an error named `what` with what it wrote.
pub fn check(what: &str, output: Output) -> Result<Output, Error> {
    if output.status.success() {
        return Ok(output);
    }
    let stderr = String::from_utf8_lossy(&output.stderr).trim().to_owned();
    let said = if stderr.is_empty() {
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    } else {
        stderr
    };
    Err(Error::Command {
        what: what.to_owned(),
        status: output.status,
        output: said,
    })
}

/// The uid and gid of `name` in a passwd file (`name:x:uid:gid:...`).
fn lookup(passwd: &str, name: &str) -> Option<(u32, u32)> {
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        if fields.next()? != name {
            return None;
        }
        let _password = fields.next()?;
        Some((fields.next()?.parse().ok()?, fields.next()?.parse().ok()?))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwd_lookup_reads_uid_and_gid_of_that_user_only() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\n\
                      postgresql:x:7:7::/:/bin/false\n\
                      postgres:x:101:104:PostgreSQL administrator,,,:/var/lib/postgresql:/bin/bash\n";
        assert_eq!(lookup(passwd, "postgres"), Some((101, 104)));
        assert_eq!(lookup(passwd, "nobody"), None);
        assert_eq!(lookup("postgres:x:abc:1::/:/bin/sh", "postgres"), None);
    }

    #[test]
    fn a_failed_command_says_what_it_wrote() {
        let err = run(
            "sh",
            clean_command("sh").args(["-c", "echo out; echo oops >&2; exit 3"]),
        )
        .unwrap_err();
        let message = err.to_string();
        assert!(message.starts_with("sh failed"), "{message}");
        assert!(
            message.contains("oops") && !message.contains("out"),
            "{message}"
        );
    }
}
