//! The time at the start of a log line, `2024-05-01T12:00:00.123456Z` (UTC, microseconds), as
//! `tracing_subscriber`'s `SystemTime` timer writes it, with the calendar date worked out once a
//! second per thread instead of for every line.
//!
//! Written by hand because the crate's timer recomputes the date and formats seven numbers
//! through `core::fmt` for every line (about a fifth of what formatting an access line cost).

use std::cell::Cell;
use std::time::{SystemTime, UNIX_EPOCH};

/// Length of a timestamp: `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
pub(super) const LEN: usize = 27;

thread_local! {
    /// The Unix second last written by this thread and its `YYYY-MM-DDTHH:MM:SS.` text.
    static SECOND: Cell<(u64, [u8; 20])> = const { Cell::new((u64::MAX, [0; 20])) };
}

/// Writes the current time into `buf` and returns it; `None` for a clock before 1970 or past
/// the year 9999 (the caller then lets the crate's timer write it).
pub(super) fn now(buf: &mut [u8; LEN]) -> Option<&str> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?;
    let secs = now.as_secs();
    let second = SECOND.with(|cache| {
        let (cached_secs, text) = cache.get();
        if cached_secs == secs {
            return Some(text);
        }
        let text = second_text(secs)?;
        cache.set((secs, text));
        Some(text)
    })?;
    buf[..20].copy_from_slice(&second);
    let mut rest = now.subsec_micros();
    for digit in buf[20..26].iter_mut().rev() {
        *digit = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    buf[26] = b'Z';
    // ASCII digits and punctuation only.
    std::str::from_utf8(buf).ok()
}

/// `YYYY-MM-DDTHH:MM:SS.` for the Unix second `secs`, for years 0 to 9999.
fn second_text(secs: u64) -> Option<[u8; 20]> {
    let at = time::OffsetDateTime::from_unix_timestamp(i64::try_from(secs).ok()?).ok()?;
    if !(0..=9999).contains(&at.year()) {
        return None;
    }
    let mut text = [0u8; 20];
    let mut cursor = std::io::Cursor::new(&mut text[..]);
    use std::io::Write as _;
    write!(
        cursor,
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    )
    .ok()?;
    Some(text)
}

#[cfg(test)]
mod tests {
    use tracing_subscriber::fmt::format::Writer;
    use tracing_subscriber::fmt::time::FormatTime;

    use super::*;

    #[test]
    fn seconds_match_the_calendar() {
        let text = |secs| String::from_utf8(second_text(secs).unwrap().to_vec()).unwrap();
        assert_eq!(text(0), "1970-01-01T00:00:00.");
        assert_eq!(text(951_868_799), "2000-02-29T23:59:59.");
        assert_eq!(text(1_764_633_600), "2025-12-02T00:00:00.");
        assert_eq!(text(253_402_300_799), "9999-12-31T23:59:59.");
        assert!(second_text(253_402_300_800).is_none());
    }

    #[test]
    fn now_is_the_crate_s_now_with_microseconds() {
        let mut buf = [0; LEN];
        let ours = now(&mut buf).unwrap().to_owned();
        let mut theirs = String::new();
        tracing_subscriber::fmt::time::SystemTime
            .format_time(&mut Writer::new(&mut theirs))
            .unwrap();
        assert_eq!(theirs.len(), LEN, "{theirs}");
        assert!(ours.ends_with('Z'), "{ours}");
        assert_eq!(ours.as_bytes()[19], b'.', "{ours}");
        // Taken a moment apart: the same minute, unless it just turned.
        assert!(
            ours[..16] == theirs[..16] || ours[14..16] != theirs[14..16],
            "{ours} {theirs}"
        );
        // Later calls in the same second reuse the date and move on.
        let mut again = [0; LEN];
        assert!(now(&mut again).unwrap() >= ours.as_str());
    }
}
