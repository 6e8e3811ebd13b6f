//! A cluster's guardian: a small shell process, started before the server, running as the
//! server user in a process group of its own, that waits for its standard input to close, then
//! stops the server at once and removes the cluster's folder.
//!
//! Only this process holds the other end of that pipe, and the kernel closes it whenever the
//! process ends, however it ends. So a test that panics, exits without unwinding, keeps its
//! cluster in a `static`, or is killed (a test runner's timeout; Ctrl-C, which its own process
//! group keeps from the guardian; the server, which `pg_ctl` starts in a session of its own,
//! never sees it either) still leaves no server running and no folder behind. Written by hand:
//! no crate does this, and it is a few lines of `sh`.

use std::path::Path;
use std::process::{Child, Stdio};

use crate::error::Error;
use crate::user::ServerUser;

/// Waits for EOF on stdin, then stops the server in `$1` (immediate mode, as a crash would)
/// with the `pg_ctl` in `$0` and removes the folder `$2`.
const SCRIPT: &str =
    r#"read -r _ignored; "$0" stop -D "$1" -m immediate -w >/dev/null 2>&1; rm -rf -- "$2""#;

/// The running guardian; dropping it (closing its stdin) sets it to work and waits for it.
#[derive(Debug)]
pub struct Guardian {
    child: Child,
}

impl Guardian {
    /// Starts the guardian of the cluster whose data directory is `data`, inside `root`.
    pub fn spawn(
        user: &ServerUser,
        pg_ctl: &Path,
        data: &Path,
        root: &Path,
    ) -> Result<Self, Error> {
        let mut command = user.command("sh", Path::new("/"));
        command
            .arg("-c")
            .arg(SCRIPT)
            .arg(pg_ctl)
            .arg(data)
            .arg(root)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let child = command
            .spawn()
            .map_err(Error::io("cannot start the cluster's guardian (sh)"))?;
        Ok(Self { child })
    }
}

impl Drop for Guardian {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}
