//! A server's native state (`Core`) and every operation the JS thread asks of it: listen,
//! drain, reply, read bodies, stream, close. Reached through `registry::with_core`.

use crate::body::{self, ReadMode, ResponseBody, StreamBody, StreamItem, RESPONSE_STREAM_CHUNKS};
use crate::bridge::{self, Doorbell};
use crate::connection::{Phase, ServerShared};
use crate::error::{BridgeError, BridgeResult, ErrorKind};
use crate::in_thread::Noted;
use crate::js_side::{JsSide, Payload, SHARED_ARENA};
use crate::lending::{self, lend, JsBody};
use crate::options::{NativeOptions, ServerConfig};
use crate::response::HeaderList;
use crate::slab::{BodyState, ResponseStream, SlotId};
use crate::stats::Stats;
use crate::wire::{self, COLLECT_DEFERRED, PULL_END, PULL_PENDING};
use crate::{alloc, listener, options, response, tls, websocket};
use napi::bindgen_prelude::*;
use napi::{Env, JsString};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{oneshot, watch, Notify};

/// The native half of a server, kept in the JS thread's `SERVERS` table and reached by
/// its handle: the per-request calls are plain functions bound to the handle
/// (`calls(handle).respondText(…)`, calls.rs), which cost several times less than class
/// methods (no unwrap, type tag or borrow registry per call; measured 150-220 ns against
/// 410-770 ns per call).
pub struct Core {
    config: ServerConfig,
    js: JsSide,
    stats: Arc<Stats>,
    runtime: Option<tokio::runtime::Runtime>,
    phase: Option<watch::Sender<Phase>>,
    /// The payloads of the records `drain` is handing over (emptied each time).
    heads: Vec<Payload>,
    /// An HTTPS server's certificates, once listening (`setTls` swaps them here).
    tls: Option<Arc<tls::TlsAcceptor>>,
    /// PROTOTYPE: the in-thread network (`FETCH_RS_IN_THREAD=1`), instead of `runtime`.
    local: Option<*const crate::in_thread::LocalDriver>,
    /// The memory of the ArrayBuffer `wsStage` registered: small binary sends are copied
    /// there by JS (`wsSendStaged`). Null until then.
    ws_stage: *mut u8,
    ws_stage_len: usize,
    /// The memory and length of each ArrayBuffer of small binary messages the last `drain`
    /// made (`arena_buffer`), by number: a staged send with `WS_STAGE_VIEW` names a message
    /// in one of them, read from there without JS's copy. A pointer is only read for a
    /// message JS still holds a view of (which keeps its ArrayBuffer alive), and only for
    /// as many bytes as the view has now (none once its ArrayBuffer is detached).
    ws_views: Vec<(*const u8, usize)>,
    /// As `ws_views`, for the ArrayBuffers of larger binary messages (`js_side::Shared`,
    /// numbered with `SHARED_ARENA`).
    ws_shared_views: Vec<(*const u8, usize)>,
    /// The `[id, flags]` words of `respondTextStaged` (`respond_stage`); null until JS
    /// registers them.
    respond_stage: *const u32,
    /// Declared-length bodies whose Buffer waits for a later turn, in the order JS asked
    /// for them (`body_collect`, `body_resume`).
    deferred: VecDeque<u32>,
    /// The socket file of a server on a Unix socket: dropped (removed) by `close`.
    socket_file: Option<listener::SocketFile>,
}

pub(crate) fn invalid_state(msg: &str) -> BridgeError {
    BridgeError::new(ErrorKind::InvalidState, msg)
}

fn latin1<'e>(env: &'e Env, bytes: &[u8]) -> napi::Result<JsString<'e>> {
    env.create_string_latin1(bytes)
}

/// A Buffer V8 allocates (as `BufferSlice::copy_from` makes) holding `masked` unmasked:
/// the copy is the unmasking pass.
fn unmasked_buffer<'e>(env: &'e Env, masked: &[u8], mask: [u8; 4]) -> napi::Result<BufferSlice<'e>> {
    let raw = env.raw();
    let mut value = std::ptr::null_mut();
    let mut data = std::ptr::null_mut();
    let mut len = 0usize;
    // SAFETY: plain Node-API calls on the JS thread with its env; the Buffer's memory is
    // `len` bytes that nothing else sees until it is filled and handed to JS.
    unsafe {
        napi::check_status!(napi::sys::napi_create_buffer(raw, masked.len(), &mut data, &mut value))?;
        // The create call's own pointer is not the data on every target (lending.rs).
        napi::check_status!(napi::sys::napi_get_buffer_info(raw, value, &mut data, &mut len))?;
        if len == masked.len() && !data.is_null() {
            let dst = std::slice::from_raw_parts_mut(data.cast::<u8>(), len);
            websocket::unmask_into_any(dst, masked, mask);
        } else if !masked.is_empty() {
            return Err(napi::Error::from_reason("could not allocate a WebSocket message"));
        }
        BufferSlice::from_napi_value(raw, value)
    }
}

/// An ArrayBuffer holding a copy of a drain's arena of small WebSocket messages, made as
/// Node makes a Buffer: its memory is not zeroed first, where `napi_create_arraybuffer`'s
/// is (a `calloc`, whose zeroing of each arena, at once overwritten by the copy, cost about
/// 60 instructions a message).
fn arena_buffer(env: &Env, bytes: &[u8]) -> napi::Result<(napi::sys::napi_value, *const u8)> {
    let (buffer, data) = uninit_arena(env, bytes.len())?;
    if !bytes.is_empty() {
        // SAFETY: `data` is `bytes.len()` bytes of the new ArrayBuffer, not yet seen by JS.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), data, bytes.len()) };
    }
    Ok((buffer, data.cast_const()))
}

/// An ArrayBuffer of `size` bytes, not zeroed where Node does not (`arena_buffer`), and its
/// memory, for the caller to fill before JS sees it.
fn uninit_arena(env: &Env, size: usize) -> napi::Result<(napi::sys::napi_value, *mut u8)> {
    let raw = env.raw();
    let mut value = std::ptr::null_mut();
    let mut data = std::ptr::null_mut();
    let mut kind = 0;
    let mut len = 0usize;
    let mut buffer = std::ptr::null_mut();
    let mut offset = 0usize;
    // SAFETY: plain Node-API calls on the JS thread with its env; the Buffer's memory is
    // `len` bytes that nothing else sees until it is filled and handed to JS.
    unsafe {
        napi::check_status!(napi::sys::napi_create_buffer(raw, size, &mut data, &mut value))?;
        napi::check_status!(napi::sys::napi_get_typedarray_info(
            raw,
            value,
            &mut kind,
            &mut len,
            &mut data,
            &mut buffer,
            &mut offset
        ))?;
        // A Buffer with an ArrayBuffer of its own, as Node makes them from C++; anything
        // else (a slice of a pool) is not what JS may read whole: the plain way then.
        if offset != 0 || len != size || data.is_null() {
            data = std::ptr::null_mut();
            napi::check_status!(napi::sys::napi_create_arraybuffer(raw, size, &mut data, &mut buffer))?;
        }
    }
    if data.is_null() && size != 0 {
        return Err(napi::Error::from_reason("could not allocate WebSocket messages"));
    }
    Ok((buffer, data.cast()))
}

