//! Mutual TLS for the Catalog -> Discount channel, built directly on rustls.
//!
//! tonic's own TLS settings cannot restrict the protocol version nor swap certificates at run
//! time, so both ends use rustls configurations built here and plug them into tonic: the server
//! through [`tls_incoming`] and `serve_with_incoming_shutdown`, the client through
//! [`MtlsConnector`] and `Endpoint::connect_with_connector_lazy`.
//!
//! The rules are the same on both ends:
//! - TLS 1.3 only, ALPN `h2`, one crypto provider (ring) for everything ([`crypto_provider`]);
//! - each side proves itself with a certificate from the private CA and checks the other's;
//! - a service's identity is the URI subjectAltName of its certificate
//!   (e.g. `spiffe://shop.local/catalog`), read once per connection into [`PeerInfo`].
//!
//! Inputs are PEM bytes, not paths: reading files is the binaries' job.

use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{CertificateError, ClientConfig, RootCertStore, ServerConfig};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::Connected;

use crate::reload::Reloadable;

/// ALPN protocol both ends insist on: gRPC runs over HTTP/2.
const ALPN_H2: &[u8] = b"h2";

/// Most TLS handshakes a server runs at once.
pub const MAX_CONCURRENT_HANDSHAKES: usize = 1024;

/// How long a peer may take to finish the TLS handshake before its connection is dropped.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why TLS material could not be loaded or a configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{what}: no PEM certificate found")]
    NoCertificate { what: &'static str },
    #[error("{what}: malformed PEM: {source}")]
    BadPem {
        what: &'static str,
        source: rustls::pki_types::pem::Error,
    },
    #[error("private key: no PEM private key found (PKCS#8, PKCS#1 or SEC1)")]
    NoPrivateKey,
    #[error("CA certificate is not usable as a trust anchor: {0}")]
    BadCa(rustls::Error),
    #[error("the private key does not match the certificate")]
    KeyMismatch,
    #[error("invalid certificate or key: {0}")]
    Rustls(rustls::Error),
    #[error("cannot build the client-certificate verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    #[error("invalid TLS server name {name:?}: {reason}")]
    ServerName { name: String, reason: String },
}

impl From<rustls::Error> for TlsError {
    fn from(err: rustls::Error) -> Self {
        match err {
            rustls::Error::InconsistentKeys(_) => TlsError::KeyMismatch,
            other => TlsError::Rustls(other),
        }
    }
}

/// The one crypto provider used by every TLS configuration in the process (ring).
///
/// The first call also installs it as the process default, so that no other part of the
/// process silently picks a different one.
pub fn crypto_provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            // Fails only if another provider was installed first; ours is used explicitly in
            // every configuration below either way.
            let _ = CryptoProvider::install_default(provider.as_ref().clone());
            provider
        })
        .clone()
}

/// A certificate chain and its private key: who this service is.
///
/// `Debug` never prints the key.
pub struct Identity {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("chain_len", &self.chain.len())
            .field("key", &"<redacted>")
            .finish()
    }
}

impl Clone for Identity {
    fn clone(&self) -> Self {
        Self {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

impl Identity {
    /// Parses a PEM certificate chain (leaf first) and a PEM private key.
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<Self, TlsError> {
        let chain = parse_certs(cert_pem, "certificate")?;
        let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|err| match err {
            rustls::pki_types::pem::Error::NoItemsFound => TlsError::NoPrivateKey,
            source => TlsError::BadPem {
                what: "private key",
                source,
            },
        })?;
        // Check now that the key belongs to the leaf, so the error names the files rather than
        // surfacing later as a confusing handshake failure.
        rustls::sign::CertifiedKey::from_der(chain.clone(), key.clone_key(), &crypto_provider())?;
        Ok(Self { chain, key })
    }

    /// The leaf certificate, DER-encoded.
    pub fn leaf(&self) -> &CertificateDer<'static> {
        // `parse_certs` never returns an empty chain.
        &self.chain[0]
    }
}

/// The CA certificates a peer's certificate must chain to. Several may be given (PEM bundle).
#[derive(Debug, Clone)]
pub struct TrustAnchors(Arc<RootCertStore>);

impl TrustAnchors {
    /// Parses one or more PEM CA certificates.
    pub fn from_pem(ca_pem: &[u8]) -> Result<Self, TlsError> {
        let mut roots = RootCertStore::empty();
        for cert in parse_certs(ca_pem, "CA certificate")? {
            roots.add(cert).map_err(TlsError::BadCa)?;
        }
        Ok(Self(Arc::new(roots)))
    }
}

fn parse_certs(pem: &[u8], what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::BadPem { what, source })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate { what });
    }
    Ok(certs)
}

