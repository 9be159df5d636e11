//! WebSocket (RFC 6455, server side) on an upgraded HTTP/1.1 connection: the handshake
//! (validation, subprotocol and permessage-deflate negotiation), frame parsing and
//! encoding, and the task that runs one socket: a reader with read credit (it stops
//! reading while JS has not taken what it delivered) and a writer that drains the
//! socket's bounded send queue. Events cross to JS through the bridge (`Event::Ws*`).
//!
//! The framing is our own, over `flate2` for RFC 7692: the maintained crates either have
//! no permessage-deflate (tungstenite, fastwebsockets) or are young (yawc), and the
//! bridge wants control of when a socket is read.

use crate::bridge::{Doorbell, Event};
use crate::connection::Phase;
use crate::error::{BridgeError, BridgeResult, ErrorKind};
use crate::stats::Stats;
use base64::Engine;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use sha1::Digest;
use std::collections::VecDeque;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::sync::{watch, Notify};

/// RFC 6455 section 1.3: appended to the client's key before hashing.
const ACCEPT_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Bytes delivered to JS and not yet drained above which a socket is not read: TCP then
/// pushes back on a fast sender. One message larger than this still passes whole.
const READ_CREDIT: usize = 1024 * 1024;

/// Messages shorter than this are sent uncompressed even with permessage-deflate: the
/// deflate block overhead makes tiny messages larger, not smaller.
pub(crate) const COMPRESS_MIN: usize = 64;

/// How long a closing socket waits for the peer's close frame before dropping TCP.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// The most `parse_frame` reserves ahead of bytes that have arrived.
const RESERVE_AHEAD: usize = 1024 * 1024;

/// The room a socket's read starts with, and the most it grows to: a read that fills all
/// of its room doubles the next one's (a client sending 16 KiB messages four at a time,
/// 64 KiB and 32 bytes a burst, took 2.25 reads a message with 8 KiB), and one of under
/// half the starting room goes back to it (so a socket that sent one burst does not keep
/// its peak; one message of 16 KiB read alone does not shrink it).
const READ_ROOM: usize = 8 * 1024;
const READ_ROOM_MAX: usize = 128 * 1024;

/// Payloads up to this size are copied into one write buffer with the frames around
/// them; larger ones are written from their own allocation, in the same `writev`.
pub(crate) const COALESCE_LIMIT: usize = 2 * 1024;

/// The queue's `framed` buffer is dropped rather than kept past this capacity (a burst
/// of small messages to a slow reader would otherwise hold its peak for good).
const FRAMED_KEEP: usize = 256 * 1024;

/// A reader keeps room for this many messages of one read (a read of many tiny frames
/// would otherwise hold its peak for the socket's life).
const DELIVERED_KEEP: usize = 256;

/// The most chunks one `writev` takes.
const WRITE_SLICES: usize = 64;

/// Close codes used by the server (RFC 6455 section 7.4.1).
pub(crate) mod code {
    pub const NORMAL: u16 = 1000;
    pub const GOING_AWAY: u16 = 1001;
    pub const PROTOCOL_ERROR: u16 = 1002;
    pub const NO_STATUS: u16 = 1005;
    pub const ABNORMAL: u16 = 1006;
    pub const INVALID_DATA: u16 = 1007;
    pub const POLICY: u16 = 1008;
    pub const TOO_BIG: u16 = 1009;
}

/// Whether a close code received on the wire is one a peer may send (RFC 6455 section
/// 7.4 and the IANA registry): 1005, 1006 and 1015 are never sent; 1004 is reserved.
pub(crate) fn valid_wire_code(c: u16) -> bool {
    matches!(c, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// permessage-deflate parameters agreed for one socket (RFC 7692 section 7.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Deflate {
    /// The client resets its compressor after each message, so we reset our inflater.
    pub client_no_context_takeover: bool,
    /// Our compression window (9-15). We always take no context takeover ourselves, so
    /// a published frame compressed once is valid for every subscriber.
    pub server_window_bits: u8,
}

impl Deflate {
    /// The `Sec-WebSocket-Extensions` value of the response.
    fn response(&self, offered_server_bits: bool) -> String {
        let mut s = String::from("permessage-deflate; server_no_context_takeover");
        if self.client_no_context_takeover {
            s.push_str("; client_no_context_takeover");
        }
        if offered_server_bits {
            s.push_str(&format!("; server_max_window_bits={}", self.server_window_bits));
        }
        s
    }
}

/// The first acceptable permessage-deflate offer of an `Sec-WebSocket-Extensions` value,
/// and whether it named server_max_window_bits. Offers with unknown, repeated or
/// invalid parameters are declined (section 7.1); so are windows below 9 bits, which
/// zlib cannot produce for raw deflate.
pub(crate) fn negotiate_deflate(header: &str) -> Option<(Deflate, bool)> {
    'offers: for offer in header.split(',') {
        let mut parts = offer.split(';').map(str::trim);
        if !parts.next()?.eq_ignore_ascii_case("permessage-deflate") {
            continue;
        }
        let mut d = Deflate { client_no_context_takeover: false, server_window_bits: 15 };
        let (mut seen_snct, mut seen_cnct, mut seen_smwb, mut seen_cmwb) = (false, false, false, false);
        for p in parts {
            let (name, value) = match p.split_once('=') {
                Some((n, v)) => (n.trim(), Some(v.trim().trim_matches('"'))),
                None => (p, None),
            };
            let bits = |v: Option<&str>| -> Option<u8> {
                let b: u8 = v?.parse().ok()?;
                (8..=15).contains(&b).then_some(b)
            };
            match name.to_ascii_lowercase().as_str() {
                "server_no_context_takeover" if !seen_snct && value.is_none() => seen_snct = true,
                "client_no_context_takeover" if !seen_cnct && value.is_none() => {
                    seen_cnct = true;
                    d.client_no_context_takeover = true;
                }
                "server_max_window_bits" if !seen_smwb => {
                    seen_smwb = true;
                    match bits(value) {
                        Some(b) if b >= 9 => d.server_window_bits = b,
                        _ => continue 'offers,
                    }
                }
                "client_max_window_bits" if !seen_cmwb => {
                    seen_cmwb = true;
                    // No value: the client could take a limit; we set none (we inflate with
                    // a full window, which reads any smaller one).
                    if value.is_some() && bits(value).is_none() {
                        continue 'offers;
                    }
                }
                _ => continue 'offers,
            }
        }
        return Some((d, seen_smwb));
    }
    None
}

/// What a request said about upgrading, gathered on its connection task when it has an
/// `Upgrade` header; checked by `upgradeWebSocket` on the JS thread.
#[derive(Debug, Default)]
pub(crate) struct Offer {
    /// GET, HTTP/1.1, `Connection: upgrade` and `Upgrade: websocket`.
    pub is_upgrade: bool,
    pub key: Option<String>,
    pub version: Option<String>,
    pub protocols: Vec<String>,
    pub extensions: String,
}

fn has_token(headers: &http::HeaderMap, name: http::header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .any(|v| v.to_str().is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token))))
}

/// The upgrade offer of a request with an `Upgrade` header. (hyper's own upgrade is not
/// used: the connection task takes the connection back once the 101 is written.)
pub(crate) fn offer(head: &http::request::Parts) -> Option<Box<Offer>> {
    if !head.headers.contains_key(http::header::UPGRADE) {
        return None;
    }
    let h = &head.headers;
    let is_upgrade = head.method == http::Method::GET
        && head.version == http::Version::HTTP_11
        && has_token(h, http::header::CONNECTION, "upgrade")
        && has_token(h, http::header::UPGRADE, "websocket");
    let one = |name| {
        let mut all = h.get_all(name).iter();
        match (all.next(), all.next()) {
            (Some(v), None) => v.to_str().ok().map(|s| s.trim().to_string()),
            _ => None,
        }
    };
    let mut protocols = Vec::new();
    for v in h.get_all(http::header::SEC_WEBSOCKET_PROTOCOL) {
        if let Ok(s) = v.to_str() {
            protocols.extend(s.split(',').map(|p| p.trim().to_string()).filter(|p| !p.is_empty()));
        }
    }
    let extensions = h
        .get_all(http::header::SEC_WEBSOCKET_EXTENSIONS)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join(",");
    let offer = Offer {
        is_upgrade,
        key: one(http::header::SEC_WEBSOCKET_KEY),
        version: one(http::header::SEC_WEBSOCKET_VERSION),
        protocols,
        extensions,
    };
    Some(Box::new(offer))
}

/// Why a request cannot be upgraded (the `code` of the TypeError `upgradeWebSocket` throws).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OfferError {
    /// Not GET, not HTTP/1.1, or no `Connection: upgrade` / `Upgrade: websocket`.
    NotUpgrade,
    /// `Sec-WebSocket-Key` missing, repeated, or not 16 bytes in base64.
    BadKey,
    /// `Sec-WebSocket-Version` is not 13.
    BadVersion,
    /// The protocol chosen is not one the client offered.
    BadProtocol,
}

/// The handshake's answer: `Sec-WebSocket-Accept` and the agreed protocol and extension.
#[derive(Debug)]
pub(crate) struct Handshake {
    pub accept: String,
    pub protocol: Option<String>,
    pub deflate: Option<Deflate>,
    pub extensions: Option<String>,
}

/// RFC 6455 section 4.2.1: checks the offer and agrees on the protocol and deflate.
pub(crate) fn handshake(offer: &Offer, protocol: Option<&str>, deflate: bool) -> Result<Handshake, OfferError> {
    if !offer.is_upgrade {
        return Err(OfferError::NotUpgrade);
    }
    let key = offer.key.as_deref().ok_or(OfferError::BadKey)?;
    let decoded = base64::engine::general_purpose::STANDARD.decode(key).map_err(|_| OfferError::BadKey)?;
    if decoded.len() != 16 {
        return Err(OfferError::BadKey);
    }
    if offer.version.as_deref() != Some("13") {
        return Err(OfferError::BadVersion);
    }
    if let Some(p) = protocol {
        if !offer.protocols.iter().any(|o| o == p) {
            return Err(OfferError::BadProtocol);
        }
    }
    let mut sha = sha1::Sha1::new();
    sha.update(key.as_bytes());
    sha.update(ACCEPT_GUID);
    let accept = base64::engine::general_purpose::STANDARD.encode(sha.finalize());
    let agreed = if deflate { negotiate_deflate(&offer.extensions) } else { None };
    Ok(Handshake {
        accept,
        protocol: protocol.map(str::to_string),
        deflate: agreed.map(|(d, _)| d),
        extensions: agreed.map(|(d, bits)| d.response(bits)),
    })
}

/// Per-socket settings, from the server's `websocket` options and the upgrade's own.
/// What a publish reads first (`SocketShared`'s layout).
#[derive(Debug, Clone, Copy)]
#[repr(C)]
pub(crate) struct SocketConfig {
    pub backpressure_limit: usize,
    pub deflate: Option<Deflate>,
    pub close_on_backpressure_limit: bool,
    /// The network runs on the JS thread: a binary message of any size is unmasked as
    /// the drain copies it. With a thread of its own, a large one is unmasked there,
    /// off the JS thread (the drain's copy is then a plain, faster one).
    pub unmask_in_drain: bool,
    /// Every thread that touches the socket's state is the JS thread (the in-thread mode):
    /// the counts (`buffered`, `unread`) and the flush list's flag (`wake_pending`) are
    /// updated with a load and a store, and the send queue's lock is a check, not a mutex
    /// (`QueueLock`). A locked instruction waited for its cold line and for every store
    /// before it, at each send and each message.
    pub one_thread: bool,
    pub max_payload: usize,
    pub idle_timeout: Option<Duration>,
}

/// A message as JS receives it.
pub enum Message {
    Text(Utf8),
    Binary(Bytes),
    /// A binary message as it came in one frame, still masked: unmasked as JS's drain
    /// copies it (`unmask_into`), so its bytes are gone over once, not twice.
    Masked(Bytes, [u8; 4]),
}

/// A text message's bytes, checked to be UTF-8 when it arrived: a slice of the read
/// buffer (no copy of its own) until JS makes its string.
pub struct Utf8 {
    bytes: Bytes,
    /// All of them ASCII, as most are.
    ascii: bool,
}

impl Utf8 {
    /// `INVALID_DATA` (1007) unless `bytes` are UTF-8. ASCII is checked first: for 64
    /// bytes `is_ascii` took 27 instructions where `from_utf8` took 140 (callgrind), and
    /// the drain asks again whether a message is ASCII (`is_ascii`).
    pub fn checked(bytes: Bytes) -> Result<Self, u16> {
        if bytes.is_ascii() {
            return Ok(Utf8 { bytes, ascii: true });
        }
        match std::str::from_utf8(&bytes) {
            Ok(_) => Ok(Utf8 { bytes, ascii: false }),
            Err(_) => Err(code::INVALID_DATA),
        }
    }

    pub fn as_str(&self) -> &str {
        // SAFETY: `checked` is the only constructor, and the bytes never change.
        unsafe { std::str::from_utf8_unchecked(&self.bytes) }
    }

    /// Whether every character is ASCII (known since `checked`).
    pub fn is_ascii(&self) -> bool {
        self.ascii
    }
}

impl Message {
    pub fn len(&self) -> usize {
        match self {
            Message::Text(s) => s.bytes.len(),
            Message::Binary(b) | Message::Masked(b, _) => b.len(),
        }
    }
}

/// What waits in a socket's send queue.
pub(crate) enum Out {
    /// A data message, framed (and compressed) by the writer.
    Message {
        payload: Bytes,
        text: bool,
        compress: bool,
    },
    /// A frame encoded once for many sockets (a publish).
    Encoded {
        frame: Bytes,
        payload_len: usize,
    },
    /// Small uncompressed data frames, encoded when they were queued: the next `len`
    /// bytes of the queue's `framed` buffer, completing `data` message bytes.
    Framed {
        len: usize,
        data: usize,
    },
    Ping(Bytes),
    Pong(Bytes),
    Close(u16, String),
}

/// A socket's send queue: what waits for the writer, in order. The open run and the
/// buffer first: a publish touches nothing else (`SocketShared`'s layout).
#[derive(Default)]
#[repr(C)]
struct SendQueue {
    /// The `Out::Framed` run at the back of the queue, kept here rather than in `items`
    /// until something else is queued behind it (`push_back`): `(len, data)` as in the
    /// item, `len` 0 for none. A small send or a publish adds to it without a look at the
    /// deque's own buffer, and the flush takes it without one: one cold cache line less a
    /// subscriber per publish and per flush in a fan-out.
    tail: (usize, usize),
    /// In-thread publishes: frames of the JS side's batch buffer (`Sockets::publish`) this
    /// socket takes as they lie there, not copied. Always the queue's front, when set: it
    /// is set only on an empty queue, and what is queued behind it stays behind it. The
    /// flush after the batch writes it from there or copies it in (`unshare`), before the
    /// buffer is reused; the socket's task does not write past it.
    shared: Shared,
    /// The bytes of the `Out::Framed` items, back to back. The writer takes them with
    /// `split` and writes them from here, so once written the allocation is used again:
    /// a small message costs one copy (from the JS buffer) and no allocation of its own.
    framed: BytesMut,
    items: VecDeque<Out>,
}

