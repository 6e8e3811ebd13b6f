//! The project's PKI, built in memory: a private CA, server certificates (serverAuth, DNS/IP
//! SANs) and client certificates (clientAuth). Every certificate carries the service's identity
//! as a SPIFFE-style URI SAN (`spiffe://shop.local/<service>`), which is how a peer tells who is
//! calling.
//!
//! Keys are ECDSA P-256. Nothing here touches the file system; see [`crate::certs_dir`].

use std::fmt;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use time::{Duration, OffsetDateTime};

/// The trust domain of every service identity.
pub const TRUST_DOMAIN: &str = "shop.local";

/// The hosts a locally run server certificate is valid for.
pub const LOCAL_HOSTS: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// The SPIFFE-style identity of `service`, e.g. `spiffe://shop.local/catalog`.
pub fn spiffe_id(service: &str) -> String {
    format!("spiffe://{TRUST_DOMAIN}/{service}")
}

/// Why a certificate could not be built or loaded.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("rcgen: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("invalid service name {0:?}: use lowercase letters, digits and '-'")]
    ServiceName(String),
}

/// When a certificate is valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    /// Start of validity.
    pub not_before: OffsetDateTime,
    /// End of validity.
    pub not_after: OffsetDateTime,
}

impl Validity {
    /// From a minute ago (tolerates small clock skew) for `days` days.
    pub fn days(days: u32) -> Self {
        Self::lasting(Duration::days(i64::from(days)))
    }

    /// From a minute ago for `duration`.
    pub fn lasting(duration: Duration) -> Self {
        let now = OffsetDateTime::now_utc();
        Self {
            not_before: now - Duration::minutes(1),
            not_after: now + duration,
        }
    }

    /// A window that ended yesterday (for tests of expired certificates).
    pub fn expired() -> Self {
        let now = OffsetDateTime::now_utc();
        Self {
            not_before: now - Duration::days(30),
            not_after: now - Duration::days(1),
        }
    }

    /// A window that starts tomorrow (for tests of not-yet-valid certificates).
    pub fn not_yet_valid() -> Self {
        let now = OffsetDateTime::now_utc();
        Self {
            not_before: now + Duration::days(1),
            not_after: now + Duration::days(30),
        }
    }

    /// This window, ending no later than `limit` (a leaf must not outlive its CA).
    pub fn capped_at(self, limit: OffsetDateTime) -> Self {
        Self {
            not_after: self.not_after.min(limit),
            ..self
        }
    }
}

/// A certificate and its private key, both PEM. `Debug` never prints the key.
#[derive(Clone)]
pub struct CertifiedKey {
    /// PEM certificate.
    pub cert_pem: String,
    /// PEM private key (PKCS#8).
    pub key_pem: String,
    /// Validity window of the certificate.
    pub validity: Validity,
}

impl fmt::Debug for CertifiedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertifiedKey")
            .field("validity", &self.validity)
            .field("key_pem", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// What a leaf certificate is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A server: serverAuth, valid for the given hosts.
    Server,
    /// A client: clientAuth.
    Client,
}

/// A certificate authority that can issue leaf certificates.
pub struct CertificateAuthority {
    issuer: Issuer<'static, KeyPair>,
    cert: CertifiedKey,
}

impl fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificateAuthority")
            .field("cert", &self.cert)
            .finish_non_exhaustive()
    }
}

impl CertificateAuthority {
    /// A new self-signed CA named `common_name`.
    pub fn new(common_name: &str, validity: Validity) -> Result<Self, PkiError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        params.distinguished_name = distinguished_name(common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = validity.not_before;
        params.not_after = validity.not_after;
        let cert = params.self_signed(&key)?;
        let cert = CertifiedKey {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            validity,
        };
        Ok(Self {
            issuer: Issuer::new(params, key),
            cert,
        })
    }

    /// An existing CA, from its PEM certificate and key.
    pub fn from_pem(cert_pem: &str, key_pem: &str, validity: Validity) -> Result<Self, PkiError> {
        let key = KeyPair::from_pem(key_pem)?;
        let issuer = Issuer::from_ca_cert_pem(cert_pem, key)?;
        Ok(Self {
            issuer,
            cert: CertifiedKey {
                cert_pem: cert_pem.to_owned(),
                key_pem: key_pem.to_owned(),
                validity,
            },
        })
    }

    /// The CA's certificate and key.
    pub fn certified_key(&self) -> &CertifiedKey {
        &self.cert
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert.cert_pem
    }

