//! The reason Discount logs for each refused handshake, checked on real rustls handshakes over
//! an in-memory pipe.

use std::sync::Arc;

use e2e_tests::pki::{CertifiedKey, Validity};
use e2e_tests::{anchors, identity, other_pki, service_pki};
use mtls::{self as tls, HandshakeFailure};
use rustls::pki_types::ServerName;
use tokio::io::AsyncWriteExt;

/// Runs one handshake between Discount's server configuration and a client presenting
/// `client_cert`, and returns how the server classified the outcome.
async fn server_verdict(client_cert: Option<&CertifiedKey>) -> Result<(), HandshakeFailure> {
    let pki = service_pki();
    let server = tls::server_config(&identity(&pki.discount), &anchors(&pki.ca)).unwrap();
    let client_identity = client_cert.map(identity);
    let client = tls::client_config(&anchors(&pki.ca), client_identity.as_ref(), None).unwrap();
    verdict(server, Some(client)).await
}

async fn verdict(
    server: Arc<rustls::ServerConfig>,
    client: Option<Arc<rustls::ClientConfig>>,
) -> Result<(), HandshakeFailure> {
    let (client_io, server_io) = tokio::io::duplex(64 * 1024);
    // The client keeps its end open until the server is done (the server writes after the
    // client's last handshake message), hence the join rather than a spawned task.
    let client_side = async move {
        match client {
            Some(config) => {
                let name = ServerName::try_from("localhost").unwrap();
                let stream = tokio_rustls::TlsConnector::from(config)
                    .connect(name, client_io)
                    .await;
                Box::new(stream) as Box<dyn std::any::Any + Send>
            }
            None => {
                // Not TLS at all: the HTTP/2 connection preface in plaintext.
                let mut io = client_io;
                let _ = io.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await;
                Box::new(io)
            }
        }
    };
    let server_side = tokio_rustls::TlsAcceptor::from(server).accept(server_io);
    let (_client_end, result) = tokio::join!(client_side, server_side);
    result
        .map(drop)
        .map_err(|err| HandshakeFailure::from_io(&err))
}

#[tokio::test]
async fn valid_client_completes_the_handshake() {
    let pki = service_pki();
    let server = tls::server_config(&identity(&pki.discount), &anchors(&pki.ca)).unwrap();
    let client =
        tls::client_config(&anchors(&pki.ca), Some(&identity(&pki.catalog)), None).unwrap();
    assert_eq!(verdict(server, Some(client)).await, Ok(()));
}

#[tokio::test]
async fn missing_client_certificate_is_named() {
    assert_eq!(
        server_verdict(None).await,
        Err(HandshakeFailure::NoClientCertificate)
    );
}

#[tokio::test]
async fn certificate_from_another_ca_is_named() {
    let stranger = other_pki();
    assert_eq!(
        server_verdict(Some(&stranger.catalog)).await,
        Err(HandshakeFailure::UnknownCa)
    );
}

#[tokio::test]
async fn expired_certificate_is_named() {
    // Issued by the right CA, but by one made in this test: build both from one PKI.
    let pki = service_pki();
    let expired = pki.ca.issue_client("catalog", Validity::expired()).unwrap();
    let server = tls::server_config(&identity(&pki.discount), &anchors(&pki.ca)).unwrap();
    let client = tls::client_config(&anchors(&pki.ca), Some(&identity(&expired)), None).unwrap();
    assert_eq!(
        verdict(server, Some(client)).await,
        Err(HandshakeFailure::Expired)
    );
}

#[tokio::test]
async fn not_yet_valid_certificate_is_named() {
    let pki = service_pki();
    let early = pki
        .ca
        .issue_client("catalog", Validity::not_yet_valid())
        .unwrap();
    let server = tls::server_config(&identity(&pki.discount), &anchors(&pki.ca)).unwrap();
    let client = tls::client_config(&anchors(&pki.ca), Some(&identity(&early)), None).unwrap();
    assert_eq!(
        verdict(server, Some(client)).await,
        Err(HandshakeFailure::NotYetValid)
    );
}

#[tokio::test]
async fn plaintext_is_named() {
    let pki = service_pki();
    let server = tls::server_config(&identity(&pki.discount), &anchors(&pki.ca)).unwrap();
    assert_eq!(verdict(server, None).await, Err(HandshakeFailure::NotTls));
}

#[tokio::test]
async fn a_bundle_of_old_and_new_ca_accepts_clients_of_both_during_a_rollover() {
    let old = service_pki();
    let new = other_pki();
    let bundle = format!("{}{}", old.ca.cert_pem(), new.ca.cert_pem());
    let anchors_both = mtls::TrustAnchors::from_pem(bundle.as_bytes()).unwrap();
    let server = tls::server_config(&identity(&old.discount), &anchors_both).unwrap();
    for client_cert in [&old.catalog, &new.catalog] {
        let client =
            tls::client_config(&anchors(&old.ca), Some(&identity(client_cert)), None).unwrap();
        assert_eq!(verdict(server.clone(), Some(client)).await, Ok(()));
    }
}
