//! The bridge between tokio and the JS thread: the events connection tasks send, the
//! queue they wait in, the doorbell that rings JS, and the way replies go back.
//! The JS thread's side is `js_side.rs` (draining into `slab.rs`, records as in `wire.rs`).
//!
//! Flow (DESIGN.md section 2): connection tasks push events and ring the doorbell only
//! when no drain is scheduled; the JS thread clears the flag, drains everything queued
//! into the slab and dispatches it in one JS call per batch; replies gathered during
//! the batch go back to tokio with one wake-up.

use crate::body::{BodyErrorKind, ResponseBody};
use crate::wire;
use bytes::Bytes;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi::Status;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use tokio::sync::Notify;

/// Queued events that make `push` ring without waiting for the worker to go idle: a
/// worker that never idles must not starve JS, and a batch this large already pays
/// for its wake-up many times over.
const RING_NOW_AT: usize = 256;

/// WebSockets of one flush written by the reply task itself; beyond that, they are
/// written by tasks of `WRITES_PER_TASK` each, which the runtime spreads over its workers.
const WRITES_INLINE: usize = 64;
const WRITES_PER_TASK: usize = 256;

/// Writes what was sent to `sockets` (`SocketShared::send_now`), outside tokio's
/// cooperative budget, which would make every write after the 128th of one poll look like
/// a full socket and leave it to the socket's task.
async fn write_sockets(sockets: Vec<Arc<crate::websocket::SocketShared>>) {
    tokio::task::unconstrained(async move { crate::websocket::send_each(sockets.into_iter(), &[]) }).await
}

/// The response a connection task waits for.
pub type Reply = http::Response<ResponseBody>;

/// A reply as JS gives it to a request's ticket: without a header list (the status, a
/// content-type code and the body: what most replies are), the connection's side makes
/// the response (`response::plain`) once it takes the reply; with one, the response whole.
/// The plain form is a third of a response's size, so the ticket's copy in and out of it is
/// too, and the response's header map is allocated on the connection's thread, where hyper
/// keeps it for the next request's head and `admit` frees it. With a packed list that
/// `response::listed` takes (most lists), the list as checked: the fast HTTP/1.1 path writes
/// it without a map, hyper's path makes one (`response::listed_reply`). `repr(u8)`: the tag
/// and a plain reply's fields come first (see `Ticket`).
#[repr(u8)]
pub enum Given {
    Plain { status: http::StatusCode, ct: u32, body: ResponseBody },
    Full(Reply),
    Listed { status: http::StatusCode, list: crate::response::FieldList, body: ResponseBody },
}

impl From<Reply> for Given {
    fn from(reply: Reply) -> Self {
        Given::Full(reply)
    }
}

impl Given {
    /// The response of either form (`response::plain` makes a plain reply's).
    #[inline(always)]
    pub fn into_reply(self) -> Reply {
        match self {
            Given::Plain { status, ct, body } => crate::response::plain(status, ct, body),
            Given::Full(reply) => reply,
            Given::Listed { status, list, body } => crate::response::listed_reply(status, &list, body),
        }
    }
}

/// The single JS callback rung when events are waiting. Called with no arguments.
pub type DoorbellFn = ThreadsafeFunction<(), (), (), Status, false>;

