//! Write coalescing for HTTP/1.1 connections: responses to pipelined requests are
//! gathered and written with one syscall when the connection next waits on the socket,
//! instead of one write per response.
//!
//! hyper serves pipelined requests one after another. Each response needs a round trip
//! through JS, so hyper writes and flushes every response on its own: sixteen pipelined
//! requests cost sixteen `writev` calls and sixteen wake-ups of the client. hyper's own
//! `pipeline_flush` would coalesce them, but it leaves the automatic 400 for a malformed
//! request unflushed (see `connection::tests::malformed_request_line_gets_400`). Here the
//! socket wrapper keeps what hyper writes, and the connection task flushes it after each
//! poll unless hyper went straight on to another request already in its read buffer
//! (it did not read the socket, and a request is waiting on JS). A response with no
//! pipelined request behind it (every head read has been handed over) and nothing gathered
//! before it is written as hyper flushes it, from hyper's buffers, with no copy (over TLS,
//! encrypted into a record and sent in the same step).

use crate::h1_strict::Strict;
use bytes::Bytes;
use std::io::{self, IoSlice};
use std::mem::{ManuallyDrop, MaybeUninit};
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::task::{ready, Context, Poll, RawWaker, RawWakerVTable, Waker};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// The read half of a connection's byte stream: a TCP socket's, or a TLS stream's.
pub trait ConnRead: AsyncRead + Send + Unpin {
    /// Readiness without reading: `Some` where the stream can report it (a TCP socket),
    /// `None` where bytes must be read to know (TLS records).
    fn poll_readable(&self, _cx: &mut Context<'_>) -> Option<Poll<io::Result<()>>> {
        None
    }

    /// A TCP socket's read half, whose bytes are the request's as sent (no TLS records): a
    /// large body may be read from it past hyper (direct.rs).
    fn is_plain(&self) -> bool {
        false
    }

    /// Reads into `buf` and, once it is full, into `spare`, in one system call, and returns
    /// how many bytes went to `spare`: the read of a body's end, past which the socket is
    /// mostly empty. `None` where the stream cannot (TLS); only a plain TCP socket
    /// (`is_plain`) is asked.
    fn poll_read_past(
        &mut self,
        _cx: &mut Context<'_>,
        _buf: &mut ReadBuf<'_>,
        _spare: &mut [MaybeUninit<u8>],
    ) -> Option<Poll<io::Result<usize>>> {
        None
    }

    /// The read just polled returned bytes and also left the task registered for the
    /// stream's next readiness, as a Pending read would have (TLS, once the socket is
    /// drained and every record taken): the next read can wait without asking. Asked only
    /// where the cork does not watch the socket (`Cork::watches`).
    fn waits_after_read(&mut self) -> bool {
        false
    }
}

impl ConnRead for tokio::net::tcp::OwnedReadHalf {
    fn poll_readable(&self, cx: &mut Context<'_>) -> Option<Poll<io::Result<()>>> {
        Some(self.as_ref().poll_read_ready(cx))
    }

    fn is_plain(&self) -> bool {
        true
    }

    fn poll_read_past(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
        spare: &mut [MaybeUninit<u8>],
    ) -> Option<Poll<io::Result<usize>>> {
        Some(read_past(self.as_ref(), cx, buf, spare))
    }
}

/// `ConnRead::poll_read_past` for a TCP socket: one `readv` into `buf`'s unfilled part and
/// `spare`. As tokio's own `poll_read` does, a read that filled less than it was given
/// clears the socket's readiness (epoll is edge-triggered, so it shows the socket drained),
/// and the next read waits for the next event instead of asking the socket (an `EAGAIN`).
/// The read runs inside `try_io`, whose `WouldBlock` clears only the readiness seen before
/// it (its tick): an event that came during or after the read keeps the socket readable, so
/// no wake-up is lost (docs/network-thread.md, "Echo of 100 KiB bodies, round twenty-two,
/// second part").
fn read_past(
    sock: &TcpStream,
    cx: &mut Context<'_>,
    buf: &mut ReadBuf<'_>,
    spare: &mut [MaybeUninit<u8>],
) -> Poll<io::Result<usize>> {
    loop {
        ready!(sock.poll_read_ready(cx))?;
        // SAFETY: only the kernel writes there, and only the `n` bytes it reports are taken
        // as initialized below.
        let first = unsafe { buf.unfilled_mut() };
        let (first_len, total) = (first.len(), first.len() + spare.len());
        let iov = [
            libc::iovec { iov_base: first.as_mut_ptr().cast(), iov_len: first_len },
            libc::iovec { iov_base: spare.as_mut_ptr().cast(), iov_len: spare.len() },
        ];
        let mut got = None;
        let res = sock.try_io(tokio::io::Interest::READABLE, || {
            // SAFETY: both vectors point at writable memory of their lengths, borrowed for
            // the call.
            let n = unsafe { libc::readv(sock.as_raw_fd(), iov.as_ptr(), 2) };
            let n = usize::try_from(n).map_err(|_| io::Error::last_os_error())?;
            got = Some(n);
            match 0 < n && n < total {
                // Drained: `WouldBlock` makes `try_io` clear the readiness it saw; the bytes
                // are kept (`got`).
                true => Err(io::ErrorKind::WouldBlock.into()),
                false => Ok(()),
            }
        });
        match (got, res) {
            (Some(n), Ok(()) | Err(_)) => {
                let in_buf = n.min(first_len);
                // SAFETY: the read initialized the first `n` bytes across the two vectors.
                unsafe { buf.assume_init(in_buf) };
                buf.advance(in_buf);
                return Poll::Ready(Ok(n - in_buf));
            }
            (None, Err(e)) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) => {}
            (None, Err(e)) => return Poll::Ready(Err(e)),
            (None, Ok(())) => return Poll::Ready(Ok(0)),
        }
    }
}

impl<T: AsyncRead + Send> ConnRead for tokio::io::ReadHalf<T> {}

pub type ReadHalf = Box<dyn ConnRead>;

/// The write half of a connection's byte stream, as `ConnRead`.
pub trait ConnWrite: AsyncWrite + Send + Unpin {
    /// Whether the stream still holds bytes of a write it took, for want of room in the
    /// socket, so that a flush must follow (TLS records); a TCP socket holds none.
    fn holds_output(&self) -> bool {
        false
    }

    /// The TCP socket underneath, where bytes written to it go to the socket as they are
    /// (no TLS records): a write that may fail with `WouldBlock` can go there directly,
    /// past tokio's readiness (a full socket is then found by the task's own write).
    fn plain_socket(&self) -> Option<socket2::SockRef<'_>> {
        None
    }

    /// Looks at what the socket has to read, leaving it there (`MSG_PEEK`), registering `cx`
    /// for the read direction while there is nothing: `Some` for a TCP socket (the write
    /// half shares the read half's socket and registration), `None` where bytes must be
    /// read to know (TLS records).
    fn poll_peek(&self, _cx: &mut Context<'_>, _buf: &mut [u8]) -> Option<Poll<io::Result<usize>>> {
        None
    }
}

impl ConnWrite for tokio::net::tcp::OwnedWriteHalf {
    fn plain_socket(&self) -> Option<socket2::SockRef<'_>> {
        Some(socket2::SockRef::from(self.as_ref()))
    }

    fn poll_peek(&self, cx: &mut Context<'_>, buf: &mut [u8]) -> Option<Poll<io::Result<usize>>> {
        Some(self.as_ref().poll_peek(cx, &mut ReadBuf::new(buf)))
    }
}

impl ConnWrite for tokio::io::Sink {}

impl<T: AsyncWrite + Send> ConnWrite for tokio::io::WriteHalf<T> {}

impl ConnWrite for Box<dyn ConnWrite> {
    fn holds_output(&self) -> bool {
        (**self).holds_output()
    }

    fn plain_socket(&self) -> Option<socket2::SockRef<'_>> {
        (**self).plain_socket()
    }

    fn poll_peek(&self, cx: &mut Context<'_>, buf: &mut [u8]) -> Option<Poll<io::Result<usize>>> {
        (**self).poll_peek(cx, buf)
    }
}

pub type WriteHalf = Box<dyn ConnWrite>;

/// What `Cork::watch` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Watched {
    /// Nothing to act on: nothing came, or bytes that wait for hyper.
    Nothing,
    /// The client half-closed while a request waits (`Cork::half_closed`): hyper's
    /// connection must be polled again, so that the waiting request tells JS.
    HalfClosed,
    /// The client left (the end of the stream while only a response was being written, or
    /// a reset): the connection ends, as when hyper's read saw it.
    Gone,
}

