//! Services run as children of a blocking program (the benchmark, `cargo xtask up`): each
//! started with its output in a log file or on the terminal ([`Services::spawn`]), waited on
//! until it is up or logs where it listens while every one is checked to be still running
//! ([`Services::wait_until`], [`Services::logged_addr`]), and stopped with SIGTERM, then SIGKILL
//! after a bound ([`terminate_within`]), in reverse start order, at the latest when dropped.

use std::fs::{self, File};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::{addr_field, whole_line_with};

/// Child processes, each with its name for messages and the log file its output goes to (if
/// not the terminal's), that are stopped when dropped, so nothing outlives the program that
/// started them.
#[derive(Debug, Default)]
pub struct Services(Vec<(String, Child, Option<PathBuf>)>);

impl Services {
    /// Starts `cmd` as `name`, its output in the file `log` (created), else on the terminal.
    pub fn spawn(
        &mut self,
        name: &str,
        cmd: &mut Command,
        log: Option<PathBuf>,
    ) -> anyhow::Result<()> {
        if let Some(log) = &log {
            let file = File::create(log);
            let file = file.with_context(|| format!("cannot create {}", log.display()))?;
            cmd.stdin(Stdio::null())
                .stdout(file.try_clone()?)
                .stderr(file);
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {name}"))?;
        self.0.push((name.to_owned(), child, log));
        Ok(())
    }

    /// The names and process ids of the services, in start order.
    pub fn pids(&self) -> Vec<(String, u32)> {
        self.0.iter().map(|(n, c, _)| (n.clone(), c.id())).collect()
    }

    /// Stops every service in reverse start order (those started later may depend on those
    /// started earlier): SIGTERM, then up to 15 s for it to exit before SIGKILL.
    pub fn stop(&mut self) {
        for (name, mut child, _) in self.0.drain(..).rev() {
            if matches!(child.try_wait(), Ok(None)) {
                eprintln!("stopping {name}...");
            }
            match terminate_within(&mut child, Duration::from_secs(15)) {
                Some(status) => eprintln!("{name} exited ({status})"),
                None => eprintln!("{name} did not stop in time; killed it"),
            }
        }
    }

    /// An error naming the first service that has exited, with the end of its log, if any has.
    pub fn exited(&mut self) -> anyhow::Result<()> {
        for (name, child, log) in &mut self.0 {
            if let Some(status) = child.try_wait().ok().flatten() {
                let tail = log
                    .as_deref()
                    .map_or("see its error above".into(), log_tail);
                bail!("{name} exited ({status}): {tail}");
            }
        }
        Ok(())
    }

    /// Asks `up` every 10 ms whether a service is up yet, until it answers with something
    /// (returned), `interrupted` says so (`None`), a service exits or `up` fails (an error), or
    /// `timeout` passes (an error, with `not_up`'s message).
    pub fn wait_until<T>(
        &mut self,
        interrupted: &dyn Fn() -> bool,
        timeout: Duration,
        mut up: impl FnMut() -> anyhow::Result<Option<T>>,
        not_up: impl FnOnce() -> String,
    ) -> anyhow::Result<Option<T>> {
        let started = Instant::now();
        while !interrupted() {
            self.exited()?;
            if let Some(found) = up()? {
                return Ok(Some(found));
            }
            if started.elapsed() > timeout {
                bail!("{}", not_up());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(None)
    }

    /// Waits until a whole line containing `marker` is in `log`, and returns the address in
    /// that line's field `field`. Fails, with the end of the log concerned, if a service exits
    /// first, if the line has no such address, or if none comes within `timeout`; fails too
    /// once `interrupted`.
    pub fn logged_addr(
        &mut self,
        interrupted: &dyn Fn() -> bool,
        timeout: Duration,
        log: &Path,
        (marker, field): (&str, &str),
    ) -> anyhow::Result<SocketAddr> {
        let listening = || {
            let text = fs::read_to_string(log);
            let text = text.with_context(|| format!("cannot read {}", log.display()))?;
            let Some(line) = whole_line_with(&text, marker) else {
                return Ok(None);
            };
            let addr = addr_field(line, field).map(Some);
            addr.with_context(|| format!("no address {field}= in {line:?} ({})", log.display()))
        };
        let not_up = || {
            let (secs, tail, log) = (timeout.as_secs_f64(), log_tail(log), log.display());
            format!(
                "nothing logged that it listens (\"{marker}\" in {log}) within {secs} s: {tail}"
            )
        };
        let found = self.wait_until(interrupted, timeout, listening, not_up)?;
        found.context("interrupted")
    }
}

impl Drop for Services {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The last few non-empty lines of a log, joined, for an error message.
fn log_tail(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    match lines[lines.len().saturating_sub(3)..].join(" / ") {
        tail if tail.is_empty() => format!("(nothing in {})", path.display()),
        tail => tail,
    }
}

/// Sends SIGTERM to `child` (so that it can drain and exit cleanly) unless it has exited, and
/// waits up to `limit` for it to exit; then kills it (`None`).
pub fn terminate_within(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let pid = rustix::process::Pid::from_child(child);
    if matches!(child.try_wait(), Ok(None)) {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    }
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Waits as the benchmark does, at most `timeout`, for a fake Discount: `script` run by `sh`.
    fn wait_for_discount(script: &str, timeout: Duration) -> String {
        let logs = tempfile::tempdir().unwrap();
        let (mut services, log) = (Services::default(), logs.path().join("discount.log"));
        let mut sh = Command::new("sh");
        services
            .spawn(
                "discount-service",
                sh.args(["-c", script]),
                Some(log.clone()),
            )
            .unwrap();
        let line = ("Discount listening", "addr");
        let addr = services.logged_addr(&|| false, timeout, &log, line);
        addr.map_or_else(|err| format!("{err:#}"), |addr| addr.to_string())
    }

    #[test]
    fn waits_for_the_line_and_reads_its_address_or_says_why_not_with_the_end_of_the_log() {
        let secs = Duration::from_secs(20);
        let listening = "echo starting; sleep 0.3; \
            echo 'INFO x: Discount listening (gRPC) addr=127.0.0.1:4242'; exec sleep 30";
        assert_eq!(wait_for_discount(listening, secs), "127.0.0.1:4242");
        let err = wait_for_discount("echo 'ERROR --listen: cannot bind'; exit 3", secs);
        let exited = "discount-service exited (exit status: 3): ERROR --listen";
        assert!(err.starts_with(exited), "{err}");
        let silent = "echo 'INFO still loading'; exec sleep 30";
        let err = wait_for_discount(silent, Duration::from_millis(500));
        assert!(err.contains("nothing logged that it listens"), "{err}");
        assert!(err.contains("still loading"), "{err}");
        let nowhere = "echo 'INFO Discount listening addr=nowhere'; exec sleep 30";
        let err = wait_for_discount(nowhere, secs);
        assert!(
            err.starts_with("no address addr= in \"INFO Discount"),
            "{err}"
        );
    }
}