/// A JS string of ASCII bytes, made as Latin-1 (the same characters): a copy, where V8
/// decodes UTF-8 a character at a time (about 100 instructions for 64 bytes, callgrind).
fn latin1_string(env: &Env, ascii: &[u8]) -> napi::Result<napi::sys::napi_value> {
    let mut v = std::ptr::null_mut();
    // SAFETY: a plain Node-API call with the running call's env; V8 copies the bytes.
    napi::check_status!(unsafe {
        napi::sys::napi_create_string_latin1(env.raw(), ascii.as_ptr().cast(), ascii.len() as isize, &mut v)
    })?;
    Ok(v)
}

impl Core {
    pub fn new(options: NativeOptions) -> BridgeResult<Self> {
        let config = ServerConfig::from_options(&options)?;
        let stats = Arc::new(Stats::with_workers(config.worker_threads.max(1)));
        Ok(Core {
            config,
            js: JsSide::new(Arc::new(Doorbell::new())),
            stats,
            runtime: None,
            phase: None,
            heads: Vec::new(),
            tls: None,
            local: None,
            ws_stage: std::ptr::null_mut(),
            ws_stage_len: 0,
            ws_views: Vec::new(),
            ws_shared_views: Vec::new(),
            respond_stage: std::ptr::null(),
            deferred: VecDeque::new(),
            socket_file: None,
        })
    }

    /// Binds the socket and starts serving; returns the bound port.
    pub fn listen(&mut self, doorbell: Function<(), ()>) -> BridgeResult<u32> {
        if self.runtime.is_some() || self.local.is_some() {
            return Err(invalid_state("the server is already listening"));
        }
        // Certificates first: a bad one rejects `listen()` before the port is taken.
        let tls = match &self.config.tls {
            Some(entries) => Some(Arc::new(tls::TlsAcceptor::new(entries, self.config.http2)?)),
            None => None,
        };
        let (std_listener, port, socket_file) = listener::bind(&self.config)?.split()?;
        // The authority of the URL of a request without a Host: the bound address, or for a
        // Unix socket (which has none) "localhost", as Bun's and Deno's URLs are http ones.
        let local = if self.config.unix.is_some() {
            "localhost".to_string()
        } else {
            std::net::SocketAddr::new(self.config.host, port).to_string()
        };
        let (phase_tx, phase_rx) = watch::channel(Phase::Running);
        let shared = Arc::new(
            ServerShared::new(self.js.doorbell.clone(), self.stats.clone(), self.config.clone(), phase_rx, local)
                .with_tls(tls.clone()),
        );
        // FETCH_RS_IN_THREAD=1 forces the in-thread network for every server: a way to run
        // the whole test suite in that mode (docs/network-thread.md).
        let in_thread =
            self.config.worker_threads == 0 || std::env::var_os("FETCH_RS_IN_THREAD").is_some_and(|v| v == "1");
        let driver = if in_thread {
            use napi::JsValue;
            let v = doorbell.value();
            match crate::in_thread::LocalDriver::start(v.env, v.value, self.js.doorbell.clone()) {
                Ok(d) => Some(d),
                // Chosen for one core by default: where Node's loop cannot drive it, the
                // worker thread does.
                Err(_) if !self.config.worker_threads_set => None,
                Err(e) => return Err(BridgeError::new(ErrorKind::Listen, e)),
            }
        } else {
            None
        };
        if let Some(driver) = driver {
            // Every count is made on this thread from now on.
            self.stats.set_one_thread();
            // SAFETY: alive until `LocalDriver::close`.
            let handle = unsafe { (*driver).handle() };
            // No reply task: the flush wakes the connection tasks and writes to sockets itself.
            handle.spawn(Noted::new(listener::accept_loop(std_listener, shared)));
            self.local = Some(driver);
            self.js.write_here = true;
        } else {
            let park_doorbell = self.js.doorbell.clone();
            let stats = self.stats.clone();
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(self.config.worker_threads.max(1))
                .thread_name("fetch-rs")
                // Each worker counts requests in a shard of its own (stats.rs).
                .on_thread_start(move || stats.enter_worker())
                // A worker out of work rings JS for everything it queued meanwhile: one
                // wake-up per round of network events instead of one per request.
                .on_thread_park(move || {
                    park_doorbell.ring_if_waiting();
                    alloc::give_back_released();
                })
                .enable_all()
                .build()
                .map_err(|e| BridgeError::new(ErrorKind::Listen, format!("cannot start the runtime: {e}")))?;
            let tsfn =
                doorbell.build_threadsafe_function::<()>().callee_handled::<false>().build_callback(|_| Ok(()))?;
            self.js.doorbell.set_callback(Some(tsfn));
            runtime.spawn(self.js.doorbell.clone().deliver_replies());
            let _enter = runtime.enter();
            runtime.spawn(listener::accept_loop(std_listener, shared));
            drop(_enter);
            self.runtime = Some(runtime);
        }
        self.tls = tls;
        self.phase = Some(phase_tx);
        self.socket_file = socket_file;
        Ok(u32::from(port))
    }

    fn rt_handle(&self) -> Option<tokio::runtime::Handle> {
        if let Some(d) = self.local {
            // SAFETY: alive until `LocalDriver::close`, which also clears `local`.
            return Some(unsafe { (*d).handle() });
        }
        self.runtime.as_ref().map(|r| r.handle().clone())
    }

