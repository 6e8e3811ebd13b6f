//! Test fixtures shared by the formatters' tests: a writer that keeps what a subscriber writes,
//! and an error with a source, to log.

use std::fmt;
use std::sync::{Arc, Mutex};

/// What a subscriber writes, one entry per event (it writes each with one `write_all`).
#[derive(Clone, Default)]
pub(super) struct Capture(pub(super) Arc<Mutex<Vec<String>>>);

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let event = String::from_utf8(buf.to_vec()).unwrap();
        self.0.lock().unwrap().push(event);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// An error saying `message`, caused by `source`.
#[derive(Debug)]
pub(super) struct Outer {
    pub(super) message: &'static str,
    pub(super) source: std::io::Error,
}

impl fmt::Display for Outer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message)
    }
}

impl std::error::Error for Outer {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}