/// Buffered bytes above which a write goes to the socket at once: the cork is for
/// small responses; a large body gains nothing from waiting.
const CORK_LIMIT: usize = 64 * 1024;

/// Capacity the write buffer may keep once drained: enough for a typical small response,
/// so a keep-alive connection does not allocate per response, while one that wrote a
/// large pipelined batch gives the rest back.
const KEEP_CAPACITY: usize = 4 * 1024;

struct WriteSide {
    half: WriteHalf,
    buf: Vec<u8>,
    /// A read waker (`READ_WAKE`) of this cork, for `Cork::watch`, which registers the
    /// waker hyper's reads do (the same by `will_wake`): the socket keeps one for reads.
    read_wake: Waker,
}

impl WriteSide {
    /// Writes the buffer out; Pending (with a wake-up registered) while the socket is full.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.buf.is_empty() {
            let n = ready!(Pin::new(&mut self.half).poll_write(cx, &self.buf))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.buf.drain(..n);
        }
        if self.buf.capacity() > KEEP_CAPACITY {
            self.buf = Vec::new();
        }
        // A TLS stream takes bytes it cannot send yet (the socket is full) and keeps their
        // records until flushed; over TCP this is a no-op.
        Pin::new(&mut self.half).poll_flush(cx)
    }
}

/// State shared by the socket wrapper (owned by hyper) and the connection task.
///
/// In this order (`repr(C)`): what every poll of an HTTP/1.1 connection reads or writes
/// comes first, in the line that also holds the `Arc`'s counts (16 bytes, then 48 of
/// these); then the doorbell, the counts and the deadlines, which a request's polls reach
/// otherwise (`connection::InFlightCount`, `Cork::earliest`) and which only its rarer paths
/// read here (a deadline due or moved, an abort), and the write side, taken once a
/// response; what only a closing or upgraded connection touches comes last. With 50
/// connections served in turn each poll finds these lines cold, and Rust's own order
/// spread the hot fields over all four of the block's lines.
#[repr(C)]
pub struct Cork {
    /// hyper read from the socket since the last check.
    read_called: AtomicBool,
    /// Bytes went into the write side since it was last drained and flushed: `after_poll`
    /// takes its lock only then (most polls of a connection wrote nothing). Set and
    /// cleared only by the connection's task, as `read_called`.
    unflushed: AtomicBool,
    /// The connection speaks HTTP/2: write through.
    passthrough: AtomicBool,
    /// Bytes moved either way since the idle check last looked.
    activity: AtomicBool,
    /// The client half-closed between requests while some were still being answered:
    /// hyper is told of the end only once they are (see `CorkedStream::poll_read`).
    client_eof: AtomicBool,
    /// hyper got bytes after it last wrote: it may hold part of the next head. Releasing
    /// then would restart its header timer, which a client sending a byte every few
    /// seconds could use to hold a connection forever (slowloris).
    read_since_write: AtomicBool,
    /// The connection's timer woke its waker (`TimerWake`) since the task last looked
    /// (`take_timer_woken`): set from whichever thread drives the timers, cleared by the
    /// connection's task only.
    timer_woken: AtomicBool,
    /// Made on a thread that drives a runtime from Node's loop: readings are shared by a
    /// round of the driver's turn (`clock::Round`), not only by a poll.
    round_clock: bool,
    /// Plain TCP HTTP/1.1: hyper does not read while a request is out (its `half_close`
    /// is on, connection.rs), and the connection task watches the socket instead (`watch`).
    watches: bool,
    /// The last read of the socket was Pending with `CorkedStream::read_wake` registered
    /// (by hyper's read or by `watch`): until that waker is woken, another would be Pending
    /// too. Written and read by the connection's task only.
    read_waits: AtomicBool,
    /// `watch` may look at the socket: hyper's reads so far end at a request boundary (a
    /// body still coming is hyper's to read), and no byte came since that hyper has not
    /// read (pipelined bytes stay in the socket for hyper). Written and read by the
    /// connection's task only.
    watch_ok: AtomicBool,
    /// The read waker (`READ_WAKE`) was woken since the task last read the socket with it:
    /// set from whichever thread drives the socket, cleared by the connection's task. In
    /// the padding before `fd`.
    read_woken: AtomicBool,
    /// The TCP socket the write side's `half` writes to while it holds one
    /// (`ConnWrite::plain_socket`), else -1; written and read under the write side's lock. A
    /// small response is sent to it directly (`write_flat`): here, in the padding after the
    /// flags, not behind the stream's two pointers (a cold line at every response).
    fd: AtomicI32,
    /// Requests of this connection waiting on JS (`in_flight_add`).
    pub in_flight: AtomicUsize,
    /// HTTP/1.1 requests hyper has handed over on this connection (`request_handed`), to
    /// compare with the heads `h1_strict` saw come in (`CorkedStream::nothing_pipelined`).
    /// Written and read by the connection's task only. Wrapping, as `heads_read`: only
    /// their equality counts. 32 bits, so that `earliest` fits in this line.
    handed: AtomicU32,
    /// Request heads `h1_strict` saw end in the bytes read (`Strict::take_heads`), all along
    /// the connection (rewound bytes were counted when first read). Written and read by the
    /// connection's task only.
    heads_read: AtomicU32,
    /// The clock's reading in the current poll of this HTTP/1.1 connection (`now`); 0:
    /// none yet. Written and read by the connection's task only.
    poll_clock: AtomicU64,
    /// The earliest deadline a request of this connection asked for since the connection
    /// task last looked (deadline.rs; `u64::MAX`: none), read at every poll
    /// (`take_earliest`): here, not with the rest of the deadlines in the next line, which
    /// the polls of a request then do not read. Written and read by the connection's task
    /// only (its HTTP/1.1 requests are polled inside its poll).
    earliest: AtomicU64,
    /// Where the requests of this connection report a half-close, being abandoned or
    /// timed out.
    pub(crate) doorbell: Arc<crate::bridge::Doorbell>,
    /// The server's counts, which this connection's requests update.
    pub(crate) stats: Arc<crate::stats::Stats>,
    /// Deadlines inside this connection's HTTP/1.1 requests (deadline.rs).
    pub(crate) deadlines: crate::deadline::Deadlines,
    /// A body read past hyper waits to be claimed by its request (`direct`): in the line a
    /// response reads anyway, so that a request without a body costs no cold line to ask.
    direct_waiting: AtomicBool,
    /// The room `earliest` left here when it moved to the first line: what a response reads
    /// and writes, from `streaming` to the write side's buffer, stays in one line.
    _room: [u8; 7],
    /// Streamed response bodies of this connection still being written.
    pub streaming: AtomicUsize,
    /// A write to the socket is waiting for room (hyper may hold unwritten bytes).
    write_blocked: AtomicBool,
    /// `last_request` holds a request: its lock is taken only then. Written and read by
    /// the connection's task only.
    last_request_set: AtomicBool,
    write: Mutex<WriteSide>,
    /// The waker of the connection's task, as its first read of the socket saw it: the read
    /// waker (`READ_WAKE`) wakes it. Set once, so that a wake-up on another thread reads it
    /// without a lock; a task whose waker differs later reads with its own. Here, in the room
    /// the write side's smaller size left: the fields before it keep their lines.
    task: OnceLock<Waker>,
    /// The read half once hyper is done with the connection, for the lingering close.
    leftover: Mutex<Option<ReadHalf>>,
    /// hyper's read, waiting for the last answer before it gets the end of the stream.
    eof_reader: Mutex<Option<Waker>>,
    /// The request of this connection whose record JS may still hold, with its body still
    /// on the wire when it was handed over (HTTP/1.1 has one at a time): while it lives
    /// hyper may be mid-body. Requests without such a body leave it empty.
    last_request: Mutex<std::sync::Weak<crate::bridge::Ticket>>,
    /// A WebSocket accepted on this connection: it takes the connection once hyper has
    /// written the 101 (connection.rs, websocket.rs).
    pub(crate) upgrade: Mutex<Option<Arc<crate::websocket::SocketShared>>>,
    /// The body read past hyper (direct.rs) that its request has not claimed yet.
    direct: Mutex<Option<Arc<crate::direct::DirectShared>>>,
}

