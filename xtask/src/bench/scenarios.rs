//! What `cargo xtask bench` measures and how: its options ([`BenchArgs`]), the services'
//! settings in each pass ([`PassSettings`]: the defaults, then the tuned pass), the Catalog
//! processes ([`Catalog`]) and the four scenarios ([`SCENARIOS`]) with the answers each must get
//! before it is measured.

use std::path::PathBuf;

use serde::Serialize;

use super::data;

/// `cargo xtask bench` options.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Seconds each measurement runs.
    #[arg(long, value_name = "SECS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub duration: u64,
    /// Seconds of unrecorded load before each scenario's measurements.
    #[arg(long, value_name = "SECS", default_value_t = 3,
          value_parser = clap::value_parser!(u64).range(1..=600))]
    pub warmup: u64,
    /// Concurrent connections to measure at (wrk -c), comma-separated.
    #[arg(long, value_name = "N,N,..", value_delimiter = ',', default_value = "1,32,128",
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub connections: Vec<u32>,
    /// Check that the benchmark still works: 1 s of warm-up and 1 s of load per scenario, at
    /// 32 connections only.
    #[arg(long, conflicts_with_all = ["duration", "warmup", "connections"])]
    pub smoke: bool,
    /// Folder for results.md, results.json, plot.svg and the services' logs
    /// [default: target/bench].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Tokio worker threads for Discount (`--worker-threads`) in both passes [default: not
    /// passed in the main pass, Discount's own default of one per core; 1 in the tuned pass].
    #[arg(long, value_name = "N",
          value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub discount_threads: Option<u16>,
    /// Scenarios to measure again in a tuned pass after the main one, on fresh processes with
    /// the access log off (`RUST_LOG=info,access=off`) and Discount on one worker thread:
    /// comma-separated keys, `all` or `none`. Its figures are shown beside the defaults'.
    #[arg(long, value_name = "A,B,..|all|none", value_delimiter = ',', default_value = "A,B",
          ignore_case = true, value_parser = ["A", "B", "C", "D", "all", "none"])]
    pub tuned: Vec<String>,
    /// An extra flag for every Catalog of the tuned pass (repeatable), e.g.
    /// `--tuned-catalog-arg=--discount-rpcs-in-flight=4`.
    #[arg(long, value_name = "FLAG", allow_hyphen_values = true)]
    pub tuned_catalog_arg: Vec<String>,
    /// An extra flag for Discount in the tuned pass (repeatable).
    #[arg(long, value_name = "FLAG", allow_hyphen_values = true)]
    pub tuned_discount_arg: Vec<String>,
    /// Both services export every request's spans (OTEL_TRACES_SAMPLER=always_on) over
    /// OTLP/gRPC to a local receiver (`otlp-receiver`) in every pass; off by default, as a user
    /// runs them.
    #[arg(long)]
    pub traced: bool,
}

impl BenchArgs {
    /// These options with `--smoke` applied and the concurrencies sorted.
    pub(super) fn normalised(mut self) -> Self {
        if self.smoke {
            (self.duration, self.warmup, self.connections) = (1, 1, vec![32]);
        }
        self.connections.sort_unstable();
        self.connections.dedup();
        self
    }

    /// The tuned pass and its scenarios, if any.
    pub(super) fn tuned_pass(&self) -> Option<(PassSettings, Vec<Scenario>)> {
        let tuned = |s: &Scenario| {
            let picks = |key: &String| key == "all" || key.eq_ignore_ascii_case(s.key);
            self.tuned.iter().any(picks)
        };
        let scenarios: Vec<Scenario> = SCENARIOS.into_iter().filter(tuned).collect();
        (!scenarios.is_empty()).then(|| (PassSettings::new(true, self), scenarios))
    }
}

/// How the services of one pass are run, as written to `results.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PassSettings {
    /// `default` (the services' defaults), `main` (the main pass with `--discount-threads`) or
    /// `tuned`; `traced`, `main-traced` and `tuned-traced` with `--traced`.
    pub name: &'static str,
    pub rust_log: &'static str,
    /// Discount's `--worker-threads`; `None`: not passed (one per core).
    pub discount_worker_threads: Option<u16>,
    /// Every flag given to Discount beyond its certificates and `--listen`.
    pub discount_args: Vec<String>,
    /// Every flag given to each Catalog beyond its certificates, data files, `--listen`,
    /// `--ops-listen` and `--discount-addr`.
    pub catalog_args: Vec<String>,
    /// Whether both services export every span to a local `otlp-receiver` (`--traced`);
    /// otherwise they get no `OTEL_*` variable and trace nothing.
    pub traced: bool,
}

/// `RUST_LOG` as a user runs the services: one access-log line per HTTP request and per RPC.
const DEFAULT_RUST_LOG: &str = "info";