/// A run of the JS side's batch buffer: `start..end`, completing `data` message bytes,
/// packed in one word (each below `PUBLISHED_MAX`, 2^20): 8 bytes more in the queue kept
/// the config's first fields in the second line of `SocketShared`, where a publish reads
/// them (16 more moved them to a third, one more read miss a delivery, callgrind). `end`
/// 0 for none. Offsets, not a pointer: the bytes are read only where the buffer is
/// passed in (the publish, the flush).
#[derive(Default, Clone, Copy)]
struct Shared(u64);

const SHARED_BITS: u32 = 21;
const SHARED_MASK: u64 = (1 << SHARED_BITS) - 1;
const _: () = assert!(crate::pubsub::PUBLISHED_MAX < 1 << SHARED_BITS);

impl Shared {
    fn new(start: usize, end: usize, data: usize) -> Self {
        Shared(end as u64 | (start as u64) << SHARED_BITS | (data as u64) << (2 * SHARED_BITS))
    }
    fn end(self) -> usize {
        (self.0 & SHARED_MASK) as usize
    }
    fn start(self) -> usize {
        (self.0 >> SHARED_BITS & SHARED_MASK) as usize
    }
    fn data(self) -> usize {
        (self.0 >> (2 * SHARED_BITS)) as usize
    }
}

impl SendQueue {
    /// Makes the shared run the socket's own, at the queue's front: into `framed` as the
    /// open run when nothing else is queued (the common case: a later publish it skipped,
    /// or a full socket), else as an item ahead of the rest.
    #[inline(never)]
    fn unshare(&mut self, batch: &[u8]) {
        let run = std::mem::take(&mut self.shared);
        if run.end() == 0 {
            return;
        }
        // Always in range: the batch buffer is kept until every listed socket was flushed.
        let Some(bytes) = batch.get(run.start()..run.end()) else { return };
        if self.holds_none_of_its_own() {
            self.framed.extend_from_slice(bytes);
            self.tail = (bytes.len(), run.data());
        } else {
            self.items.push_front(Out::Encoded { frame: Bytes::copy_from_slice(bytes), payload_len: run.data() });
        }
    }

    /// `queue_shared`'s other case: the frame at `start..end` of `batch` is copied into
    /// the open run, any shared run made the socket's own first. Out of line: a fan-out's
    /// publishes seldom come here, and inlined it made the common case spill registers.
    #[cold]
    #[inline(never)]
    fn copy_in(&mut self, batch: &[u8], start: usize, end: usize, len: usize) {
        self.unshare(batch);
        self.framed.extend_from_slice(&batch[start..end]);
        self.tail.0 += end - start;
        self.tail.1 += len;
    }

    /// Moves the open `Framed` run into `items`, behind what is there.
    fn seal(&mut self) {
        if self.tail.0 > 0 {
            let (len, data) = std::mem::take(&mut self.tail);
            self.items.push_back(Out::Framed { len, data });
        }
    }

    /// Queues `out` behind everything queued, the open `Framed` run included.
    fn push_back(&mut self, out: Out) {
        self.seal();
        self.items.push_back(out);
    }

    /// Nothing queued in the socket's own buffers (a shared run aside).
    fn holds_none_of_its_own(&self) -> bool {
        self.items.is_empty() && self.tail.0 == 0 && self.framed.is_empty()
    }

    fn is_empty(&self) -> bool {
        self.items.is_empty() && self.tail.0 == 0 && self.shared.end() == 0
    }
}

/// `send` results, as Bun numbers them: bytes handed to the socket, queued behind
/// others (a DRAIN record follows), or dropped.
pub(crate) const SEND_QUEUED: i32 = -1;
pub(crate) const SEND_DROPPED: i32 = 0;

/// One socket's state shared by the JS thread (sends) and its task.
///
/// In the order a publish and the flush touch the fields, from a cache line's start: a
/// fan-out touches every subscriber's state at each publish and again at the flush, and
/// 1,000 subscribers' states are more than L1 holds. The first two lines hold all that a
/// publish reads and writes (the queue, the counts and flags, the config); the flush adds
/// the writer, right after them.
#[repr(C, align(64))]
pub(crate) struct SocketShared {
    queue: QueueLock,
    /// Data bytes queued and not yet written to the socket.
    buffered: AtomicUsize,
    /// A close frame is queued: data sends are refused.
    closing: AtomicBool,
    /// The socket's task has ended (or never started).
    gone: AtomicBool,
    /// The 101 is on its way (`ws_accept`): publishes reach the socket from here on.
    accepted: AtomicBool,
    /// Listed for a wake-up at the JS thread's next flush.
    wake_pending: AtomicBool,
    /// A send was queued behind others: post a DRAIN record once the queue runs low.
    drain_wanted: AtomicBool,
    /// JS has someone to tell of a drain (a `drain` listener or handler): without one, no
    /// DRAIN record is posted (in an echo, one per socket and batch: a quarter of a
    /// record more per message, for no one).
    drain_heard: AtomicBool,
    /// The read loop's idle timer woke the socket's task (`WhenWoken`'s flag): here, in
    /// the line the loop reads `closing` from at each pass, not in a line of its own.
    idle_woken: AtomicBool,
    pub config: SocketConfig,
    pub sid: u32,
    /// The connection's sending half, written by whichever side gets there first: the
    /// flush after a JS batch (`send_now`) or the socket's task (`write_loop`).
    writer: Mutex<Writer>,
    writer_wake: WriterWake,
    /// Bytes of messages handed to the bridge that JS has not drained yet.
    unread: AtomicUsize,
    credit: Notify,
    doorbell: Arc<Doorbell>,
    /// The task the idle timer wakes (`idle_woken`).
    idle_task: atomic_waker::AtomicWaker,
}

/// The idle timer's waker (`read_loop`): the socket's task, through `idle_woken`.
impl std::task::Wake for SocketShared {
    fn wake(self: Arc<Self>) {
        crate::woken::raise(&*self);
    }

    fn wake_by_ref(self: &Arc<Self>) {
        crate::woken::raise(&**self);
    }
}

impl crate::woken::WakeFlag for SocketShared {
    fn woken(&self) -> &AtomicBool {
        &self.idle_woken
    }

    fn task(&self) -> &atomic_waker::AtomicWaker {
        &self.idle_task
    }
}

/// A socket's send queue and its lock. With worker threads the lock is a mutex: the JS
/// thread queues, the socket's task (on another thread) writes. Where every thread that
/// touches the socket is the JS thread (`SocketConfig::one_thread`), the mutex's two locked
/// instructions a lock, which wait for the line and for every store before them, guard
/// against nothing: there a lock checks that it runs on the thread that made the socket
/// (and panics on any other rather than race) and sets a bit that keeps one guard out at
/// a time, as the mutex would on one thread (where a second lock deadlocks). Plain loads
/// and stores, no locked instruction.
///
/// The queue first, from the line's start as before; the lock's words after it, in the
/// second line with the counts and flags.
#[repr(C)]
struct QueueLock {
    queue: std::cell::UnsafeCell<SendQueue>,
    /// One-thread mode: the owning thread's `pthread_self`, its low bit set while a guard
    /// is out. 0: the mutex is the lock. Atomic so that a wrong thread's check is a read,
    /// not a race; only relaxed loads and stores.
    owner: AtomicUsize,
    mutex: Mutex<()>,
}

// SAFETY: with `owner` 0, `queue` is reached only through a guard that holds `mutex`.
// Otherwise only through a guard `lock` gave out on the thread `owner` names, while that
// thread had no other guard out (`lock` checks both before it makes one, and panics
// otherwise): one thread, one guard at a time. Sending the lock (the last `Arc` dropped
// on another thread) moves a `SendQueue`, which is `Send`.
unsafe impl Sync for QueueLock {}

impl QueueLock {
    fn new(one_thread: bool) -> Self {
        // SAFETY: `pthread_self` has no preconditions.
        let me = unsafe { libc::pthread_self() } as usize;
        // A thread's id is the address of its control block (glibc, musl), so its low bit
        // is free; were it not, the mutex would do.
        let owner = if one_thread && me & 1 == 0 { me } else { 0 };
        QueueLock { owner: AtomicUsize::new(owner), mutex: Mutex::new(()), queue: Default::default() }
    }

    #[inline(always)]
    fn lock(&self) -> QueueGuard<'_> {
        let owner = self.owner.load(Ordering::Relaxed);
        if owner == 0 {
            let held = self.mutex.lock().unwrap_or_else(|p| p.into_inner());
            return QueueGuard { lock: self, held: Some(held) };
        }
        // SAFETY: `pthread_self` has no preconditions.
        let me = unsafe { libc::pthread_self() } as usize;
        // `owner` with its bit set (a guard out) is not `me` either.
        assert!(owner == me, "a WebSocket's send queue locked twice, or off its thread");
        self.owner.store(me | 1, Ordering::Relaxed);
        QueueGuard { lock: self, held: None }
    }
}

struct QueueGuard<'a> {
    lock: &'a QueueLock,
    /// The mutex's guard; `None` in the one-thread mode.
    held: Option<std::sync::MutexGuard<'a, ()>>,
}

impl std::ops::Deref for QueueGuard<'_> {
    type Target = SendQueue;

    fn deref(&self) -> &SendQueue {
        // SAFETY: the guard is the queue's only one (`QueueLock`'s `Sync`).
        unsafe { &*self.lock.queue.get() }
    }
}

impl std::ops::DerefMut for QueueGuard<'_> {
    fn deref_mut(&mut self) -> &mut SendQueue {
        // SAFETY: as `deref`, and `&mut self` keeps this guard's borrows apart.
        unsafe { &mut *self.lock.queue.get() }
    }
}

impl Drop for QueueGuard<'_> {
    fn drop(&mut self) {
        if self.held.is_none() {
            let owner = self.lock.owner.load(Ordering::Relaxed);
            self.lock.owner.store(owner & !1, Ordering::Relaxed);
        }
    }
}

/// A socket's sending half and what is encoded for it but not written yet.
/// What the flush's `write_framed` touches first (`SocketShared`'s layout).
#[derive(Default)]
#[repr(C)]
struct Writer {
    /// The queue's `framed` bytes of `batch`.
    framed: BytesMut,
    /// Set when the socket's task starts; taken when it ends (closing the connection).
    half: Option<crate::cork::WriteHalf>,
    /// Encoded bytes in order, each with the message bytes it completes (`buffered`).
    chunks: VecDeque<(Bytes, usize)>,
    /// A close frame is encoded: nothing more is sent.
    close_out: bool,
    failed: bool,
    /// The TCP socket `half` writes to as it is (`ConnWrite::plain_socket`), set and cleared
    /// with `half`: the flush's `send` reads it here, beside the flags it has just read,
    /// not through `half`'s box and tokio's stream behind it (two cold lines a subscriber
    /// and flush in a fan-out).
    fd: PlainFd,
    /// Where small frames are coalesced before they become a chunk.
    buf: BytesMut,
    /// The queue's contents while they are encoded (kept for its allocation).
    batch: Vec<Out>,
    compressor: Option<Compress>,
}

impl Writer {
    /// Whether bytes wait for room in the socket (encoded chunks, or records a TLS stream
    /// holds): the socket's task waits on its writability. A plain socket holds none.
    fn waits_for_room(&self) -> bool {
        !self.chunks.is_empty() || (self.fd.0 < 0 && self.half.as_ref().is_some_and(|h| h.holds_output()))
    }

    fn set_half(&mut self, half: crate::cork::WriteHalf) {
        self.fd = PlainFd(half.plain_socket().map_or(-1, |s| s.as_raw_fd()));
        self.half = Some(half);
    }

    fn take_half(&mut self) -> Option<crate::cork::WriteHalf> {
        self.fd = PlainFd(-1);
        self.half.take()
    }
}

/// `Writer::fd`: -1 where there is no plain socket (TLS, the task not started, or ended).
#[derive(Clone, Copy)]
struct PlainFd(i32);

impl Default for PlainFd {
    fn default() -> Self {
        PlainFd(-1)
    }
}

impl PlainFd {
    /// A `send` of `bytes` on the socket; `None` where there is no plain socket.
    fn send(self, bytes: &[u8]) -> Option<std::io::Result<usize>> {
        if self.0 < 0 {
            return None;
        }
        // SAFETY: the fd is that of the socket `Writer::half` owns, read under the writer's
        // lock while `half` is set (`set_half`, `take_half`), and `bytes` is initialized
        // memory of `bytes.len()` bytes.
        let sent = unsafe { libc::send(self.0, bytes.as_ptr().cast(), bytes.len(), libc::MSG_NOSIGNAL) };
        Some(if sent >= 0 { Ok(sent as usize) } else { Err(std::io::Error::last_os_error()) })
    }
}

/// Wakes a socket's writer (`write_loop`): a flag and the task's waker. tokio's `Notify`
/// did the same with a lock taken at every poll of the waiting writer, and the writer is
/// polled each time its task runs, which is each time the socket is readable.
#[derive(Default)]
struct WriterWake {
    notified: AtomicBool,
    task: atomic_waker::AtomicWaker,
}

impl WriterWake {
    /// As `Notify::notify_one`: the writer's next (or current) wait ends at once.
    fn notify_one(&self) {
        self.notified.store(true, Ordering::Release);
        self.task.wake();
    }

    /// Resolves once `notify_one` was called since the last wait ended.
    fn wait(&self) -> impl std::future::Future<Output = ()> + '_ {
        // The waker registered by this wait: registered again only when the task's changes
        // (`notify_one` takes it, but then this wait is over).
        let mut registered: Option<std::task::Waker> = None;
        std::future::poll_fn(move |cx| {
            if self.notified.load(Ordering::Acquire) && self.notified.swap(false, Ordering::AcqRel) {
                return Poll::Ready(());
            }
            if !registered.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                self.task.register(cx.waker());
                registered = Some(cx.waker().clone());
                // A notification between the check and the registration found no waker.
                if self.notified.swap(false, Ordering::AcqRel) {
                    return Poll::Ready(());
                }
            }
            Poll::Pending
        })
    }
}

impl SocketShared {
    pub fn new(sid: u32, config: SocketConfig, doorbell: Arc<Doorbell>) -> Arc<Self> {
        Arc::new(SocketShared {
            sid,
            queue: QueueLock::new(config.one_thread),
            config,
            buffered: AtomicUsize::new(0),
            writer: Mutex::new(Writer::default()),
            writer_wake: WriterWake::default(),
            wake_pending: AtomicBool::new(false),
            drain_wanted: AtomicBool::new(false),
            drain_heard: AtomicBool::new(false),
            closing: AtomicBool::new(false),
            gone: AtomicBool::new(false),
            accepted: AtomicBool::new(false),
            idle_woken: AtomicBool::new(true),
            unread: AtomicUsize::new(0),
            credit: Notify::new(),
            doorbell,
            idle_task: atomic_waker::AtomicWaker::new(),
        })
    }

