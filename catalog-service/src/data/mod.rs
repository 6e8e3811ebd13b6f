//! Where the catalog comes from and how it changes while Catalog serves: [`Data`], the one
//! handle requests read the current [`Snapshot`] through, and the sources that replace it.
//!
//! A source builds a new snapshot off the request path and publishes it with one atomic swap
//! (`arc_swap`): a request loads the current snapshot once, at its start, and reads only that
//! one, with no lock held and no I/O. Until the first snapshot there is nothing to serve:
//! `/products` answers 503 with `Retry-After`, and `/readyz` says why.
//!
//! - `files`: the embedded sample data, or `--products`/`--customers`, re-read on the reload
//!   interval and on SIGHUP; a file that no longer parses or validates is refused, and the last
//!   good data keeps serving.
//! - `postgres`: `--database-url`: the catalog read from PostgreSQL over mutual TLS, then
//!   followed row by row as its triggers announce changes.
//!
//! What a source does is exported as metrics: `catalog_data_snapshot_age_seconds` (how long
//! since the source last confirmed the snapshot is current), `catalog_data_source_up` (1 or 0),
//! `catalog_data_reloads_total{source, result="applied"|"refused"}` and
//! `catalog_data_products` (products in the snapshot).

mod files;
mod postgres;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;

pub use files::FileWatch;
pub use postgres::DatabaseWatch;

use crate::catalog::CatalogData;
use crate::snapshot::Snapshot;

/// What a request is told while there is no catalog yet.
pub const NOT_READ_YET: &str = "Catalog has not read its catalog from its source yet";

/// Where Catalog's data comes from.
#[derive(Debug, Clone)]
pub enum DataSource {
    /// This data, never changed (the embedded sample data, or data a test or an embedding
    /// gives).
    Fixed(CatalogData),
    /// Data loaded from files at start-up, re-read when they change.
    Files(Snapshot, FileWatch),
    /// PostgreSQL, read in full once connected, then followed change by change.
    Database(Box<DatabaseWatch>),
}

impl DataSource {
    /// Starts the source: the first snapshot, and the task that keeps it current. Needs a
    /// Tokio runtime.
    pub fn start(self) -> Data {
        let data = match self {
            DataSource::Fixed(catalog) => {
                let data = Data::new(Snapshot::new(catalog));
                data.status().fixed = true;
                data
            }
            DataSource::Files(snapshot, watch) => {
                let data = Data::new(snapshot);
                watch.spawn(data.clone());
                data
            }
            DataSource::Database(watch) => {
                let data = Data::waiting(format!(
                    "connecting to the database at {}",
                    watch.database.url()
                ));
                watch.spawn(data.clone());
                data
            }
        };
        data.spawn_age_gauge();
        data
    }
}

/// Which kind of source a change came from: the `source` label of the data metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    /// Data files.
    Files,
    /// PostgreSQL.
    Database,
}

impl SourceKind {
    fn label(self) -> &'static str {
        match self {
            SourceKind::Files => "files",
            SourceKind::Database => "database",
        }
    }
}

/// The current snapshot (if there is one yet) and what its source last said. Cheap to clone:
/// every clone is the same handle.
#[derive(Debug, Clone)]
pub struct Data(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    /// When the handle was made: the age of a catalog not read yet counts from it.
    started: Instant,
    current: ArcSwapOption<Snapshot>,
    status: Mutex<Status>,
}

#[derive(Debug)]
struct Status {
    /// When the source last confirmed the snapshot is current.
    confirmed: Option<Instant>,
    /// Whether the source can be read.
    up: bool,
    /// Why there is no snapshot yet, while there is none.
    waiting: String,
    /// The data never changes: the snapshot is always current.
    fixed: bool,
    /// How many times the source went from up to down.
    outages: u64,
}

impl Data {
    /// A handle serving `snapshot`, confirmed current now.
    pub fn new(snapshot: Snapshot) -> Self {
        let data = Self::waiting("not loaded yet");
        data.publish_quietly(snapshot);
        data
    }

    /// A handle with no snapshot yet, waiting for its source (`why`, for `/readyz` and the
    /// log; the public answers say only [`NOT_READ_YET`]).
    pub fn waiting(why: impl Into<String>) -> Self {
        metrics::gauge!("catalog_data_source_up").set(0.0);
        Self(Arc::new(Inner {
            started: Instant::now(),
            current: ArcSwapOption::empty(),
            status: Mutex::new(Status {
                confirmed: None,
                up: false,
                waiting: why.into(),
                fixed: false,
                outages: 0,
            }),
        }))
    }

