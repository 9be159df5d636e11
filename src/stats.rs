//! Server counters: connections, requests, and a sliding window for rate and latency.
//!
//! The per-request counts (requests, pending requests, the window's buckets) are kept in
//! shards, each written by one thread only, with a load and a store (no atomic
//! read-modify-write, each of which is a full barrier of some 20 cycles on x86), and summed
//! when `stats()` reads them. In the in-thread mode (`workerThreads: 0`) everything runs on
//! the JS thread, which writes the shard kept inline (`shared`) as its own. With worker
//! threads each worker has one of its own (`enter_worker`), and any other thread (a runtime
//! dropped on the JS thread, a test) writes `shared` with read-modify-writes.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::Notify;

/// Seconds covered by `requestsPerSecond` and `avgLatencyMs`.
const WINDOW_SECS: u64 = 5;
/// One bucket per second of the window, plus the second in progress.
const BUCKETS: usize = WINDOW_SECS as usize + 1;

struct Bucket {
    second: AtomicU64,
    count: AtomicU64,
    latency_us: AtomicU64,
}

/// One thread's counts (or, for `SHARED`, those of any thread without a shard of its own).
/// A cache line or more of its own, so that two workers never write the same line.
#[repr(align(64))]
struct Shard {
    total_requests: AtomicU64,
    /// Requests handed to JS less those answered or abandoned here: a request may be
    /// counted in one shard and leave in another, so a shard's own figure can go below
    /// zero (wrapping); the sum is right.
    pending: AtomicU64,
    buckets: [Bucket; BUCKETS],
}

impl Shard {
    fn new() -> Self {
        Shard {
            total_requests: AtomicU64::new(0),
            pending: AtomicU64::new(0),
            buckets: std::array::from_fn(|_| Bucket {
                second: AtomicU64::new(u64::MAX),
                count: AtomicU64::new(0),
                latency_us: AtomicU64::new(0),
            }),
        }
    }
}

