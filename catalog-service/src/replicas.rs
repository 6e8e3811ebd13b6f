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
//!   flight wins. Fair under a steady stream, and it steers away from a slow replica.
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

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use ecommerce_proto::pb::discount_client::DiscountClient;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use mtls::Reloadable;
use mtls::{MtlsConnector, TlsError};
use tokio::sync::watch;
use tokio::time::Instant;
use tonic::{Code, Request, Status};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
use tower::ServiceExt;
use tower::util::MapErr;

use crate::discount::{ClientError, DiscountAddr};

/// The HTTP/2 transport under the gRPC clients; transport failures become `UNAVAILABLE`.
pub(crate) type Transport = MapErr<
    Client<MtlsConnector, tonic::body::Body>,
    fn(hyper_util::client::legacy::Error) -> Status,
>;

/// How replicas are found and watched.
#[derive(Debug, Clone)]
pub struct ReplicaSettings {
    /// How often DNS names are resolved again.
    pub resolve_interval: Duration,
    /// How often every replica's health is checked.
    pub health_interval: Duration,
    /// Deadline for opening a connection (TCP and TLS).
    pub connect_timeout: Duration,
    /// Least time out of rotation after the first RPC failure that took a replica out.
    pub base_ejection_time: Duration,
    /// Cap on the doubling back-off; also how long a replica must stay in rotation before its
    /// ejections stop counting as "in a row".
    pub max_ejection_time: Duration,
    /// Connections older than this are renewed; `None`: never (only on a TLS reload).
    pub max_connection_age: Option<Duration>,
    /// Turns names into addresses [default: the system's resolver].
    pub resolver: Arc<dyn Resolve>,
}

impl Default for ReplicaSettings {
    fn default() -> Self {
        Self {
            resolve_interval: Duration::from_secs(5),
            health_interval: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(5),
            base_ejection_time: Duration::from_secs(1),
            max_ejection_time: Duration::from_secs(30),
            max_connection_age: Some(Duration::from_secs(30 * 60)),
            resolver: Arc::new(SystemResolver),
        }
    }
}

/// A boxed future, as [`Resolve`] returns.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Turns a host name into the addresses of its replicas.
pub trait Resolve: fmt::Debug + Send + Sync + 'static {
    /// Every address `host` has now, with `port`.
    fn resolve(&self, host: &str, port: u16) -> BoxFuture<io::Result<Vec<SocketAddr>>>;
}

/// The operating system's resolver (`getaddrinfo`: `/etc/hosts`, then DNS).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemResolver;

impl Resolve for SystemResolver {
    fn resolve(&self, host: &str, port: u16) -> BoxFuture<io::Result<Vec<SocketAddr>>> {
        let host = host.to_owned();
        Box::pin(async move { Ok(tokio::net::lookup_host((host, port)).await?.collect()) })
    }
}

/// Longest wait for one health answer: room for a first connection on a busy machine. (RPCs
/// find a hung replica sooner: they give up on it after half their deadline.)
const HEALTH_TIMEOUT: Duration = Duration::from_secs(1);

/// After a failed renewal, how long the old connection is kept before renewal is tried again.
const RENEW_RETRY: Duration = Duration::from_secs(30);

/// Longest wait for one DNS answer.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(2);

/// The replica [`Replicas::pick`] chose for an RPC.
#[derive(Debug)]
pub(crate) struct Picked {
    pub(crate) replica: Arc<Replica>,
    /// Every replica was out of rotation: this one is tried anyway (the one trial allowed at
    /// a time, held until dropped), and no other after it.
    pub(crate) last_resort: Option<Trial>,
    /// Replicas in rotation, not yet tried, other than this one: where a retry could go.
    pub(crate) others_in_rotation: usize,
}

/// Why [`Replicas::pick`] chose no replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NoPick {
    /// None known, or all of them tried already.
    NoneLeft,
    /// Every replica is out of rotation and another RPC is trying one of them now.
    TrialInFlight,
}

