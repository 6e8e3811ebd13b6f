//! Getting a pass's processes up, each on port 0 with its output in a log file: in a traced
//! pass the OTLP receiver (`otlp-receiver`, a collector that counts spans and keeps none) first,
//! then one Discount and the Catalogs the pass needs, with their certificates, the pass's
//! `RUST_LOG` and flags, and none of the caller's service or `OTEL_*` settings. The address each
//! binds is read from the line it logs.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::measure::Endpoints;
use super::results::TracesReceived;
use super::scenarios::{Catalog, PassSettings, Source};
use super::{Env, data};
use process_testing::Services;

/// How long each process has to log that it listens.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// The OTLP receiver's binary, and its log.
pub(super) const RECEIVER: &str = "otlp-receiver";
const RECEIVER_LOG: &str = "otlp-receiver.log";

#[derive(Debug)]
pub(super) struct Started {
    /// Every process started, the OTLP receiver first, so that it is stopped last (when dropped
    /// too) and counts the services' last spans.
    pub(super) services: Services,
    /// Where each Catalog, its operations port and Discount's answer.
    pub(super) catalogs: Vec<(Catalog, Endpoints)>,
    receiver_log: Option<PathBuf>,
}

/// Starts, as `settings` says and with their logs in `logs`: the OTLP receiver if traced, one
/// Discount, then `catalogs` pointed at it, each once the one before has logged where it
/// listens.
pub(super) fn start(
    env: &Env<'_>,
    settings: &PassSettings,
    catalogs: &[Catalog],
    logs: &Path,
) -> Result<Started> {
    let mut services = Services::default();
    let stopped = || env.stop.requested();
    // The address (`addr=`) in the first line of `log` with `marker`, once logged.
    let addr = |services: &mut Services, log: &str, marker: &str| {
        services.logged_addr(&stopped, START_TIMEOUT, &logs.join(log), (marker, "addr"))
    };
    let mut otel_env = Vec::new();
    let receiver_log = settings.traced.then(|| logs.join(RECEIVER_LOG));
    if let Some(log) = &receiver_log {
        let mut receiver = Command::new(env.bin_dir.join(RECEIVER));
        services.spawn(RECEIVER, &mut receiver, Some(log.clone()))?;
        let line = ("otlp-receiver listening", "grpc");
        let grpc = services.logged_addr(&stopped, START_TIMEOUT, log, line)?;
        println!("{RECEIVER} listening for OTLP/gRPC on {grpc}");
        otel_env = service_env(grpc).to_vec();
    }
    let service = |binary: &str| {
        let mut cmd = service_command(&env.bin_dir.join(binary), settings.rust_log, &otel_env);
        cmd.arg("--certs-dir").arg(env.certs);
        cmd
    };

    let mut discount = service("discount-service");
    discount.args(["--listen", "127.0.0.1:0"]);
    discount.args(&settings.discount_args);
    let log = Some(logs.join("discount.log"));
    services.spawn("discount-service", &mut discount, log)?;
    let discount_addr = addr(&mut services, "discount.log", "Discount listening")?;
    let ops = "Discount operations port listening";
    let discount_ops = addr(&mut services, "discount.log", ops)?;

    let mut started = Vec::new();
    for &catalog in catalogs {
        let mut cmd = service("catalog-service");
        cmd.args(["--listen", "127.0.0.1:0", "--ops-listen", "127.0.0.1:0"]);
        cmd.arg("--discount-addr").arg(discount_addr.to_string());
        match catalog.source {
            Source::Embedded => {}
            Source::Files(products) => {
                cmd.arg("--products").arg(env.data.join(products));
                cmd.arg("--customers").arg(env.data.join(data::CUSTOMERS));
            }
            Source::Database => {
                let url = env.database_url.context("no database to serve from")?;
                cmd.args(["--database-url", url]);
            }
        }
        let (spawned, log) = (Instant::now(), Some(logs.join(catalog.log)));
        services.spawn(catalog.name, cmd.args(&settings.catalog_args), log)?;
        let public = addr(&mut services, catalog.log, "Catalog listening")?;
        let ops = "Catalog operations port listening";
        let catalog_ops = addr(&mut services, catalog.log, ops)?;
        let endpoints = Endpoints {
            catalog: public,
            catalog_ops,
            discount_ops,
            spawned,
        };
        started.push((catalog, endpoints));
    }
    Ok(Started {
        services,
        catalogs: started,
        receiver_log,
    })
}

impl Started {
    /// Stops every process, and returns what the OTLP receiver of a traced pass said it got as
    /// it exited (`received N spans in M exports`, in its log); `None`, with a warning, if it
    /// did not say.
    pub(super) fn stop(mut self) -> Option<TracesReceived> {
        self.services.stop();
        let log = self.receiver_log.take()?;
        let received = received(&std::fs::read_to_string(&log).unwrap_or_default());
        if received.is_none() {
            let log = log.display();
            eprintln!("warning: {RECEIVER} did not say how many spans it got (see {log})");
        }
        received
    }
}

fn received(log: &str) -> Option<TracesReceived> {
    let mut lines = log.lines().rev();
    let line = lines.find_map(|l| l.trim().strip_prefix("received "))?;
    let (spans, exports) = line.split_once(" spans in ")?;
    let exports = exports.strip_suffix(" exports")?.parse().ok()?;
    let spans = spans.parse().ok()?;
    Some(TracesReceived { spans, exports })
}

/// The variables that make a service export every span (not only those of sampled callers)
/// over gRPC to the receiver whose gRPC port is `grpc`.
fn service_env(grpc: SocketAddr) -> [(&'static str, String); 3] {
    [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{grpc}")),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc".to_owned()),
        ("OTEL_TRACES_SAMPLER", "always_on".to_owned()),
    ]
}

/// A service command with `RUST_LOG=rust_log`, the OpenTelemetry variables `otel_env` (none:
/// tracing off), and nothing else from the caller's environment (so every run is configured
/// alike, and a shell cannot turn tracing on).
fn service_command(binary: &Path, rust_log: &str, otel: &[(&str, String)]) -> Command {
    let mut cmd = Command::new(binary);
    cmd.env_clear().envs(otel.iter().cloned());
    cmd.env("RUST_LOG", rust_log).env("NO_COLOR", "1");
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn services_inherit_no_variable_and_are_traced_only_when_asked() {
        let env = |otel: &[_]| {
            let out = service_command("/usr/bin/env".as_ref(), "info", otel).output();
            let out = String::from_utf8(out.unwrap().stdout).unwrap();
            let mut vars: Vec<&str> = out.lines().collect();
            vars.sort();
            vars.join(" ")
        };
        assert_eq!(env(&[]), "NO_COLOR=1 RUST_LOG=info");
        let traced = env(&service_env("127.0.0.1:4317".parse().unwrap()));
        let otel = "OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4317 \
            OTEL_EXPORTER_OTLP_PROTOCOL=grpc OTEL_TRACES_SAMPLER=always_on";
        assert_eq!(traced, format!("NO_COLOR=1 {otel} RUST_LOG=info"));
    }

    #[test]
    fn reads_what_the_receiver_got_from_its_last_line() {
        let log = "otlp-receiver listening grpc=127.0.0.1:1 http=127.0.0.1:2\n\
                   received 12345 spans in 67 exports\n";
        let got = received(log).map(|r| (r.spans, r.exports));
        assert_eq!(got, Some((12345, 67)));
        assert_eq!(received("received many spans in 3 exports\n"), None);
    }
}