/// Shared between a request's connection task and its slot: an abort raised on the tokio
/// side names the slot the JS thread gave it, and the reply travels back in it (no
/// channel of its own per request, and the reply is moved once on its way). The request's
/// record (what JS reads of it) lives in the same block, reached only through the one
/// `RequestRecord` that JS holds: one allocation per request, not one for the ticket and
/// another for the record.
///
/// The reply's hand-over takes no lock, and the waker no `AtomicWaker`: the task's first
/// poll stores its waker and publishes it with a `fetch_or` of `WAKER`; the one
/// `RequestRecord` stores the reply and publishes it with a `fetch_or` of `GIVEN`; whoever
/// wakes the task later (a batch's flush) reads the waker after a load of `state`, and the
/// task takes the reply after another. (A lock here cost six atomic read-modify-writes per
/// request, and the `AtomicWaker` four.)
///
/// In this order (`repr(C)`): the state, the id and the waker, then the record, then the
/// reply, whose plain form comes first (`Given` is `repr(u8)`, so its tag and a plain
/// reply's fields lead it). A request answered without a header list then touches the first
/// four of the block's six lines; in Rust's own order it touched all six.
#[repr(C)]
pub struct Ticket {
    /// Bits: `WAKER`, then `GIVEN` or `DROPPED` (by the record), then `TAKEN` (by the task).
    state: AtomicU8,
    /// The JS-visible id, 0 until the request is drained.
    pub id: AtomicU32,
    /// The task waiting for the reply: written by the task while `WAKER` is clear, read by
    /// `wake` only once it is set.
    waker: std::cell::UnsafeCell<Option<std::task::Waker>>,
    /// The request's record: read and written through the ticket's one `RequestRecord`
    /// only, and dropped by it (never by the ticket).
    record: std::cell::UnsafeCell<std::mem::ManuallyDrop<IncomingRequest>>,
    /// Written by the record before it sets `GIVEN`, read by the task after it sees it;
    /// initialized exactly while `GIVEN` is set and `TAKEN` is not.
    reply: std::cell::UnsafeCell<std::mem::MaybeUninit<Given>>,
}

/// The task's waker is stored.
const WAKER: u8 = 1;
/// The reply is stored.
const GIVEN: u8 = 2;
/// JS let go of the request without answering it (the task answers 500).
const DROPPED: u8 = 4;
/// Taken by the connection task.
const TAKEN: u8 = 8;
/// JS set the listener's time limit again (`server.timeout`): the new one waits in the
/// doorbell's `limits` until the task takes it. Set and cleared under that lock only.
const RELIMIT: u8 = 16;

// SAFETY: `reply` is written only by the one `RequestRecord` (which sends at most once:
// it sends only while neither GIVEN nor DROPPED is set, and sets one of them as it does)
// before the release of GIVEN, and read only by the task after an acquire that saw GIVEN:
// never both at once. `waker` is written only by the task, and only while WAKER is clear (the
// first poll; or after a compare-exchange took WAKER away before GIVEN or DROPPED came), and
// read by others only after an acquire that saw WAKER set. `record` is touched only through
// the one `RequestRecord` (made with the ticket by `Ticket::with_record`, not `Clone`), which
// `&mut` or ownership of it makes exclusive. A `Reply`, a `Waker` and a request's record are
// `Send`, so handing them from one thread to another is sound.
unsafe impl Sync for Ticket {}

impl Drop for Ticket {
    fn drop(&mut self) {
        if *self.state.get_mut() & (GIVEN | TAKEN) == GIVEN {
            // SAFETY: GIVEN means the reply was written and not taken; `&mut self` is alone.
            unsafe { self.reply.get_mut().assume_init_drop() };
        }
    }
}

impl Ticket {
    /// A request's ticket, for its connection task, and its record, for JS.
    ///
    /// The block is written in place, field by field, and its reply left alone: `Arc::new`
    /// built the ticket on the stack and copied all of it into the new block (344 bytes, six
    /// lines, cold by then under load: about five write misses a request), the
    /// uninitialized reply's included, of which a plain reply later writes only its first
    /// line. (`Arc::new` of a `MaybeUninit` ticket zeroed the block instead.) The record is
    /// made by `record` once the block is allocated, and so written straight into it: made
    /// before, it was kept aside across the allocation and copied in (152 bytes, a `memcpy`
    /// call).
    #[inline]
    pub fn with_record(record: impl FnOnce() -> IncomingRequest) -> (Arc<Ticket>, RequestRecord) {
        let block = Arc::<Ticket>::new_uninit();
        let at = Arc::as_ptr(&block).cast::<Ticket>().cast_mut();
        // SAFETY: the block is new and `block` its only reference, so nothing reads it while
        // it is written; `as_ptr` points into the allocation (derived from the `Arc`'s own
        // pointer, not from a shared reference), and every field is interior-mutable anyway.
        // Every field but the reply is written before `assume_init`; the reply is a
        // `MaybeUninit`, valid uninitialized, and read only once GIVEN says it was written.
        let ticket = unsafe {
            (&raw mut (*at).state).write(AtomicU8::new(0));
            (&raw mut (*at).id).write(AtomicU32::new(0));
            (&raw mut (*at).waker).write(std::cell::UnsafeCell::new(None));
            (&raw mut (*at).record).write(std::cell::UnsafeCell::new(std::mem::ManuallyDrop::new(record())));
            block.assume_init()
        };
        (ticket.clone(), RequestRecord(ticket))
    }

