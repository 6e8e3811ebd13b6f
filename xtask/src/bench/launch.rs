//! Getting a pass's processes up, each on port 0 with its output in a log file: in a traced
//! pass the OTLP receiver (`otlp-receiver`, a collector that counts spans and keeps none) first,
//! then one Discount and the Catalogs the pass needs, with their certificates, the pass's
//! `RUST_LOG` and flags, and none of the caller's service or `OTEL_*` settings. The address each
//! binds is read from the line it logs.

use std::ffi::OsString;
use std::fs::{self, File};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::Context;
use process_testing::{addr_field, whole_line_with};

use super::measure::Endpoints;
use super::results::TracesReceived;
use super::scenarios::{Catalog, PassSettings};
use super::{Env, data};
use crate::services::{Services, StopSignal, log_tail};

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
/// Discount, then `catalogs` pointed at it; and waits until each has logged where it listens.
pub(super) fn start(
    env: &Env<'_>,
    settings: &PassSettings,
    catalogs: &[Catalog],
    logs: &Path,
) -> anyhow::Result<Started> {
    let mut up = Launcher::new(logs, env.stop, START_TIMEOUT);
    let mut otel_env = Vec::new();
    let receiver_log = settings.traced.then(|| logs.join(RECEIVER_LOG));
    if settings.traced {
        let mut receiver = Command::new(env.bin_dir.join(RECEIVER));
        up.spawn(RECEIVER, RECEIVER_LOG, &mut receiver)?;
        let grpc = up.addr(RECEIVER_LOG, "otlp-receiver listening", "grpc")?;
        println!("{RECEIVER} listening for OTLP/gRPC on {grpc}");
        otel_env = service_env(grpc).to_vec();
    }
    let service = |binary: &str| {
        let binary = env.bin_dir.join(binary);
        service_command(&binary, env.certs, settings.rust_log, &otel_env)
    };

    let mut discount = service("discount-service");
    discount.args(["--listen", "127.0.0.1:0"]);
    discount.args(&settings.discount_args);
    up.spawn("discount-service", "discount.log", &mut discount)?;
    let discount_addr = up.addr("discount.log", "Discount listening", "addr")?;
    let discount_ops = up.addr("discount.log", "Discount operations port listening", "addr")?;

    for catalog in catalogs {
        let mut cmd = service("catalog-service");
        cmd.args(["--listen", "127.0.0.1:0", "--ops-listen", "127.0.0.1:0"]);
        cmd.arg("--discount-addr").arg(discount_addr.to_string());
        if let Some(products) = catalog.products {
            cmd.arg("--products").arg(env.data.join(products));
            cmd.arg("--customers").arg(env.data.join(data::CUSTOMERS));
        }
        up.spawn(catalog.name, catalog.log, cmd.args(&settings.catalog_args))?;
    }
    let mut started = Vec::new();
    for &catalog in catalogs {
        let public = up.addr(catalog.log, "Catalog listening", "addr")?;
        let ops = up.addr(catalog.log, "Catalog operations port listening", "addr")?;
        started.push((
            catalog,
            Endpoints {
                catalog: public,
                catalog_ops: ops,
                discount_ops,
            },
        ));
    }
    let services = up.services;
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
        let received = received(&fs::read_to_string(&log).unwrap_or_default());
        if received.is_none() {
            let log = log.display();
            eprintln!("warning: {RECEIVER} did not say how many spans it got (see {log})");
        }
        received
    }
}

/// Starts processes with their output in log files in one folder, and waits for each to log
/// where it listens.
struct Launcher<'a> {
    services: Services,
    logs: &'a Path,
    stop: &'a StopSignal,
    /// How long each process has to log where it listens.
    timeout: Duration,
}

impl<'a> Launcher<'a> {
    fn new(logs: &'a Path, stop: &'a StopSignal, timeout: Duration) -> Self {
        Self {
            services: Services::default(),
            logs,
            stop,
            timeout,
        }
    }

    /// Starts `cmd` as `name`, its output in `log` in the logs folder.
    fn spawn(&mut self, name: &str, log: &str, cmd: &mut Command) -> anyhow::Result<()> {
        let log = self.logs.join(log);
        let file = File::create(&log);
        let file = file.with_context(|| format!("cannot create {}", log.display()))?;
        cmd.stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file);
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {name}"))?;
        self.services.push(name, child, Some(log));
        Ok(())
    }

    /// Waits until a whole line containing `marker` is in `log`, and returns the address in
    /// that line's field `field`. Fails, with the end of the log concerned, if a process exits
    /// first, if the line has no such address, or if none comes in time; fails too on Ctrl-C.
    fn addr(&mut self, log: &str, marker: &str, field: &str) -> anyhow::Result<SocketAddr> {
        let log = self.logs.join(log);
        let listening = || {
            let text = fs::read_to_string(&log)
                .with_context(|| format!("cannot read {}", log.display()))?;
            let Some(line) = whole_line_with(&text, marker) else {
                return Ok(None);
            };
            let addr = addr_field(line, field).map(Some);
            addr.with_context(|| format!("no address {field}= in {line:?} ({})", log.display()))
        };
        let not_up = || {
            let (secs, tail) = (self.timeout.as_secs_f64(), log_tail(&log));
            let log = log.display();
            format!(
                "nothing logged that it listens (\"{marker}\" in {log}) within {secs} s: {tail}"
            )
        };
        let (stop, timeout) = (self.stop, self.timeout);
        let found = self.services.wait_until(stop, timeout, listening, not_up)?;
        found.context("interrupted")
    }
}

