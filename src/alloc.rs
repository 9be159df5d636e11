//! The global allocator, and giving back the memory of released idle connections.

use std::sync::atomic::{AtomicU64, Ordering};

// mimalloc: glibc's allocator trimmed and re-faulted its heap when large bodies were
// freed in bulk on a tokio thread (DESIGN.md section 2). Its 2.x line (the crate's `v2`
// feature): 3.x keeps main-thread bookkeeping that breaks once the first thread that used
// it has exited, so loading the addon in a second worker thread after the first ended
// crashed in `mi_thread_init` (test/workers.test.mjs).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[cfg(feature = "mimalloc")]
extern "C" {
    // mimalloc's own API (mimalloc.h), linked in with the allocator: frees the calling
    // thread's empty pages and returns their memory to the OS.
    fn mi_collect(force: bool);
}

/// Counts idle connections whose hyper buffers were released (connection.rs).
static RELEASES: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// `RELEASES` as of this thread's last collection.
    static SEEN: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Notes that an idle connection gave its buffers back.
pub(crate) fn note_release() {
    RELEASES.fetch_add(1, Ordering::Relaxed);
}

/// Called by a runtime thread about to park: when connections released buffers since
/// this thread last looked, the pages they leave empty go back to the OS. The allocator
/// keeps freed pages for reuse otherwise, so idle connections would hold, in RSS, what
/// they held at their busiest. It runs only on the way to sleep, never in the middle of
/// work, at most once per park and per release (a connection releases at most once per
/// quiet spell of 2 s or more); one collection took 10-300 us (median 60 us) with 10,000
/// connections open.
pub(crate) fn give_back_released() {
    let releases = RELEASES.load(Ordering::Relaxed);
    if SEEN.with(|s| s.replace(releases)) == releases {
        return;
    }
    // `force`: purge the freed pages now; without it mimalloc keeps them resident until a
    // later allocation of the same size on this thread, which an idle server never makes.
    #[cfg(feature = "mimalloc")]
    // SAFETY: a plain call into the allocator, for the calling thread's own heap.
    unsafe {
        mi_collect(true)
    };
}
