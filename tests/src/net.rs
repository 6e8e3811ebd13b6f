//! Sockets for the other harness modules: loopback listeners on port 0 (bound as the services'
//! binaries bind theirs), a task-run server handle ([`Running`]) and an address that refuses
//! connections ([`ClosedPort`]).

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A listener on a port of the system's choosing on loopback, with the accept queue the
/// services' binaries give theirs ([`admission::bind`]).
pub(crate) async fn bind_loopback() -> TcpListener {
    admission::bind(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap()
}

/// A server running in a task, stopped by [`Running::stop`] (or aborted when dropped).
#[derive(Debug)]
pub struct Running {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Where its operations port listens, if it has one in the same task (Catalog).
    pub ops_addr: Option<SocketAddr>,
    admission: Option<admission::Gate>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Running {
    /// Runs `run` in a task; the receiver it gets completes when the server is asked to stop.
    pub(crate) fn spawn<F>(addr: SocketAddr, run: impl FnOnce(oneshot::Receiver<()>) -> F) -> Self
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let (stop, stopped) = oneshot::channel();
        Self {
            addr,
            ops_addr: None,
            admission: None,
            stop: Some(stop),
            task: Some(tokio::spawn(run(stopped))),
        }
    }

    /// The same server, with its operations port at `ops_addr`.
    pub(crate) fn with_ops(mut self, ops_addr: SocketAddr) -> Self {
        self.ops_addr = Some(ops_addr);
        self
    }

    /// The same server, admitting connections through `gate`.
    pub(crate) fn with_admission(mut self, gate: admission::Gate) -> Self {
        self.admission = Some(gate);
        self
    }

    /// The gate admitting connections to its main port (its limits, and what it has done,
    /// counted for this server alone); panics for a server without one (a fake).
    pub fn admission(&self) -> &admission::Gate {
        self.admission
            .as_ref()
            .unwrap_or_else(|| panic!("the server on {} has no admission gate", self.addr))
    }

    /// Where its operations port listens (`/healthz`, `/readyz`, `/metrics`); panics for a
    /// server without one.
    pub fn ops(&self) -> SocketAddr {
        self.ops_addr
            .unwrap_or_else(|| panic!("the server on {} has no operations port", self.addr))
    }

    /// Asks the server to shut down gracefully, without waiting for it.
    pub fn signal_stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Asks the server to shut down gracefully and waits until it has.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// Completes when the server's stop signal arrives (or its sender is dropped).
pub(crate) async fn shutdown_on(stopped: oneshot::Receiver<()>) {
    let _ = stopped.await;
}

/// An address on which nothing listens, for as long as this value lives: its port is bound
/// by a socket that never listens, so connecting is refused, and no other socket (another
/// test's server included) can be given the port meanwhile.
#[derive(Debug)]
pub struct ClosedPort {
    /// The refusing address.
    pub addr: SocketAddr,
    _socket: TcpSocket,
}

/// A [`ClosedPort`] on loopback. Keep it alive while anything may connect to its address.
pub fn closed_port() -> ClosedPort {
    // No SO_REUSEADDR: no other socket may bind the port while this one holds it.
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    ClosedPort {
        addr: socket.local_addr().unwrap(),
        _socket: socket,
    }
}

#[cfg(test)]
mod tests {
    use std::io::ErrorKind;

    use super::*;

    #[tokio::test]
    async fn a_closed_port_refuses_connections_and_cannot_be_bound_while_held() {
        let closed = closed_port();
        let refused = tokio::net::TcpStream::connect(closed.addr)
            .await
            .unwrap_err();
        assert_eq!(refused.kind(), ErrorKind::ConnectionRefused, "{refused}");
        // As the servers under test bind: with SO_REUSEADDR.
        let taken = admission::bind(closed.addr).unwrap_err();
        assert_eq!(taken.kind(), ErrorKind::AddrInUse, "{taken}");
    }
}
