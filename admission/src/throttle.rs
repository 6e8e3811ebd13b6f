//! Log lines about events that can come by the thousand (connections dropped, handshakes
//! refused): the first at once, then at most one line per interval carrying the count of each
//! reason since the previous line and the first detail of each, so that a flood costs a few
//! lines rather than one per connection, and a rare event (a client with a bad certificate)
//! still shows up at once, with its detail.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

/// At most one line per this long from each [`ThrottledLog`], by default.
pub const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// What one line reports: how many events of each reason since the previous line, in the
/// order the reasons first came, and the detail of the first event of each reason.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Each reason and its count.
    pub counts: Vec<(&'static str, u64)>,
    /// Each reason and the detail of its first event (reasons recorded without one are absent).
    pub firsts: Vec<(&'static str, String)>,
}

impl Summary {
    /// The count of `reason` (0 if none came).
    pub fn count(&self, reason: &str) -> u64 {
        self.counts
            .iter()
            .find(|(r, _)| *r == reason)
            .map_or(0, |(_, n)| *n)
    }

    /// Every event, whatever its reason.
    pub fn total(&self) -> u64 {
        self.counts.iter().map(|(_, n)| n).sum()
    }

    /// The first events' details, as `reason: detail; reason: detail`.
    pub fn firsts(&self) -> FirstDetails<'_> {
        FirstDetails(self)
    }

    fn add(&mut self, reason: &'static str, detail: Option<impl FnOnce() -> String>) {
        match self.counts.iter_mut().find(|(r, _)| *r == reason) {
            Some((_, n)) => *n += 1,
            None => {
                self.counts.push((reason, 1));
                if let Some(detail) = detail {
                    self.firsts.push((reason, detail()));
                }
            }
        }
    }
}

/// `reason=count reason=count`.
impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (reason, n)) in self.counts.iter().enumerate() {
            let space = if i == 0 { "" } else { " " };
            write!(f, "{space}{reason}={n}")?;
        }
        Ok(())
    }
}

/// The first details of a [`Summary`], displayed.
#[derive(Debug)]
pub struct FirstDetails<'a>(&'a Summary);

impl fmt::Display for FirstDetails<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (reason, detail)) in self.0.firsts.iter().enumerate() {
            let sep = if i == 0 { "" } else { "; " };
            write!(f, "{sep}{reason}: {detail}")?;
        }
        Ok(())
    }
}

type Emit = dyn Fn(&Summary) + Send + Sync;

/// Counts events by reason and writes them out through its `emit` function: the first event at
/// once, then at most once per interval, each line with what came since the previous one. What
/// comes within an interval after a line is written at the interval's end by a task of its own
/// (inside a Tokio runtime), so no count waits for a later event to be seen. Cheap to clone:
/// clones share the counts.
#[derive(Clone)]
pub struct ThrottledLog {
    inner: Arc<Inner>,
}

impl fmt::Debug for ThrottledLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThrottledLog")
            .field("interval", &self.inner.interval)
            .finish_non_exhaustive()
    }
}

struct Inner {
    interval: Duration,
    pending: Mutex<Pending>,
    emit: Box<Emit>,
}

#[derive(Default)]
struct Pending {
    last_line: Option<Instant>,
    summary: Summary,
    flush_scheduled: bool,
}

impl ThrottledLog {
    /// A log writing at most one line per `interval` through `emit` (which writes the line:
    /// its level, message and fields are the caller's).
    pub fn new(interval: Duration, emit: impl Fn(&Summary) + Send + Sync + 'static) -> Self {
        Self {
            inner: Arc::new(Inner {
                interval,
                pending: Mutex::new(Pending::default()),
                emit: Box::new(emit),
            }),
        }
    }

    /// Counts one event of `reason`.
    pub fn count(&self, reason: &'static str) {
        self.add(reason, None::<fn() -> String>);
    }

    /// Counts one event of `reason`; `detail` is asked for only if it is the first of its
    /// reason since the last line.
    pub fn record(&self, reason: &'static str, detail: impl FnOnce() -> String) {
        self.add(reason, Some(detail));
    }

