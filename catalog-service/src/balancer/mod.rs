//! Client-side balancing across Discount replicas.
//!
//! A Kubernetes Service balances TCP connections, not HTTP/2 streams: one long-lived gRPC
//! connection would pin all of Catalog's RPCs to one pod. So Catalog finds the replicas itself
//! and spreads RPCs over them:
//!
//! - **Discovery.** `--discount-addr` lists one or more `host[:port]` targets. IP addresses
//!   are used as they are; DNS names (a headless Service, a compose service with replicas) are
//!   resolved at start and re-resolved every [`ReplicaSettings::resolve_interval`]. A failed
//!   lookup keeps the last answer. Replicas that leave DNS stop getting new RPCs; their
//!   in-flight RPCs finish.
//! - **One connection per replica**, HTTP/2 over mutual TLS, opened on first use and reopened
//!   as needed. A TLS handshake's certificates last as long as its connection, so connections
//!   are renewed: all of them as soon as Catalog's own TLS files are reloaded, and each one
//!   after [`ReplicaSettings::max_connection_age`] (give or take 10%, so that they do not all
//!   renew at once), which brings in Discount's rotated certificate. Make before break: a
//!   replica in rotation moves to its new connection once that has answered a health check.
//!   New RPCs go to the new connection; those in flight finish on the old one, which then
//!   closes.
//! - **Picking: power of two choices.** Two random ready replicas, the one with fewer RPCs in
//!   flight wins. Fair among equally fast replicas under a steady stream, and it steers away
//!   from a slow replica.
//!   No shared lock and no queue on the hot path: a slow replica never holds up the others.
//! - **Out of rotation quickly.** An RPC that fails on a replica in a way that says the replica
//!   is sick (unreachable, reset, no answer within half the time left) takes it out at once,
//!   and the RPC is retried on another replica within the same deadline (the RPCs are pure
//!   functions of their input, so a retry is safe). A health check every
//!   [`ReplicaSettings::health_interval`] takes out replicas that report NOT_SERVING (draining)
//!   or do not answer, and puts back those that answer SERVING again.
//! - **Back-off against flapping.** A replica taken out by a failed RPC stays out for at least
//!   [`ReplicaSettings::base_ejection_time`], doubled for each such ejection in a row, up to
//!   [`ReplicaSettings::max_ejection_time`], even if its health check passes meanwhile: a
//!   replica whose RPCs hang while its health check answers would otherwise come back every
//!   health round and cost one RPC half its deadline each time. The count starts again once a
//!   replica has stayed in rotation for `max_ejection_time`.
//! - **Last resort, one at a time.** With every replica out of rotation, one RPC at a time
//!   still tries one of them (a trial: it may have just come back), and is not retried:
//!   retries would multiply the load on a fleet that is failing as a whole. Other RPCs meanwhile
//!   fail at once instead of each waiting out its deadline on a dead or hung fleet, so Catalog
//!   answers full prices fast and its requests do not pile up. A trial that succeeds puts its
//!   replica back in rotation; so do health checks, as usual.
//!
//! # Layout
//! - `Replicas` (here): the replica set, the background task that re-resolves names, renews
//!   connections and checks health, and what the Discount client asks of it.
//! - `addr`: [`DiscountAddr`], the `host[:port]` targets, and [`DEFAULT_PORT`].
//! - `discovery`: the targets and their lookups ([`Resolve`], [`SystemResolver`]).
//! - `connection`: one HTTP/2 mTLS connection per replica, its health check, its renewal.
//! - `body`: the request body looked at one frame ahead, so its last DATA frame ends the
//!   stream.
//! - `ejection`: a replica's standing: in or out of rotation, the back-off, RPCs in flight.
//! - `pick`: power of two choices, and the one trial at a time.
//! - `settings`: [`ReplicaSettings`].
//! - `error`: [`ClientError`], and failed RPCs put into words.

mod addr;
mod body;
mod connection;
mod discovery;
mod ejection;
mod error;
mod pick;
mod settings;

pub use addr::{AddrError, DEFAULT_PORT, DiscountAddr};
pub(crate) use connection::Transport;
pub use discovery::{BoxFuture, Resolve, SystemResolver};
pub use error::ClientError;
pub(crate) use error::{append_sources, error_chain};
pub(crate) use pick::NoPick;
pub use settings::ReplicaSettings;

use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::Duration;

use mtls::Reloadable;
use tokio::sync::watch;

use connection::{HEALTH_TIMEOUT, Replica};
use discovery::Discovery;
use ejection::ReplicaState;
use pick::{Picked, Picker};

/// The replicas known now.
#[derive(Debug, Clone, Default)]
struct Snapshot {
    replicas: Arc<[Arc<Replica>]>,
    /// False until the first lookup of every name has finished (successfully or not).
    settled: bool,
}

