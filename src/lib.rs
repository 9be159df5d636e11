//! The napi surface of fetch-rs: the one place the JS layer calls into.
//!
//! A server is a `NativeServer` object (its life: listen, close, stats, garbage
//! collection) with a `handle`; every per-request call is a plain function taking that
//! handle first (`respondText(handle, id, …)`), because napi-rs calls a function several
//! times faster than a class method. `lib/native.ts` binds the handle once. The hottest
//! (`drain`, `flush`, `respondText/Bytes/Empty`, `bodyCollect`) are plain Node-API
//! callbacks (`fast.rs`).
//!
//! | call | arguments | ownership and thread |
//! |---|---|---|
//! | `new NativeServer(options)`, `.handle` | validated options | JS thread; nothing starts |
//! | `.listen(doorbell)` | fn rung with no arguments when events wait | binds now, starts tokio; returns the port |
//! | `drain(h, records, texts)` | `Uint32Array` of `[kind, id, arg, urlLength]` records; an array | moves queued events into the slab; each REQUEST record's URL and packed headers as one string in `texts`; returns records written |
//! | `reschedule(h)`, `flush(h)` | | ring again if events remain; send gathered replies |
//! | `requestMethod/ClientAddress(h, id)` | slot id | a method other than the common seven; the client's address |
//! | `requestRelease(h, id)` | slot id | frees the slot; later calls with the id are no-ops |
//! | `bodyCollect(h, id)` | slot id | the whole body as a Buffer, or `null` when a BODY_FULL/BODY_ERROR record will follow |
//! | `bodyPull(h, id)` | slot id | the next chunk as a Buffer, or `0` at the end, `1` when a BODY_* record will follow |
//! | `respondText/Bytes/Empty/Stream(h, id, status, ct, headers, …)` | flat header list or null | queue the reply; flushed per batch; bytes copied; `release` also frees the slot |
//! | `respondBytesShared(h, id, …, body)` | a large typed array | held, not copied, until written; JS must not change it |
//! | `streamWrite(h, id, chunk)`, `streamEnd(h, id, failed)` | bytes copied | `false` when full: wait for a WRITABLE record |
//! | `streamWriteShared(h, id, chunk)` | a large typed array | as `streamWrite`, held instead of copied |
//! | `.close(graceMs)`, `.forceClose()`, `.shutdown()` | | drain then force; a CLOSED record follows; then release |
//!
//! Everything runs on the JS thread that created the server. Slot ids are
//! `generation << 20 | index`, never 0.

// Tests may unwrap: a panic there is a failed test, not a crashed server.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod body;
pub mod bridge;
pub mod connection;
pub mod core;
pub mod cork;
pub mod error;
pub mod fast;
pub mod js_side;
pub mod lending;
pub mod listener;
pub mod options;
pub mod registry;
pub mod request;
pub mod response;
pub mod slab;
pub mod stats;
pub mod wire;

// mimalloc: glibc's allocator trimmed and re-faulted its heap when large bodies were
// freed in bulk on a tokio thread (DESIGN.md section 2).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use napi::bindgen_prelude::*;
use napi_derive::napi;
use registry::with_core;

/// Rings the doorbell again if events are still queued.
#[napi(catch_unwind)]
pub fn reschedule(server: u32) -> Result<()> {
    with_core(server, |c| {
        c.reschedule();
        Ok(())
    })
}

#[napi(catch_unwind)]
pub fn request_method(server: u32, id: u32) -> Result<Option<String>> {
    with_core(server, |c| Ok(c.request_method(id)))
}

#[napi(catch_unwind)]
pub fn request_client_address(server: u32, id: u32) -> Result<Option<String>> {
    with_core(server, |c| Ok(c.request_client_address(id)))
}

/// Frees the slot. A request still unanswered gets a 500.
#[napi(catch_unwind)]
pub fn request_release(server: u32, id: u32) -> Result<()> {
    with_core(server, |c| {
        c.request_release(id);
        Ok(())
    })
}

/// The next chunk of a streamed request body: a Buffer, `PULL_END` at the end, or
/// `PULL_PENDING` when a BODY_DATA / BODY_END / BODY_ERROR record will follow.
#[napi(catch_unwind)]
pub fn body_pull<'e>(env: &'e Env, server: u32, id: u32) -> Result<Either<BufferSlice<'e>, u32>> {
    with_core(server, |c| c.body_pull(env, id))
}

/// Replies with a large byte body without copying it: the typed array is held
/// (a napi reference) until hyper has written it.
#[napi(catch_unwind)]
#[allow(clippy::too_many_arguments)]
pub fn respond_bytes_shared(
    env: &Env,
    server: u32,
    id: u32,
    status: u32,
    ct: u32,
    headers: Option<Vec<String>>,
    body: Uint8ArraySlice<'_>,
    release: bool,
) -> Result<()> {
    with_core(server, |c| c.respond_bytes_shared(env, id, status, ct, headers, body, release))
}

/// Starts a streamed reply; chunks follow with `streamWrite`, then `streamEnd`.
#[napi(catch_unwind)]
pub fn respond_stream(server: u32, id: u32, status: u32, ct: u32, headers: Option<Vec<String>>) -> Result<()> {
    with_core(server, |c| c.respond_stream(id, status, ct, headers))
}

/// Queues a chunk of a streamed reply. `false`: the queue is full, nothing was
/// taken; call again after a WRITABLE record. Throws when the client is gone.
#[napi(catch_unwind)]
pub fn stream_write(server: u32, id: u32, chunk: &[u8]) -> Result<bool> {
    with_core(server, |c| c.stream_write(id, chunk))
}

/// `streamWrite` for a large chunk, lent instead of copied (JS must not change it).
#[napi(catch_unwind)]
pub fn stream_write_shared(env: &Env, server: u32, id: u32, chunk: Uint8ArraySlice<'_>) -> Result<bool> {
    with_core(server, |c| c.stream_write_shared(env, id, chunk))
}

/// Ends a streamed reply; `failed` cuts it off so the client sees an incomplete body.
#[napi(catch_unwind)]
pub fn stream_end(server: u32, id: u32, failed: bool) -> Result<()> {
    with_core(server, |c| {
        c.stream_end(id, failed);
        Ok(())
    })
}