/// The right to try a replica while every replica is out of rotation; one at a time.
#[derive(Debug)]
pub(crate) struct Trial(Arc<AtomicBool>);

impl Drop for Trial {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// One configured `--discount-addr` entry.
#[derive(Debug)]
struct Target {
    addr: DiscountAddr,
    /// The name the replicas' certificates must be valid for.
    server_name: String,
    /// Set when `addr` is an IP address: nothing to resolve.
    fixed: Option<SocketAddr>,
}

/// One Discount replica: an address, its connection, and what Catalog knows of its health.
pub(crate) struct Replica {
    pub(crate) addr: SocketAddr,
    /// Index of the `--discount-addr` entry it came from.
    target: usize,
    /// When its connection is due for renewal.
    renew_at: Option<Instant>,
    /// The TLS configuration in use when the connection was set up: a new one renews it.
    tls: Arc<rustls::ClientConfig>,
    /// No renewal before this (set after a failed attempt).
    renew_not_before: Option<Instant>,
    pub(crate) client: DiscountClient<Transport>,
    pub(crate) health: HealthClient<Transport>,
    /// Shared by every connection to this address, old and renewed.
    state: Arc<ReplicaState>,
}

/// What Catalog knows of a replica, whichever connection an RPC uses: an RPC failing on a
/// connection that was just renewed still takes the replica out.
#[derive(Debug)]
struct ReplicaState {
    in_rotation: AtomicBool,
    in_flight: AtomicUsize,
    /// The back-off after RPC failures. Locked only when the replica leaves or rejoins the
    /// rotation, never to send an RPC.
    ejection: Mutex<Ejection>,
}

impl ReplicaState {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            in_rotation: AtomicBool::new(true),
            in_flight: AtomicUsize::new(0),
            ejection: Mutex::new(Ejection {
                strikes: 0,
                out_until: None,
                in_since: Instant::now(),
            }),
        })
    }

    fn ejection(&self) -> std::sync::MutexGuard<'_, Ejection> {
        self.ejection.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A replica's record of ejections by failed RPCs.
#[derive(Debug)]
struct Ejection {
    /// Ejections in a row: without a stay of `max_ejection_time` in rotation between them.
    strikes: u32,
    /// Not back in rotation before this, whatever its health check says.
    out_until: Option<Instant>,
    /// When it last joined the rotation.
    in_since: Instant,
}

