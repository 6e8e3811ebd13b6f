//! Where Discount listens: the `host[:port]` targets that `--discount-addr` lists, how they
//! are parsed and written, and Discount's default port.

use std::fmt;
use std::str::FromStr;

/// Discount's default gRPC port.
pub const DEFAULT_PORT: u16 = 11443;

/// Where Discount listens: `host`, `host:port`, `[ipv6]:port` or a bare IP address. The port
/// defaults to [`DEFAULT_PORT`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscountAddr {
    /// DNS name or IP address (IPv6 without brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
}

/// A Discount address that cannot be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid Discount address {input:?}: {reason} (expected host[:port], e.g. discount:11443)")]
pub struct AddrError {
    input: String,
    reason: &'static str,
}

impl FromStr for DiscountAddr {
    type Err = AddrError;

    fn from_str(input: &str) -> Result<Self, AddrError> {
        let err = |reason| AddrError {
            input: input.to_owned(),
            reason,
        };
        if let Ok(addr) = input.parse::<std::net::SocketAddr>() {
            return Ok(Self {
                host: addr.ip().to_string(),
                port: addr.port(),
            });
        }
        if let Ok(ip) = input.trim_matches(['[', ']']).parse::<std::net::IpAddr>() {
            return Ok(Self {
                host: ip.to_string(),
                port: DEFAULT_PORT,
            });
        }
        let (host, port) = match input.rsplit_once(':') {
            Some((host, port)) => (host, port.parse().map_err(|_| err("bad port"))?),
            None => (input, DEFAULT_PORT),
        };
        let valid_host = !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
        if !valid_host {
            return Err(err("bad host name"));
        }
        Ok(Self {
            host: host.to_owned(),
            port,
        })
    }
}

impl fmt::Display for DiscountAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(host: &str, port: u16) -> DiscountAddr {
        DiscountAddr {
            host: host.into(),
            port,
        }
    }

    #[test]
    fn addresses_parse_with_and_without_port() {
        assert_eq!("discount".parse(), Ok(addr("discount", DEFAULT_PORT)));
        assert_eq!("localhost:9000".parse(), Ok(addr("localhost", 9000)));
        assert_eq!("127.0.0.1:1".parse(), Ok(addr("127.0.0.1", 1)));
        assert_eq!("[::1]:5".parse(), Ok(addr("::1", 5)));
        assert_eq!("::1".parse(), Ok(addr("::1", DEFAULT_PORT)));
        assert_eq!("[::1]".parse(), Ok(addr("::1", DEFAULT_PORT)));
        assert_eq!(addr("::1", 5).to_string(), "[::1]:5");
    }

    #[test]
    fn bad_addresses_are_refused() {
        for bad in [
            "",
            ":80",
            "host:",
            "host:99999",
            "http://host:1",
            "a b",
            "host:x",
        ] {
            assert!(bad.parse::<DiscountAddr>().is_err(), "{bad:?} was accepted");
        }
    }
}