// The fields every poll reads are in the first line, after the `Arc`'s two counts; those
// a response reads and writes start the third (the `Arc`'s block, 304 bytes, is one of
// mimalloc's 320-byte blocks, which start at multiples of 64).
const _: () = assert!(std::mem::offset_of!(Cork, earliest) + 8 <= 64 - 16);
const _: () = assert!(std::mem::offset_of!(Cork, streaming) + 16 == 128);

impl Cork {
    /// Splits `stream` into the wrapper hyper serves and the handle the task flushes with.
    /// An HTTP/2 connection (`passthrough`) is never corked: its frames for concurrent
    /// streams must not wait on one another.
    /// `replay` is what protocol selection already read; hyper reads it first. HTTP/1.1
    /// reads go through the framing checks of `h1_strict`.
    pub fn new(
        stream: TcpStream,
        passthrough: bool,
        replay: &[u8],
        doorbell: Arc<crate::bridge::Doorbell>,
        stats: Arc<crate::stats::Stats>,
    ) -> (CorkedStream, Arc<Cork>) {
        let (read, write) = stream.into_split();
        Cork::from_halves(Box::new(read), Box::new(write), passthrough, replay, doorbell, stats)
    }

    /// As `new`, over any byte stream split in two (TLS: `tls::split_stream`).
    pub fn from_halves(
        read: ReadHalf,
        write: WriteHalf,
        passthrough: bool,
        replay: &[u8],
        doorbell: Arc<crate::bridge::Doorbell>,
        stats: Arc<crate::stats::Stats>,
    ) -> (CorkedStream, Arc<Cork>) {
        let cork = Arc::new_cyclic(|me| Cork {
            // A TCP socket, which `watch` can peek at: TLS records must be read to see an end.
            watches: !passthrough && write.plain_socket().is_some(),
            fd: AtomicI32::new(write.plain_socket().map_or(-1, |s| s.as_raw_fd())),
            write: Mutex::new(WriteSide { half: write, buf: Vec::new(), read_wake: read_waker(me) }),
            read_waits: AtomicBool::new(false),
            read_woken: AtomicBool::new(false),
            task: OnceLock::new(),
            watch_ok: AtomicBool::new(false),
            heads_read: AtomicU32::new(0),
            read_called: AtomicBool::new(false),
            unflushed: AtomicBool::new(false),
            passthrough: AtomicBool::new(passthrough),
            in_flight: AtomicUsize::new(0),
            handed: AtomicU32::new(0),
            earliest: AtomicU64::new(u64::MAX),
            streaming: AtomicUsize::new(0),
            activity: AtomicBool::new(false),
            leftover: Mutex::new(None),
            client_eof: AtomicBool::new(false),
            doorbell,
            stats,
            eof_reader: Mutex::new(None),
            write_blocked: AtomicBool::new(false),
            read_since_write: AtomicBool::new(false),
            deadlines: crate::deadline::Deadlines::new(),
            direct_waiting: AtomicBool::new(false),
            _room: [0; 7],
            poll_clock: AtomicU64::new(0),
            round_clock: crate::in_thread::drives_here(),
            timer_woken: AtomicBool::new(false),
            last_request: Mutex::new(std::sync::Weak::new()),
            last_request_set: AtomicBool::new(false),
            upgrade: Mutex::new(None),
            direct: Mutex::new(None),
        });
        let direct_ok = !passthrough && read.is_plain();
        let strict = (!passthrough).then(|| Box::new(Strict::new(direct_ok)));
        let stream = CorkedStream {
            direct_ok,
            direct: None,
            read: Some(read),
            replay: replay.into(),
            strict,
            cork: cork.clone(),
            rewound: None,
            strict_parked: false,
            task: None,
            read_wake: Arc::downgrade(&cork),
            write_direct: !passthrough,
        };
        (stream, cork)
    }

    /// True when the connection holds nothing in progress: no request or streamed
    /// response, nothing unwritten (here or blocked in hyper), nothing read since the last
    /// response (part of a head), and no request record that JS still holds (whose body
    /// hyper could still be reading). With a quiet period behind it, hyper's connection
    /// can then be released and rebuilt (connection.rs).
    pub fn settled(&self) -> bool {
        self.in_flight.load(Ordering::Relaxed) == 0
            && self.streaming.load(Ordering::Relaxed) == 0
            && !self.write_blocked.load(Ordering::Relaxed)
            && !self.read_since_write.load(Ordering::Relaxed)
            && self.side().buf.is_empty()
            && !self.holds_last_request()
    }

    /// Whether JS may still hold the record of the last request with a body on the wire.
    fn holds_last_request(&self) -> bool {
        self.last_request_set.load(Ordering::Relaxed) && !self.last_request.lock().is_ok_and(|w| w.strong_count() == 0)
    }

    /// Records the request just handed to JS (`connection::hand_over`): `Some` for one whose
    /// body is still on the wire, `None` for any other. Runs on the connection's task.
    pub(crate) fn set_last_request(&self, ticket: Option<&Arc<crate::bridge::Ticket>>) {
        if ticket.is_none() && !self.last_request_set.load(Ordering::Relaxed) {
            return;
        }
        if let Ok(mut last) = self.last_request.lock() {
            *last = ticket.map_or_else(std::sync::Weak::new, Arc::downgrade);
        }
        self.last_request_set.store(ticket.is_some(), Ordering::Relaxed);
    }

    /// The body read past hyper for the request hyper is handing over now (its number is
    /// `handed` + 1, `request_handed` not yet called for it), if there is one.
    #[inline]
    pub(crate) fn claim_direct(self: &Arc<Self>) -> Option<Box<crate::direct::DirectBody>> {
        if !self.direct_waiting.load(Ordering::Relaxed) {
            return None;
        }
        self.claim_waiting()
    }

    #[cold]
    fn claim_waiting(self: &Arc<Self>) -> Option<Box<crate::direct::DirectBody>> {
        let mut slot = self.direct.lock().unwrap_or_else(|p| p.into_inner());
        let next = self.handed.load(Ordering::Relaxed).wrapping_add(1);
        if slot.as_ref()?.head_no != next {
            return None;
        }
        self.direct_waiting.store(false, Ordering::Relaxed);
        Some(Box::new(crate::direct::DirectBody::new(slot.take()?, self.clone())))
    }

    /// A direct body's reader used the socket: its one read waker is the reader's now, so
    /// hyper's next read (or the watch) asks the socket.
    pub(crate) fn socket_read_elsewhere(&self) {
        self.read_waits.store(false, Ordering::Relaxed);
    }

    /// Bytes of a request body moved, for the idle check.
    pub(crate) fn body_bytes_read(&self) {
        self.activity.store(true, Ordering::Relaxed);
    }

    /// A direct body was read to its end: the connection is between requests, and the watch
    /// may look at the socket again (it may not while the reader reads: the socket keeps one
    /// read waker, which the watch would take). The task is woken to look. With `more`
    /// (bytes after the body came in its read, and wait for hyper) the watch does not look,
    /// as it looks no more once it found bytes for hyper in the socket.
    pub(crate) fn direct_done(&self, more: bool) {
        self.read_waits.store(false, Ordering::Relaxed);
        self.watch_ok.store(!more, Ordering::Relaxed);
        if let Some(task) = self.task.get() {
            task.wake_by_ref();
        }
    }

    /// Adds `delta` (wrapping: `usize::MAX` takes one away) to the requests in flight. Over
    /// HTTP/1.1 they come and go on the connection's task alone, as hyper polls them inside
    /// its poll of the connection: a load and a store. HTTP/2 streams run in tasks of their
    /// own, maybe on other threads.
    pub(crate) fn in_flight_add(&self, delta: usize) {
        if self.is_http1() {
            let n = self.in_flight.load(Ordering::Relaxed).wrapping_add(delta);
            self.in_flight.store(n, Ordering::Release);
        } else {
            self.in_flight.fetch_add(delta, Ordering::Release);
        }
    }

