//! Stopping well: the shutdown signal (Ctrl-C, SIGTERM), and serving with a drain deadline so a
//! stop never hangs on a request that will not finish.

/// A future that completes when the process is asked to stop: Ctrl-C (SIGINT) or SIGTERM.
///
/// The signal handlers are installed when this is called, not when the future is first
/// polled, so a signal that arrives during start-up is not lost (without a handler, SIGTERM
/// would kill the process on the spot). Call it first thing inside the runtime. A handler that
/// cannot be installed is logged and that signal ignored, rather than stopping the service.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let listen = |kind: SignalKind, name: &'static str| match signal(kind) {
            Ok(stream) => Some(stream),
            Err(err) => {
                tracing::error!(%err, "cannot listen for {name}");
                None
            }
        };
        let mut interrupt = listen(SignalKind::interrupt(), "Ctrl-C (SIGINT)");
        let mut terminate = listen(SignalKind::terminate(), "SIGTERM");
        async move {
            tokio::select! {
                () = wait_for(interrupt.as_mut()) => tracing::info!("received Ctrl-C, shutting down"),
                () = wait_for(terminate.as_mut()) => tracing::info!("received SIGTERM, shutting down"),
            }
        }
    }
    #[cfg(not(unix))]
    async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!(%err, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
        tracing::info!("received Ctrl-C, shutting down");
    }
}

/// Waits for the next delivery of a signal, or forever if it has no handler.
#[cfg(unix)]
async fn wait_for(stream: Option<&mut tokio::signal::unix::Signal>) {
    match stream {
        Some(stream) => {
            stream.recv().await;
        }
        None => std::future::pending::<()>().await,
    }
}

/// The graceful-shutdown future handed to a server.
pub type GracefulSignal = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// Runs a server with graceful shutdown and a drain deadline.
///
/// `serve` receives a future that completes when `shutdown` does; the server should then stop
/// accepting connections and finish in-flight requests. If it has not finished `drain` after
/// the signal, this returns `None` and the caller exits anyway: shutdown never hangs.
pub async fn serve_with_drain<S, Fut, T>(
    shutdown: S,
    drain: std::time::Duration,
    serve: impl FnOnce(GracefulSignal) -> Fut,
) -> Option<T>
where
    S: std::future::Future<Output = ()> + Send + 'static,
    Fut: std::future::Future<Output = T>,
{
    let (draining_tx, draining_rx) = tokio::sync::oneshot::channel::<()>();
    let signal = Box::pin(async move {
        shutdown.await;
        let _ = draining_tx.send(());
    });
    let deadline = async move {
        match draining_rx.await {
            Ok(()) => tokio::time::sleep(drain).await,
            // The server ended on its own before any signal: nothing to time.
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        result = serve(signal) => Some(result),
        () = deadline => {
            tracing::warn!(?drain, "drain deadline passed with requests still in flight; stopping anyway");
            None
        }
    }
}
