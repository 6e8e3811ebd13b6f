//! What `cargo xtask bench` measures and how: its options ([`BenchArgs`]), the run's settings
//! after `--smoke` ([`Plan`]), the services' settings in each pass ([`PassSettings`]: the
//! defaults, then the tuned pass), the three Catalog processes ([`CatalogKind`]) and the four
//! scenarios ([`SCENARIOS`]) with the answers each must get before it is measured.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use serde::Serialize;

use crate::services::target_dir;

use super::probe::Expect;
use super::wrk::Requests;

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
    /// Tokio worker threads for Discount (`--worker-threads`) in the main pass, and in the
    /// tuned pass too [default: not passed, Discount's own default of one per core, as a user
    /// runs it; the tuned pass uses 1].
    #[arg(long, value_name = "N",
          value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub discount_threads: Option<u16>,
    /// Scenarios to measure again in a tuned pass after the main one, on fresh processes with
    /// the access log off (`RUST_LOG=info,access=off`) and Discount on one worker thread:
    /// comma-separated keys, `all` or `none`. Its figures are shown beside the defaults'.
    #[arg(long, value_name = "A,B,..|all|none", default_value = "A,B")]
    pub tuned: TunedScenarios,
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

/// The scenarios of the tuned pass, by key, in [`SCENARIOS`] order; empty: no tuned pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunedScenarios(pub Vec<&'static str>);

impl FromStr for TunedScenarios {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("none") {
            return Ok(Self(Vec::new()));
        }
        if text.eq_ignore_ascii_case("all") {
            return Ok(Self(SCENARIOS.iter().map(|s| s.key).collect()));
        }
        let mut wanted = Vec::new();
        for key in text.split(',').map(str::trim).filter(|k| !k.is_empty()) {
            let Some(scenario) = SCENARIOS.iter().find(|s| s.key.eq_ignore_ascii_case(key)) else {
                let keys: Vec<&str> = SCENARIOS.iter().map(|s| s.key).collect();
                return Err(format!(
                    "no scenario {key:?}: use keys among {}, `all` or `none`",
                    keys.join(", ")
                ));
            };
            wanted.push(scenario.key);
        }
        if wanted.is_empty() {
            return Err("no scenario named: use `none` for no tuned pass".into());
        }
        Ok(Self(
            SCENARIOS
                .iter()
                .map(|s| s.key)
                .filter(|k| wanted.contains(k))
                .collect(),
        ))
    }
}

/// How the services of one pass are run, as written to `results.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PassSettings {
    /// `default` (the main figures, the services' defaults), `main` (the main figures with
    /// `--discount-threads`) or `tuned`; `traced`, `main-traced` and `tuned-traced` with
    /// `--traced`.
    pub name: &'static str,
    /// Both services' `RUST_LOG`.
    pub rust_log: &'static str,
    /// Discount's `--worker-threads`; `None`: not passed (one per core).
    pub discount_worker_threads: Option<u16>,
    /// Every flag given to Discount beyond its certificates and `--listen 127.0.0.1:0`.
    pub discount_args: Vec<String>,
    /// Every flag given to each Catalog beyond its certificates, data files, `--listen` and
    /// `--discount-addr`.
    pub catalog_args: Vec<String>,
    /// Whether both services export every span to a local `otlp-receiver` (`--traced`);
    /// otherwise they get no `OTEL_*` variable and trace nothing.
    pub traced: bool,
}

/// `RUST_LOG` as a user runs the services: info, with one access-log line per HTTP request
/// and per RPC.
pub(super) const DEFAULT_RUST_LOG: &str = "info";
/// `RUST_LOG` of the tuned pass: info without the access log.
pub(super) const TUNED_RUST_LOG: &str = "info,access=off";

impl PassSettings {
    /// The main pass: the services' defaults (named `default`), or, with
    /// `--discount-threads`, the defaults but for that (named `main`); traced or not.
    pub(super) fn defaults(discount_threads: Option<u16>, traced: bool) -> Self {
        let name = match (discount_threads.is_some(), traced) {
            (false, false) => "default",
            (false, true) => "traced",
            (true, false) => "main",
            (true, true) => "main-traced",
        };
        Self::new(name, DEFAULT_RUST_LOG, discount_threads, &[], &[], traced)
    }

    /// The tuned pass: no access log, one Discount worker thread (unless
    /// `--discount-threads`), and the extra flags asked for; traced or not.
    pub(super) fn tuned(
        discount_threads: Option<u16>,
        traced: bool,
        discount_extra: &[String],
        catalog_extra: &[String],
    ) -> Self {
        Self::new(
            if traced { "tuned-traced" } else { "tuned" },
            TUNED_RUST_LOG,
            Some(discount_threads.unwrap_or(1)),
            discount_extra,
            catalog_extra,
            traced,
        )
    }

