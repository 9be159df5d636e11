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
//! (it did not read the socket, and a request is waiting on JS).

use hyper_util::rt::TokioIo;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use tokio::io::AsyncWrite;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

/// Buffered bytes above which a write goes to the socket at once: the cork is for
/// small responses; a large body gains nothing from waiting.
const CORK_LIMIT: usize = 64 * 1024;

struct WriteSide {
    half: OwnedWriteHalf,
    buf: Vec<u8>,
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
        Poll::Ready(Ok(()))
    }
}

/// State shared by the socket wrapper (owned by hyper) and the connection task.
pub struct Cork {
    write: Mutex<WriteSide>,
    /// hyper read from the socket since the last check.
    read_called: AtomicBool,
    /// The connection speaks HTTP/2: write through.
    passthrough: AtomicBool,
    /// Requests of this connection waiting on JS.
    pub in_flight: AtomicUsize,
    /// Streamed response bodies of this connection still being written.
    pub streaming: AtomicUsize,
    /// Bytes moved either way since the idle check last looked.
    activity: AtomicBool,
}

impl Cork {
    /// Splits `stream` into the wrapper hyper serves and the handle the task flushes with.
    /// An HTTP/2 connection (`passthrough`) is never corked: its frames for concurrent
    /// streams must not wait on one another.
    pub fn new(stream: TcpStream, passthrough: bool) -> (CorkedStream, Arc<Cork>) {
        let (read, write) = stream.into_split();
        let cork = Arc::new(Cork {
            write: Mutex::new(WriteSide { half: write, buf: Vec::new() }),
            read_called: AtomicBool::new(false),
            passthrough: AtomicBool::new(passthrough),
            in_flight: AtomicUsize::new(0),
            streaming: AtomicUsize::new(0),
            activity: AtomicBool::new(false),
        });
        (CorkedStream { read: TokioIo::new(read), cork: cork.clone() }, cork)
    }

    fn side(&self) -> std::sync::MutexGuard<'_, WriteSide> {
        self.write.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Called by the connection task after each poll of the connection: writes what is
    /// buffered unless hyper is busy with a pipelined request it already had.
    pub fn after_poll(&self, cx: &mut Context<'_>) -> io::Result<()> {
        let read = self.read_called.swap(false, Ordering::Relaxed);
        if !read && self.in_flight.load(Ordering::Relaxed) > 0 && !self.passthrough.load(Ordering::Relaxed) {
            return Ok(());
        }
        match self.side().poll_drain(cx) {
            Poll::Ready(r) => r,
            // The socket is full; the registered wake-up polls the task again.
            Poll::Pending => Ok(()),
        }
    }

    /// Stops corking for good: the connection was upgraded, and what is written to it
    /// from now on (after what is buffered) goes straight out.
    pub fn write_through(&self) {
        self.passthrough.store(true, Ordering::Relaxed);
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

/// The socket as hyper sees it: reads go straight through; writes are buffered until
/// the connection task flushes them.
pub struct CorkedStream {
    read: TokioIo<OwnedReadHalf>,
    cork: Arc<Cork>,
}

impl hyper::rt::Read for CorkedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        self.cork.read_called.store(true, Ordering::Relaxed);
        let r = Pin::new(&mut self.read).poll_read(cx, buf);
        if r.is_ready() {
            self.cork.activity.store(true, Ordering::Relaxed);
        }
        r
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
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        self.cork.activity.store(true, Ordering::Relaxed);
        let mut side = self.cork.side();
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
        self.0.streaming.fetch_sub(1, Ordering::Relaxed);
    }
}
