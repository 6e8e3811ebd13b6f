//! A killable Discount replica: the real server in a thread and runtime of its own, killed the
//! way a crashed process dies and restarted on the same address (held for it meanwhile),
//! counting the RPCs it answers.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use discount_service::server::{DiscountServer, ServerSettings};
use mtls::TlsSource;
use pki::ServicePki;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::oneshot;

use crate::certs::{anchors, identity};

/// A real Discount replica in a thread and Tokio runtime of its own, so that it can be killed
/// the way a crashed process dies: the listener and every connection dropped at once, RPCs in
/// flight included, with no health flip and no drain. It counts the RPCs it answers (from its
/// own access log, which only this thread's subscriber sees).
#[derive(Debug)]
pub struct Replica {
    /// Where it listens; a restart listens here again.
    pub addr: SocketAddr,
    /// Holds the port for the replica's whole life, dead or alive: bound with SO_REUSEPORT
    /// (which the listeners set too) and never listening, so while the replica is dead
    /// connections are refused and no other socket (another test's server) can be given it.
    reserved: Option<TcpSocket>,
    settings: ServerSettings,
    answered: Arc<AtomicUsize>,
    kill: Option<oneshot::Sender<()>>,
    dead: Option<oneshot::Receiver<()>>,
}

impl Replica {
    /// Starts a replica with the PKI's Discount certificate on a free loopback port.
    pub async fn start(pki: &ServicePki) -> Self {
        let mut replica = Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            reserved: None,
            settings: ServerSettings::new(TlsSource::fixed(
                identity(&pki.discount),
                anchors(&pki.ca),
            )),
            answered: Arc::new(AtomicUsize::new(0)),
            kill: None,
            dead: None,
        };
        replica.run().await;
        replica
    }

    /// RPCs answered so far (access-log lines), across restarts.
    pub fn answered(&self) -> usize {
        self.answered.load(Ordering::SeqCst)
    }

    /// Kills the replica and returns once its sockets are closed.
    pub async fn kill(&mut self) {
        if let Some(kill) = self.kill.take() {
            let _ = kill.send(());
        }
        if let Some(dead) = self.dead.take() {
            let _ = dead.await;
        }
    }

    /// Starts the replica again on the same address.
    pub async fn restart(&mut self) {
        self.kill().await;
        self.run().await;
    }

    async fn run(&mut self) {
        let (kill, killed) = oneshot::channel::<()>();
        let (dead, is_dead) = oneshot::channel::<()>();
        let (bound, is_bound) = oneshot::channel::<SocketAddr>();
        let settings = self.settings.clone();
        let wanted = self.addr;
        let answered = self.answered.clone();
        std::thread::spawn(move || {
            use tracing_subscriber::layer::SubscriberExt;
            let _log = tracing::subscriber::set_default(
                tracing_subscriber::registry().with(CountAccessLines(answered)),
            );
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = listen_on(wanted)
                    .unwrap_or_else(|err| panic!("cannot listen on {wanted}: {err}"));
                let _ = bound.send(listener.local_addr().unwrap());
                let server = DiscountServer::build(settings, listener).unwrap();
                tokio::select! {
                    served = server.run_until(std::future::pending()) => served.unwrap(),
                    _ = killed => {}
                }
            });
            // Dropping the runtime drops every task: the listener and all connections close.
            drop(runtime);
            let _ = dead.send(());
        });
        self.addr = is_bound.await.unwrap();
        if self.reserved.is_none() {
            self.reserved = Some(reserve(self.addr));
        }
        self.kill = Some(kill);
        self.dead = Some(is_dead);
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        if let Some(kill) = self.kill.take() {
            let _ = kill.send(());
        }
    }
}

/// A listener on `addr` that shares its port with the replica's reservation.
fn listen_on(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    // As `TcpListener::bind` does: a restart binds over its old connections in TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket.set_reuseport(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// The reservation of `addr`'s port (see [`Replica`]). No SO_REUSEADDR: with it, a socket
/// that is not listening would let other sockets bind the port.
fn reserve(addr: SocketAddr) -> TcpSocket {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_reuseport(true).unwrap();
    socket.bind(addr).unwrap();
    socket
}

/// Counts Discount's access-log lines (one per RPC answered).
struct CountAccessLines(Arc<AtomicUsize>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for CountAccessLines {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        if event.metadata().target() == "access" {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::ErrorKind;

    use tokio::net::TcpStream;

    use super::*;

    #[tokio::test]
    async fn a_dead_replica_refuses_connections_and_keeps_its_port_for_the_restart() {
        let mut replica = Replica::start(&crate::certs::service_pki()).await;
        let addr = replica.addr;
        TcpStream::connect(addr).await.unwrap();

        replica.kill().await;
        let refused = TcpStream::connect(addr).await.unwrap_err();
        assert_eq!(refused.kind(), ErrorKind::ConnectionRefused, "{refused}");
        // As another test's server would bind it.
        let taken = TcpListener::bind(addr).await.unwrap_err();
        assert_eq!(taken.kind(), ErrorKind::AddrInUse, "{taken}");

        replica.restart().await;
        assert_eq!(replica.addr, addr);
        TcpStream::connect(addr).await.unwrap();
    }
}
