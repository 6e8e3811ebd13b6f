//! One plain HTTP/1.1 request to Catalog, to check before measuring that a scenario gets the
//! answer it is meant to measure (the right number of products, discounted or not, and not
//! the full-price fallback Catalog serves when Discount cannot be asked). Not a load
//! generator: wrk does the load.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{Context, bail};

/// The header Catalog sets when it served full prices because Discount could not be asked.
pub const DEGRADED_HEADER: &str = "x-discount-unavailable";

/// A response, read to the end.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    /// The value of header `name` (lower case), if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// `GET path` on `addr`, with `X-USER-ID: user` if given.
pub fn get(addr: SocketAddr, path: &str, user: Option<&str>) -> anyhow::Result<Reply> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .with_context(|| format!("cannot connect to {addr}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .and_then(|()| stream.set_write_timeout(Some(Duration::from_secs(5))))
        .context("cannot set socket timeouts")?;
    let user_header = user.map_or_else(String::new, |u| format!("X-USER-ID: {u}\r\n"));
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{user_header}Connection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .with_context(|| format!("cannot send a request to {addr}"))?;
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .with_context(|| format!("cannot read the answer from {addr}"))?;
    parse_reply(&raw)
}

/// Parses a whole HTTP/1.1 response (content-length, chunked, or read to close).
pub fn parse_reply(raw: &[u8]) -> anyhow::Result<Reply> {
    let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        bail!("the answer has no end of headers ({} bytes)", raw.len());
    };
    let head = std::str::from_utf8(&raw[..split]).context("the headers are not UTF-8")?;
    let mut body = raw[split + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("not an HTTP status line: {status_line:?}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    if chunked {
        body = dechunk(&body)?;
    }
    Ok(Reply {
        status,
        headers,
        body,
    })
}

fn dechunk(mut data: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .context("truncated chunked body")?;
        let size_text = std::str::from_utf8(&data[..line_end]).context("bad chunk size")?;
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)
            .with_context(|| format!("bad chunk size {size_text:?}"))?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        let chunk = data.get(..size).context("truncated chunk")?;
        out.extend_from_slice(chunk);
        data = data.get(size + 2..).context("truncated chunk")?;
    }
}

/// What a scenario's answer must look like.
#[derive(Debug, Clone, Copy)]
pub struct Expect {
    /// Number of products in the array.
    pub products: usize,
    /// Whether every product priced above zero carries a `discount_value` (else none does).
    pub discounted: bool,
}

/// Checks `reply` against `expect`: status 200, not the full-price fallback, the right number
/// of products, discounts where expected.
pub fn check(reply: &Reply, expect: Expect) -> anyhow::Result<()> {
    if reply.status != 200 {
        bail!(
            "status {} ({})",
            reply.status,
            String::from_utf8_lossy(&reply.body)
        );
    }
    if let Some(reason) = reply.header(DEGRADED_HEADER) {
        bail!("Catalog served full prices because Discount could not be asked ({reason})");
    }
    let products: Vec<serde_json::Value> =
        serde_json::from_slice(&reply.body).context("the body is not a JSON array")?;
    if products.len() != expect.products {
        bail!(
            "{} products in the answer, expected {}",
            products.len(),
            expect.products
        );
    }
    for p in &products {
        let priced = p["price_in_cents"].as_i64().unwrap_or_default() > 0;
        let has_discount = p.get("discount_value").is_some();
        if has_discount != (expect.discounted && priced) {
            bail!(
                "product {} {} a discount_value",
                p["id"],
                if has_discount { "has" } else { "lacks" }
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_content_length_and_chunked_replies() {
        let plain = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Discount-Unavailable: unavailable\r\n\r\n[]";
        let reply = parse_reply(plain).unwrap();
        assert_eq!(reply.status, 200);
        assert_eq!(reply.body, b"[]");
        assert_eq!(reply.header(DEGRADED_HEADER), Some("unavailable"));

        let chunked =
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\n[{}\r\n1\r\n]\r\n0\r\n\r\n";
        assert_eq!(parse_reply(chunked).unwrap().body, b"[{}]");
    }

    #[test]
    fn check_names_what_is_wrong() {
        let reply = |body: &str| Reply {
            status: 200,
            headers: vec![],
            body: body.as_bytes().to_vec(),
        };
        let discounted = r#"[{"id":1,"price_in_cents":10,"discount_value":{"pct":0.1,"value_in_cents":9}},
                             {"id":2,"price_in_cents":0}]"#;
        let expect = Expect {
            products: 2,
            discounted: true,
        };
        check(&reply(discounted), expect).unwrap();
        let err = check(
            &reply(discounted),
            Expect {
                discounted: false,
                ..expect
            },
        )
        .unwrap_err();
        assert!(err.to_string().contains("has a discount_value"), "{err}");
        let err = check(
            &reply(discounted),
            Expect {
                products: 100,
                ..expect
            },
        )
        .unwrap_err();
        assert!(err.to_string().contains("expected 100"), "{err}");
    }
}
