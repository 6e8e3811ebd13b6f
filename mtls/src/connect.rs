//! The client side: a connector that opens mutual-TLS connections to one server for a hyper
//! client or a tonic `Channel`, resolving the host on every connect and bounding how long
//! connecting may take.

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::material::TlsError;
use crate::reloadable::Reloadable;

/// A client-side mutual-TLS connection, as [`MtlsConnector`] opens it.
#[derive(Debug)]
pub struct MtlsStream(tokio_rustls::client::TlsStream<TcpStream>);

impl MtlsStream {
    /// The certificate chain the server presented.
    pub fn server_certificates(&self) -> Option<&[CertificateDer<'static>]> {
        self.0.get_ref().1.peer_certificates()
    }
}

impl AsyncRead for MtlsStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl AsyncWrite for MtlsStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }
}

impl hyper_util::client::legacy::connect::Connection for MtlsStream {
    fn connected(&self) -> hyper_util::client::legacy::connect::Connected {
        // ALPN is pinned to h2 on both ends, so the handshake could only succeed with it.
        hyper_util::client::legacy::connect::Connected::new().negotiated_h2()
    }
}

/// Opens mutual-TLS connections to one server, for a hyper client or a tonic `Channel`.
///
/// The request URI only names the HTTP/2 authority; this connector decides where to connect
/// (`host:port`, resolved on every connect so DNS changes are followed), how long connecting
/// may take, and which name the server's certificate must carry.
#[derive(Clone)]
pub struct MtlsConnector {
    config: Arc<Reloadable<ClientConfig>>,
    host: Arc<str>,
    port: u16,
    server_name: ServerName<'static>,
    connect_timeout: Duration,
}

impl fmt::Debug for MtlsConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MtlsConnector")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl MtlsConnector {
    /// Connects to `host:port` and requires the server's certificate to be valid for
    /// `server_name` (a DNS name or an IP address).
    pub fn new(
        config: Arc<Reloadable<ClientConfig>>,
        host: &str,
        port: u16,
        server_name: &str,
    ) -> Result<Self, TlsError> {
        let server_name =
            ServerName::try_from(server_name.to_owned()).map_err(|err| TlsError::ServerName {
                name: server_name.to_owned(),
                reason: err.to_string(),
            })?;
        Ok(Self {
            config,
            host: Arc::from(host),
            port,
            server_name,
            connect_timeout: Duration::from_secs(5),
        })
    }

    /// Limits how long opening a connection (TCP and TLS) may take (default 5 s).
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }
}

impl tower::Service<http::Uri> for MtlsConnector {
    type Response = TokioIo<MtlsStream>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _uri: http::Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let connect = async {
                let tcp = TcpStream::connect((&*this.host, this.port)).await?;
                tcp.set_nodelay(true)?;
                let connector = TlsConnector::from(this.config.current());
                connector.connect(this.server_name, tcp).await
            };
            let tls = tokio::time::timeout(this.connect_timeout, connect)
                .await
                .map_err(|_| {
                    io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("connecting to {}:{} timed out", this.host, this.port),
                    )
                })??;
            Ok(TokioIo::new(MtlsStream(tls)))
        })
    }
}

/// A tonic channel to the gRPC server on `addr` over mutual TLS with `config`, the server's
/// certificate checked for `server_name`; it connects on first use (and again after a
/// connection is lost).
pub fn lazy_channel(
    config: Arc<ClientConfig>,
    addr: std::net::SocketAddr,
    server_name: &str,
) -> Result<tonic::transport::Channel, TlsError> {
    let connector = MtlsConnector::new(
        Reloadable::new(config),
        &addr.ip().to_string(),
        addr.port(),
        server_name,
    )?;
    let uri = format!("https://{server_name}:{}", addr.port());
    let endpoint =
        tonic::transport::Endpoint::from_shared(uri).map_err(|err| TlsError::ServerName {
            name: server_name.to_owned(),
            reason: err.to_string(),
        })?;
    Ok(endpoint.connect_with_connector_lazy(connector))
}
