//! Child processes that must not outlive `cargo xtask`, shared by `up` and `bench`: the
//! [`Services`] guard (SIGTERM, then SIGKILL, on drop), the Ctrl-C/SIGTERM [`StopSignal`],
//! waiting for a service to be up or a short-lived child to finish, and where Cargo puts the
//! binaries.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// Child processes, each with its name for messages and the log file its output goes to (if
/// not the terminal's), that are stopped when dropped, so nothing outlives the command that
/// started them.
#[derive(Debug, Default)]
pub struct Services(Vec<(String, Child, Option<PathBuf>)>);

impl Services {
    pub fn push(&mut self, name: impl Into<String>, child: Child, log: Option<PathBuf>) {
        self.0.push((name.into(), child, log));
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
                terminate(&child);
            }
            match wait_until_exit(&mut child, Instant::now() + Duration::from_secs(15)) {
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

    /// Asks `up` every 100 ms whether a service is up yet, until it answers with something
    /// (returned), Ctrl-C is pressed (`None`), a service exits or `up` fails (an error), or
    /// `timeout` passes (an error, with `not_up`'s message).
    pub fn wait_until<T>(
        &mut self,
        stop: &StopSignal,
        timeout: Duration,
        mut up: impl FnMut() -> anyhow::Result<Option<T>>,
        not_up: impl FnOnce() -> String,
    ) -> anyhow::Result<Option<T>> {
        let started = Instant::now();
        while !stop.requested() {
            self.exited()?;
            if let Some(found) = up()? {
                return Ok(Some(found));
            }
            if started.elapsed() > timeout {
                bail!("{}", not_up());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(None)
    }
}

impl Drop for Services {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The last few non-empty lines of a log, joined, for an error message.
pub fn log_tail(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    match lines[lines.len().saturating_sub(3)..].join(" / ") {
        tail if tail.is_empty() => format!("(nothing in {})", path.display()),
        tail => tail,
    }
}

/// Sends SIGTERM to `child`, so that it can drain and exit cleanly.
fn terminate(child: &Child) {
    let pid = rustix::process::Pid::from_child(child);
    let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
}

/// Waits for `child` to exit until `deadline`, then kills it (`None`).
fn wait_until_exit(child: &mut Child, deadline: Instant) -> Option<ExitStatus> {
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

/// Ctrl-C (SIGINT) and SIGTERM, caught for the whole process (a handler can be installed only
/// once; [`StopSignal::default`] is one that never comes, for tests).
#[derive(Debug, Default, Clone)]
pub struct StopSignal(Arc<AtomicBool>);

impl StopSignal {
    pub fn install() -> anyhow::Result<Self> {
        let stop = Self::default();
        let flag = stop.0.clone();
        ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst))
            .context("cannot install the Ctrl-C handler")?;
        Ok(stop)
    }

    pub fn requested(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    /// Waits up to `timeout` for a stop; true once one has been asked for.
    pub fn wait(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while !self.requested() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        self.requested()
    }
}

/// Waits for a short-lived child (a build, a wrk run) to exit, and fails unless it succeeds.
/// On Ctrl-C/SIGTERM, or after `timeout`, it is sent SIGTERM (then killed) and an error is
/// returned.
pub fn wait_child(
    child: &mut Child,
    what: &str,
    stop: &StopSignal,
    timeout: Duration,
) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        let exited = child
            .try_wait()
            .with_context(|| format!("cannot wait for {what}"))?;
        match exited {
            Some(status) if status.success() => return Ok(()),
            Some(status) => bail!("{what} failed ({status})"),
            None => {}
        }
        let stopped = stop.wait(Duration::from_millis(100));
        if stopped || started.elapsed() > timeout {
            terminate(child);
            wait_until_exit(child, Instant::now() + Duration::from_secs(5));
            if stopped {
                bail!("interrupted while waiting for {what}");
            }
            bail!("{what} did not finish within {} s", timeout.as_secs());
        }
    }
}

/// `cargo build` of `packages` (`--release` if `release`), given up on Ctrl-C; returns the
/// folder holding the binaries.
pub fn cargo_build(packages: &[&str], release: bool, stop: &StopSignal) -> anyhow::Result<PathBuf> {
    let profile = if release { "release" } else { "debug" };
    println!("building {} ({profile})...", packages.join(", "));
    let mut cargo = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cargo.arg("build").args(release.then_some("--release"));
    cargo.args(packages.iter().flat_map(|p| ["-p", p]));
    let child = cargo.current_dir(crate::workspace_root()).spawn();
    let mut child = child.context("cannot run cargo build")?;
    wait_child(&mut child, "cargo build", stop, Duration::from_secs(3600))?;
    Ok(target_dir().join(profile))
}

/// Cargo's target folder, honouring `CARGO_TARGET_DIR`.
pub fn target_dir() -> PathBuf {
    let root = crate::workspace_root();
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), |p| root.join(p))
}