    /// Wakes the connection task, if it waits for the reply.
    pub fn wake(&self) {
        if self.state.load(Ordering::Acquire) & WAKER != 0 {
            // SAFETY: WAKER is set, so the task wrote the waker before its release of it and
            // does not write it again until a compare-exchange takes WAKER away, which fails
            // once GIVEN or DROPPED is set, as it is before anyone wakes the task.
            if let Some(w) = unsafe { &*self.waker.get() } {
                w.wake_by_ref();
            }
        }
    }

    /// Ready once JS gave the reply or let go of the request, with the state that `take`
    /// takes it by. Kept apart from `take`, which alone makes the reply: a reply passed back
    /// through a `Poll` and a `Result` on its way to hyper was copied at each step (152
    /// bytes, a `memcpy` call each, five a request).
    #[inline(always)]
    pub fn poll_given(&self, cx: &mut std::task::Context<'_>) -> std::task::Poll<u8> {
        use std::task::Poll;
        let s = self.state.load(Ordering::Acquire);
        if s & (GIVEN | DROPPED) != 0 {
            return Poll::Ready(s);
        }
        if s & WAKER != 0 {
            // SAFETY: only this task writes the waker, and not while WAKER is set.
            if unsafe { &*self.waker.get() }.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                return Poll::Pending;
            }
            // Polled with another waker: take WAKER away before writing it, unless the reply
            // came meanwhile (then nobody reads the waker any more). RELIMIT may come and go
            // meanwhile too, which is no reply: try again then.
            let mut s = s;
            while let Err(now) = self.state.compare_exchange(s, s & !WAKER, Ordering::AcqRel, Ordering::Acquire) {
                if now & (GIVEN | DROPPED) != 0 {
                    return Poll::Ready(now);
                }
                s = now;
            }
        }
        // SAFETY: WAKER is clear: nobody else reads or writes the waker.
        unsafe { *self.waker.get() = Some(cx.waker().clone()) };
        // Published with the same read-modify-write that sees a reply stored meanwhile.
        let s = self.state.fetch_or(WAKER, Ordering::AcqRel);
        if s & (GIVEN | DROPPED) != 0 {
            return Poll::Ready(s);
        }
        Poll::Pending
    }

    /// The reply, given state `s` from `poll_given`; a 500 when none will come (JS let go of
    /// the request without one, or it was taken already). `body` sees the body of a reply
    /// given without a header map (plain or listed), `full` a whole response. A plain reply stays plain: the
    /// fast HTTP/1.1 path encodes it without a header map (`fast_h1`), hyper's path makes its
    /// response (`Given::into_reply`).
    #[inline(always)]
    pub fn take(&self, s: u8, body: impl FnOnce(&mut ResponseBody), full: impl FnOnce(&mut Reply)) -> Given {
        if s & (GIVEN | TAKEN) != GIVEN {
            return Given::Full(crate::response::status_only(500));
        }
        // After GIVEN the sender writes `state` no more: only this task does.
        self.state.store(s | TAKEN, Ordering::Relaxed);
        // SAFETY: GIVEN was seen with acquire after the sender's release: the reply is
        // written; TAKEN was not set, and this task alone sets it: it is read once. Read by
        // its variant's fields, not as a whole: a plain reply leaves most of the slot
        // unwritten, which a copy of the whole would read (cold lines of a fresh block).
        let slot = unsafe { (*self.reply.get()).assume_init_ref() };
        match slot {
            Given::Plain { status, ct, body: given } => {
                // SAFETY: as above; each field is read once, and the slot is not dropped
                // (TAKEN is set).
                let mut given = unsafe { std::ptr::read(given) };
                body(&mut given);
                Given::Plain { status: *status, ct: *ct, body: given }
            }
            Given::Full(reply) => {
                // SAFETY: as above.
                let mut reply = unsafe { std::ptr::read(reply) };
                full(&mut reply);
                Given::Full(reply)
            }
            Given::Listed { status, list, body: given } => {
                // SAFETY: as for a plain reply.
                let (list, mut given) = unsafe { (std::ptr::read(list), std::ptr::read(given)) };
                body(&mut given);
                Given::Listed { status: *status, list, body: given }
            }
        }
    }

    /// Sets the listener's time limit of a request still unanswered again, from the JS
    /// thread (`server.timeout`): due at `at` (`clock::now`), or never (None). The task sees
    /// it at its next poll (`take_limit`), to which it is woken.
    pub fn relimit(self: &Arc<Self>, doorbell: &Doorbell, at: Option<u64>) {
        {
            let mut limits = doorbell.limits.lock().unwrap_or_else(|p| p.into_inner());
            // Entries of tickets gone (their task ended before it looked) go first.
            limits.retain(|(t, _)| t.strong_count() > 0);
            let me = Arc::as_ptr(self);
            match limits.iter_mut().find(|(t, _)| std::ptr::eq(t.as_ptr(), me)) {
                Some(entry) => entry.1 = at,
                None => limits.push((Arc::downgrade(self), at)),
            }
            self.state.fetch_or(RELIMIT, Ordering::AcqRel);
        }
        self.wake();
    }

    /// The limit `relimit` set, if one is new since the last call (the connection task).
    #[inline]
    pub fn take_limit(&self, doorbell: &Doorbell) -> Option<Option<u64>> {
        if self.state.load(Ordering::Acquire) & RELIMIT == 0 {
            return None;
        }
        let mut limits = doorbell.limits.lock().unwrap_or_else(|p| p.into_inner());
        let me: *const Ticket = self;
        let at = limits.iter().position(|(t, _)| std::ptr::eq(t.as_ptr(), me)).map(|i| limits.swap_remove(i).1);
        self.state.fetch_and(!RELIMIT, Ordering::AcqRel);
        at
    }

    /// Stores the reply that `reply` makes (the record's `send`): made here, it is written
    /// straight into the block; made by the caller, it was made aside and copied in (160
    /// bytes, a `memcpy` call).
    #[inline(always)]
    fn give(&self, reply: impl FnOnce() -> Given) {
        // SAFETY: only the ticket's one `RequestRecord` calls this, once, before GIVEN or
        // DROPPED is set: no reader touches `reply` before the release below.
        unsafe { (*self.reply.get()).write(reply()) };
        self.state.fetch_or(GIVEN, Ordering::AcqRel);
    }
}