    #[inline(always)]
    fn send_queue(&self) -> QueueGuard<'_> {
        self.queue.lock()
    }

    fn push(&self, out: Out) {
        self.send_queue().push_back(out);
        self.writer_wake.notify_one();
    }

    /// Whether the socket was accepted (`accept`); set and read on the JS thread only.
    pub fn is_accepted(&self) -> bool {
        self.accepted.load(Ordering::Relaxed)
    }

    pub fn accept(&self, on: bool) {
        self.accepted.store(on, Ordering::Relaxed);
    }

    /// Data bytes queued and not yet written (`bufferedAmount`).
    pub fn buffered(&self) -> usize {
        self.buffered.load(Ordering::Acquire)
    }

    /// Queues a data message of `len` payload bytes: `None` when dropped (closing, or
    /// over the backpressure limit), `Some(true)` when nothing was queued before it. With
    /// `tell`, the sender learns that it waited or was dropped (`send`), and a DRAIN record
    /// follows; a publish tells no one, so it asks for none (one per subscriber per batch
    /// of several publishes, otherwise).
    pub fn queue(&self, out: Out, len: usize, tell: bool) -> Option<bool> {
        let idle = self.admit(len, tell)?;
        self.send_queue().push_back(out);
        Some(idle)
    }

    /// `queue` for a small uncompressed data frame, encoded here by `encode` (which
    /// writes `frame_len` bytes) into the queue's `framed` buffer.
    #[inline(always)]
    pub fn queue_framed(
        &self,
        len: usize,
        frame_len: usize,
        tell: bool,
        encode: impl FnOnce(&mut BytesMut),
    ) -> Option<bool> {
        let idle = self.admit(len, tell)?;
        let mut q = self.send_queue();
        q.framed.reserve(frame_len);
        encode(&mut q.framed);
        q.tail.0 += frame_len;
        q.tail.1 += len;
        Some(idle)
    }

    /// `queue_framed` for a publish in the in-thread mode, whose frame lies at
    /// `start..end` of the JS side's batch buffer `batch`: a socket whose queue holds
    /// nothing else, or only the run of the batch's frames that ends where this one
    /// starts, takes it as a run of that buffer (`SendQueue::shared`), not copied. Any
    /// other is copied in as `queue_framed` does, the run ahead of it first.
    #[inline]
    pub fn queue_shared(&self, len: usize, batch: &[u8], start: usize, end: usize) -> Option<bool> {
        let idle = self.admit(len, false)?;
        self.attach_shared(len, batch, start, end);
        Some(idle)
    }

    /// `queue_shared`'s placement, once admitted: the frame at `start..end` of `batch`
    /// becomes (or extends) the socket's run of it, or is copied in.
    #[inline(always)]
    fn attach_shared(&self, len: usize, batch: &[u8], start: usize, end: usize) {
        let mut q = self.send_queue();
        let run = q.shared;
        let alone = q.holds_none_of_its_own();
        if alone && run.end() == 0 {
            q.shared = Shared::new(start, end, len);
        } else if alone && run.end() == start {
            // `end` and `data` grow in place: neither carries into the next field.
            q.shared = Shared(run.0 + (end - start) as u64 + ((len as u64) << (2 * SHARED_BITS)));
        } else {
            q.copy_in(batch, start, end, len);
        }
    }

    /// The checks and accounting of `queue`, before the message is queued.
    fn admit(&self, len: usize, tell: bool) -> Option<bool> {
        if self.closing.load(Ordering::Acquire) || self.gone.load(Ordering::Acquire) {
            return None;
        }
        let before = self.buffered.load(Ordering::Acquire);
        if before > 0 && before + len > self.config.backpressure_limit {
            // A DRAIN record tells the sender when to try again.
            if tell {
                self.drain_wanted.store(true, Ordering::Release);
            }
            if self.config.close_on_backpressure_limit {
                tracing::debug!(sid = self.sid, "websocket: backpressure limit reached; closing");
                self.close(code::POLICY, "backpressure limit reached".into());
            }
            return None;
        }
        if self.config.one_thread {
            // The only thread that writes the count: a load and a store suffice.
            self.buffered.store(before + len, Ordering::Release);
        } else {
            self.buffered.fetch_add(len, Ordering::AcqRel);
        }
        // No write yet: the JS thread's flush writes each socket it sent to once
        // (`send_now`), so a batch's messages go out in one write.
        if before > 0 && tell {
            self.drain_wanted.store(true, Ordering::Release);
        }
        Some(before == 0)
    }

    /// Marks the socket for a writer wake-up at the next flush; true the first time since
    /// the last one, when the caller must list it.
    pub fn wants_wake(&self) -> bool {
        // A plain load first: the later publishes of a batch find the socket listed
        // without a locked read-modify-write.
        if self.wake_pending.load(Ordering::Acquire) {
            return false;
        }
        if self.config.one_thread {
            // The flag's only thread (`admit`'s count): a store suffices.
            self.wake_pending.store(true, Ordering::Release);
            return true;
        }
        !self.wake_pending.swap(true, Ordering::AcqRel)
    }

    /// Writes what `queue` added since the last flush (called at the JS thread's flush).
    /// Most of the time the socket can take it all at once: it is written here, with no
    /// wake-up of the socket's task (a poll of its whole state machine, and a
    /// cross-thread hop per socket, which for a publish to many sockets cost more than
    /// the writes). A full socket, a close frame or a writer busy on the task's side
    /// leave the rest to the task.
    ///
    /// `batch`: the JS side's batch buffer in the in-thread mode (empty otherwise), which
    /// a run the socket holds of it (`SendQueue::shared`) is written from, or copied from
    /// where it is not all written: the buffer is reused once the flush is over.
    pub fn send_now(&self, batch: &[u8]) {
        self.wake_pending.store(false, Ordering::Release);
        let done = match self.writer.try_lock() {
            // A socket left full by an earlier write: the task waits for room with its waker
            // registered for writability, and writes the queue after what waits. A write
            // from here would register the no-op waker in its place, and a peer that reads
            // again, sending nothing, would never have the rest written.
            Ok(w) if w.waits_for_room() => false,
            Ok(mut w) => {
                let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
                match self.write_framed(&mut w, batch, &mut cx) {
                    Some(done) => done,
                    None => matches!(self.poll_send(&mut w, &mut cx), Poll::Ready(Ok(false))),
                }
            }
            // The task is writing: it looks at the queue again before it sleeps.
            Err(_) => false,
        };
        if !done {
            // Left to the task: a run of the batch buffer becomes the socket's own.
            if !batch.is_empty() {
                self.send_queue().unshare(batch);
            }
            // A socket that could not take everything has the noop waker registered for
            // writability: the task's own poll registers its waker again.
            self.writer_wake.notify_one();
        }
    }

    /// Asks for the cache lines `send_now` reads: the queue, the counts and flags, the
    /// writer's lock and the fields `write_framed` reads (the first four lines), and the
    /// `Arc`'s counts ahead of them (the flush list drops its clone). A hint: nothing is
    /// read, and a line it misses costs only the wait it would have cost anyway.
    #[inline(always)]
    fn prefetch_flush(self: &Arc<Self>) {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
            let at = Arc::as_ptr(self).cast::<i8>();
            for line in [-64isize, 0, 64, 128, 192] {
                // SAFETY: a prefetch reads nothing and faults on no address; SSE is part of
                // every x86_64 target.
                unsafe { _mm_prefetch::<_MM_HINT_T0>(at.wrapping_offset(line)) };
            }
        }
    }

    /// `send_now`'s common case: nothing waits for room and the queue holds only frames
    /// encoded when they were queued (sends and publishes of small messages). Their bytes
    /// are written from the queue's own buffer, swapped with the writer's spare one under
    /// one lock of the queue: no chunk, no reference count, and the two buffers take turns
    /// (a fan-out to 1,000 sockets touched each socket's chunk list, batch and shared
    /// buffer header besides). `Some(true)`: all of it went out; `Some(false)`: the task
    /// writes the rest (what the socket did not take is the first chunk, so order holds);
    /// `None`: the queue holds something else, for `poll_send`.
    fn write_framed(&self, w: &mut Writer, batch: &[u8], cx: &mut std::task::Context<'_>) -> Option<bool> {
        if w.failed || w.close_out || !w.framed.is_empty() || w.half.is_none() {
            // For `poll_send`, which cannot read the batch buffer.
            if !batch.is_empty() {
                self.send_queue().unshare(batch);
            }
            return None;
        }
        // The bytes lie in the batch buffer (`run`), or in the queue's own buffer, swapped
        // with the writer's spare one.
        let (run, data) = {
            let mut q = self.send_queue();
            if q.shared.end() != 0 {
                if !q.items.is_empty() || q.tail.0 != 0 {
                    q.unshare(batch);
                    return None;
                }
                let run = std::mem::take(&mut q.shared);
                (Some(run.start()..run.end()), run.data())
            } else {
                // Only the open run, which holds every byte of `framed`.
                let (len, data) = q.tail;
                if len == 0 || !q.items.is_empty() || len != q.framed.len() {
                    return None;
                }
                q.tail = (0, 0);
                std::mem::swap(&mut q.framed, &mut w.framed);
                (None, data)
            }
        };
        let bytes: &[u8] = match &run {
            Some(r) => match batch.get(r.clone()) {
                Some(b) => b,
                // Not reached: the buffer holds every run until the flush is over. Failing
                // the socket keeps a wrong byte from going out.
                None => {
                    w.failed = true;
                    return Some(false);
                }
            },
            None => &w.framed,
        };
        // Always there: looked at first.
        let half = w.half.as_mut()?;
        // Over TCP, a `send` of its own: tokio's write would look at the socket's readiness
        // first, one more cache line per socket for a fan-out (about 50 instructions a
        // delivery with the call's layers). A full socket is left to the task, whose own
        // write then finds it full and waits for room.
        let wrote = match w.fd.send(bytes) {
            Some(Ok(n)) if n > 0 => Poll::Ready(Ok(n)),
            Some(Err(e)) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted) => {
                Poll::Pending
            }
            Some(r) => Poll::Ready(r),
            None => Pin::new(&mut **half).poll_write(cx, bytes),
        };
        let wrote = match wrote {
            Poll::Ready(Ok(n)) if n > 0 => n,
            Poll::Ready(_) => {
                w.failed = true;
                w.framed.clear();
                return Some(false);
            }
            Poll::Pending => 0,
        };
        if wrote < bytes.len() {
            // The rest is the first chunk, written by the task once the socket has room. A
            // run of the batch buffer is copied: the buffer is reused after the flush.
            let rest = match run {
                Some(_) => Bytes::copy_from_slice(&bytes[wrote..]),
                None => {
                    let rest = w.framed.split_off(wrote).freeze();
                    w.framed.clear();
                    rest
                }
            };
            w.chunks.push_back((rest, data));
            return Some(false);
        }
        if run.is_none() {
            w.framed.clear();
            if w.framed.capacity() > FRAMED_KEEP {
                w.framed = BytesMut::new();
            }
        }
        self.written(data);
        if w.fd.0 >= 0 {
            return Some(true);
        }
        // TLS may keep records of what it took.
        let half = w.half.as_mut()?;
        Some(matches!(Pin::new(&mut **half).poll_flush(cx), Poll::Ready(Ok(()))))
    }

    fn writer(&self) -> std::sync::MutexGuard<'_, Writer> {
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes the encoded chunks, then encodes and writes what is queued, until the
    /// queue is empty (`Ok(false)`), a close frame is out (`Ok(true)`), the socket is
    /// full (`Pending`, a wake-up registered with `cx`), or it failed.
    fn poll_send(&self, w: &mut Writer, cx: &mut std::task::Context<'_>) -> Poll<Result<bool, ()>> {
        if w.failed {
            return Poll::Ready(Err(()));
        }
        loop {
            // The task has not started yet: it writes everything once it has.
            let Some(half) = w.half.as_mut() else { return Poll::Pending };
            while let Some((first, _)) = w.chunks.front() {
                // One chunk (the common case: a batch's small frames coalesced) goes out
                // with a plain write: over TCP that is `send`, where a vectored write is
                // `writev`, which costs the kernel more per call (vfs_writev, fdget_pos).
                // It needs no slice array either (filling all 64 slices before the write
                // cost 54 instructions a message in an echo of 64 B, callgrind).
                let wrote = if w.chunks.len() == 1 {
                    Pin::new(&mut *half).poll_write(cx, first)
                } else {
                    // Headers and large payloads go out together, each from where it lies.
                    let mut slices = [std::io::IoSlice::new(&[]); WRITE_SLICES];
                    let mut count = 0;
                    for ((chunk, _), slice) in w.chunks.iter().zip(slices.iter_mut()) {
                        *slice = std::io::IoSlice::new(chunk);
                        count += 1;
                    }
                    Pin::new(&mut *half).poll_write_vectored(cx, &slices[..count])
                };
                match wrote {
                    Poll::Ready(Ok(n)) if n > 0 => {
                        let mut left = n;
                        while let Some((chunk, data)) = w.chunks.front_mut() {
                            if left < chunk.len() {
                                chunk.advance(left);
                                break;
                            }
                            left -= chunk.len();
                            let data = *data;
                            w.chunks.pop_front();
                            self.written(data);
                        }
                    }
                    Poll::Ready(_) => {
                        w.failed = true;
                        return Poll::Ready(Err(()));
                    }
                    Poll::Pending => return Poll::Pending,
                }
            }
            // TLS may keep records of what it took (a no-op over TCP).
            match Pin::new(&mut *half).poll_flush(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(_)) => {
                    w.failed = true;
                    return Poll::Ready(Err(()));
                }
                Poll::Pending => return Poll::Pending,
            }
            if w.close_out {
                return Poll::Ready(Ok(true));
            }
            let mut batch = std::mem::take(&mut w.batch);
            {
                let mut q = self.send_queue();
                if q.shared.end() != 0 {
                    // A run of the JS side's batch buffer, at the queue's front: the flush
                    // after the batch writes it or copies it in, then wakes this task.
                    w.batch = batch;
                    return Poll::Ready(Ok(false));
                }
                q.seal();
                batch.extend(q.items.drain(..));
                if !q.framed.is_empty() {
                    w.framed = q.framed.split();
                }
                if q.framed.capacity() > FRAMED_KEEP {
                    q.framed = BytesMut::new();
                }
            }
            if batch.is_empty() {
                w.batch = batch;
                return Poll::Ready(Ok(false));
            }
            self.encode(w, &mut batch);
            w.batch = batch;
        }
    }

    /// Frames (and compresses) a batch into `w.chunks`: small frames coalesced into one
    /// chunk, large payloads as chunks of their own. Nothing after a close frame is sent.
    fn encode(&self, w: &mut Writer, batch: &mut Vec<Out>) {
        let mut data_bytes = 0;
        for out in batch.drain(..) {
            let large: Option<Bytes> = match out {
                Out::Message { payload, text, compress } => {
                    data_bytes += payload.len();
                    let opcode = if text { OP_TEXT } else { OP_BINARY };
                    match self.config.deflate {
                        Some(d) if compress && payload.len() >= COMPRESS_MIN => {
                            let c = w.compressor.get_or_insert_with(|| compressor_for(d));
                            let z = deflate(c, &payload);
                            put_header(&mut w.buf, opcode, true, z.len());
                            w.buf.extend_from_slice(&z);
                            None
                        }
                        _ => {
                            put_header(&mut w.buf, opcode, false, payload.len());
                            Some(payload)
                        }
                    }
                }
                Out::Encoded { frame, payload_len } => {
                    data_bytes += payload_len;
                    Some(frame)
                }
                Out::Framed { len, data } => {
                    data_bytes += data;
                    // Written from where it lies, after what is coalesced before it.
                    if !w.buf.is_empty() {
                        let head = w.buf.split().freeze();
                        w.chunks.push_back((head, 0));
                    }
                    let frames = w.framed.split_to(len.min(w.framed.len())).freeze();
                    w.chunks.push_back((frames, 0));
                    None
                }
                Out::Ping(p) => {
                    put_header(&mut w.buf, OP_PING, false, p.len());
                    Some(p)
                }
                Out::Pong(p) => {
                    put_header(&mut w.buf, OP_PONG, false, p.len());
                    Some(p)
                }
                Out::Close(c, reason) => {
                    // 1005 is "no status": a close frame with an empty body.
                    let body_len = if c == code::NO_STATUS { 0 } else { 2 + reason.len() };
                    put_header(&mut w.buf, OP_CLOSE, false, body_len);
                    if c != code::NO_STATUS {
                        w.buf.put_u16(c);
                        w.buf.extend_from_slice(reason.as_bytes());
                    }
                    w.close_out = true;
                    None
                }
            };
            if let Some(p) = large {
                if p.len() <= COALESCE_LIMIT {
                    w.buf.extend_from_slice(&p);
                } else {
                    if !w.buf.is_empty() {
                        let head = w.buf.split().freeze();
                        w.chunks.push_back((head, 0));
                    }
                    w.chunks.push_back((p, 0));
                }
            }
            if w.close_out {
                // The drain drops the rest of the batch.
                break;
            }
        }
        if !w.buf.is_empty() {
            let small = w.buf.split().freeze();
            w.chunks.push_back((small, 0));
        }
        if w.buf.capacity() > 1024 * 1024 {
            w.buf = BytesMut::new();
        }
        // Let go of the queue's allocation (all of it went into chunks, unless a close
        // frame cut the batch short) so that it is used again once they are written.
        w.framed = BytesMut::new();
        // The batch's data counts as written once its last chunk is.
        match w.chunks.back_mut() {
            Some((_, d)) => *d += data_bytes,
            None => self.written(data_bytes),
        }
    }

    /// `data` bytes of messages reached the socket: a DRAIN record once the queue is low.
    fn written(&self, data: usize) {
        if data == 0 {
            return;
        }
        let left = if self.config.one_thread {
            // As in `admit`: this thread alone writes the count (and `hear_drain` runs on it).
            let left = self.buffered.load(Ordering::Relaxed) - data;
            self.buffered.store(left, Ordering::Release);
            left
        } else {
            self.buffered.fetch_sub(data, Ordering::SeqCst) - data
        };
        if left <= self.config.backpressure_limit / 4
            && self.drain_heard.load(Ordering::SeqCst)
            && self.drain_wanted.swap(false, Ordering::AcqRel)
        {
            self.doorbell.push(Event::WsDrain(self.sid));
        }
    }

    /// JS now has a `drain` listener or handler: DRAIN records are posted from here on,
    /// and at once when a send already waits for one and the queue is low (a listener
    /// added after `send` returned -1). Either this or `written` sees the other's store
    /// (both sequentially consistent), and `drain_wanted` is taken once.
    pub fn hear_drain(&self) {
        if self.drain_heard.swap(true, Ordering::SeqCst) {
            return;
        }
        if self.buffered.load(Ordering::SeqCst) <= self.config.backpressure_limit / 4
            && self.drain_wanted.swap(false, Ordering::AcqRel)
        {
            self.doorbell.push(Event::WsDrain(self.sid));
        }
    }

    /// `queue` as `send` reports it (Bun's numbers).
    pub fn send(&self, out: Out, len: usize) -> i32 {
        send_status(self.queue(out, len, true), len)
    }

    /// `send` of a large uncompressed message written to the connection at once, from
    /// the caller's memory (no copy of its own) when nothing is queued ahead of it: for
    /// the in-thread mode, whose flush would write it from this thread anyway. What the
    /// connection does not take is copied and left to the socket's task. `None`: the
    /// writer is busy or has frames waiting; queue the message instead.
    pub fn send_direct(&self, payload: &[u8], text: bool) -> Option<i32> {
        if self.closing.load(Ordering::Acquire) || self.gone.load(Ordering::Acquire) {
            return None;
        }
        let mut w = self.writer.try_lock().ok()?;
        if w.failed || w.close_out || w.waits_for_room() || !self.send_queue().is_empty() {
            return None;
        }
        let half = w.half.as_mut()?;
        let len = payload.len();
        let mut head = [0u8; 10];
        let mut room = &mut head[..];
        put_header(&mut room, if text { OP_TEXT } else { OP_BINARY }, false, len);
        let head = &head[..header_len(len)];
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        let slices = [std::io::IoSlice::new(head), std::io::IoSlice::new(payload)];
        let written = match Pin::new(&mut **half).poll_write_vectored(&mut cx, &slices) {
            Poll::Ready(Ok(n)) => n,
            Poll::Ready(Err(_)) => {
                // As a queued message's failed write: the socket's task ends the socket.
                w.failed = true;
                drop(w);
                self.writer_wake.notify_one();
                return Some(send_status(Some(true), len));
            }
            Poll::Pending => 0,
        };
        let flushed =
            written == head.len() + len && matches!(Pin::new(&mut **half).poll_flush(&mut cx), Poll::Ready(Ok(())));
        if written < head.len() + len {
            // The rest waits in the queue's place, counted as queued data.
            let mut rest = BytesMut::with_capacity(head.len() + len - written);
            if written < head.len() {
                rest.extend_from_slice(&head[written..]);
                rest.extend_from_slice(payload);
            } else {
                rest.extend_from_slice(&payload[written - head.len()..]);
            }
            self.buffered.fetch_add(len, Ordering::AcqRel);
            w.chunks.push_back((rest.freeze(), len));
        }
        if !flushed {
            // The noop waker was registered above: the task's own poll writes the rest.
            drop(w);
            self.writer_wake.notify_one();
        }
        Some(send_status(Some(true), len))
    }

    /// `send` of a message `frames_when_queued` says to frame now.
    pub fn send_framed(&self, payload: &[u8], text: bool) -> i32 {
        let opcode = if text { OP_TEXT } else { OP_BINARY };
        let len = payload.len();
        let queued = self.queue_framed(len, header_len(len) + len, true, |b| put_frame(b, opcode, payload));
        send_status(queued, len)
    }

    /// `send_framed` in the in-thread mode: the frame is put at the end of the JS side's
    /// batch buffer (`JsSide::published`, where publishes put theirs) and the socket takes
    /// it as a run of that buffer (`queue_shared`), so the flush writes a batch's frames
    /// from one buffer written front to back. Framed into the socket's own queue buffer
    /// (which takes turns with the writer's spare one), each send wrote a line of a buffer
    /// of the socket's own that the other sockets' sends had evicted since, and the
    /// queue's unlock (a locked instruction) waited for that store. A frame that would
    /// take the buffer past `PUBLISHED_MAX` is framed into the queue as `send_framed` does.
    pub fn send_batched(&self, payload: &[u8], text: bool, batch: &mut BytesMut) -> i32 {
        let len = payload.len();
        if batch.len() + header_len(len) + len > crate::pubsub::PUBLISHED_MAX {
            return self.send_framed(payload, text);
        }
        let Some(idle) = self.admit(len, true) else { return SEND_DROPPED };
        let start = batch.len();
        put_frame(batch, if text { OP_TEXT } else { OP_BINARY }, payload);
        self.attach_shared(len, batch, start, batch.len());
        send_status(Some(idle), len)
    }

    /// Queues a close frame (once); later sends are dropped.
    pub fn close(&self, code: u16, reason: String) {
        if !self.closing.swap(true, Ordering::AcqRel) {
            self.push(Out::Close(code, reason));
        }
    }

    pub fn ping(&self, data: Bytes) -> bool {
        if self.closing.load(Ordering::Acquire) || self.gone.load(Ordering::Acquire) {
            return false;
        }
        self.push(Out::Ping(data));
        true
    }

    /// JS drained a message of `len` bytes: give the reader its credit back.
    pub fn taken(&self, len: usize) {
        let before = if self.config.one_thread {
            // The count's only thread (the drain and the socket's task): as `admit`'s.
            let before = self.unread.load(Ordering::Acquire);
            self.unread.store(before.wrapping_sub(len), Ordering::Release);
            before
        } else {
            self.unread.fetch_sub(len, Ordering::AcqRel)
        };
        if before > READ_CREDIT && before - len <= READ_CREDIT {
            self.credit.notify_one();
        }
    }

    /// The socket will never run (the upgrade failed): tell JS it closed.
    pub fn abandon(&self) {
        if !self.gone.swap(true, Ordering::AcqRel) {
            self.doorbell.push_now(Event::WsClose(self.sid, code::ABNORMAL, String::new(), false));
        }
    }
}