/// A server configuration that accepts only TLS 1.3 clients presenting a certificate that chains
/// to `client_ca`.
pub fn server_config(
    identity: &Identity,
    client_ca: &TrustAnchors,
) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = crypto_provider();
    let verifier =
        WebPkiClientVerifier::builder_with_provider(client_ca.0.clone(), provider.clone())
            .build()?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(identity.chain.clone(), identity.key.clone_key())?;
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    // No session resumption: a resumed session skips the client-certificate check, so a
    // certificate that has expired (or been rotated out) could keep its identity. Every
    // connection does a full handshake; Catalog keeps one long-lived connection anyway.
    config.send_tls13_tickets = 0;
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    Ok(Arc::new(config))
}

/// A TLS 1.3 client configuration that trusts only servers whose certificate chains to
/// `server_ca` (and, if `server_identity` is given, carries that URI SAN: not merely any
/// certificate from the CA), and presents `identity` when the server asks for a certificate.
///
/// `identity` is optional only so that tests can show what a client without one is told.
pub fn client_config(
    server_ca: &TrustAnchors,
    identity: Option<&Identity>,
    server_identity: Option<&str>,
) -> Result<Arc<ClientConfig>, TlsError> {
    let provider = crypto_provider();
    let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(
        server_ca.0.clone(),
        provider.clone(),
    )
    .build()
    .map_err(|err| TlsError::Rustls(rustls::Error::General(err.to_string())))?;
    let verifier: Arc<dyn rustls::client::danger::ServerCertVerifier> = match server_identity {
        Some(expected) => Arc::new(ServerIdentityVerifier {
            inner: webpki,
            expected: expected.to_owned(),
        }),
        None => webpki,
    };
    let builder = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut config = match identity {
        Some(id) => builder.with_client_auth_cert(id.chain.clone(), id.key.clone_key())?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok(Arc::new(config))
}

/// The standard WebPKI check of a server certificate, plus: its URI SAN must be `expected`.
#[derive(Debug)]
struct ServerIdentityVerifier {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
    expected: String,
}

/// A server certificate from the right CA but for another service.
#[derive(Debug, thiserror::Error)]
#[error("server certificate identity is {found:?}, expected {expected}")]
pub struct WrongServerIdentity {
    /// The URI SANs the certificate carries.
    pub found: Vec<String>,
    /// The identity required.
    pub expected: String,
}

impl rustls::client::danger::ServerCertVerifier for ServerIdentityVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        let verified = self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )?;
        let found = uri_sans(end_entity);
        if found.contains(&self.expected) {
            return Ok(verified);
        }
        Err(rustls::Error::InvalidCertificate(CertificateError::Other(
            rustls::OtherError(Arc::new(WrongServerIdentity {
                found,
                expected: self.expected.clone(),
            })),
        )))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The URI subjectAltNames of a DER certificate (the SPIFFE-style service identity).
