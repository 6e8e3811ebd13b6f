//! The server side: an accept loop that runs each mutual-TLS handshake in its own task, under a
//! deadline and a cap on handshakes in flight, and hands only authenticated connections (with
//! the caller's identity, [`PeerInfo`]) to tonic. It also caps the connections open at once:
//! past the cap, a new connection is closed as soon as it is accepted, before any TLS work.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::Connected;

use crate::failure::HandshakeFailure;
use crate::material::uri_sans;
use crate::reloadable::Reloadable;

/// Most TLS handshakes a server runs at once, by default.
pub const MAX_CONCURRENT_HANDSHAKES: usize = 1024;

/// How long a peer may take to finish the TLS handshake before its connection is dropped, by
/// default.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Most connections a server keeps open at once, by default: below the common soft limit of
/// 1024 file descriptors, leaving room for the process's other descriptors.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1000;

/// At most one log line per this long about connections closed at the limit (each carries the
/// number closed since the previous one); the counter counts every one.
pub const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// The accept loop's limits, and where it counts refused handshakes and connections.
#[derive(Debug, Clone)]
pub struct AcceptSettings {
    /// How long a peer may take to finish the handshake.
    pub handshake_timeout: Duration,
    /// Handshakes in progress at once; past this, accepting waits (a flood of idle connections
    /// cannot exhaust file descriptors or memory).
    pub max_concurrent_handshakes: usize,
    /// The counter each refused handshake increments, labelled `reason`
    /// ([`HandshakeFailure::label`]); `None`: not counted. The caller names it, so each service
    /// keeps its own metric names.
    pub failure_counter: Option<&'static str>,
    /// Connections open at once, handshakes in progress included; past this, a new connection
    /// is closed as soon as it is accepted, before the TLS handshake, while the open ones keep
    /// being served. At least 1 (0 is taken as 1).
    pub max_connections: usize,
    /// The counter each connection closed at the limit increments; `None`: not counted. The
    /// caller names it, like `failure_counter`.
    pub refused_counter: Option<&'static str>,
}

impl Default for AcceptSettings {
    fn default() -> Self {
        Self {
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            max_concurrent_handshakes: MAX_CONCURRENT_HANDSHAKES,
            failure_counter: None,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            refused_counter: None,
        }
    }
}

/// What a server knows about the peer of an authenticated connection. tonic puts it in the
/// extensions of every request made on that connection.
#[derive(Debug, Clone)]
pub struct PeerInfo {
    /// The peer's socket address.
    pub remote_addr: SocketAddr,
    /// The first URI subjectAltName of the peer's certificate, if it has one.
    pub identity: Option<Arc<str>>,
}

impl PeerInfo {
    /// Reads a request's caller, as attached by the connection it arrived on.
    pub fn of<T>(request: &tonic::Request<T>) -> Option<&PeerInfo> {
        request.extensions().get::<PeerInfo>()
    }

    /// The identity to show in logs: the URI SAN, or `unknown`.
    pub fn identity_or_unknown(&self) -> &str {
        self.identity.as_deref().unwrap_or("unknown")
    }
}

/// A server-side connection whose TLS handshake, client certificate included, has succeeded.
/// It holds one of the server's connection slots ([`AcceptSettings::max_connections`]) until
/// it is dropped.
#[derive(Debug)]
pub struct TlsConn {
    // Declared first, so dropped first: the slot is free again before the socket is closed,
    // and a peer that sees the close can count on the slot being free.
    _slot: OwnedSemaphorePermit,
    stream: tokio_rustls::server::TlsStream<TcpStream>,
    peer: PeerInfo,
}

impl Connected for TlsConn {
    type ConnectInfo = PeerInfo;

    fn connect_info(&self) -> PeerInfo {
        self.peer.clone()
    }
}

impl AsyncRead for TlsConn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// When to log that connections are being closed at the limit: the first time, then at most
/// once per interval, each line with the number closed since the previous line, so that a flood
/// costs a few log lines rather than one per connection.
#[derive(Debug)]
struct RefusalLog {
    interval: Duration,
    last_line: Option<Instant>,
    unlogged: u64,
}

impl RefusalLog {
    fn new(interval: Duration) -> Self {
        Self {
            interval,
            last_line: None,
            unlogged: 0,
        }
    }

    /// Records one refusal at `now`; `Some(n)` when a line is due, `n` being the refusals since
    /// the previous line, this one included.
    fn refused(&mut self, now: Instant) -> Option<u64> {
        self.unlogged += 1;
        let due = self
            .last_line
            .is_none_or(|last| now.saturating_duration_since(last) >= self.interval);
        if !due {
            return None;
        }
        self.last_line = Some(now);
        Some(std::mem::take(&mut self.unlogged))
    }
}

