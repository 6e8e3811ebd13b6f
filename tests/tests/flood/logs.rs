//! The log lines the servers under test write, counted by the listener they name: a global
//! `tracing` subscriber for this test binary (its tests run one at a time), so that a test can
//! say how many warnings a flood cost.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Mutex, OnceLock};

use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, SubscriberExt};

/// Warnings (and errors) so far, by the `listener` field they carry.
static BY_LISTENER: OnceLock<Mutex<HashMap<String, u64>>> = OnceLock::new();

fn counts() -> &'static Mutex<HashMap<String, u64>> {
    BY_LISTENER.get_or_init(Mutex::default)
}

/// Starts counting, once per process (before any server starts, so none of its lines is lost).
pub fn install() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let subscriber = tracing_subscriber::registry().with(Counting);
        tracing::subscriber::set_global_default(subscriber).unwrap();
    });
}

/// Warnings and errors written so far that name `listener` as theirs.
pub fn warnings_about(listener: SocketAddr) -> u64 {
    let counts = counts().lock().unwrap();
    counts.get(&listener.to_string()).copied().unwrap_or(0)
}

struct Counting;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Counting {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        if *event.metadata().level() > tracing::Level::WARN {
            return;
        }
        let mut listener = Listener(None);
        event.record(&mut listener);
        if let Some(listener) = listener.0 {
            *counts().lock().unwrap().entry(listener).or_default() += 1;
        }
    }
}

/// The `listener` field of an event.
struct Listener(Option<String>);

impl Visit for Listener {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "listener" {
            self.0 = Some(format!("{value:?}"));
        }
    }
}
