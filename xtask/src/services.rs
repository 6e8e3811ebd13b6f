//! What `up` and `bench` share to run things and stop cleanly: the Ctrl-C/SIGTERM
//! [`StopSignal`], waiting for a short-lived child (a build, a wrk run) to finish, and where
//! Cargo puts the binaries. The services themselves run as `process_testing::Services`.

use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use process_testing::terminate_within;

/// Ctrl-C (SIGINT) and SIGTERM, caught for the whole process (a handler can be installed only
/// once; [`StopSignal::default`] is one that never comes, for tests).
#[derive(Debug, Default, Clone)]
pub struct StopSignal(Arc<AtomicBool>);

impl StopSignal {
    pub fn install() -> Result<Self> {
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
/// On Ctrl-C/SIGTERM, or after `limit`, it is sent SIGTERM (then killed) and an error is
/// returned.
pub fn wait_child(child: &mut Child, what: &str, stop: &StopSignal, limit: Duration) -> Result<()> {
    let started = Instant::now();
    loop {
        let exited = child.try_wait();
        match exited.with_context(|| format!("cannot wait for {what}"))? {
            Some(status) if status.success() => return Ok(()),
            Some(status) => bail!("{what} failed ({status})"),
            None => {}
        }
        let stopped = stop.wait(Duration::from_millis(100));
        if stopped || started.elapsed() > limit {
            terminate_within(child, Duration::from_secs(5));
            ensure!(!stopped, "interrupted while waiting for {what}");
            bail!("{what} did not finish within {} s", limit.as_secs());
        }
    }
}

/// `cargo build` of `packages` (`--release` if `release`), given up on Ctrl-C; returns the
/// folder holding the binaries.
pub fn cargo_build(packages: &[&str], release: bool, stop: &StopSignal) -> Result<PathBuf> {
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
