//! The PostgreSQL source: Catalog keeps one connection (mutual TLS 1.3, its own certificate;
//! see [`crate::database`]) on which it `LISTEN`s for the triggers' change notifications and
//! reads rows with its own `SELECT`s. Nothing of the database is on the request path: requests
//! read the snapshot this source publishes.
//!
//! On every (re)connection, in this order: `LISTEN`, then read everything (`rows`) and publish
//! it, then apply what the notifications name (`pending`): a change committed after the full
//! read's view was taken is announced after it, so nothing is missed, whatever happened while
//! Catalog was away (notifications sent then are lost, the full read covers them). Each batch of
//! announced ids is read and applied to the current snapshot (a few microseconds a row, see
//! [`crate::snapshot`]), and published as one new snapshot.
//!
//! While the database cannot be reached, Catalog serves the last snapshot (ageing, see
//! `catalog_data_snapshot_age_seconds`), reconnects with jittered exponential back-off
//! (`backon`), and logs each change of state once. Between changes, a ping every
//! `health_interval` confirms that the connection, and so the snapshot, is current.

mod pending;
mod rows;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use backon::BackoffBuilder;
use tokio::sync::{Notify, oneshot};
use tokio_postgres::AsyncMessage;

use super::{Data, SourceKind};
use crate::database::changes::{CHANNEL, Change as Announced};
use crate::database::{Database, PgConnection};
use crate::snapshot::Change;
use pending::{Pending, Work};

/// Most ids read with one `SELECT ... WHERE id = ANY($1)`.
const IDS_PER_READ: usize = 10_000;

/// The least time between two full reads that notifications asked for.
const MIN_FULL_READ_INTERVAL: Duration = Duration::from_secs(1);

/// How Catalog follows its database.
#[derive(Debug, Clone)]
pub struct DatabaseWatch {
    /// Where the database is, and the TLS material to reach it.
    pub database: Database,
    /// How often an idle connection is pinged, confirming that the snapshot is current.
    pub health_interval: Duration,
    /// Most announced ids waiting to be read before Catalog reads everything instead.
    pub max_pending_ids: usize,
    /// The longest wait between two connection attempts.
    pub max_backoff: Duration,
    /// The longest wait for any answer (a ping, a read of everything) before the connection
    /// is given up and opened again.
    pub timeout: Duration,
    /// When a connection is replaced by a new one (±10%), so that rotated certificates are
    /// used; `None`: never.
    pub max_connection_age: Option<Duration>,
}

/// How a connection ended.
#[derive(Debug)]
enum End {
    /// It failed, for this reason.
    Lost(String),
    /// It reached its maximum age and is replaced at once.
    Renew,
}

/// What the log last said about the database, so that each change of state is logged once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Starting,
    Up,
    Down,
}

impl DatabaseWatch {
    /// Follows the database until the process ends, publishing into `data`.
    pub(super) fn spawn(self, data: Data) {
        if let Some(reloader) = self.database.tls_reloader() {
            reloader.spawn();
        }
        tokio::spawn(async move {
            let mut state = State::Starting;
            let mut delays = self.backoff();
            loop {
                let why = match self.session(&data, &mut state, &mut delays).await {
                    End::Lost(why) => why,
                    End::Renew => {
                        tracing::info!(
                            "database connection renewed (--database-max-connection-age-secs), \
                             so that a rotated certificate is used"
                        );
                        continue;
                    }
                };
                data.source_down(why.clone());
                if state != State::Down {
                    tracing::warn!(
                        "{why}; {}, reconnecting with back-off",
                        if state == State::Up {
                            "serving the last catalog snapshot"
                        } else {
                            "no catalog to serve yet"
                        },
                    );
                    state = State::Down;
                } else {
                    tracing::debug!("database still unreachable: {why}");
                }
                // The jitter may add up to the delay again: capped, as the flag promises.
                let delay = delays
                    .next()
                    .unwrap_or(self.max_backoff)
                    .min(self.max_backoff);
                tokio::time::sleep(delay).await;
            }
        });
    }

