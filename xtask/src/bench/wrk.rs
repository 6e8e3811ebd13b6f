//! Driving [wrk](https://github.com/wg/wrk), the HTTP load generator (Debian package `wrk`):
//! finding or installing it, writing its Lua scripts, running it, and reading back the one
//! JSON line its `done()` hook prints.
//!
//! Every script counts, per wrk thread, responses that are not 2xx and responses carrying
//! Catalog's `x-discount-unavailable` header (full prices because Discount could not be
//! asked): such a run measured something else, so both are reported as errors. Defining a
//! `response()` hook makes wrk hand every response to Lua, which costs the load generator a
//! little CPU; it costs every scenario alike.

use std::ffi::OsStr;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use crate::services::{StopSignal, wait_child};

/// The prefix of the line the scripts' `done()` prints.
const MARKER: &str = "XTASK_BENCH_JSON ";

/// wrk, ready to run.
#[derive(Debug, Clone)]
pub struct Wrk {
    pub path: PathBuf,
    /// `wrk -v` without the copyright ("wrk 4.1.0 [epoll]").
    pub version: String,
}

/// Finds wrk on PATH; if missing, installs Debian's package when running as root, else fails
/// saying how to install it.
pub fn ensure(stop: &StopSignal) -> anyhow::Result<Wrk> {
    let path = match find_on_path("wrk") {
        Some(path) => path,
        None if rustix::process::geteuid().is_root() => {
            println!("wrk is not installed: installing Debian's package (apt-get install wrk)...");
            for args in [&["update", "-qq"][..], &["install", "-y", "-qq", "wrk"]] {
                let mut child = Command::new("apt-get")
                    .args(args)
                    .env("DEBIAN_FRONTEND", "noninteractive")
                    .spawn()
                    .context(
                        "wrk is not installed and apt-get cannot be run: install wrk \
                         (the HTTP benchmarking tool) with your package manager",
                    )?;
                let what = format!("apt-get {}", args.join(" "));
                let status = wait_child(&mut child, &what, stop, Duration::from_secs(900))?;
                if !status.success() {
                    bail!("{what} failed ({status}): install wrk by hand and run again");
                }
            }
            find_on_path("wrk").context("apt-get installed wrk but it is not on PATH")?
        }
        None => bail!(
            "wrk (the HTTP benchmarking tool) is not installed. Install it, then run again:\n    \
             sudo apt-get install wrk      # Debian, Ubuntu\n    \
             brew install wrk              # macOS"
        ),
    };
    // `wrk -v` prints its version and exits non-zero.
    let out = Command::new(&path)
        .arg("-v")
        .output()
        .with_context(|| format!("cannot run {}", path.display()))?;
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let first_line = text.lines().next().unwrap_or("wrk");
    let version = first_line
        .split(" Copyright")
        .next()
        .unwrap_or(first_line)
        .trim()
        .to_owned();
    Ok(Wrk { path, version })
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        path.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    }
    #[cfg(not(unix))]
    path.is_file()
}

/// What the requests of a scenario look like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requests {
    /// The same request every time, with `X-USER-ID: <id>` if given.
    Fixed(Option<i32>),
    /// `X-USER-ID` drawn per request: 25% customer 1 (eligible), 50% customers 2..=500
    /// (known, not eligible), 25% 100000..=199999 (unknown). Each wrk thread cycles through
    /// 1,000 requests drawn from a fixed seed, so every run sends the same mix.
    CustomerMix,
}

/// The Lua script for `requests`.
pub fn script(requests: Requests) -> String {
    let mut lua = String::from(COMMON);
    match requests {
        Requests::Fixed(None) => {}
        Requests::Fixed(Some(id)) => {
            lua.push_str(&format!("\nwrk.headers[\"X-USER-ID\"] = \"{id}\"\n"));
        }
        Requests::CustomerMix => lua.push_str(CUSTOMER_MIX),
    }
    lua
}

const COMMON: &str = r#"-- Written by `cargo xtask bench`: counts non-2xx and degraded responses per thread and
-- prints one JSON line when the run is done.
local threads = {}
local thread_count = 0

function setup(thread)
  thread_count = thread_count + 1
  thread:set("thread_id", thread_count)
  table.insert(threads, thread)
end

non2xx = 0
degraded = 0

function response(status, headers, body)
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
  end
  if headers["x-discount-unavailable"] ~= nil or headers["X-Discount-Unavailable"] ~= nil then
    degraded = degraded + 1
  end
end

function done(summary, latency, requests)
  local n2, dg = 0, 0
  for _, t in ipairs(threads) do
    n2 = n2 + (t:get("non2xx") or 0)
    dg = dg + (t:get("degraded") or 0)
  end
  local e = summary.errors
  local f = math.floor
  io.write(string.format(
    'XTASK_BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,'
      .. '"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f,'
      .. '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},'
      .. '"non2xx":%d,"degraded":%d}\n',
    summary.requests, summary.duration, summary.bytes,
    f(latency:percentile(50)), f(latency:percentile(90)), f(latency:percentile(99)),
    f(latency.max), latency.mean,
    e.connect, e.read, e.write, e.status, e.timeout,
    n2, dg))
