//! The JS thread's half of the bridge: `drain` moves queued events into the slab and
//! writes the records JS reads (their format: `wire.rs`); replies gather in an outbox and
//! go back to tokio with one wake-up per flush.

use crate::body::BodyErrorKind;
use crate::bridge::{AbortReason, Doorbell, Event, LentRef, RequestBody};
use crate::pubsub::Sockets;
use crate::slab::{BodyState, RequestSlab, SlotId};
use crate::wire;
use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Words per record, as an array length.
const WORDS: usize = wire::RECORD_WORDS as usize;

/// What a drained record carries beside its words, in order: a request's head text, or
/// a WebSocket message, pong payload or close reason.
pub enum Payload {
    Text(String),
    /// A text message.
    Utf8(crate::websocket::Utf8),
    Binary(bytes::Bytes),
    /// A binary message still masked (`websocket::Message::Masked`).
    Masked(bytes::Bytes, [u8; 4]),
    /// A small binary message, in the drain's arena of this index (`JsSide::arenas`).
    Pooled(usize),
    /// A small ASCII text message, in the drain's text arena of this index
    /// (`JsSide::text_arenas`), which JS gets as one string.
    PooledText(usize),
    /// A binary message of up to `SHARED_MAX` bytes, in the drain's shared ArrayBuffer of
    /// this index (`JsSide::shared`).
    Shared(usize),
}

/// Binary messages up to this size are copied into an arena shared by the drain's small
/// messages, which JS gets as one ArrayBuffer and views of it: one allocation per arena
/// instead of one ArrayBuffer (and backing store, malloc and free) per message.
pub(crate) const POOLED_MAX: usize = 1024;

/// An arena's size limit: a message kept alive keeps at most this much memory with it
/// (Node's own Buffer pool is 8 KiB, for the same trade).
const ARENA_SIZE: usize = 16 * 1024;
// A message's offset in its arena fits the low 16 bits of a `WS_STAGE_VIEW` send's word.
const _: () = assert!(ARENA_SIZE <= 1 << 16);

/// Binary messages above `POOLED_MAX` and up to this size share an ArrayBuffer with the
/// drain's other such messages (`Shared`): one Buffer of V8's (a malloc, a backing store
/// and a typed array, about 4,500 instructions) for several messages, not one each.
pub(crate) const SHARED_MAX: usize = 16 * 1024;

/// A shared ArrayBuffer's size limit: a message kept alive keeps at most this much memory
/// with it (four times its own at `SHARED_MAX`).
const SHARED_SIZE: usize = 64 * 1024;
const _: () = assert!(SHARED_SIZE <= 1 << 16);

/// In a message's arena number: the arena is one of `JsSide::shared`, not of `arenas`.
pub(crate) const SHARED_ARENA: u32 = 1 << 14;
// A drain's records (JS asks for 1,024 at most) number fewer arenas than this.
const _: () = assert!(SHARED_ARENA >= 1 << 12);

/// The drain's binary messages above `POOLED_MAX` (`SHARED_MAX`), each placed in one of
/// the ArrayBuffers the caller makes: not copied here, but unmasked by the caller straight
/// into V8's memory (a copy here and one into V8's cost a pass over the bytes more).
#[derive(Default)]
pub struct Shared {
    /// Each ArrayBuffer's length.
    pub sizes: Vec<usize>,
    /// The messages, in order: the ArrayBuffer's index, the offset there, the bytes and
    /// their mask (all zeros: as they are).
    pub messages: Vec<(usize, usize, bytes::Bytes, [u8; 4])>,
}

impl Shared {
    /// Places a message in the last ArrayBuffer (a new one when it would go past
    /// `SHARED_SIZE`); returns the ArrayBuffer's index and the message's offset in it.
    fn add(&mut self, data: bytes::Bytes, mask: [u8; 4]) -> (usize, usize) {
        let len = data.len();
        match self.sizes.last_mut() {
            Some(size) if *size + len <= SHARED_SIZE => *size += len,
            _ => self.sizes.push(len),
        }
        let index = self.sizes.len() - 1;
        let offset = self.sizes[index] - len;
        self.messages.push((index, offset, data, mask));
        (index, offset)
    }

    fn clear(&mut self) {
        self.sizes.clear();
        self.messages.clear();
    }
}

/// `JsSide::sent` before a record carried an arena.
const NOT_SENT: u32 = u32::MAX;

