//! Waiting, with a deadline, for something a test can only look at now and then (a series on
//! a child's `/metrics`, a counter in an in-process server): [`poll_until`].

use std::future::Future;
use std::time::Duration;

use crate::LOG_GUARD;

/// How often [`poll_until`] looks.
const POLL_EVERY: Duration = Duration::from_millis(10);

/// Runs `check` until it returns `Some`, and returns what it returned; a stalled child fails
/// the test instead of hanging it.
///
/// # Panics
///
/// Naming `what`, if `check` still returns `None` after [`LOG_GUARD`].
pub async fn poll_until<T, F>(what: &str, mut check: impl FnMut() -> F) -> T
where
    F: Future<Output = Option<T>>,
{
    let give_up = tokio::time::Instant::now() + LOG_GUARD;
    loop {
        if let Some(found) = check().await {
            return found;
        }
        assert!(
            tokio::time::Instant::now() < give_up,
            "never happened: {what}"
        );
        tokio::time::sleep(POLL_EVERY).await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn returns_what_the_check_found_once_it_finds_it() {
        let looks = AtomicUsize::new(0);
        let found = poll_until("the third look", || async {
            let n = looks.fetch_add(1, Ordering::SeqCst) + 1;
            (n == 3).then_some(n)
        })
        .await;
        assert_eq!(found, 3);
    }

    #[tokio::test(start_paused = true)]
    #[should_panic(expected = "never happened: nothing")]
    async fn gives_up_after_the_guard() {
        poll_until("nothing", || async { None::<()> }).await;
    }
}
