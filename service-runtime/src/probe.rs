//! `<service> probe URL`: a health check that needs nothing but the service's own binary.
//!
//! Container images without a shell or `curl` (distroless) run it as their `HEALTHCHECK`:
//! one plain-HTTP `GET`, exit status 0 for a 2xx answer and 1 for anything else, with the
//! reason on stderr. Blocking and tiny on purpose: it starts no runtime and no threads.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Longest a probe may take in all: connecting, sending and reading.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// Why a probe failed.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("{0:?} is not a plain-HTTP URL like http://127.0.0.1:11080/healthz")]
    BadUrl(String),
    #[error("cannot reach {addr}: {source}")]
    Connect { addr: String, source: io::Error },
    #[error("{addr} sent no usable HTTP answer: {reason}")]
    BadAnswer { addr: String, reason: String },
    #[error("{addr} answered {status}")]
    NotHealthy { addr: String, status: String },
}

/// `http://host:port/path` split into `(host:port, path)`.
fn split_url(url: &str) -> Result<(String, String), ProbeError> {
    let bad = || ProbeError::BadUrl(url.to_owned());
    let rest = url.strip_prefix("http://").ok_or_else(bad)?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let has_port = authority
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
    if !has_port
        || path
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
    {
        return Err(bad());
    }
    Ok((authority.to_owned(), path.to_owned()))
}

/// Reads from a socket until a deadline: each read may wait only for the time left, so a
/// server that trickles its answer a byte at a time cannot stretch the probe.
struct UntilDeadline<'a> {
    stream: &'a TcpStream,
    deadline: Instant,
}

impl UntilDeadline<'_> {
    fn time_left(&self) -> io::Result<Duration> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "no complete answer in time",
            ));
        }
        Ok(left)
    }
}

impl Read for UntilDeadline<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.stream.set_read_timeout(Some(self.time_left()?))?;
        (&*self.stream).read(buf)
    }
}

/// Sends `GET url` and succeeds on a 2xx status, all within [`PROBE_TIMEOUT`].
pub fn check(url: &str) -> Result<(), ProbeError> {
    check_within(url, PROBE_TIMEOUT)
}

fn check_within(url: &str, timeout: Duration) -> Result<(), ProbeError> {
    let deadline = Instant::now() + timeout;
    let (authority, path) = split_url(url)?;
    let connect_err = |source| ProbeError::Connect {
        addr: authority.clone(),
        source,
    };
    let addr = authority
        .to_socket_addrs()
        .map_err(connect_err)?
        .next()
        .ok_or_else(|| connect_err(io::Error::new(io::ErrorKind::NotFound, "no address")))?;
    let stream = TcpStream::connect_timeout(&addr, timeout).map_err(connect_err)?;
    let answer_err = |reason: String| ProbeError::BadAnswer {
        addr: authority.clone(),
        reason,
    };
    let mut reader = UntilDeadline {
        stream: &stream,
        deadline,
    };
    reader
        .time_left()
        .and_then(|left| stream.set_write_timeout(Some(left)))
        .map_err(|err| answer_err(err.to_string()))?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: probe\r\nConnection: close\r\n\r\n"
    );
    (&stream)
        .write_all(request.as_bytes())
        .map_err(|err| answer_err(err.to_string()))?;
    // One status line of at most 1 KiB is all that is read.
    let mut status_line = String::new();
    BufReader::new(&mut reader)
        .take(1024)
        .read_line(&mut status_line)
        .map_err(|err| answer_err(err.to_string()))?;
    let status = status_line
        .strip_prefix("HTTP/1.")
        .and_then(|rest| rest.get(2..))
        .map(str::trim)
        .filter(|s| s.len() >= 3 && s.as_bytes()[..3].iter().all(u8::is_ascii_digit))
        .ok_or_else(|| answer_err(format!("status line {:?}", status_line.trim_end())))?;
    if status.starts_with('2') {
        Ok(())
    } else {
        Err(ProbeError::NotHealthy {
            addr: authority,
            status: status.to_owned(),
        })
    }
}

/// The subcommands both services share.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Checks a health endpoint and exits 0 if it answers 2xx, 1 otherwise (for container
    /// health checks in images without a shell or curl).
    Probe {
        /// Plain-HTTP URL, e.g. http://127.0.0.1:11080/healthz.
        url: String,
    },
}

/// Runs [`check`] as a command: exit status 0 when healthy, 1 otherwise (reason on stderr).
pub fn run(url: &str) -> ExitCode {
    match check(url) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("unhealthy: {err}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_address_and_path() {
        let split = |url| split_url(url).unwrap();
        assert_eq!(
            split("http://127.0.0.1:11080/healthz"),
            ("127.0.0.1:11080".into(), "/healthz".into())
        );
        assert_eq!(
            split("http://[::1]:9464"),
            ("[::1]:9464".into(), "/".into())
        );
        for bad in [
            "https://127.0.0.1:1/",
            "127.0.0.1:1/healthz",
            "http://127.0.0.1/healthz",
            "http://:80/",
            "http://h:1/a b",
        ] {
            assert!(split_url(bad).is_err(), "{bad:?} was accepted");
        }
    }

    fn serve_once(answer: &'static str) -> std::net::SocketAddr {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut socket, _) = listener.accept().unwrap();
            let mut request = [0u8; 512];
            let _ = socket.read(&mut request);
            let _ = socket.write_all(answer.as_bytes());
        });
        addr
    }

    #[test]
    fn a_2xx_answer_is_healthy_anything_else_is_not() {
        let ok = serve_once("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
        check(&format!("http://{ok}/healthz")).unwrap();

        let unready = serve_once("HTTP/1.1 503 Service Unavailable\r\n\r\n");
        let err = check(&format!("http://{unready}/readyz")).unwrap_err();
        assert!(
            err.to_string()
                .ends_with("answered 503 Service Unavailable"),
            "{err}"
        );

        let garbage = serve_once("SSH-2.0-OpenSSH\r\n");
        let err = check(&format!("http://{garbage}/")).unwrap_err();
        assert!(matches!(err, ProbeError::BadAnswer { .. }), "{err}");
    }

    #[test]
    fn the_timeout_covers_the_whole_answer_not_each_read() {
        // A healthy answer, one byte every 50 ms: about a second in all, every read quick.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut socket, _) = listener.accept().unwrap();
            let mut request = [0u8; 512];
            let _ = socket.read(&mut request);
            for byte in b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n" {
                if socket.write_all(&[*byte]).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        let err = check_within(
            &format!("http://{addr}/healthz"),
            Duration::from_millis(300),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("no complete answer in time")
                || err.to_string().contains("timed out")
                || err.to_string().contains("Resource temporarily unavailable"),
            "{err}"
        );
    }

    #[test]
    fn nothing_listening_names_the_address() {
        // Bound but never listening: connecting is refused, and no other test can take the
        // port while this socket holds it (no SO_REUSEADDR).
        let closed = tokio::net::TcpSocket::new_v4().unwrap();
        closed.bind(([127, 0, 0, 1], 0).into()).unwrap();
        let port = closed.local_addr().unwrap().port();
        let err = check(&format!("http://127.0.0.1:{port}/healthz")).unwrap_err();
        assert!(
            err.to_string()
                .starts_with(&format!("cannot reach 127.0.0.1:{port}")),
            "{err}"
        );
    }
}
