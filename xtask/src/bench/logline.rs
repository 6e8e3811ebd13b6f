//! Reading a service's log: the address in the line it logs when it listens (text, coloured
//! or not, or JSON), and the end of a log for an error message.

use std::fs;
use std::net::SocketAddr;
use std::path::Path;

use anyhow::Context;

/// The address in the first complete line of `log` that contains `marker`: the `addr=` field
/// of a text line (colour codes or not) or the `"addr"` member of a JSON line. `None` while
/// there is no such line yet; an error if the line holds no address.
pub(super) fn logged_addr(log: &str, marker: &str) -> anyhow::Result<Option<SocketAddr>> {
    // A line still being written has no newline yet: wait for the rest of it.
    let complete = log.rfind('\n').map_or("", |end| &log[..end]);
    let Some(line) = complete
        .lines()
        .map(strip_ansi)
        .find(|line| line.contains(marker))
    else {
        return Ok(None);
    };
    let addr = if line.trim_start().starts_with('{') {
        serde_json::from_str::<serde_json::Value>(&line)
            .ok()
            .and_then(|json| json.get("addr")?.as_str().map(str::to_owned))
    } else {
        line.split_whitespace()
            .find_map(|field| field.strip_prefix("addr="))
            .map(|addr| addr.trim_matches(|c| c == '"' || c == ',').to_owned())
    };
    let addr = addr.with_context(|| format!("no address in its line {line:?}"))?;
    addr.parse()
        .map(Some)
        .with_context(|| format!("bad address {addr:?} in its line {line:?}"))
}

/// `line` without ANSI escape sequences (the colours of text logs on a terminal).
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c != '\u{1b}' {
            out.push(c);
        } else if chars.next() == Some('[') {
            // A control sequence: parameters, then one final byte in '@'..='~'.
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) {
                    break;
                }
            }
        }
    }
    out
}

/// The last few non-empty lines of a log, joined, for an error message.
pub(super) fn log_tail(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = lines[lines.len().saturating_sub(3)..].join(" / ");
    if tail.is_empty() {
        format!("(nothing in {})", path.display())
    } else {
        tail
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DISCOUNT: &str = "2026-12-02T07:50:00.542683Z  INFO discount_service::server: \
        Discount listening (gRPC over mutual TLS 1.3) addr=127.0.0.1:41135\n";

    #[test]
    fn reads_the_address_of_a_text_line() {
        let log =
            format!("2026-12-02T07:50:00Z  INFO x: starting discount_addr=1.2.3.4:5\n{DISCOUNT}");
        let addr = logged_addr(&log, "Discount listening").unwrap();
        assert_eq!(addr, Some("127.0.0.1:41135".parse().unwrap()));
    }

    #[test]
    fn tells_the_grpc_port_from_the_operations_port() {
        let ops = "2026-12-02T07:50:00.540000Z  INFO discount_service::metrics_http: Discount \
            operations port listening (plain HTTP: /metrics, /healthz, /readyz) \
            addr=127.0.0.1:40001\n";
        let log = format!("{ops}{DISCOUNT}");
        let grpc = logged_addr(&log, "Discount listening").unwrap();
        assert_eq!(grpc, Some("127.0.0.1:41135".parse().unwrap()));
        let metrics = logged_addr(&log, "Discount operations port listening").unwrap();
        assert_eq!(metrics, Some("127.0.0.1:40001".parse().unwrap()));
    }

    #[test]
    fn reads_the_address_of_a_coloured_text_line() {
        let log = "\u{1b}[2m2026-12-02T07:50:00Z\u{1b}[0m \u{1b}[32m INFO\u{1b}[0m \
            \u{1b}[2mcatalog_service::app\u{1b}[0m\u{1b}[2m:\u{1b}[0m Catalog listening (HTTP) \
            \u{1b}[3maddr\u{1b}[0m\u{1b}[2m=\u{1b}[0m127.0.0.1:36155\n";
        let addr = logged_addr(log, "Catalog listening").unwrap();
        assert_eq!(addr, Some("127.0.0.1:36155".parse().unwrap()));
    }

    #[test]
    fn reads_the_address_of_a_json_line() {
        let log = r#"{"timestamp":"2026-12-02T07:50:00Z","level":"INFO","message":"Catalog listening (HTTP)","addr":"127.0.0.1:34755","target":"catalog_service::app"}
"#;
        let addr = logged_addr(log, "Catalog listening").unwrap();
        assert_eq!(addr, Some("127.0.0.1:34755".parse().unwrap()));
    }

    #[test]
    fn waits_for_a_whole_line() {
        assert_eq!(logged_addr("", "Discount listening").unwrap(), None);
        let partial = DISCOUNT.trim_end_matches('\n');
        assert_eq!(logged_addr(partial, "Discount listening").unwrap(), None);
        let other = "2026-12-02T07:50:00Z  INFO x: loading certificates\n";
        assert_eq!(logged_addr(other, "Discount listening").unwrap(), None);
    }

    #[test]
    fn a_line_without_an_address_is_an_error() {
        let log = "2026-12-02T07:50:00Z  INFO x: Discount listening somewhere\n";
        let err = logged_addr(log, "Discount listening").unwrap_err();
        assert!(format!("{err:#}").contains("no address"), "{err:#}");
        let log = "2026-12-02T07:50:00Z  INFO x: Discount listening addr=nowhere\n";
        let err = logged_addr(log, "Discount listening").unwrap_err();
        assert!(format!("{err:#}").contains("bad address"), "{err:#}");
    }
}