fn send_status(queued: Option<bool>, len: usize) -> i32 {
    match queued {
        None => SEND_DROPPED,
        Some(true) => len.min(i32::MAX as usize) as i32,
        Some(false) => SEND_QUEUED,
    }
}

/// Writes a frame header (server frames are never masked).
fn put_header(out: &mut impl BufMut, opcode: u8, rsv1: bool, len: usize) {
    out.put_u8(0x80 | if rsv1 { 0x40 } else { 0 } | opcode);
    if len < 126 {
        out.put_u8(len as u8);
    } else if len <= u16::MAX as usize {
        out.put_u8(126);
        out.put_u16(len as u16);
    } else {
        out.put_u8(127);
        out.put_u64(len as u64);
    }
}

/// The size of a frame header for a payload of `len` bytes (server frames: no mask).
pub(crate) fn header_len(len: usize) -> usize {
    match len {
        0..=125 => 2,
        126..=65535 => 4,
        _ => 10,
    }
}

/// Whether a data message of `len` bytes is framed when queued (`queue_framed`): small,
/// and not to be compressed.
pub(crate) fn frames_when_queued(config: &SocketConfig, len: usize, compress: bool) -> bool {
    len <= COALESCE_LIMIT && !(compress && config.deflate.is_some() && len >= COMPRESS_MIN)
}

/// Writes one uncompressed data frame (header and payload) onto `out`.
pub(crate) fn put_frame(out: &mut BytesMut, opcode: u8, payload: &[u8]) {
    let len = payload.len();
    if len < 126 {
        // A small frame's two header bytes in one copy (`put_header` puts them one by one,
        // each with its own capacity check).
        out.extend_from_slice(&[0x80 | opcode, len as u8]);
    } else {
        put_header(out, opcode, false, len);
    }
    out.extend_from_slice(payload);
}

/// A whole frame, header and payload, in one buffer (a publish's shared frame).
pub(crate) fn encode_frame(opcode: u8, rsv1: bool, payload: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(payload.len() + 10);
    put_header(&mut b, opcode, rsv1, payload.len());
    b.extend_from_slice(payload);
    b.freeze()
}

pub(crate) const OP_CONT: u8 = 0;
pub(crate) const OP_TEXT: u8 = 1;
pub(crate) const OP_BINARY: u8 = 2;
pub(crate) const OP_CLOSE: u8 = 8;
pub(crate) const OP_PING: u8 = 9;
pub(crate) const OP_PONG: u8 = 10;

/// A raw-deflate compressor without context takeover (each message on its own).
pub(crate) fn compressor(bits: u8) -> Compress {
    Compress::new_with_window_bits(Compression::fast(), false, bits)
}

/// Compresses one message as RFC 7692 section 7.2.1 says: a sync flush, without its
/// final `00 00 ff ff`, then the compressor is reset (no context takeover).
pub(crate) fn deflate(c: &mut Compress, input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len() / 2 + 64);
    let start_in = c.total_in();
    loop {
        let consumed = (c.total_in() - start_in) as usize;
        if out.len() == out.capacity() {
            out.reserve(out.capacity().max(64));
        }
        let before_out = c.total_out();
        if c.compress_vec(&input[consumed..], &mut out, FlushCompress::Sync).is_err() {
            break;
        }
        let done_in = (c.total_in() - start_in) as usize == input.len();
        if done_in && out.len() < out.capacity() && c.total_out() >= before_out {
            break;
        }
    }
    if out.ends_with(&[0, 0, 0xff, 0xff]) {
        out.truncate(out.len() - 4);
    }
    c.reset();
    out
}

/// Inflates `input` onto `out`, failing with 1009 past `limit` bytes in total and 1007
/// on bad compressed data. `Ok(true)`: a final block ended the deflate stream (the
/// inflater is reset; the rest of the message is not deflate data to feed it).
fn inflate(d: &mut Decompress, mut input: &[u8], out: &mut Vec<u8>, limit: usize) -> Result<bool, u16> {
    loop {
        if out.len() == out.capacity() {
            let room = (input.len() * 4).clamp(4096, 1024 * 1024);
            out.reserve(room);
        }
        let (in0, out0) = (d.total_in(), d.total_out());
        let status = d.decompress_vec(input, out, FlushDecompress::Sync).map_err(|_| code::INVALID_DATA)?;
        let consumed = (d.total_in() - in0) as usize;
        input = &input[consumed..];
        if out.len() > limit {
            return Err(code::TOO_BIG);
        }
        if status == flate2::Status::StreamEnd {
            // A final block (BFINAL) ends the deflate stream: the inflater starts afresh
            // for the next message.
            d.reset(false);
            return Ok(true);
        }
        let produced = d.total_out() - out0;
        if input.is_empty() && out.len() < out.capacity() {
            return Ok(false);
        }
        if consumed == 0 && produced == 0 && out.len() < out.capacity() {
            // No progress with room to spare: the stream is stuck on bad data.
            return Err(code::INVALID_DATA);
        }
    }
}

/// One frame from a client; its payload is still masked until `unmask`.
#[derive(Debug)]
pub(crate) struct Frame {
    pub fin: bool,
    pub rsv1: bool,
    pub opcode: u8,
    pub payload: BytesMut,
    pub mask: [u8; 4],
}

impl Frame {
    /// Unmasks the payload in place (once: the mask is then all zeros).
    pub fn unmask(&mut self) {
        unmask(&mut self.payload, self.mask);
        self.mask = [0; 4];
    }
}

/// From this length on a payload is unmasked 64 bytes a step with AVX2 where the CPU has
/// it (found at run time): a 16 KiB message took about 8,300 instructions 16 bytes a step.
/// Shorter ones stay on the SSE2 steps, with no feature test.
const WIDE_MIN: usize = 256;

