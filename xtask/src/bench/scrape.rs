//! Reading a service's `GET /metrics` (Prometheus text format) before and after each
//! measurement, and what changed in between: how many HTTP requests each discount RPC carried
//! (Catalog's `catalog_discount_requests_per_rpc`), how many customers' groups each
//! `ApplyDiscountGroups` carried (Discount's `discount_groups_per_rpc`), how many RPCs Discount
//! answered, and log lines and spans either service dropped.

use std::collections::HashMap;
use std::net::SocketAddr;

use anyhow::{Context, bail};
use serde::Serialize;

use super::probe;

/// Catalog's histogram of HTTP requests per discount RPC (1 for a request that went alone).
pub const CATALOG_REQUESTS_PER_RPC: &str = "catalog_discount_requests_per_rpc";
/// Discount's histogram of groups (one per HTTP request) per `ApplyDiscountGroups` RPC.
pub const DISCOUNT_GROUPS_PER_RPC: &str = "discount_groups_per_rpc";
/// Discount's counter of RPCs answered, one series per RPC and status code.
pub const DISCOUNT_RPCS: &str = "discount_rpc_requests_total";
/// The counter of log lines a service's background writer dropped (when it has one).
pub const LOG_LINES_DROPPED: &str = "log_lines_dropped_total";
/// The counter of spans a service never exported (appears with the first one, when traced).
pub const SPANS_DROPPED: &str = "trace_spans_dropped_total";

/// One scrape: every metric name (a histogram's `_sum` and `_count` are names of their own)
/// with its value summed over all its label sets.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scrape(HashMap<String, f64>);

/// What a histogram gained between two scrapes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct HistogramDelta {
    /// Growth of `_sum`: the values recorded in between, added up.
    pub sum: f64,
    /// Growth of `_count`: how many values were recorded.
    pub count: f64,
}

impl HistogramDelta {
    /// The mean value recorded in between; `None` if nothing was.
    pub fn mean(&self) -> Option<f64> {
        (self.count > 0.0).then(|| self.sum / self.count)
    }
}

/// `GET /metrics` on `addr`, parsed.
pub fn get(addr: SocketAddr) -> anyhow::Result<Scrape> {
    let reply = probe::get(addr, "/metrics", None)?;
    if reply.status != 200 {
        bail!("GET /metrics on {addr}: status {}", reply.status);
    }
    let text = String::from_utf8(reply.body)
        .with_context(|| format!("GET /metrics on {addr}: not UTF-8"))?;
    Ok(parse(&text))
}

/// Parses Prometheus text: `name value`, `name{labels} value`, an optional timestamp after
/// the value; comments and lines it cannot read are skipped.
pub fn parse(text: &str) -> Scrape {
    let mut values = HashMap::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        // Label values may hold spaces, so split after the closing brace if there is one.
        let (name, rest) = match line.find('{') {
            Some(open) => match line[open..].rfind('}') {
                Some(close) => (&line[..open], &line[open + close + 1..]),
                None => continue,
            },
            None => match line.split_once(char::is_whitespace) {
                Some((name, rest)) => (name, rest),
                None => continue,
            },
        };
        let Some(value) = rest
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<f64>().ok())
        else {
            continue;
        };
        if value.is_finite() {
            *values.entry(name.trim().to_owned()).or_insert(0.0) += value;
        }
    }
    Scrape(values)
}

impl Scrape {
    /// The value of `name` summed over its label sets; 0 when absent (a metric appears with
    /// its first value).
    pub fn value(&self, name: &str) -> f64 {
        self.0.get(name).copied().unwrap_or(0.0)
    }

    /// How much `name` grew from `before` to `self`.
    pub fn growth(&self, before: &Self, name: &str) -> f64 {
        self.value(name) - before.value(name)
    }

    /// What histogram `name` gained from `before` to `self`.
    pub fn histogram_growth(&self, before: &Self, name: &str) -> HistogramDelta {
        HistogramDelta {
            sum: self.growth(before, &format!("{name}_sum")),
            count: self.growth(before, &format!("{name}_count")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEFORE: &str = "\
# TYPE catalog_discount_requests_per_rpc histogram
catalog_discount_requests_per_rpc_bucket{le=\"1\"} 10
catalog_discount_requests_per_rpc_bucket{le=\"+Inf\"} 10
catalog_discount_requests_per_rpc_sum 10
catalog_discount_requests_per_rpc_count 10
discount_rpc_requests_total{rpc=\"ApplyDiscountBatch\",code=\"OK\"} 7
";

    const AFTER: &str = "\
# TYPE catalog_discount_requests_per_rpc histogram
catalog_discount_requests_per_rpc_bucket{le=\"1\"} 12
catalog_discount_requests_per_rpc_bucket{le=\"+Inf\"} 20
catalog_discount_requests_per_rpc_sum 55.5
catalog_discount_requests_per_rpc_count 20 1700000000000
discount_rpc_requests_total{rpc=\"ApplyDiscountBatch\",code=\"OK\"} 9
discount_rpc_requests_total{rpc=\"ApplyDiscountGroups\",code=\"OK\"} 8
odd_metric{note=\"a } inside\"} 3
not a metric line
";

    #[test]
    fn histogram_growth_is_the_mean_of_what_was_recorded_in_between() {
        let (before, after) = (parse(BEFORE), parse(AFTER));
        let delta = after.histogram_growth(&before, CATALOG_REQUESTS_PER_RPC);
        assert_eq!(
            delta,
            HistogramDelta {
                sum: 45.5,
                count: 10.0
            }
        );
        assert_eq!(delta.mean(), Some(4.55));
        // Series of one counter are added up across their labels.
        assert_eq!(after.growth(&before, DISCOUNT_RPCS), 10.0);
        assert_eq!(after.value("odd_metric"), 3.0);
    }

    #[test]
    fn a_histogram_with_nothing_recorded_has_no_mean() {
        let empty = parse("# nothing yet\n");
        assert_eq!(empty.value("catalog_discount_requests_per_rpc_count"), 0.0);
        let delta = empty.histogram_growth(&empty, CATALOG_REQUESTS_PER_RPC);
        assert_eq!(delta.count, 0.0);
        assert_eq!(delta.mean(), None);
        let same = parse(AFTER);
        assert_eq!(
            same.histogram_growth(&same, CATALOG_REQUESTS_PER_RPC)
                .mean(),
            None
        );
    }
}
