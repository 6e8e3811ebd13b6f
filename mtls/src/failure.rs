//! Why a TLS handshake failed, classified from the rustls error into reasons an operator can
//! act on, with stable labels for logs and metrics: on the server side, what was wrong with the
//! would-be client ([`HandshakeFailure`]); on the client side, what was wrong with the server's
//! certificate or why the server refused ours ([`ConnectFailure`]). Both read the error the same
//! way ([`Cause`]).

use std::fmt;
use std::io;

use rustls::{AlertDescription, CertificateError};

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
        let tls = match Cause::of(err) {
            Cause::Tls(tls) => tls,
            Cause::Closed => return HandshakeFailure::Closed,
            Cause::Io(why) => return HandshakeFailure::Io(why),
        };
        match tls {
            rustls::Error::NoCertificatesPresented => HandshakeFailure::NoClientCertificate,
            rustls::Error::InvalidCertificate(cert) => match CertProblem::of(cert) {
                CertProblem::UnknownIssuer => HandshakeFailure::UnknownCa,
                CertProblem::Expired => HandshakeFailure::Expired,
                CertProblem::NotYetValid => HandshakeFailure::NotYetValid,
                CertProblem::NameMismatch { .. } | CertProblem::Other => {
                    HandshakeFailure::BadCertificate(format!("{cert:?}"))
                }
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

/// What a handshake's I/O error says: the rustls error inside it, or how the connection ended.
enum Cause<'a> {
    Tls(&'a rustls::Error),
    /// The peer closed (or reset) the connection.
    Closed,
    Io(String),
}

impl<'a> Cause<'a> {
    fn of(err: &'a io::Error) -> Self {
        if let Some(tls) = err
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            return Cause::Tls(tls);
        }
        match err.kind() {
            io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe => Cause::Closed,
            _ => Cause::Io(err.to_string()),
        }
    }
}

/// What is wrong with the peer's certificate, whichever side checked it.
enum CertProblem {
    UnknownIssuer,
    Expired,
    NotYetValid,
    /// Valid, but not for the name connected to (only clients check names); the names it
    /// carries, when rustls says.
    NameMismatch {
        presented: Vec<String>,
    },
    Other,
}

impl CertProblem {
    fn of(err: &CertificateError) -> Self {
        match err {
            CertificateError::UnknownIssuer => CertProblem::UnknownIssuer,
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                CertProblem::Expired
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                CertProblem::NotYetValid
            }
            CertificateError::NotValidForName => CertProblem::NameMismatch {
                presented: Vec::new(),
            },
            CertificateError::NotValidForNameContext { presented, .. } => {
                CertProblem::NameMismatch {
                    presented: presented.clone(),
                }
            }
            _ => CertProblem::Other,
        }
    }
}

/// Why a client's TLS connection to a server failed, in words an operator can act on: what
/// was wrong with the server's certificate, or why the server refused ours.
///
/// In TLS 1.3 the server checks the client's certificate after the client has finished its
/// side of the handshake, so a refusal of ours arrives as an alert on the first read: classify
/// that read's error with [`Self::from_io`] too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectFailure {
    /// The server's certificate does not chain to our CA.
    UnknownIssuer,
    /// The server's certificate is not valid for the name connected to.
    NameMismatch {
        /// The name connected to.
        expected: String,
        /// The names the certificate carries (when known).
        presented: Vec<String>,
    },
    /// The server's certificate has expired.
    Expired,
    /// The server's certificate is not valid yet.
    NotYetValid,
    /// The server's certificate was rejected for another reason.
    BadCertificate(String),
    /// The server refused our certificate (or our lack of one): why, from its alert.
    CertificateRefused(String),
    /// The server does not speak TLS.
    NotTls,
    /// The server speaks TLS but not what we require (TLS 1.3...).
    Incompatible(String),
    /// The server closed the connection during the handshake.
    Closed,
    /// The connection failed for another reason.
    Io(String),
}

impl ConnectFailure {
    /// Classifies an error from a rustls client's handshake, or from its first read after
    /// it; `server_name` is the name the server's certificate was checked against.
    pub fn from_io(err: &io::Error, server_name: &str) -> Self {
        match Cause::of(err) {
            Cause::Tls(tls) => Self::from_rustls(tls, server_name),
            Cause::Closed => ConnectFailure::Closed,
            Cause::Io(why) => ConnectFailure::Io(why),
        }
    }