    /// Issues a certificate for `service` with the given role. A server certificate is valid
    /// for `hosts` (DNS names or IP addresses); every certificate carries the service's URI SAN.
    /// The validity is capped at the CA's own expiry.
    pub fn issue(
        &self,
        service: &str,
        role: Role,
        hosts: &[&str],
        validity: Validity,
    ) -> Result<CertifiedKey, PkiError> {
        check_service_name(service)?;
        self.issue_with_uri(service, Some(&spiffe_id(service)), role, hosts, validity)
    }

    /// A client certificate from this CA that names no service (no URI SAN): what Discount
    /// must refuse even though it chains to the CA. For tests.
    pub fn issue_client_without_identity(
        &self,
        validity: Validity,
    ) -> Result<CertifiedKey, PkiError> {
        self.issue_with_uri("anonymous", None, Role::Client, &[], validity)
    }

    fn issue_with_uri(
        &self,
        common_name: &str,
        uri: Option<&str>,
        role: Role,
        hosts: &[&str],
        validity: Validity,
    ) -> Result<CertifiedKey, PkiError> {
        let service = common_name;
        let validity = validity.capped_at(self.cert.validity.not_after);
        let key = KeyPair::generate()?;
        let hosts: Vec<String> = hosts.iter().map(|h| (*h).to_owned()).collect();
        let mut params = CertificateParams::new(hosts)?;
        if let Some(uri) = uri {
            params
                .subject_alt_names
                .push(SanType::URI(uri.to_owned().try_into()?));
        }
        params.distinguished_name = distinguished_name(service);
        // No BasicConstraints at all on an end-entity certificate: encoding `cA: FALSE` would
        // write a DEFAULT value out, which DER forbids (X.690 11.5) and strict parsers refuse.
        params.is_ca = IsCa::NoCa;
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![match role {
            Role::Server => ExtendedKeyUsagePurpose::ServerAuth,
            Role::Client => ExtendedKeyUsagePurpose::ClientAuth,
        }];
        params.not_before = validity.not_before;
        params.not_after = validity.not_after;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(CertifiedKey {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            validity,
        })
    }

    /// A server certificate for `service`, valid for [`LOCAL_HOSTS`] and for the service's
    /// own name (`discount`, `postgres`: what containers on one compose network call it).
    pub fn issue_local_server(
        &self,
        service: &str,
        validity: Validity,
    ) -> Result<CertifiedKey, PkiError> {
        let mut hosts = vec![service];
        hosts.extend(LOCAL_HOSTS);
        self.issue(service, Role::Server, &hosts, validity)
    }

    /// A server certificate for `service`, valid for exactly `hosts` (DNS names or IP
    /// addresses): e.g. one for `elsewhere.example` only, which a client that checks host names
    /// must refuse when it dialled `localhost`.
    pub fn issue_server(
        &self,
        service: &str,
        hosts: &[&str],
        validity: Validity,
    ) -> Result<CertifiedKey, PkiError> {
        self.issue(service, Role::Server, hosts, validity)
    }

    /// A client certificate for `service`.
    pub fn issue_client(
        &self,
        service: &str,
        validity: Validity,
    ) -> Result<CertifiedKey, PkiError> {
        self.issue(service, Role::Client, &[], validity)
    }
}

fn distinguished_name(common_name: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::OrganizationName, "Shop");
    name.push(DnType::CommonName, common_name);
    name
}

fn check_service_name(service: &str) -> Result<(), PkiError> {
    let valid = !service.is_empty()
        && service
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if valid {
        Ok(())
    } else {
        Err(PkiError::ServiceName(service.to_owned()))
    }
}

/// The full set of certificates the services need, as `gen-certs` writes it. Every leaf's
/// subject is `O=Shop, CN=<service>`: PostgreSQL's `cert` authentication maps the common name
/// to the database role, so Catalog's certificate logs in as the role `catalog`.
#[derive(Debug)]
pub struct ServicePki {
    /// The private CA.
    pub ca: CertificateAuthority,
    /// Discount's server certificate.
    pub discount: CertifiedKey,
    /// Catalog's client certificate.
    pub catalog: CertifiedKey,
    /// PostgreSQL's server certificate: valid for `postgres` (its compose service) and
    /// [`LOCAL_HOSTS`].
    pub postgres: CertifiedKey,
}