/// The set of Discount replicas and their health, shared by every clone of the gateway.
#[derive(Debug)]
pub(crate) struct Replicas {
    discovery: Discovery,
    tls: Arc<Reloadable<rustls::ClientConfig>>,
    settings: ReplicaSettings,
    current: watch::Sender<Snapshot>,
    picker: Picker,
    /// A health round has completed since start: until then, being "in rotation" only means
    /// "not known to be down", which is not enough to call Catalog ready.
    checked: std::sync::atomic::AtomicBool,
}

impl Replicas {
    /// The replica set for `targets` (at least one). IP targets are usable at once; names are
    /// resolved by the background task that [`Replicas::start`] spawns.
    pub(crate) fn new(
        targets: &[DiscountAddr],
        tls_name: Option<&str>,
        tls: Arc<Reloadable<rustls::ClientConfig>>,
        settings: ReplicaSettings,
    ) -> Result<Arc<Self>, ClientError> {
        let discovery = Discovery::new(targets, tls_name)?;
        // `tokio::time::interval` refuses a zero period.
        let floor = Duration::from_millis(10);
        let settings = ReplicaSettings {
            resolve_interval: settings.resolve_interval.max(floor),
            health_interval: settings.health_interval.max(floor),
            ..settings
        };
        let this = Arc::new(Self {
            discovery,
            tls,
            settings,
            current: watch::Sender::new(Snapshot::default()),
            picker: Picker::new(),
            checked: std::sync::atomic::AtomicBool::new(false),
        });
        let fixed = this.discovery.fixed();
        let all_fixed = fixed.len() == this.discovery.targets.len();
        this.install(fixed, all_fixed)?;
        Ok(this)
    }

