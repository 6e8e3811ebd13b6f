//! Log set-up: the global `tracing` subscriber, text or JSON lines on stderr through a bounded
//! background writer that never blocks a request, filtered by `RUST_LOG`.

#[cfg(test)]
mod capture;
mod json;
mod sink;
mod text;
mod timestamp;

pub use sink::{BUFFER_BYTES, DROPPED_COUNTER, EXIT_FLUSH_TIMEOUT, LINGER};
use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines (coloured on a terminal).
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Keeps the background log writer alive; dropping it writes what is still buffered.
#[derive(Debug)]
pub struct LogGuard {
    _writer: Option<sink::SinkGuard>,
}

/// Installs the global `tracing` subscriber, writing to stderr in `format`, filtered by
/// `RUST_LOG` (default `info`).
///
/// Lines are copied into a buffer of [`BUFFER_BYTES`] that a background thread writes to stderr
/// in batches (every [`LINGER`] at most), so a request never waits for stderr. When the buffer
/// is full, lines are dropped rather than waited for: each one counts in the Prometheus counter
/// [`DROPPED_COUNTER`], and once the writer catches up it logs one warning saying how many
/// were dropped. Per-request lines use the target `access` (`RUST_LOG=info,access=off` turns
/// them off). Calling it twice is harmless: the second call installs nothing.
pub fn init_tracing(format: LogFormat) -> LogGuard {
    use std::io::IsTerminal;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::stderr().is_terminal();
    let caught_up: sink::CaughtUp = Box::new(|dropped| {
        tracing::warn!(
            dropped,
            "dropped {dropped} log lines: the log writer could not keep up"
        );
    });
    match sink::spawn(std::io::stderr(), BUFFER_BYTES, LINGER, caught_up) {
        Ok((sink, guard)) => LogGuard {
            _writer: install(format, filter, ansi, sink).then_some(guard),
        },
        Err(err) => {
            // Logging straight to stderr beats not logging at all.
            install(format, filter, ansi, std::io::stderr);
            tracing::error!("cannot start the log writer thread, logging unbuffered: {err}");
            LogGuard { _writer: None }
        }
    }
}

/// Installs the global subscriber writing to `writer`; false if one was already installed.
fn install<W>(format: LogFormat, filter: EnvFilter, ansi: bool, writer: W) -> bool
where
    W: for<'a> tracing_subscriber::fmt::MakeWriter<'a> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    let installed = match format {
        LogFormat::Text => builder
            .with_ansi(ansi)
            .event_format(text::Text::default())
            .try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .event_format(json::Json::default())
            .try_init(),
    };
    installed.is_ok()
}
