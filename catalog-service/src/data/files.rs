//! The file source: the catalog from `--products` and `--customers` (the embedded sample data
//! standing in for a file not given), re-read on the reload interval and on SIGHUP, like the
//! TLS files.
//!
//! A change is judged once: the files' contents are fingerprinted, and only new contents are
//! parsed. Good ones replace the snapshot whole (files are small; a full rebuild is the simple
//! and exact way). Bad ones (unreadable, not JSON, a record that breaks a rule) are refused with
//! the same one line as at start-up (file, record, problem), counted in
//! `catalog_data_reloads_total{source="files",result="refused"}`, and the last good data keeps
//! serving; the source is then down (`catalog_data_source_up` 0) and the snapshot ages until
//! the files are good again.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::time::Duration;

use super::{Data, SourceKind};
use crate::catalog::{CatalogData, DataError, read};
use crate::snapshot::Snapshot;

/// Which files to watch, how often to look at them, and what they held at the last look.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileWatch {
    products: Option<PathBuf>,
    customers: Option<PathBuf>,
    interval: Duration,
    /// Fingerprint of the contents last seen, good or bad: each change is judged once.
    seen: Option<u64>,
}

/// What one look at the files found.
#[derive(Debug)]
enum Look {
    /// The same contents as last time.
    Unchanged,
    /// New contents, good: the data they hold, as a snapshot.
    Changed(Snapshot),
    /// New contents, refused.
    Refused(DataError),
}

impl FileWatch {
    /// The products file and the customers file (`None`: the embedded sample data stands in),
    /// looked at every `interval`.
    pub fn new(products: Option<PathBuf>, customers: Option<PathBuf>, interval: Duration) -> Self {
        Self {
            products,
            customers,
            interval,
            seen: None,
        }
    }

    /// Loads the files now (start-up: an error stops it), returning their snapshot and the
    /// watch that will notice their next change.
    pub fn load(mut self) -> Result<(Snapshot, Self), DataError> {
        match self.look() {
            Look::Changed(snapshot) => Ok((snapshot, self)),
            Look::Refused(err) => Err(err),
            Look::Unchanged => unreachable!("nothing was seen before the first look"),
        }
    }

    /// Watches the files, publishing each good change into `data`, until the process ends.
    /// Does nothing when no file is given (the embedded data never changes).
    pub(super) fn spawn(mut self, data: Data) {
        if self.products.is_none() && self.customers.is_none() {
            return;
        }
        // Made before the task runs, so that a SIGHUP from now on is not missed.
        let mut looks = mtls::Looks::new(self.interval);
        tokio::spawn(async move {
            // The first tick is at once; the files were just loaded.
            looks.next().await;
            loop {
                if looks.next().await == mtls::Look::Hangup {
                    tracing::info!("SIGHUP: re-reading the data files");
                }
                // Reading, parsing and rendering the products block: off the runtime's
                // workers, which serve requests.
                let mut watch = self.clone();
                let Ok((look, watch)) = tokio::task::spawn_blocking(move || {
                    let look = watch.look();
                    (look, watch)
                })
                .await
                else {
                    continue;
                };
                self = watch;
                apply(&data, look);
            }
        });
    }

    /// Reads the files; parses them only if their contents changed since the last look.
    fn look(&mut self) -> Look {
        let products = self.products.as_deref().map(read).transpose();
        let customers = self.customers.as_deref().map(read).transpose();
        let mut hasher = DefaultHasher::new();
        (&products, &customers).hash(&mut hasher);
        let fingerprint = hasher.finish();
        if self.seen == Some(fingerprint) {
            return Look::Unchanged;
        }
        self.seen = Some(fingerprint);
        let parsed = (|| {
            CatalogData::parse(
                self.products.as_deref().zip(products?.as_deref()),
                self.customers.as_deref().zip(customers?.as_deref()),
            )
        })();
        match parsed {
            Ok(data) => Look::Changed(Snapshot::new(data)),
            Err(err) => Look::Refused(err),
        }
    }
}

/// Publishes what a look found.
fn apply(data: &Data, look: Look) {
    match look {
        Look::Unchanged => {
            // Files still refused stay refused; good ones are confirmed current.
            if data.source_is_up() {
                data.confirm();
            }
        }
        Look::Changed(snapshot) => {
            let (products, customers) = (snapshot.product_count(), snapshot.customer_count());
            data.publish(snapshot, SourceKind::Files, 1);
            tracing::info!(products, customers, "data files reloaded");
        }
        Look::Refused(err) => {
            data.refused(SourceKind::Files, 1);
            data.source_down(err.to_string());
            tracing::error!("data file {err}: refused, the last good data keeps serving");
        }
    }
}
