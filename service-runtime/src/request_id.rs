//! Request ids: one id per HTTP request, returned to the caller, sent to Discount in gRPC
//! metadata and written on every log line about that request in both services, so one request
//! can be followed across them.

use std::hash::{BuildHasher, Hasher};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// The HTTP header and gRPC metadata key that carry the id.
pub const HEADER: &str = "x-request-id";

/// Longest id accepted from a caller; longer ones are replaced.
pub const MAX_LEN: usize = 128;

/// Whether a caller-supplied id can be used as is: 1 to [`MAX_LEN`] visible ASCII characters
/// (so it is safe in a header, in metadata and in a log line).
pub fn is_acceptable(id: &[u8]) -> bool {
    !id.is_empty() && id.len() <= MAX_LEN && id.iter().all(u8::is_ascii_graphic)
}

/// A new id: 32 hex digits, unique within the process (a counter) and, with high
/// probability, across processes (a random per-process prefix). Cheap: no system call.
pub fn generate() -> String {
    static PREFIX: OnceLock<u64> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let prefix = *PREFIX.get_or_init(|| {
        // std seeds every RandomState from the OS's random source.
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u64(u64::from(std::process::id()));
        hasher.finish()
    });
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix:016x}{n:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_unique_and_acceptable() {
        let (a, b) = (generate(), generate());
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
        assert!(is_acceptable(a.as_bytes()));
    }

    #[test]
    fn unsafe_ids_are_not_accepted() {
        assert!(is_acceptable(b"abc-123"));
        for bad in [
            &b""[..],
            b"with space",
            b"new\nline",
            &[b'a'; MAX_LEN + 1],
            "é".as_bytes(),
        ] {
            assert!(!is_acceptable(bad), "{bad:?}");
        }
    }
}
