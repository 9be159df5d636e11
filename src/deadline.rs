//! One timer per HTTP/1.1 connection in place of one per request.
//!
//! Each request used to register two timers with tokio and remove them again: hyper's
//! header timer (a boxed sleep per request head) and the listener's time limit
//! (`timeout`). Both almost never fire, and registering and removing cost about 0.4 us of
//! the 8 us a small request costs in all (docs/network-thread.md). Here, a deadline inside
//! an HTTP/1.1 connection is only noted: when polled, it compares itself with the last time
//! the connection's timer fired and, while not due, asks the connection for a wake-up at
//! it (`check`). The connection task (`connection::drive`) keeps one tokio timer,
//! armed at the earliest deadline any of them asked for and at its own quiet-time tick,
//! and moves it only when something asks for an earlier time: with the defaults (30 s
//! limits, a 1 s tick) never per request. When it fires, the task polls hyper again, and
//! every deadline that is due completes.
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
    /// Nanoseconds after `base` when the connection's timer last fired: a deadline is due
    /// once this reaches it, so a poll reads no clock.
    fired: AtomicU64,
    /// hyper's header timer's deadline (`HeaderSleep`), in nanoseconds after `base`.
    header: AtomicU64,
}

impl Deadlines {
    pub fn new() -> Self {
        Deadlines {
            base: Instant::now(),
            earliest: AtomicU64::new(u64::MAX),
            fired: AtomicU64::new(0),
            header: AtomicU64::new(u64::MAX),
        }
    }

    fn nanos(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.base).as_nanos().min(u64::MAX as u128 - 1) as u64
    }

    /// The connection's timer fired at `now`.
    pub fn fired(&self, now: Instant) {
        self.fired.fetch_max(self.nanos(now), Ordering::Relaxed);
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

/// The cork of the connection being polled on this thread, if any. Borrowed for the poll:
/// `connection::drive` holds the cork for as long as the guard that set it lives.
fn with_current<R>(f: impl FnOnce(Option<&Cork>) -> R) -> R {
    let p = POLLING.get();
    // SAFETY: `p` is null or came from `Arc::as_ptr` of a cork alive for this whole poll.
    f(unsafe { p.as_ref() })
}

/// Whether a deadline noted in `cork` is due; if not, asks the connection's timer to wake
/// the task at it.
fn check(deadlines: &Deadlines, at: u64) -> Poll<()> {
    if deadlines.fired.load(Ordering::Relaxed) >= at {
        return Poll::Ready(());
    }
    deadlines.earliest.fetch_min(at, Ordering::Relaxed);
    Poll::Pending
}

/// hyper's header timer inside an HTTP/1.1 connection: its deadline is kept in the
/// connection's `Deadlines` (hyper holds one header timer per connection at a time), so
/// the sleep itself is empty and boxing it allocates nothing. hyper starts one for every
/// request head and drops it once the head is parsed.
struct HeaderSleep;

impl Future for HeaderSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<()> {
        // hyper polls it only inside the poll of the connection it was made for.
        with_current(|cork| match cork {
            Some(cork) => check(&cork.deadlines, cork.deadlines.header.load(Ordering::Relaxed)),
            None => {
                debug_assert!(false, "a header timer polled outside its connection");
                Poll::Pending
            }
        })
    }
}

impl hyper::rt::Sleep for HeaderSleep {}

/// hyper's HTTP/1.1 timer: `HeaderSleep`s inside a connection's poll, tokio's elsewhere.
#[derive(Clone, Copy, Debug, Default)]
pub struct ConnTimer;

impl hyper::rt::Timer for ConnTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        self.sleep_until(Instant::now() + duration)
    }

    fn sleep_until(&self, at: Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        with_current(|cork| match cork {
            Some(cork) => {
                let d = &cork.deadlines;
                d.header.store(d.nanos(at), Ordering::Relaxed);
                Box::pin(HeaderSleep)
            }
            None => hyper_util::rt::TokioTimer::new().sleep_until(at),
        })
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
    let at = cork.deadlines.nanos(at);
    std::future::poll_fn(|cx| {
        if let Poll::Ready(out) = fut.as_mut().poll(cx) {
            return Poll::Ready(Some(out));
        }
        check(&cork.deadlines, at).map(|()| None)
    })
    .await
}