    fn backoff(&self) -> backon::ExponentialBackoff {
        backon::ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(100))
            .with_max_delay(self.max_backoff)
            .with_jitter()
            .without_max_times()
            .build()
    }

    /// One connection, from connecting to its end; returns how it ended.
    async fn session(
        &self,
        data: &Data,
        state: &mut State,
        delays: &mut backon::ExponentialBackoff,
    ) -> End {
        let (mut client, connection) = match self.database.connect().await {
            Ok(connected) => connected,
            Err(err) => return End::Lost(err.to_string()),
        };
        let mut renew = std::pin::pin!(renewal(self.max_connection_age));
        let pending = Arc::new(Mutex::new(Pending::new(self.max_pending_ids)));
        let wake = Arc::new(Notify::new());
        let (closed_tx, mut closed) = oneshot::channel();
        tokio::spawn(drive(connection, pending.clone(), wake.clone(), closed_tx));
        let lost = |why: String| {
            End::Lost(format!(
                "connection to PostgreSQL at {} lost: {why}",
                self.database.url()
            ))
        };
        let listen = format!("LISTEN {CHANNEL}");
        if let Err(why) = self.bounded("LISTEN", client.batch_execute(&listen)).await {
            return lost(why);
        }
        lock(&pending).read_everything();
        let mut ticker = tokio::time::interval(self.health_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        // When the next full read asked for by a notification may start (the first, on
        // connecting, starts at once).
        let mut full_read_allowed = Instant::now();
        loop {
            let mut deferred = None;
            loop {
                // Not `while let`: the lock would be held across the read.
                let work = lock(&pending).take(IDS_PER_READ);
                let Some(work) = work else { break };
                if work == Work::All && Instant::now() < full_read_allowed {
                    // Anyone may ask for a full read (`<table>:*`, or more ids than fit): at
                    // most one per MIN_FULL_READ_INTERVAL, or per the last one's duration if
                    // longer. Ids announced meanwhile are covered by it.
                    lock(&pending).read_everything();
                    deferred = Some(full_read_allowed);
                    break;
                }
                let started = Instant::now();
                if let Err(why) = self.read(&mut client, data, work.clone()).await {
                    return lost(why);
                }
                if work == Work::All {
                    full_read_allowed =
                        Instant::now() + started.elapsed().max(MIN_FULL_READ_INTERVAL);
                }
            }
            if *state != State::Up {
                let snapshot = data.current().ok();
                tracing::info!(
                    database = %self.database.url(),
                    products = snapshot.as_ref().map_or(0, |s| s.product_count()),
                    customers = snapshot.as_ref().map_or(0, |s| s.customer_count()),
                    "{}: catalog read in full, following its changes",
                    if *state == State::Down { "database reachable again" } else { "database connected" },
                );
                *state = State::Up;
                *delays = self.backoff();
            }
            tokio::select! {
                why = &mut closed => return lost(why.unwrap_or_else(|_| "it ended".to_owned())),
                () = wake.notified() => {}
                () = sleep_until(deferred) => {}
                () = &mut renew => return End::Renew,
                _ = ticker.tick() => {
                    if let Err(why) = self.bounded("a ping", client.simple_query("")).await {
                        return lost(why);
                    }
                    data.confirm();
                }
            }
        }
    }

    /// `query`'s result, or why there is none: its error, or no answer within the timeout (a
    /// server that hangs, or a network that drops packets, does not end a connection by
    /// itself).
    async fn bounded<T>(
        &self,
        what: &str,
        query: impl std::future::Future<Output = Result<T, tokio_postgres::Error>>,
    ) -> Result<T, String> {
        match tokio::time::timeout(self.timeout, query).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(err)) => Err(crate::database::error::describe(
                &err,
                self.database.url().server_name(),
            )),
            Err(_) => Err(format!(
                "no answer to {what} within {:?} (--database-timeout-secs)",
                self.timeout
            )),
        }
    }

    /// Does one piece of work and publishes what it found; or says why it could not.
    async fn read(
        &self,
        client: &mut tokio_postgres::Client,
        data: &Data,
        work: Work,
    ) -> Result<(), String> {
        let failed = |err: rows::ReadError| match err {
            rows::ReadError::Database(err) => {
                crate::database::error::describe(&err, self.database.url().server_name())
            }
            rows::ReadError::Silent(limit) => {
                format!("no answer to a read within {limit:?} (--database-timeout-secs)")
            }
        };
        // Rows are applied to a snapshot: without one yet, only a full read makes one.
        let current = data.current().ok();
        let work = if current.is_none() { Work::All } else { work };
        let (refused, applied) = match (work, current) {
            (Work::Rows(table, ids), Some(current)) => {
                let read = rows::by_id(client, table, &ids, self.timeout)
                    .await
                    .map_err(failed)?;
                // The snapshot is only ever replaced by this task: reading it, then publishing
                // the changed copy, loses nothing.
                let changes: Vec<Change> = read
                    .found
                    .into_iter()
                    .filter(|change| current.would_change(change))
                    .collect();
                let applied = changes.len();
                if applied == 0 {
                    // Rows read again unchanged (a repeated or forged notification).
                    data.confirm();
                } else {
                    data.publish(
                        current.with_changes(changes),
                        SourceKind::Database,
                        applied as u64,
                    );
                }
                (read.refused, applied)
            }
            _ => {
                let read = rows::everything(client, self.timeout)
                    .await
                    .map_err(failed)?;
                data.publish(read.found, SourceKind::Database, 1);
                (read.refused, 1)
            }
        };
        if !refused.is_empty() {
            data.refused(SourceKind::Database, refused.len() as u64);
            for (table, id, problem) in refused.iter().take(3) {
                tracing::error!(%table, id, "database row refused, it breaks a rule of the catalog: {problem}");
            }
        }
        tracing::debug!(applied, "catalog changes applied from the database");
        Ok(())
    }
}