/// A counter of a shard: written with a load and a store by the shard's one thread, or
/// with a read-modify-write in the shared shard.
#[inline]
fn add(counter: &AtomicU64, n: u64, owned: bool) {
    if owned {
        counter.store(counter.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
    } else {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// Gives each `Stats` an identity its worker threads recognise.
static NEXT_ID: AtomicUsize = AtomicUsize::new(1);

thread_local! {
    /// On a worker thread of a server's runtime: that server's `Stats::id` and the
    /// worker's shard in `workers`. (0, 0) elsewhere.
    static WORKER: Cell<(usize, usize)> = const { Cell::new((0, 0)) };
}

/// Counters shared by every connection task; updated with relaxed atomics only.
pub struct Stats {
    /// When the counts started, on `clock::now`'s clock.
    started: u64,
    id: usize,
    /// Every thread that updates the counts is the JS thread (`workerThreads: 0`): it
    /// writes `shared` as its own.
    one_thread: AtomicBool,
    /// The one thread's shard, or that of threads without one of their own.
    shared: Shard,
    /// One per worker thread.
    workers: Box<[Shard]>,
    /// Worker threads given a shard so far (`enter_worker`).
    workers_entered: AtomicUsize,
    pub active_connections: AtomicUsize,
    /// Open WebSockets (each also counts as a connection).
    pub web_sockets: AtomicUsize,
    /// TLS handshakes completed, and those that failed (garbage, timeouts, rejected
    /// client certificates).
    pub tls_handshakes: AtomicU64,
    pub tls_handshake_failures: AtomicU64,
    /// Notified when the last connection closes (`wait_no_connections`).
    no_connections: Notify,
}

/// A point-in-time copy of the counters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StatsSnapshot {
    pub active_connections: f64,
    pub total_requests: f64,
    pub requests_per_second: f64,
    pub avg_latency_ms: f64,
    pub pending_requests: f64,
    pub web_sockets: f64,
    pub tls_handshakes: f64,
    pub tls_handshake_failures: f64,
}

impl Default for Stats {
    fn default() -> Self {
        Self::new()
    }
}

impl Stats {
    /// Counters with no worker shards: every thread shares one.
    pub fn new() -> Self {
        Self::with_workers(0)
    }

    /// Counters with a shard for each of `workers` worker threads (`enter_worker`).
    pub fn with_workers(workers: usize) -> Self {
        Stats {
            started: crate::clock::now(),
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            one_thread: AtomicBool::new(false),
            shared: Shard::new(),
            workers: (0..workers).map(|_| Shard::new()).collect(),
            workers_entered: AtomicUsize::new(0),
            active_connections: AtomicUsize::new(0),
            web_sockets: AtomicUsize::new(0),
            no_connections: Notify::new(),
            tls_handshakes: AtomicU64::new(0),
            tls_handshake_failures: AtomicU64::new(0),
        }
    }

    /// Only the calling thread will update the counts from now on (the in-thread mode,
    /// called before any connection is served).
    pub fn set_one_thread(&self) {
        self.one_thread.store(true, Ordering::Relaxed);
    }

    /// Called on each worker thread of this server's runtime as it starts
    /// (`on_thread_start`): the first `workers` get a shard of their own.
    pub fn enter_worker(&self) {
        let i = self.workers_entered.fetch_add(1, Ordering::Relaxed);
        if i < self.workers.len() {
            WORKER.set((self.id, i));
        }
    }

    /// This thread's shard, and whether it is the thread's own.
    #[inline]
    fn shard(&self) -> (&Shard, bool) {
        if self.one_thread.load(Ordering::Relaxed) {
            return (&self.shared, true);
        }
        match WORKER.get() {
            (id, i) if id == self.id && i < self.workers.len() => (&self.workers[i], true),
            _ => (&self.shared, false),
        }
    }

    fn shards(&self) -> impl Iterator<Item = &Shard> {
        std::iter::once(&self.shared).chain(self.workers.iter())
    }

    pub fn connection_opened(&self) {
        self.active_connections.fetch_add(1, Ordering::AcqRel);
    }

    /// Counts a connection gone; the last one wakes `wait_no_connections`.
    pub fn connection_closed(&self) {
        if self.active_connections.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.no_connections.notify_waiters();
        }
    }

    /// Resolves once no connection is open. The waiter registers before it reads the
    /// count, so a last close between the two still wakes it (no lost wake-up).
    pub async fn wait_no_connections(&self) {
        loop {
            let notified = self.no_connections.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            if self.active_connections.load(Ordering::Acquire) == 0 {
                return;
            }
            notified.await;
        }
    }

    /// Counts a request whose head was read.
    #[inline]
    pub fn request_received(&self) {
        let (shard, owned) = self.shard();
        add(&shard.total_requests, 1, owned);
    }

    /// Requests handed to JS and not yet answered (or abandoned), all shards summed.
    pub fn pending_requests(&self) -> u64 {
        let sum = self.shards().fold(0u64, |n, s| n.wrapping_add(s.pending.load(Ordering::Relaxed)));
        // Below zero only for a moment, while a request counted in by one thread is counted
        // out by another before the first's store is seen.
        (sum as i64).max(0) as u64
    }

    /// A request is handed to JS.
    #[inline]
    pub fn pending_added(&self) {
        let (shard, owned) = self.shard();
        add(&shard.pending, 1, owned);
    }

    /// A request handed to JS was answered or abandoned.
    #[inline]
    pub fn pending_removed(&self) {
        let (shard, owned) = self.shard();
        add(&shard.pending, 1u64.wrapping_neg(), owned);
    }

    /// Records one answered request whose head was parsed at `started`, answered at `now`
    /// (`clock::now`'s clock; one reading for both the latency and the second it is counted
    /// in, shared with the rest of the poll: `Cork::now`).
    pub fn record_response(&self, started: u64, now: u64) {
        self.record_at(now, now.saturating_sub(started));
    }

    /// Records one answered request that took `latency` nanoseconds, answered at `now`.
    fn record_at(&self, now: u64, latency: u64) {
        let sec = now.saturating_sub(self.started) / 1_000_000_000;
        let (shard, owned) = self.shard();
        let b = &shard.buckets[(sec % BUCKETS as u64) as usize];
        let latency = latency / 1000;
        let seen = b.second.load(Ordering::Acquire);
        if owned {
            if seen != sec {
                // First request of a new second in this bucket: its counts start again. A
                // reader between these stores may see a mix of the two seconds for a
                // moment, which a rate does not mind.
                b.count.store(0, Ordering::Relaxed);
                b.latency_us.store(0, Ordering::Relaxed);
                b.second.store(sec, Ordering::Release);
            }
            add(&b.count, 1, true);
            add(&b.latency_us, latency, true);
            return;
        }
        if seen != sec {
            // As above, where threads may race: two can lose a handful of samples of that
            // second, which a rate does not mind either.
            if b.second.compare_exchange(seen, sec, Ordering::AcqRel, Ordering::Acquire).is_ok() {
                b.count.store(0, Ordering::Relaxed);
                b.latency_us.store(0, Ordering::Relaxed);
            }
        }
        b.count.fetch_add(1, Ordering::Relaxed);
        b.latency_us.fetch_add(latency, Ordering::Relaxed);
    }

    /// Requests answered in the window ending in second `now` (since `started`), and
    /// their summed latency in microseconds.
    fn window(&self, now: u64) -> (u64, u64) {
        let (mut count, mut latency) = (0u64, 0u64);
        for shard in self.shards() {
            for b in &shard.buckets {
                let s = b.second.load(Ordering::Acquire);
                // The window is the last WINDOW_SECS seconds including the one in progress.
                if s != u64::MAX && s + WINDOW_SECS > now {
                    count += b.count.load(Ordering::Relaxed);
                    latency += b.latency_us.load(Ordering::Relaxed);
                }
            }
        }
        (count, latency)
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        let elapsed = Duration::from_nanos(crate::clock::now().saturating_sub(self.started));
        let (count, latency) = self.window(elapsed.as_secs());
        let total = self.shards().fold(0u64, |n, s| n.wrapping_add(s.total_requests.load(Ordering::Relaxed)));
        let span = elapsed.as_secs_f64().min(WINDOW_SECS as f64).max(1e-3);
        StatsSnapshot {
            active_connections: self.active_connections.load(Ordering::Relaxed) as f64,
            total_requests: total as f64,
            requests_per_second: count as f64 / span,
            avg_latency_ms: if count == 0 { 0.0 } else { latency as f64 / count as f64 / 1000.0 },
            pending_requests: self.pending_requests() as f64,
            web_sockets: self.web_sockets.load(Ordering::Relaxed) as f64,
            tls_handshakes: self.tls_handshakes.load(Ordering::Relaxed) as f64,
            tls_handshake_failures: self.tls_handshake_failures.load(Ordering::Relaxed) as f64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_average_covers_recorded_requests() {
        let s = Stats::new();
        s.record_at(crate::clock::now(), 2_000_000);
        s.record_at(crate::clock::now(), 4_000_000);
        let snap = s.snapshot();
        assert!((snap.avg_latency_ms - 3.0).abs() < 1e-9);
        assert!(snap.requests_per_second > 0.0);
    }

    #[tokio::test]
    async fn the_last_closed_connection_wakes_a_waiter() {
        let s = std::sync::Arc::new(Stats::new());
        s.connection_opened();
        s.connection_opened();
        let waiter = tokio::spawn({
            let s = s.clone();
            async move { s.wait_no_connections().await }
        });
        s.connection_closed();
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        s.connection_closed();
        tokio::time::timeout(Duration::from_secs(5), waiter).await.unwrap().unwrap();
    }

    /// Counts a request the way a connection task does: received, handed to JS, answered.
    fn serve_one(s: &Stats) {
        s.request_received();
        s.pending_added();
        let t = crate::clock::now();
        s.record_response(t, t);
    }

    #[test]
    fn counts_from_worker_threads_and_other_threads_add_up() {
        let s = std::sync::Arc::new(Stats::with_workers(2));
        // Two workers with shards of their own, and a third thread past them that shares one.
        let threads: Vec<_> = (0..3)
            .map(|_| {
                let s = s.clone();
                std::thread::spawn(move || {
                    s.enter_worker();
                    for _ in 0..1000 {
                        serve_one(&s);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(s.pending_requests(), 3000);
        // Answered here, on a thread without a shard: the pending count goes down in another
        // shard than it went up in.
        for _ in 0..2999 {
            s.pending_removed();
        }
        let snap = s.snapshot();
        assert_eq!(snap.total_requests, 3000.0);
        assert_eq!(snap.pending_requests, 1.0);
        assert_eq!(s.window((crate::clock::now() - s.started) / 1_000_000_000).0, 3000);
    }

    #[test]
    fn counts_on_one_thread_add_up() {
        let s = Stats::with_workers(1);
        s.set_one_thread();
        for _ in 0..500 {
            serve_one(&s);
            s.pending_removed();
        }
        let snap = s.snapshot();
        assert_eq!(snap.total_requests, 500.0);
        assert_eq!(snap.pending_requests, 0.0);
        assert_eq!(s.window((crate::clock::now() - s.started) / 1_000_000_000).0, 500);
    }

    #[test]
    fn a_bucket_starts_again_in_a_new_second() {
        let s = Stats::new();
        s.set_one_thread();
        let t0 = s.started;
        s.record_at(t0, 1_000_000);
        // The same bucket six seconds on: the old second's count is gone from the window.
        s.record_at(t0 + BUCKETS as u64 * 1_000_000_000, 3_000_000);
        assert_eq!(s.window(BUCKETS as u64), (1, 3000));
    }

    #[test]
    fn empty_window_reports_zero() {
        let snap = Stats::new().snapshot();
        assert_eq!(snap.avg_latency_ms, 0.0);
        assert_eq!(snap.requests_per_second, 0.0);
    }
}
