//! [`Reloadable`]: a configuration that new connections read and that can be swapped while
//! connections already open keep the one they started with.

use std::sync::{Arc, RwLock};

/// A TLS configuration that can be replaced while connections use it.
#[derive(Debug)]
pub struct Reloadable<T>(RwLock<Arc<T>>);

impl<T> Reloadable<T> {
    /// Starts with `config`.
    pub fn new(config: Arc<T>) -> Arc<Self> {
        Arc::new(Self(RwLock::new(config)))
    }

    /// The configuration for the next connection.
    pub fn current(&self) -> Arc<T> {
        match self.0.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// From now on, new connections use `config`.
    pub fn replace(&self, config: Arc<T>) {
        match self.0.write() {
            Ok(mut guard) => *guard = config,
            Err(poisoned) => *poisoned.into_inner() = config,
        }
    }
}