pub fn uri_sans(cert: &CertificateDer<'_>) -> Vec<String> {
    let Ok((_, parsed)) = x509_parser::parse_x509_certificate(cert.as_ref()) else {
        return Vec::new();
    };
    let Ok(Some(san)) = parsed.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|name| match name {
            x509_parser::extensions::GeneralName::URI(uri) => Some((*uri).to_owned()),
            _ => None,
        })
        .collect()
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
#[derive(Debug)]
pub struct TlsConn {
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

/// Why a TLS handshake with a would-be client failed, in words an operator can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandshakeFailure {
    /// The client sent no certificate.
    NoClientCertificate,
    /// The client's certificate does not chain to our CA.
    UnknownCa,
    /// The client's certificate has expired.
    Expired,
    /// The client's certificate is not valid yet.
    NotYetValid,
    /// The certificate was rejected for another reason (revoked, wrong usage, bad signature...).
    BadCertificate(String),
    /// The peer does not speak TLS (for example, plaintext HTTP/2).
    NotTls,
    /// The peer speaks TLS but not what we require (TLS 1.3, ALPN h2).
    Incompatible(String),
    /// The peer did not finish the handshake in time.
    Timeout,
    /// The connection closed or failed during the handshake.
    Io(String),
}

impl HandshakeFailure {
    /// Classifies the error returned by a rustls handshake.
    pub fn from_io(err: &io::Error) -> Self {
        let Some(tls) = err
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        else {
            return HandshakeFailure::Io(err.to_string());
        };
        match tls {
            rustls::Error::NoCertificatesPresented => HandshakeFailure::NoClientCertificate,
            rustls::Error::InvalidCertificate(cert) => match cert {
                CertificateError::UnknownIssuer => HandshakeFailure::UnknownCa,
                CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                    HandshakeFailure::Expired
                }
                CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                    HandshakeFailure::NotYetValid
                }
                other => HandshakeFailure::BadCertificate(format!("{other:?}")),
            },
            rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. } => {
                HandshakeFailure::NotTls
            }
            rustls::Error::PeerIncompatible(why) => {
                HandshakeFailure::Incompatible(format!("{why:?}"))
            }
            rustls::Error::NoApplicationProtocol => {
                HandshakeFailure::Incompatible("no common ALPN protocol (h2 required)".into())
            }
            other => HandshakeFailure::Io(other.to_string()),
        }
    }

    /// A short, stable label for logs and metrics.
    pub fn label(&self) -> &'static str {
        match self {
            HandshakeFailure::NoClientCertificate => "no_client_certificate",
            HandshakeFailure::UnknownCa => "unknown_ca",
            HandshakeFailure::Expired => "expired",
            HandshakeFailure::NotYetValid => "not_yet_valid",
            HandshakeFailure::BadCertificate(_) => "bad_certificate",
            HandshakeFailure::NotTls => "not_tls",
            HandshakeFailure::Incompatible(_) => "incompatible",
            HandshakeFailure::Timeout => "timeout",
            HandshakeFailure::Io(_) => "io",
        }
    }
}

impl fmt::Display for HandshakeFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandshakeFailure::NoClientCertificate => f.write_str("client presented no certificate"),
            HandshakeFailure::UnknownCa => {
                f.write_str("client certificate is not issued by a trusted CA")
            }
            HandshakeFailure::Expired => f.write_str("client certificate has expired"),
            HandshakeFailure::NotYetValid => f.write_str("client certificate is not valid yet"),
            HandshakeFailure::BadCertificate(why) => {
                write!(f, "client certificate rejected: {why}")
            }
            HandshakeFailure::NotTls => f.write_str("peer does not speak TLS (plaintext?)"),
            HandshakeFailure::Incompatible(why) => write!(f, "peer is incompatible: {why}"),
            HandshakeFailure::Timeout => f.write_str("handshake timed out"),
            HandshakeFailure::Io(why) => write!(f, "connection failed during handshake: {why}"),
        }
    }
}

