//! The JSON log format: the same lines as `tracing_subscriber`'s JSON format with flattened
//! fields (`{"timestamp":…,"level":…,"message":…,<fields>,"target":…}`), written with less
//! work when the event is in no span.
//!
//! Written by hand because the crate's JSON formatter sends every token `serde_json` writes
//! through an adaptor that checks it is UTF-8 and copies it separately, and formats the date
//! for every line into a new `String` (measured: about 3 µs an access line, twice the text
//! format). Here `serde_json` writes the line into a buffer that the thread reuses, checked and
//! copied once; the fields are still written by `tracing_serde`, as the crate does, and the date
//! comes from [`timestamp`]. Lines in a span (which carry `span` and `spans`) are left to the
//! crate's formatter; `tests::same_lines_as_tracing_subscriber` checks that the two agree.

use std::cell::RefCell;
use std::fmt;

use serde::ser::{SerializeMap, Serializer};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::FmtContext;
use tracing_subscriber::fmt::format::{self, FormatEvent, FormatFields, Writer};
use tracing_subscriber::fmt::time::FormatTime;
use tracing_subscriber::registry::LookupSpan;

use super::timestamp;

/// A line longer than this is not kept in the thread's buffer once written.
const KEPT_BUFFER_BYTES: usize = 64 * 1024;

/// The JSON event format, with the event's fields at the top level.
#[derive(Debug)]
pub struct Json {
    /// The crate's own format, for events in a span.
    full: format::Format<format::Json>,
}

impl Default for Json {
    fn default() -> Self {
        Self {
            full: format::Format::default().json().flatten_event(true),
        }
    }
}

thread_local! {
    /// The line being written by this thread.
    static LINE: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

impl<S, N> FormatEvent<S, N> for Json
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        // The crate's test for whether the line gets `span` and `spans`.
        let in_span = event
            .parent()
            .and_then(|id| ctx.span(id))
            .or_else(|| ctx.lookup_current())
            .is_some();
        if in_span {
            return self.full.format_event(ctx, writer, event);
        }
        LINE.with(|line| {
            // Only taken already if formatting a field logged something: leave that to the crate.
            let Ok(mut line) = line.try_borrow_mut() else {
                return self.full.format_event(ctx, writer.by_ref(), event);
            };
            line.clear();
            let written = write_line(&mut line, event);
            if written.is_ok() {
                writer.write_str(std::str::from_utf8(&line).map_err(|_| fmt::Error)?)?;
                writer.write_char('\n')?;
            }
            if line.capacity() > KEPT_BUFFER_BYTES {
                *line = Vec::new();
            }
            written
        })
    }
}

/// Writes `event` as one JSON object into `line`, as the crate's formatter does.
fn write_line(line: &mut Vec<u8>, event: &Event<'_>) -> fmt::Result {
    let meta = event.metadata();
    let mut buf = [0; timestamp::LEN];
    let mut fallback = String::new();
    let now = match timestamp::now(&mut buf) {
        Some(now) => now,
        None => {
            tracing_subscriber::fmt::time::SystemTime
                .format_time(&mut Writer::new(&mut fallback))?;
            &fallback
        }
    };
    let level = match *meta.level() {
        Level::TRACE => "TRACE",
        Level::DEBUG => "DEBUG",
        Level::INFO => "INFO",
        Level::WARN => "WARN",
        Level::ERROR => "ERROR",
    };
    let mut serializer = serde_json::Serializer::new(line);
    let result = (|| {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("timestamp", now)?;
        map.serialize_entry("level", level)?;
        let mut fields = tracing_serde::SerdeMapVisitor::new(map);
        event.record(&mut fields);
        let mut map = fields.take_serializer()?;
        map.serialize_entry("target", meta.target())?;
        map.end()
    })();
    result.map_err(|_| fmt::Error)
}

#[cfg(test)]
mod tests {
    use super::super::capture::{Capture, Outer};
    use super::*;

    /// Every kind of event the services write, and awkward ones.
    fn events() {
        let id = "7d5bdd7c3fcb87ac0000000000000000";
        let method = "GET";
        tracing::info!(
            target: "access",
            request_id = id,
            %method,
            path = "/products",
            status = 200u16,
            latency_us = 17u64,
            discount_unavailable = "",
            "http request"
        );
        tracing::warn!(dropped = 3u64, "dropped {} log lines", 3);
        tracing::error!("catalog: {}", "bad \"file\"\n\u{1b}[2J \u{85} é");
        tracing::debug!(
            r#type = "x",
            negative = -4i64,
            yes = true,
            ratio = 0.5f64,
            "debug"
        );
        tracing::trace!(only = "fields", big = u128::MAX, list = ?vec!["a"]);
        let nested = Outer {
            message: "cannot load \"the\" file",
            source: std::io::Error::other("inner cause"),
        };
        tracing::error!(
            err = &nested as &(dyn std::error::Error + 'static),
            "failed"
        );
        tracing::info!(message = "explicit", "other" = f64::NAN);
        // In a span: the crate's formatter, with `span` and `spans`.
        tracing::info_span!("request", id = 7).in_scope(|| tracing::info!("inside"));
    }

    /// Everything `format` writes for [`events`], each line without its timestamp's value.
    fn lines_of<E>(format: E) -> Vec<String>
    where
        E: FormatEvent<tracing_subscriber::Registry, format::JsonFields> + Send + Sync + 'static,
    {
        let capture = Capture::default();
        let writer = capture.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(Level::TRACE)
            .json()
            .flatten_event(true)
            .with_writer(move || writer.clone())
            .event_format(format)
            .finish();
        tracing::subscriber::with_default(subscriber, events);
        let events = capture.0.lock().unwrap().clone();
        events
            .into_iter()
            .map(|event| {
                let prefix = r#"{"timestamp":""#;
                assert!(event.starts_with(prefix), "{event}");
                assert!(event.ends_with("}\n"), "{event}");
                let rest = &event[prefix.len() + timestamp::LEN..];
                assert!(rest.starts_with("\","), "{event}");
                rest.to_owned()
            })
            .collect()
    }

    #[test]
    fn same_lines_as_tracing_subscriber() {
        let ours = lines_of(Json::default());
        let theirs = lines_of(format::Format::default().json().flatten_event(true));
        assert_eq!(ours.len(), 8);
        assert_eq!(ours, theirs);
        assert!(
            ours[7].contains(r#""span":{"id":7,"name":"request"}"#),
            "{}",
            ours[7]
        );
    }
}
