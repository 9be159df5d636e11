//! The bridge between tokio and the JS thread: the doorbell, the event queue, the
//! JS-thread-owned request slab, batch dispatch records and the reply outbox.
//!
//! Flow (DESIGN.md section 2): connection tasks push events and ring the doorbell only
//! when no drain is scheduled; the JS thread clears the flag, drains everything queued
//! into the slab and dispatches it in one JS call per batch; replies gathered during
//! the batch go back to tokio with one wake-up.

use crate::body::{BodyErrorKind, ResponseBody};
use bytes::Bytes;
use hyper::body::Incoming;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi::Status;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use tokio::sync::{oneshot, Notify};

/// Queued events that make `push` ring without waiting for the worker to go idle: a
/// worker that never idles must not starve JS, and a batch this large already pays
/// for its wake-up many times over.
const RING_NOW_AT: usize = 256;

/// The response a connection task waits for.
pub type Reply = http::Response<ResponseBody>;

/// The single JS callback rung when events are waiting. Called with no arguments.
pub type DoorbellFn = ThreadsafeFunction<(), (), (), Status, false>;

/// Shared between a request's connection task and its slot, so an abort raised on the
/// tokio side can name the slot the JS thread gave it.
#[derive(Default)]
pub struct Ticket {
    /// The JS-visible id, 0 until the request is drained.
    pub id: AtomicU32,
}

/// Why a request was abandoned before its response completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AbortReason {
    /// The client closed the connection.
    ClientGone = 1,
    /// The listener did not respond within the `timeout` option.
    Timeout = 2,
    /// The client shut down its side after sending the request: it may still read the
    /// answer (an HTTP/1.1 half-close) or be gone. `request.signal` aborts; the answer is
    /// still sent.
    HalfClosed = 3,
}

/// A request as it travels from a connection task to the JS thread. Its head stays with
/// the connection task: JS gets the method, and the URL and headers as text
/// (`request::head_text`, written on the connection's thread), with the request's record.
pub struct IncomingRequest {
    pub method: http::Method,
    pub text: crate::request::HeadText,
    pub body: RequestBody,
    pub remote: SocketAddr,
    /// Taken by the first reply; `None` once answered or abandoned.
    pub reply: Option<oneshot::Sender<Reply>>,
    pub ticket: Arc<Ticket>,
}

/// A request body as it arrives: absent, already read in full, or still on the wire.
pub enum RequestBody {
    None,
    Full(Bytes),
    Incoming(Incoming),
}