/// Accepts TCP connections on `listener` and yields those whose mutual-TLS handshake succeeds,
/// ready for tonic's `serve_with_incoming_shutdown`.
///
/// Each handshake runs in its own task with a deadline, so a slow or hostile client cannot hold
/// up the others. Refused handshakes are logged with their reason and never reach tonic. The
/// accept task ends when the returned stream is dropped (when the server stops).
pub fn tls_incoming(
    listener: TcpListener,
    config: Arc<Reloadable<ServerConfig>>,
    handshake_timeout: Duration,
    stop_accepting: impl Future<Output = ()> + Send + 'static,
) -> ReceiverStream<io::Result<TlsConn>> {
    let (tx, rx) = mpsc::channel(128);
    // Handshakes in progress at once; past this, accepting waits (a flood of idle connections
    // cannot exhaust file descriptors or memory).
    let handshakes = Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT_HANDSHAKES));
    tokio::spawn(async move {
        let mut stop_accepting = std::pin::pin!(stop_accepting);
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
                            let _ = tx.send(Ok(TlsConn { stream, peer })).await;
                            return;
                        }
                        Ok(Err(err)) => HandshakeFailure::from_io(&err),
                        Err(_) => HandshakeFailure::Timeout,
                    };
                metrics::counter!(
                    "discount_tls_handshake_failures_total",
                    "reason" => failure.label()
                )
                .increment(1);
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

/// Where a service finds its TLS material on disk: the CA bundle it trusts, and its own
/// certificate chain and private key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM CA certificate(s) that peers' certificates must chain to.
    pub ca: PathBuf,
    /// PEM certificate chain of this service, leaf first.
    pub cert: PathBuf,
    /// PEM private key of this service.
    pub key: PathBuf,
}

/// Why TLS files could not be loaded; the message names the file and what to do.
#[derive(Debug, thiserror::Error)]
pub enum TlsFileError {
    #[error("cannot read {role} file {}: {cause}{}", path.display(), hint(cause))]
    Read {
        role: &'static str,
        path: PathBuf,
        cause: io::Error,
    },
    #[error("{role} file {}: {cause}", path.display())]
    Invalid {
        role: &'static str,
        path: PathBuf,
        cause: TlsError,
    },
}

fn hint(err: &io::Error) -> &'static str {
    if err.kind() == io::ErrorKind::NotFound {
        " (run `cargo xtask gen-certs` to create the certificates, or point the flag at yours)"
    } else {
        ""
    }
}

impl TlsFiles {
    /// The files `gen-certs` writes for `service` in `dir`: `ca.pem`, `<service>.pem` and
    /// `<service>.key`.
    pub fn in_dir(dir: &Path, service: &str) -> Self {
        Self {
            ca: dir.join("ca.pem"),
            cert: dir.join(format!("{service}.pem")),
            key: dir.join(format!("{service}.key")),
        }
    }

    /// The files for `service` from the flags a service takes: each of `ca`, `cert`, `key` if
    /// given, else its default in `certs_dir` (itself [`Self::default_dir`] if not given).
    pub fn resolve(
        certs_dir: Option<&Path>,
        service: &str,
        ca: Option<&Path>,
        cert: Option<&Path>,
        key: Option<&Path>,
    ) -> Self {
        let dir = certs_dir.map_or_else(Self::default_dir, Path::to_path_buf);
        let defaults = Self::in_dir(&dir, service);
        Self {
            ca: ca.map_or(defaults.ca, Path::to_path_buf),
            cert: cert.map_or(defaults.cert, Path::to_path_buf),
            key: key.map_or(defaults.key, Path::to_path_buf),
        }
    }

    /// The repository's `certs/` folder, where `cargo xtask gen-certs` writes by default.
    /// Resolved at build time, so it does not depend on the working directory.
    pub fn default_dir() -> PathBuf {
        let proto_crate = Path::new(env!("CARGO_MANIFEST_DIR"));
        proto_crate.parent().unwrap_or(proto_crate).join("certs")
    }