/// Completes at `at`; never if `None`.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// Completes when a connection made now is to be renewed: after 90% to 110% of `age` (so that
/// replicas renew at different times); never if `None`.
fn renewal(age: Option<Duration>) -> impl std::future::Future<Output = ()> {
    use std::hash::{BuildHasher, Hasher};
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    let at = age.map(|age| age * (900 + (random % 201) as u32) / 1000);
    async move {
        match at {
            Some(at) => tokio::time::sleep(at).await,
            None => std::future::pending().await,
        }
    }
}

/// Drives the connection: answers to the client's queries, and notifications, noted in
/// `pending` (`wake` tells the session). Sends why it ended on `closed`.
async fn drive(
    mut connection: PgConnection,
    pending: Arc<Mutex<Pending>>,
    wake: Arc<Notify>,
    closed: oneshot::Sender<String>,
) {
    let why = loop {
        match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            Some(Ok(AsyncMessage::Notification(notification))) => {
                if notification.channel() != CHANNEL {
                    continue;
                }
                match notification.payload().parse::<Announced>() {
                    Ok(announced) => {
                        let result = match announced {
                            Announced::All(_) => "read_all",
                            Announced::Rows { .. } => "read",
                        };
                        metrics::counter!("catalog_data_notifications_total", "result" => result)
                            .increment(1);
                        lock(&pending).add(announced);
                        wake.notify_one();
                    }
                    Err(err) => {
                        metrics::counter!("catalog_data_notifications_total", "result" => "malformed").increment(1);
                        tracing::debug!(
                            sender = notification.process_id(),
                            "notification ignored: {err}"
                        );
                    }
                }
            }
            Some(Ok(AsyncMessage::Notice(notice))) => {
                tracing::debug!("database notice: {}", notice.message());
            }
            Some(Ok(_)) => {}
            Some(Err(err)) => break err.to_string(),
            None => break "the server closed the connection".to_owned(),
        }
    };
    let _ = closed.send(why);
}

fn lock(pending: &Mutex<Pending>) -> std::sync::MutexGuard<'_, Pending> {
    pending.lock().unwrap_or_else(PoisonError::into_inner)
}