/// XORs `n >= 64` bytes from `src` with the mask onto `dst`, 64 bytes a step; `src` may be
/// `dst` (in place). The last 64 bytes are computed first, from the bytes as they were,
/// and stored last, over what the steps did there.
///
/// # Safety
/// The CPU has AVX2; `src` and `dst` are valid for `n` bytes each, and either the same
/// pointer or not overlapping.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn unmask_wide(dst: *mut u8, src: *const u8, n: usize, mask: [u8; 4]) {
    use std::arch::x86_64::{__m256i, _mm256_loadu_si256, _mm256_set1_epi32, _mm256_storeu_si256, _mm256_xor_si256};
    // SAFETY: the caller's; every 32 bytes read and written lie below `n`.
    unsafe {
        let wide = _mm256_set1_epi32(i32::from_ne_bytes(mask));
        // The mask turned to start at byte `n - 64`, which takes mask byte `n % 4`.
        let turned = _mm256_set1_epi32(u32::from_ne_bytes(mask).rotate_right((n % 4) as u32 * 8) as i32);
        let last = n - 64;
        let tail0 = _mm256_xor_si256(_mm256_loadu_si256(src.add(last).cast::<__m256i>()), turned);
        let tail1 = _mm256_xor_si256(_mm256_loadu_si256(src.add(last + 32).cast::<__m256i>()), turned);
        let mut i = 0;
        while i + 64 <= n {
            let a = _mm256_loadu_si256(src.add(i).cast::<__m256i>());
            let b = _mm256_loadu_si256(src.add(i + 32).cast::<__m256i>());
            _mm256_storeu_si256(dst.add(i).cast::<__m256i>(), _mm256_xor_si256(a, wide));
            _mm256_storeu_si256(dst.add(i + 32).cast::<__m256i>(), _mm256_xor_si256(b, wide));
            i += 64;
        }
        _mm256_storeu_si256(dst.add(last).cast::<__m256i>(), tail0);
        _mm256_storeu_si256(dst.add(last + 32).cast::<__m256i>(), tail1);
    }
}

/// `unmask_wide` where the CPU has AVX2 (false: it has not, nothing was done), out of
/// line: `unmask`, inlined in `parse_frames`, holds only the length test.
///
/// # Safety
/// As `unmask_wide`, but for the CPU.
#[cfg(target_arch = "x86_64")]
#[inline(never)]
unsafe fn unmask_wide_if_any(dst: *mut u8, src: *const u8, n: usize, mask: [u8; 4]) -> bool {
    if !std::arch::is_x86_feature_detected!("avx2") {
        return false;
    }
    // SAFETY: AVX2 was found; the rest is the caller's.
    unsafe { unmask_wide(dst, src, n, mask) };
    true
}

/// `unmask_into` for a message that may be large (one of its own, not in an arena): 64
/// bytes a step with AVX2 from `WIDE_MIN` on. The arenas' small messages keep
/// `unmask_into` as it is: with this test in it, inlined into `JsSide::pooled`, a 64-byte
/// echo cost 16 instructions more.
pub(crate) fn unmask_into_any(dst: &mut [u8], src: &[u8], mask: [u8; 4]) {
    let n = dst.len().min(src.len());
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `dst` and `src` are at least `n >= 64` bytes each, and a `&mut` does not
    // overlap a `&`.
    if n >= WIDE_MIN && unsafe { unmask_wide_if_any(dst.as_mut_ptr(), src.as_ptr(), n, mask) } {
        return;
    }
    unmask_into(dst, src, mask);
}

/// Copies `src` to `dst` (of the same length) unmasking it, starting at the mask's first
/// byte.
pub(crate) fn unmask_into(dst: &mut [u8], src: &[u8], mask: [u8; 4]) {
    let n = dst.len().min(src.len());
    let (dst, src) = (&mut dst[..n], &src[..n]);
    // 16 bytes a step (SSE2, which every x86_64 has), then the last 16 again, overlapping
    // what was done: 64 bytes cost 82 instructions 8 bytes a step with a tail of single
    // bytes, 37 so (a standalone loop, callgrind).
    #[cfg(target_arch = "x86_64")]
    if n >= 16 {
        use std::arch::x86_64::{__m128i, _mm_loadu_si128, _mm_set1_epi32, _mm_storeu_si128, _mm_xor_si128};
        let xor16 = |dst: &mut [u8], at: usize, wide: __m128i| {
            // SAFETY: `at + 16 <= n` at each call below, so the 16 bytes read and written
            // lie within `src` and `dst`; unaligned loads and stores need no alignment.
            unsafe {
                let v = _mm_loadu_si128(src.as_ptr().add(at).cast::<__m128i>());
                _mm_storeu_si128(dst.as_mut_ptr().add(at).cast::<__m128i>(), _mm_xor_si128(v, wide));
            }
        };
        // SAFETY: SSE2 is part of every x86_64 target.
        let wide = unsafe { _mm_set1_epi32(i32::from_ne_bytes(mask)) };
        let mut i = 0;
        while i + 16 <= n {
            xor16(dst, i, wide);
            i += 16;
        }
        if i < n {
            // The bytes from `n - 16` come out the same again where they overlap; the mask
            // turned to start at byte `n - 16`, which takes mask byte `(n - 16) % 4 = n % 4`.
            let turned = u32::from_ne_bytes(mask).rotate_right((n % 4) as u32 * 8);
            // SAFETY: as above.
            xor16(dst, n - 16, unsafe { _mm_set1_epi32(turned as i32) });
        }
        return;
    }
    let mut i = 0;
    let mut to = dst.chunks_exact_mut(8);
    let mut from = src.chunks_exact(8);
    let wide = u64::from_ne_bytes([mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3]]);
    for (d, s) in (&mut to).zip(&mut from) {
        let v = u64::from_ne_bytes(s.try_into().unwrap_or([0; 8])) ^ wide;
        d.copy_from_slice(&v.to_ne_bytes());
        i += 8;
    }
    for (k, (d, s)) in dst[i..].iter_mut().zip(&src[i..]).enumerate() {
        *d = s ^ mask[k % 4];
    }
}

/// XORs `data` with the 4-byte mask, starting at the mask's first byte.
#[inline]
fn unmask(data: &mut [u8], mask: [u8; 4]) {
    let n = data.len();
    #[cfg(target_arch = "x86_64")]
    // SAFETY: in place, `n >= 64` bytes.
    if n >= WIDE_MIN && unsafe { unmask_wide_if_any(data.as_mut_ptr(), data.as_mut_ptr(), n, mask) } {
        return;
    }
    // 16 bytes a step (SSE2), the last 16 computed first, from the bytes as they were, and
    // stored last over the overlap: 64 bytes cost 85 instructions 8 bytes a step, each
    // built byte by byte, 40 so (a standalone loop, callgrind).
    #[cfg(target_arch = "x86_64")]
    if n >= 16 {
        use std::arch::x86_64::{__m128i, _mm_loadu_si128, _mm_set1_epi32, _mm_storeu_si128, _mm_xor_si128};
        let p = data.as_mut_ptr();
        // SAFETY: SSE2 is part of every x86_64 target; each 16 bytes read and written, at
        // `i + 16 <= n` and at `n - 16`, lie within `data`; unaligned loads and stores need
        // no alignment.
        unsafe {
            let wide = _mm_set1_epi32(i32::from_ne_bytes(mask));
            // The mask turned to start at byte `n - 16`.
            let turned = _mm_set1_epi32(u32::from_ne_bytes(mask).rotate_right((n % 4) as u32 * 8) as i32);
            let last = _mm_xor_si128(_mm_loadu_si128(p.add(n - 16).cast::<__m128i>()), turned);
            let mut i = 0;
            while i + 16 <= n {
                let at = p.add(i).cast::<__m128i>();
                _mm_storeu_si128(at, _mm_xor_si128(_mm_loadu_si128(at), wide));
                i += 16;
            }
            _mm_storeu_si128(p.add(n - 16).cast::<__m128i>(), last);
        }
        return;
    }
    let mut i = 0;
    let wide = u64::from_ne_bytes([mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3]]);
    while i + 8 <= n {
        let v = u64::from_ne_bytes(data[i..i + 8].try_into().unwrap_or([0; 8])) ^ wide;
        data[i..i + 8].copy_from_slice(&v.to_ne_bytes());
        i += 8;
    }
    if i + 4 <= n {
        let v = u32::from_ne_bytes(data[i..i + 4].try_into().unwrap_or([0; 4])) ^ u32::from_ne_bytes(mask);
        data[i..i + 4].copy_from_slice(&v.to_ne_bytes());
        i += 4;
    }
    // `i` is a multiple of 4 here: the mask starts again.
    for (b, m) in data[i..].iter_mut().zip(mask) {
        *b ^= m;
    }
}

/// Parses one frame (its payload still masked) from the front of `buf`: `Ok(None)` when more bytes are needed
/// (room for the frame is reserved, at least `ahead` bytes when the buffer has to grow),
/// `Err(code)` when the peer broke the protocol.
/// `max_len` bounds a data frame's payload (the message limit still left).
pub(crate) fn parse_frame(buf: &mut BytesMut, max_len: usize, ahead: usize) -> Result<Option<Frame>, u16> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let (b0, b1) = (buf[0], buf[1]);
    let fin = b0 & 0x80 != 0;
    let rsv1 = b0 & 0x40 != 0;
    let opcode = b0 & 0x0f;
    if b0 & 0x30 != 0 {
        return Err(code::PROTOCOL_ERROR);
    }
    if b1 & 0x80 == 0 {
        // Section 5.1: a client must mask every frame.
        return Err(code::PROTOCOL_ERROR);
    }
    let len7 = (b1 & 0x7f) as usize;
    let ext = match len7 {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    let head = 2 + ext + 4;
    if buf.len() < head {
        return Ok(None);
    }
    let len = match len7 {
        126 => u16::from_be_bytes([buf[2], buf[3]]) as u64,
        127 => {
            let l = u64::from_be_bytes([buf[2], buf[3], buf[4], buf[5], buf[6], buf[7], buf[8], buf[9]]);
            if l >> 63 != 0 {
                return Err(code::PROTOCOL_ERROR);
            }
            l
        }
        l => l as u64,
    };
    if opcode >= 8 {
        // Section 5.5: control frames are not fragmented and carry at most 125 bytes.
        if !fin || len > 125 {
            return Err(code::PROTOCOL_ERROR);
        }
    } else if len > max_len as u64 {
        return Err(code::TOO_BIG);
    }
    let len = len as usize;
    if buf.len() < head + len {
        // Room for the frame, but not all at once for a huge declared length: the buffer
        // grows as bytes actually arrive.
        let need = (head + len - buf.len()).min(RESERVE_AHEAD);
        if buf.capacity() - buf.len() < need {
            // At least the read's room: grown once here, not again by the read (a second
            // allocation, and a second copy of the frame's first bytes).
            buf.reserve(need.max(ahead));
        }
        return Ok(None);
    }
    let mask = [buf[head - 4], buf[head - 3], buf[head - 2], buf[head - 1]];
    buf.advance(head);
    let payload = buf.split_to(len);
    Ok(Some(Frame { fin, rsv1, opcode, payload, mask }))
}

/// How a socket ended, as its CLOSE record tells JS.
struct Ending {
    code: u16,
    reason: String,
    clean: bool,
}

/// A message being assembled from fragments.
struct Assembly {
    text: bool,
    compressed: bool,
    data: Vec<u8>,
    /// A final deflate block came: the rest of the message is not inflated.
    ended: bool,
    /// Bytes of `data` known to be valid UTF-8 (text only).
    checked: usize,
}

/// Checks the UTF-8 of `data[*checked..]`, failing fast: a sequence that can never be
/// valid fails now; an incomplete one at the end waits for more unless `last`.
fn check_utf8(data: &[u8], checked: &mut usize, last: bool) -> Result<(), u16> {
    match std::str::from_utf8(&data[*checked..]) {
        Ok(_) => {
            *checked = data.len();
            Ok(())
        }
        Err(e) if e.error_len().is_none() && !last => {
            *checked += e.valid_up_to();
            Ok(())
        }
        Err(_) => Err(code::INVALID_DATA),
    }
}

/// The reading half's state.
struct Reader {
    shared: Arc<SocketShared>,
    inflater: Option<Decompress>,
    assembly: Option<Assembly>,
    /// Messages of the frames parsed from one read, handed to the bridge together
    /// (`hand_over`): one lock of its queue per read, not one per message.
    delivered: Vec<Event>,
    /// Their bytes, for the read credit.
    delivered_bytes: usize,
}

/// What a frame did to the reader.
enum Step {
    Continue,
    /// The peer sent its close frame.
    Closed(u16, String),
}

impl Reader {
    fn deliver(&mut self, msg: Message) {
        self.delivered_bytes += msg.len();
        self.delivered.push(Event::WsMessage(self.shared.sid, msg));
    }

    /// Hands what `deliver` gathered to the bridge.
    fn hand_over(&mut self) {
        if self.delivered.is_empty() {
            return;
        }
        // Counted before JS can see them: it gives the credit back as it takes them.
        let unread = &self.shared.unread;
        if self.shared.config.one_thread {
            // This task and JS's drain, the count's two writers, run on one thread.
            unread.store(unread.load(Ordering::Acquire).wrapping_add(self.delivered_bytes), Ordering::Release);
        } else {
            unread.fetch_add(self.delivered_bytes, Ordering::AcqRel);
        }
        self.delivered_bytes = 0;
        self.shared.doorbell.push_all(&mut self.delivered);
        if self.delivered.capacity() > DELIVERED_KEEP {
            self.delivered = Vec::new();
        }
    }

    fn message(&mut self, text: bool, data: Vec<u8>) -> Result<(), u16> {
        if text {
            let s = Utf8::checked(Bytes::from(data))?;
            self.deliver(Message::Text(s));
        } else {
            self.deliver(Message::Binary(Bytes::from(data)));
        }
        Ok(())
    }

    fn frame(&mut self, mut f: Frame) -> Result<Step, u16> {
        let max = self.shared.config.max_payload;
        // A binary message in one frame stays masked until JS's drain copies it.
        let whole_binary = f.opcode == OP_BINARY
            && f.fin
            && !f.rsv1
            && self.assembly.is_none()
            && (f.payload.len() <= crate::js_side::POOLED_MAX || self.shared.config.unmask_in_drain);
        if !whole_binary {
            f.unmask();
        }
        match f.opcode {
            OP_TEXT | OP_BINARY => {
                if self.assembly.is_some() {
                    return Err(code::PROTOCOL_ERROR);
                }
                if f.rsv1 && self.inflater.is_none() {
                    return Err(code::PROTOCOL_ERROR);
                }
                let text = f.opcode == OP_TEXT;
                if f.fin && !f.rsv1 {
                    // The common case: one uncompressed frame, no copy for binary.
                    // A slice of the read buffer, held only until JS's next drain copies
                    // it into a string or a Buffer of its own (core.rs).
                    let payload = f.payload.freeze();
                    let msg = match (text, whole_binary) {
                        (true, _) => Message::Text(Utf8::checked(payload)?),
                        (false, true) => Message::Masked(payload, f.mask),
                        (false, false) => Message::Binary(payload),
                    };
                    self.deliver(msg);
                    return Ok(Step::Continue);
                }
                self.assembly = Some(Assembly { text, compressed: f.rsv1, data: Vec::new(), ended: false, checked: 0 });
                self.append(f.payload, f.fin, max)?;
            }
            OP_CONT => {
                if self.assembly.is_none() || f.rsv1 {
                    return Err(code::PROTOCOL_ERROR);
                }
                self.append(f.payload, f.fin, max)?;
            }
            OP_CLOSE => {
                let p = &f.payload;
                if p.is_empty() {
                    return Ok(Step::Closed(code::NO_STATUS, String::new()));
                }
                if p.len() == 1 {
                    return Err(code::PROTOCOL_ERROR);
                }
                let c = u16::from_be_bytes([p[0], p[1]]);
                if !valid_wire_code(c) {
                    return Err(code::PROTOCOL_ERROR);
                }
                let reason = std::str::from_utf8(&p[2..]).map_err(|_| code::INVALID_DATA)?;
                return Ok(Step::Closed(c, reason.to_string()));
            }
            OP_PING => {
                // Answered here; JS is told too (Bun's `ping` handler), after the
                // messages before it.
                let payload = f.payload.freeze();
                if !self.shared.closing.load(Ordering::Acquire) {
                    self.shared.push(Out::Pong(payload.clone()));
                }
                self.hand_over();
                self.shared.doorbell.push(Event::WsPing(self.shared.sid, payload))
            }
            OP_PONG => {
                // After the messages before it.
                self.hand_over();
                self.shared.doorbell.push(Event::WsPong(self.shared.sid, f.payload.freeze()))
            }
            _ => return Err(code::PROTOCOL_ERROR),
        }
        Ok(Step::Continue)
    }