    fn new(
        name: &'static str,
        rust_log: &'static str,
        discount_worker_threads: Option<u16>,
        discount_extra: &[String],
        catalog_extra: &[String],
        traced: bool,
    ) -> Self {
        // The operations port only answers the bench's scrapes: Discount records its metrics
        // whether the port is open or not.
        let mut discount_args = vec!["--metrics-listen".to_owned(), "127.0.0.1:0".to_owned()];
        if let Some(n) = discount_worker_threads {
            discount_args.extend(["--worker-threads".to_owned(), n.to_string()]);
        }
        discount_args.extend(discount_extra.iter().cloned());
        Self {
            name,
            rust_log,
            discount_worker_threads,
            discount_args,
            catalog_args: catalog_extra.to_vec(),
            traced,
        }
    }

    /// The settings in words, for results.md.
    pub fn describe(&self) -> String {
        let access = if self.rust_log == DEFAULT_RUST_LOG {
            "on"
        } else {
            "off"
        };
        let threads = if self.discount_worker_threads.is_none() {
            " (worker threads: its default, one per core)"
        } else {
            ""
        };
        let catalog = if self.catalog_args.is_empty() {
            "Catalog on its defaults".to_owned()
        } else {
            format!("Catalog `{}`", self.catalog_args.join(" "))
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

    /// Whether the pass runs both services as a user does (the operations port Discount
    /// opens for the bench's scrapes aside): not traced, among other things.
    pub fn is_defaults(&self) -> bool {
        self.rust_log == DEFAULT_RUST_LOG
            && self.discount_worker_threads.is_none()
            && self.catalog_args.is_empty()
            && !self.traced
    }
}

/// Which Catalog process a scenario runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CatalogKind {
    /// No data flags: SPEC's embedded products and customers.
    Spec,
    /// SPEC's products and 500 customers, from files.
    Customers,
    /// 10,000 products and 500 customers, from files.
    Large,
}

impl CatalogKind {
    pub(super) const ALL: [Self; 3] = [Self::Spec, Self::Customers, Self::Large];

    pub(super) fn process_name(self) -> &'static str {
        match self {
            Self::Spec => "catalog-service (SPEC data)",
            Self::Customers => "catalog-service (3 products, 500 customers)",
            Self::Large => "catalog-service (10,000 products, 500 customers)",
        }
    }

    pub(super) fn log_name(self) -> &'static str {
        match self {
            Self::Spec => "catalog-spec.log",
            Self::Customers => "catalog-customers.log",
            Self::Large => "catalog-large.log",
        }
    }
}

/// One scenario.
#[derive(Debug, Clone, Copy)]
pub(super) struct Scenario {
    pub(super) key: &'static str,
    pub(super) description: &'static str,
    pub(super) catalog: CatalogKind,
    pub(super) path: &'static str,
    pub(super) requests: Requests,
    /// Requests to check before measuring (`X-USER-ID`, what the answer must be).
    pub(super) probes: &'static [(Option<&'static str>, Expect)],
}

const SPEC_PLAIN: Expect = Expect {
    products: 3,
    discounted: false,
};
const SPEC_DISCOUNTED: Expect = Expect {
    products: 3,
    discounted: true,
};

pub(super) const SCENARIOS: [Scenario; 4] = [
    Scenario {
        key: "A",
        description: "GET /products, no X-USER-ID",
        catalog: CatalogKind::Spec,
        path: "/products",
        requests: Requests::Fixed(None),
        probes: &[(None, SPEC_PLAIN)],
    },
    Scenario {
        key: "B",
        description: "GET /products, X-USER-ID: 1",
        catalog: CatalogKind::Spec,
        path: "/products",
        requests: Requests::Fixed(Some(1)),
        probes: &[(Some("1"), SPEC_DISCOUNTED)],
    },
    Scenario {
        key: "C",
        description: "GET /products, customer mix (25% id 1, 50% 2..=500, 25% unknown)",
        catalog: CatalogKind::Customers,
        path: "/products",
        requests: Requests::CustomerMix,
        probes: &[
            (Some("1"), SPEC_DISCOUNTED),
            (Some("2"), SPEC_PLAIN),
            (Some("500"), SPEC_PLAIN),
            (Some("100000"), SPEC_PLAIN),
        ],
    },
    Scenario {
        key: "D",
        description: "GET /products?limit=100 of 10,000, X-USER-ID: 1",
        catalog: CatalogKind::Large,
        path: "/products?limit=100",
        requests: Requests::Fixed(Some(1)),
        probes: &[(
            Some("1"),
            Expect {
                products: 100,
                discounted: true,
            },
        )],
    },
];

/// The settings a run uses, after `--smoke` is applied.
#[derive(Debug, Clone)]
pub(super) struct Plan {
    pub(super) duration: Duration,
    pub(super) warmup: Duration,
    pub(super) connections: Vec<u32>,
    pub(super) smoke: bool,
    pub(super) out: PathBuf,
    /// The main pass: every scenario, the services on their defaults.
    pub(super) main: PassSettings,
    /// The tuned pass and the scenarios it measures, if any.
    pub(super) tuned: Option<(PassSettings, Vec<Scenario>)>,
}

