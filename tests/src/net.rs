//! Sockets for the other harness modules: loopback listeners on port 0, a task-run server
//! handle ([`Running`]) and an address on which nothing listens.

use std::net::SocketAddr;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A listener on a port of the system's choosing on loopback.
pub(crate) async fn bind_loopback() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").await.unwrap()
}

/// A server running in a task, stopped by [`Running::stop`] (or aborted when dropped).
#[derive(Debug)]
pub struct Running {
    /// Where it listens.
    pub addr: SocketAddr,
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
            stop: Some(stop),
            task: Some(tokio::spawn(run(stopped))),
        }
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

/// An address on which nothing listens (bound, then released).
pub async fn closed_port() -> SocketAddr {
    bind_loopback().await.local_addr().unwrap()
}