impl ServicePki {
    /// A new CA and the service certificates, all valid for `days` days.
    pub fn generate(days: u32) -> Result<Self, PkiError> {
        let ca = CertificateAuthority::new("Shop Private CA", Validity::days(days))?;
        Self::from_ca(ca, days)
    }

    /// The service certificates, issued by an existing CA, valid for `days` days.
    pub fn from_ca(ca: CertificateAuthority, days: u32) -> Result<Self, PkiError> {
        Self::from_ca_for(ca, Validity::days(days))
    }

    /// The service certificates, issued by an existing CA, valid for `validity`.
    pub fn from_ca_for(ca: CertificateAuthority, validity: Validity) -> Result<Self, PkiError> {
        let discount = ca.issue_local_server("discount", validity)?;
        let catalog = ca.issue_client("catalog", validity)?;
        let postgres = ca.issue_local_server("postgres", validity)?;
        Ok(Self {
            ca,
            discount,
            catalog,
            postgres,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

    fn parse(pem: &str) -> Vec<u8> {
        let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
        pem.contents
    }

    #[test]
    fn server_certificate_has_local_sans_server_auth_and_identity() {
        let pki = ServicePki::generate(1).unwrap();
        let der = parse(&pki.discount.cert_pem);
        let (_, cert) = X509Certificate::from_der(&der).unwrap();
        let san = cert.subject_alternative_name().unwrap().unwrap();
        let names = &san.value.general_names;
        let ipv6_loopback = std::net::Ipv6Addr::LOCALHOST.octets();
        assert!(
            names.contains(&GeneralName::DNSName("localhost")),
            "{names:?}"
        );
        assert!(
            names.contains(&GeneralName::DNSName("discount")),
            "{names:?}"
        );
        assert!(
            names.contains(&GeneralName::IPAddress(&[127, 0, 0, 1])),
            "{names:?}"
        );
        assert!(
            names.contains(&GeneralName::IPAddress(&ipv6_loopback)),
            "{names:?}"
        );
        assert!(
            names.contains(&GeneralName::URI("spiffe://shop.local/discount")),
            "{names:?}"
        );
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.server_auth && !eku.client_auth);
    }

    #[test]
    fn client_certificate_has_client_auth_and_identity() {
        let pki = ServicePki::generate(1).unwrap();
        let der = parse(&pki.catalog.cert_pem);
        let (_, cert) = X509Certificate::from_der(&der).unwrap();
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.client_auth && !eku.server_auth);
        let san = cert.subject_alternative_name().unwrap().unwrap();
        assert!(
            san.value
                .general_names
                .iter()
                .any(|n| matches!(n, GeneralName::URI("spiffe://shop.local/catalog")))
        );
    }

    #[test]
    fn ca_reloaded_from_pem_issues_certificates_it_signed() {
        let ca = CertificateAuthority::new("Test CA", Validity::days(2)).unwrap();
        let reloaded = CertificateAuthority::from_pem(
            &ca.certified_key().cert_pem,
            &ca.certified_key().key_pem,
            ca.certified_key().validity,
        )
        .unwrap();
        let leaf = reloaded.issue_client("catalog", Validity::days(1)).unwrap();
        let ca_der = parse(ca.cert_pem());
        let (_, ca_cert) = X509Certificate::from_der(&ca_der).unwrap();
        let leaf_der = parse(&leaf.cert_pem);
        let (_, leaf_cert) = X509Certificate::from_der(&leaf_der).unwrap();
        leaf_cert
            .verify_signature(Some(ca_cert.public_key()))
            .unwrap();
    }

    #[test]
    fn leaf_never_outlives_its_ca() {
        let ca = CertificateAuthority::new("Short CA", Validity::days(1)).unwrap();
        let leaf = ca.issue_client("catalog", Validity::days(365)).unwrap();
        assert_eq!(
            leaf.validity.not_after,
            ca.certified_key().validity.not_after
        );
    }

    #[test]
    fn bad_service_names_are_refused() {
        let ca = CertificateAuthority::new("CA", Validity::days(1)).unwrap();
        for name in ["", "Catalog", "a/b", "x y"] {
            assert!(matches!(
                ca.issue_client(name, Validity::days(1)),
                Err(PkiError::ServiceName(_))
            ));
        }
    }

    #[test]
    fn debug_output_never_contains_the_key() {
        let pki = ServicePki::generate(1).unwrap();
        let debug = format!("{pki:?}");
        assert!(!debug.contains("PRIVATE KEY"), "{debug}");
    }
}
