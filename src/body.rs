//! Streaming bodies both ways: the response body hyper writes, and the reader task that
//! moves a request body to JS on demand, with a bound on what is in flight.

use crate::bridge::{Doorbell, Event};
use crate::lending::JsBody;
use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use tokio::sync::{mpsc, oneshot, Notify};

/// Chunks a streamed response may have queued before `stream_write` reports
/// backpressure. Small, so a slow client holds little memory, and more than one so
/// that the JS thread and the socket overlap.
pub const RESPONSE_STREAM_CHUNKS: usize = 8;

/// Why a request body stopped before its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum BodyErrorKind {
    /// More bytes than `maxBodySize`.
    TooLarge = crate::wire::BODY_TOO_LARGE,
    /// The client closed the connection or sent a malformed body (answered 400).
    Aborted = crate::wire::BODY_ABORTED,
}

/// The body of a response as hyper polls it.
pub enum ResponseBody {
    Empty,
    Full(Option<Bytes>),
    Stream(StreamBody),
}

impl std::fmt::Debug for ResponseBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ResponseBody::Empty => f.write_str("Empty"),
            ResponseBody::Full(b) => write!(f, "Full({} bytes)", b.as_ref().map_or(0, |b| b.len())),
            ResponseBody::Stream(_) => f.write_str("Stream"),
        }
    }
}

impl ResponseBody {
    pub fn full(b: Bytes) -> Self {
        if b.is_empty() {
            ResponseBody::Empty
        } else {
            ResponseBody::Full(Some(b))
        }
    }
}

/// What JS pushes into a streamed response.
pub enum StreamItem {
    Data(Bytes),
    /// The JS stream failed: end the response without its terminating chunk so the
    /// client sees a broken body rather than a complete-looking one.
    Error,
}

/// Error surfaced to hyper when a streamed body fails; hyper then closes the connection.
#[derive(Debug)]
pub struct StreamAborted;

impl std::fmt::Display for StreamAborted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("response stream aborted")
    }
}

impl std::error::Error for StreamAborted {}

/// A response body fed from JS through a bounded channel. When JS found the channel
/// full it waits for a `Writable` event, sent here once hyper has taken a chunk.
pub struct StreamBody {
    rx: mpsc::Receiver<StreamItem>,
    waiting: Arc<AtomicBool>,
    doorbell: Arc<Doorbell>,
    id: u32,
    /// Set once JS ended the stream (the channel closed or an error arrived); a body
    /// dropped before that was cut off by the client going away.
    finished: bool,
    /// Keeps the connection from counting as idle while the body is written.
    _streaming: Option<crate::cork::StreamingGuard>,
}

impl StreamBody {
    /// Ties the body to its connection for the idle timeout.
    pub fn hold(&mut self, guard: crate::cork::StreamingGuard) {
        self._streaming = Some(guard);
    }
}

impl Drop for StreamBody {
    fn drop(&mut self) {
        if !self.finished {
            self.doorbell.push_now(Event::StreamAborted(self.id));
        }
    }
}