impl fmt::Debug for Replica {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Replica")
            .field("addr", &self.addr)
            .field("in_rotation", &self.in_rotation())
            .field("in_flight", &self.state.in_flight.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Replica {
    /// `addr`, a replica of `targets[target]`, with a connection opened on first use.
    fn connect_lazy(
        targets: &[Target],
        (target, addr): (usize, SocketAddr),
        tls: &Arc<Reloadable<rustls::ClientConfig>>,
        settings: &ReplicaSettings,
        state: Arc<ReplicaState>,
        random: u64,
    ) -> Result<Self, ClientError> {
        let connector = MtlsConnector::new(
            tls.clone(),
            &addr.ip().to_string(),
            addr.port(),
            &targets[target].server_name,
        )?
        .with_connect_timeout(settings.connect_timeout);
        // The connector does TLS itself; the URI only supplies the HTTP/2 :authority.
        let origin: http::Uri = format!("https://{}", targets[target].addr).parse()?;
        // 90% to 110% of the maximum age.
        let renew_at = settings.max_connection_age.map(|age| {
            let per_mille = 900 + (random % 201) as u32;
            Instant::now() + age * per_mille / 1000
        });
        let client = Client::builder(TokioExecutor::new())
            .http2_only(true)
            .timer(TokioTimer::new())
            // Keep the connection until it is renewed; pings find a dead peer.
            .pool_idle_timeout(None)
            .http2_keep_alive_interval(Duration::from_secs(30))
            .http2_keep_alive_timeout(Duration::from_secs(10))
            .http2_keep_alive_while_idle(true)
            .build(connector);
        let transport: Transport = client.map_err(transport_error);
        Ok(Self {
            addr,
            target,
            renew_at,
            tls: tls.current(),
            renew_not_before: None,
            client: DiscountClient::with_origin(transport.clone(), origin.clone()),
            health: HealthClient::with_origin(transport, origin),
            state,
        })
    }

    /// The same connection, with no renewal attempt before `until`.
    fn postponed(&self, until: Instant) -> Self {
        Self {
            addr: self.addr,
            target: self.target,
            renew_at: self.renew_at,
            tls: self.tls.clone(),
            renew_not_before: Some(until),
            client: self.client.clone(),
            health: self.health.clone(),
            state: self.state.clone(),
        }
    }

    /// Whether new RPCs may be sent here.
    pub(crate) fn in_rotation(&self) -> bool {
        self.state.in_rotation.load(Ordering::Relaxed)
    }

    /// Counts an RPC in flight here until the guard is dropped.
    pub(crate) fn start(&self) -> InFlight {
        self.state.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.state.clone())
    }

    /// Asks for `ecommerce.Discount`'s health. A replica without the health service
    /// (original-style) counts as serving once it answers at all.
    pub(crate) async fn check_health(&self, timeout: Duration) -> Result<(), String> {
        let mut request = Request::new(HealthCheckRequest {
            service: "ecommerce.Discount".into(),
        });
        request.set_timeout(timeout);
        let mut health = self.health.clone();
        match tokio::time::timeout(timeout, health.check(request)).await {
            Err(_) => Err(format!("no health answer within {timeout:?}")),
            Ok(Ok(response)) if response.get_ref().status() == ServingStatus::Serving => Ok(()),
            Ok(Ok(response)) => Err(format!("health status {:?}", response.get_ref().status())),
            Ok(Err(status)) if status.code() == Code::Unimplemented => Ok(()),
            Ok(Err(status)) => Err(crate::discount::error_chain(&status)),
        }
    }
}

/// An RPC in flight on a replica (see [`Replica::start`]).
#[derive(Debug)]
pub(crate) struct InFlight(Arc<ReplicaState>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

fn transport_error(err: hyper_util::client::legacy::Error) -> Status {
    let mut text = err.to_string();
    crate::discount::append_sources(&mut text, &err);
    Status::unavailable(text)
}

/// The replicas known now.
#[derive(Debug, Clone, Default)]
struct Snapshot {
    replicas: Arc<[Arc<Replica>]>,
    /// False until the first lookup of every name has finished (successfully or not).
    settled: bool,
}

/// What the last lookup of each name gave, for the operator.
#[derive(Debug, Default)]
struct LookupState {
    /// Target index -> addresses from its last successful lookup.
    last_good: HashMap<usize, Vec<SocketAddr>>,
    /// Target index -> why its last lookup failed.
    failing: HashMap<usize, String>,
}

/// The set of Discount replicas and their health, shared by every clone of the gateway.
#[derive(Debug)]
pub(crate) struct Replicas {
    targets: Vec<Target>,
    tls: Arc<Reloadable<rustls::ClientConfig>>,
    settings: ReplicaSettings,
    current: watch::Sender<Snapshot>,
    lookups: Mutex<LookupState>,
    /// Source of the random picks.
    seq: AtomicU64,
    /// Set while an RPC tries a replica out of rotation (see [`Trial`]).
    trial: Arc<AtomicBool>,
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
        let targets: Vec<Target> = targets
            .iter()
            .map(|addr| {
                let fixed = addr
                    .host
                    .parse::<IpAddr>()
                    .ok()
                    .map(|ip| SocketAddr::new(ip, addr.port));
                Target {
                    server_name: tls_name.unwrap_or(&addr.host).to_owned(),
                    addr: addr.clone(),
                    fixed,
                }
            })
            .collect();
        if targets.is_empty() {
            return Err(ClientError::NoTargets);
        }
        // Fail at start-up, not at first use, on a name no certificate could carry.
        for target in &targets {
            rustls::pki_types::ServerName::try_from(target.server_name.as_str()).map_err(
                |err| TlsError::ServerName {
                    name: target.server_name.clone(),
                    reason: err.to_string(),
                },
            )?;
        }
        // `tokio::time::interval` refuses a zero period.
        let floor = Duration::from_millis(10);
        let settings = ReplicaSettings {
            resolve_interval: settings.resolve_interval.max(floor),
            health_interval: settings.health_interval.max(floor),
            ..settings
        };
        let this = Arc::new(Self {
            targets,
            tls,
            settings,
            current: watch::Sender::new(Snapshot::default()),
            lookups: Mutex::new(LookupState::default()),
            seq: AtomicU64::new(seed()),
            trial: Arc::new(AtomicBool::new(false)),
        });
        let fixed: Vec<(usize, SocketAddr)> = this
            .targets
            .iter()
            .enumerate()
            .filter_map(|(i, t)| t.fixed.map(|addr| (i, addr)))
            .collect();
        let all_fixed = fixed.len() == this.targets.len();
        this.install(fixed, all_fixed)?;
        Ok(this)
    }

    /// Spawns the task that re-resolves names and checks health; it ends when the last
    /// gateway using these replicas is dropped. Needs a Tokio runtime.
    pub(crate) fn start(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        let resolve_every = self.settings.resolve_interval;
        let check_every = self.settings.health_interval;
        let has_names = self.targets.iter().any(|t| t.fixed.is_none());
        tokio::spawn(async move {
            let mut resolve = tokio::time::interval(resolve_every);
            let mut check = tokio::time::interval(check_every);
            resolve.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // The first health round waits one interval: replicas start in rotation.
            check.tick().await;
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
        let lookups = self
            .targets
            .iter()
            .enumerate()
            .map(|(i, target)| async move {
                let answer = match target.fixed {
                    Some(addr) => Ok(vec![addr]),
                    None => {
                        let lookup = self
                            .settings
                            .resolver
                            .resolve(&target.addr.host, target.addr.port);
                        match tokio::time::timeout(RESOLVE_TIMEOUT, lookup).await {
                            Ok(Ok(addrs)) if addrs.is_empty() => Err("no addresses".to_owned()),
                            Ok(Ok(addrs)) => Ok(addrs),
                            Ok(Err(err)) => Err(err.to_string()),
                            Err(_) => Err(format!("no answer within {RESOLVE_TIMEOUT:?}")),
                        }
                    }
                };
                (i, answer)
            });
        let answers = futures_util::future::join_all(lookups).await;
        let mut wanted = Vec::new();
        {
            let mut state = self.lookups.lock().unwrap_or_else(PoisonError::into_inner);
            for (i, answer) in answers {
                let name = &self.targets[i].addr;
                match answer {
                    Ok(mut addrs) => {
                        addrs.sort_unstable();
                        addrs.dedup();
                        if state.failing.remove(&i).is_some() {
                            tracing::info!(%name, "Discount name resolves again");
                        }
                        state.last_good.insert(i, addrs);
                    }
                    Err(reason) => {
                        let known = state.last_good.get(&i).map_or(0, Vec::len);
                        if state.failing.get(&i) != Some(&reason) {
                            tracing::warn!(%name, %reason, keeping = known,
                                "cannot resolve Discount's name; keeping the replicas it had");
                        }
                        state.failing.insert(i, reason);
                    }
                }
                if let Some(addrs) = state.last_good.get(&i) {
                    wanted.extend(addrs.iter().map(|addr| (i, *addr)));
                }
            }
        }
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
        let random = splitmix64(self.seq.fetch_add(1, Ordering::Relaxed));
        Replica::connect_lazy(&self.targets, at, &self.tls, &self.settings, state, random)
    }

    /// Renews the connections that are due: those set up before Catalog's TLS files were last
    /// reloaded, and those past their maximum age. Make before break: a replica in rotation
    /// moves to its new connection only once that connection has answered a health check, so
    /// a slow handshake or a certificate Discount refuses (a CA rollover done out of order)
    /// never takes a working replica out; the old connection is kept and renewal is tried
    /// again after [`RENEW_RETRY`]. New RPCs go to the new connection; the old one closes
    /// when its last RPC is done.
    async fn renew_connections(&self) {
        let tls_now = self.tls.current();
        let now = Instant::now();
        let tls_changed = |r: &Replica| !Arc::ptr_eq(&r.tls, &tls_now);
        let due = |r: &Replica| {
            r.renew_not_before.is_none_or(|at| at <= now)
                && (tls_changed(r) || r.renew_at.is_some_and(|at| at <= now))
        };
        let due: Vec<Arc<Replica>> = self
            .snapshot()
            .replicas
            .iter()
            .filter(|r| due(r))
            .cloned()
            .collect();
        if due.is_empty() {
            return;
        }
        let renewals = due.into_iter().map(|old| async move {
            let why = if tls_changed(&old) {
                "Catalog's TLS files were reloaded"
            } else {
                "maximum connection age"
            };
            let renewed = match self.connect((old.target, old.addr), old.state.clone()) {
                Err(err) => Err(err.to_string()),
                // Out of rotation, it serves nothing: nothing to keep working meanwhile.
                Ok(fresh) if !old.in_rotation() => Ok(fresh),
                Ok(fresh) => fresh.check_health(HEALTH_TIMEOUT).await.map(|()| fresh),
            };
            let new = match renewed {
                Ok(fresh) => {
                    tracing::info!(replica = %old.addr, why,
                        "renewed the connection to a Discount replica");
                    fresh
                }
                Err(reason) => {
                    tracing::warn!(replica = %old.addr, why, %reason, retry_in = ?RENEW_RETRY,
                        "cannot renew the connection to a Discount replica; keeping the old one");
                    old.postponed(Instant::now() + RENEW_RETRY)
                }
            };
            (old, Arc::new(new))
        });
        let swaps = futures_util::future::join_all(renewals).await;
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
        let checks = replicas.iter().map(|replica| async move {
            let health = replica.check_health(HEALTH_TIMEOUT).await;
            self.record_health(replica, health);
        });
        futures_util::future::join_all(checks).await;
        // Also corrects a gauge that racing updates left stale.
        self.publish_gauges();
    }

    /// Puts a replica that answered its health check back in rotation (unless it is still
    /// backing off after a failed RPC), or takes out one that did not answer.
    pub(crate) fn record_health(&self, replica: &Replica, health: Result<(), String>) {
        match health {
            Ok(()) => {
                if replica.in_rotation() {
                    return;
                }
                let ejection = replica.state.ejection();
                if ejection
                    .out_until
                    .is_some_and(|until| Instant::now() < until)
                {
                    return;
                }
                self.put_back(replica, ejection, "its health check passed");
            }
            Err(reason) => {
                // The health check is the authority here: the replica is back as soon as it
                // answers SERVING, so no back-off.
                let _ejection = replica.state.ejection();
                if replica.state.in_rotation.swap(false, Ordering::Relaxed) {
                    self.ejected(replica, "health", &reason, None);
                }
            }
        }
    }

    /// Takes `replica` out of rotation after a failed RPC: until a health check finds it
    /// serving, and for at least its back-off.
    pub(crate) fn take_out(&self, replica: &Replica, why: &'static str, detail: &str) {
        let now = Instant::now();
        let mut ejection = replica.state.ejection();
        // RPCs that fail together on a replica count as one ejection.
        if !replica.state.in_rotation.swap(false, Ordering::Relaxed) {
            return;
        }
        let max = self.settings.max_ejection_time;
        let stayed_long = now.saturating_duration_since(ejection.in_since) >= max;
        ejection.strikes = if stayed_long {
            1
        } else {
            ejection.strikes.saturating_add(1)
        };
        let back_off = back_off(self.settings.base_ejection_time, max, ejection.strikes);
        ejection.out_until = Some(now + back_off);
        drop(ejection);
        self.ejected(replica, why, detail, Some(back_off));
    }

    /// Puts a replica out of rotation back after an RPC tried on it as a last resort (a trial)
    /// succeeded: it works, whatever its back-off says.
    pub(crate) fn trial_succeeded(&self, replica: &Replica) {
        if !replica.in_rotation() {
            self.put_back(replica, replica.state.ejection(), "a trial RPC succeeded");
        }
    }

    /// Puts `replica` back in rotation (its ejection record locked by the caller).
    fn put_back(
        &self,
        replica: &Replica,
        mut ejection: std::sync::MutexGuard<'_, Ejection>,
        why: &'static str,
    ) {
        if !replica.state.in_rotation.swap(true, Ordering::Relaxed) {
            ejection.out_until = None;
            ejection.in_since = Instant::now();
            drop(ejection);
            tracing::info!(replica = %replica.addr, why, "Discount replica back in rotation");
            self.publish_gauges();
        }
    }

    fn ejected(
        &self,
        replica: &Replica,
        why: &'static str,
        detail: &str,
        back_off: Option<Duration>,
    ) {
        match back_off {
            Some(back_off) => tracing::warn!(replica = %replica.addr, reason = why, detail,
                ?back_off, "Discount replica taken out of rotation"),
            None => tracing::warn!(replica = %replica.addr, reason = why, detail,
                "Discount replica taken out of rotation"),
        }
        metrics::counter!("catalog_discount_replica_ejections_total", "reason" => why).increment(1);
        self.publish_gauges();
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
        let state = self.lookups.lock().unwrap_or_else(PoisonError::into_inner);
        let failures: Vec<String> = state
            .failing
            .iter()
            .map(|(i, reason)| format!("{}: {reason}", self.targets[*i].addr))
            .collect();
        if failures.is_empty() {
            "no Discount replica known".to_owned()
        } else {
            format!("no Discount replica known ({})", failures.join("; "))
        }
    }

    /// Picks a replica for the next RPC, skipping those in `tried`: power of two choices among
    /// the replicas in rotation, or among all of them when none is (a last resort, for one RPC
    /// at a time).
    pub(crate) fn pick(
        &self,
        replicas: &[Arc<Replica>],
        tried: &[SocketAddr],
    ) -> Result<Picked, NoPick> {
        // Each flag read once, so that a replica leaving the rotation meanwhile cannot make
        // the choice below come up empty.
        let mut candidates: Vec<(&Arc<Replica>, bool)> = replicas
            .iter()
            .filter(|r| !tried.contains(&r.addr))
            .map(|r| (r, r.in_rotation()))
            .collect();
        let last_resort = !candidates.iter().any(|&(_, in_rotation)| in_rotation);
        if !last_resort {
            candidates.retain(|&(_, in_rotation)| in_rotation);
        }
        if candidates.is_empty() {
            return Err(NoPick::NoneLeft);
        }
        let trial = if last_resort {
            if self
                .trial
                .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_err()
            {
                return Err(NoPick::TrialInFlight);
            }
            Some(Trial(self.trial.clone()))
        } else {
            None
        };
        let replica = self.two_choices(&candidates).ok_or(NoPick::NoneLeft)?;
        Ok(Picked {
            replica,
            others_in_rotation: if trial.is_some() {
                0
            } else {
                candidates.len() - 1
            },
            last_resort: trial,
        })
    }

    fn two_choices(&self, candidates: &[(&Arc<Replica>, bool)]) -> Option<Arc<Replica>> {
        let count = candidates.len() as u64;
        if count <= 1 {
            return candidates.first().map(|&(r, _)| Arc::clone(r));
        }
        let random = splitmix64(self.seq.fetch_add(1, Ordering::Relaxed));
        let first = (random % count) as usize;
        let step = 1 + ((random >> 32) % (count - 1)) as usize;
        let (a, b) = (
            candidates[first].0,
            candidates[(first + step) % candidates.len()].0,
        );
        let load = |r: &Replica| r.state.in_flight.load(Ordering::Relaxed);
        Some(Arc::clone(if load(b) < load(a) { b } else { a }))
    }

    /// Checks every known replica now (for `/readyz`); `Ok` when at least one is serving.
    pub(crate) async fn check_now(&self, timeout: Duration) -> Result<(), Vec<String>> {
        let replicas = self.known().await;
        if replicas.is_empty() {
            return Err(vec![self.why_none()]);
        }
        let checks = replicas.iter().map(|replica| async move {
            let health = replica.check_health(timeout).await;
            // A probe may put a replica back, never take one out: its deadline is the
            // request's, tighter than the health checks', and anyone can call `/readyz`.
            if health.is_ok() {
                self.record_health(replica, Ok(()));
            }
            health.map_err(|reason| format!("{}: {reason}", replica.addr))
        });
        let results = futures_util::future::join_all(checks).await;
        if results.iter().any(Result::is_ok) {
            return Ok(());
        }
        Err(results.into_iter().filter_map(Result::err).collect())
    }
}

/// How long the `strikes`-th ejection in a row lasts at least: `base` doubled for each
/// earlier one, capped at `max`.
fn back_off(base: Duration, max: Duration, strikes: u32) -> Duration {
    let doublings = strikes.saturating_sub(1).min(31);
    base.saturating_mul(1 << doublings).min(max)
}

/// A per-process seed, so that two Catalogs do not pick in lock-step.
fn seed() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::process::id())
}

/// A fast, well-mixed 64-bit hash of a counter: random enough to pick replicas.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use mtls::{self as tls, TrustAnchors};
    use pki::{CertificateAuthority, Validity};