    fn append(&mut self, payload: BytesMut, fin: bool, max: usize) -> Result<(), u16> {
        let Some(a) = self.assembly.as_mut() else { return Err(code::PROTOCOL_ERROR) };
        if a.compressed {
            let Some(d) = self.inflater.as_mut() else { return Err(code::PROTOCOL_ERROR) };
            if !a.ended {
                a.ended = inflate(d, &payload, &mut a.data, max)?;
            }
            if fin {
                // The sync flush's `00 00 ff ff` the sender left off (RFC 7692 section 7.2.2).
                if !a.ended {
                    inflate(d, &[0, 0, 0xff, 0xff], &mut a.data, max)?;
                }
                if !a.ended && self.shared.config.deflate.is_some_and(|d| d.client_no_context_takeover) {
                    d.reset(false);
                }
            }
        } else {
            if a.data.len() + payload.len() > max {
                return Err(code::TOO_BIG);
            }
            a.data.extend_from_slice(&payload);
        }
        if a.text {
            check_utf8(&a.data, &mut a.checked, fin)?;
        }
        if fin {
            if let Some(a) = self.assembly.take() {
                self.message(a.text, a.data)?;
            }
        }
        Ok(())
    }

    /// The bytes of the complete frames at the front of `buf` that `frame` would deliver
    /// whole, each as one message: final, uncompressed text and binary frames with a 7- or
    /// 16-bit length, within the limits, outside a fragmented message. Text payloads are
    /// unmasked in place (binary ones stay masked until JS's drain copies them, as
    /// `frame` leaves them).
    fn whole_run(&self, buf: &mut [u8]) -> usize {
        if self.assembly.is_some() {
            return 0;
        }
        let max = self.shared.config.max_payload;
        let binary_max = if self.shared.config.unmask_in_drain { max } else { max.min(crate::js_side::POOLED_MAX) };
        let mut pos = 0;
        while buf.len() - pos >= 6 {
            // FIN, no reserved bits, text or binary; masked (section 5.1).
            let text = buf[pos] == 0x80 | OP_TEXT;
            if !text && buf[pos] != 0x80 | OP_BINARY || buf[pos + 1] & 0x80 == 0 {
                break;
            }
            let (head, len) = match buf[pos + 1] & 0x7f {
                126 if buf.len() - pos >= 8 => (8, u16::from_be_bytes([buf[pos + 2], buf[pos + 3]]) as usize),
                126 | 127 => break,
                l => (6, l as usize),
            };
            if len > if text { max } else { binary_max } || buf.len() - pos - head < len {
                break;
            }
            if text {
                let mask = [buf[pos + head - 4], buf[pos + head - 3], buf[pos + head - 2], buf[pos + head - 1]];
                unmask(&mut buf[pos + head..pos + head + len], mask);
            }
            pos += head + len;
        }
        pos
    }

    /// The message limit left for the next frame.
    fn room(&self) -> usize {
        let max = self.shared.config.max_payload;
        match &self.assembly {
            // A compressed frame's size is checked as it inflates.
            Some(a) if a.compressed => max,
            Some(a) => max.saturating_sub(a.data.len()),
            None => max,
        }
    }
}

/// Parses and handles the frames in `buf`, until one is incomplete (`Ok(None)`, with room
/// reserved for it as `parse_frame` does, `ahead` the read's room) or the peer's close
/// frame (its code and reason).
fn parse_frames(buf: &mut BytesMut, reader: &mut Reader, ahead: usize) -> Result<Option<(u16, String)>, u16> {
    loop {
        // A run of whole data frames (the usual read of a busy socket): split off the
        // buffer at once, each payload a slice of that one chunk (a reference count), where
        // `parse_frame` splits twice a frame (the head, then the payload).
        let run = reader.whole_run(buf);
        if run > 0 {
            let chunk = buf.split_to(run).freeze();
            let sid = reader.shared.sid;
            let mut pos = 0;
            let mut bytes = 0;
            // Checked by `whole_run`: complete frames, each length in 7 or 16 bits. Each
            // head is read from one slice of the 6 bytes every frame has (one bounds check
            // where each byte had its own), and the events are pushed here (`deliver` read
            // the socket id and matched the message for its length at each).
            while let Some(h) = chunk.get(pos..pos + 6) {
                let (head, len) = match h[1] & 0x7f {
                    126 => (8, u16::from_be_bytes([h[2], h[3]]) as usize),
                    l => (6, l as usize),
                };
                let start = pos + head;
                let Ok(mask) = <[u8; 4]>::try_from(&chunk[start - 4..start]) else { break };
                let payload = chunk.slice(start..start + len);
                let msg = if h[0] & 0x0f == OP_TEXT {
                    // Unmasked by `whole_run`.
                    match Utf8::checked(payload) {
                        Ok(t) => Message::Text(t),
                        Err(c) => {
                            reader.delivered_bytes += bytes;
                            return Err(c);
                        }
                    }
                } else {
                    Message::Masked(payload, mask)
                };
                reader.delivered.push(Event::WsMessage(sid, msg));
                bytes += len;
                pos = start + len;
            }
            reader.delivered_bytes += bytes;
        }
        let Some(f) = parse_frame(buf, reader.room(), ahead)? else { return Ok(None) };
        if let Step::Closed(c, r) = reader.frame(f)? {
            return Ok(Some((c, r)));
        }
    }
}

/// Reads frames until the peer closes, the protocol breaks, the socket idles out or the
/// connection ends. Returns the close code and reason to tell JS, and whether the peer
/// closed (an `Err` is a failure to send as our close code).
async fn read_loop<R: AsyncRead + Unpin>(
    mut io: R,
    reader: &mut Reader,
    first: Bytes,
) -> Result<Option<(u16, String)>, u16> {
    use tokio::time::Instant;
    let shared = reader.shared.clone();
    let mut room = READ_ROOM;
    let mut buf = BytesMut::with_capacity(room);
    // What was read with the handshake: the client's first frames.
    buf.extend_from_slice(&first);
    let idle = shared.config.idle_timeout;
    // One timer per socket, re-armed only when it fires: a read just marks the socket
    // active, so a busy socket touches no timer per message.
    let far = Instant::now() + Duration::from_secs(365 * 24 * 3600);
    // Polled only when it woke the task (or was reset): the read loop's `select!` runs
    // twice a wake-up (the read, then the read that finds the socket empty), and each poll
    // of a `Sleep` checks the task's budget through a thread-local and registers the waker.
    // Its flag is the socket's `idle_woken`, beside `closing`, which this loop reads anyway.
    let mut timer = crate::woken::WhenWoken::with_flag(
        tokio::time::sleep_until(idle.map_or(far, |d| Instant::now() + d)),
        shared.clone(),
    );
    let mut active = false;
    let mut ping_sent = false;
    let mut close_deadline: Option<Instant> = None;
    loop {
        // Every frame the read brought, then their messages to the bridge at once (also
        // those before a close frame or a protocol error).
        let parsed = parse_frames(&mut buf, reader, room);
        reader.hand_over();
        if let Some(closed) = parsed? {
            return Ok(Some(closed));
        }
        if close_deadline.is_none() && shared.closing.load(Ordering::Acquire) {
            let t = Instant::now() + CLOSE_WAIT;
            close_deadline = Some(t);
            if t < timer.get().deadline() {
                timer.change().reset(t);
            }
        }
        let credit_ok = shared.unread.load(Ordering::Acquire) <= READ_CREDIT;
        // A frame begun in a shared buffer (its earlier frames are still in JS's hands)
        // moves to a new one when it grows: a large one is left to fill the room it has
        // (`parse_frame` reserved what it needs), and grows only when that is small.
        let spare = buf.capacity() - buf.len();
        if spare < room / 2 && (buf.len() <= READ_ROOM / 8 || spare < READ_ROOM / 2) {
            buf.reserve(room);
        }
        let spare = buf.capacity() - buf.len();
        // Biased (no random start, which cost a random number per read), with the timer
        // first so that a peer that never stops sending still meets its deadlines.
        tokio::select! {
            biased;
            _ = &mut timer => {
                let now = Instant::now();
                if close_deadline.is_some_and(|t| t <= now) {
                    return Ok(None);
                }
                let Some(period) = idle else {
                    timer.change().reset(close_deadline.unwrap_or(far));
                    continue;
                };
                if active {
                    // Something arrived during the period: the socket is alive.
                    active = false;
                    ping_sent = false;
                } else if ping_sent {
                    // Once: a later period (one shorter than the wait) must not move the
                    // deadline on, or a peer that stays silent is never cut.
                    if close_deadline.is_none() {
                        tracing::debug!(sid = shared.sid, "websocket: no pong within the idle timeout; closing");
                        shared.close(code::GOING_AWAY, "idle timeout".into());
                        close_deadline = Some(now + Duration::from_secs(1));
                    }
                } else {
                    ping_sent = true;
                    shared.push(Out::Ping(Bytes::new()));
                }
                let next = close_deadline.map_or(now + period, |c| c.min(now + period));
                timer.change().reset(next);
            }
            n = io.read_buf(&mut buf), if credit_ok => {
                match n {
                    Ok(0) | Err(_) => return Ok(None),
                    Ok(n) => {
                        active = true;
                        if n == spare && room < READ_ROOM_MAX {
                            room *= 2;
                        } else if n < READ_ROOM / 2 && room > READ_ROOM {
                            room = READ_ROOM;
                            if buf.capacity() > 2 * READ_ROOM && buf.len() <= READ_ROOM / 2 {
                                // The large allocation goes too (a split-off buffer's
                                // reserve keeps its first capacity); not with a large
                                // frame in progress, which would be copied.
                                let mut small = BytesMut::with_capacity(READ_ROOM);
                                small.extend_from_slice(&buf);
                                buf = small;
                            }
                        }
                    }
                }
            }
            // Made only when polled: `select!` makes a disabled branch's future too, and a
            // `Notified` made and dropped a pass cost about 40 instructions.
            _ = async { shared.credit.notified().await }, if !credit_ok => {}
        }
    }
}

/// Sends queued frames until a close frame is written (true) or the socket fails (false).
/// Most frames are written by the flush after the JS batch that sent them
/// (`SocketShared::send_now`); this task writes what that left: a socket that was full,
/// frames queued from here (pongs, pings, close), and the close frame.
async fn write_loop(shared: &SocketShared) -> bool {
    loop {
        let r = std::future::poll_fn(|cx| {
            let mut w = shared.writer();
            shared.poll_send(&mut w, cx)
        })
        .await;
        match r {
            Ok(false) => shared.writer_wake.wait().await,
            Ok(true) => return true,
            Err(()) => return false,
        }
    }
}

fn compressor_for(d: Deflate) -> Compress {
    compressor(d.server_window_bits)
}

/// `send_now` on each of `sockets`, in order, with the next one's state asked for while
/// this one's `send` runs. In a fan-out the kernel's work for the sockets written before
/// a subscriber (about 1,000 sockets' state) has pushed its lines out of the caches since
/// the publish touched them, and each socket waited for them in turn.
pub(crate) fn send_each(sockets: impl Iterator<Item = Arc<SocketShared>>, batch: &[u8]) {
    let mut sockets = sockets.peekable();
    while let Some(s) = sockets.next() {
        if let Some(next) = sockets.peek() {
            next.prefetch_flush();
        }
        s.send_now(batch);
    }
}

/// Counts an open socket (its connection is counted by its connection task).
struct SocketGuard(Arc<Stats>);

