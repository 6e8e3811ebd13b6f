//! A flood of connections that never prove themselves ([`Flood`]): each connects, sends nothing
//! or the start of something (a ClientHello, a request head), then waits, and reconnects as soon
//! as the server closes it. It runs on a thread and runtime of its own, as an outsider would,
//! so the servers' runtime does not schedule it. And the open-file limit raised for the
//! thousands of sockets it holds ([`raise_open_file_limit`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

/// The first bytes of a TLS 1.3 ClientHello: a handshake record announcing 512 bytes, of which
/// only the start comes.
pub const PARTIAL_CLIENT_HELLO: &[u8] = &[
    0x16, 0x03, 0x01, 0x02, 0x00, // record: handshake, TLS 1.0 on the wire, 512 bytes
    0x01, 0x00, 0x01, 0xfc, // ClientHello, 508 bytes
    0x03, 0x03, // legacy version TLS 1.2
    0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, // the start of the random
];

/// A request head without its final empty line.
pub const PARTIAL_REQUEST_HEAD: &[u8] =
    b"GET /products HTTP/1.1\r\nHost: catalog\r\nX-USER-ID: 1\r\nX-Slow: ";

/// Raises this process's soft limit on open files to its hard limit: a flood test holds
/// thousands of sockets (the flood's, and the servers' ends of them), past the usual soft
/// limit of 1024.
pub fn raise_open_file_limit() {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let raised = Rlimit {
        current: limit.maximum,
        ..limit
    };
    setrlimit(Resource::Nofile, raised).expect("the soft open-file limit can be raised");
}

/// How a flood is going.
#[derive(Debug, Default)]
struct Tally {
    /// Connections open now.
    open: AtomicUsize,
    /// Connections the server closed (each then reopened).
    closed: AtomicU64,
}

/// Connections held against a server, reopened as soon as they are closed; stopped (every
/// socket closed) when dropped.
#[derive(Debug)]
pub struct Flood {
    tally: Arc<Tally>,
    stop: Option<watch::Sender<bool>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Flood {
    /// Opens `connections` connections to `addr`, each sending `first` (possibly nothing) and
    /// then waiting for the server to close it, to open another at once.
    pub fn start(addr: SocketAddr, connections: usize, first: &'static [u8]) -> Self {
        let tally = Arc::new(Tally::default());
        let (stop, stopped) = watch::channel(false);
        let counted = tally.clone();
        let thread = std::thread::Builder::new()
            .name("flood".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                runtime.block_on(async move {
                    let squatters: Vec<_> = (0..connections)
                        .map(|_| tokio::spawn(squat(addr, first, counted.clone())))
                        .collect();
                    let mut stopped = stopped;
                    let _ = stopped.wait_for(|stop| *stop).await;
                    for squatter in squatters {
                        squatter.abort();
                    }
                });
            })
            .unwrap();
        Self {
            tally,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.tally.open.load(Ordering::Relaxed)
    }

    /// Connections the server has closed so far.
    pub fn closed(&self) -> u64 {
        self.tally.closed.load(Ordering::Relaxed)
    }
}

impl Drop for Flood {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(true);
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One squatter: connect, send `first`, wait for the close, again.
async fn squat(addr: SocketAddr, first: &'static [u8], tally: Arc<Tally>) {
    loop {
        let Ok(mut tcp) = TcpStream::connect(addr).await else {
            // Out of ports or descriptors for a moment: try again shortly.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        tally.open.fetch_add(1, Ordering::Relaxed);
        let _ = tcp.write_all(first).await;
        let mut sink = [0u8; 512];
        while let Ok(1..) = tcp.read(&mut sink).await {}
        tally.open.fetch_sub(1, Ordering::Relaxed);
        tally.closed.fetch_add(1, Ordering::Relaxed);
    }
}