    use super::*;

    const BASE: Duration = Duration::from_secs(1);
    const MAX: Duration = Duration::from_secs(8);

    /// One replica on a fixed address where nothing listens.
    fn one_replica() -> (Arc<Replicas>, Arc<Replica>) {
        one_replica_with(ReplicaSettings {
            base_ejection_time: BASE,
            max_ejection_time: MAX,
            ..ReplicaSettings::default()
        })
    }

    fn one_replica_with(settings: ReplicaSettings) -> (Arc<Replicas>, Arc<Replica>) {
        let ca = CertificateAuthority::new("Replicas Test CA", Validity::days(1)).unwrap();
        let anchors = TrustAnchors::from_pem(ca.cert_pem().as_bytes()).unwrap();
        let config = tls::client_config(&anchors, None, None).unwrap();
        let target = DiscountAddr {
            host: "127.0.0.1".into(),
            port: 1,
        };
        let replicas = Replicas::new(&[target], None, Reloadable::new(config), settings).unwrap();
        let replica = replicas.snapshot().replicas[0].clone();
        (replicas, replica)
    }

    /// How long after an RPC ejection the replica's passing health checks bring it back.
    async fn time_out(replicas: &Replicas, replica: &Replica) -> Duration {
        let step = Duration::from_millis(250);
        let start = Instant::now();
        replicas.take_out(replica, "timeout", "test");
        assert!(!replica.in_rotation());
        while !replica.in_rotation() {
            tokio::time::advance(step).await;
            replicas.record_health(replica, Ok(()));
        }
        start.elapsed()
    }