impl PassSettings {
    /// The main pass (the defaults, but for `--discount-threads`), or the tuned pass: no access
    /// log, one Discount worker thread (unless `--discount-threads`) and the extra flags asked
    /// for. Both traced with `--traced`.
    pub(super) fn new(tuned: bool, args: &BenchArgs) -> Self {
        let threads = args.discount_threads.or(tuned.then_some(1));
        let name = match (tuned, args.discount_threads, args.traced) {
            (true, _, false) => "tuned",
            (true, _, true) => "tuned-traced",
            (false, None, false) => "default",
            (false, None, true) => "traced",
            (false, Some(_), false) => "main",
            (false, Some(_), true) => "main-traced",
        };
        // The operations port only answers the bench's scrapes: Discount records its metrics
        // whether the port is open or not.
        let mut discount_args = vec!["--ops-listen".to_owned(), "127.0.0.1:0".to_owned()];
        if let Some(n) = threads {
            discount_args.extend(["--worker-threads".to_owned(), n.to_string()]);
        }
        let extra = |args: &[String]| if tuned { args.to_vec() } else { Vec::new() };
        discount_args.extend(extra(&args.tuned_discount_arg));
        Self {
            name,
            rust_log: if tuned {
                "info,access=off"
            } else {
                DEFAULT_RUST_LOG
            },
            discount_worker_threads: threads,
            discount_args,
            catalog_args: extra(&args.tuned_catalog_arg),
            traced: args.traced,
        }
    }

    pub fn describe(&self) -> String {
        let access = if self.rust_log == DEFAULT_RUST_LOG {
            "on"
        } else {
            "off"
        };
        let threads = match self.discount_worker_threads {
            None => " (worker threads: its default, one per core)",
            Some(_) => "",
        };
        let catalog = match self.catalog_args.as_slice() {
            [] => "Catalog on its defaults".to_owned(),
            args => format!("Catalog `{}`", args.join(" ")),
        };
        let tracing = if self.traced {
            "tracing on: every request's spans (`OTEL_TRACES_SAMPLER=always_on`) exported over \
             OTLP/gRPC to a local `otlp-receiver`"
        } else {
            "tracing off (no `OTEL_*` variable)"
        };
        format!(
            "`RUST_LOG={}` (access log {access}); Discount `{}`{threads}; {catalog}; {tracing}",
            self.rust_log,
            self.discount_args.join(" ")
        )
    }
}

/// A Catalog process: its name in messages and results, its log file, and where it reads its
/// catalog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Catalog {
    pub(super) name: &'static str,
    pub(super) log: &'static str,
    pub(super) source: Source,
}

/// Where a Catalog process reads its catalog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Source {
    /// SPEC's embedded products and customers.
    Embedded,
    /// This products file, with the 500 customers' file.
    Files(&'static str),
}

const SPEC: Catalog = Catalog {
    name: "catalog-service (SPEC data)",
    log: "catalog-spec.log",
    source: Source::Embedded,
};
const CUSTOMERS: Catalog = Catalog {
    name: "catalog-service (3 products, 500 customers)",
    log: "catalog-customers.log",
    source: Source::Files(data::SPEC_PRODUCTS),
};
const LARGE: Catalog = Catalog {
    name: "catalog-service (10,000 products, 500 customers)",
    log: "catalog-large.log",
    source: Source::Files(data::LARGE_PRODUCTS),
};

#[derive(Debug, Clone, Copy)]
pub(super) struct Scenario {
    pub(super) key: &'static str,
    pub(super) description: &'static str,
    pub(super) catalog: Catalog,
    pub(super) path: &'static str,
    /// Lua run after [`super::wrk::COUNTS`]: what each request sends.
    pub(super) requests: &'static str,
    /// Requests to check before measuring: their `X-USER-ID`, how many products the answer
    /// must hold, and whether every product priced above zero carries a `discount_value` (else
    /// none does).
    pub(super) probes: &'static [(Option<&'static str>, usize, bool)],
}

/// Every request as customer 1, SPEC's John Snow (the one Discount rewards).
const USER_1: &str = "wrk.headers[\"X-USER-ID\"] = \"1\"\n";

