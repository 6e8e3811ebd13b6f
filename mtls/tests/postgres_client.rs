//! The PostgreSQL client configuration on real TLS sockets: TLS 1.3 without ALPN, our
//! certificate presented, and each way it can fail named by `ConnectFailure` (unknown issuer,
//! name mismatch, our certificate refused, a server that does not speak TLS).

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;

use mtls::{ConnectFailure, Identity, TrustAnchors, postgres_client_config, server_config};
use pki::ServicePki;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn identity(cert: &pki::CertifiedKey) -> Identity {
    Identity::from_pem(cert.cert_pem.as_bytes(), cert.key_pem.as_bytes()).unwrap()
}

/// Certificates from a CA of another name (one of the same name would be taken for ours, and
/// its signatures found bad).
fn other_pki() -> ServicePki {
    let ca = pki::CertificateAuthority::new("Another CA", pki::Validity::days(1)).unwrap();
    ServicePki::from_ca(ca, 1).unwrap()
}

fn anchors(pki: &ServicePki) -> TrustAnchors {
    TrustAnchors::from_pem(pki.ca.cert_pem().as_bytes()).unwrap()
}

/// A TLS server (Discount's certificate from `server_pki`, valid for localhost and
/// 127.0.0.1; clients from `client_pki`'s CA accepted) that answers one byte per connection.
/// What its one handshake ended with goes to the returned channel.
async fn tls_server(
    server_pki: &ServicePki,
    client_pki: &ServicePki,
) -> (
    SocketAddr,
    tokio::sync::oneshot::Receiver<Result<Option<ServerSeen>, String>>,
) {
    let config = server_config(&identity(&server_pki.discount), &anchors(client_pki)).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let result = match tokio_rustls::TlsAcceptor::from(config).accept(tcp).await {
            Ok(mut tls) => {
                let (_, session) = tls.get_ref();
                let seen = ServerSeen {
                    client_certificate: session.peer_certificates().is_some(),
                    alpn: session.alpn_protocol().map(<[u8]>::to_vec),
                };
                let _ = tls.write_all(b"S").await;
                let _ = tls.flush().await;
                Ok(Some(seen))
            }
            Err(err) => Err(err.to_string()),
        };
        let _ = tx.send(result);
    });
    (addr, rx)
}

#[derive(Debug)]
struct ServerSeen {
    client_certificate: bool,
    alpn: Option<Vec<u8>>,
}

/// Connects with the PostgreSQL configuration (trusting `ca`, presenting `me`), checking the
/// server's certificate for `name`, and reads the server's first byte: the way tokio-postgres
/// meets a refusal of our certificate (after the client's side of the handshake is done).
async fn connect(
    addr: SocketAddr,
    ca: &TrustAnchors,
    me: &Identity,
    name: &str,
) -> Result<rustls::ProtocolVersion, ConnectFailure> {
    let config = postgres_client_config(ca, me).unwrap();
    assert!(config.alpn_protocols.is_empty());
    let tcp = TcpStream::connect(addr).await.unwrap();
    let server_name = ServerName::try_from(name.to_owned()).unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(Arc::clone(&config))
        .connect(server_name, tcp)
        .await
        .map_err(|err| ConnectFailure::from_io(&err, name))?;
    let mut byte = [0u8; 1];
    tls.read_exact(&mut byte)
        .await
        .map_err(|err| ConnectFailure::from_io(&err, name))?;
    Ok(tls.get_ref().1.protocol_version().unwrap())
}

#[tokio::test]
async fn postgres_client_speaks_tls13_without_alpn_and_presents_its_certificate() {
    let pki = ServicePki::generate(1).unwrap();
    let (addr, seen) = tls_server(&pki, &pki).await;
    let version = connect(addr, &anchors(&pki), &identity(&pki.catalog), "localhost")
        .await
        .unwrap();
    assert_eq!(version, rustls::ProtocolVersion::TLSv1_3);
    let seen = seen.await.unwrap().unwrap().unwrap();
    assert!(seen.client_certificate, "{seen:?}");
    assert_eq!(seen.alpn, None);
}

#[tokio::test]
async fn an_ip_address_is_checked_against_the_ip_san() {
    let pki = ServicePki::generate(1).unwrap();
    let (addr, _seen) = tls_server(&pki, &pki).await;
    connect(addr, &anchors(&pki), &identity(&pki.catalog), "127.0.0.1")
        .await
        .unwrap();
}

#[tokio::test]
async fn a_certificate_for_another_name_is_a_name_mismatch() {
    let pki = ServicePki::generate(1).unwrap();
    let (addr, _seen) = tls_server(&pki, &pki).await;
    let err = connect(
        addr,
        &anchors(&pki),
        &identity(&pki.catalog),
        "db.example.com",
    )
    .await
    .unwrap_err();
    let ConnectFailure::NameMismatch {
        expected,
        presented,
    } = &err
    else {
        panic!("{err:?}");
    };
    assert_eq!(expected, "db.example.com");
    assert!(presented.iter().any(|name| name == "localhost"), "{err}");
    assert!(presented.iter().any(|name| name == "127.0.0.1"), "{err}");
    assert!(err.to_string().contains("name mismatch"), "{err}");
    assert_eq!(err.label(), "name_mismatch");
}

#[tokio::test]
async fn a_server_from_another_ca_is_an_unknown_issuer() {
    let pki = ServicePki::generate(1).unwrap();
    let stranger = other_pki();
    let (addr, _seen) = tls_server(&stranger, &pki).await;
    let err = connect(addr, &anchors(&pki), &identity(&pki.catalog), "localhost")
        .await
        .unwrap_err();
    assert_eq!(err, ConnectFailure::UnknownIssuer);
    assert!(err.to_string().contains("unknown issuer"), "{err}");
}

#[tokio::test]
async fn a_server_from_another_ca_of_the_same_name_is_named() {
    // Two CAs both called "Shop Private CA" (two runs of gen-certs): the server's certificate
    // names our CA as its issuer, but our CA did not sign it.
    let pki = ServicePki::generate(1).unwrap();
    let same_name = ServicePki::generate(1).unwrap();
    let (addr, _seen) = tls_server(&same_name, &pki).await;
    let err = connect(addr, &anchors(&pki), &identity(&pki.catalog), "localhost")
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("another CA of the same name"),
        "{err}"
    );
}

#[tokio::test]
async fn a_server_refusing_our_certificate_is_named() {
    let pki = ServicePki::generate(1).unwrap();
    let other_clients = other_pki();
    // The server trusts another CA for its clients: ours is refused after our side of the
    // handshake is done, so the refusal arrives on the first read.
    let (addr, seen) = tls_server(&pki, &other_clients).await;
    let err = connect(addr, &anchors(&pki), &identity(&pki.catalog), "localhost")
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ConnectFailure::CertificateRefused(why) if why.contains("CA the server trusts")),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .starts_with("the server refused our certificate"),
        "{err}"
    );
    assert!(seen.await.unwrap().is_err());
}

#[tokio::test]
async fn a_server_that_does_not_speak_tls_is_named() {
    let pki = ServicePki::generate(1).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        let _ = tcp.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
        let mut rest = Vec::new();
        let _ = tcp.read_to_end(&mut rest).await;
    });
    let err = connect(addr, &anchors(&pki), &identity(&pki.catalog), "localhost")
        .await
        .unwrap_err();
    assert_eq!(err, ConnectFailure::NotTls, "{err}");
}