impl Plan {
    pub(super) fn new(args: BenchArgs) -> Self {
        let out = args.out.unwrap_or_else(|| target_dir().join("bench"));
        let main = PassSettings::defaults(args.discount_threads, args.traced);
        let tuned_scenarios: Vec<Scenario> = SCENARIOS
            .iter()
            .filter(|s| args.tuned.0.contains(&s.key))
            .copied()
            .collect();
        let tuned = (!tuned_scenarios.is_empty()).then(|| {
            let settings = PassSettings::tuned(
                args.discount_threads,
                args.traced,
                &args.tuned_discount_arg,
                &args.tuned_catalog_arg,
            );
            (settings, tuned_scenarios)
        });
        if args.smoke {
            return Self {
                duration: Duration::from_secs(1),
                warmup: Duration::from_secs(1),
                connections: vec![32],
                smoke: true,
                out,
                main,
                tuned,
            };
        }
        let mut connections = args.connections;
        connections.sort_unstable();
        connections.dedup();
        Self {
            duration: Duration::from_secs(args.duration),
            warmup: Duration::from_secs(args.warmup),
            connections,
            smoke: false,
            out,
            main,
            tuned,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        bench: BenchArgs,
    }

    fn plan(args: &[&str]) -> Plan {
        let cli =
            Cli::try_parse_from(std::iter::once("bench").chain(args.iter().copied())).unwrap();
        Plan::new(cli.bench)
    }

    #[test]
    fn the_main_pass_runs_the_services_on_their_defaults() {
        let plan = plan(&[]);
        assert_eq!(plan.main.rust_log, "info");
        assert_eq!(plan.main.discount_worker_threads, None);
        assert!(
            !plan
                .main
                .discount_args
                .iter()
                .any(|a| a == "--worker-threads"),
            "{:?}",
            plan.main.discount_args
        );
        assert!(plan.main.catalog_args.is_empty());
        assert_eq!(plan.main.name, "default");
        assert!(plan.main.is_defaults());
        assert!(!plan.main.traced);
        assert!(
            plan.main
                .describe()
                .ends_with("; tracing off (no `OTEL_*` variable)")
        );
        let (tuned, scenarios) = plan.tuned.unwrap();
        assert_eq!(tuned.rust_log, "info,access=off");
        assert_eq!(tuned.discount_worker_threads, Some(1));
        let keys: Vec<&str> = scenarios.iter().map(|s| s.key).collect();
        assert_eq!(keys, ["A", "B"]);
    }

    #[test]
    fn discount_threads_apply_to_both_passes() {
        let plan = plan(&["--discount-threads", "3", "--tuned", "d,b"]);
        assert_eq!(plan.main.discount_worker_threads, Some(3));
        assert_eq!(plan.main.name, "main", "not the defaults any more");
        assert!(!plan.main.is_defaults());
        let (tuned, scenarios) = plan.tuned.unwrap();
        assert_eq!(tuned.discount_worker_threads, Some(3));
        let keys: Vec<&str> = scenarios.iter().map(|s| s.key).collect();
        assert_eq!(keys, ["B", "D"], "in scenario order");
    }

    #[test]
    fn the_tuned_pass_takes_extra_flags_or_can_be_left_out() {
        let smoke = plan(&[
            "--smoke",
            "--tuned-catalog-arg",
            "--discount-rpcs-in-flight=4",
            "--tuned-discount-arg=--handshake-timeout-secs=5",
        ]);
        assert!(smoke.smoke);
        let (tuned, _) = smoke.tuned.unwrap();
        assert_eq!(tuned.catalog_args, ["--discount-rpcs-in-flight=4"]);
        assert_eq!(
            tuned.discount_args.last().map(String::as_str),
            Some("--handshake-timeout-secs=5")
        );
        assert!(
            tuned.describe().contains("access log off"),
            "{}",
            tuned.describe()
        );
        assert!(plan(&["--tuned", "none"]).tuned.is_none());
        assert_eq!(
            "all".parse::<TunedScenarios>().unwrap().0,
            ["A", "B", "C", "D"]
        );
        assert!("A,Z".parse::<TunedScenarios>().is_err());
        assert!(",".parse::<TunedScenarios>().is_err());
    }

    #[test]
    fn traced_applies_to_both_passes_and_is_not_the_defaults() {
        let plan = plan(&["--smoke", "--traced"]);
        assert!(plan.main.traced);
        assert_eq!(plan.main.name, "traced");
        assert!(!plan.main.is_defaults());
        let describe = plan.main.describe();
        assert!(describe.contains("tracing on"), "{describe}");
        assert!(
            describe.contains("OTEL_TRACES_SAMPLER=always_on"),
            "{describe}"
        );
        let (tuned, _) = plan.tuned.unwrap();
        assert!(tuned.traced);
        assert_eq!(tuned.name, "tuned-traced");
        let threads = self::plan(&["--traced", "--discount-threads", "2"]);
        assert_eq!(threads.main.name, "main-traced");
        let json = serde_json::to_value(&threads.main).unwrap();
        assert_eq!(json["traced"], true);
    }
}