    fn add(&self, reason: &'static str, detail: Option<impl FnOnce() -> String>) {
        let now = Instant::now();
        let interval = self.inner.interval;
        let mut pending = self.inner.lock();
        pending.summary.add(reason, detail);
        let due = pending.last_line.map(|last| last + interval);
        match due {
            Some(due) if now < due => {
                if !pending.flush_scheduled
                    && let Ok(runtime) = tokio::runtime::Handle::try_current()
                {
                    pending.flush_scheduled = true;
                    let inner = self.inner.clone();
                    runtime.spawn(async move {
                        let mut due = due;
                        while let Some(later) = inner.flush(due) {
                            due = later;
                            tokio::time::sleep_until(due).await;
                        }
                    });
                }
            }
            _ => {
                let summary = pending.take(now);
                drop(pending);
                (self.inner.emit)(&summary);
            }
        }
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// At `due` or later, writes what has come since the last line, if anything. `Some(when)`
    /// if it is too early for a line (one was written since this flush was scheduled, by an
    /// event that found the interval over): the flush waits until then.
    fn flush(&self, due: Instant) -> Option<Instant> {
        let now = Instant::now();
        if now < due {
            return Some(due);
        }
        let mut pending = self.lock();
        if pending.summary.counts.is_empty() {
            pending.flush_scheduled = false;
            return None;
        }
        let next = pending.last_line.map(|last| last + self.interval);
        if let Some(next) = next.filter(|next| now < *next) {
            return Some(next);
        }
        pending.flush_scheduled = false;
        let summary = pending.take(now);
        drop(pending);
        (self.emit)(&summary);
        None
    }
}

impl Pending {
    fn take(&mut self, now: Instant) -> Summary {
        self.last_line = Some(now);
        std::mem::take(&mut self.summary)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn capturing(interval: Duration) -> (ThrottledLog, Arc<Mutex<Vec<Summary>>>) {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        let log = ThrottledLog::new(interval, move |summary| {
            sink.lock().unwrap().push(summary.clone());
        });
        (log, lines)
    }

    #[tokio::test(start_paused = true)]
    async fn the_first_event_is_written_at_once_then_one_line_per_interval_with_the_counts() {
        let interval = Duration::from_secs(10);
        let (log, lines) = capturing(interval);
        log.record("unknown_ca", || "peer 1: not our CA".into());
        assert_eq!(lines.lock().unwrap().len(), 1, "the first, at once");
        assert_eq!(lines.lock().unwrap()[0].to_string(), "unknown_ca=1");
        assert_eq!(
            lines.lock().unwrap()[0].firsts().to_string(),
            "unknown_ca: peer 1: not our CA"
        );
        for i in 0..1000 {
            log.record("closed", || format!("peer {i}: closed"));
            log.count("unproven_evicted");
        }
        log.record("unknown_ca", || "peer 2: not our CA".into());
        tokio::time::advance(interval - Duration::from_millis(1)).await;
        tokio::task::yield_now().await;
        assert_eq!(lines.lock().unwrap().len(), 1, "silent within the interval");
        tokio::time::advance(Duration::from_millis(1)).await;
        tokio::task::yield_now().await;
        let lines = lines.lock().unwrap();
        assert_eq!(lines.len(), 2, "the rest at the interval's end, unasked");
        assert_eq!(
            lines[1].to_string(),
            "closed=1000 unproven_evicted=1000 unknown_ca=1"
        );
        assert_eq!(lines[1].total(), 2001);
        assert_eq!(
            lines[1].firsts().to_string(),
            "closed: peer 0: closed; unknown_ca: peer 2: not our CA"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_flush_that_finds_a_line_just_written_waits_a_whole_interval() {
        let interval = Duration::from_secs(10);
        let start = Instant::now();
        let (log, lines) = capturing(interval);
        log.count("a");
        tokio::time::advance(interval).await;
        // The interval is over: this event writes a line at once; the next waits.
        log.count("a");
        log.count("a");
        assert_eq!(lines.lock().unwrap().len(), 2);
        // A flush due at the end of the first interval (one that lost the race to the line
        // above) writes nothing, and waits for the end of the second.
        assert_eq!(
            log.inner.flush(start + interval),
            Some(start + interval * 2)
        );
        assert_eq!(lines.lock().unwrap().len(), 2);
        tokio::time::advance(interval).await;
        tokio::task::yield_now().await;
        assert_eq!(lines.lock().unwrap().len(), 3);
        assert_eq!(lines.lock().unwrap()[2].count("a"), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn after_a_quiet_interval_the_next_event_is_written_at_once() {
        let interval = Duration::from_secs(10);
        let (log, lines) = capturing(interval);
        log.count("at_capacity");
        tokio::time::advance(interval * 3).await;
        log.count("at_capacity");
        log.count("at_capacity");
        let got: Vec<u64> = lines
            .lock()
            .unwrap()
            .iter()
            .map(|s| s.count("at_capacity"))
            .collect();
        assert_eq!(got, [1, 1], "two lines, the second at once");
        tokio::time::advance(interval).await;
        tokio::task::yield_now().await;
        assert_eq!(lines.lock().unwrap().len(), 3);
        assert_eq!(lines.lock().unwrap()[2].count("at_capacity"), 1);
        // Nothing pending: no empty line.
        tokio::time::advance(interval * 2).await;
        tokio::task::yield_now().await;
        assert_eq!(lines.lock().unwrap().len(), 3);
    }
}
