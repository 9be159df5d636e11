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

pub mod alloc;
pub mod body;
pub mod bridge;
pub mod connection;
pub mod cork;
pub mod error;
pub mod fast;
pub mod listener;
pub mod options;
pub mod request;
pub mod response;
pub mod stats;

use body::{ReadMode, ResponseBody, StreamBody, StreamItem, RESPONSE_STREAM_CHUNKS};
use bridge::{BodyState, Doorbell, JsSide, LentRef, ResponseStream, SlotId};
use connection::{Phase, ServerShared};
use error::{BridgeError, ErrorKind};
use napi::bindgen_prelude::*;
use napi::{Env, JsString};
use napi_derive::napi;
use options::{NativeOptions, ServerConfig};
use stats::Stats;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{oneshot, watch, Notify};

/// Bodies this large or larger cross to JS as external buffers instead of copies.
const EXTERNAL_BUFFER_MIN: usize = 64 * 1024;

/// `bodyPull` results other than a chunk.
const PULL_END: u32 = 0;
const PULL_PENDING: u32 = 1;

/// The native half of a server, kept in the JS thread's `SERVERS` table and reached by
/// its handle: the per-request calls are plain functions (`respondText(handle, …)`),
/// which napi-rs calls several times cheaper than class methods (no unwrap, type tag or
/// borrow registry per call; measured 150-220 ns against 410-770 ns per call).
pub struct Core {
    config: ServerConfig,
    js: JsSide,
    stats: Arc<Stats>,
    runtime: Option<tokio::runtime::Runtime>,
    phase: Option<watch::Sender<Phase>>,
    /// The head texts of the REQUEST records `drain` is handing over (emptied each time).
    heads: Vec<request::HeadText>,
}

fn invalid_state(msg: &str) -> napi::Error {
    BridgeError::new(ErrorKind::InvalidState, msg).into()
}

/// A Buffer over `data`: copied when small, external (no copy) when large.
fn to_buffer(env: &Env, data: bytes::Bytes) -> Result<BufferSlice<'_>> {
    if data.len() < EXTERNAL_BUFFER_MIN {
        return BufferSlice::copy_from(env, &data);
    }
    let ptr = data.as_ptr() as *mut u8;
    let len = data.len();
    // SAFETY: the Bytes is moved into the finalizer hint, so the memory lives until
    // V8 frees the buffer; each collected body is its own allocation, so no two
    // externals share a data pointer.
    let buffer = unsafe { BufferSlice::from_external(env, ptr, len, data, |_, d| drop(d)) }?;
    let_v8_count_external_buffers(env);
    Ok(buffer)
}

/// V8 frees the memory of short-lived ArrayBuffers at a scavenge, and starts one early
/// once the young generation's buffers hold twice its semi-space size, but it checks that
/// only when it allocates a buffer's memory itself. External buffers skip the check: under
/// an echo of 100 KiB bodies they piled up until the external-memory limit forced a full
/// mark-compact every ~70 ms (and peak RSS rose with them). A one-byte buffer after each
/// external one runs V8's check, so they go at the next scavenge, as Node's own do.
fn let_v8_count_external_buffers(env: &Env) {
    let mut data = std::ptr::null_mut();
    let mut value = std::ptr::null_mut();
    // SAFETY: a plain napi call on the JS thread; the result is garbage at once. A failure
    // (out of memory) only skips the check.
    unsafe { napi::sys::napi_create_arraybuffer(env.raw(), 1, &mut data, &mut value) };
}

/// A JS typed array lent to hyper as a response body: its bytes, and a reference that
/// keeps it alive until hyper has written them. Dropped on any thread: the reference goes
/// back through the doorbell queue and is deleted at JS's next drain, so releasing costs
/// JS no wake-up of its own (a napi-rs `Uint8Array` dropped off the JS thread would make
/// one per buffer).
struct LentBody {
    data: *const u8,
    len: usize,
    reference: Option<LentRef>,
    doorbell: Arc<Doorbell>,
}

