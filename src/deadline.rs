//! One timer per HTTP/1.1 connection in place of one per request.
//!
//! Each request used to register two timers with tokio and remove them again: hyper's
//! header timer (a boxed sleep per request head) and the listener's time limit
//! (`timeout`). Both almost never fire, and registering and removing cost about 0.4 us of
//! the 8 us a small request costs in all (docs/network-thread.md). The header timeout is
//! now kept by the connection task itself (`connection::drive`); the listener's limit, a
//! deadline inside an HTTP/1.1 connection, is only noted: when polled, it compares itself
//! with the last time the connection's timer fired and, while not due, asks the connection
//! for a wake-up at it (`check`). The connection task keeps one tokio timer, armed at the
//! earliest deadline any of them asked for, at the header deadline and at its own
//! quiet-time tick, and moves it only when something asks for an earlier time: with the
//! defaults (30 s limits, a 1 s tick) never per request. When it fires, the task polls
//! hyper again, and every deadline that is due completes.
//!
//! That works only where the connection task itself polls the deadline: hyper's HTTP/1.1
//! dispatcher polls the request's handler inside the task's poll of the connection (and
//! nowhere else). HTTP/2 streams run in tasks of their own and keep tokio's timers.

use crate::clock::Anchor;
use crate::cork::Cork;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

/// When the connection's timer last fired and fires next; the earliest deadline asked for
/// since the connection task last looked is the cork's (`Cork::take_earliest`), read at
/// every poll. All are readings of `clock::now`'s clock.
pub struct Deadlines {
    /// Converts them to and from the instants of the connection's tokio timer.
    base: Anchor,
    /// When the connection's timer last fired: a deadline is due once this reaches it, so
    /// a poll reads no clock.
    fired: AtomicU64,
    /// When the connection's timer fires next: a deadline at or after it need not be
    /// noted, since the connection polls its requests again then.
    armed: AtomicU64,
}

impl Deadlines {
    pub fn new() -> Self {
        Deadlines { base: Anchor::new(), fired: AtomicU64::new(0), armed: AtomicU64::new(u64::MAX) }
    }

    /// The instant of a reading of `clock::now`, for the connection's tokio timer.
    pub fn instant_at(&self, nanos: u64) -> Instant {
        self.base.instant_at(nanos)
    }

    /// The connection's timer fired at `now` (`clock::now`).
    pub fn fired(&self, now: u64) {
        self.fired.fetch_max(now, Ordering::Relaxed);
    }

    /// The connection's timer is now set to fire at `at` (`clock::now`).
    pub fn armed(&self, at: u64) {
        self.armed.store(at, Ordering::Relaxed);
    }
}

/// Whether a deadline noted in `cork` is due; if not, asks the connection's timer to wake
/// the task at it.
fn check(cork: &Cork, at: u64) -> Poll<()> {
    let deadlines = &cork.deadlines;
    if deadlines.fired.load(Ordering::Relaxed) >= at {
        return Poll::Ready(());
    }
    // With the defaults (a 30 s limit, a 1 s tick) the timer always fires first.
    if deadlines.armed.load(Ordering::Relaxed) > at {
        cork.note_deadline(at);
    }
    Poll::Pending
}

/// A time limit checked by hand, after each poll of what it limits that was not ready.
/// Decided at its first check: in an HTTP/1.1 connection, whose requests are polled inside
/// the poll of the connection, it is noted on the connection's timer; in HTTP/2 (streams
/// in tasks of their own) it keeps a tokio timer, boxed, so that the common case carries
/// none.
pub struct Limit(LimitState);

enum LimitState {
    Unlimited,
    /// Not checked yet: due at this reading of `clock::now`.
    Unchecked(u64),
    /// On the connection's timer (`Deadlines`): due at this reading.
    Noted(u64),
    Timer(std::pin::Pin<Box<tokio::time::Sleep>>),
}

impl Limit {
    /// `limit` from `from` (`clock::now`); None: no limit.
    pub fn new(from: u64, limit: Option<Duration>) -> Self {
        Limit(limit.map_or(LimitState::Unlimited, |limit| {
            LimitState::Unchecked(
                from.saturating_add(limit.as_nanos().min(u64::MAX as u128 - 1) as u64).min(u64::MAX - 1),
            )
        }))
    }

    /// A limit due at `at` (`clock::now`); None: no limit.
    pub fn until(at: Option<u64>) -> Self {
        Limit(at.map_or(LimitState::Unlimited, |at| LimitState::Unchecked(at.min(u64::MAX - 1))))
    }

    /// Ready once the limit has passed; while not, the task is woken at it.
    pub fn poll_passed(&mut self, cork: &Arc<Cork>, cx: &mut std::task::Context<'_>) -> Poll<()> {
        if let LimitState::Unchecked(at) = self.0 {
            if cork.is_http1() {
                // Noted at once, without `check`'s look at when the timer last fired and fires
                // next (`Deadlines`, in a line of the cork that the poll of a request's head
                // then does not read): the connection's poll compares it with its timer
                // (`connection::drive`), and one already past fires the timer at once.
                self.0 = LimitState::Noted(at);
                cork.note_deadline(at);
                return Poll::Pending;
            }
            self.0 = LimitState::Timer(Box::pin(tokio::time::sleep_until(cork.deadlines.base.instant_at(at).into())));
        }
        match &mut self.0 {
            LimitState::Unlimited | LimitState::Unchecked(_) => Poll::Pending,
            LimitState::Noted(at) => check(cork, *at),
            LimitState::Timer(sleep) => sleep.as_mut().poll(cx),
        }
    }
}

/// `fut`, or None once `limit` has passed since `from` (see `Limit`).
pub async fn within<F: Future>(cork: &Arc<Cork>, from: u64, limit: Option<Duration>, fut: F) -> Option<F::Output> {
    let mut limit = Limit::new(from, limit);
    let mut fut = std::pin::pin!(fut);
    std::future::poll_fn(|cx| {
        if let Poll::Ready(out) = fut.as_mut().poll(cx) {
            return Poll::Ready(Some(out));
        }
        limit.poll_passed(cork, cx).map(|()| None)
    })
    .await
}