end
"#;

const CUSTOMER_MIX: &str = r#"
-- A fixed pseudo-random mix of customers (Park-Miller generator, exact in doubles).
local pool = {}
local next_request = 0

function init(args)
  local state = 12345 + 7919 * (thread_id or 1)
  local function rand()
    state = (state * 16807) % 2147483647
    return state
  end
  for i = 1, 1000 do
    local r = rand() % 4
    local user
    if r == 0 then
      user = 1
    elseif r == 3 then
      user = 100000 + rand() % 100000
    else
      user = 2 + rand() % 499
    end
    pool[i] = wrk.format(nil, nil, { ["X-USER-ID"] = tostring(user) })
  end
end

function request()
  next_request = next_request % #pool + 1
  return pool[next_request]
end
"#;

/// One wrk run.
#[derive(Debug, Clone, Copy)]
pub struct Run<'a> {
    pub script: &'a Path,
    pub url: &'a str,
    pub connections: u32,
    pub duration: Duration,
}

/// wrk's threads for `connections`: 2 at most (the machine has few cores, and the services
/// need them), and a divisor of `connections` so that wrk opens exactly that many.
pub fn threads_for(connections: u32) -> u32 {
    if connections >= 2 && connections.is_multiple_of(2) {
        2
    } else {
        1
    }
}

impl Wrk {
    /// Runs wrk and returns what its `done()` printed.
    pub fn run(&self, run: Run<'_>, stop: &StopSignal) -> anyhow::Result<WrkStats> {
        let threads = threads_for(run.connections);
        let secs = run.duration.as_secs().max(1);
        let mut cmd = Command::new(&self.path);
        cmd.args([
            format!("--threads={threads}"),
            format!("--connections={}", run.connections),
            format!("--duration={secs}s"),
            "--timeout=2s".to_owned(),
        ])
        .arg::<&OsStr>("--script".as_ref())
        .arg(run.script)
        .arg(run.url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot run {}", self.path.display()))?;
        let stdout = child.stdout.take().context("wrk's stdout")?;
        let stderr = child.stderr.take().context("wrk's stderr")?;
        let read_all = |mut pipe: Box<dyn Read + Send>| {
            std::thread::spawn(move || {
                let mut text = String::new();
                let _ = pipe.read_to_string(&mut text);
                text
            })
        };
        let (out, err) = (read_all(Box::new(stdout)), read_all(Box::new(stderr)));
        let what = format!("wrk -c {}", run.connections);
        let status = wait_child(
            &mut child,
            &what,
            stop,
            run.duration + Duration::from_secs(30),
        )?;
        let out = out.join().unwrap_or_default();
        let err = err.join().unwrap_or_default();
        if !status.success() {
            bail!("{what} failed ({status}): {}", err.trim());
        }
        parse_output(&out).with_context(|| format!("unexpected output from {what}:\n{out}{err}"))
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
        if self.duration_us == 0 {
            return 0.0;
        }
        self.requests as f64 / (self.duration_us as f64 / 1e6)
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
  2 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.10ms  350.00us   9.00ms   90.00%
    Req/Sec    14.50k     1.00k   16.00k    70.00%
  29000 requests in 1.00s, 12.00MB read
Requests/sec:  28950.12
Transfer/sec:     11.98MB
XTASK_BENCH_JSON {\"requests\":29000,\"duration_us\":1001000,\"bytes\":12582912,\"p50_us\":1050,\"p90_us\":1400,\"p99_us\":2300,\"max_us\":9000,\"mean_us\":1100.5,\"errors\":{\"connect\":0,\"read\":1,\"write\":0,\"status\":2,\"timeout\":3},\"non2xx\":2,\"degraded\":4}
";

    #[test]
    fn parses_the_done_line_among_wrk_s_own_output() {
        let stats = parse_output(OUTPUT).unwrap();
        assert_eq!(stats.requests, 29000);
        assert_eq!(stats.p50_us, 1050);
        assert_eq!(stats.p99_us, 2300);
        assert_eq!(stats.errors.timeout, 3);
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
        assert_eq!(threads_for(1), 1);
        assert_eq!(threads_for(32), 2);
        assert_eq!(threads_for(128), 2);
        assert_eq!(threads_for(33), 1);
    }

    #[test]
    fn scripts_set_what_each_scenario_sends() {
        assert!(!script(Requests::Fixed(None)).contains("X-USER-ID"));
        assert!(script(Requests::Fixed(Some(1))).contains("wrk.headers[\"X-USER-ID\"] = \"1\""));
        let mix = script(Requests::CustomerMix);
        assert!(mix.contains("function request()"));
        assert!(mix.contains("function done("));
    }
}