// SAFETY: the bytes are not touched by JS while lent (README: a body must not change
// until sent) and stay alive while the reference is held; the reference is only moved.
unsafe impl Send for LentBody {}
unsafe impl Sync for LentBody {}

impl AsRef<[u8]> for LentBody {
    fn as_ref(&self) -> &[u8] {
        if self.len == 0 {
            return &[];
        }
        // SAFETY: see `lend`: the typed array's bytes, alive while `reference` is held.
        unsafe { std::slice::from_raw_parts(self.data, self.len) }
    }
}

impl Drop for LentBody {
    fn drop(&mut self) {
        if let Some(r) = self.reference.take() {
            self.doorbell.push(bridge::Event::Release(r));
        }
    }
}

/// The bytes of `array` as a `Bytes` that holds the array alive instead of copying it.
fn lend(env: &Env, doorbell: &Arc<Doorbell>, array: Uint8ArraySlice<'_>) -> Result<bytes::Bytes> {
    let mut reference = std::ptr::null_mut();
    // SAFETY: a live value of this callback, on the JS thread.
    let status = unsafe { napi::sys::napi_create_reference(env.raw(), array.value().value, 1, &mut reference) };
    if status != napi::sys::Status::napi_ok {
        return Err(napi::Error::from_reason("could not hold the response body"));
    }
    let bytes: &[u8] = array.as_ref();
    Ok(bytes::Bytes::from_owner(LentBody {
        data: bytes.as_ptr(),
        len: bytes.len(),
        reference: Some(LentRef(reference)),
        doorbell: doorbell.clone(),
    }))
}

fn latin1<'e>(env: &'e Env, bytes: &[u8]) -> Result<JsString<'e>> {
    env.create_string_latin1(bytes)
}

impl Core {
    pub fn new(options: NativeOptions) -> Result<Self> {
        let config = ServerConfig::from_options(&options)?;
        Ok(Core {
            config,
            js: JsSide::new(Arc::new(Doorbell::new())),
            stats: Arc::new(Stats::new()),
            runtime: None,
            phase: None,
            heads: Vec::new(),
        })
    }

    /// Binds the socket and starts serving; returns the bound port.
    pub fn listen(&mut self, doorbell: Function<(), ()>) -> Result<u32> {
        if self.runtime.is_some() {
            return Err(invalid_state("the server is already listening"));
        }
        let std_listener = listener::bind(&self.config)?;
        let local = std_listener.local_addr().map_err(|e| BridgeError::new(ErrorKind::Listen, e.to_string()))?;
        let park_doorbell = self.js.doorbell.clone();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(self.config.worker_threads)
            .thread_name("fetch-rs")
            // A worker out of work rings JS for everything it queued meanwhile: one
            // wake-up per round of network events instead of one per request.
            .on_thread_park(move || {
                park_doorbell.ring_if_waiting();
                alloc::give_back_released();
            })
            .enable_all()
            .build()
            .map_err(|e| BridgeError::new(ErrorKind::Listen, format!("cannot start the runtime: {e}")))?;
        let tsfn = doorbell.build_threadsafe_function::<()>().callee_handled::<false>().build_callback(|_| Ok(()))?;
        self.js.doorbell.set_callback(Some(tsfn));
        let (phase_tx, phase_rx) = watch::channel(Phase::Running);
        let shared = Arc::new(ServerShared::new(
            self.js.doorbell.clone(),
            self.stats.clone(),
            self.config.clone(),
            phase_rx,
            local.to_string(),
        ));
        runtime.spawn(self.js.doorbell.clone().deliver_replies());
        let _enter = runtime.enter();
        runtime.spawn(listener::accept_loop(std_listener, shared));
        drop(_enter);
        self.runtime = Some(runtime);
        self.phase = Some(phase_tx);
        Ok(local.port() as u32)
    }

