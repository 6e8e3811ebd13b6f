//! A child's stderr, read in the background as it comes and kept, for a test to wait until a
//! line is logged; the first whole line with some text in a log; and an address field of a log
//! line, in the text and JSON formats.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::process::Child;
use tokio::sync::watch;

/// How long a child may take to log what a test waits for.
pub const LOG_GUARD: Duration = Duration::from_secs(30);

/// A child's stderr, read in the background as it comes (so that the child never blocks on a
/// full pipe) and kept for the test to wait on.
#[derive(Debug)]
pub struct Log(watch::Receiver<String>);

impl Log {
    /// Takes `child`'s piped stderr and starts reading it (on the current Tokio runtime).
    ///
    /// # Panics
    ///
    /// If `child`'s stderr is not piped, or already taken.
    pub fn capture(child: &mut Child) -> Self {
        let mut stderr = child.stderr.take().expect("stderr is piped");
        let (tx, rx) = watch::channel(String::new());
        tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            loop {
                match stderr.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        tx.send_modify(|log| log.push_str(&String::from_utf8_lossy(&buf[..n])))
                    }
                }
            }
        });
        Self(rx)
    }

    /// Waits until a whole line containing `needle` has been logged and returns it.
    ///
    /// # Panics
    ///
    /// If the child closes its stderr (exits) first, or after [`LOG_GUARD`]; the message holds
    /// the log so far.
    pub async fn line_with(&self, needle: &str) -> String {
        let find = |log: &str| whole_line_with(log, needle).map(str::to_owned);
        let mut log = self.0.clone();
        let seen = tokio::time::timeout(LOG_GUARD, log.wait_for(|log| find(log).is_some()))
            .await
            .unwrap_or_else(|_| panic!("no {needle:?} logged in time: {}", *self.0.borrow()))
            .map(|log| log.clone())
            .unwrap_or_else(|_| panic!("exited without logging {needle:?}: {}", *self.0.borrow()));
        find(&seen).expect("the line waited for is in the log")
    }

    /// Everything logged so far.
    pub fn all(&self) -> String {
        self.0.borrow().clone()
    }

    /// The `addr` field ([`addr_in`]) of the first line containing `needle`, once it is logged.
    ///
    /// # Panics
    ///
    /// As [`Log::line_with`], or if the line has no `addr` field.
    pub async fn addr_of(&self, needle: &str) -> SocketAddr {
        addr_in(&self.line_with(needle).await)
    }
}

/// The first whole line (one that its newline ends) of `log` containing `needle`.
pub fn whole_line_with<'a>(log: &'a str, needle: &str) -> Option<&'a str> {
    log[..log.rfind('\n').map_or(0, |end| end + 1)]
        .lines()
        .find(|line| line.contains(needle))
}

/// The `addr` field of a log line (its line end included or not): `addr=127.0.0.1:1` in the
/// text format, `"addr":"127.0.0.1:1"` in JSON.
///
/// # Panics
///
/// If the line has no `addr` field that is a socket address.
pub fn addr_in(line: &str) -> SocketAddr {
    addr_field(line, "addr").unwrap_or_else(|| panic!("no addr in {line:?}"))
}

/// The socket address in field `name` of a log line: `name=127.0.0.1:1` in the text format,
/// `"name":"127.0.0.1:1"` in JSON; `None` if there is no such field, or it is no address.
pub fn addr_field(line: &str, name: &str) -> Option<SocketAddr> {
    let (text, json) = (format!("{name}="), format!("\"{name}\":\""));
    line.split(|c: char| c.is_whitespace() || c == ',')
        .find_map(|field| {
            field
                .strip_prefix(text.as_str())
                .or_else(|| field.strip_prefix(json.as_str())?.strip_suffix('"'))
        })
        .and_then(|addr| addr.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_addr_field_is_found_in_text_and_json_lines() {
        let addr: SocketAddr = "127.0.0.1:4242".parse().unwrap();
        assert_eq!(addr_in("INFO Discount listening addr=127.0.0.1:4242"), addr);
        assert_eq!(addr_in("INFO listening addr=127.0.0.1:4242\n"), addr);
        assert_eq!(
            addr_in(
                r#"{"level":"INFO","message":"listening","addr":"127.0.0.1:4242","target":"x"}"#
            ),
            addr
        );
        let receiver = "otlp-receiver listening grpc=127.0.0.1:1 http=127.0.0.1:2";
        assert_eq!(addr_field(receiver, "http"), "127.0.0.1:2".parse().ok());
        assert_eq!(addr_field(receiver, "addr"), None);
        assert_eq!(addr_field("listening grpc=nowhere", "grpc"), None);
    }

    #[test]
    fn only_a_whole_line_is_found() {
        let log = "INFO starting\nINFO Discount listening addr=127.0.0.1:1\nINFO Catalog listen";
        let found = whole_line_with(log, "listening");
        assert_eq!(found, Some("INFO Discount listening addr=127.0.0.1:1"));
        assert_eq!(whole_line_with(log, "Catalog"), None, "still being written");
    }

    #[test]
    #[should_panic(expected = "no addr in")]
    fn a_line_without_one_panics() {
        addr_in("INFO listening port=1");
    }
}