/// Small messages of one drain copied together, one kind (binary or ASCII text) per
/// `Arenas`: the first `used` arenas are in use, the rest kept for their allocation.
#[derive(Default)]
struct Arenas {
    /// Each arena's memory (`ARENA_SIZE` bytes, zeroed once when it is made) and how much
    /// of it this drain filled. Kept at full length, so that a message is unmasked
    /// straight into it: a `Vec` cleared at each drain had to be grown over zeros first
    /// (`resize`, a `memset` each message then overwritten).
    list: Vec<(Box<[u8]>, usize)>,
    used: usize,
}

impl Arenas {
    /// Copies a small message into the last arena in use (a new one when it is full),
    /// unmasking it with `mask` (all zeros: as it is); returns the arena's index and the
    /// message's offset in it.
    #[inline(always)]
    fn add(&mut self, data: &[u8], mask: [u8; 4]) -> (usize, u32) {
        let fits = self.used > 0 && self.list[self.used - 1].1 + data.len() <= ARENA_SIZE;
        if !fits {
            if self.list.len() == self.used {
                self.list.push((vec![0; ARENA_SIZE].into_boxed_slice(), 0));
            }
            self.used += 1;
        }
        let index = self.used - 1;
        let (arena, filled) = &mut self.list[index];
        let offset = *filled;
        // A small message (`POOLED_MAX`) always fits an empty arena.
        let end = offset + data.len();
        crate::websocket::unmask_into(&mut arena[offset..end], data, mask);
        *filled = end;
        (index, offset as u32)
    }

    fn filled(&self) -> impl Iterator<Item = &[u8]> {
        self.list[..self.used].iter().map(|(arena, filled)| &arena[..*filled])
    }

    fn clear(&mut self) {
        for (_, filled) in &mut self.list[..self.used] {
            *filled = 0;
        }
        self.used = 0;
    }
}