    /// Writes `[kind, id, arg, urlLength]` records for queued events, and the head text of
    /// each REQUEST record (`request::HeadText`: URL, then packed headers) into `texts[0..]`
    /// in order, one string each; returns the number of records.
    ///
    /// One string per request, not one per batch that JS would slice: a slice keeps its
    /// whole parent string alive, so a URL or header value an application keeps (a cache
    /// key, a session map) would hold every head of its batch.
    pub fn drain(&mut self, env: &Env, mut records: Uint32ArraySlice<'_>, texts: &mut Object<'_>) -> Result<u32> {
        // SAFETY: JS is blocked in this call, so nothing else touches the array's memory.
        let records = unsafe { records.as_mut() };
        let n = self.js.drain(records, &mut self.heads) as u32;
        for (k, head) in self.heads.drain(..).enumerate() {
            texts.set_element(k as u32, latin1(env, &head.bytes)?)?;
        }
        for r in self.js.take_releases() {
            // SAFETY: each reference was created by `lend` in this env, and is deleted once.
            unsafe { napi::sys::napi_delete_reference(env.raw(), r.0) };
        }
        Ok(n)
    }

    /// Rings the doorbell again if events are still queued.
    pub fn reschedule(&self) {
        self.js.doorbell.reschedule();
    }

    /// Sends the replies gathered since the last flush, with one wake-up.
    pub fn flush(&mut self) {
        self.js.flush();
    }

    pub fn request_method(&self, id: u32) -> Option<String> {
        Some(self.js.slab.get(SlotId(id))?.req.method.as_str().to_string())
    }

    pub fn request_client_address(&self, id: u32) -> Option<String> {
        let live = self.js.slab.get(SlotId(id))?;
        let ip = live.req.remote.ip();
        // Show IPv4 clients of a dual-stack socket as plain IPv4.
        Some(match ip {
            std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map(|v4| v4.to_string()).unwrap_or_else(|| v6.to_string()),
            v4 => v4.to_string(),
        })
    }

    /// Frees the slot. A request still unanswered gets a 500.
    pub fn request_release(&mut self, id: u32) {
        if let Some(mut live) = self.js.slab.remove(SlotId(id)) {
            if let Some(tx) = live.req.reply.take() {
                self.js.outbox.push((tx, response::status_only(500)));
            }
        }
    }

