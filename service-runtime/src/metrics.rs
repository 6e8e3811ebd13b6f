//! The process's Prometheus recorder, behind the `metrics` facade every crate records to, and
//! the content type its text exposition is served with.

use std::sync::OnceLock;

/// The process's Prometheus registry: installed as the `metrics` recorder on first use, the
/// same handle afterwards (so several services in one test process share it harmlessly).
/// Histograms get fixed buckets from 0.5 ms to 2.5 s, except counts per RPC (names ending in
/// `_per_rpc`), which get powers of two from 1 to 1024; a background thread folds recorded
/// samples into them every second, so memory stays flat under load.
pub fn prometheus() -> metrics_exporter_prometheus::PrometheusHandle {
    static HANDLE: OnceLock<metrics_exporter_prometheus::PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            const BUCKETS: [f64; 12] = [
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ];
            const PER_RPC_BUCKETS: [f64; 11] = [
                1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
            ];
            let per_rpc = metrics_exporter_prometheus::Matcher::Suffix("_per_rpc".into());
            let builder = metrics_exporter_prometheus::PrometheusBuilder::new();
            // Setting buckets fails only for an empty list.
            let builder = builder
                .set_buckets(&BUCKETS)
                .and_then(|builder| builder.set_buckets_for_metric(per_rpc, &PER_RPC_BUCKETS))
                .unwrap_or_else(|_| metrics_exporter_prometheus::PrometheusBuilder::new());
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed; /metrics may be empty");
            }
            // The recorder queues histogram samples until they are folded into buckets; without
            // this upkeep they would pile up with every request.
            let upkeep = handle.clone();
            let spawned = std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || {
                    loop {
                        upkeep.run_upkeep();
                        std::thread::sleep(std::time::Duration::from_secs(1));
                    }
                });
            if let Err(err) = spawned {
                tracing::error!(%err, "cannot start metrics upkeep: histograms will grow");
            }
            handle
        })
        .clone()
}

/// The content type of the Prometheus text exposition format.
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
