//! Driving [wrk](https://github.com/wg/wrk), the HTTP load generator (Debian package `wrk`):
//! finding or installing it, running it with a script ([`COUNTS`] and a scenario's requests),
//! and reading back the one JSON line the script prints. A response that is not 2xx, or that
//! carries Catalog's `x-discount-unavailable` (full prices), counts as an error: such a run
//! measured something else. (Handing every response to Lua costs wrk a little CPU, alike in
//! every scenario.)

use std::io::{ErrorKind, Read, Seek};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use crate::services::{StopSignal, wait_child};

/// The prefix of the line the scripts' `done()` prints.
const MARKER: &str = "XTASK_BENCH_JSON ";

/// wrk, ready to run: its version, `wrk -v` without the copyright ("wrk 4.1.0 [epoll]").
#[derive(Debug, Clone)]
pub struct Wrk(pub String);

/// Finds wrk on PATH; if missing, installs Debian's package when running as root, else fails
/// saying how to install it.
pub fn ensure(stop: &StopSignal) -> anyhow::Result<Wrk> {
    // `wrk -v` prints its version and exits non-zero.
    let version = || Command::new("wrk").arg("-v").output();
    let out = match version() {
        Err(err) if err.kind() == ErrorKind::NotFound && rustix::process::geteuid().is_root() => {
            println!("wrk is not installed: installing Debian's package (apt-get install wrk)...");
            for args in [&["update", "-qq"][..], &["install", "-y", "-qq", "wrk"]] {
                let mut child = Command::new("apt-get")
                    .args(args)
                    .env("DEBIAN_FRONTEND", "noninteractive")
                    .spawn()
                    .context("wrk is not installed and apt-get cannot be run: install wrk")?;
                let what = format!("apt-get {}", args.join(" "));
                wait_child(&mut child, &what, stop, Duration::from_secs(900))
                    .context("install wrk by hand and run again")?;
            }
            version().context("apt-get installed wrk but it cannot be run")?
        }
        Err(err) if err.kind() == ErrorKind::NotFound => bail!(
            "wrk (the HTTP benchmarking tool) is not installed. Install it, then run again:\n    \
             sudo apt-get install wrk      # Debian, Ubuntu\n    \
             brew install wrk              # macOS"
        ),
        out => out.context("cannot run wrk")?,
    };
    let text = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
    let first_line = text.lines().next().unwrap_or("wrk");
    let version = first_line.split(" Copyright").next().unwrap_or(first_line);
    Ok(Wrk(version.trim().to_owned()))
}

/// The Lua every script starts with: it counts non-2xx and full-price responses and prints
/// [`MARKER`] and the run's figures as JSON when the run is done.
pub const COUNTS: &str = include_str!("lua/counts.lua");

/// wrk's threads for `connections`: 2 at most (the machine has few cores, and the services
/// need them), and a divisor of `connections` so that wrk opens exactly that many.
pub fn threads_for(connections: u32) -> u32 {
    2 - connections % 2
}

impl Wrk {
    /// Runs wrk with `script` on `url` and returns what its `done()` printed.
    pub fn run(
        &self,
        script: &Path,
        url: &str,
        connections: u32,
        duration: Duration,
        stop: &StopSignal,
    ) -> anyhow::Result<WrkStats> {
        let mut output = tempfile::tempfile().context("cannot make a file for wrk's output")?;
        let mut child = Command::new("wrk")
            .arg(format!("--threads={}", threads_for(connections)))
            .arg(format!("--connections={connections}"))
            .arg(format!("--duration={}s", duration.as_secs().max(1)))
            .args(["--timeout=2s", "--script"])
            .arg(script)
            .arg(url)
            .stdin(Stdio::null())
            .stdout(output.try_clone()?)
            .stderr(output.try_clone()?)
            .spawn()
            .context("cannot run wrk")?;
        let what = format!("wrk -c {connections}");
        let done = wait_child(&mut child, &what, stop, duration + Duration::from_secs(30));
        let mut out = String::new();
        output.rewind()?;
        output.read_to_string(&mut out)?;
        match done {
            // wrk's own words say why it failed; an interruption needs none.
            Err(err) if !stop.requested() => return Err(err.context(out)),
            done => done?,
        }
        parse_output(&out).with_context(|| format!("unexpected output from {what}:\n{out}"))
    }
}

/// What the `done()` hook reports. Times in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct WrkStats {
    pub requests: u64,
    pub duration_us: u64,
    pub bytes: u64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
    pub mean_us: f64,
    pub errors: SocketErrors,
    /// Responses whose status was not 2xx.
    pub non2xx: u64,
    /// Responses with `x-discount-unavailable`: full prices, Discount not asked.
    pub degraded: u64,
}

/// wrk's own error counters (`status` counts statuses above 399).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SocketErrors {
    pub connect: u64,
    pub read: u64,
    pub write: u64,
    pub status: u64,
    pub timeout: u64,
}

impl WrkStats {
    /// Completed requests per second.
    pub fn requests_per_sec(&self) -> f64 {
        self.requests as f64 / (self.duration_us.max(1) as f64 / 1e6)
    }

    /// Every request that did not get the answer meant to be measured: socket errors,
    /// timeouts, non-2xx statuses and full-price fallbacks.
    pub fn total_errors(&self) -> u64 {
        let e = &self.errors;
        e.connect + e.read + e.write + e.timeout + e.status.max(self.non2xx) + self.degraded
    }
}

/// Finds and parses the `done()` line in wrk's output.
pub fn parse_output(output: &str) -> anyhow::Result<WrkStats> {
    let line = output
        .lines()
        .find_map(|l| l.trim().strip_prefix(MARKER))
        .context("no result line from the script's done() hook")?;
    serde_json::from_str(line).with_context(|| format!("cannot parse wrk's result line {line:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUTPUT: &str = "Running 1s test @ http://127.0.0.1:40000/products
  29000 requests in 1.00s, 12.00MB read
XTASK_BENCH_JSON {\"requests\":29000,\"duration_us\":1001000,\"bytes\":12582912,\"p50_us\":1050,\"p90_us\":1400,\"p99_us\":2300,\"max_us\":9000,\"mean_us\":1100.5,\"errors\":{\"connect\":0,\"read\":1,\"write\":0,\"status\":2,\"timeout\":3},\"non2xx\":2,\"degraded\":4}
";

    #[test]
    fn parses_the_done_line_among_wrk_s_own_output() {
        let stats = parse_output(OUTPUT).unwrap();
        let (requests, p50_us, p99_us) = (stats.requests, stats.p50_us, stats.p99_us);
        assert_eq!(
            (requests, p50_us, p99_us, stats.errors.timeout),
            (29000, 1050, 2300, 3)
        );
        assert!((stats.requests_per_sec() - 28971.03).abs() < 0.01);
        // read 1 + timeout 3 + non-2xx 2 (the 2 statuses above 399 are among them) + degraded 4
        assert_eq!(stats.total_errors(), 10);
    }

    #[test]
    fn missing_or_broken_line_is_an_error() {
        assert!(parse_output("Running 1s test\n").is_err());
        assert!(parse_output("XTASK_BENCH_JSON {\"requests\":1}\n").is_err());
    }

    #[test]
    fn threads_divide_connections() {
        assert_eq!([1, 32, 128, 33].map(threads_for), [1, 2, 2, 1]);
    }
}