pub(super) const SCENARIOS: [Scenario; 4] = [
    Scenario {
        key: "A",
        description: "GET /products, no X-USER-ID",
        catalog: SPEC,
        path: "/products",
        requests: "",
        probes: &[(None, 3, false)],
    },
    Scenario {
        key: "B",
        description: "GET /products, X-USER-ID: 1",
        catalog: SPEC,
        path: "/products",
        requests: USER_1,
        probes: &[(Some("1"), 3, true)],
    },
    Scenario {
        key: "C",
        description: "GET /products, customer mix (25% id 1, 50% 2..=500, 25% unknown)",
        catalog: CUSTOMERS,
        path: "/products",
        // A fixed mix of customers: see the script.
        requests: include_str!("lua/customer_mix.lua"),
        probes: &[
            (Some("1"), 3, true),
            (Some("2"), 3, false),
            (Some("500"), 3, false),
            (Some("100000"), 3, false),
        ],
    },
    Scenario {
        key: "D",
        description: "GET /products?limit=100 of 10,000, X-USER-ID: 1",
        catalog: LARGE,
        path: "/products?limit=100",
        requests: USER_1,
        probes: &[(Some("1"), 100, true)],
    },
];

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        bench: BenchArgs,
    }

    /// The options of `cargo xtask bench ARGS`, normalised.
    pub(in crate::bench) fn args(args: &[&str]) -> BenchArgs {
        let args = std::iter::once("bench").chain(args.iter().copied());
        Cli::try_parse_from(args).unwrap().bench.normalised()
    }

    /// The main pass and the tuned one (if any) with its scenarios' keys.
    pub(in crate::bench) fn passes(
        args: &[&str],
    ) -> (PassSettings, Option<(PassSettings, Vec<&'static str>)>) {
        let args = self::args(args);
        let keys = |(pass, s): (_, Vec<Scenario>)| (pass, s.iter().map(|s| s.key).collect());
        (PassSettings::new(false, &args), args.tuned_pass().map(keys))
    }

    /// Each pass's name, `RUST_LOG`, Discount's and each Catalog's flags, whether traced, and
    /// scenarios, for `cargo xtask bench ARGS`.
    fn summary(args: &[&str]) -> String {
        let (main, tuned) = passes(args);
        let summary = |p: &PassSettings, keys: &[&str]| {
            let (discount, catalog) = (p.discount_args.join(" "), p.catalog_args.join(" "));
            let keys = keys.join(",");
            format!(
                "{} {}: `{discount}` `{catalog}` {} {keys}",
                p.name, p.rust_log, p.traced
            )
        };
        let tuned = tuned.map_or("none".into(), |(p, keys)| summary(&p, &keys));
        summary(&main, &["all"]) + " / " + &tuned
    }

    /// Asserts that `text` holds every one of `parts`.
    pub(in crate::bench) fn assert_has(text: &str, parts: &[&str]) {
        for part in parts {
            assert!(text.contains(part), "no {part:?} in:\n{text}");
        }
    }

    #[test]
    fn the_main_pass_runs_the_services_on_their_defaults_and_the_tuned_pass_a_and_b_tuned() {
        let want = "default info: `--ops-listen 127.0.0.1:0` `` false all / tuned info,access=off: `--ops-listen 127.0.0.1:0 --worker-threads 1` `` false A,B";
        assert_eq!(summary(&[]), want);
        let main = passes(&[]).0;
        let want = "`RUST_LOG=info` (access log on); Discount `--ops-listen 127.0.0.1:0` (worker threads: its default, one per core); Catalog on its defaults; tracing off (no `OTEL_*` variable)";
        assert_eq!(main.describe(), want);
        assert_eq!(args(&[]).connections, [1, 32, 128]);
        assert_eq!(args(&["--smoke"]).connections, [32]);
    }

    #[test]
    fn discount_threads_tracing_and_extra_flags_change_the_passes_as_asked() {
        let threads = summary(&["--discount-threads", "3", "--tuned", "d,b"]);
        let want = "main info: `--ops-listen 127.0.0.1:0 --worker-threads 3` `` false all / tuned info,access=off: `--ops-listen 127.0.0.1:0 --worker-threads 3` `` false B,D";
        assert_eq!(threads, want);
        let traced = summary(&["--smoke", "--traced", "--tuned", "all"]);
        let want = "traced info: `--ops-listen 127.0.0.1:0` `` true all / tuned-traced info,access=off: `--ops-listen 127.0.0.1:0 --worker-threads 1` `` true A,B,C,D";
        assert_eq!(traced, want);
        let want = "; tracing on: every request's spans (`OTEL_TRACES_SAMPLER=always_on`) exported over OTLP/gRPC to a local `otlp-receiver`";
        assert!(passes(&["--traced"]).0.describe().ends_with(want));
        assert!(summary(&["--traced", "--discount-threads", "2"]).starts_with("main-traced "));
        let extra = summary(&[
            "--tuned-catalog-arg",
            "--rpcs=4",
            "--tuned-discount-arg=--x=5",
        ]);
        let want = "default info: `--ops-listen 127.0.0.1:0` `` false all / tuned info,access=off: `--ops-listen 127.0.0.1:0 --worker-threads 1 --x=5` `--rpcs=4` false A,B";
        assert_eq!(extra, want);
        assert!(summary(&["--tuned", "none"]).ends_with(" / none"));
        let parse = |tuned| Cli::try_parse_from(["bench", "--tuned", tuned]).map(|_| ());
        assert!(parse("A,Z").is_err());
    }
}