impl StreamBody {
    pub fn new(rx: mpsc::Receiver<StreamItem>, waiting: Arc<AtomicBool>, doorbell: Arc<Doorbell>, id: u32) -> Self {
        StreamBody { rx, waiting, doorbell, id, finished: false, _streaming: None }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = StreamAborted;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, StreamAborted>>> {
        match &mut *self {
            ResponseBody::Empty => Poll::Ready(None),
            ResponseBody::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            ResponseBody::Stream(s) => match s.rx.poll_recv(cx) {
                Poll::Ready(item) => {
                    if s.waiting.swap(false, Ordering::AcqRel) {
                        s.doorbell.push(Event::Writable(s.id));
                    }
                    match item {
                        Some(StreamItem::Data(b)) => Poll::Ready(Some(Ok(Frame::data(b)))),
                        Some(StreamItem::Error) => {
                            s.finished = true;
                            Poll::Ready(Some(Err(StreamAborted)))
                        }
                        None => {
                            s.finished = true;
                            Poll::Ready(None)
                        }
                    }
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ResponseBody::Empty => true,
            ResponseBody::Full(b) => b.is_none(),
            ResponseBody::Stream(_) => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ResponseBody::Empty => SizeHint::with_exact(0),
            ResponseBody::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            ResponseBody::Stream(_) => SizeHint::default(),
        }
    }
}

/// Appends `data` to a body being collected whose declared length is `declared` (0 when
/// none): when `buf` is full, it grows once to the whole declared size, not by doubling.
pub fn extend_declared(buf: &mut BytesMut, data: &[u8], declared: u64) {
    if buf.capacity() - buf.len() < data.len() {
        buf.reserve((declared as usize).saturating_sub(buf.len()).max(data.len()));
    }
    buf.extend_from_slice(data);
}

/// Chunks at least this long are kept as hyper read them (a slice of its read buffer, no
/// copy); shorter ones are copied together, so that a body sent in tiny chunks does not
/// cost a `Bytes` (32 bytes) and a buffer reference per byte or two.
pub const KEEP_CHUNK_MIN: usize = 8 * 1024;

/// A complete request body, in the pieces it arrived in: a body that came with its head is
/// one piece; a body collected by the reader is the chunks hyper read (what has arrived so
/// far is all it holds), copied once, into the JS Buffer, when JS takes it.
#[derive(Debug, Default)]
pub struct Collected {
    /// The first piece (most bodies have one, which then costs no `Vec`).
    first: Bytes,
    rest: Vec<Bytes>,
    /// Short chunks copied together, not yet a piece.
    tail: BytesMut,
    len: usize,
}

impl From<Bytes> for Collected {
    fn from(first: Bytes) -> Self {
        Collected { len: first.len(), first, rest: Vec::new(), tail: BytesMut::new() }
    }
}

impl Collected {
    /// Appends one chunk as it came off the connection.
    pub fn push(&mut self, data: Bytes) {
        self.len += data.len();
        if data.len() >= KEEP_CHUNK_MIN {
            self.seal_tail();
            self.add_piece(data);
        } else {
            if self.tail.capacity() - self.tail.len() < data.len() {
                self.seal_tail();
                self.tail.reserve(4 * KEEP_CHUNK_MIN);
            }
            self.tail.extend_from_slice(&data);
        }
    }

    fn add_piece(&mut self, piece: Bytes) {
        if self.first.is_empty() && self.rest.is_empty() {
            self.first = piece;
        } else {
            self.rest.push(piece);
        }
    }

    fn seal_tail(&mut self) {
        if !self.tail.is_empty() {
            let piece = self.tail.split().freeze();
            self.add_piece(piece);
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The whole body when it is one piece (or empty).
    pub fn only_piece(&self) -> Option<&[u8]> {
        if !self.rest.is_empty() {
            return None;
        }
        match (self.first.is_empty(), self.tail.is_empty()) {
            (_, true) => Some(&self.first),
            (true, false) => Some(&self.tail),
            (false, false) => None,
        }
    }

    /// The pieces, in order (the short-chunk tail last).
    pub fn parts(&self) -> impl Iterator<Item = &[u8]> {
        std::iter::once(&self.first[..])
            .chain(self.rest.iter().map(|b| &b[..]))
            .chain(std::iter::once(&self.tail[..]))
            .filter(|p| !p.is_empty())
    }
}

/// The most a collected body reserves for its declared length before its bytes arrive.
pub const COLLECT_RESERVE_MAX: u64 = 1024 * 1024;

/// Bodies of declared length from this size up get their Buffer on a later turn of the
/// loop (`Core::body_collect`); smaller ones at once.
pub const DEFER_MIN: u64 = 256 * 1024;

/// Whether a request body's declared length is one that `Core::body_collect` defers
/// (`DEFER_MIN` up to `COLLECT_RESERVE_MAX`): its request has `FLAG_LARGE_BODY`, and JS hands
/// at most one such request a turn to its handler. The handler's `arrayBuffer()` promise then
/// lives from about its body's turn, not from the head's arrival: a promise that waited for
/// two scavenges is in old space when the body settles it, and keeps the young Buffer alive
/// until the next mark-compact (docs/network-thread.md, "Large request bodies, round nine").
pub fn is_large_declared(body: &crate::direct::Source) -> bool {
    http_body::Body::size_hint(body).exact().is_some_and(|n| (DEFER_MIN..=COLLECT_RESERVE_MAX).contains(&n))
}

/// The most bytes of deferred bodies' Buffers allocated in one turn of the loop (or one
/// body, when it alone is more); the rest wait for the next (`Core::body_resume`).
pub const TURN_BODY_BYTES: u64 = COLLECT_RESERVE_MAX;

/// How JS asked for a request body.
pub enum ReadMode {
    /// Everything, as one buffer (`text()`, `json()`, `arrayBuffer()`), when its length is
    /// not declared.
    Collect,
    /// Everything, written into a JS Buffer of the declared length (at most
    /// COLLECT_RESERVE_MAX).
    CollectInto(JsBody),
    /// One chunk per pull (`request.body`), with `credit` granting each read; with
    /// `read_ahead` (HTTP/2), the chunks already received after it too, up to
    /// `STREAM_READ_AHEAD` bytes.
    Stream { credit: Arc<Notify>, read_ahead: bool },
}

/// The most bytes an HTTP/2 body's reader takes in one pull (`ReadMode::Stream`): its first chunk,
/// then frames already received. hyper gives a frame's bytes back to the flow window as it is read,
/// and h2 sends a WINDOW_UPDATE for each such release when the client used up its window: read one
/// frame a pull, a 65,535-byte window split into ever smaller updates (a 16,383-byte frame left a
/// 1-byte piece, sent on as a 1-byte frame), and a 64 MiB upload ended up mostly in frames of one
/// byte, at 2-3 MiB/s (docs/network-thread.md, "HTTP/2 uploads under a small window, round
/// nineteen"). Taken together, the releases of a pull make one update. Two frames' worth: with 64
/// KiB, a 1 MiB window's upload over a 20 ms round trip went 10-20% slower, not explained.
pub const STREAM_READ_AHEAD: u64 = 32 * 1024;

/// Reads a request body off the connection for JS, until its end, an error, the
/// size limit, or `cancel` (JS released the request). True when it ended in its first
/// poll, made here (the in-thread mode, inside a turn): its last event is queued already.
pub fn spawn_body_reader(
    rt: &tokio::runtime::Handle,
    mut body: crate::direct::Source,
    id: u32,
    limit: u64,
    mut mode: ReadMode,
    doorbell: Arc<Doorbell>,
    mut cancel: oneshot::Receiver<()>,
) -> bool {
    let in_turn = crate::in_thread::in_turn_of(&doorbell);
    let reader = async move {
        if let (ReadMode::CollectInto(into), crate::direct::Source::Direct(direct)) = (&mut mode, &mut body) {
            // Read from the socket straight into the Buffer (direct.rs).
            let filled = tokio::select! {
                biased;
                _ = &mut cancel => return,
                r = fill_direct(into, direct) => r,
            };
            let event = match (filled, std::mem::replace(&mut mode, ReadMode::Collect)) {
                (true, ReadMode::CollectInto(into)) => Event::BodyFilled(id, into),
                _ => Event::BodyError(id, BodyErrorKind::Aborted),
            };
            doorbell.push(event);
            return;
        }
        let mut seen: u64 = 0;
        let mut collected = Collected::default();
        // In stream mode each credit (one JS pull) buys one data chunk; frames that carry
        // none (trailers, empty chunks) do not use it up.
        let mut need_credit = true;
        // Bytes read ahead since the last credit (`STREAM_READ_AHEAD`).
        let mut ahead: u64 = 0;
        loop {
            let mut here = None;
            if let (ReadMode::Stream { credit, .. }, true) = (&mode, need_credit) {
                if ahead > 0 {
                    // A frame received already is taken without a credit; one not here yet
                    // waits for the next pull.
                    let polled = std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut body).poll_frame(cx))).await;
                    here = match polled {
                        Poll::Ready(f) => Some(f),
                        Poll::Pending => None,
                    };
                }
                if here.is_none() {
                    ahead = 0;
                    tokio::select! {
                        biased;
                        _ = &mut cancel => return,
                        _ = credit.notified() => {}
                    }
                    need_credit = false;
                }
            }
            // `biased`: the branches in order, without a random number per poll; the
            // cancel first, so that a body that keeps coming cannot delay it.
            let frame = match here {
                Some(f) => f,
                None => tokio::select! {
                    biased;
                    _ = &mut cancel => return,
                    f = body.frame() => f,
                },
            };
            let event = match frame {
                None => match std::mem::replace(&mut mode, ReadMode::Collect) {
                    ReadMode::Collect => Event::BodyFull(id, Box::new(std::mem::take(&mut collected))),
                    // hyper ends a body of declared length only once all of it came.
                    ReadMode::CollectInto(into) if seen == into.len() as u64 => Event::BodyFilled(id, into),
                    ReadMode::CollectInto(_) => Event::BodyError(id, BodyErrorKind::Aborted),
                    ReadMode::Stream { .. } => Event::BodyEnd(id),
                },
                Some(Err(_)) => Event::BodyError(id, BodyErrorKind::Aborted),
                Some(Ok(frame)) => {
                    let Ok(data) = frame.into_data() else { continue };
                    seen += data.len() as u64;
                    if seen > limit {
                        Event::BodyError(id, BodyErrorKind::TooLarge)
                    } else if data.is_empty() {
                        continue;
                    } else {
                        match &mut mode {
                            ReadMode::Collect => collected.push(data),
                            ReadMode::CollectInto(into) => {
                                if !into.write_at((seen - data.len() as u64) as usize, &data) {
                                    // More than declared: hyper does not let that through.
                                    doorbell.push(Event::BodyError(id, BodyErrorKind::Aborted));
                                    return;
                                }
                            }
                            ReadMode::Stream { read_ahead, .. } => {
                                if *read_ahead {
                                    ahead += data.len() as u64;
                                    if ahead >= STREAM_READ_AHEAD {
                                        ahead = 0;
                                    }
                                }
                                doorbell.push(Event::BodyData(id, data));
                                need_credit = true;
                            }
                        }
                        continue;
                    }
                }
            };
            doorbell.push(event);
            return;
        }
    };
    if crate::in_thread::drives_here() {
        let shared = Arc::new(SharedReader {
            fut: Mutex::new(Some(Box::pin(reader))),
            task: Mutex::new(None),
            queued: AtomicBool::new(false),
        });
        // JS asks for a body (this is its call) mostly once the connection has read all of
        // it: the reader's first poll, here, then copies it at once (`Core::body_collect`
        // hands it back with the call), where as a task it ran in the next round and JS
        // took it in a drain after that (docs/network-thread.md, "Large request bodies,
        // round sixteen"). Outside a turn the task is spawned all the same: its wake-up of
        // the runtime is what gets JS called for what the poll queued.
        if poll_shared(&shared) && in_turn {
            return true;
        }
        rt.spawn(crate::in_thread::Noted::new(ReaderTask(shared)));
    } else {
        rt.spawn(crate::in_thread::Noted::new(reader));
    }
    false
}

/// Fills `into` from a body read past hyper; false when it ended early.
async fn fill_direct(into: &mut JsBody, direct: &mut crate::direct::DirectBody) -> bool {
    let mut filled = 0;
    std::future::poll_fn(|cx| {
        while filled < into.len() {
            let mut buf = tokio::io::ReadBuf::uninit(into.spare_from(filled));
            match std::task::ready!(direct.poll_read_into(cx, &mut buf)) {
                Ok(n) if n > 0 => filled += n,
                _ => return Poll::Ready(false),
            }
        }
        Poll::Ready(true)
    })
    .await
}

/// A body reader in the in-thread mode, polled by its own task and also, when the connection
/// task's poll woke it (hyper handed it a chunk), right after that poll (`run_woken_readers`):
/// the chunk is copied out, and hyper's read buffer it holds freed, before the next
/// connection's poll allocates one. Run as a task only (woken tasks queue behind the turn's
/// other connections), every connection's poll in a turn came before any reader's, and each
/// connection held two read buffers at once (hyper's read to see the client leave reserves
/// a new one while the last chunk holds the old): 6-8 MiB more at 50 connections echoing
/// 100 KiB (docs/network-thread.md, "Large request bodies, round seven").
struct SharedReader {
    /// None once the reader finished (or its task was dropped).
    fut: Mutex<Option<Pin<Box<dyn Future<Output = ()> + Send>>>>,
    /// The reader task's waker, as its last poll saw it.
    task: Mutex<Option<Waker>>,
    /// In the list of woken readers (`WOKEN`).
    queued: AtomicBool,
}

thread_local! {
    /// Readers woken on this (in-thread) thread since the connection task last ran them.
    static WOKEN: RefCell<Vec<Arc<SharedReader>>> = const { RefCell::new(Vec::new()) };
}

impl Wake for SharedReader {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if crate::in_thread::drives_here() && !self.queued.swap(true, Ordering::Relaxed) {
            // `try_with`: nothing to list once the thread is going away.
            let _ = WOKEN.try_with(|w| w.borrow_mut().push(self.clone()));
            ANY_WOKEN.store(true, Ordering::Relaxed);
        }
        // The task too, for a wake-up outside a connection's poll.
        if let Some(task) = self.task.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            task.wake_by_ref();
        }
    }
}