    /// hyper handed an HTTP/1.1 request over (`connection::InFlightCount::new`), on the
    /// connection's task: a load and a store.
    pub(crate) fn request_handed(&self) {
        self.handed.store(self.handed.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
    }

    /// HTTP/1.1 (plain or TLS): every request's future is polled by the connection's task,
    /// inside its poll of hyper's connection.
    pub(crate) fn is_http1(&self) -> bool {
        !self.passthrough.load(Ordering::Relaxed)
    }

    /// The clock (`clock::now`) as of this poll of the connection: a request's start
    /// (`connection::admit`), its answer (`Stats::record_response`) and the header deadline
    /// after it (`connection::drive`) share the poll's first reading, and in the in-thread
    /// mode the round's (`clock::Round`). HTTP/2 streams, polled in tasks of their own,
    /// read it each time (or share the round's).
    #[inline]
    pub(crate) fn now(&self) -> u64 {
        self.now_from(|| &self.doorbell.round)
    }

    /// As `now`, with the server's round clock given (`clock::Round`, the doorbell's, which
    /// `round` must be): reached from where the caller is, not through this cork's
    /// `doorbell`, in a line of its own.
    #[inline]
    pub(crate) fn now_in(&self, round: &crate::clock::Round) -> u64 {
        self.now_from(|| round)
    }

    /// `now`'s reading, with the round clock fetched only where it is read (`round`), so
    /// that a poll whose clock was read already does not reach for it.
    #[inline(always)]
    fn now_from<'r>(&self, round: impl FnOnce() -> &'r crate::clock::Round) -> u64 {
        let seen = self.poll_clock.load(Ordering::Relaxed);
        if seen != 0 {
            return seen;
        }
        let now = if self.round_clock { round().now() } else { crate::clock::now() }.max(1);
        if self.is_http1() {
            self.poll_clock.store(now, Ordering::Relaxed);
        }
        now
    }

    /// The earliest deadline asked for since the last call, if any (`clock::now`; see
    /// `deadline::Deadlines`).
    #[inline]
    pub(crate) fn take_earliest(&self) -> Option<u64> {
        // The connection's task alone: a load and, when set, a store.
        match self.earliest.load(Ordering::Relaxed) {
            u64::MAX => None,
            n => {
                self.earliest.store(u64::MAX, Ordering::Relaxed);
                Some(n)
            }
        }
    }

    /// A request's deadline at `at` (`clock::now`) wants the connection polled then. On
    /// the connection's task (an HTTP/1.1 request's poll).
    pub(crate) fn note_deadline(&self, at: u64) {
        if at < self.earliest.load(Ordering::Relaxed) {
            self.earliest.store(at, Ordering::Relaxed);
        }
    }

    /// Whether this cork holds these counts and this doorbell (`connection::InFlightCount`).
    pub(crate) fn holds(&self, stats: &Arc<crate::stats::Stats>, doorbell: &Arc<crate::bridge::Doorbell>) -> bool {
        Arc::ptr_eq(&self.stats, stats) && Arc::ptr_eq(&self.doorbell, doorbell)
    }

    /// A poll of the connection starts (`connection::drive`): the next `now` reads anew.
    #[inline]
    pub(crate) fn poll_started(&self) {
        self.poll_clock.store(0, Ordering::Relaxed);
    }

    /// Whether the connection's timer woke its waker (`TimerWake`) since the last call.
    /// A load and, when set, a store: the timer sets it at most once per arming, and a
    /// firing that comes between the two is seen by the poll of the timer that follows.
    pub(crate) fn take_timer_woken(&self) -> bool {
        if self.timer_woken.load(Ordering::Acquire) {
            self.timer_woken.store(false, Ordering::Relaxed);
            return true;
        }
        false
    }

    /// Whether hyper is between requests: none in progress, no response being streamed,
    /// none held up by a full socket. Read at every poll of the connection (no lock).
    pub fn awaiting_head(&self) -> bool {
        self.in_flight.load(Ordering::Relaxed) == 0
            && self.streaming.load(Ordering::Relaxed) == 0
            && !self.write_blocked.load(Ordering::Relaxed)
    }

    /// `awaiting_head`, and JS holds no request of this connection (hyper may still be
    /// reading its body) and nothing is left unwritten: a `headerTimeout` that passed now
    /// passed waiting for a head.
    pub fn settled_for_head(&self) -> bool {
        self.awaiting_head() && self.side().buf.is_empty() && !self.holds_last_request()
    }

    /// Whether the client has shut down its side (sent FIN) while requests of this
    /// connection were waiting on JS: for HTTP, the client may be gone. The request waiting
    /// tells JS at its next poll, so that its `request.signal` aborts (the answer is still
    /// sent).
    pub fn half_closed(&self) -> bool {
        self.client_eof.load(Ordering::Acquire)
    }

    /// Every request head the framing scanner saw come in has been handed over: no whole
    /// head waits unanswered in what was read (the fast path's `read_out`, over TLS).
    #[inline]
    pub(crate) fn no_head_waiting(&self) -> bool {
        self.heads_read.load(Ordering::Relaxed) == self.handed.load(Ordering::Relaxed)
    }

    /// The fast path waits on JS for the answer next in order while bytes it read wait
    /// behind it (`fast_h1::FastH1::wait`): nothing is written before JS answers, so what was
    /// written so far goes out after this poll (`after_poll`), as after a read. (The watch
    /// marks it so only when no head waits, and with bytes waiting no read comes.)
    #[inline]
    pub(crate) fn answer_awaited(&self) {
        self.read_called.store(true, Ordering::Relaxed);
    }

    /// Whether the connection task watches the socket while a request is out (`watch`):
    /// plain TCP HTTP/1.1, where hyper's `half_close` is on.
    #[inline]
    pub(crate) fn watches(&self) -> bool {
        self.watches
    }

    /// While a request is out (or its response is still being written) hyper does not
    /// read the socket: its `half_close` is on, since that read reserved a new read buffer
    /// while the last chunk of a body could still hold the old one, and cost a system call
    /// per request (docs/network-thread.md, "Large request bodies, round eleven"). Called
    /// by the connection task after each poll of hyper's connection while `awaiting_head`
    /// is false, this looks in hyper's place, without reading: the socket's readiness,
    /// registered with the waker hyper's reads use (the socket keeps one for reads), then a
    /// one-byte peek. The end of the stream is taken as hyper's read took it
    /// (`CorkedStream::poll_read`): with a request waiting on JS the client half-closed
    /// (`client_eof`: its `request.signal` aborts, the answer still goes out); with only a
    /// response being written the client left, as a reset does (`Watched::Gone`). Bytes
    /// stay for hyper, and the watch looks no more until hyper has read them. Without a
    /// wake-up since the last look it asks nothing (a load of the waker's flag).
    pub(crate) fn watch(&self, cx: &mut Context<'_>) -> Watched {
        if !self.watch_ok.load(Ordering::Relaxed) || self.client_eof.load(Ordering::Relaxed) {
            return Watched::Nothing;
        }
        // hyper's read while a request was out (before `half_close`) marked the socket
        // asked, so that `after_poll` writes the responses gathered so far; it read unless
        // a pipelined request waited in its buffer, which it goes on to.
        if self.heads_read.load(Ordering::Relaxed) == self.handed.load(Ordering::Relaxed) {
            self.read_called.store(true, Ordering::Relaxed);
        }
        let ours = self.is_task(cx.waker());
        if ours {
            if self.read_waits.load(Ordering::Relaxed) && !self.read_woken.load(Ordering::Acquire) {
                return Watched::Nothing;
            }
            self.read_woken.store(false, Ordering::Relaxed);
        }
        let mut side = self.side();
        let side = &mut *side;
        let mut byte = [0u8; 1];
        let polled = match ours {
            true => side.half.poll_peek(&mut Context::from_waker(&side.read_wake), &mut byte),
            // Not the connection's task: its own waker, and the next read asks the socket
            // (`read_waits` false).
            false => side.half.poll_peek(cx, &mut byte),
        };
        let Some(polled) = polled else { return Watched::Nothing };
        self.read_waits.store(ours && polled.is_pending(), Ordering::Relaxed);
        match polled {
            Poll::Pending => Watched::Nothing,
            Poll::Ready(Ok(0)) if self.in_flight.load(Ordering::Acquire) > 0 => {
                self.client_eof.store(true, Ordering::Release);
                Watched::HalfClosed
            }
            Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => Watched::Gone,
            Poll::Ready(Ok(_)) => {
                self.watch_ok.store(false, Ordering::Relaxed);
                Watched::Nothing
            }
        }
    }

    /// Whether `task` is the waker of the connection's task (`task`, kept at the first
    /// call), which the read waker (`READ_WAKE`) wakes.
    fn is_task(&self, task: &Waker) -> bool {
        self.task.get_or_init(|| task.clone()).will_wake(task)
    }

    /// A request finished or a streamed response ended: hyper may now get the end of
    /// the stream it was kept from.
    pub fn answered(&self) {
        if self.client_eof.load(Ordering::Acquire) {
            if let Some(w) = self.eof_reader.lock().unwrap_or_else(|p| p.into_inner()).take() {
                w.wake();
            }
        }
    }

