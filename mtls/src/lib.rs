//! Mutual TLS for gRPC services over rustls and tonic, with SPIFFE URI identities and
//! certificate rotation without restarts. It knows nothing about the services that use it:
//! they pass in PEM material (or the files holding it) and the names of their metrics.
//!
//! tonic's own TLS settings cannot restrict the protocol version nor swap certificates at run
//! time, so both ends use rustls configurations built here and plug them into tonic: the server
//! through [`tls_incoming`] and `serve_with_incoming_shutdown`, the client through
//! [`MtlsConnector`], under a hyper client (as Catalog does) or tonic's
//! `Endpoint::connect_with_connector_lazy` ([`lazy_channel`]).
//!
//! The rules are the same on both ends:
//! - TLS 1.3 only, ALPN `h2`, one crypto provider (ring) for everything ([`crypto_provider`]);
//! - each side proves itself with a certificate from the private CA and checks the other's;
//! - a service's identity is the URI subjectAltName of its certificate
//!   (e.g. `spiffe://shop.local/catalog`), read once per connection into [`PeerInfo`].
//!
//! A service's connections to PostgreSQL use the same material and rules but ALPN (PostgreSQL
//! negotiates TLS inside its own protocol): [`postgres_client_config`], checked as libpq's
//! `sslmode=verify-full` does, its failures named by [`ConnectFailure`].
//!
//! # Layout
//! - [`material`]: PEM to [`Identity`] and [`TrustAnchors`]; [`uri_sans`] reads an identity.
//! - [`config`]: the TLS 1.3-only server and client configurations (server identity checked),
//!   and the client configuration for PostgreSQL ([`postgres_client_config`]: no ALPN).
//! - [`accept`]: the server's accept loop, [`admission`]'s with each admitted connection's
//!   handshake under the gate's guard (deadline, eviction) and proven once it succeeds;
//!   refused handshakes counted and logged once per interval; [`PeerInfo`].
//! - [`failure`]: why a handshake failed, in an operator's words: a client's, seen by the
//!   server ([`HandshakeFailure`]), or the server's, seen by the client ([`ConnectFailure`]).
//! - [`connect`]: the client's connector for hyper and tonic ([`MtlsConnector`]), and a tonic
//!   channel over it ([`lazy_channel`]).
//! - [`files`]: the CA, certificate and key files ([`TlsFiles`]) and their errors.
//! - [`reloadable`]: a configuration swapped under open connections ([`Reloadable`]).
//! - [`reload`]: the source of a service's material ([`TlsSource`]) and its watcher
//!   ([`TlsReloader`]): files re-read on change or SIGHUP, bad changes refused.
//!
//! The graph has no cycles: `material` <- `config`, `files`, `accept`, `connect`, `reload`;
//! `files` <- `reload`; `failure` <- `accept`; `reloadable` <- `accept`, `connect`, `reload`.

pub mod accept;
pub mod config;
pub mod connect;
pub mod failure;
pub mod files;
pub mod material;
pub mod reload;
pub mod reloadable;

pub use accept::{AcceptSettings, PeerInfo, TlsConn, tls_incoming};
pub use config::{WrongServerIdentity, client_config, postgres_client_config, server_config};
pub use connect::{MtlsConnector, MtlsStream, lazy_channel};
pub use failure::{ConnectFailure, HandshakeFailure};
pub use files::{TlsFileError, TlsFiles};
pub use material::{Identity, TlsError, TrustAnchors, crypto_provider, uri_sans};
pub use reload::{
    Look, Looks, ReloadError, ReloadOutcome, ReloadSettings, TlsReloader, TlsSource, serial_hex,
};
pub use reloadable::Reloadable;