    /// The whole request body: a Buffer when it is here, `null` when a BODY_FULL or
    /// BODY_ERROR record will follow. Throws once the body failed or was taken.
    pub fn body_collect<'e>(&mut self, env: &'e Env, id: u32) -> Result<Option<BufferSlice<'e>>> {
        let limit = self.config.max_body_size;
        let rt = self.runtime.as_ref().map(|r| r.handle().clone());
        let doorbell = self.js.doorbell.clone();
        let Some(live) = self.js.slab.get_mut(SlotId(id)) else {
            return Err(invalid_state("the request is no longer available"));
        };
        match std::mem::replace(&mut live.body, BodyState::Taken) {
            BodyState::None => to_buffer(env, bytes::Bytes::new()).map(Some),
            BodyState::Buffered(b) => to_buffer(env, b).map(Some),
            BodyState::Unread(incoming) => {
                let Some(rt) = rt else { return Err(invalid_state("the server is closed")) };
                let (cancel_tx, cancel_rx) = oneshot::channel();
                live.cancel_reader = Some(cancel_tx);
                live.body = BodyState::Collecting;
                body::spawn_body_reader(&rt, incoming, id, limit, ReadMode::Collect, doorbell, cancel_rx);
                Ok(None)
            }
            BodyState::Collecting => {
                live.body = BodyState::Collecting;
                Ok(None)
            }
            BodyState::Failed(kind) => {
                live.body = BodyState::Failed(kind);
                Err(body_error(kind))
            }
            BodyState::Streaming { .. } | BodyState::Taken => Err(invalid_state("the body was already read")),
        }
    }

    /// The next chunk of a streamed request body: a Buffer, `PULL_END` at the end, or
    /// `PULL_PENDING` when a BODY_DATA / BODY_END / BODY_ERROR record will follow.
    pub fn body_pull<'e>(&mut self, env: &'e Env, id: u32) -> Result<Either<BufferSlice<'e>, u32>> {
        let limit = self.config.max_body_size;
        let rt = self.runtime.as_ref().map(|r| r.handle().clone());
        let doorbell = self.js.doorbell.clone();
        let Some(live) = self.js.slab.get_mut(SlotId(id)) else {
            return Err(invalid_state("the request is no longer available"));
        };
        match &mut live.body {
            BodyState::None | BodyState::Taken => Ok(Either::B(PULL_END)),
            BodyState::Buffered(_) => {
                let BodyState::Buffered(b) = std::mem::replace(&mut live.body, BodyState::Taken) else {
                    unreachable!()
                };
                if b.is_empty() {
                    return Ok(Either::B(PULL_END));
                }
                Ok(Either::A(to_buffer(env, b)?))
            }
            BodyState::Unread(_) => {
                let Some(rt) = rt else { return Err(invalid_state("the server is closed")) };
                let credit = Arc::new(Notify::new());
                let BodyState::Unread(incoming) = std::mem::replace(
                    &mut live.body,
                    BodyState::Streaming { credit: credit.clone(), chunks: VecDeque::new(), ended: false },
                ) else {
                    unreachable!()
                };
                let (cancel_tx, cancel_rx) = oneshot::channel();
                live.cancel_reader = Some(cancel_tx);
                credit.notify_one();
                body::spawn_body_reader(&rt, incoming, id, limit, ReadMode::Stream(credit), doorbell, cancel_rx);
                Ok(Either::B(PULL_PENDING))
            }
            BodyState::Streaming { credit, chunks, ended } => {
                if let Some(chunk) = chunks.pop_front() {
                    return Ok(Either::A(BufferSlice::copy_from(env, &chunk)?));
                }
                if *ended {
                    live.body = BodyState::Taken;
                    return Ok(Either::B(PULL_END));
                }
                credit.notify_one();
                Ok(Either::B(PULL_PENDING))
            }
            BodyState::Collecting => Err(invalid_state("the body is being read")),
            BodyState::Failed(kind) => Err(body_error(*kind)),
        }
    }

    /// Replies with a UTF-8 text body.
    pub fn respond_text(
        &mut self,
        id: u32,
        status: u32,
        ct: u32,
        headers: Option<Vec<String>>,
        body: String,
        release: bool,
    ) -> Result<()> {
        self.respond(id, status, ct, headers, ResponseBody::full(bytes::Bytes::from(body)), release)
    }

    /// Replies with a byte body (copied).
    pub fn respond_bytes(
        &mut self,
        id: u32,
        status: u32,
        ct: u32,
        headers: Option<Vec<String>>,
        body: &[u8],
        release: bool,
    ) -> Result<()> {
        self.respond(id, status, ct, headers, ResponseBody::full(bytes::Bytes::copy_from_slice(body)), release)
    }

    /// Replies with a large byte body without copying it: the typed array is held
    /// (a napi reference) until hyper has written it.
    #[allow(clippy::too_many_arguments)]
    pub fn respond_bytes_shared(
        &mut self,
        env: &Env,
        id: u32,
        status: u32,
        ct: u32,
        headers: Option<Vec<String>>,
        body: Uint8ArraySlice<'_>,
        release: bool,
    ) -> Result<()> {
        let bytes = lend(env, &self.js.doorbell, body)?;
        self.respond(id, status, ct, headers, ResponseBody::full(bytes), release)
    }

    /// Replies with no body.
    pub fn respond_empty(
        &mut self,
        id: u32,
        status: u32,
        ct: u32,
        headers: Option<Vec<String>>,
        release: bool,
    ) -> Result<()> {
        self.respond(id, status, ct, headers, ResponseBody::Empty, release)
    }

    /// Starts a streamed reply; chunks follow with `streamWrite`, then `streamEnd`.
    pub fn respond_stream(&mut self, id: u32, status: u32, ct: u32, headers: Option<Vec<String>>) -> Result<()> {
        let (tx, rx) = tokio::sync::mpsc::channel(RESPONSE_STREAM_CHUNKS);
        let waiting = Arc::new(AtomicBool::new(false));
        let body = ResponseBody::Stream(StreamBody::new(rx, waiting.clone(), self.js.doorbell.clone(), id));
        self.respond(id, status, ct, headers, body, false)?;
        if let Some(live) = self.js.slab.get_mut(SlotId(id)) {
            live.stream = Some(ResponseStream { tx, waiting });
        }
        // The head goes out now; chunks may take a while to follow.
        self.js.flush();
        Ok(())
    }

    /// Queues a chunk of a streamed reply. `false`: the queue is full, nothing was
    /// taken; call again after a WRITABLE record. Throws when the client is gone.
    pub fn stream_write(&mut self, id: u32, chunk: &[u8]) -> Result<bool> {
        self.stream_send(id, bytes::Bytes::copy_from_slice(chunk))
    }

    /// `streamWrite` for a large chunk, lent instead of copied (JS must not change it).
    pub fn stream_write_shared(&mut self, env: &Env, id: u32, chunk: Uint8ArraySlice<'_>) -> Result<bool> {
        let bytes = lend(env, &self.js.doorbell, chunk)?;
        self.stream_send(id, bytes)
    }
}

