//! Request bodies of declared length read from the socket by their reader, past hyper.
//!
//! hyper 1 reads a body into its own read buffer, which then grows to the body's size (up
//! to 128 KiB a connection), and the reader copies it out of there into the JS Buffer. For
//! a plain TCP HTTP/1.1 head with one `Content-Length` over `PRECOLLECT_LIMIT` (and up to
//! `COLLECT_RESERVE_MAX`), no `Transfer-Encoding` and no `Expect`, the read layer
//! (`CorkedStream::poll_read`) instead tells hyper the request has no body (the length's
//! digits overwritten with zeros of the same width, so nothing moves), sets aside the part
//! of the body that came with the head, and lends the socket's read half to the body
//! (`DirectBody`) until all of it has been read: the reader reads it into the JS Buffer
//! with `recv`, and hyper reads only the next head (docs/network-thread.md, "Large request
//! bodies, round twenty-one").

use crate::cork::{Cork, ReadHalf};
use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use tokio::io::{AsyncRead, ReadBuf};

/// One direct body, shared by the read layer (hyper's side) and the body (the reader's).
pub(crate) struct DirectShared {
    /// The head's number on its connection (`Cork::heads_read` once it was counted), which
    /// the request hyper hands over with it has in `Cork::handed`.
    pub(crate) head_no: u32,
    /// The length the client declared, and its digits as sent (JS gets them as they were).
    pub(crate) length: u64,
    pub(crate) digits: Box<[u8]>,
    state: Mutex<DirectState>,
}

struct DirectState {
    /// Bytes of the body that came with the head, not yet taken.
    aside: Bytes,
    /// Bytes of the body still in the socket.
    in_socket: u64,
    /// The read half, lent while `in_socket` is not 0 (or until hyper takes it back).
    read: Option<ReadHalf>,
    /// hyper's read, waiting for the read half.
    hyper: Option<Waker>,
    /// The body's reader, waiting on the socket (woken when the connection lets go).
    reader: Option<Waker>,
    /// The connection let go of the stream (`CorkedStream` dropped).
    closed: bool,
    /// The body was dropped before its end (the request went away unread, or was refused):
    /// as hyper with a body it no longer has to read, the connection ends after the answer.
    gone: bool,
    /// The socket ended or failed mid-body.
    failed: bool,
    /// Bytes the body's last read took from the socket after the body (`SPARE`): the next
    /// request's, for hyper's next read.
    after: Box<[u8]>,
}

impl DirectShared {
    pub(crate) fn new(
        head_no: u32,
        length: u64,
        digits: &[u8],
        aside: Bytes,
        read: Option<ReadHalf>,
    ) -> Arc<DirectShared> {
        let in_socket = length - aside.len() as u64;
        Arc::new(DirectShared {
            head_no,
            length,
            digits: digits.into(),
            state: Mutex::new(DirectState {
                aside,
                in_socket,
                read: if in_socket > 0 { read } else { None },
                hyper: None,
                reader: None,
                closed: false,
                gone: false,
                failed: false,
                after: Box::default(),
            }),
        })
    }

    fn state(&self) -> MutexGuard<'_, DirectState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// hyper's read, while the read half is lent: the half back once the body has been read
    /// (`Ready(Some)`, with the bytes read after the body, for hyper), the end of the stream
    /// once the body went unread or the socket failed (`Ready(None)`: the half is then taken
    /// back too, into `read`), else Pending until one of them.
    pub(crate) fn take_back(&self, cx: &mut Context<'_>, read: &mut Option<ReadHalf>) -> Poll<Option<Box<[u8]>>> {
        let mut st = self.state();
        if st.in_socket == 0 && !st.failed {
            *read = st.read.take();
            return Poll::Ready(Some(std::mem::take(&mut st.after)));
        }
        if st.gone || st.failed {
            *read = st.read.take();
            return Poll::Ready(None);
        }
        if !st.hyper.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            st.hyper = Some(cx.waker().clone());
        }
        Poll::Pending
    }

    /// The connection let go of the stream: the read half (for the lingering close), and a
    /// reader still waiting fails.
    pub(crate) fn close(&self) -> Option<ReadHalf> {
        let mut st = self.state();
        st.closed = true;
        if let Some(w) = st.reader.take() {
            w.wake();
        }
        st.read.take()
    }
}

/// A request body read past hyper (see the module comment). Dropped before its end, the
/// connection ends after the answer, as it does when hyper's body is dropped.
pub struct DirectBody {
    shared: Arc<DirectShared>,
    cork: Arc<Cork>,
    /// Bytes given out so far.
    seen: u64,
}

impl DirectBody {
    pub(crate) fn new(shared: Arc<DirectShared>, cork: Arc<Cork>) -> DirectBody {
        DirectBody { shared, cork, seen: 0 }
    }

    /// The `Content-Length` value as the client sent it.
    pub fn declared(&self) -> http::HeaderValue {
        http::HeaderValue::from_bytes(&self.shared.digits)
            .unwrap_or_else(|_| http::HeaderValue::from(self.shared.length))
    }