    /// Reads and parses the three files.
    pub fn load(&self) -> Result<(Identity, TrustAnchors), TlsFileError> {
        let read = |role, path: &Path| {
            std::fs::read(path).map_err(|cause| TlsFileError::Read {
                role,
                path: path.to_owned(),
                cause,
            })
        };
        let invalid = |role, path: &Path| {
            let path = path.to_owned();
            move |cause| TlsFileError::Invalid { role, path, cause }
        };
        let ca = TrustAnchors::from_pem(&read("CA", &self.ca)?).map_err(invalid("CA", &self.ca))?;
        let cert_pem = read("certificate", &self.cert)?;
        let key_pem = read("private key", &self.key)?;
        warn_if_key_readable_by_others(&self.key);
        let identity = Identity::from_pem(&cert_pem, &key_pem)
            .map_err(invalid("certificate/key", &self.cert))?;
        Ok((identity, ca))
    }
}

#[cfg(unix)]
fn warn_if_key_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path) {
        let mode = meta.permissions().mode();
        // Group-readable is how Kubernetes mounts a Secret for a non-root user (fsGroup), so
        // only a key every user may read is worth a warning.
        if mode & 0o007 != 0 {
            tracing::warn!(
                path = %path.display(),
                mode = format_args!("{:o}", mode & 0o777),
                "private key file is readable by every user; it should be mode 0600 (or 0640 \
                 for a group that needs it)"
            );
        }
    }
}

#[cfg(not(unix))]
fn warn_if_key_readable_by_others(_path: &Path) {}

#[cfg(test)]
mod tests {
    use super::*;
    use xtask::pki::{ServicePki, spiffe_id};

    #[test]
    fn key_from_another_certificate_is_a_mismatch() {
        let pki = ServicePki::generate(1).unwrap();
        let err = Identity::from_pem(
            pki.catalog.cert_pem.as_bytes(),
            pki.discount.key_pem.as_bytes(),
        )
        .unwrap_err();
        assert!(matches!(err, TlsError::KeyMismatch), "{err}");
    }

    #[test]
    fn missing_or_garbled_pem_is_named() {
        let pki = ServicePki::generate(1).unwrap();
        let key = pki.catalog.key_pem.as_bytes();
        assert!(matches!(
            Identity::from_pem(b"", key),
            Err(TlsError::NoCertificate {
                what: "certificate"
            })
        ));
        assert!(matches!(
            Identity::from_pem(pki.catalog.cert_pem.as_bytes(), b"not a key"),
            Err(TlsError::NoPrivateKey)
        ));
        assert!(matches!(
            TrustAnchors::from_pem(
                b"-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n"
            ),
            Err(TlsError::BadPem { .. })
        ));
    }

    #[test]
    fn identity_is_the_uri_san() {
        let pki = ServicePki::generate(1).unwrap();
        let identity = Identity::from_pem(
            pki.catalog.cert_pem.as_bytes(),
            pki.catalog.key_pem.as_bytes(),
        )
        .unwrap();
        assert_eq!(uri_sans(identity.leaf()), [spiffe_id("catalog")]);
    }

    #[test]
    fn identity_debug_never_shows_the_key() {
        let pki = ServicePki::generate(1).unwrap();
        let identity = Identity::from_pem(
            pki.catalog.cert_pem.as_bytes(),
            pki.catalog.key_pem.as_bytes(),
        )
        .unwrap();
        assert!(format!("{identity:?}").contains("redacted"));
    }

    #[test]
    fn tls_files_name_the_missing_file_and_the_fix() {
        let files = TlsFiles::in_dir(Path::new("/nonexistent"), "catalog");
        let err = files.load().unwrap_err().to_string();
        assert!(
            err.contains("/nonexistent/ca.pem") && err.contains("gen-certs"),
            "{err}"
        );
    }
}
