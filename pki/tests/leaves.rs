//! The leaf certificates as PostgreSQL and its clients need them: PostgreSQL's server
//! certificate (its host names, serverAuth, its identity), every leaf's subject common name being
//! its service (PostgreSQL's `cert` authentication maps it to the role), and a server certificate
//! for another host name, which a client checking host names must refuse.
#![allow(clippy::unwrap_used)]

use std::net::Ipv6Addr;

use pki::{ServicePki, Validity, spiffe_id};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// The DER bytes inside a PEM certificate.
fn der_of(pem: &str) -> Vec<u8> {
    x509_parser::pem::parse_x509_pem(pem.as_bytes())
        .unwrap()
        .1
        .contents
}

/// Every subjectAltName of the certificate, as text (`DNS:…`, `IP:…`, `URI:…`).
fn sans(der: &[u8]) -> Vec<String> {
    let (_, cert) = X509Certificate::from_der(der).unwrap();
    let san = cert.subject_alternative_name().unwrap().unwrap();
    san.value
        .general_names
        .iter()
        .map(|name| match name {
            GeneralName::DNSName(dns) => format!("DNS:{dns}"),
            GeneralName::IPAddress(ip) => match ip.len() {
                4 => format!("IP:{}", std::net::Ipv4Addr::new(ip[0], ip[1], ip[2], ip[3])),
                _ => format!("IP:{}", Ipv6Addr::from(<[u8; 16]>::try_from(*ip).unwrap())),
            },
            GeneralName::URI(uri) => format!("URI:{uri}"),
            other => format!("{other:?}"),
        })
        .collect()
}

/// The subject's common names, in order.
fn common_names(der: &[u8]) -> Vec<String> {
    let (_, cert) = X509Certificate::from_der(der).unwrap();
    cert.subject()
        .iter_common_name()
        .map(|cn| cn.as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn postgres_certificate_is_for_its_compose_name_and_local_hosts_server_auth_and_named_postgres() {
    let pki = ServicePki::generate(1).unwrap();
    let der = der_of(&pki.postgres.cert_pem);
    assert_eq!(
        sans(&der),
        [
            "DNS:postgres",
            "DNS:localhost",
            "IP:127.0.0.1",
            "IP:::1",
            "URI:spiffe://shop.local/postgres"
        ]
    );
    let (_, cert) = X509Certificate::from_der(&der).unwrap();
    let eku = cert.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.server_auth && !eku.client_auth, "{eku:?}");
    assert_eq!(common_names(&der), ["postgres"]);
}

#[test]
fn catalog_certificate_names_the_role_catalog() {
    let pki = ServicePki::generate(1).unwrap();
    let der = der_of(&pki.catalog.cert_pem);
    assert_eq!(common_names(&der), ["catalog"]);
    assert_eq!(sans(&der), [format!("URI:{}", spiffe_id("catalog"))]);
}

#[test]
fn every_leaf_is_named_after_its_service() {
    let pki = ServicePki::generate(1).unwrap();
    let reports = pki.ca.issue_client("reports", Validity::days(1)).unwrap();
    for (service, pem) in [
        ("discount", &pki.discount.cert_pem),
        ("catalog", &pki.catalog.cert_pem),
        ("postgres", &pki.postgres.cert_pem),
        ("reports", &reports.cert_pem),
    ] {
        assert_eq!(common_names(&der_of(pem)), [service], "{service}");
    }
}

#[test]
fn a_server_certificate_for_another_host_names_only_that_host() {
    let pki = ServicePki::generate(1).unwrap();
    let cert = pki
        .ca
        .issue_server("postgres", &["elsewhere.example"], Validity::days(1))
        .unwrap();
    let der = der_of(&cert.cert_pem);
    assert_eq!(
        sans(&der),
        ["DNS:elsewhere.example", "URI:spiffe://shop.local/postgres"]
    );
    let (_, parsed) = X509Certificate::from_der(&der).unwrap();
    let eku = parsed.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.server_auth && !eku.client_auth, "{eku:?}");
}