    fn answering(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) > 0 || self.streaming.load(Ordering::Acquire) > 0
    }

    /// The read half, once hyper has dropped the connection (see `CorkedStream`'s Drop).
    pub fn take_read_half(&self) -> Option<ReadHalf> {
        self.leftover.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    /// Sends FIN once everything buffered is written.
    pub async fn shutdown(&self) -> io::Result<()> {
        std::future::poll_fn(|cx| {
            let mut side = self.side();
            ready!(side.poll_drain(cx))?;
            Pin::new(&mut side.half).poll_shutdown(cx)
        })
        .await
    }

    fn side(&self) -> std::sync::MutexGuard<'_, WriteSide> {
        self.write.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Called by the connection task after each poll of the connection: writes what is
    /// buffered unless hyper is busy with a pipelined request it already had.
    pub fn after_poll(&self, cx: &mut Context<'_>) -> io::Result<()> {
        // Set and cleared only by this connection's task (hyper reads inside its poll): a
        // load and a store, not a read-modify-write.
        let read = self.read_called.load(Ordering::Relaxed);
        if read {
            self.read_called.store(false, Ordering::Relaxed);
        }
        if !read && self.in_flight.load(Ordering::Relaxed) > 0 && !self.passthrough.load(Ordering::Relaxed) {
            return Ok(());
        }
        if !self.unflushed.load(Ordering::Relaxed) {
            return Ok(());
        }
        match self.side().poll_drain(cx) {
            Poll::Ready(r) => {
                if r.is_ok() {
                    self.unflushed.store(false, Ordering::Relaxed);
                }
                r
            }
            // The socket is full; the registered wake-up polls the task again.
            Poll::Pending => Ok(()),
        }
    }

    /// Hands the write half over (a WebSocket takes the connection), with what was
    /// written and not sent yet (the 101), which must go out first.
    pub fn take_writer(&self) -> (WriteHalf, Vec<u8>) {
        let mut side = self.side();
        self.fd.store(-1, Ordering::Relaxed);
        let half = std::mem::replace(&mut side.half, Box::new(tokio::io::sink()));
        (half, std::mem::take(&mut side.buf))
    }

    /// For the keep-alive idle timeout: true when nothing moved since the last call and
    /// no request or streamed response is in progress.
    pub fn idle_since_last_check(&self) -> bool {
        let moved = self.activity.swap(false, Ordering::Relaxed);
        !moved && self.in_flight.load(Ordering::Relaxed) == 0 && self.streaming.load(Ordering::Relaxed) == 0
    }

    /// Writes everything still buffered (the connection is finishing).
    pub async fn finish(&self) {
        let _ = std::future::poll_fn(|cx| self.side().poll_drain(cx)).await;
    }
}

/// The socket as hyper sees it: reads go through (HTTP/1.1 ones checked by
/// `h1_strict`); writes are buffered until the connection task flushes them.
pub struct CorkedStream {
    /// Always Some until dropped, when it moves to `Cork::leftover`.
    read: Option<ReadHalf>,
    /// Bytes read before hyper took over (the protocol selection), or with the end of a body
    /// read past hyper (direct.rs), served first.
    replay: Box<[u8]>,
    /// HTTP/1.1 only. Boxed: it is mostly a line buffer, and h2 does without.
    strict: Option<Box<Strict>>,
    cork: Arc<Cork>,
    /// Bytes a released hyper connection had read but not parsed; read again first (they
    /// passed the framing checks already).
    rewound: Option<Bytes>,
    /// The scanner was dropped while the connection idles (`park_scanner`); a fresh one
    /// takes over at the next read.
    strict_parked: bool,
    /// The waker of the connection's task as the first read saw it, as `Cork::task`: a
    /// read compares with this copy, not with the cork's, which is in a line the read does
    /// not otherwise touch.
    task: Option<Waker>,
    /// The weak count behind the read waker (`READ_WAKE`) borrowed for each read: its data
    /// pointer is this `Weak`'s.
    read_wake: Weak<Cork>,
    /// HTTP/1.1: a response with nothing pipelined behind it may be written to the socket
    /// at once (`write_through_cork`).
    write_direct: bool,
    /// Plain TCP HTTP/1.1: a large body of declared length may be read past hyper.
    direct_ok: bool,
    /// The body read past hyper whose reader holds the read half, or which went unread.
    direct: Option<Arc<crate::direct::DirectShared>>,
}

/// The waker a connection's read half gets (`read_waker`, and borrowed by
/// `CorkedStream::poll_read`): it marks the cork
/// (`read_woken`), then wakes the task. While a request waits on JS, the connection task
/// looks at the socket at every poll of the connection to see a client leave (`Cork::watch`,
/// registering this waker too); hyper's read for the next head, and the watch, then ask the
/// socket only if it became readable since the last look (about 200 instructions and two
/// cold cache lines of tokio's readiness state per request). Its data is the cork's pointer
/// with a weak count (the socket's registration holds a clone, and the cork owns the
/// socket): clones and drops move the count in the cork's first line, which the poll reads
/// anyway, where an `Arc` of its own was a separate block, cold at each wake-up and clone.
static READ_WAKE: RawWakerVTable = RawWakerVTable::new(read_clone, read_wake, read_wake_by_ref, read_drop);

/// The weak count `data` holds, borrowed.
///
/// # Safety
/// `data` is a `Weak<Cork>`'s pointer whose count is held by the caller.
unsafe fn read_weak(data: *const ()) -> ManuallyDrop<Weak<Cork>> {
    ManuallyDrop::new(unsafe { Weak::from_raw(data.cast::<Cork>()) })
}

unsafe fn read_clone(data: *const ()) -> RawWaker {
    let weak = unsafe { read_weak(data) };
    let _ = Weak::into_raw(Weak::clone(&weak));
    RawWaker::new(data, &READ_WAKE)
}

unsafe fn read_wake(data: *const ()) {
    unsafe {
        read_wake_by_ref(data);
        read_drop(data);
    }
}

unsafe fn read_wake_by_ref(data: *const ()) {
    // A cork already dropped has no task to wake.
    if let Some(cork) = unsafe { read_weak(data) }.upgrade() {
        cork.read_woken.store(true, Ordering::Release);
        if let Some(task) = cork.task.get() {
            task.wake_by_ref();
        }
    }
}

/// A read waker (`READ_WAKE`) for `cork`, with a weak count of its own.
fn read_waker(cork: &Weak<Cork>) -> Waker {
    let data = Weak::into_raw(cork.clone()).cast::<()>();
    // SAFETY: `data` is a `Weak<Cork>`'s, whose count the waker now holds.
    unsafe { Waker::from_raw(RawWaker::new(data, &READ_WAKE)) }
}

unsafe fn read_drop(data: *const ()) {
    drop(unsafe { Weak::from_raw(data.cast::<Cork>()) });
}

/// The waker a connection's timer is polled with (connection.rs, `drive`): it marks the
/// cork, then wakes the task, so that a poll of the connection asks whether the timer fired
/// by a flag in the cork (whose lines the poll reads anyway), not by the timer's own state,
/// a separate allocation that is cold at every poll (1.45 L1D misses a poll under 50
/// connections, callgrind).
pub(crate) struct TimerWake {
    pub(crate) cork: Arc<Cork>,
    pub(crate) task: Waker,
}

impl std::task::Wake for TimerWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.cork.timer_woken.store(true, Ordering::Release);
        self.task.wake_by_ref();
    }
}

impl Drop for CorkedStream {
    fn drop(&mut self) {
        // Kept so the connection task can read and discard what the client still sends
        // after the last response (the lingering close), instead of a reset.
        let lent = self.direct.take().and_then(|d| d.close());
        let waiting = self.cork.direct.lock().unwrap_or_else(|p| p.into_inner()).take();
        let lent = lent.or_else(|| waiting.and_then(|d| d.close()));
        if let Some(read) = self.read.take().or(lent) {
            *self.cork.leftover.lock().unwrap_or_else(|p| p.into_inner()) = Some(read);
        }
    }
}

