//! What `cargo xtask bench` measures and how: its options ([`BenchArgs`]), the services'
//! settings in each pass ([`PassSettings`]: the defaults, then the tuned pass), the Catalog
//! processes ([`Catalog`]), and the scenarios ([`SCENARIOS`]) and A and B served from
//! PostgreSQL ([`FROM_DATABASE`]) with the answers each must get before it is measured.

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
    /// Rounds in which each pass measures B and A, and D and D-plain, again by turns on the
    /// same processes, each pair whose two scenarios ran without failure (a fifth of
    /// `--duration` each, after one unrecorded run of each side, at 32 connections if measured
    /// there, else the most), for ratios that the machine's drift between scenarios does not
    /// skew; 0: none. `--smoke` runs one.
    #[arg(long, value_name = "N", default_value_t = 5,
          value_parser = clap::value_parser!(u32).range(0..=100))]
    pub pair_rounds: u32,
    /// Check that the benchmark still works: 1 s of warm-up and 1 s of load per scenario, at
    /// 32 connections only; the database pass at 1,000 and 10,000 products.
    #[arg(long, conflicts_with_all = ["duration", "warmup", "connections"])]
    pub smoke: bool,
    /// Folder for results.md, results.json, plot.svg and the services' logs
    /// [default: target/bench].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Tokio worker threads for Discount (`--worker-threads`) in both passes [default: not
    /// passed, Discount's own default of one per core].
    #[arg(long, value_name = "N",
          value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub discount_threads: Option<u16>,
    /// Scenarios to measure again in a tuned pass after the main one, on fresh processes with
    /// the access log off (`RUST_LOG=info,access=off`): comma-separated keys, `all` or
    /// `none`. Its figures are shown beside the defaults'.
    #[arg(long, value_name = "A,B,..|all|none", value_delimiter = ',', default_value = "A,B",
          ignore_case = true, value_parser = ["A", "B", "C", "D", "D-plain", "all", "none"])]
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
    /// Skip the database pass: A and B with Catalog serving from a throwaway PostgreSQL, beside
    /// the main pass's, then how soon it serves a committed change, and a large catalog's
    /// start-up, memory and latency while many rows change.
    #[arg(long)]
    pub no_database: bool,
}

impl BenchArgs {
    /// These options with `--smoke` applied and the concurrencies sorted.
    pub(super) fn normalised(mut self) -> Self {
        if self.smoke {
            (self.duration, self.warmup, self.connections) = (1, 1, vec![32]);
            self.pair_rounds = self.pair_rounds.min(1);
        }
        self.connections.sort_unstable();
        self.connections.dedup();
        self
    }

    /// The concurrency of the rounds by turns ([`super::paired`]): 32 if measured, else the
    /// most; `None` without rounds.
    pub(super) fn pair_connections(&self) -> Option<u32> {
        let most = self.connections.iter().copied().max();
        let at = if self.connections.contains(&32) {
            Some(32)
        } else {
            most
        };
        at.filter(|_| self.pair_rounds > 0)
    }

    /// Seconds of each run of the rounds by turns: a fifth of `--duration`, at least 1.
    pub(super) fn pair_round_secs(&self) -> u64 {
        (self.duration / 5).max(1)
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

/// `RUST_LOG` as a user runs the services (one access-log line per HTTP request and per RPC),
/// and as the tuned pass runs them.
const INFO: &str = "info";
const TUNED_LOG: &str = "info,access=off";

impl PassSettings {
    /// The main pass (the defaults, but for `--discount-threads`), or the tuned pass: no access
    /// log and the extra flags asked for. Both traced with `--traced`. (The tuned pass once ran
    /// Discount on one worker thread too; since Catalog pipelines its RPCs, that is slower:
    /// B 0.91 times the defaults' at 32 connections, 0.72 at 128.)
    pub(super) fn new(tuned: bool, args: &BenchArgs) -> Self {
        let threads = args.discount_threads;
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
        let threads_arg = threads.map(|n| ["--worker-threads".to_owned(), n.to_string()]);
        discount_args.extend(threads_arg.into_iter().flatten());
        let extra = |args: &[String]| if tuned { args.to_vec() } else { Vec::new() };
        discount_args.extend(extra(&args.tuned_discount_arg));
        let (rust_log, traced) = (if tuned { TUNED_LOG } else { INFO }, args.traced);
        Self {
            name,
            rust_log,
            discount_worker_threads: threads,
            discount_args,
            catalog_args: extra(&args.tuned_catalog_arg),
            traced,
        }
    }

    pub fn describe(&self) -> String {
        let access = if self.rust_log == INFO { "on" } else { "off" };
        let default = " (worker threads: its default, one per core)";
        let threads = self.discount_worker_threads.map_or(default, |_| "");
        let catalog = match self.catalog_args.as_slice() {
            [] => "Catalog on its defaults".to_owned(),
            args => format!("Catalog `{}`", args.join(" ")),
        };
        let off = "tracing off (no `OTEL_*` variable)";
        let tracing = if self.traced { TRACED } else { off };
        let (rust_log, discount) = (self.rust_log, self.discount_args.join(" "));
        format!(
            "`RUST_LOG={rust_log}` (access log {access}); Discount `{discount}`{threads}; \
             {catalog}; {tracing}"
        )
    }
}

/// How [`PassSettings::describe`] says that a pass is traced.
const TRACED: &str = "tracing on: every request's spans (`OTEL_TRACES_SAMPLER=always_on`) \
                      exported over OTLP/gRPC to a local `otlp-receiver`";

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
    /// The benchmark's PostgreSQL (`--database-url`).
    Database,
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
/// SPEC's data, imported into PostgreSQL.
const DATABASE: Catalog = Catalog {
    name: "catalog-service (PostgreSQL, SPEC data)",
    log: "catalog-database.log",
    source: Source::Database,
};

#[derive(Debug, Clone, Copy)]
pub(super) struct Scenario {
    pub(super) key: &'static str,
    pub(super) description: &'static str,
    pub(super) catalog: Catalog,
    pub(super) path: &'static str,
    /// What each request sends: Lua after wrk's counting script ([`super::wrk::Wrk::script`]).
    pub(super) requests: &'static str,
    /// Requests to check before measuring: their `X-USER-ID`, how many products the answer
    /// must hold, and whether every product priced above zero carries a `discount_value` (else
    /// none does).
    pub(super) probes: &'static [(Option<&'static str>, usize, bool)],
}

