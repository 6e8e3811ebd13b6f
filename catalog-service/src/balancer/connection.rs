//! One HTTP/2 connection over mutual TLS per replica ([`Replica`]): opened on first use,
//! health-checked, and renewed (make before break) when Catalog's TLS files are reloaded or
//! the connection reaches its maximum age.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use ecommerce_proto::pb::discount_client::DiscountClient;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use mtls::{MtlsConnector, Reloadable};
use tokio::time::Instant;
use tonic::{Code, Request, Status};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
use tower::ServiceExt;
use tower::util::{MapErr, MapRequest};

use super::body::LastFrameEnds;
use super::discovery::Target;
use super::ejection::ReplicaState;
use super::error::{ClientError, append_sources, error_chain};
use super::settings::ReplicaSettings;

/// The HTTP/2 transport under the gRPC clients: each request's body ends with its last DATA
/// frame ([`LastFrameEnds`]); transport failures become `UNAVAILABLE`.
pub(crate) type Transport = MapErr<
    MapRequest<
        Client<MtlsConnector, RequestBody>,
        fn(http::Request<tonic::body::Body>) -> http::Request<RequestBody>,
    >,
    fn(hyper_util::client::legacy::Error) -> Status,
>;

/// A request body as the transport sends it.
type RequestBody = LastFrameEnds<tonic::body::Body>;

/// Longest wait for one health answer: room for a first connection on a busy machine. (RPCs
/// find a hung replica sooner: they give up on it after half their deadline.)
pub(super) const HEALTH_TIMEOUT: Duration = Duration::from_secs(1);

/// After a failed renewal, how long the old connection is kept before renewal is tried again.
const RENEW_RETRY: Duration = Duration::from_secs(30);

/// One Discount replica: an address, its connection, and what Catalog knows of its health.
pub(crate) struct Replica {
    pub(crate) addr: SocketAddr,
    /// Index of the `--discount-addr` entry it came from.
    pub(super) target: usize,
    /// When its connection is due for renewal.
    renew_at: Option<Instant>,
    /// The TLS configuration in use when the connection was set up: a new one renews it.
    tls: Arc<rustls::ClientConfig>,
    /// No renewal before this (set after a failed attempt).
    pub(super) renew_not_before: Option<Instant>,
    pub(crate) client: DiscountClient<Transport>,
    pub(crate) health: HealthClient<Transport>,
    /// Shared by every connection to this address, old and renewed.
    pub(super) state: Arc<ReplicaState>,
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
    pub(super) fn connect_lazy(
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
        let ends_early: fn(_) -> _ = ends_early;
        let transport: Transport = client.map_request(ends_early).map_err(transport_error);
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
        self.state.in_rotation()
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
            Ok(Err(status)) => Err(error_chain(&status)),
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

/// `request` with its body looked at one frame ahead ([`LastFrameEnds`]).
fn ends_early(request: http::Request<tonic::body::Body>) -> http::Request<RequestBody> {
    request.map(LastFrameEnds::new)
}

fn transport_error(err: hyper_util::client::legacy::Error) -> Status {
    let mut text = err.to_string();
    append_sources(&mut text, &err);
    Status::unavailable(text)
}

/// Renews the connections among `replicas` that are due: those set up before Catalog's TLS
/// files were last reloaded (`tls_now` is the configuration in use now), and those past their
/// maximum age. Make before break: a replica in rotation moves to its new connection only once
/// that connection has answered a health check, so a slow handshake or a certificate Discount
/// refuses (a CA rollover done out of order) never takes a working replica out; the old
/// connection is kept and renewal is tried again after [`RENEW_RETRY`]. New RPCs go to the new
/// connection; the old one closes when its last RPC is done.
///
/// `connect` opens a new connection to a replica, sharing its state. Returns each renewed
/// replica with the one to put in its place; nothing when none was due.
pub(super) async fn renew_due(
    replicas: &[Arc<Replica>],
    tls_now: &Arc<rustls::ClientConfig>,
    connect: impl Fn(&Replica) -> Result<Replica, ClientError>,
) -> Vec<(Arc<Replica>, Arc<Replica>)> {
    let now = Instant::now();
    let tls_changed = |r: &Replica| !Arc::ptr_eq(&r.tls, tls_now);
    let due = |r: &Replica| {
        r.renew_not_before.is_none_or(|at| at <= now)
            && (tls_changed(r) || r.renew_at.is_some_and(|at| at <= now))
    };
    let due: Vec<Arc<Replica>> = replicas.iter().filter(|r| due(r)).cloned().collect();
    let connect = &connect;
    let renewals = due.into_iter().map(|old| async move {
        let why = if tls_changed(&old) {
            "Catalog's TLS files were reloaded"
        } else {
            "maximum connection age"
        };
        let renewed = match connect(&old) {
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
    futures_util::future::join_all(renewals).await
}
