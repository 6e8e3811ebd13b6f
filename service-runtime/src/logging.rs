//! Log set-up: the global `tracing` subscriber, text or JSON lines on stderr through a bounded
//! background writer, filtered by `RUST_LOG`.

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

/// Keeps the background log writer alive; dropping it flushes what is still buffered.
#[derive(Debug)]
pub struct LogGuard {
    _worker: Option<tracing_appender::non_blocking::WorkerGuard>,
}

/// Installs the global `tracing` subscriber, writing to stderr in `format`, filtered by
/// `RUST_LOG` (default `info`).
///
/// Lines are handed to a background thread, so a request does not wait for stderr; the queue
/// is bounded and blocks rather than drops when full, so no line is lost and memory stays flat.
/// Per-request lines use the target `access` (`RUST_LOG=info,access=off` turns them off). Calling it twice is harmless: the
/// second call installs nothing.
pub fn init_tracing(format: LogFormat) -> LogGuard {
    use std::io::IsTerminal;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::stderr().is_terminal();
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        // A small queue: enough to absorb bursts, while a writer that cannot keep up slows
        // requests down instead of growing memory (the default queue holds 128,000 lines).
        .buffered_lines_limit(4096)
        .finish(std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    let installed = match format {
        LogFormat::Text => builder.with_ansi(ansi).try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    LogGuard {
        _worker: installed.is_ok().then_some(guard),
    }
}