impl Drop for SocketGuard {
    fn drop(&mut self) {
        self.0.web_sockets.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Runs one socket on its upgraded connection until it closes; its CLOSE record is the
/// last thing JS hears of it.
pub(crate) async fn run<R: AsyncRead + Unpin, W: crate::cork::ConnWrite + 'static>(
    r: R,
    w: W,
    first: Bytes,
    unsent: Vec<u8>,
    shared: Arc<SocketShared>,
    stats: Arc<Stats>,
    phase: watch::Receiver<Phase>,
) {
    let _guard = SocketGuard(stats);
    {
        let mut writer = shared.writer();
        // What the connection had not sent yet (the 101) goes before any frame.
        if !unsent.is_empty() {
            writer.chunks.push_front((Bytes::from(unsent), 0));
        }
        writer.set_half(Box::new(w));
    }
    shared.doorbell.push(Event::WsOpen(shared.sid));
    let mut reader = Reader {
        shared: shared.clone(),
        inflater: shared.config.deflate.map(|_| Decompress::new(false)),
        assembly: None,
        delivered: Vec::new(),
        delivered_bytes: 0,
    };
    let mut forced = phase;
    let already_forced = *forced.borrow() == Phase::Forced;
    let ending = if already_forced {
        Ending { code: code::ABNORMAL, reason: String::new(), clean: false }
    } else {
        // Pinned where it is made: made and then moved into `pin!`, the block can be kept
        // twice in the task's state.
        let mut work = std::pin::pin!(async {
            let mut reading = std::pin::pin!(read_loop(r, &mut reader, first));
            let mut writing = std::pin::pin!(write_loop(&shared));
            let mut wrote_close = None;
            // Run both halves; whichever finishes first decides what the other does.
            // Biased to the writer: when both are ready it is taken, so `writing` is never
            // polled again after it completed (below, only while `wrote_close` is None).
            let read = tokio::select! {
                biased;
                ok = writing.as_mut() => {
                    wrote_close = Some(ok);
                    if !ok {
                        return Ending { code: code::ABNORMAL, reason: String::new(), clean: false };
                    }
                    // We sent a close frame: wait (bounded) for the peer's.
                    reading.as_mut().await
                }
                read = reading.as_mut() => read,
            };
            match read {
                Ok(Some((c, reason))) => {
                    // The peer closed: echo its code unless we closed first.
                    if wrote_close.is_none() {
                        let echo = if c == code::NO_STATUS { code::NORMAL } else { c };
                        shared.close(echo, String::new());
                        let _ = tokio::time::timeout(CLOSE_WAIT, writing.as_mut()).await;
                    }
                    Ending { code: c, reason, clean: true }
                }
                Ok(None) => Ending { code: code::ABNORMAL, reason: String::new(), clean: false },
                Err(c) => {
                    tracing::debug!(sid = shared.sid, code = c, "websocket: protocol error; closing");
                    let reason = match c {
                        code::INVALID_DATA => "invalid data",
                        code::TOO_BIG => "message too big",
                        _ => "protocol error",
                    };
                    // Our close frame goes first, past anything queued, unless one is out.
                    if wrote_close.is_none() {
                        shared.closing.store(true, Ordering::Release);
                        {
                            let mut q = shared.send_queue();
                            // Publishes of the batch buffer go the way of the rest queued
                            // behind a close: unsent.
                            q.shared = Shared::default();
                            q.seal();
                            q.items.retain(|o| !matches!(o, Out::Close(..)));
                            q.items.push_front(Out::Close(c, reason.into()));
                        }
                        shared.writer_wake.notify_one();
                        let _ = tokio::time::timeout(CLOSE_WAIT, writing.as_mut()).await;
                    }
                    Ending { code: c, reason: reason.into(), clean: false }
                }
            }
        });
        let abnormal = || Ending { code: code::ABNORMAL, reason: String::new(), clean: false };
        // The server's phase is watched here, once per socket, not in the read loop, and
        // polled only at the first poll (which registers the task with the watch) and once
        // the phase has changed: `gate`'s look is a load of the watch's version, a line
        // every socket shares. The gate is never marked seen, so once the phase changed
        // every poll looks again (the watch's wake-up may come after the version's change).
        // A poll of the watch itself, or of a flag of the socket's own in front of it, was
        // one more cold line at every wake-up of a socket among many.
        let gate = forced.clone();
        let first = {
            // Boxed, as the wait below: each is 144 B that the task's state would otherwise
            // hold for the socket's life, and it is polled only when the phase moved.
            let mut phase_changed = Box::pin(forced.wait_for(|p| *p != Phase::Running));
            let mut polled = false;
            std::future::poll_fn(|cx| {
                if let Poll::Ready(e) = std::future::Future::poll(work.as_mut(), cx) {
                    return Poll::Ready(Some(e));
                }
                if !polled || gate.has_changed().unwrap_or(true) {
                    polled = true;
                    // An error: the server is gone; as forced.
                    if let Poll::Ready(r) = std::future::Future::poll(phase_changed.as_mut(), cx) {
                        let forced = r.map_or(true, |p| *p == Phase::Forced);
                        return Poll::Ready(if forced { Some(abnormal()) } else { None });
                    }
                }
                Poll::Pending
            })
            .await
        };
        match first {
            Some(e) => e,
            None => {
                // Draining: the socket is closing, so the watch is polled at each poll.
                shared.close(code::GOING_AWAY, "server is closing".into());
                tokio::select! {
                    biased;
                    e = work.as_mut() => e,
                    _ = Box::pin(forced.wait_for(|p| *p == Phase::Forced)) => abnormal(),
                }
            }
        }
    };
    shared.gone.store(true, Ordering::Release);
    // The connection closes here, not when the last holder of `shared` lets go.
    drop(shared.writer().take_half());
    shared.doorbell.push(Event::WsClose(shared.sid, ending.code, ending.reason, ending.clean));
}

/// After the JS thread answered an upgradable request: when the answer is our 101, the
/// socket waits on the connection's cork for hyper to finish writing it (`take_over`).
pub(crate) fn claim(reply: &mut crate::bridge::Reply, cork: &crate::cork::Cork) {
    if let Some(accepted) = reply.extensions_mut().remove::<Accepted>() {
        *cork.upgrade.lock().unwrap_or_else(|p| p.into_inner()) = Some(accepted.0);
    }
}

/// Runs the socket accepted on a connection whose hyper connection has finished with
/// the 101: the socket takes the connection's halves, what hyper read past the request
/// (`read_buf`, the client's first frames) and what is still unwritten (the 101).
pub(crate) async fn take_over(
    io: crate::cork::CorkedStream,
    read_buf: Bytes,
    cork: &crate::cork::Cork,
    shared: Arc<SocketShared>,
    stats: Arc<Stats>,
    phase: watch::Receiver<Phase>,
) {
    let Some((read, first)) = io.into_reader(read_buf) else {
        shared.abandon();
        return;
    };
    let (write, unsent) = cork.take_writer();
    stats.web_sockets.fetch_add(1, Ordering::Relaxed);
    // A task of its own, which the connection's task waits for: a wake-up of the socket
    // polls `run`'s state from the task's top. Nested in the connection's task, each
    // wake-up went down through `serve`'s and this future's states first, a cache line or
    // two each, at every read of a busy socket among many. Its polls are counted as a
    // connection task's are (`in_thread::spawn`): with the network on the JS thread, a
    // turn goes on while sockets are busy. A panic in it ends the socket alone, as it
    // ended the connection's task before.
    let _ = crate::in_thread::spawn(run(read, write, first, unsent, shared, stats, phase)).await;
}

/// Carried in a 101 reply's extensions: the socket to start once hyper hands over the
/// connection.
#[derive(Clone)]
pub(crate) struct Accepted(pub Arc<SocketShared>);

/// The 101 response for a handshake, with the application's `extra` headers (name/value
/// pairs, Bun's `server.upgrade(req, { headers })`). Those the handshake sets itself, and
/// hop-by-hop and framing ones, are left out: they would break the upgrade.
pub(crate) fn switching_protocols(
    h: &Handshake,
    shared: Arc<SocketShared>,
    extra: Option<&[String]>,
) -> BridgeResult<crate::bridge::Reply> {
    let mut res = http::Response::new(crate::body::ResponseBody::Empty);
    *res.status_mut() = http::StatusCode::SWITCHING_PROTOCOLS;
    let headers = res.headers_mut();
    if let Some(list) = extra {
        if list.len() % 2 != 0 {
            return Err(BridgeError::new(ErrorKind::InvalidHeader, "header list must hold name/value pairs"));
        }
        for pair in list.chunks_exact(2) {
            let name = http::HeaderName::from_bytes(pair[0].as_bytes()).map_err(|_| {
                BridgeError::new(ErrorKind::InvalidHeader, format!("invalid header name {:?}", pair[0]))
            })?;
            let value = crate::response::header_value(&pair[1])?;
            let own = name.as_str().starts_with("sec-websocket-")
                || name == http::header::CONTENT_LENGTH
                || crate::response::is_hop_by_hop(&name, 101);
            if !own {
                headers.append(name, value);
            }
        }
    }
    headers.insert(http::header::CONNECTION, http::HeaderValue::from_static("upgrade"));
    headers.insert(http::header::UPGRADE, http::HeaderValue::from_static("websocket"));
    if let Ok(v) = http::HeaderValue::from_str(&h.accept) {
        headers.insert(http::header::SEC_WEBSOCKET_ACCEPT, v);
    }
    if let Some(v) = h.protocol.as_deref().and_then(|p| http::HeaderValue::from_str(p).ok()) {
        headers.insert(http::header::SEC_WEBSOCKET_PROTOCOL, v);
    }
    if let Some(v) = h.extensions.as_deref().and_then(|e| http::HeaderValue::from_str(e).ok()) {
        headers.insert(http::header::SEC_WEBSOCKET_EXTENSIONS, v);
    }
    res.extensions_mut().insert(Accepted(shared));
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_state_keeps_its_hot_fields_in_two_lines() {
        use std::mem::offset_of;
        let line = |at: usize| at / 64;
        // The idle timer's flag in the line the read loop reads `closing` from.
        assert_eq!(line(offset_of!(SocketShared, idle_woken)), line(offset_of!(SocketShared, closing)));
        // What a publish reads: the queue's lock words, the counts and flags, the config's
        // first field, all in the second line.
        let lock = offset_of!(SocketShared, queue);
        assert_eq!(line(lock + offset_of!(QueueLock, owner)), 1);
        assert_eq!(line(lock + offset_of!(QueueLock, mutex)), 1);
        assert_eq!(line(offset_of!(SocketShared, buffered)), 1);
        let limit = offset_of!(SocketShared, config) + offset_of!(SocketConfig, backpressure_limit);
        assert_eq!(line(limit + std::mem::size_of::<usize>() - 1), 1);
    }

    #[test]
    fn one_thread_queue_lock_refuses_a_second_guard_and_other_threads() {
        let lock = Arc::new(QueueLock::new(true));
        {
            let mut q = lock.lock();
            q.tail = (3, 1);
            // A second guard while one is out: a panic, not two `&mut` to the queue.
            let again = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(lock.lock())));
            assert!(again.is_err());
        }
        // The first guard's drop freed it.
        assert_eq!(lock.lock().tail, (3, 1));
        let other = lock.clone();
        let off = std::thread::spawn(move || drop(other.lock())).join();
        assert!(off.is_err(), "a lock off the owning thread must panic");
        // The mutex mode from any thread.
        let shared = Arc::new(QueueLock::new(false));
        let s2 = shared.clone();
        std::thread::spawn(move || s2.lock().tail = (5, 5)).join().unwrap();
        assert_eq!(shared.lock().tail, (5, 5));
    }
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn masked(opcode: u8, fin: bool, payload: &[u8]) -> BytesMut {
        let mask = [1u8, 2, 3, 4];
        let mut b = BytesMut::new();
        b.put_u8(if fin { 0x80 } else { 0 } | opcode);
        let len = payload.len();
        if len < 126 {
            b.put_u8(0x80 | len as u8);
        } else if len < 65536 {
            b.put_u8(0x80 | 126);
            b.put_u16(len as u16);
        } else {
            b.put_u8(0x80 | 127);
            b.put_u64(len as u64);
        }
        b.extend_from_slice(&mask);
        b.extend(payload.iter().enumerate().map(|(i, x)| x ^ mask[i % 4]));
        b
    }

    #[test]
    fn accept_key_matches_rfc_example() {
        let offer = Offer {
            is_upgrade: true,
            key: Some("dGhlIHNhbXBsZSBub25jZQ==".into()),
            version: Some("13".into()),
            ..Default::default()
        };
        let h = handshake(&offer, None, false).unwrap();
        assert_eq!(h.accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn bad_keys_and_versions_are_refused() {
        let mut offer =
            Offer { is_upgrade: true, key: Some("short".into()), version: Some("13".into()), ..Default::default() };
        assert_eq!(handshake(&offer, None, false).unwrap_err(), OfferError::BadKey);
        offer.key = Some("dGhlIHNhbXBsZSBub25jZQ==".into());
        offer.version = Some("8".into());
        assert_eq!(handshake(&offer, None, false).unwrap_err(), OfferError::BadVersion);
        offer.version = Some("13".into());
        assert_eq!(handshake(&offer, Some("chat"), false).unwrap_err(), OfferError::BadProtocol);
    }

    #[test]
    fn deflate_offers_are_negotiated() {
        let (d, bits) = negotiate_deflate("permessage-deflate; client_max_window_bits").unwrap();
        assert!(!d.client_no_context_takeover && !bits);
        let (d, bits) =
            negotiate_deflate("permessage-deflate; server_max_window_bits=8, permessage-deflate; client_no_context_takeover; server_max_window_bits=10").unwrap();
        assert!(d.client_no_context_takeover && bits);
        assert_eq!(d.server_window_bits, 10);
        assert!(negotiate_deflate("permessage-deflate; unknown=1").is_none());
        assert!(
            negotiate_deflate("permessage-deflate; server_no_context_takeover; server_no_context_takeover").is_none()
        );
        assert!(negotiate_deflate("x-webkit-deflate-frame").is_none());
    }

    #[test]
    fn frames_parse_across_partial_reads() {
        let whole = masked(OP_TEXT, true, b"hello");
        let mut buf = BytesMut::from(&whole[..3]);
        assert!(parse_frame(&mut buf, 100, 0).unwrap().is_none());
        buf.extend_from_slice(&whole[3..]);
        let mut f = parse_frame(&mut buf, 100, 0).unwrap().unwrap();
        f.unmask();
        assert_eq!(&f.payload[..], b"hello");
        assert!(buf.is_empty());
        let big = vec![7u8; 70000];
        let mut buf = masked(OP_BINARY, true, &big);
        let mut f = parse_frame(&mut buf, 100000, 0).unwrap().unwrap();
        let mut copy = vec![0u8; f.payload.len()];
        unmask_into(&mut copy, &f.payload, f.mask);
        f.unmask();
        assert_eq!(&f.payload[..], &big[..]);
        assert_eq!(copy, big);
    }

    #[test]
    fn unmasking_a_copy_and_in_place_matches_byte_by_byte_at_every_length() {
        let mask = [0x12, 0x34, 0x56, 0x78];
        // Past `WIDE_MIN` too (AVX2 where the CPU has it), with every tail of its 64-byte
        // steps, and a 16 KiB message and its neighbours.
        for len in (0..700).chain(16_380..16_390) {
            let src: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            let mut dst = vec![0u8; len];
            unmask_into(&mut dst, &src, mask);
            let want: Vec<u8> = src.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]).collect();
            assert_eq!(dst, want, "length {len}");
            let mut dst = vec![0u8; len];
            unmask_into_any(&mut dst, &src, mask);
            assert_eq!(dst, want, "any, length {len}");
            let mut in_place = src.clone();
            unmask(&mut in_place, mask);
            assert_eq!(in_place, want, "in place, length {len}");
        }
    }

    #[test]
    fn protocol_violations_get_their_codes() {
        let mut unmasked = BytesMut::from(&[0x81u8, 0x01, b'a'][..]);
        assert_eq!(parse_frame(&mut unmasked, 100, 0).unwrap_err(), code::PROTOCOL_ERROR);
        let mut rsv2 = masked(OP_TEXT, true, b"a");
        rsv2[0] |= 0x20;
        assert_eq!(parse_frame(&mut rsv2, 100, 0).unwrap_err(), code::PROTOCOL_ERROR);
        let mut long_ping = masked(OP_PING, true, &[0u8; 126]);
        assert_eq!(parse_frame(&mut long_ping, 1000, 0).unwrap_err(), code::PROTOCOL_ERROR);
        let mut fragmented_ping = masked(OP_PING, false, b"x");
        assert_eq!(parse_frame(&mut fragmented_ping, 100, 0).unwrap_err(), code::PROTOCOL_ERROR);
        let mut too_big = masked(OP_BINARY, true, &[0u8; 200]);
        assert_eq!(parse_frame(&mut too_big, 100, 0).unwrap_err(), code::TOO_BIG);
    }

    #[test]
    fn utf8_fails_fast_across_fragments() {
        let mut checked = 0;
        // "é" split across fragments is fine until the end.
        assert!(check_utf8(&[b'a', 0xc3], &mut checked, false).is_ok());
        assert!(check_utf8(&[b'a', 0xc3, 0xa9], &mut checked, true).is_ok());
        let mut checked = 0;
        assert_eq!(check_utf8(&[0xff, b'a'], &mut checked, false).unwrap_err(), code::INVALID_DATA);
        let mut checked = 0;
        assert_eq!(check_utf8(&[b'a', 0xc3], &mut checked, true).unwrap_err(), code::INVALID_DATA);
    }

    #[test]
    fn deflate_round_trips_and_bounds_inflation() {
        let text = "hello hello hello hello hello hello hello hello hello hello hello".repeat(100);
        let mut c = compressor(15);
        let z = deflate(&mut c, text.as_bytes());
        assert!(z.len() < text.len() / 10);
        let mut d = Decompress::new(false);
        let mut out = Vec::new();
        inflate(&mut d, &z, &mut out, 1 << 20).unwrap();
        inflate(&mut d, &[0, 0, 0xff, 0xff], &mut out, 1 << 20).unwrap();
        assert_eq!(out, text.as_bytes());
        // Reset compressor: a second message decodes with a fresh inflater too.
        let z2 = deflate(&mut c, text.as_bytes());
        assert_eq!(z, z2);
        let mut d = Decompress::new(false);
        let mut out = Vec::new();
        assert_eq!(inflate(&mut d, &z2, &mut out, 100).unwrap_err(), code::TOO_BIG);
    }

    /// Runs a socket over an in-memory duplex: the test is the client.
    fn socket_on_duplex() -> (tokio::io::DuplexStream, Arc<Doorbell>, tokio::task::JoinHandle<()>) {
        let (client, doorbell, _, task) = socket_with_shared();
        (client, doorbell, task)
    }

    fn socket_with_shared() -> (tokio::io::DuplexStream, Arc<Doorbell>, Arc<SocketShared>, tokio::task::JoinHandle<()>)
    {
        let (client, server) = tokio::io::duplex(64 * 1024);
        let doorbell = Arc::new(Doorbell::new());
        let config = SocketConfig {
            max_payload: 1024,
            idle_timeout: None,
            backpressure_limit: 1 << 20,
            close_on_backpressure_limit: false,
            deflate: None,
            unmask_in_drain: false,
            one_thread: false,
        };
        let shared = SocketShared::new(7, config, doorbell.clone());
        let stats = Arc::new(Stats::new());
        stats.web_sockets.fetch_add(1, Ordering::Relaxed);
        let (_tx, rx) = watch::channel(Phase::Running);
        let socket = shared.clone();
        let task = tokio::spawn(async move {
            let _keep = _tx;
            let (r, w) = tokio::io::split(server);
            run(r, w, Bytes::new(), Vec::new(), socket, stats, rx).await
        });
        (client, doorbell, shared, task)
    }

    /// The events queued for JS, in order, as short descriptions.
    fn events(doorbell: &Doorbell) -> Vec<String> {
        let mut v = Vec::new();
        doorbell.take_queued(&mut v);
        v.into_iter()
            .map(|e| match e {
                Event::WsOpen(_) => "open".to_string(),
                Event::WsMessage(_, Message::Text(t)) => format!("text {}", t.as_str()),
                Event::WsMessage(_, Message::Binary(b) | Message::Masked(b, _)) => format!("binary {}", b.len()),
                Event::WsClose(_, c, r, clean) => format!("close {c} {r:?} {clean}"),
                Event::WsDrain(_) => "drain".to_string(),
                _ => "other".to_string(),
            })
            .collect()
    }

    #[tokio::test]
    async fn the_flush_writes_and_a_full_socket_leaves_the_rest_to_the_task_in_order() {
        let (mut client, doorbell, shared, task) = socket_with_shared();
        shared.hear_drain();
        while shared.writer().half.is_none() {
            tokio::task::yield_now().await;
        }
        // An idle socket takes a message at the flush itself.
        assert_eq!(shared.send(Out::Message { payload: Bytes::from_static(b"hi"), text: true, compress: false }, 2), 2);
        shared.send_now(&[]);
        assert_eq!(shared.buffered(), 0);
        let mut head = [0u8; 4];
        client.read_exact(&mut head).await.unwrap();
        assert_eq!(head, [0x81, 2, b'h', b'i']);
        // 160 KiB at once into a 64 KiB pipe: the flush writes what fits, the task the rest.
        const N: usize = 40;
        const SIZE: usize = 4096;
        for i in 0..N {
            let payload = Bytes::from(vec![i as u8; SIZE]);
            assert_ne!(shared.send(Out::Message { payload, text: false, compress: false }, SIZE), SEND_DROPPED);
        }
        shared.send_now(&[]);
        assert!(shared.buffered() > 0, "the pipe cannot hold it all");
        let mut frame = vec![0u8; 4 + SIZE];
        for i in 0..N {
            // The task must take over what the flush left: without its wake-up, this waits.
            let read = tokio::time::timeout(Duration::from_secs(30), client.read_exact(&mut frame)).await;
            read.expect("the rest was never written").unwrap();
            assert_eq!(frame[..4], [0x82, 126, (SIZE >> 8) as u8, SIZE as u8]);
            assert!(frame[4..].iter().all(|b| *b == i as u8), "message {i} out of order");
        }
        while shared.buffered() > 0 {
            tokio::task::yield_now().await;
        }
        client.write_all(&masked(OP_CLOSE, true, &[0x03, 0xe8])).await.unwrap();
        let mut rest = Vec::new();
        client.read_to_end(&mut rest).await.unwrap();
        task.await.unwrap();
        let ev = events(&doorbell);
        // Sends queued behind others asked for a DRAIN once the queue ran low.
        assert!(ev.iter().any(|e| e == "drain"), "{ev:?}");
        assert_eq!(ev.last().map(String::as_str), Some("close 1000 \"\" true"));
    }

    #[tokio::test]
    async fn a_drain_is_posted_only_once_js_has_someone_to_tell() {
        let (mut client, doorbell, shared, task) = socket_with_shared();
        while shared.writer().half.is_none() {
            tokio::task::yield_now().await;
        }
        let send = |s: &SocketShared| {
            s.send(Out::Message { payload: Bytes::from_static(b"x"), text: true, compress: false }, 1)
        };
        assert_eq!(send(&shared), 1);
        // Queued behind the first: the sender is owed a drain.
        assert_eq!(send(&shared), -1);
        shared.send_now(&[]);
        while shared.buffered() > 0 {
            tokio::task::yield_now().await;
        }
        let mut frames = [0u8; 6];
        client.read_exact(&mut frames).await.unwrap();
        assert!(!events(&doorbell).iter().any(|e| e == "drain"), "no one to tell yet");
        // A listener added now hears of the drain it is owed, at once.
        shared.hear_drain();
        assert_eq!(events(&doorbell), ["drain"]);
        client.write_all(&masked(OP_CLOSE, true, &[0x03, 0xe8])).await.unwrap();
        let mut rest = Vec::new();
        client.read_to_end(&mut rest).await.unwrap();
        task.await.unwrap();
    }

    #[tokio::test]
    async fn a_direct_send_leaves_what_the_socket_cannot_take_to_the_task_in_order() {
        let (mut client, _doorbell, shared, task) = socket_with_shared();
        while shared.writer().half.is_none() {
            tokio::task::yield_now().await;
        }
        // 100 KiB into a 64 KiB pipe: written in part at once, from the caller's memory.
        const SIZE: usize = 100 * 1024;
        let big: Vec<u8> = (0..SIZE).map(|i| (i % 251) as u8).collect();
        assert_eq!(shared.send_direct(&big, false), Some(SIZE as i32));
        assert!(shared.buffered() > 0, "the pipe cannot hold it all");
        // The caller may reuse its memory once send returns.
        drop(big);
        // Frames behind it wait for it: no direct write while the rest is pending.
        assert_eq!(shared.send_direct(&[9u8; 4096], false), None);
        assert_eq!(shared.send_framed(b"after", true), SEND_QUEUED);
        shared.send_now(&[]);
        let mut frame = vec![0u8; 10 + SIZE];
        let read = tokio::time::timeout(Duration::from_secs(30), client.read_exact(&mut frame)).await;
        read.expect("the rest was never written").unwrap();
        assert_eq!(frame[..2], [0x82, 127]);
        assert_eq!(u64::from_be_bytes(frame[2..10].try_into().unwrap()), SIZE as u64);
        assert!(frame[10..].iter().enumerate().all(|(i, b)| *b == (i % 251) as u8), "payload changed");
        let mut after = [0u8; 7];
        client.read_exact(&mut after).await.unwrap();
        assert_eq!(after, [0x81, 5, b'a', b'f', b't', b'e', b'r']);
        while shared.buffered() > 0 {
            tokio::task::yield_now().await;
        }
        // With nothing waiting, the next one goes straight out whole.
        assert_eq!(shared.send_direct(&[7u8; 4096], false), Some(4096));
        assert_eq!(shared.buffered(), 0);
        let mut head = [0u8; 4];
        client.read_exact(&mut head).await.unwrap();
        assert_eq!(head, [0x82, 126, 0x10, 0x00]);
        client.write_all(&masked(OP_CLOSE, true, &[0x03, 0xe8])).await.unwrap();
        let mut rest = Vec::new();
        client.read_to_end(&mut rest).await.unwrap();
        assert_eq!(rest.len(), 4096 + 4);
        task.await.unwrap();
    }

    #[tokio::test]
    async fn a_peer_close_is_echoed_and_reported_clean() {
        let (mut client, doorbell, task) = socket_on_duplex();
        client.write_all(&masked(OP_TEXT, true, b"hi")).await.unwrap();
        client.write_all(&masked(OP_CLOSE, true, &[0x03, 0xe8, b'o', b'k'])).await.unwrap();
        let mut out = Vec::new();
        client.read_to_end(&mut out).await.unwrap();
        task.await.unwrap();
        // The echo: a close frame with 1000.
        assert_eq!(out, [0x88, 0x02, 0x03, 0xe8]);
        assert_eq!(events(&doorbell), ["open", "text hi", "close 1000 \"ok\" true"]);
    }

    #[tokio::test]
    async fn a_protocol_error_closes_with_its_code() {
        let (mut client, doorbell, task) = socket_on_duplex();
        client.write_all(&[0x81, 0x01, b'a']).await.unwrap();
        let mut out = Vec::new();
        // Failing the connection (RFC 6455 section 7.1.7): the close frame, then the end of
        // the connection, without waiting for the peer's close.
        client.read_to_end(&mut out).await.unwrap();
        assert_eq!(&out[..4], [0x88, 16, 0x03, 0xea]);
        assert_eq!(&out[4..], b"protocol error");
        task.await.unwrap();
        let ev = events(&doorbell);
        assert_eq!(ev[0], "open");
        assert_eq!(ev[1], "close 1002 \"protocol error\" false");
    }

    #[tokio::test]
    async fn frames_of_one_read_each_deliver_their_message_in_order_with_its_bytes() {
        // Runs of whole text and binary frames (split off the read buffer at once, lengths in
        // 7 and 16 bits) between frames that take the general path: a fragmented message, a
        // frame cut across two reads, and one over the limit.
        let (mut client, doorbell, task) = socket_on_duplex();
        let bytes =
            |n: usize, seed: u8| (0..n).map(|i| (i as u8).wrapping_mul(7).wrapping_add(seed)).collect::<Vec<u8>>();
        let mut first = BytesMut::new();
        first.extend_from_slice(&masked(OP_BINARY, true, &[]));
        first.extend_from_slice(&masked(OP_BINARY, true, &bytes(5, 1)));
        first.extend_from_slice(&masked(OP_BINARY, true, &bytes(300, 2)));
        first.extend_from_slice(&masked(OP_TEXT, true, b"between"));
        first.extend_from_slice(&masked(OP_TEXT, true, "é".repeat(70).as_bytes()));
        first.extend_from_slice(&masked(OP_BINARY, true, &bytes(7, 3)));
        first.extend_from_slice(&masked(OP_BINARY, false, &bytes(3, 4)));
        first.extend_from_slice(&masked(OP_CONT, true, &bytes(2, 5)));
        first.extend_from_slice(&masked(OP_BINARY, true, &bytes(2, 6)));
        let cut = masked(OP_BINARY, true, &bytes(100, 7));
        first.extend_from_slice(&cut[..40]);
        client.write_all(&first).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        let mut second = BytesMut::from(&cut[40..]);
        second.extend_from_slice(&masked(OP_BINARY, true, &bytes(1025, 8)));
        client.write_all(&second).await.unwrap();
        let mut head = [0u8; 4];
        client.read_exact(&mut head).await.unwrap();
        assert_eq!(&head[2..], &1009u16.to_be_bytes());
        drop(client);
        task.await.unwrap();
        let mut queued = Vec::new();
        doorbell.take_queued(&mut queued);
        let mut got = Vec::new();
        for e in queued {
            match e {
                Event::WsMessage(_, Message::Masked(b, mask)) => {
                    let mut v = b.to_vec();
                    unmask(&mut v, mask);
                    got.push(("binary", v));
                }
                Event::WsMessage(_, Message::Binary(b)) => got.push(("binary", b.to_vec())),
                Event::WsMessage(_, Message::Text(t)) => got.push(("text", t.as_str().as_bytes().to_vec())),
                Event::WsClose(_, c, _, _) => got.push(("close", c.to_be_bytes().to_vec())),
                _ => {}
            }
        }
        let mut five = bytes(3, 4);
        five.extend(bytes(2, 5));
        assert_eq!(
            got,
            [
                ("binary", vec![]),
                ("binary", bytes(5, 1)),
                ("binary", bytes(300, 2)),
                ("text", b"between".to_vec()),
                ("text", "é".repeat(70).into_bytes()),
                ("binary", bytes(7, 3)),
                ("binary", five),
                ("binary", bytes(2, 6)),
                ("binary", bytes(100, 7)),
                ("close", 1009u16.to_be_bytes().to_vec()),
            ]
        );
    }

    #[tokio::test]
    async fn an_oversized_message_across_fragments_closes_with_1009() {
        let (mut client, doorbell, task) = socket_on_duplex();
        client.write_all(&masked(OP_BINARY, false, &[1u8; 600])).await.unwrap();
        client.write_all(&masked(OP_CONT, true, &[1u8; 600])).await.unwrap();
        let mut head = [0u8; 4];
        client.read_exact(&mut head).await.unwrap();
        assert_eq!(&head[2..], &1009u16.to_be_bytes());
        drop(client);
        task.await.unwrap();
        assert!(events(&doorbell).iter().any(|e| e.starts_with("close 1009")));
    }

    #[test]
    fn a_final_deflate_block_ends_the_message_cleanly() {
        // zlib's own raw deflate of a message, finished (BFINAL set), as some clients send it.
        let mut c = Compress::new(Compression::default(), false);
        let mut z = Vec::with_capacity(256);
        c.compress_vec(b"final block", &mut z, FlushCompress::Finish).unwrap();
        let mut d = Decompress::new(false);
        let mut out = Vec::new();
        assert!(inflate(&mut d, &z, &mut out, 1 << 20).unwrap());
        assert_eq!(out, b"final block");
        // The next message inflates too.
        let z2 = deflate(&mut compressor(15), b"next");
        let mut out2 = Vec::new();
        inflate(&mut d, &z2, &mut out2, 1 << 20).unwrap();
        assert_eq!(out2, b"next");
    }

    #[test]
    fn close_codes_on_the_wire() {
        for c in [1000, 1001, 1002, 1003, 1007, 1011, 3000, 4999] {
            assert!(valid_wire_code(c), "{c}");
        }
        for c in [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000] {
            assert!(!valid_wire_code(c), "{c}");
        }
    }
}
