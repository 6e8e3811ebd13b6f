//! What `cargo xtask bench` measures and how: its options ([`BenchArgs`]), the run's settings
//! after `--smoke` ([`Plan`]), the three Catalog processes ([`CatalogKind`]) and the four
//! scenarios ([`SCENARIOS`]) with the answers each must get before it is measured.

use std::path::PathBuf;
use std::time::Duration;

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
    /// Tokio worker threads for Discount. One by default: wrk, Catalog and Discount share this
    /// machine's cores, Discount's work per RPC is microseconds, and a single thread spares the
    /// cross-thread wake-ups that a second one costs here.
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub discount_threads: u16,
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
    pub(super) discount_threads: u16,
}

impl Plan {
    pub(super) fn new(args: BenchArgs) -> Self {
        let out = args.out.unwrap_or_else(|| target_dir().join("bench"));
        if args.smoke {
            return Self {
                duration: Duration::from_secs(1),
                warmup: Duration::from_secs(1),
                connections: vec![32],
                smoke: true,
                out,
                discount_threads: args.discount_threads,
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
            discount_threads: args.discount_threads,
        }
    }
}