/// JS's hold on a request (`LiveRequest::req`): its record (`IncomingRequest`, by `Deref`),
/// and the reply. `send` stores the reply for the connection task, which the caller then
/// wakes (in a batch: `Doorbell::send_replies`); let go of or dropped unanswered, it tells
/// the task that no reply will come. Held as long as JS holds the request, so a request's
/// ticket is alive while JS holds it (what `Cork`'s `last_request` looks at).
pub struct RequestRecord(Arc<Ticket>);

impl std::ops::Deref for RequestRecord {
    type Target = IncomingRequest;

    fn deref(&self) -> &IncomingRequest {
        // SAFETY: the record is reached through this, the ticket's one `RequestRecord`, only.
        unsafe { &*self.0.record.get() }
    }
}

impl std::ops::DerefMut for RequestRecord {
    fn deref_mut(&mut self) -> &mut IncomingRequest {
        // SAFETY: as for `deref`; `&mut self` makes it exclusive.
        unsafe { &mut *self.0.record.get() }
    }
}

impl RequestRecord {
    /// The request's ticket.
    pub fn ticket(&self) -> &Arc<Ticket> {
        &self.0
    }

    /// Whether the request still waits for its reply (none sent, not let go of).
    pub fn answerable(&self) -> bool {
        // GIVEN and DROPPED are set by this record only: its own thread reads them back.
        self.0.state.load(Ordering::Relaxed) & (GIVEN | DROPPED) == 0
    }

    /// Stores the reply `reply` makes, unless one was sent or the request let go of; returns
    /// the ticket to wake.
    #[inline(always)]
    pub fn send(&mut self, reply: impl FnOnce() -> Given) -> Option<Arc<Ticket>> {
        if !self.answerable() {
            return None;
        }
        self.0.give(reply);
        Some(self.0.clone())
    }