    /// Writes `[kind, id, arg, urlLength]` records for queued events, and the payload of
    /// each WebSocket record that has one into `texts[0..]` in order; returns the number of
    /// records. A REQUEST record's head text is asked for with `request_head`.
    pub fn drain(&mut self, env: &Env, mut records: Uint32ArraySlice<'_>, texts: &mut Object<'_>) -> BridgeResult<u32> {
        // SAFETY: JS is blocked in this call, so nothing else touches the array's memory.
        let records = unsafe { records.as_mut() };
        // The last drain's arenas are kept until now: a staged send of a text message JS
        // was given reads its bytes there (`ws_send_staged`).
        self.js.clear_arenas();
        let n = self.js.drain(records, &mut self.heads) as u32;
        let mut arenas = Vec::new();
        self.ws_views.clear();
        for a in self.js.arenas() {
            let (buffer, data) = arena_buffer(env, a)?;
            arenas.push(buffer);
            self.ws_views.push((data, a.len()));
        }
        let mut shared = Vec::new();
        self.ws_shared_views.clear();
        let placed = self.js.shared_arenas();
        for &size in &placed.sizes {
            let (buffer, data) = uninit_arena(env, size)?;
            shared.push(buffer);
            self.ws_shared_views.push((data.cast_const(), size));
        }
        for (arena, offset, bytes, mask) in placed.messages.drain(..) {
            // Always there: `Shared::add` kept each message within its ArrayBuffer's size.
            if let Some(&(data, size)) = self.ws_shared_views.get(arena) {
                if offset + bytes.len() <= size && !bytes.is_empty() {
                    // SAFETY: these bytes of the ArrayBuffer made above, not yet seen by JS,
                    // are this message's alone.
                    let dst = unsafe { std::slice::from_raw_parts_mut(data.cast_mut().add(offset), bytes.len()) };
                    websocket::unmask_into_any(dst, &bytes, mask);
                }
            }
        }
        let mut text_arenas = Vec::new();
        for a in self.js.text_arenas() {
            // ASCII only (`JsSide::pooled`).
            text_arenas.push(latin1_string(env, a)?);
        }
        let texts_raw = texts.raw();
        // SAFETY: both values belong to this call's env.
        let set = |k: usize, v| {
            napi::check_status!(unsafe { napi::sys::napi_set_element(env.raw(), texts_raw, k as u32, v) })
        };
        for (k, payload) in self.heads.drain(..).enumerate() {
            match payload {
                // Always there: `drain` numbered the arenas it filled.
                Payload::Pooled(i) => {
                    if let Some(&arena) = arenas.get(i) {
                        set(k, arena)?
                    }
                }
                Payload::Shared(i) => {
                    if let Some(&arena) = shared.get(i) {
                        set(k, arena)?
                    }
                }
                Payload::PooledText(i) => {
                    if let Some(&arena) = text_arenas.get(i) {
                        set(k, arena)?
                    }
                }
                Payload::Text(s) => texts.set_element(k as u32, env.create_string(&s)?)?,
                Payload::Utf8(s) if s.is_ascii() => set(k, latin1_string(env, s.as_str().as_bytes())?)?,
                Payload::Utf8(s) => texts.set_element(k as u32, env.create_string(s.as_str())?)?,
                // Copied into a Buffer V8 allocates, as request bodies are (lending::JsBody),
                // not handed over as an external buffer: those are freed by a finalizer on a
                // later loop turn, and a flood of 64 KiB messages into a handler that keeps
                // the JS thread busy piled 165-240 MiB of them up (`workerThreads: 0`).
                Payload::Binary(b) => texts.set_element(k as u32, BufferSlice::copy_from(env, &b)?)?,
                Payload::Masked(b, mask) => texts.set_element(k as u32, unmasked_buffer(env, &b, mask)?)?,
            }
        }
        for r in self.js.take_releases() {
            // SAFETY: each reference was created by `lend` in this env, and is deleted once.
            unsafe { napi::sys::napi_delete_reference(env.raw(), r.0) };
        }
        Ok(n)
    }

    /// Rings the doorbell again if events are still queued.
    pub fn reschedule(&self) {
        if let Some(d) = self.local {
            // SAFETY: alive until `LocalDriver::close`, which also clears `local`.
            return unsafe { (*d).reschedule() };
        }
        self.js.doorbell.reschedule();
    }

    /// Sends the replies gathered since the last flush, with one wake-up.
    pub fn flush(&mut self) {
        self.js.flush();
    }