    /// Spawns the task that re-resolves names and checks health; it ends when the last
    /// gateway using these replicas is dropped. Needs a Tokio runtime.
    pub(crate) fn start(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        let resolve_every = self.settings.resolve_interval;
        let check_every = self.settings.health_interval;
        let has_names = self.discovery.has_names();
        tokio::spawn(async move {
            let mut resolve = tokio::time::interval(resolve_every);
            // The first health round comes one interval after start, or one second if the
            // interval is longer: replicas start in rotation and the first requests open the
            // connections; until a round has answered, `/readyz` says not ready.
            let first = check_every.min(Duration::from_secs(1));
            let mut check =
                tokio::time::interval_at(tokio::time::Instant::now() + first, check_every);
            resolve.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = resolve.tick(), if has_names => {
                        let Some(this) = Weak::upgrade(&weak) else { return };
                        this.resolve_all().await;
                    }
                    _ = check.tick() => {
                        let Some(this) = Weak::upgrade(&weak) else { return };
                        this.renew_connections().await;
                        this.check_all().await;
                    }
                }
            }
        });
    }

    /// Resolves every name now and installs the new replica set.
    async fn resolve_all(&self) {
        let wanted = self
            .discovery
            .resolve_all(self.settings.resolver.as_ref())
            .await;
        if let Err(err) = self.install(wanted, true) {
            tracing::error!(%err, "cannot use the resolved Discount replicas");
        }
    }

    /// Makes `wanted` the replica set, keeping the replicas (and their connections and health)
    /// that were already there.
    fn install(&self, wanted: Vec<(usize, SocketAddr)>, settled: bool) -> Result<(), ClientError> {
        let old = self.current.borrow().replicas.clone();
        let mut next: Vec<Arc<Replica>> = Vec::with_capacity(wanted.len());
        for (target, addr) in wanted {
            if next.iter().any(|r| r.addr == addr) {
                continue;
            }
            match old.iter().find(|r| r.addr == addr) {
                Some(existing) => next.push(existing.clone()),
                None => next.push(Arc::new(self.connect((target, addr), ReplicaState::new())?)),
            }
        }
        let changed =
            next.len() != old.len() || next.iter().zip(old.iter()).any(|(a, b)| a.addr != b.addr);
        if changed {
            let addrs: Vec<String> = next.iter().map(|r| r.addr.to_string()).collect();
            tracing::info!(replicas = %addrs.join(","), "Discount replicas");
        }
        self.current.send_if_modified(|snapshot| {
            let modified = changed || snapshot.settled != settled;
            if changed {
                snapshot.replicas = next.into();
            }
            snapshot.settled = settled;
            modified
        });
        self.publish_gauges();
        Ok(())
    }

    fn connect(
        &self,
        at: (usize, SocketAddr),
        state: Arc<ReplicaState>,
    ) -> Result<Replica, ClientError> {
        let random = self.picker.random();
        Replica::connect_lazy(
            &self.discovery.targets,
            at,
            &self.tls,
            &self.settings,
            state,
            random,
        )
    }

    /// Renews the connections that are due (see [`connection::renew_due`]) and puts the new
    /// ones in place of the old.
    async fn renew_connections(&self) {
        let swaps = connection::renew_due(&self.snapshot().replicas, &self.tls.current(), |old| {
            self.connect((old.target, old.addr), old.state.clone())
        })
        .await;
        if swaps.is_empty() {
            return;
        }
        self.current.send_modify(|snapshot| {
            let next: Vec<Arc<Replica>> = snapshot
                .replicas
                .iter()
                .map(|r| {
                    swaps
                        .iter()
                        .find(|(old, _)| Arc::ptr_eq(old, r))
                        .map_or_else(|| r.clone(), |(_, new)| new.clone())
                })
                .collect();
            snapshot.replicas = next.into();
        });
    }

    /// Checks every replica's health at once and moves them in or out of rotation.
    async fn check_all(&self) {
        let replicas = self.snapshot().replicas;
        let checked_some = !replicas.is_empty();
        let checks = replicas.iter().map(|replica| async move {
            let health = replica.check_health(HEALTH_TIMEOUT).await;
            self.record_health(replica, health);
        });
        futures_util::future::join_all(checks).await;
        if checked_some {
            self.checked
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        // Also corrects a gauge that racing updates left stale.
        self.publish_gauges();
    }

    /// Puts a replica that answered its health check back in rotation (unless it is still
    /// backing off after a failed RPC), or takes out one that did not answer.
    pub(crate) fn record_health(&self, replica: &Replica, health: Result<(), String>) {
        if replica.state.record_health(replica.addr, health) {
            self.publish_gauges();
        }
    }

    /// Takes `replica` out of rotation after a failed RPC: until a health check finds it
    /// serving, and for at least its back-off.
    pub(crate) fn take_out(&self, replica: &Replica, why: &'static str, detail: &str) {
        if replica
            .state
            .take_out(replica.addr, &self.settings, why, detail)
        {
            self.publish_gauges();
        }
    }

    /// Puts a replica out of rotation back after an RPC tried on it as a last resort (a trial)
    /// succeeded: it works, whatever its back-off says.
    pub(crate) fn trial_succeeded(&self, replica: &Replica) {
        if replica.state.trial_succeeded(replica.addr) {
            self.publish_gauges();
        }
    }

    fn publish_gauges(&self) {
        let snapshot = self.snapshot();
        let ready = snapshot.replicas.iter().filter(|r| r.in_rotation()).count();
        let out = snapshot.replicas.len() - ready;
        metrics::gauge!("catalog_discount_replicas", "state" => "in_rotation").set(ready as f64);
        metrics::gauge!("catalog_discount_replicas", "state" => "out_of_rotation").set(out as f64);
    }

    fn snapshot(&self) -> Snapshot {
        self.current.borrow().clone()
    }

    /// The replicas known now, waiting for the first lookup of names if it has not finished.
    pub(crate) async fn known(&self) -> Arc<[Arc<Replica>]> {
        let snapshot = self.snapshot();
        if snapshot.settled {
            return snapshot.replicas;
        }
        let mut changes = self.current.subscribe();
        match changes.wait_for(|s| s.settled).await {
            Ok(snapshot) => snapshot.replicas.clone(),
            Err(_) => snapshot.replicas,
        }
    }

    /// Why no replica is known, for error messages.
    pub(crate) fn why_none(&self) -> String {
        self.discovery.why_none()
    }

    /// Picks a replica for the next RPC, skipping those in `tried` (see [`Picker::pick`]).
    pub(crate) fn pick(
        &self,
        replicas: &[Arc<Replica>],
        tried: &[SocketAddr],
    ) -> Result<Picked, NoPick> {
        self.picker.pick(replicas, tried)
    }

    /// Whether at least one replica is in rotation now (for `/readyz`), as the health checks
    /// and RPCs left it: nothing is sent. The error says why not.
    pub(crate) fn ready_now(&self) -> Result<(), String> {
        if !self.checked.load(std::sync::atomic::Ordering::Relaxed) {
            return Err("no health check of Discount has completed yet".to_owned());
        }
        let snapshot = self.snapshot();
        if snapshot.replicas.is_empty() {
            if !snapshot.settled {
                return Err("looking up Discount's replicas".to_owned());
            }
            return Err(self.why_none());
        }
        if snapshot.replicas.iter().any(|r| r.in_rotation()) {
            return Ok(());
        }
        let out: Vec<String> = snapshot
            .replicas
            .iter()
            .map(|r| r.addr.to_string())
            .collect();
        Err(format!(
            "no Discount replica in rotation (out after a failed health check or RPC: {})",
            out.join(", ")
        ))
    }
}

/// Replicas on loopback `ports` where nothing listens, trusting a CA made for the purpose: for
/// tests that drive the balancer without reaching a replica.
#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) fn unreachable_replicas(ports: &[u16], settings: ReplicaSettings) -> Arc<Replicas> {
    use pki::{CertificateAuthority, Validity};
    let ca = CertificateAuthority::new("Replicas Test CA", Validity::days(1)).unwrap();
    let anchors = mtls::TrustAnchors::from_pem(ca.cert_pem().as_bytes()).unwrap();
    let config = mtls::client_config(&anchors, None, None).unwrap();
    let targets: Vec<DiscountAddr> = ports
        .iter()
        .map(|&port| DiscountAddr {
            host: "127.0.0.1".into(),
            port,
        })
        .collect();
    Replicas::new(&targets, None, Reloadable::new(config), settings).unwrap()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
