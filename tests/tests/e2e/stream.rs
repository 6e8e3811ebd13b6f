//! A steady stream of discounted requests through Catalog, checked response by response, for
//! tests that change things underneath it (replicas, connections, certificates).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::SPEC_CUSTOMER_1_JSON;

/// Only to turn a stalled stream into a failure instead of a hang; not a speed assertion.
pub(crate) const STALL_GUARD: Duration = Duration::from_secs(30);

/// A response this late waited on a replica that never answered (the deadline is 2 s, an RPC
/// gives up on a replica after half of it; a healthy answer takes a few milliseconds).
pub(crate) const WAITED_ON_A_HUNG_REPLICA: Duration = Duration::from_millis(500);

/// A steady stream of `GET /products` for customer 1 from `workers` concurrent clients, each
/// response checked: 200, discounted exactly as SPEC says, no fallback header.
pub(crate) struct Stream {
    done: watch::Receiver<usize>,
    stop: Arc<AtomicBool>,
    slow: Arc<AtomicUsize>,
    failures: Arc<Mutex<Vec<String>>>,
    workers: Vec<JoinHandle<()>>,
}

impl Stream {
    pub(crate) fn start(catalog: SocketAddr, workers: usize) -> Self {
        let (count, done) = watch::channel(0usize);
        let count = Arc::new(count);
        let failures = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let slow = Arc::new(AtomicUsize::new(0));
        let client = reqwest::Client::new();
        let url = format!("http://{catalog}/products");
        let workers = (0..workers)
            .map(|_| {
                let (client, url, count, failures, stop, slow) = (
                    client.clone(),
                    url.clone(),
                    count.clone(),
                    failures.clone(),
                    stop.clone(),
                    slow.clone(),
                );
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        let started = tokio::time::Instant::now();
                        let failure = match client.get(&url).header("X-USER-ID", "1").send().await {
                            Err(err) => Some(format!("request failed: {err}")),
                            Ok(response) => {
                                let status = response.status();
                                let fallback = response
                                    .headers()
                                    .get("x-discount-unavailable")
                                    .map(|v| v.to_str().unwrap_or("?").to_owned());
                                let body = response.text().await.unwrap_or_default();
                                if status != 200
                                    || fallback.is_some()
                                    || body != SPEC_CUSTOMER_1_JSON
                                {
                                    Some(format!("{status}, fallback {fallback:?}: {body}"))
                                } else {
                                    None
                                }
                            }
                        };
                        if started.elapsed() >= WAITED_ON_A_HUNG_REPLICA {
                            slow.fetch_add(1, Ordering::Relaxed);
                        }
                        if let Some(failure) = failure {
                            failures.lock().unwrap().push(failure);
                        }
                        count.send_modify(|n| *n += 1);
                    }
                })
            })
            .collect();
        Self {
            done,
            stop,
            slow,
            failures,
            workers,
        }
    }

    /// Responses so far.
    pub(crate) fn count(&self) -> usize {
        *self.done.borrow()
    }

    /// Waits until `n` more responses have come back.
    pub(crate) async fn wait_for_more(&mut self, n: usize) {
        let target = self.count() + n;
        tokio::time::timeout(STALL_GUARD, self.done.wait_for(|done| *done >= target))
            .await
            .expect("the request stream stalled")
            .unwrap();
    }

    /// Waits, while the stream runs, until `condition` holds.
    pub(crate) async fn run_until(&mut self, what: &str, condition: impl Fn() -> bool) {
        let give_up = tokio::time::Instant::now() + STALL_GUARD;
        while !condition() {
            assert!(
                tokio::time::Instant::now() < give_up,
                "never happened: {what}"
            );
            self.wait_for_more(10).await;
        }
    }

    /// Stops the stream once the requests in flight have their answers and fails the test if
    /// any response was bad; returns how many responses there were and how many waited on a
    /// hung replica.
    pub(crate) async fn stop(self) -> (usize, usize) {
        self.stop.store(true, Ordering::Relaxed);
        let Self {
            done,
            failures,
            workers,
            slow,
            ..
        } = self;
        for worker in workers {
            tokio::time::timeout(STALL_GUARD, worker)
                .await
                .expect("a request never finished")
                .unwrap();
        }
        let failures = failures.lock().unwrap();
        let count = *done.borrow();
        assert!(
            failures.is_empty(),
            "{} of {count} responses were bad: {failures:?}",
            failures.len()
        );
        (count, slow.load(Ordering::Relaxed))
    }
}
