//! Signalling a child service (SIGTERM to end it, SIGHUP to make it re-read its files), a
//! bounded wait for its exit, and the one error line that a start-up that fails must leave on
//! stderr.

use std::process::{ExitStatus, Output};
use std::time::Duration;

use tokio::process::Child;

/// Sends SIGTERM to `child`.
///
/// # Panics
///
/// If `child` has already been waited for, or the signal cannot be sent.
pub fn sigterm(child: &Child) {
    signal(child, rustix::process::Signal::TERM);
}

/// Sends SIGHUP to `child` (re-read its files).
///
/// # Panics
///
/// If `child` has already been waited for, or the signal cannot be sent.
pub fn sighup(child: &Child) {
    signal(child, rustix::process::Signal::HUP);
}

fn signal(child: &Child, signal: rustix::process::Signal) {
    let id = child.id().expect("the child has not been waited for");
    let pid = i32::try_from(id)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
        .expect("a process id");
    rustix::process::kill_process(pid, signal).expect("the signal is sent");
}

/// Waits for `child` to exit, at most `limit`, and returns how it exited.
///
/// # Panics
///
/// With `expectation` as the message, if `child` is still running after `limit`; or if waiting
/// fails.
pub async fn exit_within(child: &mut Child, limit: Duration, expectation: &str) -> ExitStatus {
    tokio::time::timeout(limit, child.wait())
        .await
        .expect(expectation)
        .expect("waiting for the child")
}

/// The error line, after checking that it is the only one and that nothing panicked.
///
/// # Panics
///
/// Unless the process exited 1 with exactly one non-blank line on stderr, and no panic.
pub fn single_error_line(output: &Output) -> String {
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    lines[0].to_owned()
}
