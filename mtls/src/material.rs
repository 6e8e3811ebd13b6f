//! TLS material from PEM: a service's own certificate chain and key ([`Identity`]), the CA
//! certificates it trusts ([`TrustAnchors`]), the identity a certificate carries ([`uri_sans`]),
//! and the one crypto provider every configuration uses.
//!
//! Inputs are PEM bytes, not paths: reading files is [`crate::files`]' job.

use std::fmt;
use std::sync::{Arc, OnceLock};

use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

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
    pub(crate) chain: Vec<CertificateDer<'static>>,
    pub(crate) key: PrivateKeyDer<'static>,
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
pub struct TrustAnchors(pub(crate) Arc<RootCertStore>);

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

#[cfg(test)]
mod tests {
    use super::*;
    use pki::{ServicePki, spiffe_id};

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
}