impl Core {
    fn stream_send(&mut self, id: u32, chunk: bytes::Bytes) -> Result<bool> {
        let Some(stream) = self.js.slab.get_mut(SlotId(id)).and_then(|l| l.stream.as_mut()) else {
            return Err(invalid_state("the response stream is closed"));
        };
        stream.waiting.store(true, Ordering::SeqCst);
        match stream.tx.try_send(StreamItem::Data(chunk)) {
            Ok(()) => {
                stream.waiting.store(false, Ordering::SeqCst);
                Ok(true)
            }
            Err(tokio::sync::mpsc::error::TrySendError::Full(_)) => Ok(false),
            Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => {
                if let Some(l) = self.js.slab.get_mut(SlotId(id)) {
                    l.stream = None;
                }
                Err(invalid_state("the response stream is closed"))
            }
        }
    }
}

impl Core {
    /// Ends a streamed reply; `failed` cuts it off so the client sees an incomplete body.
    pub fn stream_end(&mut self, id: u32, failed: bool) {
        if let Some(stream) = self.js.slab.get_mut(SlotId(id)).and_then(|l| l.stream.take()) {
            if failed {
                // Only the error item makes hyper cut the body off; a channel that just
                // closes would look like a complete body. When the queue is full, a task
                // waits for room instead of blocking the JS thread.
                if stream.tx.try_send(StreamItem::Error).is_err() {
                    let tx = stream.tx.clone();
                    if let Some(rt) = self.runtime.as_ref() {
                        rt.spawn(async move {
                            let _ = tx.send(StreamItem::Error).await;
                        });
                    }
                }
            }
        }
    }

    /// Starts a graceful close: stop accepting, let in-flight requests finish, close
    /// idle connections; after `graceMs` (0: wait forever) force the rest. A CLOSED
    /// record follows when no connection is left.
    pub fn close(&mut self, grace_ms: f64) -> Result<()> {
        let (Some(rt), Some(phase)) = (self.runtime.as_ref(), self.phase.clone()) else {
            return Err(invalid_state("the server is not listening"));
        };
        if *phase.borrow() != Phase::Running {
            return Ok(());
        }
        let _ = phase.send(Phase::Draining);
        let stats = self.stats.clone();
        let doorbell = self.js.doorbell.clone();
        let grace = if grace_ms > 0.0 && grace_ms.is_finite() {
            Some(Duration::from_secs_f64(grace_ms / 1000.0))
        } else {
            None
        };
        rt.spawn(async move {
            let started = tokio::time::Instant::now();
            // Polling keeps this free of lost-wake-up races; close() is not hot.
            let tick = Duration::from_millis(5);
            while stats.active_connections.load(Ordering::Relaxed) > 0 {
                if grace.is_some_and(|g| started.elapsed() >= g) {
                    let _ = phase.send(Phase::Forced);
                }
                tokio::time::sleep(tick).await;
            }
            doorbell.push_now(bridge::Event::Closed);
        });
        Ok(())
    }

