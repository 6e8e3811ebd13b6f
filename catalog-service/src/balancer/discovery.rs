//! Finding the replicas: the configured targets, and turning their names into addresses
//! ([`Resolve`], [`SystemResolver`]). IP targets are used as they are; a name's last good
//! answer is kept while its lookups fail.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use mtls::TlsError;

use super::addr::DiscountAddr;
use super::error::ClientError;

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

/// Longest wait for one DNS answer.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(2);

/// One configured `--discount-addr` entry.
#[derive(Debug)]
pub(super) struct Target {
    pub(super) addr: DiscountAddr,
    /// The name the replicas' certificates must be valid for.
    pub(super) server_name: String,
    /// Set when `addr` is an IP address: nothing to resolve.
    pub(super) fixed: Option<SocketAddr>,
}

/// What the last lookup of each name gave, for the operator.
#[derive(Debug, Default)]
struct LookupState {
    /// Target index -> addresses from its last successful lookup.
    last_good: HashMap<usize, Vec<SocketAddr>>,
    /// Target index -> why its last lookup failed.
    failing: HashMap<usize, String>,
}

/// The configured targets and what their lookups gave.
#[derive(Debug)]
pub(super) struct Discovery {
    pub(super) targets: Vec<Target>,
    lookups: Mutex<LookupState>,
}

impl Discovery {
    /// The targets for `addrs` (at least one), each checked for a name a certificate can
    /// carry.
    pub(super) fn new(addrs: &[DiscountAddr], tls_name: Option<&str>) -> Result<Self, ClientError> {
        let targets: Vec<Target> = addrs
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
        Ok(Self {
            targets,
            lookups: Mutex::new(LookupState::default()),
        })
    }

    /// The replicas of the IP targets, usable without a lookup: (target index, address).
    pub(super) fn fixed(&self) -> Vec<(usize, SocketAddr)> {
        self.targets
            .iter()
            .enumerate()
            .filter_map(|(i, t)| t.fixed.map(|addr| (i, addr)))
            .collect()
    }

    /// Whether any target is a name, to be resolved again and again.
    pub(super) fn has_names(&self) -> bool {
        self.targets.iter().any(|t| t.fixed.is_none())
    }

    /// Resolves every name now with `resolver`; returns the replicas to use: for each target,
    /// the addresses of its last successful lookup, as (target index, address).
    pub(super) async fn resolve_all(&self, resolver: &dyn Resolve) -> Vec<(usize, SocketAddr)> {
        let lookups = self
            .targets
            .iter()
            .enumerate()
            .map(|(i, target)| async move {
                let answer = match target.fixed {
                    Some(addr) => Ok(vec![addr]),
                    None => {
                        let lookup = resolver.resolve(&target.addr.host, target.addr.port);
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
        wanted
    }

    /// Why no replica is known, for error messages.
    pub(super) fn why_none(&self) -> String {
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
}
