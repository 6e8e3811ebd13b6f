//! The accept loop both servers run ([`accept_loop`]): accept, admit through the [`Gate`] (or
//! close at once), hand each admitted connection to the server with its [`Slot`]; and the
//! listener it accepts from ([`bind`]), with a queue deep enough for a flood.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket, TcpStream};

use crate::gate::{Gate, Slot};

/// The kernel's queue of connections not yet accepted (capped by `net.core.somaxconn`, 4096 by
/// default on Linux since 5.4). When it is full a new client's SYN is dropped and its retry
/// comes a second later; a flood of reconnecting connections waits in it while the gate drops
/// their predecessors, so it is deeper than the usual 1024, which a flood of 2,000 fills.
pub const LISTEN_BACKLOG: u32 = 4096;

/// Connections admitted in a row before the loop yields, so that the connections admitted
/// before (their tasks, and the I/O events that wake them) run before more are admitted. Under
/// a flood, what decides whether a real client survives is how many connections are admitted
/// between two of its turns: with the default `max_unproven` of 500, a newcomer has about 60
/// turns to prove itself, where a TLS handshake needs 3 to 6. Without the yield the loop
/// admits until its task budget runs out (128 at a time), which left a real client 4 turns
/// and got it evicted under a flood of 2,000; with 1 at a time the flood is accepted no faster
/// than with 8, but more slowly when the machine is busy.
const ADMITTED_PER_TURN: usize = 8;

/// After an accept error that is not about one connection (out of file descriptors), how long
/// to wait before accepting again, as `axum::serve` does.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_secs(1);

/// Binds a listener on `addr` with a [`LISTEN_BACKLOG`]-deep queue (and `SO_REUSEADDR`, as
/// Tokio's own `bind` sets on Unix). Needs a Tokio runtime.
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Accepts connections on `listener` until `stop` completes (then the listener closes), and
/// admits each through `gate`: an admitted connection goes to `admitted` with its slot (with
/// `TCP_NODELAY` set: both servers answer small messages); one the gate refuses is closed at
/// once, before anything is read from it. An accept error about one connection is skipped;
/// another (out of file descriptors) is logged and accepting pauses a moment.
pub async fn accept_loop(
    listener: TcpListener,
    gate: Gate,
    stop: impl Future<Output = ()>,
    mut admitted: impl FnMut(TcpStream, SocketAddr, Slot),
) {
    if let Ok(addr) = listener.local_addr() {
        gate.listening_on(addr);
    }
    let mut stop = std::pin::pin!(stop);
    let mut turn = 0;
    loop {
        let accepted = tokio::select! {
            biased;
            () = &mut stop => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((tcp, peer)) => {
                // Refused (counted and logged by the gate): closed before a byte is read.
                let Ok(slot) = gate.admit(peer) else {
                    continue;
                };
                let _ = tcp.set_nodelay(true);
                admitted(tcp, peer, slot);
                turn += 1;
                if turn == ADMITTED_PER_TURN {
                    turn = 0;
                    tokio::task::yield_now().await;
                }
            }
            Err(err) if is_connection_error(&err) => {}
            Err(err) => {
                tracing::error!(%err, pause = ?ACCEPT_ERROR_PAUSE, "cannot accept connections");
                tokio::select! {
                    () = &mut stop => break,
                    () = tokio::time::sleep(ACCEPT_ERROR_PAUSE) => {}
                }
            }
        }
    }
}