/// What the tokio side tells the JS thread.
pub enum Event {
    Request(Box<IncomingRequest>),
    BodyData(u32, Bytes),
    BodyEnd(u32),
    BodyFull(u32, Bytes),
    BodyError(u32, BodyErrorKind),
    Abort(Arc<Ticket>, AbortReason),
    /// The client went away while a streamed response was still being written.
    StreamAborted(u32),
    /// A streamed response can take more chunks.
    Writable(u32),
    /// `close()` finished: no connection is left.
    Closed,
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
    replies: Mutex<Vec<(oneshot::Sender<Reply>, Reply)>>,
    replies_ready: Notify,
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
            replies_ready: Notify::new(),
        }
    }

    pub fn set_callback(&self, f: Option<DoorbellFn>) {
        let old = {
            let mut g = self.callback.write().unwrap_or_else(|p| p.into_inner());
            std::mem::replace(&mut *g, f)
        };
        drop(old);
    }

    /// Queues an event. JS is rung when the tokio worker runs out of work
    /// (`ring_if_waiting`, from `on_thread_park`), so everything a busy worker produces
    /// in one round reaches JS in one batch; a long queue rings at once.
    pub fn push(&self, ev: Event) {
        let len = {
            let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
            q.push(ev);
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

    /// Hands a batch of replies to the tokio side with one wake-up.
    pub fn send_replies(&self, batch: &mut Vec<(oneshot::Sender<Reply>, Reply)>) {
        if batch.is_empty() {
            return;
        }
        self.replies.lock().unwrap_or_else(|p| p.into_inner()).append(batch);
        self.replies_ready.notify_one();
    }

    /// Runs on tokio: delivers replies to their connection tasks as batches arrive.
    pub async fn deliver_replies(self: Arc<Self>) {
        let mut batch = Vec::with_capacity(256);
        loop {
            self.replies_ready.notified().await;
            std::mem::swap(&mut batch, &mut *self.replies.lock().unwrap_or_else(|p| p.into_inner()));
            for (tx, reply) in batch.drain(..) {
                // The receiver is gone when the client left or the request timed out.
                let _ = tx.send(reply);
            }
        }
    }
}

/// Record kinds written by `drain` into the JS-shared array, three u32s each:
/// `[kind, id, arg]`.
pub mod record {
    /// A new request. `arg`: method code in the low byte, `flags` above it.
    pub const REQUEST: u32 = 1;
    pub const BODY_DATA: u32 = 2;
    pub const BODY_END: u32 = 3;
    /// The whole body is buffered; `body_collect` returns it.
    pub const BODY_FULL: u32 = 4;
    /// `arg`: a `BodyErrorKind`.
    pub const BODY_ERROR: u32 = 5;
    /// `arg`: an `AbortReason`.
    pub const ABORT: u32 = 6;
    pub const WRITABLE: u32 = 7;
    pub const CLOSED: u32 = 8;

    /// Request flag: the request has a body (possibly empty but declared).
    pub const FLAG_HAS_BODY: u32 = 1 << 8;
    /// Request flag: the body is already buffered in full.
    pub const FLAG_BODY_BUFFERED: u32 = 1 << 9;
    /// Words per record: kind, id, arg, and for REQUEST the length of the URL at the start
    /// of its head text (`request::HeadText`, the rest being its packed headers).
    pub const WORDS: usize = 4;
}

/// Method codes shared with `lib/request.ts`; anything else is `METHOD_OTHER` and is
/// fetched by name.
pub fn method_code(m: &http::Method) -> u32 {
    match *m {
        http::Method::GET => 0,
        http::Method::HEAD => 1,
        http::Method::POST => 2,
        http::Method::PUT => 3,
        http::Method::DELETE => 4,
        http::Method::OPTIONS => 5,
        http::Method::PATCH => 6,
        _ => 7,
    }
}

const INDEX_BITS: u32 = 20;
const INDEX_MASK: u32 = (1 << INDEX_BITS) - 1;
const GEN_LIMIT: u32 = 1 << (32 - INDEX_BITS);

/// A JS-visible request id: slot index plus generation, so a stale id never reaches
/// a later request in the same slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotId(pub u32);

impl SlotId {
    fn index(self) -> usize {
        (self.0 & INDEX_MASK) as usize
    }
    fn generation(self) -> u32 {
        self.0 >> INDEX_BITS
    }
}

/// The JS thread's view of a request body.
pub enum BodyState {
    None,
    /// On the wire, not asked for yet.
    Unread(Incoming),
    /// Complete and waiting to be taken.
    Buffered(Bytes),
    /// A reader task collects it; a `BODY_FULL` or `BODY_ERROR` record follows.
    Collecting,
    /// A reader task streams it one pull at a time.
    Streaming {
        credit: Arc<Notify>,
        chunks: VecDeque<Bytes>,
        ended: bool,
    },
    Taken,
    Failed(BodyErrorKind),
}

/// A streamed response in progress.
pub struct ResponseStream {
    pub tx: tokio::sync::mpsc::Sender<crate::body::StreamItem>,
    pub waiting: Arc<AtomicBool>,
}

/// Everything the JS thread holds for one request until JS releases it.
pub struct LiveRequest {
    pub req: Box<IncomingRequest>,
    pub body: BodyState,
    pub stream: Option<ResponseStream>,
    pub cancel_reader: Option<oneshot::Sender<()>>,
}

struct Slot {
    generation: u32,
    live: Option<LiveRequest>,
}

/// Requests owned by the JS thread, addressed by `SlotId`.
#[derive(Default)]
pub struct RequestSlab {
    slots: Vec<Slot>,
    free: Vec<u32>,
    live_count: usize,
}

impl RequestSlab {
    pub fn insert(&mut self, live: LiveRequest) -> SlotId {
        self.live_count += 1;
        if let Some(index) = self.free.pop() {
            let slot = &mut self.slots[index as usize];
            slot.live = Some(live);
            return SlotId((slot.generation << INDEX_BITS) | index);
        }
        let index = self.slots.len() as u32;
        self.slots.push(Slot { generation: 1, live: Some(live) });
        SlotId((1 << INDEX_BITS) | index)
    }

    pub fn get_mut(&mut self, id: SlotId) -> Option<&mut LiveRequest> {
        let slot = self.slots.get_mut(id.index())?;
        if slot.generation != id.generation() {
            return None;
        }
        slot.live.as_mut()
    }

    pub fn get(&self, id: SlotId) -> Option<&LiveRequest> {
        let slot = self.slots.get(id.index())?;
        if slot.generation != id.generation() {
            return None;
        }
        slot.live.as_ref()
    }

    pub fn remove(&mut self, id: SlotId) -> Option<LiveRequest> {
        let slot = self.slots.get_mut(id.index())?;
        if slot.generation != id.generation() || slot.live.is_none() {
            return None;
        }
        let live = slot.live.take();
        // Generation 0 is never issued, so an id is never 0.
        slot.generation = (slot.generation + 1) % GEN_LIMIT;
        if slot.generation == 0 {
            slot.generation = 1;
        }
        self.free.push(id.index() as u32);
        self.live_count -= 1;
        live
    }

    pub fn len(&self) -> usize {
        self.live_count
    }

    pub fn is_empty(&self) -> bool {
        self.live_count == 0
    }

    /// Drops every live request, answering none of them (the server is gone).
    pub fn clear(&mut self) {
        let ids: Vec<SlotId> = self
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.live.is_some())
            .map(|(i, s)| SlotId((s.generation << INDEX_BITS) | i as u32))
            .collect();
        for id in ids {
            self.remove(id);
        }
    }
}