/// The JS thread's half of the bridge.
pub struct JsSide {
    pub doorbell: Arc<Doorbell>,
    pub slab: RequestSlab,
    pending: VecDeque<Event>,
    swap: Vec<Event>,
    /// Answered requests whose connection tasks are woken at the next flush.
    pub outbox: Vec<Arc<crate::bridge::Ticket>>,
    /// References of lent buffers to delete, gathered by `drain`.
    releases: Vec<LentRef>,
    /// Open WebSockets and their topics.
    pub sockets: Sockets,
    /// Small binary messages of the current drain, copied together (`Payload::Pooled`).
    arenas: Arenas,
    /// Small ASCII text messages of the current drain, as `arenas` are for binary ones: JS
    /// gets each arena as one Latin-1 string and a message as a substring of it, where a
    /// string per message cost V8's UTF-8 decoder and a `napi_set_element` into `texts`
    /// (about 400 instructions a message, callgrind).
    text_arenas: Arenas,
    /// Binary messages above `POOLED_MAX` of the current drain (`Payload::Shared`).
    shared: Shared,
    /// The arena (its number in the records, `SHARED_ARENA` for one of `shared`) the
    /// records of this drain last carried, of binary messages and of text ones: JS keeps
    /// one of each.
    sent: u32,
    sent_text: u32,
    /// Sockets sent to since the last flush, written at the flush.
    pub wake_writers: Vec<std::sync::Arc<crate::websocket::SocketShared>>,
    /// The network runs on this thread (`workerThreads: 0`): the flush writes to sockets
    /// itself instead of handing them to another thread.
    pub write_here: bool,
    /// With `write_here`: the small frames published or sent since the last flush, back to
    /// back. A socket that gets a run of them and nothing else holds the run's place here
    /// (`Sockets::publish`, `SocketShared::send_batched`), and the flush writes it from
    /// here: the kernel reads one warm buffer, not a cold one a socket. Cleared once the
    /// flush is over.
    pub published: bytes::BytesMut,
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
            sockets: Sockets::default(),
            arenas: Arenas::default(),
            text_arenas: Arenas::default(),
            shared: Shared::default(),
            sent: NOT_SENT,
            sent_text: NOT_SENT,
            wake_writers: Vec::new(),
            write_here: false,
            published: bytes::BytesMut::new(),
        }
    }

    /// The lent-buffer references `drain` found, for the caller to delete with its env.
    pub fn take_releases(&mut self) -> std::vec::Drain<'_, LentRef> {
        self.releases.drain(..)
    }

    /// Moves queued events into the slab and writes up to `records.len() / WORDS` records,
    /// moving the head text of each REQUEST record, in order, to `heads`. Returns the
    /// number written.
    pub fn drain(&mut self, records: &mut [u32], heads: &mut Vec<Payload>) -> usize {
        // Taken at every drain: it also clears the ring flag.
        let mut swap = std::mem::take(&mut self.swap);
        self.doorbell.take_queued(&mut swap);
        let capacity = records.len() / WORDS;
        let mut n = 0;
        // What an earlier drain had no room for goes first.
        while n < capacity {
            let Some(ev) = self.pending.pop_front() else { break };
            if let Some(record) = self.apply(ev, heads) {
                records[n * WORDS..(n + 1) * WORDS].copy_from_slice(&record);
                n += 1;
            }
        }
        // Then the queue's events, from where they were queued (moved into `pending` only
        // when they do not fit).
        let mut events = swap.drain(..);
        while n < capacity {
            let Some(ev) = events.next() else { break };
            if let Some(record) = self.apply(ev, heads) {
                records[n * WORDS..(n + 1) * WORDS].copy_from_slice(&record);
                n += 1;
            }
        }
        self.pending.extend(events);
        self.swap = swap;
        n
    }

    /// Updates the slab for one event and returns its record, if JS needs to see it.
    fn apply(&mut self, ev: Event, heads: &mut Vec<Payload>) -> Option<[u32; WORDS]> {
        match ev {
            Event::Request(mut req) => {
                // The head text stays with the request until JS asks for it (`requestHead`).
                let url_len = req.text.url_len as u32;
                let mut flags = wire::method_code(&req.method);
                let body = match std::mem::replace(&mut req.body, RequestBody::None) {
                    RequestBody::None => BodyState::None,
                    RequestBody::Full(b) => {
                        flags |= wire::FLAG_HAS_BODY;
                        BodyState::Buffered(b.into())
                    }
                    RequestBody::Incoming(i) => {
                        flags |= wire::FLAG_HAS_BODY;
                        // Not on HTTP/2: a held stream's body fills the connection's window,
                        // which the bodies being read share, and they stall until
                        // LARGE_READ_WAIT_MS lets the next go (lib/server.ts; 1 MiB echoes
                        // on 16 streams: 100 a second against 800 without holding).
                        if !req.http2 && crate::body::is_large_declared(&i) {
                            flags |= wire::FLAG_LARGE_BODY;
                        }
                        BodyState::Unread(i)
                    }
                };
                // The body is put in place after: a record made whole with it was made aside and
                // copied into the slot (136 bytes, a `memcpy` call).
                let id = self.slab.insert(req);
                // The ticket's id, for aborts the connection task raises.
                if let Some(live) = self.slab.get_mut(id) {
                    if !matches!(body, BodyState::None) {
                        live.body = body;
                    }
                    live.req.ticket().id.store(id.0, Ordering::Release);
                }
                Some([wire::RECORD_REQUEST, id.0, flags, url_len])
            }
            Event::BodyData(id, data) => {
                let live = self.slab.get_mut(SlotId(id))?;
                if let BodyState::Streaming { chunks, .. } = &mut live.body {
                    chunks.push_back(data);
                    return Some([wire::RECORD_BODY_DATA, id, 0, 0]);
                }
                None
            }
            Event::BodyEnd(id) => {
                let live = self.slab.get_mut(SlotId(id))?;
                if let BodyState::Streaming { ended, .. } = &mut live.body {
                    *ended = true;
                    return Some([wire::RECORD_BODY_END, id, 0, 0]);
                }
                None
            }
            Event::BodyFull(id, data) => {
                let live = self.slab.get_mut(SlotId(id))?;
                live.body = BodyState::Buffered(*data);
                Some([wire::RECORD_BODY_FULL, id, 0, 0])
            }
            Event::BodyFilled(id, data) => {
                let live = self.slab.get_mut(SlotId(id))?;
                live.body = BodyState::Filled(data);
                Some([wire::RECORD_BODY_FULL, id, 0, 0])
            }
            Event::BodyError(id, kind) => {
                let live = self.slab.get_mut(SlotId(id))?;
                live.body = BodyState::Failed(kind);
                // The listener may still be waiting on the body: answer now, if nothing
                // was sent yet, so the client learns why (a client that left gets nothing).
                if live.req.answerable() {
                    let status = if kind == BodyErrorKind::TooLarge { 413 } else { 400 };
                    self.outbox.extend(live.req.send(|| crate::response::status_only(status).into()));
                }
                Some([wire::RECORD_BODY_ERROR, id, kind as u32, 0])
            }
            Event::Abort(ticket, reason) => {
                let id = ticket.id.load(Ordering::Acquire);
                let live = self.slab.get_mut(SlotId(id))?;
                if reason != AbortReason::HalfClosed {
                    live.req.let_go();
                    live.stream = None;
                    // A body nobody began to read goes too: hyper keeps the connection until
                    // its request's body is read or dropped, so after the listener's 503
                    // (`connection: close`) it stayed open until the idle timeout.
                    if matches!(live.body, BodyState::Unread(_) | BodyState::Deferred(_)) {
                        live.body = BodyState::Failed(BodyErrorKind::Aborted);
                    }
                }
                Some([wire::RECORD_ABORT, id, reason as u32, 0])
            }
            Event::StreamAborted(id) => {
                let live = self.slab.get_mut(SlotId(id))?;
                live.stream = None;
                Some([wire::RECORD_ABORT, id, AbortReason::ClientGone as u32, 0])
            }
            Event::Writable(id) => {
                self.slab.get(SlotId(id))?;
                Some([wire::RECORD_WRITABLE, id, 0, 0])
            }
            Event::Closed => Some([wire::RECORD_CLOSED, 0, 0, 0]),
            Event::WsOpen(sid) => {
                heads.push(Payload::Text(self.sockets.get(sid)?.extensions.clone()));
                Some([wire::RECORD_WS_OPEN, sid, 0, 0])
            }
            Event::WsMessage(sid, msg) => {
                let s = self.sockets.get(sid)?;
                s.shared.taken(msg.len());
                let own = s.own_buffers;
                use crate::websocket::Message;
                let (kind, payload) = match msg {
                    Message::Text(t) if t.as_str().len() <= POOLED_MAX && t.is_ascii() => {
                        return Some(self.pooled(sid, t.as_str().as_bytes(), [0; 4], true, heads));
                    }
                    Message::Text(t) => (wire::WS_TEXT, Payload::Utf8(t)),
                    Message::Binary(b) if b.len() <= POOLED_MAX => {
                        return Some(self.pooled(sid, &b, [0; 4], false, heads))
                    }
                    Message::Masked(b, mask) if b.len() <= POOLED_MAX => {
                        return Some(self.pooled(sid, &b, mask, false, heads));
                    }
                    Message::Binary(b) if b.len() <= SHARED_MAX && !own => {
                        return Some(self.shared(sid, b, [0; 4], heads))
                    }
                    Message::Masked(b, mask) if b.len() <= SHARED_MAX && !own => {
                        return Some(self.shared(sid, b, mask, heads));
                    }
                    Message::Binary(b) => (wire::WS_BINARY, Payload::Binary(b)),
                    Message::Masked(b, mask) => (wire::WS_BINARY, Payload::Masked(b, mask)),
                };
                heads.push(payload);
                Some([wire::RECORD_WS_MESSAGE, sid, kind, 0])
            }
            Event::WsPong(sid, data) => {
                self.sockets.get(sid)?;
                heads.push(Payload::Binary(data));
                Some([wire::RECORD_WS_PONG, sid, 0, 0])
            }
            Event::WsPing(sid, data) => {
                self.sockets.get(sid)?;
                heads.push(Payload::Binary(data));
                Some([wire::RECORD_WS_PONG, sid, wire::WS_PING, 0])
            }
            Event::WsDrain(sid) => {
                self.sockets.get(sid)?;
                Some([wire::RECORD_WS_DRAIN, sid, 0, 0])
            }
            Event::WsClose(sid, code, reason, clean) => {
                self.sockets.remove(sid)?;
                heads.push(Payload::Text(reason));
                Some([wire::RECORD_WS_CLOSE, sid, code as u32 | if clean { wire::WS_CLEAN } else { 0 }, 0])
            }
            Event::Release(r) => {
                self.releases.push(r);
                None
            }
        }
    }

    /// The record of a small message, copied (and unmasked) into the current arena of its
    /// kind: `text` for ASCII text, which JS gets as a string.
    fn pooled(&mut self, sid: u32, data: &[u8], mask: [u8; 4], text: bool, heads: &mut Vec<Payload>) -> [u32; WORDS] {
        let (arenas, sent) =
            if text { (&mut self.text_arenas, &mut self.sent_text) } else { (&mut self.arenas, &mut self.sent) };
        let (arena, offset) = arenas.add(data, mask);
        // The arena crosses once, with the first of its messages in this drain: one
        // `texts` item per arena, not one per message (again after another one crossed).
        let carried = *sent == arena as u32;
        *sent = arena as u32;
        let kind = match (text, carried) {
            (false, true) => wire::WS_POOLED_SAME,
            (true, true) => wire::WS_TEXT_POOLED_SAME,
            (false, false) => {
                heads.push(Payload::Pooled(arena));
                wire::WS_POOLED
            }
            (true, false) => {
                heads.push(Payload::PooledText(arena));
                wire::WS_TEXT_POOLED
            }
        };
        // The arena's number above the offset (`ARENA_SIZE`); a drain's records, fewer than
        // 1 << 16, number its arenas.
        [wire::RECORD_WS_MESSAGE, sid, kind | (data.len() as u32) << 8, offset | (arena as u32) << 16]
    }

    /// The record of a binary message above `POOLED_MAX`, placed in the drain's shared
    /// ArrayBuffers: JS sees it as it sees a small one (`WS_POOLED`), with `SHARED_ARENA`
    /// in its arena's number.
    fn shared(&mut self, sid: u32, data: bytes::Bytes, mask: [u8; 4], heads: &mut Vec<Payload>) -> [u32; WORDS] {
        let len = data.len() as u32;
        let (index, offset) = self.shared.add(data, mask);
        let number = SHARED_ARENA | index as u32;
        let kind = if self.sent == number {
            wire::WS_POOLED_SAME
        } else {
            heads.push(Payload::Shared(index));
            wire::WS_POOLED
        };
        self.sent = number;
        [wire::RECORD_WS_MESSAGE, sid, kind | len << 8, offset as u32 | number << 16]
    }

    /// The binary messages above `POOLED_MAX` that `drain` placed, for the caller to
    /// unmask into the ArrayBuffers it makes and let go of (`messages`).
    pub fn shared_arenas(&mut self) -> &mut Shared {
        &mut self.shared
    }

    /// The arenas `drain` filled, for the caller to copy to JS; `clear_arenas` after.
    pub fn arenas(&self) -> impl Iterator<Item = &[u8]> {
        self.arenas.filled()
    }

    /// The text arenas `drain` filled (ASCII), for the caller to make strings of.
    pub fn text_arenas(&self) -> impl Iterator<Item = &[u8]> {
        self.text_arenas.filled()
    }

    /// The bytes of text arena `i` as the last `drain` filled it: they stay until the
    /// next `clear_arenas`.
    pub fn text_arena(&self, i: usize) -> Option<&[u8]> {
        self.text_arenas.list[..self.text_arenas.used].get(i).map(|(arena, filled)| &arena[..*filled])
    }

    pub fn clear_arenas(&mut self) {
        self.arenas.clear();
        self.text_arenas.clear();
        self.shared.clear();
        self.sent = NOT_SENT;
        self.sent_text = NOT_SENT;
    }

    /// Sends the replies gathered since the last flush.
    pub fn flush(&mut self) {
        if self.write_here {
            // The connection tasks run on this thread: woken here, they run in this turn.
            for ticket in self.outbox.drain(..) {
                ticket.wake();
            }
            // This runs inside the runtime's turn: outside tokio's cooperative budget, or
            // every write after the 128th of a turn would look like a full socket and wait
            // for the socket's task. The block finishes in its one poll.
            {
                let sockets = &mut self.wake_writers;
                let published = &self.published[..];
                let writes = tokio::task::unconstrained(async move {
                    crate::websocket::send_each(sockets.drain(..), published);
                });
                let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
                let _ = std::pin::pin!(writes).poll(&mut cx);
            }
            // Every socket that held a run of it was listed, and has written or copied it.
            self.published.clear();
            if self.published.capacity() > crate::pubsub::PUBLISHED_MAX {
                self.published = bytes::BytesMut::new();
            }
        } else {
            self.doorbell.send_replies(&mut self.outbox);
            self.doorbell.send_writes(&mut self.wake_writers);
        }
    }
}
