//! The wait for a request, told apart from the wait inside one. On HTTP/1.1, hyper starts its
//! header-read timer as soon as a connection waits for a request head: on a fresh connection,
//! and again as soon as the previous response is out. On its own that one timer would be both
//! the guard against slow headers (slowloris) and the keep-alive idle timeout, and hyper has no
//! separate idle timeout. [`HeadTimer`] is the timer hyper gets instead of `TokioTimer`:
//!
//! - on a connection that has not proved itself (no whole request head yet) it never runs out:
//!   the admission gate's deadline for unproven connections, the same header timeout counted
//!   from the connection's acceptance, cuts a client that sends nothing or trickles its first
//!   request;
//! - between requests it marks the connection idle (the gate may then evict it to make room),
//!   waits up to the idle timeout for the first byte of the next request, and from that byte on
//!   gives the rest of the head the header timeout.
//!
//! [`Watched`] is the socket it watches: it counts the bytes read, marks the connection busy
//! again from the first byte of a request, and holds the connection's admission slot. Which
//! wait ran out, if one did, is kept in [`Activity`] so that the server can say why it closed
//! the connection.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use admission::{Handle, Slot};
use hyper::rt::{Sleep, Timer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Which wait ran out on a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Expired {
    /// A kept-alive connection sent no new request within the idle timeout.
    Idle,
    /// A request head did not arrive whole within the header timeout.
    Header,
}

/// What one connection's socket and timers share.
#[derive(Debug, Default)]
pub(super) struct Activity {
    /// Bytes read from the client so far.
    read: AtomicU64,
    /// 0: no wait ran out; 1: idle; 2: header.
    expired: AtomicU8,
}

impl Activity {
    fn read(&self) -> u64 {
        self.read.load(Ordering::Relaxed)
    }

    /// The wait that ran out, if one did.
    pub(super) fn expired(&self) -> Option<Expired> {
        match self.expired.load(Ordering::Relaxed) {
            1 => Some(Expired::Idle),
            2 => Some(Expired::Header),
            _ => None,
        }
    }

    fn expire(&self, what: Expired) {
        let code = match what {
            Expired::Idle => 1,
            Expired::Header => 2,
        };
        self.expired.store(code, Ordering::Relaxed);
    }
}

/// A socket that counts the bytes read from it into [`Activity`], marks its connection busy
/// when bytes come, and holds the connection's admission slot until it is dropped, just before
/// the socket closes (free once the client sees the connection closed).
#[derive(Debug)]
pub(super) struct Watched<IO> {
    // Fields drop in order: the slot goes before the socket closes.
    slot: Slot,
    io: IO,
    activity: Arc<Activity>,
    /// A write is pending (what the gate was last told).
    writing: bool,
}

impl<IO> Watched<IO> {
    pub(super) fn new(io: IO, activity: Arc<Activity>, slot: Slot) -> Self {
        Self {
            slot,
            io,
            activity,
            writing: false,
        }
    }

    /// The socket.
    pub(super) fn socket(&self) -> &IO {
        &self.io
    }

    /// Tells the gate whether a write is still pending. hyper counts a connection as waiting
    /// for its next request once the response is in its own buffer, not once it is on the
    /// wire, so without this an idle connection could be evicted with a response half sent (a
    /// slow reader of a large page).
    fn still_writing<T>(&mut self, written: &Poll<std::io::Result<T>>) {
        let pending = written.is_pending();
        if pending != self.writing {
            self.writing = pending;
            self.slot.writing(pending);
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Watched<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.io).poll_read(cx, buf))?;
        let read = (buf.filled().len() - before) as u64;
        if read > 0 {
            // A request has begun: no longer idle, so no longer evicted to make room.
            this.slot.busy();
        }
        this.activity.read.fetch_add(read, Ordering::Relaxed);
        Poll::Ready(Ok(()))
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Watched<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.io).poll_write(cx, buf);
        this.still_writing(&written);
        written
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let flushed = Pin::new(&mut this.io).poll_flush(cx);
        this.still_writing(&flushed);
        flushed
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.still_writing(&written);
        written
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// The timer hyper's HTTP/1 side gets for one connection (see the module's documentation).
#[derive(Debug, Clone)]
pub(super) struct HeadTimer {
    activity: Arc<Activity>,
    connection: Handle,
    idle: Duration,
    header: Duration,
}

impl HeadTimer {
    pub(super) fn new(
        activity: Arc<Activity>,
        connection: Handle,
        idle: Duration,
        header: Duration,
    ) -> Self {
        Self {
            activity,
            connection,
            idle,
            header,
        }
    }
}

impl Timer for HeadTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Sleep>> {
        hyper_util::rt::TokioTimer::new().sleep(duration)
    }

    /// What hyper asks for when the connection starts waiting for a request head, with
    /// `deadline` = now + the header timeout (ignored: see the module's documentation).
    fn sleep_until(&self, _deadline: Instant) -> Pin<Box<dyn Sleep>> {
        if !self.connection.is_proven() {
            return Box::pin(GateDeadline);
        }
        self.connection.idle();
        let read = self.activity.read();
        let until = tokio::time::Instant::now() + self.idle;
        Box::pin(HeadSleep {
            wait: Wait::Idle { read },
            sleep: Box::pin(tokio::time::sleep_until(until)),
            activity: self.activity.clone(),
            header: self.header,
        })
    }

    // Tokio's clock, as `TokioTimer` does: hyper's deadlines then follow a paused test clock.
    fn now(&self) -> Instant {
        tokio::time::Instant::now().into_std()
    }
}