    /// Reads the next bytes into `dst` (what has come: the part set aside first, then one
    /// read of the socket). `Ready(Ok(0))` at the end; an error when the socket ended or
    /// failed before it, or the connection let go.
    pub fn poll_read_into(&mut self, cx: &mut Context<'_>, dst: &mut ReadBuf<'_>) -> Poll<Result<usize, BodyFailed>> {
        let mut st = self.shared.state();
        if !st.aside.is_empty() {
            let n = st.aside.len().min(dst.remaining());
            dst.put_slice(&st.aside.split_to(n));
            self.seen += n as u64;
            return Poll::Ready(Ok(n));
        }
        if st.in_socket == 0 {
            return Poll::Ready(Ok(0));
        }
        if st.closed || st.failed {
            return Poll::Ready(Err(BodyFailed));
        }
        let want = (st.in_socket.min(dst.remaining() as u64)) as usize;
        if want == 0 {
            return Poll::Ready(Ok(0));
        }
        let end = want as u64 == st.in_socket;
        let Some(read) = st.read.as_mut() else { return Poll::Ready(Err(BodyFailed)) };
        // The socket's one read waker is this reader's now: hyper's next read (or the watch)
        // must ask the socket again, not trust the state its last registration left.
        self.cork.socket_read_elsewhere();
        let mut limited = dst.take(want);
        // The body's end: read with room past it, so that a read that stops short shows the
        // socket empty (`read_past`), and hyper's next read waits for the client instead of
        // asking the socket. What fills the room is the next request's.
        let mut spare = [MaybeUninit::uninit(); SPARE];
        let past = match end {
            true => read.poll_read_past(cx, &mut limited, &mut spare),
            false => None,
        };
        let (polled, more) = match past {
            Some(Poll::Ready(Ok(more))) => (Poll::Ready(Ok(())), more),
            Some(Poll::Ready(Err(e))) => (Poll::Ready(Err(e)), 0),
            Some(Poll::Pending) => (Poll::Pending, 0),
            None => (Pin::new(read).poll_read(cx, &mut limited), 0),
        };
        let n = limited.filled().len();
        match polled {
            Poll::Pending => {
                if !st.reader.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    st.reader = Some(cx.waker().clone());
                }
                Poll::Pending
            }
            Poll::Ready(Ok(())) if n > 0 => {
                // SAFETY: `take` handed the read a view of `dst`'s unfilled part; the `n`
                // bytes it filled there are initialized.
                unsafe { dst.assume_init(n) };
                dst.advance(n);
                st.in_socket -= n as u64;
                self.seen += n as u64;
                self.cork.body_bytes_read();
                if st.in_socket == 0 {
                    if more > 0 {
                        // SAFETY: the read initialized the first `more` bytes of `spare`.
                        let more = unsafe { std::slice::from_raw_parts(spare.as_ptr().cast::<u8>(), more) };
                        st.after = more.into();
                    }
                    // The rest of the stream is hyper's again. Under the lock: hyper's read
                    // takes the half back only after this, so its own settings of the watch
                    // come after these.
                    self.cork.direct_done(more > 0);
                    if let Some(w) = st.hyper.take() {
                        w.wake();
                    }
                }
                Poll::Ready(Ok(n))
            }
            _ => {
                st.failed = true;
                if let Some(w) = st.hyper.take() {
                    w.wake();
                }
                Poll::Ready(Err(BodyFailed))
            }
        }
    }
}

impl Drop for DirectBody {
    fn drop(&mut self) {
        let mut st = self.shared.state();
        if st.in_socket > 0 {
            st.gone = true;
            if let Some(w) = st.hyper.take() {
                w.wake();
            }
        }
    }
}

/// A direct body ended before its declared length.
#[derive(Debug)]
pub struct BodyFailed;

impl std::fmt::Display for BodyFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("request body ended early")
    }
}

impl std::error::Error for BodyFailed {}

/// The room past a body's end in its last read (`poll_read_past`): a request's head, mostly.
const SPARE: usize = 2048;

/// The most a direct body's stream read (`ReadMode::Stream`) takes at once.
const STREAM_READ: u64 = 64 * 1024;

/// A request body still on the wire: hyper's, or one read past it.
pub enum Source {
    Hyper(Incoming),
    /// Boxed: it is rare, and the size of every request's record follows this enum's.
    Direct(Box<DirectBody>),
}

impl Body for Source {
    type Data = Bytes;
    type Error = BodyFailed;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyFailed>>> {
        match self.get_mut() {
            Source::Hyper(i) => Pin::new(i).poll_frame(cx).map(|f| f.map(|r| r.map_err(|_| BodyFailed))),
            Source::Direct(d) => {
                let left = d.shared.length - d.seen;
                if left == 0 {
                    return Poll::Ready(None);
                }
                let mut buf = BytesMut::with_capacity(left.min(STREAM_READ) as usize);
                let spare = buf.spare_capacity_mut();
                let mut rb = ReadBuf::uninit(spare);
                match std::task::ready!(d.poll_read_into(cx, &mut rb)) {
                    Ok(0) => Poll::Ready(Some(Err(BodyFailed))),
                    Ok(n) => {
                        // SAFETY: `n` bytes of the spare capacity were filled.
                        unsafe { buf.set_len(n) };
                        Poll::Ready(Some(Ok(Frame::data(buf.freeze()))))
                    }
                    Err(e) => Poll::Ready(Some(Err(e))),
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Source::Hyper(i) => i.is_end_stream(),
            Source::Direct(d) => d.seen == d.shared.length,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Source::Hyper(i) => i.size_hint(),
            Source::Direct(d) => SizeHint::with_exact(d.shared.length),
        }
    }
}
// A request's record and `Admitted` hold a `Source` where they held an `Incoming`: no larger.
const _: () = assert!(std::mem::size_of::<Source>() == std::mem::size_of::<Incoming>());
