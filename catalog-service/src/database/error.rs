//! A tokio-postgres error on one line that says why: PostgreSQL's own message (with its detail
//! and hint), a TLS failure in [`mtls::ConnectFailure`]'s words, or the I/O failure.

use std::io;

use mtls::ConnectFailure;

/// An error and its causes, on one line.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    crate::balancer::append_sources(&mut text, err);
    one_line(&text)
}

fn one_line(text: &str) -> String {
    text.replace(['\n', '\r'], " ")
}

/// Why `err` happened, on one line. `server_name` is the name the server's certificate was
/// checked against (for a name mismatch).
pub fn describe(err: &tokio_postgres::Error, server_name: Option<&str>) -> String {
    if let Some(db) = err.as_db_error() {
        return describe_db(db);
    }
    if let Some(failure) = tls_failure(err, server_name) {
        return failure.to_string();
    }
    let text = error_chain(err);
    if text.contains("server does not support TLS") {
        return "the server does not support TLS (is `ssl = on` in its postgresql.conf?)".into();
    }
    text
}

/// PostgreSQL's message, with its detail and hint when it gives them, and its SQLSTATE.
pub fn describe_db(db: &tokio_postgres::error::DbError) -> String {
    let mut text = format!("{}: {}", db.severity(), db.message());
    if let Some(detail) = db.detail() {
        text.push_str(&format!(" ({detail})"));
    }
    if let Some(hint) = db.hint() {
        text.push_str(&format!(" (hint: {hint})"));
    }
    text.push_str(&format!(" [SQLSTATE {}]", db.code().code()));
    one_line(&text)
}

/// The TLS failure behind `err`, if it is one: in the handshake, or an alert on the first read
/// after it (a TLS 1.3 server refusing our certificate).
pub fn tls_failure(
    err: &tokio_postgres::Error,
    server_name: Option<&str>,
) -> Option<ConnectFailure> {
    let name = server_name.unwrap_or_default();
    let in_handshake = err.to_string() == "error performing TLS handshake";
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        if let Some(tls) = cause.downcast_ref::<rustls::Error>() {
            return Some(ConnectFailure::from_rustls(tls, name));
        }
        if let Some(io) = cause.downcast_ref::<io::Error>() {
            let inner_tls = io
                .get_ref()
                .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some());
            if inner_tls || in_handshake {
                return Some(ConnectFailure::from_io(io, name));
            }
        }
        source = cause.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] io::Error);

    #[test]
    fn a_chain_is_one_line() {
        let err = Outer(io::Error::other("line one\nline two"));
        assert_eq!(error_chain(&err), "outer: line one line two");
    }
}
