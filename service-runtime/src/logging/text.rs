//! The text log format: the same lines as `tracing_subscriber`'s default ("full") format,
//! written with a fraction of its work when there are no colours and no spans.
//!
//! Written by hand because the crate's formatter is most of what an access line costs: it
//! recomputes the calendar date for every line and sends every field name, `=` and level through
//! `nu_ansi_term` styling even when colours are off (measured: about 1.5 µs a line, a tenth of a
//! whole `GET /products`). Here the date is worked out once a second ([`timestamp`]), and names
//! and values are written straight out. Lines with colours (a terminal) or inside a span are
//! left to the crate's formatter; `tests::same_lines_as_tracing_subscriber` checks that the two
//! agree.

use std::fmt::{self, Debug, Display, Write};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::FmtContext;
use tracing_subscriber::fmt::format::{self, FormatEvent, FormatFields, Writer};
use tracing_subscriber::fmt::time::FormatTime;
use tracing_subscriber::registry::LookupSpan;

use super::timestamp;

/// The text event format: `2024-05-01T12:00:00.123456Z  INFO target: message field=value`.
#[derive(Debug, Default)]
pub struct Text {
    /// The crate's own format, for lines with colours or spans.
    full: format::Format,
}

impl<S, N> FormatEvent<S, N> for Text
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
        if writer.has_ansi_escapes() || ctx.event_scope().is_some() {
            return self.full.format_event(ctx, writer, event);
        }
        write_timestamp(&mut writer)?;
        let meta = event.metadata();
        writer.write_str(match *meta.level() {
            Level::TRACE => "TRACE ",
            Level::DEBUG => "DEBUG ",
            Level::INFO => " INFO ",
            Level::WARN => " WARN ",
            Level::ERROR => "ERROR ",
        })?;
        writer.write_str(meta.target())?;
        writer.write_str(": ")?;
        let mut fields = Fields {
            sanitize: writer.sanitizes_ansi_escapes(),
            writer: writer.by_ref(),
            first: true,
            result: Ok(()),
        };
        event.record(&mut fields);
        fields.result?;
        writer.write_char('\n')
    }
}

/// Writes the time and a space, as the crate's `SystemTime` timer and full format do.
fn write_timestamp(writer: &mut Writer<'_>) -> fmt::Result {
    let mut buf = [0; timestamp::LEN];
    match timestamp::now(&mut buf) {
        Some(now) => writer.write_str(now)?,
        None => tracing_subscriber::fmt::time::SystemTime.format_time(writer)?,
    }
    writer.write_char(' ')
}

/// Writes an event's fields as the crate's `DefaultVisitor` does without colours: the message
/// first as it is, then `name=value` with values in their `Debug` form, separated by spaces.
struct Fields<'a> {
    writer: Writer<'a>,
    sanitize: bool,
    first: bool,
    result: fmt::Result,
}

impl Fields<'_> {
    /// Starts a field: the space before it, then `name=` (the message has no name).
    fn start(&mut self, field: &Field) -> Result<bool, fmt::Error> {
        if self.first {
            self.first = false;
        } else {
            self.writer.write_char(' ')?;
        }
        let name = field.name();
        if name == "message" {
            return Ok(false);
        }
        self.writer
            .write_str(name.strip_prefix("r#").unwrap_or(name))?;
        self.writer.write_char('=')?;
        Ok(true)
    }

    /// Records the outcome of writing one field.
    fn write(&mut self, field: &Field, value: impl FnOnce(&mut Self, bool) -> fmt::Result) {
        if self.result.is_err() {
            return;
        }
        self.result = self.start(field).and_then(|named| value(self, named));
    }
}

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.write(field, |this, named| {
            if !named {
                write!(this.writer, "{}", Escaped(value, this.sanitize))
            } else if value
                .bytes()
                .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
            {
                // What `{:?}` writes for a string with nothing to escape.
                this.writer.write_char('"')?;
                this.writer.write_str(value)?;
                this.writer.write_char('"')
            } else {
                write!(this.writer, "{value:?}")
            }
        });
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.write(field, |this, named| {
            if named {
                // `{:?}` of an integer is its decimal digits.
                let mut digits = [0u8; 20];
                let mut at = digits.len();
                let mut rest = value;
                loop {
                    at -= 1;
                    digits[at] = b'0' + (rest % 10) as u8;
                    rest /= 10;
                    if rest == 0 {
                        break;
                    }
                }
                this.writer
                    .write_str(std::str::from_utf8(&digits[at..]).map_err(|_| fmt::Error)?)
            } else {
                write!(this.writer, "{:?}", Escaped(value, this.sanitize))
            }
        });
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        let sanitize = self.sanitize;
        let error = Escaped(format_args!("{value}"), sanitize);
        if let Some(source) = value.source() {
            let sources = Sources(source, sanitize);
            let name = field.name();
            self.record_debug(field, &format_args!("{error} {name}.sources={sources}"));
        } else {
            self.record_debug(field, &format_args!("{error}"));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        self.write(field, |this, named| {
            if named {
                write!(this.writer, "{value:?}")
            } else {
                write!(this.writer, "{:?}", Escaped(value, this.sanitize))
            }
        });
    }
}