/// The JS thread's half of the bridge.
pub struct JsSide {
    pub doorbell: Arc<Doorbell>,
    pub slab: RequestSlab,
    pending: VecDeque<Event>,
    swap: Vec<Event>,
    pub outbox: Vec<(oneshot::Sender<Reply>, Reply)>,
    /// References of lent buffers to delete, gathered by `drain`.
    releases: Vec<LentRef>,
}

impl JsSide {
    pub fn new(doorbell: Arc<Doorbell>) -> Self {
        JsSide {
            doorbell,
            slab: RequestSlab::default(),
            pending: VecDeque::new(),
            swap: Vec::new(),
            outbox: Vec::new(),
            releases: Vec::new(),
        }
    }

    /// The lent-buffer references `drain` found, for the caller to delete with its env.
    pub fn take_releases(&mut self) -> std::vec::Drain<'_, LentRef> {
        self.releases.drain(..)
    }

    /// Moves queued events into the slab and writes up to `records.len() / WORDS` records,
    /// moving the head text of each REQUEST record, in order, to `heads`. Returns the
    /// number written.
    pub fn drain(&mut self, records: &mut [u32], heads: &mut Vec<crate::request::HeadText>) -> usize {
        self.doorbell.scheduled.store(false, Ordering::Release);
        {
            let mut q = self.doorbell.queue.lock().unwrap_or_else(|p| p.into_inner());
            std::mem::swap(&mut self.swap, &mut *q);
        }
        self.pending.extend(self.swap.drain(..));
        let capacity = records.len() / record::WORDS;
        let mut n = 0;
        while n < capacity {
            let Some(ev) = self.pending.pop_front() else { break };
            if let Some(record) = self.apply(ev, heads) {
                records[n * record::WORDS..(n + 1) * record::WORDS].copy_from_slice(&record);
                n += 1;
            }
        }
        n
    }

    /// Updates the slab for one event and returns its record, if JS needs to see it.
    fn apply(&mut self, ev: Event, heads: &mut Vec<crate::request::HeadText>) -> Option<[u32; record::WORDS]> {
        match ev {
            Event::Request(mut req) => {
                let head = std::mem::take(&mut req.text);
                let url_len = head.url_len as u32;
                heads.push(head);
                let mut flags = method_code(&req.method);
                let body = match std::mem::replace(&mut req.body, RequestBody::None) {
                    RequestBody::None => BodyState::None,
                    RequestBody::Full(b) => {
                        flags |= record::FLAG_HAS_BODY | record::FLAG_BODY_BUFFERED;
                        BodyState::Buffered(b)
                    }
                    RequestBody::Incoming(i) => {
                        flags |= record::FLAG_HAS_BODY;
                        BodyState::Unread(i)
                    }
                };
                let ticket = req.ticket.clone();
                let id = self.slab.insert(LiveRequest { req, body, stream: None, cancel_reader: None });
                ticket.id.store(id.0, Ordering::Release);
                Some([record::REQUEST, id.0, flags, url_len])
            }
            Event::BodyData(id, data) => {
                let live = self.slab.get_mut(SlotId(id))?;
                if let BodyState::Streaming { chunks, .. } = &mut live.body {
                    chunks.push_back(data);
                    return Some([record::BODY_DATA, id, 0, 0]);
                }
                None
            }
            Event::BodyEnd(id) => {
                let live = self.slab.get_mut(SlotId(id))?;
                if let BodyState::Streaming { ended, .. } = &mut live.body {
                    *ended = true;
                    return Some([record::BODY_END, id, 0, 0]);
                }
                None
            }
            Event::BodyFull(id, data) => {
                let live = self.slab.get_mut(SlotId(id))?;
                live.body = BodyState::Buffered(data);
                Some([record::BODY_FULL, id, 0, 0])
            }
            Event::BodyError(id, kind) => {
                let live = self.slab.get_mut(SlotId(id))?;
                live.body = BodyState::Failed(kind);
                // The listener may still be waiting on the body: answer now, if nothing
                // was sent yet, so the client learns why (a client that left gets nothing).
                if let Some(tx) = live.req.reply.take() {
                    let status = if kind == BodyErrorKind::TooLarge { 413 } else { 400 };
                    self.outbox.push((tx, crate::response::status_only(status)));
                }
                Some([record::BODY_ERROR, id, kind as u32, 0])
            }
            Event::Abort(ticket, reason) => {
                let id = ticket.id.load(Ordering::Acquire);
                let live = self.slab.get_mut(SlotId(id))?;
                if reason != AbortReason::HalfClosed {
                    live.req.reply = None;
                    live.stream = None;
                }
                Some([record::ABORT, id, reason as u32, 0])
            }
            Event::StreamAborted(id) => {
                let live = self.slab.get_mut(SlotId(id))?;
                live.stream = None;
                Some([record::ABORT, id, AbortReason::ClientGone as u32, 0])
            }
            Event::Writable(id) => {
                self.slab.get(SlotId(id))?;
                Some([record::WRITABLE, id, 0, 0])
            }
            Event::Closed => Some([record::CLOSED, 0, 0, 0]),
            Event::Release(r) => {
                self.releases.push(r);
                None
            }
        }
    }

    /// Sends the replies gathered since the last flush.
    pub fn flush(&mut self) {
        self.doorbell.send_replies(&mut self.outbox);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_ids_do_not_reach_a_reused_slot() {
        let mut slab = RequestSlab::default();
        let dummy = || {
            let (tx, _rx) = oneshot::channel();
            LiveRequest {
                req: Box::new(IncomingRequest {
                    method: http::Method::GET,
                    text: Default::default(),
                    body: RequestBody::None,
                    remote: "127.0.0.1:1".parse().unwrap(),
                    reply: Some(tx),
                    ticket: Arc::default(),
                }),
                body: BodyState::None,
                stream: None,
                cancel_reader: None,
            }
        };
        let a = slab.insert(dummy());
        assert!(slab.remove(a).is_some());
        let b = slab.insert(dummy());
        assert_eq!(a.index(), b.index());
        assert_ne!(a, b);
        assert!(slab.get(a).is_none());
        assert!(slab.remove(a).is_none());
        assert!(slab.get(b).is_some());
        assert_eq!(slab.len(), 1);
    }

    #[test]
    fn ids_are_never_zero() {
        let mut slab = RequestSlab::default();
        let (tx, _rx) = oneshot::channel();
        let id = slab.insert(LiveRequest {
            req: Box::new(IncomingRequest {
                method: http::Method::GET,
                text: Default::default(),
                body: RequestBody::None,
                remote: "127.0.0.1:1".parse().unwrap(),
                reply: Some(tx),
                ticket: Arc::default(),
            }),
            body: BodyState::None,
            stream: None,
            cancel_reader: None,
        });
        assert_ne!(id.0, 0);
    }
}
