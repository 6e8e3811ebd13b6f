//! `otlp-receiver`: the counting OTLP collector as a process of its own, for load tests
//! (`cargo xtask bench --traced`). It listens for OTLP traces on loopback ports the system
//! picks, gRPC and HTTP/protobuf, and prints one line with both addresses:
//! `otlp-receiver listening grpc=127.0.0.1:PORT http=127.0.0.1:PORT`. It counts the spans it
//! gets without keeping them (memory stays flat however long the load), and on SIGTERM or
//! Ctrl-C prints `received N spans in M exports` and exits.
//!
//! It runs on one thread: it shares the machine with the services it receives from.

use std::process::ExitCode;

use otlp_receiver::Receiver;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    if let Some(arg) = std::env::args().nth(1) {
        eprintln!("otlp-receiver takes no arguments (got {arg:?})");
        return ExitCode::from(2);
    }
    let receiver = match Receiver::start_counting().await {
        Ok(receiver) => receiver,
        Err(err) => {
            eprintln!("otlp-receiver cannot listen on 127.0.0.1: {err}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "otlp-receiver listening grpc={} http={}",
        receiver.grpc_addr(),
        receiver.http_addr()
    );
    if let Err(err) = stop_requested().await {
        eprintln!("otlp-receiver cannot wait for SIGTERM or Ctrl-C: {err}");
        return ExitCode::FAILURE;
    }
    println!(
        "received {} spans in {} exports",
        receiver.spans_received(),
        receiver.exports()
    );
    ExitCode::SUCCESS
}

/// Returns when SIGTERM or Ctrl-C (SIGINT) arrives.
async fn stop_requested() -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        tokio::select! {
            interrupted = tokio::signal::ctrl_c() => interrupted,
            _ = term.recv() => Ok(()),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await
    }
}