impl hyper::rt::Read for CorkedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        this.cork.read_called.store(true, Ordering::Relaxed);
        if this.strict_parked {
            this.strict = Some(Box::new(Strict::new(this.direct_ok)));
            this.strict_parked = false;
        }
        if let Some(mut bytes) = this.rewound.take() {
            this.cork.read_since_write.store(true, Ordering::Relaxed);
            // Rewound bytes hold whole requests (`park_scanner`), or the scanner saw them. A
            // body read past hyper may be out with them (its head among the bytes the fast
            // path read and handed to hyper): the watch must not take the socket's one read
            // waker from its reader meanwhile (`direct_done` allows it again).
            let watch_ok = this.strict.as_ref().is_some_and(|s| s.between_requests()) && this.direct.is_none();
            this.cork.watch_ok.store(watch_ok, Ordering::Relaxed);
            let n = bytes.len().min(buf.remaining());
            buf.put_slice(&bytes.split_to(n));
            if !bytes.is_empty() {
                this.rewound = Some(bytes);
            }
            return Poll::Ready(Ok(()));
        }
        if this.cork.client_eof.load(Ordering::Acquire) {
            return this.end_after_answers(cx);
        }
        // SAFETY: `ReadBuf` only writes initialized bytes into the cursor's spare capacity
        // and reports how many; exactly those are advanced over (as hyper-util's TokioIo).
        let n = unsafe {
            let mut tbuf = ReadBuf::uninit(buf.as_mut());
            // The connection's task, known to the cork from its first read (the replay's, on
            // a new connection), so that the read waker reaches it whoever read last: a body
            // read past hyper ending, the watch's peek.
            if this.task.is_none() && this.cork.is_task(cx.waker()) {
                this.task = Some(cx.waker().clone());
            }
            if let Some(direct) = this.direct.as_ref() {
                // The body's reader has the read half: hyper reads again once the body is
                // read (the next head follows it), or gets the end of the stream when it
                // went unread or the socket failed.
                let back = ready!(direct.take_back(cx, &mut this.read));
                this.direct = None;
                if this.read.is_some() {
                    // The reader's waker was the socket's last: the next read asks it.
                    this.cork.read_waits.store(false, Ordering::Relaxed);
                }
                match back {
                    // Bytes the body's last read took from the socket after the body: read
                    // first, as the replay is, through the same checks.
                    Some(after) => this.replay = after,
                    None => {
                        // The end of the stream, from now on (`read` None): hyper ends the
                        // connection after its answers; the half waits for the lingering close.
                        this.strict = None;
                        this.cork.watch_ok.store(false, Ordering::Relaxed);
                        *this.cork.leftover.lock().unwrap_or_else(|p| p.into_inner()) = this.read.take();
                        return Poll::Ready(Ok(()));
                    }
                }
            }
            if !this.replay.is_empty() {
                let n = this.replay.len().min(tbuf.remaining());
                tbuf.put_slice(&this.replay[..n]);
                this.replay = this.replay[n..].into();
                // The rest of the first segment is usually here already: hyper parses the
                // head once instead of twice. An end of stream shows again on the next read,
                // and after an error the socket reads as ended.
                if let (Some(read), true) = (this.read.as_mut(), this.replay.is_empty() && tbuf.remaining() > 0) {
                    let _ = Pin::new(read).poll_read(cx, &mut tbuf);
                    // Polled with the task's own waker: the next read asks the socket.
                    this.cork.read_waits.store(false, Ordering::Relaxed);
                }
            } else {
                let Some(read) = this.read.as_mut() else { return Poll::Ready(Ok(())) };
                let cork = &*this.cork;
                let polled = match this.task.as_ref().is_some_and(|t| t.will_wake(cx.waker())) {
                    true => {
                        if cork.read_waits.load(Ordering::Relaxed) && !cork.read_woken.load(Ordering::Acquire) {
                            return Poll::Pending;
                        }
                        cork.read_woken.store(false, Ordering::Relaxed);
                        let data = Weak::as_ptr(&this.read_wake).cast::<()>();
                        // Borrowed from `read_wake`'s count: never dropped; each clone takes a
                        // count of its own (`read_clone`).
                        let wake = ManuallyDrop::new(Waker::from_raw(RawWaker::new(data, &READ_WAKE)));
                        let polled = Pin::new(&mut *read).poll_read(&mut Context::from_waker(&wake), &mut tbuf);
                        let waits = polled.is_pending() || (!cork.watches && read.waits_after_read());
                        cork.read_waits.store(waits, Ordering::Relaxed);
                        polled
                    }
                    // Not the connection's task (its waker changed): its own waker, and the
                    // next read asks the socket.
                    false => {
                        cork.read_waits.store(false, Ordering::Relaxed);
                        Pin::new(read).poll_read(cx, &mut tbuf)
                    }
                };
                ready!(polled)?;
                // End of stream between two HTTP/1.1 requests while one is still being
                // answered: a half-close (`nc -N`, `socket.end(request)`), which RFC 9112
                // 9.6 lets a client do. hyper would drop the connection with the answers;
                // it gets the end once they are out. Mid-request, it gets it at once.
                let between = this.strict.as_ref().is_some_and(|s| s.between_requests());
                if tbuf.filled().is_empty() && between && this.cork.in_flight.load(Ordering::Acquire) > 0 {
                    this.cork.client_eof.store(true, Ordering::Release);
                    // hyper polls the waiting request next (its dispatcher writes after it
                    // reads), which tells JS; the wake-up makes sure of a poll.
                    cx.waker().wake_by_ref();
                    return this.end_after_answers(cx);
                }
            }
            if let Some(strict) = this.strict.as_mut() {
                let mut violation = strict.scan(tbuf.filled());
                if strict.stopped() {
                    let replay_left = !this.replay.is_empty();
                    let (read, direct) = (&mut this.read, &mut this.direct);
                    violation = take_bodies(strict, &mut tbuf, read, direct, replay_left, &this.cork);
                }
                let heads = strict.take_heads();
                if heads != 0 {
                    let read = &this.cork.heads_read;
                    read.store(read.load(Ordering::Relaxed).wrapping_add(heads), Ordering::Relaxed);
                }
                // An end of stream hyper gets ends the watch; a body still coming is hyper's
                // to read.
                let watch_ok = !tbuf.filled().is_empty()
                    && violation.is_none()
                    && strict.between_requests()
                    && this.direct.is_none();
                this.cork.watch_ok.store(watch_ok, Ordering::Relaxed);
                if let Some(at) = violation {
                    // hyper gets what precedes the violation, then a NUL and the end of a
                    // head: a parse error it answers with 400 (see `h1_strict`).
                    tbuf.set_filled(at);
                    let mark = b"\0\r\n\r\n";
                    tbuf.put_slice(&mark[..mark.len().min(tbuf.remaining())]);
                }
            }
            tbuf.filled().len()
        };
        // SAFETY: the first `n` bytes were initialized above.
        unsafe { buf.advance(n) };
        this.cork.activity.store(true, Ordering::Relaxed);
        this.cork.read_since_write.store(true, Ordering::Relaxed);
        Poll::Ready(Ok(()))
    }
}

/// After `Strict::scan` stopped at a head whose body is to be read past hyper
/// (`Strict::take_direct`): takes that body out of the bytes hyper gets (direct.rs), and
/// scans the rest of the read. The length's digits become zeros, the part of the body in
/// this read goes aside, the bytes after it move up, and when some of the body is still to
/// come the read half is lent to it (`direct`) until it has been read. One body at a time,
/// and none while protocol selection's bytes are still to come: the scanner then takes the
/// body as hyper's. Returns the violation the scan found, as `Strict::scan`.
#[cold]
#[inline(never)]
fn take_bodies(
    strict: &mut Strict,
    tbuf: &mut ReadBuf<'_>,
    read: &mut Option<ReadHalf>,
    direct: &mut Option<Arc<crate::direct::DirectShared>>,
    replay_left: bool,
    cork: &Arc<Cork>,
) -> Option<usize> {
    let mut from = 0;
    while let Some(d) = strict.take_direct() {
        // `d`'s positions are in the bytes that scan saw, from `from` on.
        let (body_at, digits_at) = (from + d.body_at, from + d.digits_at);
        from = body_at;
        if replay_left || cork.direct_waiting.load(Ordering::Relaxed) {
            strict.keep_body(d.length);
        } else {
            let filled = tbuf.filled_mut();
            let digits: Box<[u8]> = filled[digits_at..digits_at + d.digits].into();
            filled[digits_at..digits_at + d.digits].fill(b'0');
            let len = filled.len();
            let part = ((len - body_at) as u64).min(d.length) as usize;
            let aside = Bytes::copy_from_slice(&filled[body_at..body_at + part]);
            filled.copy_within(body_at + part.., body_at);
            tbuf.set_filled(len - part);
            let head_no = cork.heads_read.load(Ordering::Relaxed).wrapping_add(d.heads);
            let lend = (part as u64) < d.length;
            let read = if lend { read.take() } else { None };
            let shared = crate::direct::DirectShared::new(head_no, d.length, &digits, aside, read);
            if lend {
                *direct = Some(shared.clone());
            }
            *cork.direct.lock().unwrap_or_else(|p| p.into_inner()) = Some(shared);
            cork.direct_waiting.store(true, Ordering::Relaxed);
        }
        if let Some(v) = strict.scan(&tbuf.filled()[from..]) {
            return Some(v + from);
        }
    }
    None
}