    /// `send`, and JS lets go of the request: its record is dropped, and the ticket to wake
    /// is this record's own hold on it (no reference counted for it).
    #[inline(always)]
    pub fn send_and_release(self, reply: impl FnOnce() -> Given) -> Option<Arc<Ticket>> {
        if !self.answerable() {
            return None;
        }
        self.0.give(reply);
        let this = std::mem::ManuallyDrop::new(self);
        // SAFETY: this is the ticket's one record, consumed here, whose `Drop` does not run:
        // its contents are dropped once, and its reference to the ticket moves out once.
        unsafe {
            std::mem::ManuallyDrop::drop(&mut *this.0.record.get());
            Some(std::ptr::read(&this.0))
        }
    }

    /// No reply will come (the client left, or the listener's time ran out): the task is
    /// told, if it still waits.
    pub fn let_go(&mut self) {
        if self.answerable() {
            self.0.state.fetch_or(DROPPED, Ordering::AcqRel);
            self.0.wake();
        }
    }
}

impl Drop for RequestRecord {
    fn drop(&mut self) {
        self.let_go();
        // SAFETY: this is the ticket's one record, dropped once: nothing reads the record
        // after this.
        unsafe { std::mem::ManuallyDrop::drop(&mut *self.0.record.get()) };
    }
}

/// Why a request was abandoned before its response completed (an ABORT record's `arg`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum AbortReason {
    /// The client closed the connection.
    ClientGone = wire::ABORT_CLIENT_GONE,
    /// The listener did not respond within the `timeout` option.
    Timeout = wire::ABORT_TIMEOUT,
    /// The client shut down its side after sending the request: it may still read the
    /// answer (an HTTP/1.1 half-close) or be gone. `request.signal` aborts; the answer is
    /// still sent.
    HalfClosed = wire::ABORT_HALF_CLOSED,
}

/// A request's record, as it travels from a connection task to the JS thread (in its
/// ticket's block: `Ticket::with_record`, reached through the `RequestRecord`). Its head
/// stays with the connection task: JS gets the method, and the URL and headers as text
/// (`request::head_text`, written on the connection's thread).
pub struct IncomingRequest {
    pub method: http::Method,
    pub text: crate::request::HeadText,
    pub body: RequestBody,
    pub remote: SocketAddr,
    /// What the request offered for a WebSocket upgrade, when it has an `Upgrade` header.
    pub websocket: Option<Box<crate::websocket::Offer>>,
    /// The TLS session of an HTTPS request (its client certificate); `None` over plain TCP.
    pub tls: Option<Arc<crate::tls::Session>>,
    /// Came on an HTTP/2 stream: its body shares the connection's flow-control window.
    pub http2: bool,
}

/// A request body as it arrives: absent, already read in full, or still on the wire.
pub enum RequestBody {
    None,
    Full(Bytes),
    Incoming(crate::direct::Source),
}

// Every event is moved three times or more between the network and JS's drain: the largest
// variant sets the size of all (now a WebSocket message: its sid and a 48-byte `Message`).
const _: () = assert!(std::mem::size_of::<Event>() <= 56);

/// What the tokio side tells the JS thread.
pub enum Event {
    Request(RequestRecord),
    BodyData(u32, Bytes),
    BodyEnd(u32),
    /// Boxed: inline, its 96 bytes made every event 104 bytes (56 now), copied at each move
    /// (a WebSocket message is built, pushed, appended to the queue and taken from it).
    BodyFull(u32, Box<crate::body::Collected>),
    /// A body of declared length, read into the JS Buffer made for it.
    BodyFilled(u32, crate::lending::JsBody),
    BodyError(u32, BodyErrorKind),
    Abort(Arc<Ticket>, AbortReason),
    /// The client went away while a streamed response was still being written.
    StreamAborted(u32),
    /// A streamed response can take more chunks.
    Writable(u32),
    /// `close()` finished: no connection is left.
    Closed,
    /// A WebSocket's connection is upgraded: it is open.
    WsOpen(u32),
    /// A whole message arrived on a WebSocket.
    WsMessage(u32, crate::websocket::Message),
    /// A pong arrived, with its payload.
    WsPong(u32, Bytes),
    /// A ping arrived, with its payload (the pong is already queued).
    WsPing(u32, Bytes),
    /// A WebSocket's send queue fell below its low-water mark.
    WsDrain(u32),
    /// A WebSocket closed: code, reason, and whether both sides sent a close frame.
    WsClose(u32, u16, String, bool),
    /// A lent JS buffer is no longer needed: its reference is deleted at the next drain,
    /// which rides on the next ring instead of waking JS once per buffer.
    Release(LentRef),
}

