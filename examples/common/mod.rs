//! What the benchmark's Rust reference servers (hyper-baseline.rs, lean-h1.rs) share.

/// Worker threads: the environment variable `var` (a positive count), else the cores this
/// process may run on (1 when the bench pins it to one core).
pub fn worker_threads(var: &str) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n: &usize| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1))
}