/// Every request as customer 1, SPEC's John Snow (the one Discount rewards).
const USER_1: &str = "wrk.headers[\"X-USER-ID\"] = \"1\"\n";

pub(super) const SCENARIOS: [Scenario; 5] = [
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
    // Next to D, so that they share its Catalog: what D costs beyond serving the same page.
    Scenario {
        key: "D-plain",
        description: "D's plain twin: ?limit=100 without X-USER-ID",
        catalog: LARGE,
        path: "/products?limit=100",
        requests: "",
        probes: &[(None, 100, false)],
    },
];

/// A and B with Catalog serving from PostgreSQL: in the main pass, beside them, unless
/// `--no-database`.
pub(super) const FROM_DATABASE: [Scenario; 2] = [
    from_database("A-db", "A, Catalog serving from PostgreSQL", SCENARIOS[0]),
    from_database("B-db", "B, Catalog serving from PostgreSQL", SCENARIOS[1]),
];

const fn from_database(key: &'static str, description: &'static str, s: Scenario) -> Scenario {
    let catalog = DATABASE;
    Scenario {
        key,
        description,
        catalog,
        ..s
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        bench: BenchArgs,
    }

    /// The options of `cargo xtask bench ARGS` (split at spaces), normalised.
    pub(in crate::bench) fn args(args: &str) -> BenchArgs {
        let args = std::iter::once("bench").chain(args.split_whitespace());
        Cli::try_parse_from(args).unwrap().bench.normalised()
    }

    /// The main pass and the tuned one (if any) with its scenarios' keys.
    pub(in crate::bench) fn passes(args: &str) -> (PassSettings, Option<(PassSettings, String)>) {
        let args = self::args(args);
        let keys = |s: Vec<Scenario>| s.iter().map(|s| s.key).collect::<Vec<_>>().join(",");
        let tuned = args.tuned_pass().map(|(pass, s)| (pass, keys(s)));
        (PassSettings::new(false, &args), tuned)
    }

    /// Each pass's name, `RUST_LOG`, Discount's and each Catalog's flags, whether traced, and
    /// scenarios, for `cargo xtask bench ARGS`.
    fn summary(args: &str) -> String {
        let (main, tuned) = passes(args);
        let summary = |p: &PassSettings, keys: &str| {
            let (discount, catalog) = (p.discount_args.join(" "), p.catalog_args.join(" "));
            let (name, rust_log, traced) = (p.name, p.rust_log, p.traced);
            format!("{name} {rust_log}: `{discount}` `{catalog}` {traced} {keys}")
        };
        let tuned = tuned.map_or("none".into(), |(p, keys)| summary(&p, &keys));
        summary(&main, "all") + " / " + &tuned
    }

    #[test]
    fn each_pass_runs_the_services_as_the_flags_say_and_the_main_pass_on_their_defaults() {
        // One a line, the first none.
        let cases = "\n--discount-threads 3 --tuned d,b,D-PLAIN\n--smoke --traced --tuned all\n\
                     --tuned-catalog-arg --rpcs=4 --tuned-discount-arg=--x=5\n--tuned none\n\
                     --traced --discount-threads 2";
        let summary_of = |args| format!("{args} => {}", summary(args));
        let cases = cases.split('\n').map(summary_of);
        let describes = ["", "--traced"].map(|args| passes(args).0.describe());
        let summaries: Vec<String> = cases.chain(describes).collect();
        insta::assert_snapshot!(summaries.join("\n"));
        let connections = (args("").connections, args("--smoke").connections);
        assert_eq!(connections, (vec![1, 32, 128], vec![32]));
        // By turns: at 32 connections if measured there, else the most; a fifth of each run.
        let turns = |a: &str| {
            let a = args(a);
            (a.pair_rounds, a.pair_connections(), a.pair_round_secs())
        };
        assert_eq!(turns(""), (5, Some(32), 2));
        assert_eq!(turns("--connections 1,128 --duration 3"), (5, Some(128), 1));
        assert_eq!(turns("--smoke"), (1, Some(32), 1));
        assert_eq!(turns("--pair-rounds 0").1, None);
        assert!(Cli::try_parse_from(["bench", "--tuned", "A,Z"]).is_err());
    }
}