/// A reference that keeps a JS typed array alive while hyper writes its bytes. Created
/// and deleted on the JS thread only; carried through the queue in between.
pub struct LentRef(pub napi::sys::napi_ref);

// SAFETY: the reference is only an opaque handle while it travels; it is created and
// deleted on the JS thread (`JsSide::take_releases`).
unsafe impl Send for LentRef {}

/// The half of the bridge shared by every thread: the queue, the ring flag, the
/// doorbell function, and the reply outbox.
pub struct Doorbell {
    queue: Mutex<Vec<Event>>,
    scheduled: AtomicBool,
    callback: RwLock<Option<DoorbellFn>>,
    replies: Mutex<Vec<Arc<Ticket>>>,
    /// WebSockets sent to in a JS batch, written by the reply task (`send_writes`).
    writes: Mutex<Vec<Arc<crate::websocket::SocketShared>>>,
    replies_ready: Notify,
    /// Listener time limits set again by `server.timeout` and not yet taken by their
    /// requests' tasks (`Ticket::relimit`): a few at most, so a list.
    limits: Mutex<Vec<(std::sync::Weak<Ticket>, Option<u64>)>>,
    /// In the in-thread mode, the clock of the driver's current round (`clock::Round`),
    /// which its connections share (`Cork::now`).
    pub(crate) round: crate::clock::Round,
}

impl Default for Doorbell {
    fn default() -> Self {
        Self::new()
    }
}

impl Doorbell {
    pub fn new() -> Self {
        Doorbell {
            queue: Mutex::new(Vec::with_capacity(256)),
            scheduled: AtomicBool::new(false),
            callback: RwLock::new(None),
            replies: Mutex::new(Vec::with_capacity(256)),
            writes: Mutex::new(Vec::new()),
            replies_ready: Notify::new(),
            limits: Mutex::new(Vec::new()),
            round: crate::clock::Round::new(),
        }
    }

    pub fn set_callback(&self, f: Option<DoorbellFn>) {
        let old = {
            let mut g = self.callback.write().unwrap_or_else(|p| p.into_inner());
            std::mem::replace(&mut *g, f)
        };
        drop(old);
    }

    /// Whether the doorbell keeps Node's event loop alive (`server.ref()`/`unref()`). A
    /// ring still wakes a loop that other work keeps running. JS thread only (`env`).
    pub fn set_ref(&self, env: &napi::Env, on: bool) -> napi::Result<()> {
        let mut g = self.callback.write().unwrap_or_else(|p| p.into_inner());
        match g.as_mut() {
            // napi-rs marks these deprecated for their use as a count of threads; here they
            // are Node-API's own ref/unref of the function's async handle.
            #[allow(deprecated)]
            Some(f) if on => f.refer(env),
            #[allow(deprecated)]
            Some(f) => f.unref(env),
            None => Ok(()),
        }
    }

    /// Queues an event. JS is rung when the tokio worker runs out of work
    /// (`ring_if_waiting`, from `on_thread_park`), so everything a busy worker produces
    /// in one round reaches JS in one batch; a long queue rings at once.
    pub fn push(&self, ev: Event) {
        self.enqueue(|q| q.push(ev));
    }

    /// `push` for several events, in order (`events` is left empty).
    pub fn push_all(&self, events: &mut Vec<Event>) {
        self.enqueue(|q| q.append(events));
    }

    fn enqueue(&self, add: impl FnOnce(&mut Vec<Event>)) {
        let len = {
            let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
            add(&mut q);
            q.len()
        };
        if len >= RING_NOW_AT {
            self.ring_if_waiting();
        }
    }

