//! Server counters: connections, requests, and a sliding window for rate and latency.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
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

/// Counters shared by every connection task; updated with relaxed atomics only.
pub struct Stats {
    started: Instant,
    pub active_connections: AtomicUsize,
    pub total_requests: AtomicU64,
    /// Requests handed to JS and not yet answered (or abandoned).
    pub pending_requests: AtomicUsize,
    /// Open WebSockets (each also counts as a connection).
    pub web_sockets: AtomicUsize,
    /// TLS handshakes completed, and those that failed (garbage, timeouts, rejected
    /// client certificates).
    pub tls_handshakes: AtomicU64,
    pub tls_handshake_failures: AtomicU64,
    buckets: [Bucket; BUCKETS],
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
    pub fn new() -> Self {
        Stats {
            started: Instant::now(),
            active_connections: AtomicUsize::new(0),
            total_requests: AtomicU64::new(0),
            pending_requests: AtomicUsize::new(0),
            web_sockets: AtomicUsize::new(0),
            no_connections: Notify::new(),
            tls_handshakes: AtomicU64::new(0),
            tls_handshake_failures: AtomicU64::new(0),
            buckets: std::array::from_fn(|_| Bucket {
                second: AtomicU64::new(u64::MAX),
                count: AtomicU64::new(0),
                latency_us: AtomicU64::new(0),
            }),
        }
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

    /// Records one answered request whose head was parsed at `started` (one clock read
    /// for both the latency and the second it is counted in).
    pub fn record_response(&self, started: Instant) {
        let now = Instant::now();
        self.record_at(now, now.saturating_duration_since(started));
    }

    /// Records one answered request that took `latency`, answered at `now`.
    fn record_at(&self, now: Instant, latency: Duration) {
        let sec = now.saturating_duration_since(self.started).as_secs();
        let b = &self.buckets[(sec % BUCKETS as u64) as usize];
        let seen = b.second.load(Ordering::Acquire);
        if seen != sec {
            // First request of a new second in this bucket: reset it. Two threads racing
            // here can lose a handful of samples of that second, which a rate does not mind.
            if b.second.compare_exchange(seen, sec, Ordering::AcqRel, Ordering::Acquire).is_ok() {
                b.count.store(0, Ordering::Relaxed);
                b.latency_us.store(0, Ordering::Relaxed);
            }
        }
        b.count.fetch_add(1, Ordering::Relaxed);
        b.latency_us.fetch_add(latency.as_micros().min(u64::MAX as u128) as u64, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        let elapsed = self.started.elapsed();
        let now = elapsed.as_secs();
        let (mut count, mut latency) = (0u64, 0u64);
        for b in &self.buckets {
            let s = b.second.load(Ordering::Acquire);
            // The window is the last WINDOW_SECS seconds including the one in progress.
            if s != u64::MAX && s + WINDOW_SECS > now {
                count += b.count.load(Ordering::Relaxed);
                latency += b.latency_us.load(Ordering::Relaxed);
            }
        }
        let span = elapsed.as_secs_f64().min(WINDOW_SECS as f64).max(1e-3);
        StatsSnapshot {
            active_connections: self.active_connections.load(Ordering::Relaxed) as f64,
            total_requests: self.total_requests.load(Ordering::Relaxed) as f64,
            requests_per_second: count as f64 / span,
            avg_latency_ms: if count == 0 { 0.0 } else { latency as f64 / count as f64 / 1000.0 },
            pending_requests: self.pending_requests.load(Ordering::Relaxed) as f64,
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
        s.record_at(Instant::now(), Duration::from_millis(2));
        s.record_at(Instant::now(), Duration::from_millis(4));
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

    #[test]
    fn empty_window_reports_zero() {
        let snap = Stats::new().snapshot();
        assert_eq!(snap.avg_latency_ms, 0.0);
        assert_eq!(snap.requests_per_second, 0.0);
    }
}
