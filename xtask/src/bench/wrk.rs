//! Driving [wrk](https://github.com/wg/wrk), the HTTP load generator (Debian package `wrk`):
//! finding or installing it, writing its scripts ([`COUNTS`] and what each request sends),
//! running it, and reading back the one JSON line the script prints. A response that is not 2xx, or that
//! carries Catalog's `x-discount-unavailable` (full prices), counts as an error: such a run
//! measured something else. (Handing every response to Lua costs wrk a little CPU, alike in
//! every scenario.)

use std::io::{ErrorKind, Seek};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::services::{StopSignal, wait_child};

/// The prefix of the line the scripts' `done()` prints.
const MARKER: &str = "XTASK_BENCH_JSON ";

/// wrk, ready to run: its version (`wrk -v` without the copyright: "wrk 4.1.0 [epoll]"), the
/// folder its scripts are written to, and the signal that interrupts a run.
#[derive(Debug, Clone)]
pub struct Wrk {
    pub version: String,
    scripts: PathBuf,
    stop: StopSignal,
}

/// Finds wrk on PATH; if missing, installs Debian's package when running as root, else fails
/// saying how to install it. Its scripts go to `scripts`.
pub fn ensure(scripts: PathBuf, stop: &StopSignal) -> Result<Wrk> {
    // `wrk -v` prints its version and exits non-zero.
    let version = || Command::new("wrk").arg("-v").output();
    let out = match version() {
        Err(err) if err.kind() == ErrorKind::NotFound && rustix::process::geteuid().is_root() => {
            println!("wrk is not installed: installing Debian's package (apt-get install wrk)...");
            for args in [&["update", "-qq"][..], &["install", "-y", "-qq", "wrk"]] {
                let mut apt = Command::new("apt-get");
                let apt = apt.args(args).env("DEBIAN_FRONTEND", "noninteractive");
                let cannot = "wrk is not installed and apt-get cannot be run: install wrk";
                let what = format!("apt-get {}", args.join(" "));
                let limit = Duration::from_secs(900);
                let installed = wait_child(&mut apt.spawn().context(cannot)?, &what, stop, limit);
                installed.context("install wrk by hand and run again")?;
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
    Ok(Wrk {
        version: version.trim().to_owned(),
        scripts,
        stop: stop.clone(),
    })
}

/// The Lua every script starts with: it counts non-2xx and full-price responses and prints
/// [`MARKER`] and the run's figures as JSON when the run is done.
const COUNTS: &str = include_str!("lua/counts.lua");

/// wrk's threads for `connections`: 2 at most (the machine has few cores, and the services
/// need them), and a divisor of `connections` so that wrk opens exactly that many.
pub fn threads_for(connections: u32) -> u32 {
    2 - connections % 2
}

impl Wrk {
    /// Writes the script `{name}.lua`: [`COUNTS`], then `requests` (what each request sends).
    pub fn script(&self, name: &str, requests: &str) -> Result<PathBuf> {
        let script = self.scripts.join(format!("{name}.lua"));
        let written = std::fs::write(&script, [COUNTS, requests].concat());
        written.with_context(|| format!("cannot write {}", script.display()))?;
        Ok(script)
    }

    /// Runs wrk with `script` on `url`, `c` connections at a time for `secs` seconds, and
    /// returns what its `done()` printed.
    pub fn run(&self, script: &Path, url: &str, c: u32, secs: u64) -> Result<WrkStats> {
        let (stop, duration) = (&self.stop, Duration::from_secs(secs.max(1)));
        let mut output = tempfile::tempfile().context("cannot make a file for wrk's output")?;
        let (threads, secs) = (threads_for(c), duration.as_secs());
        let mut wrk = Command::new("wrk");
        wrk.args([format!("--threads={threads}"), format!("--connections={c}")]);
        wrk.args([format!("--duration={secs}s"), "--timeout=2s".into()]);
        wrk.arg("--script").arg(script).arg(url);
        let (out, err) = (output.try_clone()?, output.try_clone()?);
        let wrk = wrk.stdin(Stdio::null()).stdout(out).stderr(err).spawn();
        let (mut child, what) = (wrk.context("cannot run wrk")?, format!("wrk -c {c}"));
        let done = wait_child(&mut child, &what, stop, duration + Duration::from_secs(30));
        output.rewind()?;
        let out = std::io::read_to_string(&output)?;
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
pub fn parse_output(output: &str) -> Result<WrkStats> {
    let line = output.lines().find_map(|l| l.trim().strip_prefix(MARKER));
    let line = line.context("no result line from the script's done() hook")?;
    serde_json::from_str(line).with_context(|| format!("cannot parse wrk's result line {line:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_done_line_among_wrk_s_own_output_or_says_it_is_missing_or_broken() {
        let output = "Running 1s test @ http://127.0.0.1:40000/products\n  29000 requests in 1.00s\n\
            XTASK_BENCH_JSON {\"requests\":29000,\"duration_us\":1001000,\"bytes\":12582912,\
            \"p50_us\":1050,\"p90_us\":1400,\"p99_us\":2300,\"max_us\":9000,\"mean_us\":1100.5,\
            \"errors\":{\"connect\":0,\"read\":1,\"write\":0,\"status\":2,\"timeout\":3},\
            \"non2xx\":2,\"degraded\":4}\n";
        let stats = parse_output(output).unwrap();
        insta::assert_debug_snapshot!(stats);
        assert!((stats.requests_per_sec() - 28971.03).abs() < 0.01);
        // read 1 + timeout 3 + non-2xx 2 (the 2 statuses above 399 are among them) + degraded 4
        assert_eq!(stats.total_errors(), 10);
        assert!(parse_output("Running 1s test\n").is_err());
        let threads = [1, 32, 128, 33].map(threads_for);
        assert_eq!(threads, [1, 2, 2, 1], "divisors of the connections");
        assert!(parse_output("XTASK_BENCH_JSON {\"requests\":1}\n").is_err());
    }
}