impl CorkedStream {
    /// Puts back bytes read from the socket but not consumed, to be read first.
    /// Hands the read half over (a WebSocket takes the connection), with the bytes read
    /// and not consumed, to be read first: `read_buf` (hyper's), then what hyper had not
    /// read yet of the rewound bytes and the replay.
    pub fn into_reader(mut self, read_buf: Bytes) -> Option<(ReadHalf, Bytes)> {
        let read = self.read.take()?;
        let mut first = bytes::BytesMut::from(&read_buf[..]);
        if let Some(r) = self.rewound.take() {
            first.extend_from_slice(&r);
        }
        first.extend_from_slice(&self.replay);
        Some((read, first.freeze()))
    }

    pub fn rewind(&mut self, bytes: Bytes) {
        if bytes.is_empty() {
            return;
        }
        // Bytes rewound before and not read yet come after these (the fast path's reads
        // may have taken part of them).
        self.rewound = Some(match self.rewound.take() {
            Some(rest) => {
                let mut both = bytes::BytesMut::with_capacity(bytes.len() + rest.len());
                both.extend_from_slice(&bytes);
                both.extend_from_slice(&rest);
                both.freeze()
            }
            None => bytes,
        });
    }

    /// For an idle connection whose hyper state is released: between two requests the
    /// framing scanner holds nothing worth keeping, so it goes too. Its box is small, but
    /// kept it left much more behind: 10,000 idle connections held 7.7 KiB each with it,
    /// 3.8 KiB without (`node scripts/idle-memory.mjs`), as if each pinned heap pages the
    /// released buffers would otherwise have given back.
    pub fn park_scanner(&mut self) {
        if self.strict.as_ref().is_some_and(|s| s.between_requests()) {
            self.strict = None;
            self.strict_parked = true;
        }
    }

    /// Whether `readable` can wait for the socket without reading it (not over TLS).
    pub fn can_wait_readable(&self) -> bool {
        let waker = std::task::Waker::noop();
        self.read.as_ref().is_some_and(|r| r.poll_readable(&mut Context::from_waker(waker)).is_some())
    }

    /// Resolves when the socket has something to read (or has closed); holds no buffer.
    pub async fn readable(&mut self) {
        if self.rewound.is_some() || !self.replay.is_empty() {
            return;
        }
        // Polled below with the task's own waker, which replaces `read_wake` in the socket's
        // registration: the next read asks the socket.
        self.cork.read_waits.store(false, Ordering::Relaxed);
        let Some(read) = self.read.as_mut() else { return };
        std::future::poll_fn(move |cx| match read.poll_readable(cx) {
            Some(p) => p.map(|_| ()),
            None => Poll::Pending,
        })
        .await
    }

    /// After a half-close: end of stream once nothing is being answered, else wait.
    fn end_after_answers(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.cork.answering() {
            return Poll::Ready(Ok(()));
        }
        *self.cork.eof_reader.lock().unwrap_or_else(|p| p.into_inner()) = Some(cx.waker().clone());
        // Re-checked: an answer may have finished before the waker was stored.
        if !self.cork.answering() {
            return Poll::Ready(Ok(()));
        }
        Poll::Pending
    }
}

impl hyper::rt::Write for CorkedStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[IoSlice::new(data)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = self.write_through_cork(cx, bufs);
        self.cork.write_blocked.store(r.is_pending(), Ordering::Relaxed);
        r
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // HTTP/1.1 flushes are deferred to `Cork::after_poll`; HTTP/2 writes through.
        if self.cork.passthrough.load(Ordering::Relaxed) {
            let mut side = self.cork.side();
            ready!(side.poll_drain(cx))?;
            return Pin::new(&mut side.half).poll_flush(cx);
        }
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut side = self.cork.side();
        ready!(side.poll_drain(cx))?;
        Pin::new(&mut side.half).poll_shutdown(cx)
    }
}

impl CorkedStream {
    /// Every request head read from the socket so far has been handed over by hyper: no
    /// pipelined request waits in hyper's read buffer, so nothing would be gathered with
    /// what hyper writes now. (A head still coming in is not answered before the socket is
    /// read again, after which `after_poll` writes anyway.) False once `h1_strict` stopped
    /// following the framing. Nor does any other request of the connection wait on JS: the
    /// fast path hands pipelined requests over together (`fast_h1::Ahead`), and their
    /// answers are gathered as they come.
    fn nothing_pipelined(&self) -> bool {
        self.write_direct
            && self.strict.as_ref().is_some_and(|s| s.following())
            && self.cork.heads_read.load(Ordering::Relaxed) == self.cork.handed.load(Ordering::Relaxed)
            && self.cork.in_flight.load(Ordering::Relaxed) == 0
    }

    fn write_through_cork(&self, cx: &mut Context<'_>, bufs: &[IoSlice<'_>]) -> Poll<io::Result<usize>> {
        self.cork.activity.store(true, Ordering::Relaxed);
        self.cork.read_since_write.store(false, Ordering::Relaxed);
        let mut side = self.cork.side();
        // A response with nothing pipelined behind it and nothing corked before it goes to
        // the socket now, from hyper's buffers: the flush after the poll would write it
        // alone anyway, after a copy into the write buffer and a second lock (GET /json:
        // the write path 1,164 -> 981 instructions a request).
        if side.buf.is_empty() && self.nothing_pipelined() {
            let r = write_flat(self.cork.fd.load(Ordering::Relaxed), &mut side.half, cx, bufs);
            // Over TLS, records the socket had no room for wait in the TLS half: hyper's
            // flushes of HTTP/1.1 being deferred, the flush after the poll sends them.
            if side.half.holds_output() {
                self.cork.unflushed.store(true, Ordering::Relaxed);
            }
            return r;
        }
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        self.cork.unflushed.store(true, Ordering::Relaxed);
        let passthrough = self.cork.passthrough.load(Ordering::Relaxed);
        if !passthrough && side.buf.len() + total <= CORK_LIMIT {
            for b in bufs {
                side.buf.extend_from_slice(b);
            }
            return Poll::Ready(Ok(total));
        }
        // Too much to hold, or write-through: what is buffered goes first, in order.
        ready!(side.poll_drain(cx))?;
        if !passthrough && total <= CORK_LIMIT {
            for b in bufs {
                side.buf.extend_from_slice(b);
            }
            return Poll::Ready(Ok(total));
        }
        Pin::new(&mut side.half).poll_write_vectored(cx, bufs)
    }
}

/// Up to this much of a write of several slices is copied into one buffer on the stack
/// for a TCP socket (`write_flat`): a small response's head and body.
const FLAT_WRITE: usize = 1024;

/// Writes `bufs` as `poll_write_vectored` does; to a TCP socket (`Cork::fd`), as one
/// `send` of a copy where all of them fit `FLAT_WRITE` (a larger write goes out as it is: one
/// `writev`, not a `send` of part). The kernel's `writev` of a response's head and body took
/// about 0.24 us more a call than a `send` of the same bytes in one buffer (the iovec
/// array's copy and checks, the VFS write path). Not over TLS, where the slices become
/// records in user space before any syscall.
fn write_flat(fd: i32, half: &mut WriteHalf, cx: &mut Context<'_>, bufs: &[IoSlice<'_>]) -> Poll<io::Result<usize>> {
    let mut space = [std::mem::MaybeUninit::uninit(); FLAT_WRITE];
    let flat = if fd >= 0 { gather(bufs, &mut space) } else { None };
    let Some(flat) = flat else { return Pin::new(half).poll_write_vectored(cx, bufs) };
    // A `send` of its own, as a WebSocket's (websocket.rs, `write_framed`): tokio's write
    // would first look at the socket's readiness (a cold line at every response under load)
    // and count the task's budget. A full socket is left to tokio's write, which finds it
    // full and registers the task for room.
    // SAFETY: `fd` is the socket `half` owns (`Cork::fd`, read under the lock that holds
    // `half`), and `flat` is initialized memory of `flat.len()` bytes.
    let sent = unsafe { libc::send(fd, flat.as_ptr().cast(), flat.len(), libc::MSG_NOSIGNAL) };
    if sent >= 0 {
        return Poll::Ready(Ok(sent as usize));
    }
    let e = io::Error::last_os_error();
    if !matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) {
        return Poll::Ready(Err(e));
    }
    Pin::new(half).poll_write(cx, flat)
}