/// Errors that concern one connection only (the client gave up before it was accepted).
fn is_connection_error(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::limits::{Limits, MetricNames};

    /// Serves on a fresh listener: each admitted connection answers `proven` to its first
    /// byte `p` (and proves itself), and is held, unanswered, until the gate drops it.
    async fn spawn_server(limits: Limits) -> (SocketAddr, Gate, Arc<Mutex<Vec<String>>>) {
        let listener = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let gate = Gate::new(limits, MetricNames::default());
        let ends = Arc::new(Mutex::new(Vec::new()));
        let (served, seen) = (gate.clone(), ends.clone());
        tokio::spawn(accept_loop(
            listener,
            served,
            std::future::pending(),
            move |mut tcp, _, slot| {
                let seen = seen.clone();
                tokio::spawn(async move {
                    let work = async {
                        let mut byte = [0u8; 1];
                        while tcp.read(&mut byte).await.unwrap_or(0) == 1 {
                            if byte[0] == b'p' && slot.prove() {
                                tcp.write_all(b"proven").await.unwrap();
                            }
                        }
                    };
                    let end = match slot.guard(work).await {
                        Ok(()) => "closed by the peer".to_owned(),
                        Err(why) => why.label().to_owned(),
                    };
                    seen.lock().unwrap().push(end);
                });
            },
        ));
        (addr, gate, ends)
    }

    async fn proven(addr: SocketAddr) -> TcpStream {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        tcp.write_all(b"p").await.unwrap();
        let mut answer = [0u8; 6];
        tcp.read_exact(&mut answer).await.unwrap();
        tcp
    }

    /// Reads until the server closes the connection; true if it did (EOF or reset).
    async fn closed_by_server(tcp: &mut TcpStream) -> bool {
        let mut rest = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut rest));
        matches!(read.await, Ok(Ok(0) | Err(_)))
    }

    #[tokio::test]
    async fn a_new_connection_evicts_the_oldest_unproven_one_on_a_real_socket() {
        let limits = Limits {
            max_connections: 10,
            max_unproven: 2,
            unproven_timeout: Duration::from_secs(600),
        };
        let (addr, gate, ends) = spawn_server(limits).await;
        let _proven = proven(addr).await;
        let mut first = TcpStream::connect(addr).await.unwrap();
        let second = TcpStream::connect(addr).await.unwrap();
        // The third takes the first's place; the second and the proven one stay.
        let third = proven(addr).await;
        assert!(closed_by_server(&mut first).await);
        let counts = gate.counts();
        assert_eq!(counts.unproven_evicted, 1, "{counts:?}");
        assert_eq!(counts.proven, 2, "{counts:?}");
        assert_eq!(ends.lock().unwrap().as_slice(), ["unproven_evicted"]);
        drop((second, third));
    }

    #[tokio::test]
    async fn with_every_slot_proven_a_new_connection_is_closed_before_a_byte_is_read() {
        let limits = Limits {
            max_connections: 2,
            max_unproven: 2,
            unproven_timeout: Duration::from_secs(600),
        };
        let (addr, gate, _) = spawn_server(limits).await;
        let held = [proven(addr).await, proven(addr).await];
        let mut refused = TcpStream::connect(addr).await.unwrap();
        let _ = refused.write_all(b"p").await;
        assert!(closed_by_server(&mut refused).await);
        assert_eq!(gate.counts().at_capacity, 1);
        // One goes: its slot is free again for the next.
        drop(held);
        let give_up = tokio::time::Instant::now() + Duration::from_secs(10);
        while gate.counts().open > 0 {
            assert!(tokio::time::Instant::now() < give_up, "{:?}", gate.counts());
            tokio::task::yield_now().await;
        }
        let _again = proven(addr).await;
    }

    #[tokio::test]
    async fn an_unproven_connection_is_closed_at_its_deadline() {
        let limits = Limits {
            unproven_timeout: Duration::from_millis(200),
            ..Limits::default()
        };
        let (addr, gate, ends) = spawn_server(limits).await;
        let started = std::time::Instant::now();
        let mut silent = TcpStream::connect(addr).await.unwrap();
        let mut talking = proven(addr).await;
        assert!(closed_by_server(&mut silent).await);
        assert!(started.elapsed() >= Duration::from_millis(200));
        assert_eq!(gate.counts().unproven_timeout, 1);
        assert_eq!(ends.lock().unwrap().as_slice(), ["unproven_timeout"]);
        // The proven one has no deadline: still open, and answering.
        talking.write_all(b"p").await.unwrap();
        let mut answer = [0u8; 6];
        talking.read_exact(&mut answer).await.unwrap();
    }

    #[tokio::test]
    async fn the_listener_queues_more_connections_than_a_flood_of_1500() {
        // 1,500 client sockets: more than the usual soft limit of 1024 descriptors.
        let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
        let raised = rustix::process::Rlimit {
            current: limit.maximum,
            ..limit
        };
        rustix::process::setrlimit(rustix::process::Resource::Nofile, raised).unwrap();
        // Not accepted at all: every connection waits in the kernel's queue. With the usual
        // backlog of 1024, the 1026th connection's SYN is dropped and retried a second later.
        let listener = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let mut waiting = Vec::new();
        for _ in 0..1500 {
            let connect = TcpStream::connect(addr);
            let tcp = tokio::time::timeout(Duration::from_millis(900), connect)
                .await
                .expect("queued at once, not a SYN dropped and retried a second later")
                .unwrap();
            waiting.push(tcp);
        }
        drop(listener);
    }
}