    /// Forces every connection closed now (after or instead of a graceful close).
    pub fn force_close(&mut self) {
        if let Some(phase) = self.phase.as_ref() {
            let _ = phase.send(Phase::Forced);
        }
    }

    /// The JS environment that owns this server is going away (its worker thread ends,
    /// or the process exits): drop every connection and stop the runtime's threads before
    /// the environment's memory goes. The wait is bounded (a worker only has to finish its
    /// current poll); threads still running after it only run the addon's code, which
    /// stays loaded for the life of the process (build.rs).
    fn shut_down_for_env_exit(&mut self) {
        self.force_close();
        self.js.doorbell.set_callback(None);
        self.js.slab.clear();
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(Duration::from_secs(2));
        }
    }

    /// Releases the doorbell and the runtime once closed, so nothing keeps Node's event
    /// loop alive. Unanswered requests are dropped.
    pub fn shutdown(&mut self) {
        self.js.doorbell.set_callback(None);
        self.js.slab.clear();
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }

    /// `[activeConnections, totalRequests, requestsPerSecond, avgLatencyMs, pendingRequests]`.
    pub fn stats(&self) -> Vec<f64> {
        let s = self.stats.snapshot();
        vec![s.active_connections, s.total_requests, s.requests_per_second, s.avg_latency_ms, s.pending_requests]
    }

    /// Requests held by the JS thread (for tests of slot reuse and leaks).
    pub fn live_requests(&self) -> u32 {
        self.js.slab.len() as u32
    }
}

impl Core {
    /// Queues the reply for the next flush (nothing when the slot is gone); with
    /// `release`, also frees the slot.
    fn respond(
        &mut self,
        id: u32,
        status: u32,
        ct: u32,
        headers: Option<Vec<String>>,
        body: ResponseBody,
        release: bool,
    ) -> Result<()> {
        let head = self.js.slab.get_mut(SlotId(id)).is_some_and(|l| l.req.method == http::Method::HEAD);
        let reply = response::build(status, ct, headers.as_deref(), body, head)?;
        let Some(live) = self.js.slab.get_mut(SlotId(id)) else { return Ok(()) };
        if let Some(tx) = live.req.reply.take() {
            self.js.outbox.push((tx, reply));
        }
        if release {
            self.js.slab.remove(SlotId(id));
        }
        Ok(())
    }
}

fn body_error(kind: body::BodyErrorKind) -> napi::Error {
    match kind {
        body::BodyErrorKind::TooLarge => {
            napi::Error::new(Status::GenericFailure, "[ERR_BODY_TOO_LARGE] the request body is larger than maxBodySize")
        }
        body::BodyErrorKind::Aborted => {
            napi::Error::new(Status::GenericFailure, "[ERR_BODY_ABORTED] the client aborted the request body")
        }
    }
}

// ---- the napi surface: a class for a server's life, plain functions for its requests

thread_local! {
    /// The servers created on this JS thread, by handle (index); `None` once finalized.
    static SERVERS: std::cell::RefCell<Vec<Option<Core>>> = const { std::cell::RefCell::new(Vec::new()) };
}

