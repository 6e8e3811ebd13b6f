//! The server side: Discount's accept loop, through [`admission`]'s (the same caps, deadline
//! and eviction as every server of the workspace): each admitted connection runs its
//! mutual-TLS handshake in its own task under the gate's guard, and only connections whose
//! handshake succeeded, client certificate included, are proven and handed to tonic, with the
//! caller's identity ([`PeerInfo`]). Refused handshakes are counted by reason and logged as one
//! line per interval with the counts and the first of each reason in detail.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use admission::{Gate, Slot, ThrottledLog};
use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::Connected;

use crate::failure::HandshakeFailure;
use crate::material::uri_sans;
use crate::reloadable::Reloadable;

/// Where the accept loop admits connections, and where it counts refused handshakes.
#[derive(Debug, Clone)]
pub struct AcceptSettings {
    /// The caps on open and unproven connections, the handshake deadline (the gate's
    /// `unproven_timeout`) and the connection metrics ([`admission::Gate`]). A connection is
    /// proven once its handshake has succeeded, client certificate included; proven
    /// connections (authenticated callers) are never evicted.
    pub gate: Gate,
    /// The counter each refused handshake increments, labelled `reason`
    /// ([`HandshakeFailure::label`]); `None`: not counted. The caller names it, so each service
    /// keeps its own metric names.
    pub failure_counter: Option<&'static str>,
}

impl Default for AcceptSettings {
    /// The default limits, no metrics.
    fn default() -> Self {
        Self {
            gate: Gate::new(
                admission::Limits::default(),
                admission::MetricNames::default(),
            ),
            failure_counter: None,
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
/// It holds one of the gate's connection slots ([`AcceptSettings::gate`]) until it is dropped.
#[derive(Debug)]
pub struct TlsConn {
    // Declared first, so dropped first: the slot is free again before the socket is closed,
    // and a peer that sees the close can count on the slot being free.
    _slot: Slot,
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

/// Accepts TCP connections on `listener`, admitted by [`AcceptSettings::gate`], and yields those
/// whose mutual-TLS handshake succeeds, ready for tonic's `serve_with_incoming_shutdown`.
///
/// Each handshake runs in its own task under the gate's guard: it is cut at the gate's
/// deadline, or when the gate evicts it to make room (an unproven connection, the oldest
/// first), so a slow or hostile client cannot hold up the others. Refused handshakes never
/// reach tonic; they are counted and logged at most once per [`admission::LOG_INTERVAL`], with
/// the count of each reason and the first of each in detail (peer and cause), so that a flood
/// costs a few lines and a client with a bad certificate still shows up. The accept loop ends
/// when `stop_accepting` completes or the returned stream is dropped (when the server stops).
pub fn tls_incoming(
    listener: TcpListener,
    config: Arc<Reloadable<ServerConfig>>,
    settings: AcceptSettings,
    stop_accepting: impl Future<Output = ()> + Send + 'static,
) -> ReceiverStream<io::Result<TlsConn>> {
    let (tx, rx) = mpsc::channel(128);
    let AcceptSettings {
        gate,
        failure_counter,
    } = settings;
    let refused = Refused::new(listener.local_addr().ok(), failure_counter);
    let receiver_gone = tx.clone();
    // Shutdown: the listener closes now, while tonic drains open connections.
    let stop = async move {
        tokio::select! {
            () = stop_accepting => {}
            () = receiver_gone.closed() => {}
        }
    };
    tokio::spawn(admission::accept_loop(
        listener,
        gate,
        stop,
        move |tcp, remote_addr, slot| {
            // The configuration of the moment: a rotated certificate applies from the next
            // connection on, while open ones keep theirs.
            let acceptor = TlsAcceptor::from(config.current());
            let (tx, refused) = (tx.clone(), refused.clone());
            tokio::spawn(handshake(acceptor, tcp, remote_addr, slot, tx, refused));
        },
    ));
    ReceiverStream::new(rx)
}

/// One connection's handshake, under its slot's guard; a success goes to tonic, proven.
async fn handshake(
    acceptor: TlsAcceptor,
    tcp: TcpStream,
    remote_addr: SocketAddr,
    slot: Slot,
    tx: mpsc::Sender<io::Result<TlsConn>>,
    refused: Refused,
) {
    // No TLS state for a connection until it has sent something: one that stays silent
    // (the commonest flood) costs a socket and this task, and is cheap to evict; one that
    // closes without a byte (a TCP probe, a port scan) was no handshake, and is no failure.
    let handshake = async {
        if tcp.peek(&mut [0u8; 1]).await? == 0 {
            return Ok(None);
        }
        acceptor.accept(tcp).await.map(Some)
    };
    let failure = match slot.guard(handshake).await {
        // Evicted or out of time: counted and logged by the gate.
        Err(_dropped) => return,
        Ok(Ok(None)) => {
            tracing::debug!(peer = %remote_addr, "connection closed before a byte was sent");
            return;
        }
        Ok(Ok(Some(stream))) => {
            // Evicted in the moment since the handshake ended: closed all the same.
            if !slot.prove() {
                return;
            }
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
    };
    refused.record(&failure, remote_addr);
}

/// Where refused handshakes go: the caller's counter, and one log line per interval.
#[derive(Debug, Clone)]
struct Refused {
    counter: Option<&'static str>,
    log: ThrottledLog,
}

impl Refused {
    fn new(listener: Option<SocketAddr>, counter: Option<&'static str>) -> Self {
        let log = ThrottledLog::new(admission::LOG_INTERVAL, move |summary| {
            let listener = listener.map(|addr| addr.to_string()).unwrap_or_default();
            tracing::warn!(
                %listener,
                refused = %summary,
                first = %summary.firsts(),
                "TLS handshake refused: {summary} (counts by reason since the last such line)"
            );
        });
        Self { counter, log }
    }

    fn record(&self, failure: &HandshakeFailure, peer: SocketAddr) {
        if let Some(counter) = self.counter {
            metrics::counter!(counter, "reason" => failure.label()).increment(1);
        }
        self.log
            .record(failure.label(), || format!("from {peer}, {failure}"));
    }
}
