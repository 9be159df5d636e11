//! The monotonic clock as nanoseconds: a request's start, its latency and the listener's
//! deadline are differences of `u64`s. `Instant`'s arithmetic (checked, in seconds and
//! nanoseconds) cost about 55 instructions for each `duration_since`, three of them per
//! request (docs/network-thread.md, "Plain requests, round five").

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

/// The reading shared by the current round of an in-thread driver's turn (`shared_now`):
/// `CLOSED` outside one, `EMPTY` in one not read yet.
const CLOSED: u64 = u64::MAX;
const EMPTY: u64 = 0;

thread_local! {
    static ROUND: std::cell::Cell<u64> = const { std::cell::Cell::new(CLOSED) };
}

/// `now`, read at most once per round of an in-thread driver's turn: the tasks its runtime
/// polls between two calls of JS (`in_thread::LocalDriver::turn`), so JS is never inside
/// one. A reading is late by at most the round's polls before the one that asks (a few
/// microseconds per ready connection); a request's start and its answer are each read so,
/// so its latency is off by the difference of the two positions. Outside a round (the
/// runtime threads, or JS) each call reads the clock.
#[inline]
pub fn shared_now() -> u64 {
    ROUND.with(|r| match r.get() {
        CLOSED => now(),
        EMPTY => {
            // A reading is never EMPTY or CLOSED (nanoseconds since boot).
            let n = now().clamp(1, CLOSED - 1);
            r.set(n);
            n
        }
        n => n,
    })
}

/// A round starts on this thread (see `shared_now`): its first reading is shared.
#[inline]
pub fn open_round() {
    ROUND.with(|r| r.set(EMPTY));
}

/// The round ends: each reading is fresh until the next one.
#[inline]
pub fn close_round() {
    ROUND.with(|r| r.set(CLOSED));
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
        // Outside a round: fresh readings.
        let a = shared_now();
        std::thread::sleep(Duration::from_millis(2));
        assert!(shared_now() >= a + 2_000_000);
        open_round();
        let first = shared_now();
        std::thread::sleep(Duration::from_millis(2));
        assert_eq!(shared_now(), first);
        // A new round reads again.
        open_round();
        assert!(shared_now() >= first + 2_000_000);
        close_round();
        let b = shared_now();
        std::thread::sleep(Duration::from_millis(2));
        assert!(shared_now() >= b + 2_000_000);
    }
}