#[derive(Debug, Clone, Copy)]
enum Wait {
    /// For a request to begin: nothing read since `read` bytes.
    Idle { read: u64 },
    /// For the rest of a request head.
    Header,
}

/// One wait for a request head: idle until the first byte comes, then the header timeout.
#[derive(Debug)]
struct HeadSleep {
    wait: Wait,
    sleep: Pin<Box<tokio::time::Sleep>>,
    activity: Arc<Activity>,
    header: Duration,
}

impl Future for HeadSleep {
    type Output = ();

    // hyper polls this after every read that leaves the head incomplete, so a first byte is
    // seen as soon as it is read.
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if let Wait::Idle { read } = this.wait
            && this.activity.read() != read
        {
            this.wait = Wait::Header;
            let deadline = tokio::time::Instant::now() + this.header;
            this.sleep.as_mut().reset(deadline);
        }
        ready!(this.sleep.as_mut().poll(cx));
        this.activity.expire(match this.wait {
            Wait::Idle { .. } => Expired::Idle,
            Wait::Header => Expired::Header,
        });
        Poll::Ready(())
    }
}

impl Sleep for HeadSleep {}

/// The wait for the first request head: never runs out here, as the admission gate's deadline
/// for unproven connections cuts it.
#[derive(Debug)]
struct GateDeadline;

impl Future for GateDeadline {
    type Output = ();

    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
        Poll::Pending
    }
}

impl Sleep for GateDeadline {}

#[cfg(test)]
mod tests {
    use std::future::poll_fn;

    use admission::{Gate, Limits, MetricNames};

    use super::*;

    const IDLE: Duration = Duration::from_secs(60);
    const HEADER: Duration = Duration::from_secs(5);

    /// A timer for the one connection a gate of one slot holds (proven if `proven`), its
    /// activity, the gate and the slot.
    fn timer(proven: bool) -> (HeadTimer, Arc<Activity>, Gate, Slot) {
        let limits = Limits {
            max_connections: 1,
            max_unproven: 1,
            unproven_timeout: HEADER,
        };
        let gate = Gate::new(limits, MetricNames::default());
        let slot = gate.admit(([127, 0, 0, 1], 1).into()).unwrap();
        if proven {
            assert!(slot.prove());
            // Its first request was read.
            slot.busy();
        }
        let activity = Arc::new(Activity::default());
        if proven {
            activity.read.fetch_add(100, Ordering::Relaxed);
        }
        let timer = HeadTimer::new(activity.clone(), (*slot).clone(), IDLE, HEADER);
        (timer, activity, gate, slot)
    }

    /// Whether `sleep` has run out, polled once.
    async fn done(sleep: &mut Pin<Box<dyn Sleep>>) -> bool {
        poll_fn(|cx| Poll::Ready(sleep.as_mut().poll(cx).is_ready())).await
    }

    /// What hyper does when it starts waiting for a head: now + the header timeout.
    fn head_wait(timer: &HeadTimer) -> Pin<Box<dyn Sleep>> {
        timer.sleep_until(timer.now() + HEADER)
    }

    #[tokio::test(start_paused = true)]
    async fn before_the_first_request_hyper_s_timer_leaves_the_deadline_to_the_gate() {
        let (timer, activity, _gate, _slot) = timer(false);
        let mut sleep = head_wait(&timer);
        activity.read.fetch_add(3, Ordering::Relaxed);
        tokio::time::advance(HEADER * 100).await;
        assert!(!done(&mut sleep).await);
        assert_eq!(activity.expired(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn between_requests_the_idle_timeout_applies_until_a_byte_comes() {
        let (timer, activity, _gate, _slot) = timer(true);
        let mut sleep = head_wait(&timer);
        // Idle longer than the header timeout: not cut.
        tokio::time::advance(IDLE - Duration::from_millis(1)).await;
        assert!(!done(&mut sleep).await);
        assert_eq!(activity.expired(), None);
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(done(&mut sleep).await);
        assert_eq!(activity.expired(), Some(Expired::Idle));
    }

    #[tokio::test]
    async fn waiting_for_the_next_request_the_connection_is_idle_and_may_make_room() {
        let (timer, _activity, gate, slot) = timer(true);
        // Busy: a new connection is refused.
        assert!(gate.admit(([127, 0, 0, 1], 2).into()).is_err());
        let _sleep = head_wait(&timer);
        // Idle: a new connection takes its place.
        let _newcomer = gate.admit(([127, 0, 0, 1], 3).into()).unwrap();
        let dropped = slot.guard(std::future::pending::<()>()).await;
        assert_eq!(dropped, Err(admission::Dropped::IdleEvicted));
    }

    #[tokio::test(start_paused = true)]
    async fn from_the_first_byte_of_the_next_request_the_header_timeout_applies() {
        let (timer, activity, _gate, _slot) = timer(true);
        let mut sleep = head_wait(&timer);
        tokio::time::advance(Duration::from_secs(30)).await;
        assert!(!done(&mut sleep).await);
        activity.read.fetch_add(1, Ordering::Relaxed);
        assert!(!done(&mut sleep).await);
        tokio::time::advance(HEADER - Duration::from_millis(1)).await;
        assert!(!done(&mut sleep).await);
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(done(&mut sleep).await);
        assert_eq!(activity.expired(), Some(Expired::Header));
    }
}