/// Polls the reader; true once it finished.
fn poll_shared(reader: &Arc<SharedReader>) -> bool {
    reader.queued.store(false, Ordering::Relaxed);
    let Ok(mut slot) = reader.fut.try_lock() else { return false };
    let Some(fut) = slot.as_mut() else { return true };
    let waker = Waker::from(reader.clone());
    if fut.as_mut().poll(&mut Context::from_waker(&waker)).is_ready() {
        *slot = None;
        return true;
    }
    false
}

/// The task of a `SharedReader`.
struct ReaderTask(Arc<SharedReader>);

impl Future for ReaderTask {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        {
            let mut task = self.0.task.lock().unwrap_or_else(|p| p.into_inner());
            if !task.as_ref().is_some_and(|t| t.will_wake(cx.waker())) {
                *task = Some(cx.waker().clone());
            }
        }
        if poll_shared(&self.0) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

impl Drop for ReaderTask {
    fn drop(&mut self) {
        // The runtime dropped the task (shut down): the reader goes with it, as a task's
        // future would, even while it waits in `WOKEN`.
        *self.0.fut.lock().unwrap_or_else(|p| p.into_inner()) = None;
        *self.0.task.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

/// Some thread listed a woken reader since `run_woken_readers` last looked: without it,
/// that call reads no thread-local (a call through `__tls_get_addr` in an addon, about 70
/// instructions a plain request over its polls). A thread that clears it for another's
/// list only leaves those readers to their own tasks.
static ANY_WOKEN: AtomicBool = AtomicBool::new(false);

/// Runs the body readers that the poll just made woke (the in-thread mode; `drive` calls it
/// after each poll of a connection). Nothing when none was woken.
#[inline]
pub fn run_woken_readers() {
    if ANY_WOKEN.load(Ordering::Relaxed) {
        run_listed_readers();
    }
}

#[cold]
fn run_listed_readers() {
    ANY_WOKEN.store(false, Ordering::Relaxed);
    while let Some(reader) = WOKEN.try_with(|w| w.borrow_mut().pop()).ok().flatten() {
        poll_shared(&reader);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn joined(c: &Collected) -> Vec<u8> {
        c.parts().flat_map(|p| p.iter().copied()).collect()
    }

    #[test]
    fn collected_keeps_order_across_short_and_long_chunks() {
        let sizes =
            [1, KEEP_CHUNK_MIN - 1, KEEP_CHUNK_MIN, 3, 5 * KEEP_CHUNK_MIN, KEEP_CHUNK_MIN + 1, 2, 7000, 7000, 7000];
        let mut c = Collected::default();
        let mut want = Vec::new();
        let mut n = 0u8;
        for size in sizes {
            let chunk: Vec<u8> = (0..size)
                .map(|_| {
                    n = n.wrapping_add(1);
                    n
                })
                .collect();
            want.extend_from_slice(&chunk);
            c.push(Bytes::from(chunk));
        }
        assert_eq!(c.len(), want.len());
        assert_eq!(joined(&c), want);
        // Long chunks are kept as they came, short ones copied together.
        assert!(c.rest.iter().any(|p| p.len() == 5 * KEEP_CHUNK_MIN));
        assert!(c.rest.len() < sizes.len());
    }

    #[test]
    fn collected_from_one_piece_and_empty() {
        let c = Collected::from(Bytes::from_static(b"abc"));
        assert_eq!(joined(&c), b"abc");
        assert!(Collected::from(Bytes::new()).is_empty());
        assert_eq!(Collected::default().parts().count(), 0);
        assert_eq!(c.only_piece(), Some(&b"abc"[..]));
        let mut short = Collected::default();
        short.push(Bytes::from_static(b"ab"));
        short.push(Bytes::from_static(b"cd"));
        assert_eq!(short.only_piece(), Some(&b"abcd"[..]));
        short.push(Bytes::from(vec![7u8; KEEP_CHUNK_MIN]));
        assert_eq!(short.only_piece(), None);
        assert_eq!(joined(&short).len(), 4 + KEEP_CHUNK_MIN);
    }
}
