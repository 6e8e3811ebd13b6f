//! The OTLP receiver of a `--traced` pass: the `otlp-receiver` binary (a collector that counts
//! spans and keeps none), started before the services with its log beside theirs, the
//! variables that point both services at it, and the spans it got, read from the line it
//! prints when it is stopped (after the services, so that their last spans are counted).

use std::fs::{self, File};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};

use crate::services::{Services, Startup, StopSignal};

use super::logline::log_tail;
use super::report::TracesReceived;

/// The binary's name, in the release folder and in messages.
pub(super) const BINARY: &str = "otlp-receiver";
/// Its log, in the pass's logs folder.
pub(super) const LOG: &str = "otlp-receiver.log";
/// How its line with its addresses starts.
const LISTENING: &str = "otlp-receiver listening";
/// How long it has to print that line.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A running `otlp-receiver` (stopped when dropped).
#[derive(Debug)]
pub(super) struct Receiver {
    process: Services,
    grpc: SocketAddr,
    log: PathBuf,
}

/// Starts `bin_dir/otlp-receiver` with its output in `logs/otlp-receiver.log` and waits for
/// the line with its addresses.
pub(super) fn start(bin_dir: &Path, logs: &Path, stop: &StopSignal) -> anyhow::Result<Receiver> {
    let log = logs.join(LOG);
    let file = File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
    let file2 = file
        .try_clone()
        .with_context(|| format!("cannot reopen {}", log.display()))?;
    let child = Command::new(bin_dir.join(BINARY))
        .stdin(Stdio::null())
        .stdout(Stdio::from(file))
        .stderr(Stdio::from(file2))
        .spawn()
        .with_context(|| format!("cannot start {BINARY}"))?;
    let mut process = Services::new();
    process.push(BINARY, child);
    let listening = || grpc_addr(&fs::read_to_string(&log).unwrap_or_default());
    let not_up = || {
        format!(
            "{BINARY} did not print its addresses within {} s: {}",
            START_TIMEOUT.as_secs(),
            log_tail(&log)
        )
    };
    let grpc = match process.wait_until(stop, START_TIMEOUT, listening, not_up)? {
        Startup::Listening(addr) => addr,
        Startup::Stopped => bail!("interrupted"),
        Startup::Exited(_, status) => {
            bail!(
                "{BINARY} exited during start-up ({status}): {}",
                log_tail(&log)
            )
        }
    };
    println!("{BINARY} listening for OTLP/gRPC on {grpc}");
    Ok(Receiver { process, grpc, log })
}

impl Receiver {
    /// The variables that make a service export every span to this receiver over gRPC.
    pub(super) fn service_env(&self) -> [(&'static str, String); 3] {
        service_env(self.grpc)
    }

    /// The receiver's process id (for its peak memory).
    pub(super) fn pid(&self) -> Option<u32> {
        self.process.pids().first().map(|(_, pid)| *pid)
    }

    /// Stops the receiver (SIGTERM) and returns what it says it got; `None`, with a warning,
    /// if it did not say.
    pub(super) fn stop(mut self) -> Option<TracesReceived> {
        self.process.stop();
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let received = received(&text);
        match received {
            Some(r) => println!(
                "{BINARY} received {} spans in {} exports",
                r.spans, r.exports
            ),
            None => eprintln!(
                "warning: {BINARY} did not say how many spans it received (see {})",
                self.log.display()
            ),
        }
        received
    }
}

/// `OTEL_EXPORTER_OTLP_ENDPOINT`, `_PROTOCOL` and `OTEL_TRACES_SAMPLER` for a receiver whose
/// gRPC port is `grpc`: every span, not only those of sampled callers, goes out.
pub(super) fn service_env(grpc: SocketAddr) -> [(&'static str, String); 3] {
    [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{grpc}")),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc".to_owned()),
        ("OTEL_TRACES_SAMPLER", "always_on".to_owned()),
    ]
}

/// The `grpc=` address of the complete line where the receiver says it listens; `None` while
/// there is no such line yet, an error if the line holds no address.
fn grpc_addr(log: &str) -> anyhow::Result<Option<SocketAddr>> {
    let complete = log.rfind('\n').map_or("", |end| &log[..end]);
    let Some(line) = complete.lines().find(|l| l.starts_with(LISTENING)) else {
        return Ok(None);
    };
    let addr = line
        .split_whitespace()
        .find_map(|field| field.strip_prefix("grpc="))
        .with_context(|| format!("no grpc= address in {line:?}"))?;
    addr.parse()
        .map(Some)
        .with_context(|| format!("bad address {addr:?} in {line:?}"))
}

/// What the receiver's exit line (`received N spans in M exports`) says.
fn received(log: &str) -> Option<TracesReceived> {
    log.lines().rev().find_map(|line| {
        let rest = line.trim().strip_prefix("received ")?;
        let (spans, rest) = rest.split_once(" spans in ")?;
        let exports = rest.strip_suffix(" exports")?;
        Some(TracesReceived {
            spans: spans.parse().ok()?,
            exports: exports.parse().ok()?,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_grpc_address_of_a_whole_line() {
        let line = "otlp-receiver listening grpc=127.0.0.1:4317 http=127.0.0.1:4318\n";
        assert_eq!(
            grpc_addr(line).unwrap(),
            Some("127.0.0.1:4317".parse().unwrap())
        );
        assert_eq!(
            grpc_addr(line.trim_end()).unwrap(),
            None,
            "still being written"
        );
        assert_eq!(grpc_addr("").unwrap(), None);
        assert!(grpc_addr("otlp-receiver listening http=127.0.0.1:1\n").is_err());
        assert!(grpc_addr("otlp-receiver listening grpc=nowhere\n").is_err());
    }

    #[test]
    fn reads_what_it_received_from_its_last_line() {
        let log = "otlp-receiver listening grpc=127.0.0.1:1 http=127.0.0.1:2\n\
                   received 12345 spans in 67 exports\n";
        assert_eq!(
            received(log),
            Some(TracesReceived {
                spans: 12345,
                exports: 67
            })
        );
        assert_eq!(received("otlp-receiver listening grpc=127.0.0.1:1\n"), None);
        assert_eq!(received("received many spans in 3 exports\n"), None);
    }

    #[test]
    fn services_export_every_span_over_grpc() {
        let env = service_env("127.0.0.1:4317".parse().unwrap());
        assert!(env.contains(&(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "http://127.0.0.1:4317".to_owned()
        )));
        assert!(env.contains(&("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc".to_owned())));
        assert!(env.contains(&("OTEL_TRACES_SAMPLER", "always_on".to_owned())));
    }
}