thread_local! {
    /// Whether this JS thread's environment has the cleanup hook below.
    static ENV_HOOKED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Registers, once per JS thread, a hook that shuts this thread's servers down when its
/// environment is torn down (worker.terminate(), process.exit() in a worker, a worker
/// whose event loop ran dry with a server never closed). Without it the runtimes would
/// go only when V8 finalizes the server objects or the thread's locals are destroyed,
/// whichever comes first, with tokio threads possibly still polling connections.
fn hook_env_cleanup(env: &Env) -> Result<()> {
    if ENV_HOOKED.with(|h| h.replace(true)) {
        return Ok(());
    }
    env.add_env_cleanup_hook((), |()| {
        ENV_HOOKED.with(|h| h.set(false));
        // Taken out first, shut down after the borrow ends.
        let cores: Vec<Core> = SERVERS
            .try_with(|servers| {
                servers
                    .try_borrow_mut()
                    .map(|mut s| s.iter_mut().filter_map(Option::take).collect())
                    .unwrap_or_default()
            })
            .unwrap_or_default();
        for mut core in cores {
            core.shut_down_for_env_exit();
        }
    })?;
    Ok(())
}

/// Runs `f` on the server `handle`. Every caller runs on the JS thread, and none calls
/// back into JS while it holds the server, so the borrow is never contended.
fn with_core<R>(handle: u32, f: impl FnOnce(&mut Core) -> Result<R>) -> Result<R> {
    SERVERS.with(|servers| {
        let mut servers = servers.try_borrow_mut().map_err(|_| invalid_state("the server is busy"))?;
        match servers.get_mut(handle as usize).and_then(Option::as_mut) {
            Some(core) => f(core),
            None => Err(invalid_state("the server is gone")),
        }
    })
}

/// A server's handle and its lifetime: creating one registers a `Core`, and garbage
/// collection of the object drops it. The per-request calls are the functions below.
#[napi]
pub struct NativeServer {
    handle: u32,
}

#[napi]
impl NativeServer {
    #[napi(constructor)]
    pub fn new(env: Env, options: NativeOptions) -> Result<Self> {
        let core = Core::new(options)?;
        hook_env_cleanup(&env)?;
        let handle = SERVERS.with(|servers| {
            let mut servers = servers.borrow_mut();
            match servers.iter().position(Option::is_none) {
                Some(i) => {
                    servers[i] = Some(core);
                    i
                }
                None => {
                    servers.push(Some(core));
                    servers.len() - 1
                }
            }
        });
        Ok(NativeServer { handle: handle as u32 })
    }

    /// The handle the per-request functions take.
    #[napi(getter)]
    pub fn handle(&self) -> u32 {
        self.handle
    }

    /// Binds the socket and starts serving; returns the bound port.
    #[napi(catch_unwind)]
    pub fn listen(&self, doorbell: Function<(), ()>) -> Result<u32> {
        with_core(self.handle, |c| c.listen(doorbell))
    }

    /// Starts a graceful close: stop accepting, let in-flight requests finish, close
    /// idle connections; after `graceMs` (0: wait forever) force the rest. A CLOSED
    /// record follows when no connection is left.
    #[napi(catch_unwind)]
    pub fn close(&self, grace_ms: f64) -> Result<()> {
        with_core(self.handle, |c| c.close(grace_ms))
    }

    /// Forces every connection closed now (after or instead of a graceful close).
    #[napi(catch_unwind)]
    pub fn force_close(&self) -> Result<()> {
        with_core(self.handle, |c| {
            c.force_close();
            Ok(())
        })
    }

    /// Releases the doorbell and the runtime once closed, so nothing keeps Node's event
    /// loop alive. Unanswered requests are dropped.
    #[napi(catch_unwind)]
    pub fn shutdown(&self) -> Result<()> {
        with_core(self.handle, |c| {
            c.shutdown();
            Ok(())
        })
    }

    /// `[activeConnections, totalRequests, requestsPerSecond, avgLatencyMs, pendingRequests]`.
    #[napi(catch_unwind)]
    pub fn stats(&self) -> Result<Vec<f64>> {
        with_core(self.handle, |c| Ok(c.stats()))
    }

    /// Requests held by the JS thread (for tests of slot reuse and leaks).
    #[napi(catch_unwind)]
    pub fn live_requests(&self) -> Result<u32> {
        with_core(self.handle, |c| Ok(c.live_requests()))
    }
}

impl Drop for NativeServer {
    fn drop(&mut self) {
        // Taken out first, dropped after the borrow: dropping a runtime may take a while.
        // try_with: a worker thread's table may already be gone when its env is torn down.
        let core = SERVERS
            .try_with(|servers| {
                servers.try_borrow_mut().ok().and_then(|mut s| s.get_mut(self.handle as usize).and_then(Option::take))
            })
            .ok()
            .flatten();
        drop(core);
    }
}

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