    #[test]
    fn back_off_doubles_up_to_the_cap() {
        let base = Duration::from_millis(500);
        let max = Duration::from_secs(30);
        let got: Vec<u64> = [0, 1, 2, 3, 6, 7, 40, u32::MAX]
            .into_iter()
            .map(|strikes| back_off(base, max, strikes).as_millis() as u64)
            .collect();
        assert_eq!(got, [500, 500, 1000, 2000, 16000, 30000, 30000, 30000]);
    }

    #[tokio::test(start_paused = true)]
    async fn ejections_in_a_row_keep_a_replica_out_longer_despite_passing_health_checks() {
        let (replicas, replica) = one_replica();
        let mut times = Vec::new();
        for _ in 0..5 {
            times.push(time_out(&replicas, &replica).await.as_millis());
        }
        assert_eq!(times, [1000, 2000, 4000, 8000, 8000]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_long_stay_in_rotation_resets_the_back_off() {
        let (replicas, replica) = one_replica();
        time_out(&replicas, &replica).await;
        time_out(&replicas, &replica).await;
        tokio::time::advance(MAX).await;
        assert_eq!(time_out(&replicas, &replica).await, BASE);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_health_check_has_no_back_off() {
        let (replicas, replica) = one_replica();
        replicas.record_health(&replica, Err("NOT_SERVING".into()));
        assert!(!replica.in_rotation());
        replicas.record_health(&replica, Ok(()));
        assert!(replica.in_rotation());
        // Nor does it count as a strike: the next RPC ejection is the first.
        assert_eq!(time_out(&replicas, &replica).await, BASE);
    }

    #[tokio::test(start_paused = true)]
    async fn rpcs_failing_together_count_as_one_ejection() {
        let (replicas, replica) = one_replica();
        replicas.take_out(&replica, "timeout", "first");
        replicas.take_out(&replica, "unreachable", "second, already out");
        tokio::time::advance(BASE).await;
        replicas.record_health(&replica, Ok(()));
        assert!(replica.in_rotation());
    }

    #[tokio::test(start_paused = true)]
    async fn a_successful_trial_puts_a_replica_back_despite_its_back_off() {
        let (replicas, replica) = one_replica();
        replicas.take_out(&replica, "timeout", "test");
        replicas.record_health(&replica, Ok(()));
        assert!(!replica.in_rotation(), "backing off");
        replicas.trial_succeeded(&replica);
        assert!(replica.in_rotation());
    }

    fn aging_replica() -> (Arc<Replicas>, Arc<Replica>) {
        one_replica_with(ReplicaSettings {
            max_connection_age: Some(Duration::from_secs(60)),
            ..ReplicaSettings::default()
        })
    }

    #[tokio::test(start_paused = true)]
    async fn a_renewed_connection_shares_the_replicas_state_with_the_old_one() {
        let (replicas, old) = aging_replica();
        // Out of rotation, so the new connection is used without a health check first.
        replicas.take_out(&old, "timeout", "test");
        tokio::time::advance(Duration::from_secs(70)).await;
        replicas.renew_connections().await;
        let new = replicas.snapshot().replicas[0].clone();
        assert!(!Arc::ptr_eq(&old, &new), "the connection was renewed");
        assert!(!new.in_rotation(), "still out of rotation");
        // What happens on the old connection counts for the replica.
        let in_flight = old.start();
        assert_eq!(new.state.in_flight.load(Ordering::Relaxed), 1);
        drop(in_flight);
        replicas.trial_succeeded(&old);
        assert!(new.in_rotation());
    }

    #[tokio::test(start_paused = true)]
    async fn a_replica_keeps_its_connection_while_a_new_one_fails_its_health_check() {
        // Nothing listens at the replica's address: the new connection cannot answer.
        let (replicas, old) = aging_replica();
        tokio::time::advance(Duration::from_secs(70)).await;
        replicas.renew_connections().await;
        let kept = replicas.snapshot().replicas[0].clone();
        assert!(kept.in_rotation(), "a failed renewal takes nothing out");
        assert!(Arc::ptr_eq(&kept.state, &old.state));
        assert!(kept.renew_not_before.is_some(), "tried again later");
        // Not before RENEW_RETRY.
        replicas.renew_connections().await;
        assert!(Arc::ptr_eq(&kept, &replicas.snapshot().replicas[0]));
    }
}
