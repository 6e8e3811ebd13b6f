//! Clients of Discount as a test sees it: gRPC over mutual TLS (with or without a client
//! certificate), over plaintext, a bare mutual-TLS connection, and a status with its whole
//! error chain for assertions.

use std::net::SocketAddr;

use ecommerce_proto::pb::discount_client::DiscountClient;
use pki::{CertificateAuthority, CertifiedKey, ServicePki};
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tonic::Status;
use tonic::transport::{Channel, Endpoint};

use crate::certs::{anchors, identity};

/// A gRPC channel to `addr` that trusts `server_ca` and presents `client_cert` (or no
/// certificate at all).
pub fn mtls_channel(
    addr: SocketAddr,
    server_ca: &CertificateAuthority,
    client_cert: Option<&CertifiedKey>,
) -> Channel {
    let client_identity = client_cert.map(identity);
    let config = mtls::client_config(&anchors(server_ca), client_identity.as_ref(), None).unwrap();
    mtls::lazy_channel(config, addr, "localhost").unwrap()
}

/// A Discount client over [`mtls_channel`].
pub fn grpc_client(
    addr: SocketAddr,
    server_ca: &CertificateAuthority,
    client_cert: Option<&CertifiedKey>,
) -> DiscountClient<Channel> {
    DiscountClient::new(mtls_channel(addr, server_ca, client_cert))
}

/// A gRPC client for Discount on `addr` that speaks plaintext HTTP/2 (no TLS at all).
pub fn plaintext_grpc_client(addr: SocketAddr) -> DiscountClient<Channel> {
    let channel = Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_lazy();
    DiscountClient::new(channel)
}

/// A mutual-TLS connection to Discount on `addr` with the PKI's Catalog certificate, its
/// handshake done and nothing sent yet.
pub async fn tls_connect(
    addr: SocketAddr,
    pki: &ServicePki,
) -> std::io::Result<TlsStream<TcpStream>> {
    let config =
        mtls::client_config(&anchors(&pki.ca), Some(&identity(&pki.catalog)), None).unwrap();
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from("localhost").unwrap();
    tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
}

/// A status with its whole source chain, where TLS alerts show up.
pub fn status_chain(status: &Status) -> String {
    let mut text = format!("{:?}: {}", status.code(), status.message());
    let mut source = std::error::Error::source(status);
    while let Some(err) = source {
        text.push_str(" <- ");
        text.push_str(&err.to_string());
        source = err.source();
    }
    text
}
