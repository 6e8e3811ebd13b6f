//! A service's operations port as its process tests ask it: one answer ([`ask`]); what every
//! service's port answers alike, checked in one place for all ([`assert_operations_port`]); and
//! the TCP ports a process listens on ([`listening_ports`]), to show that a port that is off is
//! not there.

use std::collections::HashSet;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

/// One answer of the operations port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The status code.
    pub status: u16,
    /// The `Content-Type` header (empty if none).
    pub content_type: String,
    /// The `Allow` header (empty if none).
    pub allow: String,
    /// The body.
    pub body: String,
}

/// What `method http://{ops}{path}` is answered.
///
/// # Panics
///
/// If the request fails or the body cannot be read.
pub async fn ask(ops: SocketAddr, method: &str, path: &str) -> Answer {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("an HTTP method");
    let response = reqwest::Client::new()
        .request(method, format!("http://{ops}{path}"))
        .send()
        .await
        .unwrap_or_else(|err| panic!("{path} on {ops} is answered: {err}"));
    let header = |name| {
        response
            .headers()
            .get(name)
            .map(|value: &reqwest::header::HeaderValue| {
                value.to_str().unwrap_or_default().to_owned()
            })
            .unwrap_or_default()
    };
    let content_type = header(reqwest::header::CONTENT_TYPE);
    let allow = header(reqwest::header::ALLOW);
    let status = response.status().as_u16();
    let body = response.text().await.expect("the body is read");
    Answer {
        status,
        content_type,
        allow,
        body,
    }
}

const JSON: &str = "application/json";

/// Checks what every service's operations port answers alike: `/healthz` 200
/// `{"status":"ok"}`; `/readyz` 200 `{"status":"ready"}` or 503
/// `{"status":"not_ready","not_ready":[...]}` with at least one reason; `/metrics` 200 in
/// Prometheus text, every family described, the certificate-expiry gauge among them; JSON
/// content types; a JSON 404 for another path and a JSON 405 (`Allow: GET,HEAD`) for another
/// method. Returns the `/readyz` answer, for the test to say which of the two it expects.
///
/// # Panics
///
/// Naming the first answer that differs.
pub async fn assert_operations_port(ops: SocketAddr) -> Answer {
    let health = ask(ops, "GET", "/healthz").await;
    assert_eq!(
        (
            health.status,
            health.content_type.as_str(),
            health.body.as_str()
        ),
        (200, JSON, r#"{"status":"ok"}"#),
        "/healthz"
    );

    let ready = ask(ops, "GET", "/readyz").await;
    assert_eq!(ready.content_type, JSON, "/readyz: {ready:?}");
    match ready.status {
        200 => assert_eq!(ready.body, r#"{"status":"ready"}"#, "/readyz"),
        503 => {
            let body: serde_json::Value =
                serde_json::from_str(&ready.body).expect("/readyz 503 is JSON");
            let keys: Vec<&String> = body.as_object().expect("an object").keys().collect();
            assert_eq!(keys.len(), 2, "{body}");
            assert_eq!(body["status"], "not_ready", "{body}");
            let reasons = body["not_ready"].as_array().expect("a list of reasons");
            assert!(!reasons.is_empty(), "{body}");
            assert!(
                reasons
                    .iter()
                    .all(|r| r.as_str().is_some_and(|r| r.contains(": "))),
                "each reason names its part: {body}"
            );
            assert!(
                ready
                    .body
                    .starts_with(r#"{"status":"not_ready","not_ready":["#),
                "{body}"
            );
        }
        other => panic!("/readyz answered {other}: {ready:?}"),
    }

    let metrics = ask(ops, "GET", "/metrics").await;
    assert_eq!(metrics.status, 200, "/metrics");
    assert_eq!(
        metrics.content_type,
        service_runtime::PROMETHEUS_CONTENT_TYPE,
        "/metrics"
    );
    crate::assert_families_described(
        &metrics.body,
        &[service_runtime::metrics::CERTIFICATE_EXPIRY_METRIC],
    );

    let missing = ask(ops, "GET", "/nope").await;
    let not_found = r#"{"error":"not_found","message":"no such resource"}"#;
    assert_eq!(
        (
            missing.status,
            missing.content_type.as_str(),
            missing.body.as_str()
        ),
        (404, JSON, not_found),
        "/nope"
    );
    let posted = ask(ops, "POST", "/healthz").await;
    let not_allowed =
        r#"{"error":"method_not_allowed","message":"only GET and HEAD are served here"}"#;
    assert_eq!(
        posted,
        Answer {
            status: 405,
            content_type: JSON.into(),
            allow: "GET,HEAD".into(),
            body: not_allowed.into(),
        },
        "POST /healthz"
    );
    ready
}

/// The TCP addresses the process `pid` listens on (Linux: its sockets in `/proc/{pid}/fd`
/// that `/proc/{pid}/net/tcp` and `tcp6` show listening).
///
/// # Panics
///
/// If `/proc` cannot be read.
pub fn listening_ports(pid: u32) -> Vec<SocketAddr> {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).expect("/proc/PID/fd is readable");
    let sockets: HashSet<String> = fds
        .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .filter_map(|target| {
            let target = target.to_str()?;
            Some(
                target
                    .strip_prefix("socket:[")?
                    .strip_suffix(']')?
                    .to_owned(),
            )
        })
        .collect();
    let mut listening = Vec::new();
    for table in ["tcp", "tcp6"] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}"))
            .expect("/proc/PID/net is readable");
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // sl, local_address, rem_address, st (0A: LISTEN), ..., inode (the tenth).
            if fields.len() > 9 && fields[3] == "0A" && sockets.contains(fields[9]) {
                listening.push(proc_addr(fields[1]));
            }
        }
    }
    listening
}

/// An address as `/proc/net/tcp*` writes it: the IP as 32-bit words in the machine's byte
/// order, in hex, then `:` and the port in hex.
fn proc_addr(field: &str) -> SocketAddr {
    let (ip, port) = field.split_once(':').expect("ADDR:PORT");
    let port = u16::from_str_radix(port, 16).expect("a hex port");
    let words: Vec<[u8; 4]> = (0..ip.len() / 8)
        .map(|i| {
            let word = u32::from_str_radix(&ip[i * 8..i * 8 + 8], 16).expect("hex");
            word.to_ne_bytes()
        })
        .collect();
    let ip = match words.as_slice() {
        [v4] => Ipv4Addr::from(*v4).into(),
        _ => Ipv6Addr::from(words.concat().try_into().unwrap_or([0u8; 16])).into(),
    };
    SocketAddr::new(ip, port)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_listening_ports_of_this_process_are_found_while_they_listen() {
        let v4 = std::net::TcpListener::bind("127.0.0.1:0").expect("binds");
        let v4_addr = v4.local_addr().expect("an address");
        assert!(listening_ports(std::process::id()).contains(&v4_addr));
        if let Ok(v6) = std::net::TcpListener::bind("[::1]:0") {
            let v6_addr = v6.local_addr().expect("an address");
            assert!(listening_ports(std::process::id()).contains(&v6_addr));
        }
        drop(v4);
        assert!(!listening_ports(std::process::id()).contains(&v4_addr));
    }
}
