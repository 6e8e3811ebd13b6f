//! The wait for a request, told apart from the wait inside one. On HTTP/1.1, hyper starts its
//! header-read timer as soon as a connection waits for a request head: on a fresh connection,
//! and again as soon as the previous response is out. On its own that one timer would be both
//! the guard against slow headers (slowloris) and the keep-alive idle timeout, and hyper has no
//! separate idle timeout. [`HeadTimer`] is the timer hyper gets instead of `TokioTimer`:
//!
//! - on a fresh connection it is hyper's header timer unchanged: a client that connects and
//!   sends nothing, or trickles its first request, is cut at the header timeout;
//! - between requests it waits up to the idle timeout for the first byte of the next request,
//!   and from that byte on gives the rest of the head the header timeout.
//!
//! [`Watched`] is the socket it watches: it counts the bytes read. Which wait ran out, if one
//! did, is kept in [`Activity`] so that the server can say why it closed the connection.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

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

/// A socket that counts the bytes read from it into [`Activity`], and holds `held` until it is
/// dropped, just before the socket closes (a connection slot: free once the client sees the
/// connection closed).
#[derive(Debug)]
pub(super) struct Watched<IO, H> {
    // Fields drop in order: `_held` goes before the socket closes.
    _held: H,
    io: IO,
    activity: Arc<Activity>,
}

impl<IO, H> Watched<IO, H> {
    pub(super) fn new(io: IO, activity: Arc<Activity>, held: H) -> Self {
        Self {
            _held: held,
            io,
            activity,
        }
    }
}

impl<IO: AsyncRead + Unpin, H: Unpin> AsyncRead for Watched<IO, H> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.io).poll_read(cx, buf))?;
        let read = (buf.filled().len() - before) as u64;
        this.activity.read.fetch_add(read, Ordering::Relaxed);
        Poll::Ready(Ok(()))
    }
}

impl<IO: AsyncWrite + Unpin, H: Unpin> AsyncWrite for Watched<IO, H> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// The timer hyper's HTTP/1 side gets for one connection (see the module's documentation).
#[derive(Debug, Clone)]
pub(super) struct HeadTimer {
    activity: Arc<Activity>,
    idle: Duration,
    header: Duration,
}

impl HeadTimer {
    pub(super) fn new(activity: Arc<Activity>, idle: Duration, header: Duration) -> Self {
        Self {
            activity,
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
    /// `deadline` = now + the header timeout.
    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn Sleep>> {
        let read = self.activity.read();
        let (wait, until) = if read == 0 {
            (Wait::Header, tokio::time::Instant::from_std(deadline))
        } else {
            (Wait::Idle { read }, tokio::time::Instant::now() + self.idle)
        };
        Box::pin(HeadSleep {
            wait,
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

#[cfg(test)]
mod tests {
    use std::future::poll_fn;

    use super::*;

    const IDLE: Duration = Duration::from_secs(60);
    const HEADER: Duration = Duration::from_secs(5);

    fn timer() -> (HeadTimer, Arc<Activity>) {
        let activity = Arc::new(Activity::default());
        (HeadTimer::new(activity.clone(), IDLE, HEADER), activity)
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
    async fn a_fresh_connection_gets_the_header_timeout_from_the_start() {
        let (timer, activity) = timer();
        let mut sleep = head_wait(&timer);
        tokio::time::advance(HEADER - Duration::from_millis(1)).await;
        assert!(!done(&mut sleep).await);
        activity.read.fetch_add(3, Ordering::Relaxed);
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(done(&mut sleep).await);
        assert_eq!(activity.expired(), Some(Expired::Header));
    }

    #[tokio::test(start_paused = true)]
    async fn between_requests_the_idle_timeout_applies_until_a_byte_comes() {
        let (timer, activity) = timer();
        activity.read.fetch_add(100, Ordering::Relaxed);
        let mut sleep = head_wait(&timer);
        // Idle longer than the header timeout: not cut.
        tokio::time::advance(IDLE - Duration::from_millis(1)).await;
        assert!(!done(&mut sleep).await);
        assert_eq!(activity.expired(), None);
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(done(&mut sleep).await);
        assert_eq!(activity.expired(), Some(Expired::Idle));
    }

    #[tokio::test(start_paused = true)]
    async fn from_the_first_byte_of_the_next_request_the_header_timeout_applies() {
        let (timer, activity) = timer();
        activity.read.fetch_add(100, Ordering::Relaxed);
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
