//! Child processes that must not outlive `cargo xtask`, shared by `up` and `bench`: the
//! [`Services`] guard (SIGTERM, then SIGKILL, on drop), the Ctrl-C/SIGTERM [`StopSignal`],
//! waiting for a service to be up (a port accepting TCP, or any check), and where Cargo puts
//! the binaries.

use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, ExitStatus};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::Context;

/// Child processes that are sent SIGTERM (then killed, if they do not stop) when dropped, so
/// nothing outlives the command that started them, whichever way it ends.
#[derive(Debug, Default)]
pub struct Services(Vec<(String, Child)>);

impl Services {
    /// No services yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes charge of `child`, called `name` in messages.
    pub fn push(&mut self, name: impl Into<String>, child: Child) {
        self.0.push((name.into(), child));
    }

    /// The names and process ids of the services in charge, in start order.
    pub fn pids(&self) -> Vec<(String, u32)> {
        self.0.iter().map(|(n, c)| (n.clone(), c.id())).collect()
    }

    /// Stops every service: SIGTERM to all, then up to 15 s for each to exit before SIGKILL.
    pub fn stop(&mut self) {
        for (name, child) in &mut self.0 {
            if matches!(child.try_wait(), Ok(None)) {
                terminate(child);
                eprintln!("stopping {name}...");
            }
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        for (name, child) in &mut self.0 {
            loop {
                match child.try_wait() {
                    Ok(Some(status)) => {
                        eprintln!("{name} exited ({status})");
                        break;
                    }
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    _ => {
                        eprintln!("{name} did not stop in time; killing it");
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                }
            }
        }
        self.0.clear();
    }

    /// The first service that has exited, if any.
    pub fn exited(&mut self) -> Option<(String, ExitStatus)> {
        self.0
            .iter_mut()
            .find_map(|(name, child)| child.try_wait().ok().flatten().map(|s| (name.clone(), s)))
    }

    /// Waits until `addr` (where `what` should listen) accepts TCP connections, a service
    /// exits, Ctrl-C is pressed or `timeout` passes (an error).
    pub fn wait_listening(
        &mut self,
        addr: SocketAddr,
        stop: &StopSignal,
        timeout: Duration,
        what: &str,
    ) -> anyhow::Result<Startup> {
        self.wait_until(
            stop,
            timeout,
            || {
                Ok(
                    TcpStream::connect_timeout(&addr, Duration::from_millis(200))
                        .is_ok()
                        .then_some(()),
                )
            },
            || {
                format!(
                    "{what} did not start listening on {addr} within {} s",
                    timeout.as_secs()
                )
            },
        )
    }

    /// Asks `listening` every 100 ms whether a service is up yet, until it answers with
    /// something (that is returned), a service exits, Ctrl-C is pressed, `listening` fails, or
    /// `timeout` passes (an error, with `not_up`'s message).
    pub fn wait_until<T>(
        &mut self,
        stop: &StopSignal,
        timeout: Duration,
        mut listening: impl FnMut() -> anyhow::Result<Option<T>>,
        not_up: impl FnOnce() -> String,
    ) -> anyhow::Result<Startup<T>> {
        let started = Instant::now();
        loop {
            if let Some((name, status)) = self.exited() {
                return Ok(Startup::Exited(name, status));
            }
            if stop.requested() {
                return Ok(Startup::Stopped);
            }
            if let Some(found) = listening()? {
                return Ok(Startup::Listening(found));
            }
            if started.elapsed() > timeout {
                anyhow::bail!("{}", not_up());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Services {
    fn drop(&mut self) {
        self.stop();
    }
}

/// How waiting for a service to listen ended.
#[derive(Debug)]
pub enum Startup<T = ()> {
    /// It listens; what the check found (the address it reported, say).
    Listening(T),
    /// This service exited first.
    Exited(String, ExitStatus),
    /// Ctrl-C or SIGTERM arrived first.
    Stopped,
}

/// Sends SIGTERM to `child`, so that it can drain and exit cleanly.
pub fn terminate(child: &Child) {
    let pid = rustix::process::Pid::from_child(child);
    let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
}

/// Ctrl-C (SIGINT) and SIGTERM, caught once for the whole process.
#[derive(Debug)]
pub struct StopSignal {
    rx: mpsc::Receiver<()>,
    seen: std::cell::Cell<bool>,
}

impl StopSignal {
    /// Installs the handler. Can be called once per process.
    pub fn install() -> anyhow::Result<Self> {
        let (tx, rx) = mpsc::channel();
        ctrlc::set_handler(move || {
            let _ = tx.send(());
        })
        .context("cannot install the Ctrl-C handler")?;
        Ok(Self {
            rx,
            seen: std::cell::Cell::new(false),
        })
    }

    /// A stop that never comes, for tests (the real handler can be installed only once).
    #[cfg(test)]
    pub fn never() -> Self {
        let (tx, rx) = mpsc::channel();
        // Kept alive for good: a disconnected channel counts as a stop.
        std::mem::forget(tx);
        Self {
            rx,
            seen: std::cell::Cell::new(false),
        }
    }

    /// Whether a stop was asked for, without waiting.
    pub fn requested(&self) -> bool {
        self.wait(Duration::ZERO)
    }

    /// Waits up to `timeout` for a stop; true once one has been asked for.
    pub fn wait(&self, timeout: Duration) -> bool {
        if self.seen.get() {
            return true;
        }
        let got = match self.rx.recv_timeout(timeout) {
            Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => true,
            Err(mpsc::RecvTimeoutError::Timeout) => false,
        };
        self.seen.set(got);
        got
    }
}

/// Waits for a short-lived child (a build, a wrk run) to exit. On Ctrl-C/SIGTERM, or after
/// `timeout`, it is sent SIGTERM (then killed) and an error is returned.
pub fn wait_child(
    child: &mut Child,
    what: &str,
    stop: &StopSignal,
    timeout: Duration,
) -> anyhow::Result<ExitStatus> {
    let started = Instant::now();
    loop {
        if let Some(status) = child
            .try_wait()
            .with_context(|| format!("cannot wait for {what}"))?
        {
            return Ok(status);
        }
        let stopped = stop.wait(Duration::from_millis(100));
        if stopped || started.elapsed() > timeout {
            terminate(child);
            let deadline = Instant::now() + Duration::from_secs(5);
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
            if stopped {
                anyhow::bail!("interrupted while waiting for {what}");
            }
            anyhow::bail!("{what} did not finish within {} s", timeout.as_secs());
        }
    }
}

/// Cargo's target folder, honouring `CARGO_TARGET_DIR`.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|p| {
            if p.is_absolute() {
                p
            } else {
                crate::workspace_root().join(p)
            }
        })
        .unwrap_or_else(|| crate::workspace_root().join("target"))
}
