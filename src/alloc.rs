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

/// glibc's thresholds for Node's array buffers (glibc's `malloc`): request bodies' Buffers
/// of up to 1 MiB, freed some 32 MiB at a time by V8's scavenges. By default glibc maps a
/// block that large on its own, or, once one such was freed, takes it from the top of its heap
/// and gives the top back when 2 MiB of it are free: each scavenge's batch was given back and
/// faulted in again by the next, with bodies that die young (lib/server.ts hands one
/// large-body request a turn to its handler) 236 faults a 1 MiB upload and twice the CPU
/// (docs/network-thread.md, "Large request bodies, round nine"). So blocks up to
/// `MMAP_THRESHOLD` come from the heap, and its top goes back past `TRIM_THRESHOLD`, or when
/// the server is idle (`give_back_released`). `M_TOP_PAD` set at load did not do it.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: libc::c_int = 2 * 1024 * 1024;
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const TRIM_THRESHOLD: libc::c_int = 64 * 1024 * 1024;

/// Sets glibc's thresholds (`MMAP_THRESHOLD`); once per process, when the first body of
/// `body::DEFER_MIN` or more is read (`Core::body_collect`): a server that never reads one
/// keeps glibc's own, which give memory back sooner (echo of 100 KiB bodies peaked 3-4 MiB
/// higher with these set).
pub(crate) fn keep_heap_top() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        // SAFETY: plain calls into glibc's allocator, which takes its own lock.
        ONCE.call_once(|| unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
            libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
        });
    }
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
    // And the free top of glibc's heap that `keep_heap_top` keeps (Node's memory).
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: a plain call into glibc's allocator, which takes its own locks.
    unsafe {
        libc::malloc_trim(0);
    }
}