    /// The head text of a request JS has not taken yet (`request::HeadText`: the URL, then
    /// the packed headers), as one string; `None` once taken or for an unknown id. Asked for
    /// by each REQUEST record: a native call costs less than setting an element of the
    /// drain's `texts` array from here (a generic property store, about 800 instructions).
    ///
    /// One string per request, not one per batch that JS would slice: a slice keeps its
    /// whole parent string alive, so a URL or header value an application keeps (a cache
    /// key, a session map) would hold every head of its batch.
    pub fn request_head<'e>(&mut self, env: &'e Env, id: u32) -> BridgeResult<Option<JsString<'e>>> {
        let Some(live) = self.js.slab.get_mut(SlotId(id)) else { return Ok(None) };
        let text = std::mem::take(&mut live.req.text);
        Ok(Some(latin1(env, &text.bytes)?))
    }

    pub fn request_method(&self, id: u32) -> Option<String> {
        Some(self.js.slab.get(SlotId(id))?.req.method.as_str().to_string())
    }

    /// None too for a client on a Unix socket, which has no address (Bun's `requestIP`
    /// gives null there).
    pub fn request_client_address(&self, id: u32) -> Option<String> {
        let live = self.js.slab.get(SlotId(id))?;
        if live.req.remote == listener::UNIX_PEER {
            return None;
        }
        let ip = live.req.remote.ip();
        // Show IPv4 clients of a dual-stack socket as plain IPv4.
        Some(match ip {
            std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map(|v4| v4.to_string()).unwrap_or_else(|| v6.to_string()),
            v4 => v4.to_string(),
        })
    }

    pub fn request_client_port(&self, id: u32) -> Option<u32> {
        let remote = self.js.slab.get(SlotId(id))?.req.remote;
        (remote != listener::UNIX_PEER).then_some(u32::from(remote.port()))
    }

    /// Bun's `server.timeout(request, seconds)`: the listener's time limit of a request
    /// still unanswered, counted again from now (`ms`), or none (`ms` 0). Nothing for a
    /// request answered or let go of.
    pub fn request_timeout(&self, id: u32, ms: f64) {
        let Some(live) = self.js.slab.get(SlotId(id)) else { return };
        if !live.req.answerable() {
            return;
        }
        let at = (ms > 0.0).then(|| crate::clock::now().saturating_add((ms * 1e6).min(u64::MAX as f64) as u64));
        live.req.ticket().relimit(&self.js.doorbell, at);
    }

    pub fn request_client_certificate(&self, id: u32) -> Option<tls::ClientCertificateInfo> {
        let live = self.js.slab.get(SlotId(id))?;
        live.req.tls.as_ref()?.client_certificate.as_ref().map(tls::ClientCertificateInfo::from)
    }

    /// New certificates: for new connections at once when listening, else for `listen()`.
    /// A bad entry throws `ERR_TLS_CONFIG` and changes nothing.
    pub fn set_tls(&mut self, entries: Vec<tls::NativeTls>) -> BridgeResult<()> {
        match (&self.tls, self.runtime.is_some() || self.local.is_some()) {
            (Some(acceptor), _) => acceptor.set(&entries)?,
            (None, true) => return Err(invalid_state("the server was started without tls; it cannot switch to HTTPS")),
            (None, false) => {
                tls::CertTable::build(&entries, self.config.http2)?;
                self.config.tls = Some(entries);
            }
        }
        Ok(())
    }

    /// Frees the slot. A request still unanswered gets a 500.
    pub fn request_release(&mut self, id: u32) {
        if let Some(req) = self.js.slab.remove_record(SlotId(id)) {
            if req.answerable() {
                self.js.outbox.extend(req.send_and_release(|| response::status_only(500).into()));
            }
        }
    }

    /// The whole request body: a Buffer when it is here, else `PULL_PENDING` when a
    /// BODY_FULL or BODY_ERROR record will follow, or `COLLECT_DEFERRED` when it will follow
    /// once JS has called `body_resume` on a later turn. Throws once the body failed or was
    /// taken.
    ///
    /// A body of declared length gets its Buffer (V8's memory) when asked for, but one of
    /// `body::DEFER_MIN` or more waits for `body_resume`, which JS calls on the loop's next
    /// turn and which starts at most `body::TURN_BODY_BYTES` of them (or one) a turn; their
    /// bytes wait in the socket meanwhile. Many 1 MiB Buffers allocated in one turn find
    /// V8's young array buffer memory over its threshold at each allocation, so its
    /// scavenges come back to back and promote the bodies in flight, which then wait for a
    /// mark-compact (docs/network-thread.md, "Large request bodies, round six").
    pub fn body_collect<'e>(&mut self, env: &'e Env, id: u32) -> BridgeResult<Either<BufferSlice<'e>, u32>> {
        let limit = self.config.max_body_size;
        let rt = self.rt_handle();
        let doorbell = self.js.doorbell.clone();
        let Some(live) = self.js.slab.get_mut(SlotId(id)) else {
            return Err(invalid_state("the request is no longer available"));
        };
        match std::mem::replace(&mut live.body, BodyState::Taken) {
            BodyState::None => Ok(Either::A(BufferSlice::copy_from(env, [])?)),
            // Copied into memory V8 owns (see `JsBody` for why not an external buffer): a
            // body that came with its head (at most PRECOLLECT_LIMIT), or one the reader
            // collected (chunked, or declared over COLLECT_RESERVE_MAX), the cases that pay
            // this copy on the JS thread.
            BodyState::Buffered(b) => lending::collected_buffer(env, &b).map(Either::A),
            BodyState::Filled(b) => b.into_buffer(env).map(Either::A),
            BodyState::Unread(incoming) => {
                let Some(rt) = rt else { return Err(invalid_state("the server is closed")) };
                // A declared length gets its Buffer now (or on a later turn), filled by the
                // reader: see `JsBody`. Only up to COLLECT_RESERVE_MAX, what a declared
                // length may make the server set aside before the bytes arrive; a longer
                // body is collected as it comes and copied once complete, as a chunked one is.
                let mode = match http_body::Body::size_hint(&incoming).exact() {
                    Some(n) if n <= limit.min(body::COLLECT_RESERVE_MAX) => {
                        if n >= body::DEFER_MIN {
                            alloc::keep_heap_top();
                            live.body = BodyState::Deferred(incoming);
                            self.deferred.push_back(id);
                            return Ok(Either::B(COLLECT_DEFERRED));
                        }
                        ReadMode::CollectInto(JsBody::new(env, &doorbell, n as usize)?)
                    }
                    _ => ReadMode::Collect,
                };
                let (cancel_tx, cancel_rx) = oneshot::channel();
                live.cancel_reader = Some(cancel_tx);
                live.body = BodyState::Collecting;
                if body::spawn_body_reader(&rt, incoming, id, limit, mode, doorbell.clone(), cancel_rx) {
                    // The whole body was there (in-thread): it goes back with this call, not
                    // through a BODY_FULL record and a second call in the drain.
                    let whole = |e: &bridge::Event| match e {
                        bridge::Event::BodyFilled(i, _) | bridge::Event::BodyFull(i, _) => *i == id,
                        _ => false,
                    };
                    let buffer = match doorbell.take_last_if(whole) {
                        Some(bridge::Event::BodyFilled(_, b)) => Some(b.into_buffer(env)),
                        Some(bridge::Event::BodyFull(_, b)) => Some(lending::collected_buffer(env, &b)),
                        _ => None,
                    };
                    if let Some(buffer) = buffer {
                        live.cancel_reader = None;
                        live.body = BodyState::Taken;
                        return buffer.map(Either::A);
                    }
                }
                Ok(Either::B(PULL_PENDING))
            }
            state @ (BodyState::Collecting | BodyState::Deferred(_)) => {
                live.body = state;
                Ok(Either::B(PULL_PENDING))
            }
            BodyState::Failed(kind) => {
                live.body = BodyState::Failed(kind);
                Err(body_error(kind))
            }
            BodyState::Streaming { .. } | BodyState::Taken => Err(invalid_state("the body was already read")),
        }
    }

    /// Starts reading the deferred bodies (`body_collect`) whose Buffers fit in this turn's
    /// `body::TURN_BODY_BYTES` (at least one); JS calls it from a `setImmediate`. Returns
    /// whether any are still waiting (JS then calls it again on the next turn). A body whose
    /// request went away is skipped; one that cannot start (the server closed, or its
    /// Buffer could not be allocated) fails with a BODY_ERROR record.
    pub fn body_resume(&mut self, env: &Env) -> bool {
        // Bytes of the Buffers allocated so far in this turn.
        let mut turn_bytes = 0;
        let limit = self.config.max_body_size;
        let rt = self.rt_handle();
        let doorbell = self.js.doorbell.clone();
        while let Some(&id) = self.deferred.front() {
            let Some(live) = self.js.slab.get_mut(SlotId(id)) else {
                self.deferred.pop_front();
                continue;
            };
            let BodyState::Deferred(incoming) = &live.body else {
                self.deferred.pop_front();
                continue;
            };
            let n = http_body::Body::size_hint(incoming).exact().unwrap_or(0);
            if turn_bytes > 0 && turn_bytes + n > body::TURN_BODY_BYTES {
                break;
            }
            self.deferred.pop_front();
            turn_bytes += n;
            let BodyState::Deferred(incoming) = std::mem::replace(&mut live.body, BodyState::Collecting) else {
                unreachable!()
            };
            let started = rt.as_ref().and_then(|rt| Some((rt, JsBody::new(env, &doorbell, n as usize).ok()?)));
            let Some((rt, into)) = started else {
                doorbell.push_now(bridge::Event::BodyError(id, body::BodyErrorKind::Aborted));
                continue;
            };
            let (cancel_tx, cancel_rx) = oneshot::channel();
            live.cancel_reader = Some(cancel_tx);
            body::spawn_body_reader(rt, incoming, id, limit, ReadMode::CollectInto(into), doorbell.clone(), cancel_rx);
        }
        !self.deferred.is_empty()
    }

    /// The next chunk of a streamed request body: a Buffer, `PULL_END` at the end, or
    /// `PULL_PENDING` when a BODY_DATA / BODY_END / BODY_ERROR record will follow.
    pub fn body_pull<'e>(&mut self, env: &'e Env, id: u32) -> BridgeResult<Either<BufferSlice<'e>, u32>> {
        let limit = self.config.max_body_size;
        let rt = self.rt_handle();
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
                Ok(Either::A(lending::collected_buffer(env, &b)?))
            }
            BodyState::Filled(_) => {
                let BodyState::Filled(b) = std::mem::replace(&mut live.body, BodyState::Taken) else { unreachable!() };
                Ok(Either::A(b.into_buffer(env)?))
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
                let mode = ReadMode::Stream { credit, read_ahead: live.req.http2 };
                body::spawn_body_reader(&rt, incoming, id, limit, mode, doorbell, cancel_rx);
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
            BodyState::Collecting | BodyState::Deferred(_) => Err(invalid_state("the body is being read")),
            BodyState::Failed(kind) => Err(body_error(*kind)),
        }
    }

    /// Replies with a UTF-8 text body (a JS string's encoding, `calls::Utf8`).
    pub fn respond_text(
        &mut self,
        id: u32,
        status: u32,
        ct: u32,
        headers: Option<HeaderList>,
        body: bytes::Bytes,
        release: bool,
    ) -> BridgeResult<()> {
        self.respond(id, status, ct, headers, ResponseBody::full(body), release)
    }

    /// Replies with a byte body (copied).
    pub fn respond_bytes(
        &mut self,
        id: u32,
        status: u32,
        ct: u32,
        headers: Option<HeaderList>,
        body: &[u8],
        release: bool,
    ) -> BridgeResult<()> {
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
        headers: Option<HeaderList>,
        body: Uint8ArraySlice<'_>,
        release: bool,
    ) -> BridgeResult<()> {
        let bytes = lend(env, &self.js.doorbell, body)?;
        self.respond(id, status, ct, headers, ResponseBody::full(bytes), release)
    }

    /// Replies with no body.
    pub fn respond_empty(
        &mut self,
        id: u32,
        status: u32,
        ct: u32,
        headers: Option<HeaderList>,
        release: bool,
    ) -> BridgeResult<()> {
        self.respond(id, status, ct, headers, ResponseBody::Empty, release)
    }

    /// Starts a streamed reply; chunks follow with `streamWrite`, then `streamEnd`.
    pub fn respond_stream(&mut self, id: u32, status: u32, ct: u32, headers: Option<HeaderList>) -> BridgeResult<()> {
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
    pub fn stream_write(&mut self, id: u32, chunk: &[u8]) -> BridgeResult<bool> {
        self.stream_send(id, bytes::Bytes::copy_from_slice(chunk))
    }

    /// `streamWrite` for a large chunk, lent instead of copied (JS must not change it).
    pub fn stream_write_shared(&mut self, env: &Env, id: u32, chunk: Uint8ArraySlice<'_>) -> BridgeResult<bool> {
        let bytes = lend(env, &self.js.doorbell, chunk)?;
        self.stream_send(id, bytes)
    }

    fn stream_send(&mut self, id: u32, chunk: bytes::Bytes) -> BridgeResult<bool> {
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

    /// Ends a streamed reply; `failed` cuts it off so the client sees an incomplete body.
    pub fn stream_end(&mut self, id: u32, failed: bool) {
        if let Some(stream) = self.js.slab.get_mut(SlotId(id)).and_then(|l| l.stream.take()) {
            if failed {
                // Only the error item makes hyper cut the body off; a channel that just
                // closes would look like a complete body. When the queue is full, a task
                // waits for room instead of blocking the JS thread.
                if stream.tx.try_send(StreamItem::Error).is_err() {
                    let tx = stream.tx.clone();
                    if let Some(rt) = self.rt_handle() {
                        rt.spawn(Noted::new(async move {
                            let _ = tx.send(StreamItem::Error).await;
                        }));
                    }
                }
            }
        }
    }

    /// Starts a graceful close: stop accepting, let in-flight requests finish, close
    /// idle connections; after `graceMs` (0: wait forever) force the rest. A CLOSED
    /// record follows when no connection is left.
    pub fn close(&mut self, grace_ms: f64) -> BridgeResult<()> {
        let (Some(rt), Some(phase)) = (self.rt_handle(), self.phase.clone()) else {
            return Err(invalid_state("the server is not listening"));
        };
        if *phase.borrow() != Phase::Running {
            return Ok(());
        }
        let _ = phase.send(Phase::Draining);
        // No new connections: the path goes now, as node:http removes it at `close()`.
        self.socket_file = None;
        tracing::debug!(grace_ms, "close: no new connections; draining the open ones");
        let stats = self.stats.clone();
        let doorbell = self.js.doorbell.clone();
        let grace = if grace_ms > 0.0 && grace_ms.is_finite() {
            Some(Duration::from_secs_f64(grace_ms / 1000.0))
        } else {
            None
        };
        rt.spawn(Noted::new(async move {
            let drained = stats.wait_no_connections();
            let mut drained = std::pin::pin!(drained);
            let done = match grace {
                Some(grace) => tokio::time::timeout(grace, drained.as_mut()).await.is_ok(),
                None => false,
            };
            if !done {
                if grace.is_some() {
                    tracing::debug!("close: the grace period is over; forcing the remaining connections closed");
                    let _ = phase.send(Phase::Forced);
                }
                drained.await;
            }
            tracing::debug!("close: no connection left");
            doorbell.push_now(bridge::Event::Closed);
        }));
        Ok(())
    }

    /// `server.ref()`/`unref()`: whether the doorbell (threaded) or the poll handle
    /// (in-thread) keeps Node's event loop alive. Nothing to do before `listen` or after
    /// `shutdown`: JS applies its state when it listens.
    pub fn set_ref(&mut self, env: &Env, on: bool) -> BridgeResult<()> {
        if let Some(d) = self.local {
            // SAFETY: alive until `LocalDriver::close`, which also clears `local`.
            unsafe { (*d).set_ref(on) };
            return Ok(());
        }
        Ok(self.js.doorbell.set_ref(env, on)?)
    }

    /// Forces every connection closed now (after or instead of a graceful close).
    pub fn force_close(&mut self) {
        if let Some(phase) = self.phase.as_ref() {
            let _ = phase.send(Phase::Forced);
        }
        self.socket_file = None;
    }

    /// The JS environment that owns this server is going away (its worker thread ends,
    /// or the process exits): drop every connection and stop the runtime's threads before
    /// the environment's memory goes. The wait is bounded (a worker only has to finish its
    /// current poll); threads still running after it only run the addon's code, which
    /// stays loaded for the life of the process (build.rs).
    pub(crate) fn shut_down_for_env_exit(&mut self) {
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
        if let Some(d) = self.local.take() {
            crate::in_thread::LocalDriver::close(d);
        }
    }

    /// `[activeConnections, totalRequests, requestsPerSecond, avgLatencyMs, pendingRequests, webSockets]`.
    pub fn stats(&self) -> Vec<f64> {
        let s = self.stats.snapshot();
        vec![
            s.active_connections,
            s.total_requests,
            s.requests_per_second,
            s.avg_latency_ms,
            s.pending_requests,
            s.tls_handshakes,
            s.tls_handshake_failures,
            s.web_sockets,
        ]
    }

    /// Queues the reply for the next flush (nothing when the slot is gone); with
    /// `release`, also frees the slot.
    fn respond(
        &mut self,
        id: u32,
        status: u32,
        ct: u32,
        headers: Option<HeaderList>,
        body: ResponseBody,
        release: bool,
    ) -> BridgeResult<()> {
        // Without a header list, the connection's side makes the response
        // (`bridge::Given::Plain`). Most packed lists go as lists (`Given::Listed`), which
        // the fast HTTP/1.1 path writes without a header map; the rest are made into a map
        // here, whose checks need the request's method.
        let list = match headers {
            None => {
                let status = response::status_code(status)?;
                self.give(id, release, move || bridge::Given::Plain { status, ct, body });
                return Ok(());
            }
            Some(HeaderList::Packed(bytes)) => {
                let status = response::status_code(status)?;
                let bodyless = matches!(body, ResponseBody::Empty);
                match response::listed(ct, bytes, status, bodyless) {
                    Ok(list) => {
                        self.give(id, release, move || bridge::Given::Listed { status, list, body });
                        return Ok(());
                    }
                    Err(bytes) => HeaderList::Packed(bytes),
                }
            }
            Some(list) => list,
        };
        self.respond_with_map(id, status, ct, list, body, release)
    }

    /// `respond`'s reply with a header list made into a header map (`response::build`).
    #[inline(never)]
    fn respond_with_map(
        &mut self,
        id: u32,
        status: u32,
        ct: u32,
        list: HeaderList,
        body: ResponseBody,
        release: bool,
    ) -> BridgeResult<()> {
        tracing::debug!(id, "a header list goes as a header map");
        let head = self.js.slab.get_mut(SlotId(id)).is_some_and(|l| l.req.method == http::Method::HEAD);
        let reply = bridge::Given::Full(response::build(status, ct, Some(&list), body, head)?);
        self.give(id, release, move || reply);
        Ok(())
    }

    /// Gives request `id` the reply `reply` makes (made where it is stored: see
    /// `Ticket::give`), and with `release` frees its slot.
    #[inline(always)]
    fn give(&mut self, id: u32, release: bool, reply: impl FnOnce() -> bridge::Given) {
        if release {
            // The record's own hold on the ticket goes to the outbox.
            if let Some(req) = self.js.slab.remove_record(SlotId(id)) {
                self.js.outbox.extend(req.send_and_release(reply));
            }
        } else if let Some(live) = self.js.slab.get_mut(SlotId(id)) {
            self.js.outbox.extend(live.req.send(reply));
        }
    }
}

impl Drop for Core {
    fn drop(&mut self) {
        // A server collected without `close()`: stop watching its sockets from Node's loop.
        if let Some(d) = self.local.take() {
            crate::in_thread::LocalDriver::close(d);
        }
    }
}

fn body_error(kind: body::BodyErrorKind) -> BridgeError {
    match kind {
        body::BodyErrorKind::TooLarge => {
            BridgeError::new(ErrorKind::BodyTooLarge, "the request body is larger than maxBodySize")
        }
        body::BodyErrorKind::Aborted => BridgeError::new(ErrorKind::BodyAborted, "the client aborted the request body"),
    }
}

/// `upgradeWebSocket`'s reasons for refusing a request, as errors with their codes.
fn offer_error(e: websocket::OfferError) -> BridgeError {
    use websocket::OfferError as E;
    match e {
        E::NotUpgrade => BridgeError::new(
            ErrorKind::WsNotUpgrade,
            "the request is not a WebSocket upgrade (GET over HTTP/1.1 with Connection: upgrade and Upgrade: websocket)",
        ),
        E::BadKey => BridgeError::new(ErrorKind::WsBadKey, "the Sec-WebSocket-Key header is missing or invalid"),
        E::BadVersion => BridgeError::new(ErrorKind::WsBadVersion, "the Sec-WebSocket-Version header is not 13"),
        E::BadProtocol => {
            BridgeError::new(ErrorKind::WsBadProtocol, "the protocol is not one the client offered in Sec-WebSocket-Protocol")
        }
    }
}

/// WebSockets: the upgrade, sends and closes, and pub/sub.
impl Core {
    /// Checks request `id` for an upgrade and registers its socket; returns the socket's
    /// id. Negative numbers (and `compress` 0) mean the server's default for that option.
    pub fn ws_upgrade(
        &mut self,
        id: u32,
        protocol: Option<String>,
        max_payload: f64,
        idle_timeout_ms: f64,
        compress: u32,
    ) -> BridgeResult<u32> {
        let d = self.config.ws;
        let max_payload =
            if max_payload < 0.0 { d.max_payload } else { options::bytes("maxPayload", Some(max_payload), 0.0)? };
        let idle_timeout = if idle_timeout_ms < 0.0 {
            d.idle_timeout
        } else if idle_timeout_ms == 0.0 || !idle_timeout_ms.is_finite() {
            None
        } else {
            Some(Duration::from_secs_f64(idle_timeout_ms / 1000.0))
        };
        let deflate = match compress {
            1 => false,
            2 => true,
            _ => d.per_message_deflate,
        };
        let doorbell = self.js.doorbell.clone();
        let Some(live) = self.js.slab.get_mut(SlotId(id)) else {
            return Err(invalid_state("the request is no longer available"));
        };
        if !live.req.answerable() {
            return Err(invalid_state("the request was already answered"));
        }
        let Some(offer) = live.req.websocket.as_deref() else {
            return Err(offer_error(websocket::OfferError::NotUpgrade));
        };
        let h = websocket::handshake(offer, protocol.as_deref(), deflate).map_err(offer_error)?;
        live.req.websocket = None;
        let remote = live.req.remote;
        let config = websocket::SocketConfig {
            max_payload,
            idle_timeout,
            backpressure_limit: d.backpressure_limit,
            close_on_backpressure_limit: d.close_on_backpressure_limit,
            deflate: h.deflate,
            unmask_in_drain: self.js.write_here,
            one_thread: self.js.write_here,
        };
        Ok(self.js.sockets.insert(config, remote, h, doorbell))
    }

    /// Answers request `id` with the 101 of socket `sid`, plus `headers` (name/value
    /// pairs); the socket opens once hyper hands the connection over (a WS_OPEN record
    /// follows). A bad header throws and leaves the socket unaccepted.
    pub fn ws_accept(&mut self, id: u32, sid: u32, release: bool, headers: Option<Vec<String>>) -> BridgeResult<()> {
        let Some(socket) = self.js.sockets.get_mut(sid) else { return Err(invalid_state("the WebSocket is gone")) };
        let Some(h) = socket.handshake.take() else { return Err(invalid_state("the WebSocket was already accepted")) };
        let reply = match websocket::switching_protocols(&h, socket.shared.clone(), headers.as_deref()) {
            Ok(r) => r,
            Err(e) => {
                socket.handshake = Some(h);
                return Err(e);
            }
        };
        let shared = socket.shared.clone();
        shared.accept(true);
        let Some(live) = self.js.slab.get_mut(SlotId(id)) else {
            shared.abandon();
            return Ok(());
        };
        match live.req.send(|| reply.into()) {
            Some(ticket) => self.js.outbox.push(ticket),
            None => shared.abandon(),
        }
        if release {
            self.js.slab.remove(SlotId(id));
        }
        Ok(())
    }

    /// A socket that will never be accepted (its request was answered otherwise).
    pub fn ws_abandon(&mut self, sid: u32) {
        if let Some(s) = self.js.sockets.get(sid) {
            if s.handshake.is_some() {
                s.shared.abandon();
            }
        }
    }

    /// Queues a message; Bun's status numbers (bytes, -1 queued, 0 dropped).
    /// A small message is framed into the socket's queue at once, with no allocation of
    /// its own; a larger one (or one to compress) is queued as `into_bytes` makes it.
    pub fn ws_send<D: AsRef<[u8]>>(
        &mut self,
        sid: u32,
        data: D,
        into_bytes: impl FnOnce(D) -> bytes::Bytes,
        text: bool,
        compress: bool,
    ) -> i32 {
        let Some(s) = self.js.sockets.get(sid) else { return websocket::SEND_DROPPED };
        let len = data.as_ref().len();
        let deflate = compress && s.shared.config.deflate.is_some();
        if self.js.write_here && len > websocket::COALESCE_LIMIT && !deflate {
            // The flush would write it from this thread anyway: write it now, with no copy.
            if let Some(status) = s.shared.send_direct(data.as_ref(), text) {
                return status;
            }
        }
        let status = if websocket::frames_when_queued(&s.shared.config, len, compress) {
            if self.js.write_here {
                // The flush after this batch writes it from this thread (`send_batched`).
                s.shared.send_batched(data.as_ref(), text, &mut self.js.published)
            } else {
                s.shared.send_framed(data.as_ref(), text)
            }
        } else {
            s.shared.send(websocket::Out::Message { payload: into_bytes(data), text, compress }, len)
        };
        // An empty message queued reads as 0 too, the dropped status: it still needs its
        // writer woken (a needless wake-up, for an empty one dropped, writes nothing).
        if (status != websocket::SEND_DROPPED || len == 0) && s.shared.wants_wake() {
            self.js.wake_writers.push(s.shared.clone());
        }
        status
    }

    /// Registers the two words `respondTextStaged` reads its request id and flags from:
    /// `len` bytes at `ptr`, the memory of an ArrayBuffer that JS keeps alive (and never
    /// detaches) for as long as it can call `respondTextStaged` (lib/native.ts).
    pub fn respond_stage(&mut self, ptr: *const u8, len: usize) {
        if len >= 8 && ptr.align_offset(4) == 0 {
            self.respond_stage = ptr.cast();
        }
    }

    /// The `[id, flags]` JS wrote before `respondTextStaged`: numbers read from memory, not
    /// converted from arguments (about 80 instructions each); `None` before registration.
    pub fn respond_staged(&self) -> Option<(u32, u32)> {
        let stage = self.respond_stage;
        if stage.is_null() {
            return None;
        }
        // SAFETY: two aligned words of an ArrayBuffer JS keeps alive, registered by
        // `respond_stage`; JS does not run while this call does.
        Some(unsafe { (stage.read(), stage.add(1).read()) })
    }

    /// Registers the staging area of `ws_send_staged`: `len` bytes at `ptr`, the memory of
    /// an ArrayBuffer that JS keeps alive (and never detaches) for as long as it can call
    /// `wsSendStaged` (lib/native.ts holds it in the same closure).
    pub fn ws_stage(&mut self, ptr: *mut u8, len: usize) {
        if len < wire::WS_STAGE_HEAD as usize + 4 {
            return;
        }
        self.ws_stage = ptr;
        self.ws_stage_len = len;
    }

    /// `ws_send` of the message JS copied into the staging area: `[sid, length | flags]`,
    /// then the bytes; the status replaces the first word. A small binary send costs one
    /// call with no arguments to convert: reading a typed array's bytes through Node-API
    /// (`napi_get_buffer_info`) cost about 230 instructions, the socket id 80 and making
    /// the returned number 70, against about 210 for JS's copy (`TypedArray.set`) and its
    /// length read (docs/websocket-echo.md, the staged send). With `WS_STAGE_VIEW` the
    /// bytes are read from the drain's ArrayBuffer JS's view names (`ws_views`), not the
    /// area: an echo or a relay of a message as it was received is not copied by JS first.
    pub fn ws_send_staged(&mut self) {
        const HEAD: usize = wire::WS_STAGE_HEAD as usize;
        let stage = self.ws_stage;
        if stage.is_null() || self.ws_stage_len < HEAD {
            return;
        }
        // SAFETY: `ws_stage` is `ws_stage_len` bytes that JS keeps alive and does not touch
        // while this call runs; the words are read unaligned, which needs no alignment.
        let (sid, word) = unsafe {
            (std::ptr::read_unaligned(stage.cast::<u32>()), std::ptr::read_unaligned(stage.add(4).cast::<u32>()))
        };
        let len = (word & !(wire::WS_STAGE_NO_COMPRESS | wire::WS_STAGE_VIEW | wire::WS_STAGE_TEXT)) as usize;
        let compress = word & wire::WS_STAGE_NO_COMPRESS == 0;
        let status = if word & wire::WS_STAGE_VIEW != 0 {
            // SAFETY: as above; the area is at least `HEAD + 4` bytes (`ws_stage`).
            let at = unsafe { std::ptr::read_unaligned(stage.add(HEAD).cast::<u32>()) };
            let (arena, offset) = ((at >> 16) as usize, (at & 0xffff) as usize);
            if word & wire::WS_STAGE_TEXT != 0 {
                // The text's bytes (ASCII), still in the last drain's text arena, copied
                // into the area: JS's string is neither read nor encoded.
                match self.js.text_arena(arena).and_then(|a| a.get(offset..offset + len)) {
                    Some(bytes) if len <= self.ws_stage_len - HEAD => {
                        // SAFETY: as above; `len` bytes after the head are within the area,
                        // which is JS's memory, not the arena's.
                        let data = unsafe {
                            std::ptr::copy_nonoverlapping(bytes.as_ptr(), stage.add(HEAD), len);
                            std::slice::from_raw_parts(stage.add(HEAD), len)
                        };
                        self.ws_send(sid, data, bytes::Bytes::copy_from_slice, true, compress)
                    }
                    _ => websocket::SEND_DROPPED,
                }
            } else {
                self.ws_send_viewed(sid, arena, offset, len, compress)
            }
        } else if len > self.ws_stage_len - HEAD {
            websocket::SEND_DROPPED
        } else {
            // SAFETY: as above; `len` bytes after the head are within the area.
            let data = unsafe { std::slice::from_raw_parts(stage.add(HEAD), len) };
            self.ws_send(sid, data, bytes::Bytes::copy_from_slice, false, compress)
        };
        // SAFETY: as above.
        unsafe { std::ptr::write_unaligned(stage.cast::<i32>(), status) };
    }

    /// `ws_send` of `len` bytes at `offset` of the ArrayBuffer number `arena` of the last
    /// drain (`ws_views`), which JS holds a view of.
    fn ws_send_viewed(&mut self, sid: u32, arena: usize, offset: usize, len: usize, compress: bool) -> i32 {
        let views = if arena & SHARED_ARENA as usize != 0 { &self.ws_shared_views } else { &self.ws_views };
        match views.get(arena & !(SHARED_ARENA as usize)) {
            Some(&(data, filled)) if offset + len <= filled => {
                // SAFETY: JS holds a view of these `len` bytes of the arena made by the
                // last `drain` (`ws_views`), which keeps its ArrayBuffer alive; `len` is
                // the view's length now (0 once detached). JS does not run meanwhile.
                let data =
                    if len == 0 { &[][..] } else { unsafe { std::slice::from_raw_parts(data.add(offset), len) } };
                self.ws_send(sid, data, bytes::Bytes::copy_from_slice, false, compress)
            }
            _ => websocket::SEND_DROPPED,
        }
    }

    /// Socket `sid` has a `drain` listener or handler (`SocketShared::hear_drain`).
    pub fn ws_hear_drain(&mut self, sid: u32) {
        if let Some(s) = self.js.sockets.get(sid) {
            s.shared.hear_drain();
        }
    }

    /// Socket `sid`'s binary messages above `POOLED_MAX` each get an ArrayBuffer of their
    /// own (`on`), not a share of the drain's (`js_side::Shared`): JS would copy each out
    /// of the shared one for binaryType "arraybuffer".
    pub fn ws_own_buffers(&mut self, sid: u32, on: bool) {
        if let Some(s) = self.js.sockets.get_mut(sid) {
            s.own_buffers = on;
        }
    }

    pub fn ws_close(&mut self, sid: u32, code: u32, reason: String) {
        if let Some(s) = self.js.sockets.get(sid) {
            s.shared.close(code as u16, reason);
        }
    }

    pub fn ws_ping(&mut self, sid: u32, data: &[u8]) -> bool {
        let Some(s) = self.js.sockets.get(sid) else { return false };
        s.shared.ping(bytes::Bytes::copy_from_slice(&data[..data.len().min(125)]))
    }

    pub fn ws_buffered(&self, sid: u32) -> f64 {
        self.js.sockets.get(sid).map_or(0.0, |s| s.shared.buffered() as f64)
    }

    pub fn ws_remote_address(&self, sid: u32) -> String {
        let Some(s) = self.js.sockets.get(sid) else { return String::new() };
        if s.remote == listener::UNIX_PEER {
            return String::new();
        }
        match s.remote.ip() {
            std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map(|v4| v4.to_string()).unwrap_or_else(|| v6.to_string()),
            v4 => v4.to_string(),
        }
    }

    pub fn ws_subscribe(&mut self, sid: u32, topic: &str, on: bool) -> bool {
        self.js.sockets.subscribe(sid, topic, on)
    }

    pub fn ws_is_subscribed(&self, sid: u32, topic: &str) -> bool {
        self.js.sockets.is_subscribed(sid, topic)
    }

    pub fn ws_subscriber_count(&self, topic: &str) -> u32 {
        self.js.sockets.subscriber_count(topic) as u32
    }

    pub fn ws_topics(&self, sid: u32) -> Vec<String> {
        self.js.sockets.topics_of(sid)
    }

    /// Sends to every subscriber of `topic` but socket `except` (0: none); returns how
    /// many took the message.
    pub fn ws_publish(&mut self, except: u32, topic: &str, payload: bytes::Bytes, text: bool, compress: bool) -> u32 {
        // In the in-thread mode the flush writes from the JS side's buffer of the batch's
        // frames; with a network thread, each subscriber's queue has its own copy.
        let published = if self.js.write_here { Some(&mut self.js.published) } else { None };
        let m = crate::pubsub::Publish { topic, payload, text, compress, except };
        self.js.sockets.publish(m, published, &mut self.js.wake_writers)
    }
}
