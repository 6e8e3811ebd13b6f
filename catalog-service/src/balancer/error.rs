//! What goes wrong setting up the replicas ([`ClientError`]), and how a failed RPC's status
//! is put into words, its causes included, for logs, ejections and error messages.

use mtls::TlsError;
use tonic::Status;

/// Why the Discount client could not be created.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("invalid Discount endpoint: {0}")]
    Endpoint(#[from] http::uri::InvalidUri),
    #[error("no Discount address given")]
    NoTargets,
}

/// A status with its sources, which is where TLS failures explain themselves
/// (e.g. `invalid peer certificate: UnknownIssuer`).
pub(crate) fn error_chain(status: &Status) -> String {
    let mut text = format!("{:?}: {}", status.code(), status.message());
    append_sources(&mut text, status);
    text
}

/// Appends the causes of `err` to `text`, each one not already in it.
pub(crate) fn append_sources(text: &mut String, err: &dyn std::error::Error) {
    let mut source = err.source();
    while let Some(cause) = source {
        let next = cause.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = cause.source();
    }
}
