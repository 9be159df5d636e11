//! The monotonic clock as nanoseconds: a request's start, its latency and the listener's
//! deadline are differences of `u64`s. `Instant`'s arithmetic (checked, in seconds and
//! nanoseconds) cost about 55 instructions for each `duration_since`, three of them per
//! request (docs/network-thread.md, "Plain requests, round five").

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Nanoseconds of the monotonic clock (`CLOCK_MONOTONIC`, which `Instant` reads too on Linux).
/// Only differences mean anything.
#[cfg(unix)]
#[inline]
pub fn now() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid timespec to write; CLOCK_MONOTONIC exists on every unix
    // this builds for, so the call cannot fail.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64).wrapping_mul(1_000_000_000).wrapping_add(ts.tv_nsec as u64)
}

/// As above, from `Instant` where there is no `clock_gettime`.
#[cfg(not(unix))]
pub fn now() -> u64 {
    static BASE: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    BASE.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// Whole seconds since the Unix epoch (`CLOCK_REALTIME`), for the `Date` of an answer:
/// `SystemTime::now().duration_since(UNIX_EPOCH)` checked its arithmetic in seconds and
/// nanoseconds, about 80 instructions a request where only the seconds are used.
#[cfg(unix)]
#[inline]
pub fn unix_seconds() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid timespec to write; CLOCK_REALTIME exists on every unix.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    ts.tv_sec.max(0) as u64
}

/// As above, from `SystemTime` where there is no `clock_gettime`.
#[cfg(not(unix))]
pub fn unix_seconds() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The clock as of the current round of an in-thread driver's turn: the tasks its runtime
/// polls between two calls of JS (`in_thread::LocalDriver::turn`), so JS is never inside
/// one. Every reading in a round (`now`) is its first: late by at most the polls of the
/// round before the one that asks (a few microseconds per ready connection); a request's
/// start and its answer are each read so, so its latency is off by the difference of the
/// two positions. Outside a round each reading is fresh. One per server (in its doorbell,
/// which the driver and every connection reach without a thread-local).
pub struct Round(AtomicU64);

/// `Round`'s states besides a reading (a reading is never either: nanoseconds since boot).
const CLOSED: u64 = u64::MAX;
const EMPTY: u64 = 0;

impl Round {
    pub const fn new() -> Self {
        Round(AtomicU64::new(CLOSED))
    }

    /// `now`, read at most once per round.
    #[inline]
    pub fn now(&self) -> u64 {
        match self.0.load(Ordering::Relaxed) {
            CLOSED => now(),
            EMPTY => {
                let n = now().clamp(1, CLOSED - 1);
                self.0.store(n, Ordering::Relaxed);
                n
            }
            n => n,
        }
    }

    /// A round starts: its first reading is shared.
    #[inline]
    pub fn open(&self) {
        self.0.store(EMPTY, Ordering::Relaxed);
    }

    /// The round ends: each reading is fresh until the next one.
    #[inline]
    pub fn close(&self) {
        self.0.store(CLOSED, Ordering::Relaxed);
    }
}

impl Default for Round {
    fn default() -> Self {
        Self::new()
    }
}

/// An `Instant` and the clock's reading at about the same moment: converts between the two
/// for tokio's timers, which take instants (rarely: when a deadline moves a timer).
#[derive(Clone, Copy)]
pub struct Anchor {
    instant: Instant,
    nanos: u64,
}

impl Anchor {
    pub fn new() -> Self {
        Anchor { instant: Instant::now(), nanos: now() }
    }

    /// The instant of the clock's reading `nanos`.
    pub fn instant_at(&self, nanos: u64) -> Instant {
        if nanos >= self.nanos {
            self.instant.checked_add(Duration::from_nanos(nanos - self.nanos)).unwrap_or(self.instant)
        } else {
            self.instant.checked_sub(Duration::from_nanos(self.nanos - nanos)).unwrap_or(self.instant)
        }
    }
}

impl Default for Anchor {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_and_instants_agree() {
        let anchor = Anchor::new();
        assert_eq!(anchor.instant_at(anchor.nanos + 1_500_000_000), anchor.instant + Duration::from_millis(1500));
        assert_eq!(anchor.instant_at(anchor.nanos - 1000), anchor.instant - Duration::from_micros(1));
        // Both read the same clock: over a sleep they move alike.
        let (t, i) = (now(), Instant::now());
        std::thread::sleep(Duration::from_millis(20));
        let (ours, std) = (now() - t, i.elapsed().as_nanos() as u64);
        assert!(ours >= 20_000_000, "{ours}");
        assert!(ours.abs_diff(std) < 50_000_000, "{ours} {std}");
    }

    #[test]
    fn a_round_shares_one_reading_and_only_a_round() {
        let round = Round::new();
        // Outside a round: fresh readings.
        let a = round.now();
        std::thread::sleep(Duration::from_millis(2));
        assert!(round.now() >= a + 2_000_000);
        round.open();
        let first = round.now();
        std::thread::sleep(Duration::from_millis(2));
        assert_eq!(round.now(), first);
        // A new round reads again.
        round.open();
        assert!(round.now() >= first + 2_000_000);
        round.close();
        let b = round.now();
        std::thread::sleep(Duration::from_millis(2));
        assert!(round.now() >= b + 2_000_000);
    }
}