    /// The snapshot requests read now, or why there is none yet.
    pub fn current(&self) -> Result<Arc<Snapshot>, String> {
        self.0
            .current
            .load_full()
            .ok_or_else(|| self.status().waiting.clone())
    }

    /// Why Catalog cannot serve its catalog yet (no snapshot), if it cannot.
    pub fn not_ready(&self) -> Option<String> {
        self.current().err()
    }

    /// The snapshot a request reads, or what the public may be told: the detail of why (hosts,
    /// roles, the server's words) is for `/readyz` on the operations port and the log.
    pub fn serving(&self) -> Result<Arc<Snapshot>, &'static str> {
        self.0.current.load_full().ok_or(NOT_READ_YET)
    }

    /// Replaces the snapshot with `snapshot`, which holds `changes` changes applied from
    /// `source` (a whole reload counts as one); the source is up and confirms it current.
    pub fn publish(&self, snapshot: Snapshot, source: SourceKind, changes: u64) {
        self.publish_quietly(snapshot);
        metrics::counter!("catalog_data_reloads_total", "source" => source.label(), "result" => "applied")
            .increment(changes);
    }

    fn publish_quietly(&self, snapshot: Snapshot) {
        metrics::gauge!("catalog_data_products").set(snapshot.product_count() as f64);
        self.0.current.store(Some(Arc::new(snapshot)));
        self.confirm();
    }

    /// The source is up and says the snapshot is current.
    pub fn confirm(&self) {
        let mut status = self.status();
        status.confirmed = Some(Instant::now());
        status.up = true;
        metrics::gauge!("catalog_data_source_up").set(1.0);
    }

    /// The source offered `changes` changes that were refused (the snapshot keeps what it
    /// had).
    pub fn refused(&self, source: SourceKind, changes: u64) {
        metrics::counter!("catalog_data_reloads_total", "source" => source.label(), "result" => "refused")
            .increment(changes);
    }

    /// The source cannot be read (`why`); the snapshot keeps serving, ageing. Returns whether
    /// it was up until now (so that the caller logs each change of state once).
    pub fn source_down(&self, why: impl Into<String>) -> bool {
        let mut status = self.status();
        let was_up = status.up;
        status.up = false;
        status.outages += u64::from(was_up);
        if status.confirmed.is_none() {
            status.waiting = why.into();
        }
        metrics::gauge!("catalog_data_source_up").set(0.0);
        was_up
    }

    /// How many times the source went down after being up.
    pub fn outages(&self) -> u64 {
        self.status().outages
    }

    /// Whether the source was up at its last word.
    pub fn source_is_up(&self) -> bool {
        self.status().up
    }

    /// How long since the source last confirmed the snapshot (`None`: no snapshot yet).
    pub fn age(&self) -> Option<Duration> {
        let status = self.status();
        let age = status.confirmed.map(|at| at.elapsed());
        if status.fixed {
            return age.map(|_| Duration::ZERO);
        }
        age
    }

    fn status(&self) -> std::sync::MutexGuard<'_, Status> {
        self.0.status.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Publishes the snapshot's age every second, for as long as the handle lives.
    fn spawn_age_gauge(&self) {
        let data = Arc::downgrade(&self.0);
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(Duration::from_secs(1));
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                let Some(data) = data.upgrade() else { return };
                let data = Data(data);
                // Not read yet: as old as the process's wait for it.
                let age = data.age().unwrap_or_else(|| data.0.started.elapsed());
                let age = age.as_secs_f64();
                metrics::gauge!("catalog_data_snapshot_age_seconds").set(age);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_snapshot_until_the_source_publishes_one_and_then_it_stays_when_the_source_goes_down() {
        let data = Data::waiting("connecting to the database");
        assert_eq!(data.current().unwrap_err(), "connecting to the database");
        assert!(!data.source_down("connection refused"), "never up yet");
        assert_eq!(data.not_ready().as_deref(), Some("connection refused"));
        assert!(data.age().is_none());
        data.publish(
            Snapshot::new(CatalogData::embedded_default()),
            SourceKind::Database,
            1,
        );
        assert_eq!(data.current().unwrap().product_count(), 3);
        assert!(data.source_is_up());
        // Down: still serving the last snapshot, which now ages.
        assert!(data.source_down("connection reset"));
        assert!(!data.source_down("connection refused"), "already down");
        assert_eq!(data.current().unwrap().product_count(), 3);
        assert!(data.not_ready().is_none());
        assert!(data.age().is_some());
    }

    #[tokio::test]
    async fn fixed_data_is_always_current() {
        let data = DataSource::Fixed(CatalogData::embedded_default()).start();
        assert_eq!(data.age(), Some(Duration::ZERO));
        assert!(data.source_is_up());
    }
}
