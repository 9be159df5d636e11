//! One timer per HTTP/1.1 connection in place of one per request.
//!
//! Each request used to register two timers with tokio and remove them again: hyper's
//! header timer (a boxed sleep per request head) and the listener's time limit
//! (`timeout`). Both almost never fire, and registering and removing cost about 0.4 us of
//! the 8 us a small request costs in all (docs/network-thread.md). Here, a deadline inside
//! an HTTP/1.1 connection is only noted: `ConnSleep` checks the clock when it is polled
//! and, while not due, asks the connection for a wake-up at its deadline
//! (`Deadlines::want`). The connection task (`connection::drive`) keeps one tokio timer,
//! armed at the earliest deadline any of them asked for and at its own quiet-time tick,
//! and moves it only when something asks for an earlier time: with the defaults (30 s
//! limits, a 1 s tick) never per request. When it fires, the task polls hyper again, and
//! every `ConnSleep` that is due completes.
//!
//! That works only where the connection task itself polls the sleep: hyper's HTTP/1.1
//! dispatcher polls its header timer and the request's handler inside the task's poll of
//! the connection, which `polling` marks. HTTP/2 streams run in tasks of their own and keep
//! tokio's timers (`within` and `ConnTimer` fall back to them outside that poll).

use crate::cork::Cork;
use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// The earliest deadline asked for since the connection task last looked, and the time
/// its timer last fired.
pub struct Deadlines {
    base: Instant,
    /// Nanoseconds after `base`; `u64::MAX`: none.
    earliest: AtomicU64,
    /// Nanoseconds after `base` when the connection's timer last fired: a `ConnSleep` is due
    /// once this reaches its deadline, so a poll reads no clock.
    fired: AtomicU64,
}

impl Deadlines {
    pub fn new() -> Self {
        Deadlines { base: Instant::now(), earliest: AtomicU64::new(u64::MAX), fired: AtomicU64::new(0) }
    }

    fn nanos(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.base).as_nanos().min(u64::MAX as u128 - 1) as u64
    }

    fn want(&self, at: Instant) {
        self.earliest.fetch_min(self.nanos(at), Ordering::Relaxed);
    }

    /// The connection's timer fired at `now`.
    pub fn fired(&self, now: Instant) {
        self.fired.fetch_max(self.nanos(now), Ordering::Relaxed);
    }

    fn due(&self, at: Instant) -> bool {
        self.fired.load(Ordering::Relaxed) >= self.nanos(at)
    }

    /// The earliest deadline asked for since the last call, if any.
    pub fn take(&self) -> Option<Instant> {
        match self.earliest.swap(u64::MAX, Ordering::Relaxed) {
            u64::MAX => None,
            n => Some(self.base + Duration::from_nanos(n)),
        }
    }
}

thread_local! {
    /// The connection whose task is polling hyper's connection on this thread right now.
    static POLLING: Cell<*const Cork> = const { Cell::new(std::ptr::null()) };
}

/// Marks the connection of `cork` as the one being polled until the guard drops.
pub fn polling(cork: &Arc<Cork>) -> PollingGuard {
    PollingGuard(POLLING.replace(Arc::as_ptr(cork)))
}

pub struct PollingGuard(*const Cork);

impl Drop for PollingGuard {
    fn drop(&mut self) {
        POLLING.set(self.0);
    }
}

/// The connection being polled on this thread, if any.
fn current() -> Option<Arc<Cork>> {
    let p = POLLING.get();
    if p.is_null() {
        return None;
    }
    // SAFETY: `p` came from `Arc::as_ptr` of a cork that `connection::drive` holds for as
    // long as the guard that set it lives, which is the whole of this poll.
    unsafe {
        Arc::increment_strong_count(p);
        Some(Arc::from_raw(p))
    }
}

/// A deadline that the connection task's timer wakes (see the module's comment): due once
/// that timer has fired at or after it.
pub struct ConnSleep {
    at: Instant,
    cork: Arc<Cork>,
}

impl Future for ConnSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<()> {
        let deadlines = &self.cork.deadlines;
        if deadlines.due(self.at) {
            return Poll::Ready(());
        }
        deadlines.want(self.at);
        Poll::Pending
    }
}

impl hyper::rt::Sleep for ConnSleep {}

/// hyper's HTTP/1.1 timer: `ConnSleep`s inside a connection's poll, tokio's elsewhere.
#[derive(Clone, Copy, Debug, Default)]
pub struct ConnTimer;

impl hyper::rt::Timer for ConnTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        self.sleep_until(Instant::now() + duration)
    }

    fn sleep_until(&self, at: Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        match current() {
            Some(cork) => Box::pin(ConnSleep { at, cork }),
            None => hyper_util::rt::TokioTimer::new().sleep_until(at),
        }
    }
}

/// `fut`, or None once `limit` has passed since `from`: on the connection's timer when
/// polled inside the poll of `cork`'s connection (HTTP/1.1), else on a tokio timer of its own.
pub async fn within<F: Future>(cork: &Arc<Cork>, from: Instant, limit: Option<Duration>, fut: F) -> Option<F::Output> {
    let Some(limit) = limit else {
        return Some(fut.await);
    };
    let at = from + limit;
    let mut fut = std::pin::pin!(fut);
    // Decided at the first poll: this is where the future runs from then on.
    let inside = std::future::poll_fn(|_| Poll::Ready(POLLING.get() == Arc::as_ptr(cork))).await;
    if !inside {
        return tokio::time::timeout_at(at.into(), fut).await.ok();
    }
    let mut sleep = ConnSleep { at, cork: cork.clone() };
    std::future::poll_fn(|cx| {
        if let Poll::Ready(out) = fut.as_mut().poll(cx) {
            return Poll::Ready(Some(out));
        }
        match Pin::new(&mut sleep).poll(cx) {
            Poll::Ready(()) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}