/// Accepts TCP connections on `listener` and yields those whose mutual-TLS handshake succeeds,
/// ready for tonic's `serve_with_incoming_shutdown`.
///
/// Each handshake runs in its own task with a deadline, so a slow or hostile client cannot hold
/// up the others. Refused handshakes are logged with their reason and never reach tonic. At
/// [`AcceptSettings::max_connections`] open connections, a new one is closed at once (counted,
/// and logged at most once per [`REFUSAL_LOG_INTERVAL`]). The accept task ends when the returned
/// stream is dropped (when the server stops).
pub fn tls_incoming(
    listener: TcpListener,
    config: Arc<Reloadable<ServerConfig>>,
    settings: AcceptSettings,
    stop_accepting: impl Future<Output = ()> + Send + 'static,
) -> ReceiverStream<io::Result<TlsConn>> {
    let (tx, rx) = mpsc::channel(128);
    let AcceptSettings {
        handshake_timeout,
        max_concurrent_handshakes,
        failure_counter,
        max_connections,
        refused_counter,
    } = settings;
    let handshakes = Arc::new(Semaphore::new(max_concurrent_handshakes));
    let max_connections = max_connections.max(1);
    let connections = Arc::new(Semaphore::new(max_connections));
    tokio::spawn(async move {
        let mut stop_accepting = std::pin::pin!(stop_accepting);
        let mut refusals = RefusalLog::new(REFUSAL_LOG_INTERVAL);
        loop {
            let Ok(permit) = handshakes.clone().acquire_owned().await else {
                break;
            };
            let accepted = tokio::select! {
                () = tx.closed() => break,
                // Shutdown: the listener closes now, while tonic drains open connections.
                () = &mut stop_accepting => break,
                accepted = listener.accept() => accepted,
            };
            let (tcp, remote_addr) = match accepted {
                Ok(conn) => conn,
                Err(err) => {
                    // Typically out of file descriptors: back off instead of spinning.
                    tracing::error!(%err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            // Held by the connection for its whole life (handshake, then inside `TlsConn`).
            let Ok(slot) = connections.clone().try_acquire_owned() else {
                // Closed before reading anything: the peer's TLS handshake fails at once
                // (reset or end of stream), and it can try elsewhere.
                drop(tcp);
                if let Some(counter) = refused_counter {
                    metrics::counter!(counter).increment(1);
                }
                if let Some(refused) = refusals.refused(Instant::now()) {
                    tracing::warn!(
                        max_connections,
                        refused,
                        peer = %remote_addr,
                        "at the connection limit: closing new connections before the TLS \
                         handshake (`refused` counts them since the last such line)"
                    );
                }
                continue;
            };
            let _ = tcp.set_nodelay(true);
            // The configuration of the moment: a rotated certificate applies from the next
            // connection on, while open ones keep theirs.
            let (tx, acceptor) = (tx.clone(), TlsAcceptor::from(config.current()));
            tokio::spawn(async move {
                let _permit = permit;
                let failure =
                    match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => {
                            let identity = stream
                                .get_ref()
                                .1
                                .peer_certificates()
                                .and_then(|chain| chain.first())
                                .and_then(|leaf| uri_sans(leaf).into_iter().next())
                                .map(Arc::from);
                            let peer = PeerInfo {
                                remote_addr,
                                identity,
                            };
                            tracing::debug!(
                                peer = %remote_addr,
                                identity = peer.identity_or_unknown(),
                                "mTLS connection established"
                            );
                            let conn = TlsConn {
                                _slot: slot,
                                stream,
                                peer,
                            };
                            let _ = tx.send(Ok(conn)).await;
                            return;
                        }
                        Ok(Err(err)) => HandshakeFailure::from_io(&err),
                        Err(_) => HandshakeFailure::Timeout,
                    };
                if let Some(counter) = failure_counter {
                    metrics::counter!(counter, "reason" => failure.label()).increment(1);
                }
                tracing::warn!(
                    peer = %remote_addr,
                    reason = failure.label(),
                    "TLS handshake refused: {failure}"
                );
            });
        }
    });
    ReceiverStream::new(rx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_logged_once_then_once_per_interval_with_the_count() {
        let interval = Duration::from_secs(10);
        let start = Instant::now();
        let mut log = RefusalLog::new(interval);
        assert_eq!(log.refused(start), Some(1), "the first refusal is logged");
        for i in 1..=4 {
            let now = start + Duration::from_secs(i);
            assert_eq!(log.refused(now), None, "within the interval: silent");
        }
        assert_eq!(
            log.refused(start + interval),
            Some(5),
            "4 silent ones and this one"
        );
        assert_eq!(log.refused(start + interval), None);
        assert_eq!(log.refused(start + 3 * interval), Some(2));
    }
}
