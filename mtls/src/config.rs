//! The rustls configurations for each end of a mutual-TLS connection: TLS 1.3 only, ALPN `h2`,
//! the ring provider, client certificates required by the server, and (on the client) the
//! server's URI identity checked on top of the usual WebPKI chain check; and the client
//! configuration for PostgreSQL, which shares all of it but ALPN and the URI identity.

use std::sync::Arc;

use rustls::pki_types::{CertificateDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{CertificateError, ClientConfig, ServerConfig};

use crate::material::{Identity, TlsError, TrustAnchors, crypto_provider, uri_sans};

/// ALPN protocol both ends insist on: gRPC runs over HTTP/2.
const ALPN_H2: &[u8] = b"h2";

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
    let webpki = webpki_verifier(server_ca)?;
    let verifier: Arc<dyn rustls::client::danger::ServerCertVerifier> = match server_identity {
        Some(expected) => Arc::new(ServerIdentityVerifier {
            inner: webpki,
            expected: expected.to_owned(),
        }),
        None => webpki,
    };
    let mut config = tls13_client(verifier, identity)?;
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok(Arc::new(config))
}

/// The client configuration for PostgreSQL: TLS 1.3 only, the server's certificate checked as
/// libpq's `sslmode=verify-full` does (chains to `server_ca`, valid for the host name
/// connected to: a DNS or IP subjectAltName, never the CN), and `identity` presented for
/// certificate authentication.
///
/// No ALPN: PostgreSQL (up to 16) starts TLS inside its own protocol (SSLRequest), and a
/// client offering `h2` would be claiming to speak HTTP/2. No session resumption either: every
/// connection is a full handshake, so a rotated certificate is what the server checks next.
pub fn postgres_client_config(
    server_ca: &TrustAnchors,
    identity: &Identity,
) -> Result<Arc<ClientConfig>, TlsError> {
    let mut config = tls13_client(webpki_verifier(server_ca)?, Some(identity))?;
    config.resumption = rustls::client::Resumption::disabled();
    Ok(Arc::new(config))
}

/// rustls' WebPKI check of a server certificate (chain to `server_ca`, name, validity, usage),
/// with our provider.
fn webpki_verifier(
    server_ca: &TrustAnchors,
) -> Result<Arc<rustls::client::WebPkiServerVerifier>, TlsError> {
    rustls::client::WebPkiServerVerifier::builder_with_provider(
        server_ca.0.clone(),
        crypto_provider(),
    )
    .build()
    .map_err(|err| TlsError::Rustls(rustls::Error::General(err.to_string())))
}

/// What every client configuration shares: TLS 1.3 only, the ring provider, `verifier` for
/// the server's certificate, and `identity` presented when the server asks for one.
fn tls13_client(
    verifier: Arc<dyn rustls::client::danger::ServerCertVerifier>,
    identity: Option<&Identity>,
) -> Result<ClientConfig, TlsError> {
    let builder = ClientConfig::builder_with_provider(crypto_provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    Ok(match identity {
        Some(id) => builder.with_client_auth_cert(id.chain.clone(), id.key.clone_key())?,
        None => builder.with_no_client_auth(),
    })
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
