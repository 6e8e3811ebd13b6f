//! Every certificate the PKI issues is strict DER: decoded with a strict DER decoder (RustCrypto's
//! `x509-cert`) and encoded again, each extension and the whole certificate come out byte for
//! byte the same. A value written out that DER says to omit (such as BasicConstraints'
//! `cA: FALSE`, a DEFAULT) would come back shorter, and strict parsers refuse it.
#![allow(clippy::unwrap_used)]

use pki::{CertificateAuthority, ServicePki, Validity};
use x509_cert::Certificate;
use x509_cert::der::{Decode, Encode};
use x509_cert::ext::pkix::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAltName,
    SubjectKeyIdentifier,
};

/// Decodes `bytes` as `T` and encodes it again; they must be equal.
fn round_trips<'a, T: Decode<'a> + Encode>(what: &str, bytes: &'a [u8]) {
    let value = T::from_der(bytes).unwrap_or_else(|err| panic!("{what}: not DER: {err}"));
    assert_eq!(
        value.to_der().unwrap(),
        bytes,
        "{what}: re-encodes differently, so it is not in DER form"
    );
}

/// The DER bytes inside a PEM certificate.
fn der_of(pem: &str) -> Vec<u8> {
    x509_parser::pem::parse_x509_pem(pem.as_bytes())
        .unwrap()
        .1
        .contents
}

fn assert_strict_der(name: &str, pem: &str) {
    let cert =
        Certificate::from_der(&der_of(pem)).unwrap_or_else(|err| panic!("{name}: not DER: {err}"));
    let der = cert.to_der().unwrap();
    let again = Certificate::from_der(&der).unwrap();
    assert_eq!(again.to_der().unwrap(), der, "{name}");
    for ext in cert.tbs_certificate.extensions.iter().flatten() {
        let what = format!("{name}: extension {}", ext.extn_id);
        let value = ext.extn_value.as_bytes();
        match ext.extn_id.to_string().as_str() {
            "2.5.29.19" => round_trips::<BasicConstraints>(&what, value),
            "2.5.29.15" => round_trips::<KeyUsage>(&what, value),
            "2.5.29.37" => round_trips::<ExtendedKeyUsage>(&what, value),
            "2.5.29.17" => round_trips::<SubjectAltName>(&what, value),
            "2.5.29.35" => round_trips::<AuthorityKeyIdentifier>(&what, value),
            "2.5.29.14" => round_trips::<SubjectKeyIdentifier>(&what, value),
            other => panic!("{name}: an extension this test does not know: {other}"),
        }
    }
}

#[test]
fn every_certificate_the_pki_issues_is_strict_der() {
    let pki = ServicePki::generate(1).unwrap();
    assert_strict_der("CA", pki.ca.cert_pem());
    assert_strict_der("discount", &pki.discount.cert_pem);
    assert_strict_der("catalog", &pki.catalog.cert_pem);
    assert_strict_der("postgres", &pki.postgres.cert_pem);
    let extra = pki.ca.issue_client("reports", Validity::days(1)).unwrap();
    assert_strict_der("reports", &extra.cert_pem);
    let anonymous = pki
        .ca
        .issue_client_without_identity(Validity::days(1))
        .unwrap();
    assert_strict_der("client without identity", &anonymous.cert_pem);
}

#[test]
fn an_end_entity_certificate_has_no_basic_constraints_and_the_ca_does() {
    let pki = ServicePki::generate(1).unwrap();
    let has_basic_constraints = |pem: &str| {
        let cert = Certificate::from_der(&der_of(pem)).unwrap();
        cert.tbs_certificate
            .extensions
            .iter()
            .flatten()
            .any(|ext| ext.extn_id.to_string() == "2.5.29.19")
    };
    assert!(has_basic_constraints(pki.ca.cert_pem()));
    assert!(!has_basic_constraints(&pki.discount.cert_pem));
    assert!(!has_basic_constraints(&pki.catalog.cert_pem));
    assert!(!has_basic_constraints(&pki.postgres.cert_pem));
}

#[test]
fn a_ca_reloaded_from_its_files_issues_strict_der_too() {
    let ca = CertificateAuthority::new("Reloaded CA", Validity::days(2)).unwrap();
    let reloaded = CertificateAuthority::from_pem(
        ca.cert_pem(),
        &ca.certified_key().key_pem,
        Validity::days(2),
    )
    .unwrap();
    let leaf = reloaded.issue_client("reports", Validity::days(1)).unwrap();
    assert_strict_der("leaf of a reloaded CA", &leaf.cert_pem);
}
