//! Why a server-side TLS handshake failed, classified from the rustls error into reasons an
//! operator can act on, with stable labels for logs and metrics.

use std::fmt;
use std::io;

use rustls::CertificateError;

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
    /// The peer closed the connection (or reset it) before the handshake was done, for
    /// example before it sent its ClientHello.
    Closed,
    /// The connection failed during the handshake for another reason.
    Io(String),
}

impl HandshakeFailure {
    /// Classifies the error returned by a rustls handshake. (A handshake too slow is not a
    /// failure of its own: the accept loop's gate drops the connection at its deadline.)
    pub fn from_io(err: &io::Error) -> Self {
        let Some(tls) = err
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        else {
            return match err.kind() {
                io::ErrorKind::UnexpectedEof
                | io::ErrorKind::ConnectionReset
                | io::ErrorKind::ConnectionAborted
                | io::ErrorKind::BrokenPipe => HandshakeFailure::Closed,
                _ => HandshakeFailure::Io(err.to_string()),
            };
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
            HandshakeFailure::Closed => "closed",
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
            HandshakeFailure::Closed => {
                f.write_str("peer closed the connection during the handshake")
            }
            HandshakeFailure::Io(why) => write!(f, "connection failed during handshake: {why}"),
        }
    }
}