    /// Queues an event and rings at once; for pushes from outside the runtime's workers.
    pub fn push_now(&self, ev: Event) {
        self.queue.lock().unwrap_or_else(|p| p.into_inner()).push(ev);
        self.ring_if_waiting();
    }

    /// Moves every queued event to `into` and clears the ring flag: the next push rings
    /// again. Called by the JS thread's drain.
    pub fn take_queued(&self, into: &mut Vec<Event>) {
        self.scheduled.store(false, Ordering::Release);
        let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        std::mem::swap(into, &mut *q);
    }

    /// Takes the queued `Release` events out of the queue and hands each reference to
    /// `release`, leaving every other event queued in its order. For the JS thread between
    /// drains (`lending::lend`).
    pub fn take_releases(&self, mut release: impl FnMut(LentRef)) {
        let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        for ev in q.extract_if(.., |e| matches!(e, Event::Release(_))) {
            if let Event::Release(r) = ev {
                release(r);
            }
        }
    }

    /// Takes back the event queued last if `is` picks it (nothing else was queued since).
    pub fn take_last_if(&self, is: impl FnOnce(&Event) -> bool) -> Option<Event> {
        let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        if q.last().is_some_and(is) {
            q.pop()
        } else {
            None
        }
    }

    /// Whether events are waiting for a drain.
    pub fn has_queued(&self) -> bool {
        !self.queue.lock().unwrap_or_else(|p| p.into_inner()).is_empty()
    }

    /// Rings JS if events are queued and no drain is scheduled.
    pub fn ring_if_waiting(&self) {
        if self.scheduled.load(Ordering::Acquire) {
            return;
        }
        if self.queue.lock().unwrap_or_else(|p| p.into_inner()).is_empty() {
            return;
        }
        if !self.scheduled.swap(true, Ordering::AcqRel) {
            self.ring();
        }
    }

    fn ring(&self) {
        let g = self.callback.read().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = g.as_ref() {
            f.call((), ThreadsafeFunctionCallMode::NonBlocking);
        }
    }

    /// Rings again if anything is waiting; used when JS stops a drain early so timers
    /// and I/O get their turn.
    pub fn reschedule(&self) {
        if !self.scheduled.swap(true, Ordering::AcqRel) {
            self.ring();
        }
    }

    /// Hands a batch of answered requests (their replies stored: `RequestRecord::send`) to
    /// the tokio side, to wake their connection tasks, with one wake-up.
    pub fn send_replies(&self, batch: &mut Vec<Arc<Ticket>>) {
        if batch.is_empty() {
            return;
        }
        self.replies.lock().unwrap_or_else(|p| p.into_inner()).append(batch);
        self.replies_ready.notify_one();
    }

    /// Hands the WebSockets a JS batch sent to over to tokio, to be written with one
    /// wake-up (their frames are written here, not by a wake-up of each socket's task).
    pub fn send_writes(&self, sockets: &mut Vec<Arc<crate::websocket::SocketShared>>) {
        if sockets.is_empty() {
            return;
        }
        self.writes.lock().unwrap_or_else(|p| p.into_inner()).append(sockets);
        self.replies_ready.notify_one();
    }

    /// Runs on tokio: delivers replies to their connection tasks as batches arrive, and
    /// writes what WebSockets were sent.
    pub async fn deliver_replies(self: Arc<Self>) {
        let mut batch = Vec::with_capacity(256);
        let mut writes = Vec::new();
        loop {
            self.replies_ready.notified().await;
            std::mem::swap(&mut batch, &mut *self.replies.lock().unwrap_or_else(|p| p.into_inner()));
            for ticket in batch.drain(..) {
                ticket.wake();
            }
            std::mem::swap(&mut writes, &mut *self.writes.lock().unwrap_or_else(|p| p.into_inner()));
            // A large fan-out is shared among the workers, in tasks of its own, rather than
            // held on one thread (and ahead of the replies of the next batch).
            while writes.len() > WRITES_INLINE {
                let part = writes.split_off(writes.len().saturating_sub(WRITES_PER_TASK).max(WRITES_INLINE));
                crate::in_thread::spawn(write_sockets(part));
            }
            write_sockets(std::mem::take(&mut writes)).await;
        }
    }
}