/// Several slices of `N` bytes or less in all, copied one after the other into `space`,
/// for a writer where one buffer costs less than a vectored write of the slices (a TCP
/// socket's `send`, rustls' `write`). `None` for one slice or more bytes, which go to the
/// writer as they are.
pub(crate) fn gather<'a, const N: usize>(
    bufs: &[IoSlice<'_>],
    space: &'a mut [std::mem::MaybeUninit<u8>; N],
) -> Option<&'a [u8]> {
    if bufs.len() < 2 {
        return None;
    }
    let total: usize = bufs.iter().map(|b| b.len()).sum();
    if total > N {
        return None;
    }
    let mut at = 0;
    for b in bufs {
        // SAFETY: `at + b.len()` is at most `total`, which fits in `space`; the slices are
        // the caller's, not `space`.
        unsafe { std::ptr::copy_nonoverlapping(b.as_ptr(), space.as_mut_ptr().add(at).cast::<u8>(), b.len()) };
        at += b.len();
    }
    // SAFETY: the first `total` bytes of `space` were written above.
    Some(unsafe { std::slice::from_raw_parts(space.as_ptr().cast::<u8>(), total) })
}

/// Counts a streamed response body while hyper writes it (see `Cork::streaming`).
pub struct StreamingGuard(Arc<Cork>);

impl StreamingGuard {
    pub fn new(cork: Arc<Cork>) -> Self {
        cork.streaming.fetch_add(1, Ordering::Relaxed);
        StreamingGuard(cork)
    }
}

impl Drop for StreamingGuard {
    fn drop(&mut self) {
        self.0.streaming.fetch_sub(1, Ordering::Release);
        self.0.answered();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    /// A small response's head and body sent by `write_flat` to a socket with no room: its
    /// own `send` finds the socket full, and tokio's write waits for room (Pending, the task
    /// woken once the client reads); then all of it goes out, after what was there before.
    #[tokio::test]
    async fn a_flat_write_to_a_full_socket_waits_for_room() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = tokio::net::TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let (_read, write) = server.into_split();
        let mut half: WriteHalf = Box::new(write);
        let fd = half.plain_socket().map(|s| s.as_raw_fd()).unwrap();
        // Fill the socket (and the client's receive buffer) while the client reads nothing.
        let block = vec![7u8; 64 * 1024];
        let mut filled = 0;
        loop {
            match half.plain_socket().unwrap().send_with_flags(&block, libc::MSG_NOSIGNAL) {
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("filling the socket: {e}"),
            }
        }
        let (head, body) = (b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n".to_vec(), b"hello".to_vec());
        let bufs = [IoSlice::new(&head), IoSlice::new(&body)];
        let polled = write_flat(fd, &mut half, &mut Context::from_waker(Waker::noop()), &bufs);
        assert!(polled.is_pending(), "a write to a full socket: {polled:?}");
        let reader = tokio::spawn(async move {
            let mut client = client;
            let mut all = Vec::new();
            client.read_to_end(&mut all).await.map(|_| all)
        });
        let n = std::future::poll_fn(|cx| write_flat(fd, &mut half, cx, &bufs)).await.unwrap();
        assert_eq!(n, head.len() + body.len());
        drop(half);
        drop(_read);
        let all = reader.await.unwrap().unwrap();
        assert_eq!(all.len(), filled + n);
        assert!(all[..filled].iter().all(|&b| b == 7));
        assert_eq!(&all[filled..], [&head[..], &body[..]].concat());
    }
    struct Count(std::sync::atomic::AtomicUsize);

    impl std::task::Wake for Count {
        fn wake(self: Arc<Self>) {
            self.wake_by_ref();
        }

        fn wake_by_ref(self: &Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A loopback client and the server's end of it, corked as a plain HTTP/1.1 connection.
    async fn corked_pair() -> (tokio::net::TcpStream, CorkedStream, Arc<Cork>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = tokio::net::TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let doorbell = Arc::new(crate::bridge::Doorbell::new());
        let (io, cork) = Cork::new(server, false, &[], doorbell, Arc::new(crate::stats::Stats::new()));
        (client, io, cork)
    }

    /// Whether `count` was woken within two seconds.
    async fn woken(count: &Count) -> bool {
        for _ in 0..2000 {
            if count.0.load(Ordering::Relaxed) > 0 {
                return true;
            }
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        false
    }

    /// hyper's read of a plain TCP socket: Pending with the read waker (`READ_WAKE`)
    /// registered, and Pending again without asking the socket until that waker is woken;
    /// the client's bytes wake it and the next read gets them. Dropped, the stream and the
    /// cork are freed: the socket's registration holds the read waker, which must not hold
    /// the cork that owns the socket (a guard for a waker that keeps its flag in the cork).
    #[tokio::test]
    async fn a_read_waits_for_the_socket_then_reads_and_the_cork_is_freed() {
        let (mut client, mut io, cork) = corked_pair().await;
        let count = Arc::new(Count(Default::default()));
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        let mut space = [std::mem::MaybeUninit::<u8>::uninit(); 256];
        let mut read = |cx: &mut Context<'_>| {
            let mut buf = hyper::rt::ReadBuf::uninit(&mut space);
            let polled = hyper::rt::Read::poll_read(Pin::new(&mut io), cx, buf.unfilled());
            polled.map(|r| r.map(|()| buf.filled().to_vec()))
        };
        assert!(read(&mut cx).is_pending());
        assert!(read(&mut cx).is_pending());
        let head = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        tokio::io::AsyncWriteExt::write_all(&mut client, head).await.unwrap();
        assert!(woken(&count).await, "the task was not woken");
        match read(&mut cx) {
            Poll::Ready(Ok(got)) => assert_eq!(got, head),
            other => panic!("the read after the wake-up: {other:?}"),
        }
        let weak = Arc::downgrade(&cork);
        drop((io, cork));
        assert!(weak.upgrade().is_none(), "the cork outlived its stream");
    }

    /// The read waker wakes the waker the connection's task had at its first read (kept in
    /// the cork). A read polled with another waker (the task's changed) must register that
    /// one: the client's bytes wake it, not the first, and the read after gets them. Then
    /// the first waker's reads go through the read waker again.
    #[tokio::test]
    async fn a_read_with_another_waker_is_woken_through_that_waker() {
        let (mut client, mut io, _cork) = corked_pair().await;
        let first = Arc::new(Count(Default::default()));
        let other = Arc::new(Count(Default::default()));
        let (first_waker, other_waker) = (Waker::from(first.clone()), Waker::from(other.clone()));
        let mut space = [std::mem::MaybeUninit::<u8>::uninit(); 256];
        let mut read = |waker: &Waker| {
            let mut buf = hyper::rt::ReadBuf::uninit(&mut space);
            let polled = hyper::rt::Read::poll_read(Pin::new(&mut io), &mut Context::from_waker(waker), buf.unfilled());
            polled.map(|r| r.map(|()| buf.filled().to_vec()))
        };
        assert!(read(&first_waker).is_pending());
        assert!(read(&other_waker).is_pending());
        let head = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        tokio::io::AsyncWriteExt::write_all(&mut client, head).await.unwrap();
        assert!(woken(&other).await, "the other waker was not woken");
        match read(&other_waker) {
            Poll::Ready(Ok(got)) => assert_eq!(got, head),
            other => panic!("the read after the wake-up: {other:?}"),
        }
        // Back to the first waker: Pending with the read waker, which the next bytes wake.
        assert!(read(&first_waker).is_pending());
        first.0.store(0, Ordering::Relaxed);
        tokio::io::AsyncWriteExt::write_all(&mut client, head).await.unwrap();
        assert!(woken(&first).await, "the first waker was not woken");
        match read(&first_waker) {
            Poll::Ready(Ok(got)) => assert_eq!(got, head),
            other => panic!("the second read after the wake-up: {other:?}"),
        }
    }
}
