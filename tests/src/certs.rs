//! Certificates for the tests: fresh in-memory PKIs (made by the same code as
//! `cargo xtask gen-certs`) and their parsing into TLS material.

use mtls::{Identity, TrustAnchors};
use pki::{CertificateAuthority, CertifiedKey, ServicePki, Validity};

/// A fresh CA with Discount's and Catalog's certificates, valid for a day.
pub fn service_pki() -> ServicePki {
    ServicePki::generate(1).unwrap()
}

/// A second, unrelated CA with its own Discount and Catalog certificates.
pub fn other_pki() -> ServicePki {
    let ca = CertificateAuthority::new("Some Other CA", Validity::days(1)).unwrap();
    ServicePki::from_ca(ca, 1).unwrap()
}

/// Parses a PEM certificate and key into a TLS identity.
pub fn identity(cert: &CertifiedKey) -> Identity {
    Identity::from_pem(cert.cert_pem.as_bytes(), cert.key_pem.as_bytes()).unwrap()
}

/// Parses a PEM CA certificate into trust anchors.
pub fn anchors(ca: &CertificateAuthority) -> TrustAnchors {
    TrustAnchors::from_pem(ca.cert_pem().as_bytes()).unwrap()
}