/// A value with the control characters that terminals act on escaped (when `.1`), as the
/// crate does for messages and errors: ESC, BEL, BS, FF, DEL and the C1 controls.
struct Escaped<T>(T, bool);

impl<T: Debug> Debug for Escaped<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.1 {
            write!(EscapingWriter(f), "{:?}", self.0)
        } else {
            write!(f, "{:?}", self.0)
        }
    }
}

impl<T: Display> Display for Escaped<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.1 {
            write!(EscapingWriter(f), "{}", self.0)
        } else {
            write!(f, "{}", self.0)
        }
    }
}

struct EscapingWriter<'a, 'b>(&'a mut fmt::Formatter<'b>);

impl Write for EscapingWriter<'_, '_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        // 0xc2 starts the C1 controls' encodings (and others, which the loop writes as they are).
        if !s
            .bytes()
            .any(|b| matches!(b, 0x1b | 0x07 | 0x08 | 0x0c | 0x7f | 0xc2))
        {
            return self.0.write_str(s);
        }
        for ch in s.chars() {
            match ch {
                '\x1b' => self.0.write_str("\\x1b")?,
                '\x07' => self.0.write_str("\\x07")?,
                '\x08' => self.0.write_str("\\x08")?,
                '\x0c' => self.0.write_str("\\x0c")?,
                '\x7f' => self.0.write_str("\\x7f")?,
                '\u{80}'..='\u{9f}' => write!(self.0, "\\u{{{:x}}}", ch as u32)?,
                _ => self.0.write_char(ch)?,
            }
        }
        Ok(())
    }
}

/// An error's chain of sources as `[first, second]`, each escaped like a message.
struct Sources<'a>(&'a (dyn std::error::Error + 'static), bool);

impl Display for Sources<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut list = f.debug_list();
        let mut next = Some(self.0);
        while let Some(error) = next {
            list.entry(&Escaped(format_args!("{error}"), self.1));
            next = error.source();
        }
        list.finish()
    }
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
        tracing::info!(addr = %"127.0.0.1:80", "Catalog listening (HTTP)");
        tracing::warn!(
            dropped = 3u64,
            "dropped {} log lines: the log writer could not keep up",
            3
        );
        tracing::error!("catalog: {}", "bad \"file\"\n\u{1b}[2J \u{85} \u{7f} é");
        tracing::debug!(
            r#type = "x",
            negative = -4i64,
            yes = true,
            ratio = 0.5f64,
            "debug"
        );
        tracing::trace!(only = "fields", quoted = "a\"b\\c\td\u{1b}");
        tracing::info!(list = ?vec![1, 2], big = u128::MAX, "");
        let plain = std::io::Error::other("disk on \u{1b}fire");
        tracing::error!(
            error = &plain as &(dyn std::error::Error + 'static),
            "plain error"
        );
        let nested = Outer {
            message: "cannot load \x1b[31m the file",
            source: std::io::Error::other("inner \u{9b} cause"),
        };
        tracing::error!(err = &nested as &(dyn std::error::Error + 'static));
        tracing::info!(message = "explicit", "other" = 1);
        // In a span: the crate's formatter.
        tracing::info_span!("request", id = 7).in_scope(|| tracing::info!("inside"));
    }

    /// Everything `format` writes for [`events`], each event without its timestamp.
    fn lines_of<E>(format: E, sanitize: bool) -> Vec<String>
    where
        E: FormatEvent<tracing_subscriber::Registry, format::DefaultFields> + Send + Sync + 'static,
    {
        let capture = Capture::default();
        let writer = capture.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(Level::TRACE)
            .with_ansi(false)
            .with_ansi_sanitization(sanitize)
            .with_writer(move || writer.clone())
            .event_format(format)
            .finish();
        tracing::subscriber::with_default(subscriber, events);
        let events = capture.0.lock().unwrap().clone();
        events
            .into_iter()
            .map(|event| {
                assert!(event.ends_with('\n'), "{event}");
                assert_eq!(event.as_bytes()[26], b'Z', "{event}");
                event[27..].to_owned()
            })
            .collect()
    }

    #[test]
    fn same_lines_as_tracing_subscriber() {
        for sanitize in [true, false] {
            let ours = lines_of(Text::default(), sanitize);
            let theirs = lines_of(format::Format::default(), sanitize);
            assert_eq!(ours.len(), 11);
            assert_eq!(ours, theirs);
            assert!(ours[10].contains("request{id=7}: "), "{}", ours[10]);
        }
    }
}
