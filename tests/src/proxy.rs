//! A TCP proxy between Catalog and Discount that counts connections and whose target can be
//! switched: how a test sees the connections a client really opens, and takes a dependency
//! away and brings it back without reusing a port.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::net::{Running, bind_loopback};

/// A TCP proxy that counts the connections it accepts (to show how many connections a client
/// really opens) and whose target can be switched (to take a dependency away and bring it back
/// without reusing a port).
#[derive(Debug)]
pub struct Proxy {
    /// Where the proxy listens.
    pub addr: SocketAddr,
    /// Connections accepted so far.
    accepted: tokio::sync::watch::Receiver<usize>,
    /// Connections open now (both sides still connected).
    open: tokio::sync::watch::Receiver<usize>,
    target: Arc<std::sync::Mutex<SocketAddr>>,
    _running: Running,
}

impl Proxy {
    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        *self.accepted.borrow()
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        *self.open.borrow()
    }

    /// Waits until `n` connections have been accepted in all; panics after `guard`.
    pub async fn wait_for_connections(&self, n: usize, guard: Duration) {
        let mut accepted = self.accepted.clone();
        tokio::time::timeout(guard, accepted.wait_for(|&count| count >= n))
            .await
            .unwrap_or_else(|_| panic!("{} connection(s), never {n}", self.connections()))
            .unwrap();
    }

    /// Waits until at most `n` connections are open; panics after `guard`.
    pub async fn wait_for_open_at_most(&self, n: usize, guard: Duration) {
        let mut open = self.open.clone();
        tokio::time::timeout(guard, open.wait_for(|&count| count <= n))
            .await
            .unwrap_or_else(|_| panic!("{} connection(s) stay open, expected {n}", self.open()))
            .unwrap();
    }

    /// Sends new connections to `target` from now on.
    pub fn set_target(&self, target: SocketAddr) {
        *self.target.lock().unwrap() = target;
    }
}

/// Starts a [`Proxy`] to `target`.
pub async fn spawn_proxy(target: SocketAddr) -> Proxy {
    let listener = bind_loopback().await;
    let addr = listener.local_addr().unwrap();
    let (accepted_tx, accepted) = tokio::sync::watch::channel(0usize);
    let (open_tx, open) = tokio::sync::watch::channel(0usize);
    let open_tx = Arc::new(open_tx);
    let target = Arc::new(std::sync::Mutex::new(target));
    let current = target.clone();
    let running = Running::spawn(addr, |stopped| async move {
        let mut stopped = std::pin::pin!(stopped);
        loop {
            tokio::select! {
                _ = &mut stopped => break,
                accepted = listener.accept() => {
                    let Ok((mut inbound, _)) = accepted else { continue };
                    accepted_tx.send_modify(|n| *n += 1);
                    open_tx.send_modify(|n| *n += 1);
                    let target = *current.lock().unwrap();
                    let open_tx = open_tx.clone();
                    tokio::spawn(async move {
                        if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                            let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                        open_tx.send_modify(|n| *n -= 1);
                    });
                }
            }
        }
    });
    Proxy {
        addr,
        accepted,
        open,
        target,
        _running: running,
    }
}