fn received(log: &str) -> Option<TracesReceived> {
    let line = log
        .lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("received "))?;
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

/// A service command with its certificates, `RUST_LOG=rust_log`, the OpenTelemetry variables
/// `otel_env` (none: tracing off), and none of the services' environment variables, nor any
/// `OTEL_*` one, from the caller's shell (so every run is configured alike, and a shell cannot
/// turn tracing on).
fn service_command(
    binary: &Path,
    certs: &Path,
    rust_log: &str,
    otel: &[(&str, String)],
) -> Command {
    let mut cmd = Command::new(binary);
    remove_service_vars(&mut cmd, std::env::vars_os().map(|(key, _)| key));
    cmd.envs(otel.iter().map(|(key, value)| (key, value)));
    cmd.env("RUST_LOG", rust_log).env("NO_COLOR", "1");
    cmd.arg("--certs-dir").arg(certs);
    cmd
}

/// Removes from `cmd`'s environment each of `inherited` that configures a service: its own
/// variables (`CATALOG_*`, `DISCOUNT_*`, `CERTS_DIR`, `LOG_FORMAT`) and OpenTelemetry's.
fn remove_service_vars(cmd: &mut Command, inherited: impl IntoIterator<Item = OsString>) {
    for key in inherited {
        let text = key.to_string_lossy();
        let prefixed = ["CATALOG_", "DISCOUNT_", "OTEL_"]
            .iter()
            .any(|p| text.starts_with(p));
        if prefixed || text == "CERTS_DIR" || text == "LOG_FORMAT" {
            cmd.env_remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Waits as the benchmark does, at most `timeout`, for a fake Discount: `script` run by `sh`.
    fn wait_for_discount(script: &str, timeout: Duration) -> String {
        let logs = tempfile::tempdir().unwrap();
        let stop = StopSignal::default();
        let mut up = Launcher::new(logs.path(), &stop, timeout);
        let mut sh = Command::new("sh");
        up.spawn("discount-service", "discount.log", sh.args(["-c", script]))
            .unwrap();
        let addr = up.addr("discount.log", "Discount listening", "addr");
        addr.map_or_else(|err| format!("{err:#}"), |addr| addr.to_string())
    }

    #[test]
    fn waits_for_the_line_and_reads_its_address_or_says_why_not_with_the_end_of_the_log() {
        let secs = Duration::from_secs(20);
        let listening = "echo starting; sleep 0.3; \
            echo 'INFO x: Discount listening (gRPC) addr=127.0.0.1:4242'; exec sleep 30";
        assert_eq!(wait_for_discount(listening, secs), "127.0.0.1:4242");
        let err = wait_for_discount("echo 'ERROR --listen: cannot bind'; exit 3", secs);
        assert!(
            err.starts_with("discount-service exited (exit status: 3): ERROR --listen"),
            "{err}"
        );
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

    /// `cmd`'s environment changes: `KEY=value`, or `KEY` if removed, then a space each.
    fn env_of(cmd: &Command) -> String {
        let text = |s: &std::ffi::OsStr| s.to_string_lossy().into_owned();
        let value = |v: Option<_>| v.map(|v| format!("={}", text(v))).unwrap_or_default();
        cmd.get_envs()
            .map(|(k, v)| text(k) + &value(v) + " ")
            .collect()
    }

    #[test]
    fn services_inherit_no_otel_or_service_variable_and_are_traced_only_when_asked() {
        let mut cmd = Command::new("true");
        let inherited =
            "OTEL_SDK_DISABLED CATALOG_LISTEN DISCOUNT_LISTEN CERTS_DIR LOG_FORMAT PATH";
        let inherited = inherited.split(' ').chain(["MY_OTEL"]).map(OsString::from);
        remove_service_vars(&mut cmd, inherited);
        let removed = "CATALOG_LISTEN CERTS_DIR DISCOUNT_LISTEN LOG_FORMAT OTEL_SDK_DISABLED ";
        assert_eq!(env_of(&cmd), removed);

        let service = |otel| service_command("true".as_ref(), "certs".as_ref(), "info", otel);
        let plain = env_of(&service(&[]));
        let otel_set = |var: &str| var.starts_with("OTEL_") && var.contains('=');
        assert!(
            plain.contains("RUST_LOG=info ") && !plain.split(' ').any(otel_set),
            "{plain}"
        );
        let traced = env_of(&service(&service_env("127.0.0.1:4317".parse().unwrap())));
        let endpoint = "OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4317 ";
        assert!(traced.contains(endpoint), "{traced}");
        assert!(
            traced.contains("OTEL_TRACES_SAMPLER=always_on "),
            "{traced}"
        );
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