    /// Classifies a rustls error on a client's connection (see [`Self::from_io`]).
    pub fn from_rustls(tls: &rustls::Error, server_name: &str) -> Self {
        match tls {
            rustls::Error::InvalidCertificate(cert) => match CertProblem::of(cert) {
                CertProblem::UnknownIssuer => ConnectFailure::UnknownIssuer,
                CertProblem::Expired => ConnectFailure::Expired,
                CertProblem::NotYetValid => ConnectFailure::NotYetValid,
                CertProblem::NameMismatch { presented } => ConnectFailure::NameMismatch {
                    expected: server_name.to_owned(),
                    presented: presented.iter().map(|name| tidy_name(name)).collect(),
                },
                CertProblem::Other if *cert == CertificateError::BadSignature => {
                    ConnectFailure::BadCertificate(
                        "its signature does not verify with our CA's key (issued by another CA \
                         of the same name?)"
                            .into(),
                    )
                }
                CertProblem::Other => ConnectFailure::BadCertificate(format!("{cert:?}")),
            },
            rustls::Error::AlertReceived(alert) => Self::from_alert(*alert),
            rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. } => {
                ConnectFailure::NotTls
            }
            rustls::Error::PeerIncompatible(why) => {
                ConnectFailure::Incompatible(format!("{why:?}"))
            }
            other => ConnectFailure::Io(other.to_string()),
        }
    }

    fn from_alert(alert: AlertDescription) -> Self {
        let refused = |why: &str| ConnectFailure::CertificateRefused(why.to_owned());
        match alert {
            AlertDescription::UnknownCA => refused("it is not issued by a CA the server trusts"),
            AlertDescription::CertificateExpired => refused("it has expired (or is not valid yet)"),
            AlertDescription::CertificateRequired => refused("the server requires one"),
            AlertDescription::CertificateRevoked => refused("it is revoked"),
            AlertDescription::BadCertificate
            | AlertDescription::UnsupportedCertificate
            | AlertDescription::CertificateUnknown
            | AlertDescription::AccessDenied => refused(&format!("{alert:?}")),
            AlertDescription::ProtocolVersion => {
                ConnectFailure::Incompatible("the server does not accept TLS 1.3".into())
            }
            AlertDescription::HandshakeFailure | AlertDescription::InsufficientSecurity => {
                ConnectFailure::Incompatible(format!(
                    "no common parameters with the server ({alert:?})"
                ))
            }
            other => ConnectFailure::Io(format!("the server sent alert {other:?}")),
        }
    }

    /// A short, stable label for logs and metrics.
    pub fn label(&self) -> &'static str {
        match self {
            ConnectFailure::UnknownIssuer => "unknown_issuer",
            ConnectFailure::NameMismatch { .. } => "name_mismatch",
            ConnectFailure::Expired => "expired",
            ConnectFailure::NotYetValid => "not_yet_valid",
            ConnectFailure::BadCertificate(_) => "bad_certificate",
            ConnectFailure::CertificateRefused(_) => "certificate_refused",
            ConnectFailure::NotTls => "not_tls",
            ConnectFailure::Incompatible(_) => "incompatible",
            ConnectFailure::Closed => "closed",
            ConnectFailure::Io(_) => "io",
        }
    }
}

/// `DnsName("localhost")` (how rustls lists a certificate's names) as `localhost`.
fn tidy_name(name: &str) -> String {
    name.split_once('(')
        .and_then(|(_, inner)| inner.strip_suffix(')'))
        .map_or(name, |inner| inner.trim_matches('"'))
        .to_owned()
}

impl fmt::Display for ConnectFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectFailure::UnknownIssuer => {
                f.write_str("server certificate is not issued by a trusted CA (unknown issuer)")
            }
            ConnectFailure::NameMismatch {
                expected,
                presented,
            } => {
                write!(
                    f,
                    "server certificate is not valid for {expected:?} (name mismatch"
                )?;
                if !presented.is_empty() {
                    write!(f, "; it is valid for {}", presented.join(", "))?;
                }
                f.write_str(")")
            }
            ConnectFailure::Expired => f.write_str("server certificate has expired"),
            ConnectFailure::NotYetValid => f.write_str("server certificate is not valid yet"),
            ConnectFailure::BadCertificate(why) => {
                write!(f, "server certificate rejected: {why}")
            }
            ConnectFailure::CertificateRefused(why) => {
                write!(f, "the server refused our certificate: {why}")
            }
            ConnectFailure::NotTls => f.write_str("the server does not speak TLS"),
            ConnectFailure::Incompatible(why) => write!(f, "TLS not possible: {why}"),
            ConnectFailure::Closed => {
                f.write_str("the server closed the connection during the handshake")
            }
            ConnectFailure::Io(why) => write!(f, "TLS connection failed: {why}"),
        }
    }
}
