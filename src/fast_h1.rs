//! The fast HTTP/1.1 path (issue 16): plain requests read and answered past hyper.
//!
//! An HTTP/1.1 connection starts here (`connection::serve`), over plain TCP or over TLS
//! (ALPN `http/1.1` or none; issue 14). Each complete head in the read buffer is parsed in
//! place (httparse, as hyper parses it); a simple one (HTTP/1.1 with one `Host` or HTTP/1.0
//! with at most one, an origin-form target of plain bytes, no `Transfer-Encoding` or
//! `Upgrade`, at most one `Expect`, `100-continue`, in 1.1 only, a `Connection` of visible
//! ASCII, and no body or one `Content-Length`) goes to JS as hyper's would
//! (`connection::hand_over`: the same event, counts, 503 and deadline, the TLS session's
//! client certificate, an `https://` URL over TLS), and its answer is encoded here, byte for
//! byte as hyper encodes it (the differential test, `test/fast-h1.test.mjs`); to HTTP/1.0 in
//! 1.0, with `connection: keep-alive` when the connection persists (only when asked for) and
//! a streamed body close-delimited.
//!
//! A body up to `PRECOLLECT_LIMIT` is read here first, from the bytes read with the head,
//! then the socket, and JS gets it whole (`RequestBody::Full`), as `connection::handle`
//! collects one from hyper: the same 413 over `maxBodySize`, 408 when the listener's timeout
//! passes mid-body, 400 when the stream ends mid-body. `Expect: 100-continue` with a body
//! (RFC 9110 10.1.1): `HTTP/1.1 100 Continue` goes out before the body is read, as hyper's
//! path writes it when `collect_small` first polls the body (even when all of it came with
//! the head), and not before a 413.
//!
//! Any other head, one that does not parse included, goes to hyper with the bytes not
//! consumed rewound, after the answers before it (they are in the cork's buffer already, so
//! order is kept), and the connection stays with hyper: its refusals (400, 414, 431, 505),
//! chunked bodies, bodies over `PRECOLLECT_LIMIT` (read past hyper by direct.rs, or
//! streamed by hyper), and an expectation other than `100-continue` (which hyper ignores)
//! stay hyper's. Bodies over `PRECOLLECT_LIMIT` were taken here once (round twenty-eight,
//! claimed from direct.rs as `connection::admit` claims them): fewer instructions, but more
//! page faults and a higher peak in the in-thread echo of 100 KiB bodies, so not kept
//! (docs/network-thread.md, "Round twenty-eight: large and `Expect` bodies").
//!
//! Reads and writes go through the same `CorkedStream` as hyper's (the framing scanner, the
//! write gathering), and the connection is polled by the same `drive` (timers, the watch of
//! a client that leaves, graceful shutdown). Over TLS the socket's readiness says nothing
//! of what its records hold (an end of the stream, an alert), so there is no watch: the
//! stream is read on while a request is out, as hyper's own read does there (`read_out`).
//!
//! Pipelined requests (RFC 9112 9.3.2) are read ahead: while an answer is awaited, the
//! complete heads already read with their whole bodies (no `Expect`) go to JS at once, up to
//! `PIPELINE_DEPTH` requests a connection (`Ahead`), so that async handlers run side by side;
//! their answers are written in request order, one that is ready waiting for those before it.
//! Nothing is read past a request that ends the connection, nor while it drains; any other
//! head waits until every answer before it is out, then is taken as without pipelining (a
//! head hyper takes, a body still coming, `Expect`).
//! `FETCH_RS_H1_FAST=0` turns it off.

use crate::body::ResponseBody;
use crate::bridge::{Given, RequestBody};
use crate::connection::{hand_over, Answer, Handover, InFlightCount, ServerShared, MAX_URI_LEN};
use crate::cork::{Cork, CorkedStream};
use crate::options::PRECOLLECT_LIMIT;
use crate::request::HeadText;
use crate::target::AuthorityCache;
use bytes::{Buf, Bytes, BytesMut};
use http::StatusCode;
use http_body::Body;
use std::future::Future;
use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

/// Whether new servers take plain HTTP/1.1 requests here: on unless `FETCH_RS_H1_FAST=0`
/// (read when a server starts).
pub fn enabled() -> bool {
    std::env::var_os("FETCH_RS_H1_FAST").is_none_or(|v| v != "0")
}

/// Header fields a head may have, as hyper's parse (its default, 100); more goes to hyper.
const MAX_HEADERS: usize = 100;

/// Room kept free in the read buffer before a read.
const READ_ROOM: usize = 4096;
/// What the read buffer grows by.
const READ_GROW: usize = 8192;

/// Requests of one connection with JS at once, the one whose answer is awaited included:
/// 16, the depth of common pipelining clients and of the benchmark (`bench/run.mjs
/// --modes=pipelined`), so that a write of 16 heads goes to JS in one batch. It bounds what a
/// client can make the server hold: 15 requests and their answers beyond the one in order
/// (the rest stays in the read buffer, which grows only while no complete head is in it).
const PIPELINE_DEPTH: usize = 16;

/// One HTTP/1.1 connection on the fast path: a future that `drive` polls as it
/// polls hyper's connection. It ends (`Ok`) when the connection is done, or with
/// `handed_over` set when hyper is to take it on from its unconsumed bytes.
pub(crate) struct FastH1 {
    io: CorkedStream,
    buf: BytesMut,
    shared: Arc<ServerShared>,
    cork: Arc<Cork>,
    remote: SocketAddr,
    /// The TLS session (its client certificate goes with each request); None on plain TCP.
    tls: Option<Arc<crate::tls::Session>>,
    authorities: AuthorityCache,
    step: Step,
    /// The request whose body is being read (`Step::Body`). Apart from the step, and boxed:
    /// most bodies come with their heads, and in the step it made each change of step (a
    /// drop of the step left) an out-of-line call.
    body: Option<Box<BodyRead>>,
    out: Out,
    /// A graceful shutdown was asked for: no request is taken after the one in progress,
    /// whose answer (if not begun) says `connection: close`.
    draining: bool,
    /// A read while a request was out found the end of the stream after part of a head:
    /// `read_out` reads no more (the next head's read finds the end again).
    read_ended: bool,
    /// The connection is hyper's from here (`into_parts`).
    pub handed_over: bool,
    /// `buf`'s length when the read-ahead last stopped at a head it could not take yet (a
    /// partial head, a body still coming, one for hyper): not parsed again until `buf`
    /// changes.
    ahead_stop: usize,
    /// Pipelined requests taken after the one awaited (`read_ahead`), in order; made at the
    /// first (most connections never pipeline).
    ahead: Option<Box<Ahead>>,
}

/// Requests with JS behind the one awaited (`Step::Waiting`), oldest first. While it holds
/// any, it holds a count of the connection's requests in flight (`Cork::in_flight_add`) as
/// their answers do while they wait: answers that came early and wait their turn keep the
/// connection from looking idle or between requests (`Cork::awaiting_head`), and the
/// answers written before them gathered in the cork (`Cork::nothing_pipelined`).
struct Ahead {
    slots: std::collections::VecDeque<Slot>,
    cork: Arc<Cork>,
}

/// A request taken ahead: its answer, awaited or come.
struct Slot {
    answer: Answer,
    given: Option<Given>,
    head: bool,
    keep_alive: bool,
    http10: bool,
}

impl Ahead {
    fn push(&mut self, slot: Slot) {
        if self.slots.is_empty() {
            self.cork.in_flight_add(1);
        }
        self.slots.push_back(slot);
    }

    fn pop(&mut self) -> Option<Slot> {
        let slot = self.slots.pop_front()?;
        if self.slots.is_empty() {
            self.cork.in_flight_add(usize::MAX);
        }
        Some(slot)
    }
}

impl Drop for Ahead {
    fn drop(&mut self) {
        // The slots' own answers, dropped after this, tell JS the client left.
        if !self.slots.is_empty() {
            self.cork.in_flight_add(usize::MAX);
        }
    }
}

enum Step {
    /// Between requests: parsing what was read, reading more.
    Reading,
    /// A request's body is being read (`FastH1::body`) before JS gets the request.
    Body,
    /// A request is with JS (or answered without it); `http10`: it came as HTTP/1.0.
    Waiting { answer: Answer, head: bool, keep_alive: bool, http10: bool },
    /// The answer is being written: `out`, then the streamed body's chunks, if any.
    Writing { stream: Option<ResponseBody>, last: bool },
}

/// A request whose body is still coming (`Step::Body`): its head as JS is to get it, and the
/// body so far.
struct BodyRead {
    started: u64,
    method: http::Method,
    text: HeadText,
    is_head: bool,
    keep_alive: bool,
    http10: bool,
    /// Holds the request among the connection's in flight while its body comes, as hyper's
    /// path does from the head on (no `headerTimeout` meanwhile).
    count: InFlightCount,
    body: BytesMut,
    length: usize,
    /// The listener's timeout, from the head: it bounds the wait for the body too.
    limit: crate::deadline::Limit,
    /// `100 Continue` is still to be written before the body is read (`Expect`).
    expect: bool,
}

/// The interim answer to `Expect: 100-continue`, as hyper writes it (also to HTTP/1.0's
/// `Expect`, which hyper ignores and the fast path leaves to it).
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// What a declared length reserves before any of the body has come after its head: a client
/// that declares 64 KiB and sends nothing holds this much, not 64 KiB (as
/// `connection::collect_small`).
const BODY_FIRST_RESERVE: usize = 16 * 1024;

impl FastH1 {
    pub(crate) fn new(
        io: CorkedStream,
        cork: Arc<Cork>,
        shared: Arc<ServerShared>,
        remote: SocketAddr,
        tls: Option<Arc<crate::tls::Session>>,
    ) -> Self {
        FastH1 {
            io,
            buf: BytesMut::new(),
            shared,
            cork,
            remote,
            tls,
            authorities: AuthorityCache::default(),
            step: Step::Reading,
            body: None,
            out: Out::default(),
            draining: false,
            read_ended: false,
            handed_over: false,
            ahead_stop: 0,
            ahead: None,
        }
    }

    /// The stream, with the bytes read and not consumed put back to be read first.
    pub(crate) fn into_io(self) -> CorkedStream {
        let FastH1 { mut io, buf, .. } = self;
        io.rewind(buf.freeze());
        io
    }

    /// A graceful shutdown (`drive`): as hyper's, the connection closes now when no
    /// request is in progress, else after its answer.
    pub(crate) fn graceful_shutdown(&mut self) {
        self.draining = true;
    }

    fn poll_read(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.buf.capacity() - self.buf.len() < READ_ROOM {
            self.buf.reserve(READ_GROW);
        }
        read_into(&mut self.io, cx, &mut self.buf, usize::MAX)
    }

    /// Over TLS, while a request is out or its answer is being written: the stream is read
    /// on into `buf`, as hyper's own read does there (`half_close` off, `with_tls`), so that
    /// the end of the stream or a fatal alert is seen now. Through `CorkedStream::poll_read`,
    /// as hyper's: a close_notify between requests while one waits on JS is a half-close
    /// (its `request.signal` aborts at the waiting request's next poll, the answer still
    /// goes out); an error (a socket's end without close_notify, a reset, an alert) ends the
    /// connection, and the waiting request, dropped, tells JS the client left; the end while
    /// only an answer is being written ends it too. Pipelined bytes wait in `buf`; no read
    /// once a whole head waits there (its answer would be gathered with this one's, and the
    /// read would flush this one alone, `Cork::after_poll`) or once more than
    /// `maxHeaderSize` is held, so that a client cannot make it hold more (hyper reads there
    /// only while its read buffer is empty: at most one read, up to 8 KiB at first). Plain
    /// TCP is never read here: `drive` watches its socket (`Cork::watch`). Always Pending
    /// unless the connection ends.
    fn read_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.cork.watches() {
            return Poll::Pending;
        }
        while !self.read_ended && self.buf.len() <= self.shared.config.max_header_size && self.cork.no_head_waiting() {
            match self.poll_read(cx) {
                Poll::Pending => break,
                // A half-close between requests with one waiting is held back by the stream
                // (Pending); the end with only an answer being written: the client left.
                Poll::Ready(Ok(0)) if self.buf.is_empty() && matches!(self.step, Step::Writing { .. }) => {
                    return Poll::Ready(Ok(()));
                }
                // After part of a head: that head's read finds the end again.
                Poll::Ready(Ok(0)) => self.read_ended = true,
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            }
        }
        Poll::Pending
    }

    /// Hands a parsed request to JS, as `connection::admit` and `handle` do for hyper's: at
    /// once without a body or with all of it read already, else once its body is in
    /// (`Step::Body`).
    fn take(&mut self, head: Head) {
        if let Some(Slot { answer, head, keep_alive, http10, .. }) = self.hand(head) {
            self.step = Step::Waiting { answer, head, keep_alive, http10 };
        }
    }

    /// `take`'s work: the request with JS, as its slot; None when its body is to be read
    /// first or it is over `maxBodySize` (`wait_for_body` set the step). A request read
    /// ahead (`read_ahead`) always has its whole body in `buf`, so it gets a slot.
    #[inline(always)]
    fn hand(&mut self, head: Head) -> Option<Slot> {
        let shared = &*self.shared;
        let started = self.cork.now_in(&shared.doorbell.round);
        shared.stats.request_received();
        let count = InFlightCount::new(self.cork.clone(), shared);
        self.buf.advance(head.len);
        let length = head.length as usize;
        let body = if length == 0 {
            RequestBody::None
        } else if head.length <= shared.config.max_body_size && self.buf.len() >= length && !head.expect {
            // Copied out (most bodies are small): a slice would keep the whole read buffer
            // for as long as JS holds the request.
            let body = Bytes::copy_from_slice(&self.buf[..length]);
            self.buf.advance(length);
            RequestBody::Full(body)
        } else {
            self.wait_for_body(head, started, count);
            return None;
        };
        let Head { method, is_head, keep_alive, http10, text, .. } = head;
        let handover = Handover { started, method, text, websocket: None, body, http2: false };
        let answer = hand_over(handover, self.remote, self.tls.as_ref(), shared, count);
        Some(Slot { answer, given: None, head: is_head, keep_alive, http10 })
    }

    /// While the answer awaited has not come (`keeps`: its request lets the connection
    /// persist), or one is being written (None): the pipelined requests read already go to
    /// JS (`read_ahead`), those taken ahead are polled (so that a reply, a timeout or a
    /// half-close of theirs is seen now), and over TLS the stream is read on (`read_out`),
    /// which may bring more heads to take.
    #[inline(always)]
    fn wait(&mut self, cx: &mut Context<'_>, keeps: Option<bool>) -> Poll<io::Result<()>> {
        loop {
            if let Some(keeps) = keeps {
                if !self.draining && !self.buf.is_empty() && self.buf.len() != self.ahead_stop {
                    self.read_ahead(keeps);
                }
            }
            if self.ahead.is_some() {
                self.poll_ahead(cx);
            }
            if keeps.is_some() && !self.buf.is_empty() {
                self.cork.answer_awaited();
            }
            let before = self.buf.len();
            let polled = self.read_out(cx);
            if polled.is_ready() || keeps.is_none() || self.buf.len() == before {
                return polled;
            }
        }
    }

    /// Takes the pipelined requests whose heads and whole bodies are read already, behind
    /// the one awaited (`keeps`: whether it lets the connection persist), up to
    /// `PIPELINE_DEPTH` in all, as `take` would take each in its turn. It stops at a request
    /// that ends the connection (hyper reads nothing past it either), and at a head it does
    /// not take now: one that is partial, hyper's, with its body still coming or owed a
    /// `100 Continue`, or over `maxBodySize` (its 413 may end the connection); that head is
    /// taken in its turn, once every answer before it is out.
    #[inline(never)]
    fn read_ahead(&mut self, keeps: bool) {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        loop {
            let (queued, last_keeps) = match self.ahead.as_deref() {
                Some(a) => (a.slots.len(), a.slots.back().map_or(keeps, |s| s.keep_alive)),
                None => (0, keeps),
            };
            if !last_keeps || queued + 1 >= PIPELINE_DEPTH || self.buf.is_empty() {
                return;
            }
            // Where `hand_over` would answer 503 (too many wait for JS), the request is not
            // taken ahead: it waits its turn in the buffer, as it would without pipelining,
            // and is looked at again at the next poll (`ahead_stop` is left as it is).
            if self.shared.stats.pending_requests() >= self.shared.config.max_pending_requests as u64 {
                return;
            }
            let head = match parse(&self.buf, scheme, &self.shared, &mut self.authorities) {
                Parsed::Take(head)
                    if head.length == 0
                        || (!head.expect
                            && head.length <= self.shared.config.max_body_size
                            && self.buf.len() - head.len >= head.length as usize) =>
                {
                    head
                }
                _ => {
                    self.ahead_stop = self.buf.len();
                    return;
                }
            };
            // `parse`'s test above is `hand`'s for a body in hand, so a slot always comes.
            let Some(slot) = self.hand(head) else { return };
            let cork = &self.cork;
            let ahead = self.ahead.get_or_insert_with(|| {
                let slots = std::collections::VecDeque::with_capacity(PIPELINE_DEPTH - 1);
                Box::new(Ahead { slots, cork: cork.clone() })
            });
            ahead.push(slot);
        }
    }

    /// Polls the answers of the requests taken ahead that have not come yet.
    #[inline(never)]
    fn poll_ahead(&mut self, cx: &mut Context<'_>) {
        let Some(ahead) = self.ahead.as_deref_mut() else { return };
        for slot in ahead.slots.iter_mut().filter(|s| s.given.is_none()) {
            if let Poll::Ready(given) = slot.answer.poll_given(cx) {
                slot.given = Some(given);
            }
        }
    }

    /// No request taken ahead waits for its answer's turn.
    fn ahead_empty(&self) -> bool {
        self.ahead.as_ref().is_none_or(|a| a.slots.is_empty())
    }

    /// The answer written, the next request's turn: the first taken ahead (its answer
    /// written at once if it came), else the next head's.
    fn next_turn(&mut self) {
        let Some(Slot { answer, given, head, keep_alive, http10 }) = self.ahead.as_deref_mut().and_then(Ahead::pop)
        else {
            self.step = Step::Reading;
            return;
        };
        match given {
            Some(given) => {
                let keep_alive = keep_alive && !(self.draining && self.ahead_empty());
                self.respond(given, head, keep_alive, http10);
            }
            None => self.step = Step::Waiting { answer, head, keep_alive, http10 },
        }
    }

    /// A request whose body is over `maxBodySize` (413), or still coming or owed a `100
    /// Continue` (`Step::Body`).
    #[inline(never)]
    fn wait_for_body(&mut self, head: Head, started: u64, count: InFlightCount) {
        let Head { method, is_head, keep_alive, http10, text, length, expect, .. } = head;
        let length = length as usize;
        if length as u64 > self.shared.config.max_body_size {
            tracing::debug!(remote = %self.remote, length, "request body over maxBodySize: 413");
            // As hyper, whose body goes unread (and which owes no `100 Continue` then): what
            // its read buffer holds of the body is consumed, and the connection goes on when
            // that is all of it (hyper's `poll_drain_or_close_read`); else it ends after the
            // answer.
            let drained = self.buf.len() >= length;
            if drained {
                self.buf.advance(length);
            }
            let answer = Answer::Now(Some((Box::new(crate::response::status_only(413)), count)));
            self.step = Step::Waiting { answer, head: is_head, keep_alive: keep_alive && drained, http10 };
            return;
        }
        let reserve = if self.buf.is_empty() { length.min(BODY_FIRST_RESERVE) } else { length };
        let mut body = BytesMut::with_capacity(reserve);
        // All of it may be here when only the `100 Continue` held it back.
        let here = self.buf.len().min(length);
        body.extend_from_slice(&self.buf[..here]);
        self.buf.advance(here);
        if expect {
            // Written first in `poll_body` (the last answer is out: the step was `Reading`).
            self.out.head.clear();
            self.out.head.extend_from_slice(CONTINUE);
            self.out.at = 0;
        }
        let limit = crate::deadline::Limit::new(started, self.shared.config.request_timeout);
        let read = BodyRead { started, method, text, is_head, keep_alive, http10, count, body, length, limit, expect };
        self.body = Some(Box::new(read));
        self.step = Step::Body;
    }

    /// Reads the rest of a request's body (`Step::Body`), straight into its buffer: no more
    /// than the body, so that the next head is read as any other. Once it is in, JS gets the
    /// request; when the listener's timeout passes first, the answer is a 408 that ends the
    /// connection, and when the stream ends first, a 400 (as hyper's path answers each).
    // Out of line: the poll of a request without a body stays as it was.
    #[inline(never)]
    fn poll_body(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Some(read) = self.body.as_mut() else { return Poll::Ready(Ok(())) };
        if read.expect {
            // As hyper's path, where reading the body asks for it (`Expect: 100-continue`,
            // RFC 9110 10.1.1): the interim answer goes out before the body is read, even
            // when all of it came already; the final one follows it on the stream.
            ready!(self.out.poll_write(&mut self.io, cx))?;
            read.expect = false;
        }
        let ended = loop {
            let want = read.length - read.body.len();
            if want == 0 {
                break None;
            }
            if read.body.capacity() == read.body.len() {
                // Bytes came: room for the rest of the declared length.
                read.body.reserve(want);
            }
            match read_into(&mut self.io, cx, &mut read.body, want) {
                Poll::Pending => {
                    ready!(read.limit.poll_passed(&self.cork, cx));
                    tracing::debug!(remote = %self.remote, "request body not received within the timeout: 408");
                    break Some(crate::connection::closing(408));
                }
                Poll::Ready(Ok(0)) => {
                    // hyper's answer says nothing of the connection; the next read finds the end.
                    tracing::debug!(remote = %self.remote, "the stream ended mid-body: 400");
                    break Some(crate::response::status_only(400));
                }
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            }
        };
        let Some(read) = self.body.take() else { return Poll::Ready(Ok(())) };
        let BodyRead { started, method, text, is_head, keep_alive, http10, count, body, .. } = *read;
        let answer = match ended {
            None => {
                let body = RequestBody::Full(body.freeze());
                let handover = Handover { started, method, text, websocket: None, body, http2: false };
                hand_over(handover, self.remote, self.tls.as_ref(), &self.shared, count)
            }
            // As hyper's: the request leaves the counts as its answer is taken, before it is
            // written.
            Some(reply) => Answer::Now(Some((Box::new(reply), count))),
        };
        self.step = Step::Waiting { answer, head: is_head, keep_alive, http10 };
        Poll::Ready(Ok(()))
    }

    /// Encodes the answer's head (and a full body) into `out`, as hyper 1.x's server role
    /// does (`proto::h1::role::Server::encode` with its connection's keep-alive, after
    /// `Conn::enforce_version`, which answers an HTTP/1.0 request in 1.0), and moves to
    /// writing it.
    fn respond(&mut self, given: Given, head_req: bool, keep_alive: bool, http10: bool) {
        // A reply given without a header list (most) is encoded from its status and
        // content-type code as `response::plain`'s map would be (its one field first): no
        // header map is filled here to be read back at once.
        // A reply with a header list that `response::listed` took is written from the list.
        let (status, ct, map, list, body) = match given {
            Given::Plain { status, ct, body } => (status, ct, None, None, body),
            Given::Full(reply) => {
                let (parts, body) = reply.into_parts();
                (parts.status, crate::wire::CT_NONE, Some(parts.headers), None, body)
            }
            Given::Listed { status, list, body } => (status, crate::wire::CT_NONE, None, Some(list), body),
        };
        let no_length = status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED;
        let bodyless = head_req || no_length;
        // hyper's `BodyLength`: None for a body at its end, else known or not.
        let length = match &body {
            ResponseBody::Empty | ResponseBody::Full(None) => None,
            ResponseBody::Full(Some(b)) => Some(Some(b.len() as u64)),
            ResponseBody::Stream(_) => Some(None),
        };
        let out = &mut self.out.head;
        out.clear();
        if status == StatusCode::OK && !http10 {
            out.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
        } else {
            out.extend_from_slice(if http10 { b"HTTP/1.0 " } else { b"HTTP/1.1 " });
            out.extend_from_slice(status.as_str().as_bytes());
            out.push(b' ');
            out.extend_from_slice(status.canonical_reason().unwrap_or("<none>").as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        let mut last = !keep_alive;
        let mut wrote_len = false;
        let mut wrote_date = false;
        let mut saw_connection = false;
        if let Some(v) = crate::wire::content_type(ct) {
            line(out, b"content-type", v.as_bytes());
        }
        // A full reply's fields, in its map's order.
        let fields = map.iter().flat_map(|m| m.keys().map(move |name| (name, m)));
        for (name, map) in fields {
            let mut values = map.get_all(name).iter();
            match *name {
                http::header::CONTENT_LENGTH => {
                    // `response::build` keeps one only for HEAD without a body; as hyper, the
                    // first value is written unless there is no body and the request is no
                    // HEAD.
                    if length.is_none() && !head_req {
                        continue;
                    }
                    if let Some(v) = values.next() {
                        line(out, b"content-length", v.as_bytes());
                        wrote_len = true;
                    }
                }
                http::header::TRANSFER_ENCODING => {
                    // Framing is this encoder's (`build` drops a coding JS set).
                }
                http::header::CONNECTION => {
                    saw_connection = true;
                    out.extend_from_slice(b"connection: ");
                    let (mut any_close, mut any_keep_alive) = (false, false);
                    for (i, v) in values.enumerate() {
                        if i > 0 {
                            out.extend_from_slice(b", ");
                        }
                        out.extend_from_slice(v.as_bytes());
                        any_close |= has_token(v.as_bytes(), b"close");
                        any_keep_alive |= has_token(v.as_bytes(), b"keep-alive");
                    }
                    // hyper says what it does with the connection where the version's default
                    // differs: `keep-alive` to HTTP/1.0 (even beside a `close`), `close` to 1.1.
                    if http10 {
                        if keep_alive && !any_keep_alive {
                            out.extend_from_slice(b", keep-alive");
                        }
                    } else if !keep_alive && !any_close {
                        out.extend_from_slice(b", close");
                    }
                    last |= any_close;
                    out.extend_from_slice(b"\r\n");
                }
                http::header::TRAILER => {
                    // As hyper, only where a chunked body could follow: not to HTTP/1.0.
                    if bodyless || http10 {
                        continue;
                    }
                    joined_line(out, b"trailer", values.map(|v| v.as_bytes()));
                }
                _ => {
                    wrote_date |= *name == http::header::DATE;
                    for v in values {
                        line(out, name.as_str().as_bytes(), v.as_bytes());
                    }
                }
            }
        }
        // A listed reply's fields: each name's together already, as in a map, and no
        // length, coding or connection field among them (`response::listed`), so only
        // `trailer` and `date` are written apart, as a map's are above.
        if let Some(list) = &list {
            let mut fields = list.fields().peekable();
            while let Some((name, value)) = fields.next() {
                if name == b"trailer" {
                    let values = std::iter::once(value)
                        .chain(std::iter::from_fn(|| fields.next_if(|(n, _)| *n == b"trailer").map(|(_, v)| v)));
                    if bodyless || http10 {
                        values.for_each(drop);
                        continue;
                    }
                    joined_line(out, b"trailer", values);
                    continue;
                }
                wrote_date |= name == b"date";
                line(out, name, value);
            }
        }
        // hyper adds it last (a new entry of the map).
        if !saw_connection {
            if http10 && keep_alive {
                out.extend_from_slice(b"connection: keep-alive\r\n");
            } else if !http10 && !keep_alive {
                out.extend_from_slice(b"connection: close\r\n");
            }
        }
        let mut chunked = false;
        let mut close_delimited = false;
        if !wrote_len {
            match length {
                Some(None) if bodyless => {}
                Some(None) if http10 => {
                    // RFC 9112 6.3: no chunked coding to a 1.0 client; the body ends with the
                    // connection, whatever the head said of it (as hyper).
                    close_delimited = true;
                    last = true;
                }
                Some(None) => {
                    out.extend_from_slice(b"transfer-encoding: chunked\r\n");
                    chunked = true;
                }
                None | Some(Some(0)) => {
                    if !no_length && !head_req {
                        out.extend_from_slice(b"content-length: 0\r\n");
                    }
                }
                Some(Some(n)) => {
                    if !no_length {
                        let mut digits = itoa::Buffer::new();
                        line(out, b"content-length", digits.format(n).as_bytes());
                    }
                }
            }
        }
        if wrote_date {
            out.extend_from_slice(b"\r\n");
        } else {
            out.extend_from_slice(b"date: ");
            out.extend_from_slice(&date());
            out.extend_from_slice(b"\r\n\r\n");
        }
        // Its map, emptied, becomes another response's (`response::keep_map`).
        if let Some(map) = map {
            crate::response::keep_map(map);
        }
        self.out.at = 0;
        self.out.close_delimited = close_delimited;
        let stream = match body {
            ResponseBody::Full(Some(b)) if !bodyless => {
                self.out.body = b;
                None
            }
            // As hyper, a streamed body is polled only where it is sent; else it is dropped
            // (JS is told its stream was cut off).
            b @ ResponseBody::Stream(_) if chunked || close_delimited => Some(b),
            _ => None,
        };
        self.step = Step::Writing { stream, last };
    }
}

/// One read of `io` into `buf`'s spare capacity, of at most `max` bytes.
fn read_into(io: &mut CorkedStream, cx: &mut Context<'_>, buf: &mut BytesMut, max: usize) -> Poll<io::Result<usize>> {
    let spare = buf.spare_capacity_mut();
    let room = spare.len().min(max);
    let mut rb = hyper::rt::ReadBuf::uninit(&mut spare[..room]);
    ready!(hyper::rt::Read::poll_read(Pin::new(io), cx, rb.unfilled()))?;
    let n = rb.filled().len();
    // SAFETY: the read initialized the first `n` bytes of the spare capacity.
    unsafe { buf.set_len(buf.len() + n) };
    Poll::Ready(Ok(n))
}

/// `name: value\r\n`.
fn line(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// `name: v1, v2, ...\r\n`: a field's values on one line, as hyper writes a map's `Trailer`.
fn joined_line<'a>(out: &mut Vec<u8>, name: &[u8], values: impl Iterator<Item = &'a [u8]>) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    for (i, v) in values.enumerate() {
        if i > 0 {
            out.extend_from_slice(b", ");
        }
        out.extend_from_slice(v);
    }
    out.extend_from_slice(b"\r\n");
}

/// Whether a `Connection` value names `token` among its options.
fn has_token(value: &[u8], token: &[u8]) -> bool {
    value.split(|&b| b == b',').any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

/// Whether a field value is all visible ASCII, spaces and tabs (`HeaderValue::to_str`): hyper
/// finds no option in a `Connection` value that is not.
fn visible(value: &[u8]) -> bool {
    value.iter().all(|&b| b == b'\t' || (0x20..0x7f).contains(&b))
}

impl Future for FastH1 {
    type Output = io::Result<()>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            match &mut this.step {
                Step::Reading => {
                    if this.draining {
                        return Poll::Ready(Ok(()));
                    }
                    if !this.buf.is_empty() {
                        let scheme = if this.tls.is_some() { "https" } else { "http" };
                        match parse(&this.buf, scheme, &this.shared, &mut this.authorities) {
                            Parsed::Take(head) => {
                                this.take(head);
                                continue;
                            }
                            Parsed::Hyper => {
                                tracing::debug!(remote = %this.remote, "a head the fast path does not take: hyper takes the connection on");
                                this.handed_over = true;
                                return Poll::Ready(Ok(()));
                            }
                            Parsed::Partial => {}
                        }
                    }
                    match ready!(this.poll_read(cx)) {
                        // The end of the stream: with part of a head read, hyper answers it
                        // as it would (it reads the end too).
                        Ok(0) => {
                            this.handed_over = !this.buf.is_empty();
                            return Poll::Ready(Ok(()));
                        }
                        Ok(_) => {}
                        Err(e) => return Poll::Ready(Err(e)),
                    }
                }
                Step::Body => ready!(this.poll_body(cx))?,
                Step::Waiting { answer, head, keep_alive, http10 } => {
                    let Poll::Ready(given) = answer.poll_given(cx) else {
                        let keeps = *keep_alive;
                        return this.wait(cx, Some(keeps));
                    };
                    // Draining: the last of the requests with JS says the connection closes.
                    let closing = this.draining && this.ahead.as_ref().is_none_or(|a| a.slots.is_empty());
                    let (head, keep_alive, http10) = (*head, *keep_alive && !closing, *http10);
                    this.respond(given, head, keep_alive, http10);
                }
                Step::Writing { stream, last } => {
                    if this.out.poll_write(&mut this.io, cx)?.is_pending() {
                        return this.wait(cx, None);
                    }
                    if let Some(body) = stream {
                        let Poll::Ready(frame) = Pin::new(&mut *body).poll_frame(cx) else {
                            return this.wait(cx, None);
                        };
                        match frame {
                            Some(Ok(frame)) => {
                                // Empty chunks are skipped, as hyper does (one would end the body).
                                if let Ok(data) = frame.into_data() {
                                    if !data.is_empty() {
                                        this.out.chunk(data);
                                    }
                                }
                            }
                            // The stream failed: the connection ends without the last chunk,
                            // so that the client sees a cut body.
                            Some(Err(e)) => return Poll::Ready(Err(io::Error::other(e))),
                            None => {
                                *stream = None;
                                this.out.head.clear();
                                if !this.out.close_delimited {
                                    this.out.head.extend_from_slice(b"0\r\n\r\n");
                                }
                                this.out.at = 0;
                            }
                        }
                        continue;
                    }
                    // A close ends the connection with the requests taken ahead (JS is told
                    // the client left), as one the answer's own `connection: close` asked for.
                    if *last || (this.draining && this.ahead_empty()) {
                        return Poll::Ready(Ok(()));
                    }
                    this.next_turn();
                }
            }
        }
    }
}

/// What is left to write of an answer: a head (or a chunk's size line), a body, a tail.
#[derive(Default)]
struct Out {
    head: Vec<u8>,
    at: usize,
    body: Bytes,
    tail: &'static [u8],
    /// The streamed body goes out as it is, ended by the connection's end (HTTP/1.0).
    close_delimited: bool,
}

impl Out {
    /// A chunk of a streamed body.
    fn chunk(&mut self, data: Bytes) {
        use std::io::Write;
        self.head.clear();
        self.at = 0;
        self.body = data;
        if self.close_delimited {
            self.tail = b"";
            return;
        }
        let _ = write!(self.head, "{:X}\r\n", self.body.len());
        self.tail = b"\r\n";
    }

    fn poll_write(&mut self, io: &mut CorkedStream, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            let parts: [&[u8]; 3] = [&self.head[self.at..], &self.body, self.tail];
            let mut slices = [IoSlice::new(&[]); 3];
            let mut n = 0;
            for p in parts {
                if !p.is_empty() {
                    slices[n] = IoSlice::new(p);
                    n += 1;
                }
            }
            if n == 0 {
                return Poll::Ready(Ok(()));
            }
            let wrote = ready!(hyper::rt::Write::poll_write_vectored(Pin::new(&mut *io), cx, &slices[..n]))?;
            if wrote == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            let mut left = wrote;
            let from_head = left.min(self.head.len() - self.at);
            self.at += from_head;
            left -= from_head;
            let from_body = left.min(self.body.len());
            self.body.advance(from_body);
            left -= from_body;
            self.tail = &self.tail[left.min(self.tail.len())..];
        }
    }
}

/// A head taken on the fast path.
struct Head {
    /// Its bytes, up to and with the empty line.
    len: usize,
    method: http::Method,
    is_head: bool,
    keep_alive: bool,
    /// HTTP/1.0: answered in 1.0, a streamed body close-delimited.
    http10: bool,
    text: HeadText,
    /// The body's declared length (at most `PRECOLLECT_LIMIT`; 0: none).
    length: u64,
    /// `Expect: 100-continue` with a body to come: `100 Continue` is owed before it is read.
    expect: bool,
}

enum Parsed {
    Take(Head),
    /// No complete head yet.
    Partial,
    /// hyper's to parse and answer.
    Hyper,
}

/// Bytes a target may have on the fast path: RFC 3986's `pchar`, `/` and `?` (each one
/// `http::Uri` takes as it is). Anything else (a fragment, bytes it refuses or the URL
/// parser would encode differently) goes to hyper.
const TARGET_OK: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
                    | b':'
                    | b'@'
                    | b'/'
                    | b'?'
                    | b'%'
            );
        b += 1;
    }
    t
};

/// Parses the head at the start of `buf`, as hyper would, and decides whether it is
/// taken here (see the module's comment).
fn parse(buf: &[u8], scheme: &str, shared: &ServerShared, authorities: &mut AuthorityCache) -> Parsed {
    let max_header_size = shared.config.max_header_size;
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let len = match httparse::ParserConfig::default().parse_request_with_uninit_headers(&mut req, buf, &mut slots) {
        Ok(httparse::Status::Complete(len)) => len,
        // hyper reads a longer head before it refuses it (414, 431): it is hyper's.
        Ok(httparse::Status::Partial) if buf.len() <= max_header_size => return Parsed::Partial,
        _ => return Parsed::Hyper,
    };
    // httparse takes HTTP/1.0 and 1.1 only.
    let (Some(method), Some(target), Some(version)) = (req.method, req.path, req.version) else { return Parsed::Hyper };
    let http10 = version == 0;
    if len > max_header_size || target.len() > MAX_URI_LEN || !target.starts_with('/') {
        return Parsed::Hyper;
    }
    if !target.bytes().all(|b| TARGET_OK[b as usize]) {
        return Parsed::Hyper;
    }
    let is_head = method == "HEAD";
    let without_length = is_head || method == "GET";
    let mut length = 0;
    let mut expects = 0;
    let Ok(method) = http::Method::from_bytes(method.as_bytes()) else { return Parsed::Hyper };
    if method == http::Method::CONNECT {
        return Parsed::Hyper;
    }
    let mut host: Option<&[u8]> = None;
    let mut hosts = 0;
    let mut lengths = 0;
    let (mut close, mut asked_keep_alive) = (false, false);
    let mut field_bytes = 0;
    for h in req.headers.iter() {
        let (name, value) = (h.name.as_bytes(), h.value);
        field_bytes += name.len() + value.len();
        match name.len() {
            4 if name.eq_ignore_ascii_case(b"host") => {
                hosts += 1;
                host = Some(value);
            }
            6 if name.eq_ignore_ascii_case(b"expect") => {
                // RFC 9110 10.1.1: `100-continue` (case-insensitive, as hyper compares it) in
                // HTTP/1.1; any other expectation, a repeat, or one in 1.0 (which hyper
                // ignores) is hyper's.
                if http10 || !value.eq_ignore_ascii_case(b"100-continue") {
                    return Parsed::Hyper;
                }
                expects += 1;
            }
            7 if name.eq_ignore_ascii_case(b"upgrade") => return Parsed::Hyper,
            10 if name.eq_ignore_ascii_case(b"connection") => {
                // hyper finds no option in a value with other bytes (`HeaderValue::to_str`);
                // such a head is left to it.
                if !visible(value) {
                    return Parsed::Hyper;
                }
                close |= has_token(value, b"close");
                asked_keep_alive |= http10 && has_token(value, b"keep-alive");
            }
            14 if name.eq_ignore_ascii_case(b"content-length") => {
                let Some(n) = declared_length(value) else { return Parsed::Hyper };
                length = n;
                lengths += 1;
            }
            17 if name.eq_ignore_ascii_case(b"transfer-encoding") => return Parsed::Hyper,
            _ => {}
        }
    }
    // RFC 9112 3.2: exactly one Host in 1.1, none or one in 1.0 (its URL is then made from
    // the bound address, as hyper's path makes it; more than one is hyper's); `maxHeaderSize`
    // for the fields (431 from hyper's path); a method other than GET and HEAD only with an
    // explicit length; a body that JS gets whole (a larger one is read past hyper, direct.rs,
    // or streamed); one `Expect`.
    let fields = req.headers.len();
    if hosts > 1
        || (hosts == 0 && !http10)
        || expects > 1
        || lengths > 1
        || (!without_length && lengths == 0)
        || length > PRECOLLECT_LIMIT
        || field_bytes + 4 * fields > max_header_size
    {
        return Parsed::Hyper;
    }
    let (path, query) = match memchr::memchr(b'?', target.as_bytes()) {
        Some(q) => (&target.as_bytes()[..q], Some(&target.as_bytes()[q + 1..])),
        None => (target.as_bytes(), None),
    };
    let mut bytes = Vec::with_capacity(
        scheme.len() + 3 + host.map_or(0, <[u8]>::len) + target.len() + field_bytes + 2 * fields + 8,
    );
    if crate::target::write_origin_url(scheme, host, &shared.local, path, query, authorities, &mut bytes).is_err() {
        return Parsed::Hyper;
    }
    let url_len = bytes.len();
    write_fields(req.headers, &mut bytes);
    // RFC 9112 9.3: a 1.1 connection persists unless `close`; a 1.0 one only with `keep-alive`
    // (RFC 7230 A.1.2) and without `close` (hyper's parse).
    let keep_alive = !close && (!http10 || asked_keep_alive);
    // hyper answers `100 Continue` only where a body is to come (RFC 9110 10.1.1).
    let expect = expects == 1 && length > 0;
    let text = HeadText { bytes, url_len };
    Parsed::Take(Head { len, method, is_head, keep_alive, http10, text, length, expect })
}

/// A `Content-Length` value the fast path takes: plain digits (RFC 9110 8.6), no leading
/// zero, short enough not to overflow. Anything else, a list and the zeros that stand for a
/// body read past hyper (direct.rs) included, is hyper's to judge.
fn declared_length(value: &[u8]) -> Option<u64> {
    let plain = !value.is_empty() && value.len() <= 10 && value.iter().all(u8::is_ascii_digit);
    if !plain || (value[0] == b'0' && value.len() > 1) {
        return None;
    }
    Some(value.iter().fold(0, |n, d| n * 10 + u64::from(d - b'0')))
}

/// The header fields as `request::head_text` writes hyper's: `name\nvalue` joined by `\n`,
/// names lowercased, in the order of a `HeaderMap` (each name's values together, names in
/// the order they first came).
fn write_fields(headers: &[httparse::Header<'_>], out: &mut Vec<u8>) {
    let mut first = true;
    let mut put = |h: &httparse::Header<'_>, out: &mut Vec<u8>| {
        if !std::mem::take(&mut first) {
            out.push(b'\n');
        }
        // Copied, then lowercased in place, rather than pushed a byte at a time through
        // `extend` (a check of the capacity per byte).
        let start = out.len();
        out.extend_from_slice(h.name.as_bytes());
        out[start..].make_ascii_lowercase();
        out.push(b'\n');
        out.extend_from_slice(h.value);
    };
    for (i, h) in headers.iter().enumerate() {
        let same = |o: &httparse::Header<'_>| o.name.eq_ignore_ascii_case(h.name);
        if headers[..i].iter().any(same) {
            continue;
        }
        put(h, out);
        for later in headers[i + 1..].iter().filter(|o| same(o)) {
            put(later, out);
        }
    }
}

thread_local! {
    /// The `Date` of this second, as written (`date`).
    static DATE: std::cell::Cell<(u64, [u8; 29])> = const { std::cell::Cell::new((u64::MAX, [0; 29])) };
}

/// The current time as an IMF-fixdate (RFC 9110 5.6.7), made once a second per thread.
fn date() -> [u8; 29] {
    let now = crate::clock::unix_seconds();
    DATE.with(|d| {
        let (second, text) = d.get();
        if second == now {
            return text;
        }
        let text = crate::imf_date::imf_fixdate(now);
        d.set((now, text));
        text
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bridge::{Doorbell, Event};
    use crate::options::{NativeOptions, ServerConfig};
    use tokio::io::AsyncWriteExt;

    /// Sends `input` to a fast-path connection over a loopback socket and polls it until JS
    /// got a request or it let go of the connection: the request's body as JS got it (None:
    /// no request), and whether hyper was to take the connection.
    async fn first_request(input: &[u8]) -> (Option<RequestBody>, bool) {
        let (_phase_tx, phase) = tokio::sync::watch::channel(crate::connection::Phase::Running);
        let config = ServerConfig::from_options(&NativeOptions::default()).unwrap();
        let doorbell = Arc::new(Doorbell::new());
        let stats = Arc::new(crate::stats::Stats::new());
        let shared =
            Arc::new(ServerShared::new(doorbell.clone(), stats.clone(), config, phase, "127.0.0.1:1".to_string()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = tokio::net::TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (stream, remote) = listener.accept().await.unwrap();
        let (io, cork) = crate::cork::Cork::new(stream, false, &[], doorbell.clone(), stats);
        let mut conn = Box::pin(FastH1::new(io, cork, shared, remote, None));
        client.write_all(input).await.unwrap();
        let mut events = Vec::new();
        let polled = tokio::time::timeout(
            std::time::Duration::from_secs(2),
            std::future::poll_fn(|cx| {
                let done = conn.as_mut().poll(cx).is_ready();
                doorbell.take_queued(&mut events);
                match done || !events.is_empty() {
                    true => Poll::Ready(()),
                    false => Poll::Pending,
                }
            }),
        )
        .await;
        assert!(polled.is_ok(), "neither a request nor the end of the connection");
        let body = events.into_iter().find_map(|e| match e {
            Event::Request(mut r) => Some(std::mem::replace(&mut r.body, RequestBody::None)),
            _ => None,
        });
        (body, conn.handed_over)
    }

    /// A fast-path connection over a real socket whose `respond` the encoding tests call.
    struct Encoder {
        conn: FastH1,
        _phase_tx: tokio::sync::watch::Sender<crate::connection::Phase>,
        _client: tokio::net::TcpStream,
    }

    impl Encoder {
        async fn new() -> Encoder {
            let (_phase_tx, phase) = tokio::sync::watch::channel(crate::connection::Phase::Running);
            let config = ServerConfig::from_options(&NativeOptions::default()).unwrap();
            let doorbell = Arc::new(Doorbell::new());
            let stats = Arc::new(crate::stats::Stats::new());
            let shared =
                Arc::new(ServerShared::new(doorbell.clone(), stats.clone(), config, phase, "127.0.0.1:1".into()));
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let _client = tokio::net::TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
            let (stream, remote) = listener.accept().await.unwrap();
            let (io, cork) = crate::cork::Cork::new(stream, false, &[], doorbell, stats);
            Encoder { conn: FastH1::new(io, cork, shared, remote, None), _phase_tx, _client }
        }

        /// The head as encoded, without its `Date` (two encodings may fall in two seconds;
        /// obs-text bytes shown as replacement characters), and the full body.
        fn encode(&mut self, given: Given, head: bool, keep_alive: bool, http10: bool) -> (String, Bytes) {
            let conn = &mut self.conn;
            conn.out.body = Bytes::new();
            conn.respond(given, head, keep_alive, http10);
            let text = String::from_utf8_lossy(&conn.out.head).into_owned();
            let text: Vec<&str> = text.split("\r\n").filter(|l| !l.starts_with("date: ")).collect();
            (text.join("\r\n"), conn.out.body.clone())
        }
    }

    /// A reply given without a header list is encoded from its status and content-type code
    /// (`Given::Plain`) into the same bytes as the response `response::plain` makes of it:
    /// every code, with and without a body, for HEAD, 204 and 304, kept alive or closing,
    /// to HTTP/1.1 and HTTP/1.0 requests.
    #[tokio::test]
    async fn a_plain_reply_is_encoded_as_its_response() {
        use crate::wire::{CT_BYTES, CT_FORM, CT_JSON, CT_NONE, CT_TEXT};
        let mut encoder = Encoder::new().await;
        let mut encode = |given, head, keep_alive, http10| encoder.encode(given, head, keep_alive, http10);
        let body = |i: usize| match i {
            0 => ResponseBody::Empty,
            1 => ResponseBody::Full(None),
            _ => ResponseBody::Full(Some(Bytes::from("{}"))),
        };
        let mut checked = 0;
        for ct in [CT_NONE, CT_TEXT, CT_JSON, CT_BYTES, CT_FORM] {
            for status in [200, 201, 204, 304, 404, 500] {
                let status = StatusCode::from_u16(status).unwrap();
                for i in 0..3 {
                    for (head, keep_alive) in [(false, true), (false, false), (true, true), (true, false)] {
                        for http10 in [false, true] {
                            let plain = Given::Plain { status, ct, body: body(i) };
                            let full = Given::Full(crate::response::plain(status, ct, body(i)));
                            let (a, b) =
                                (encode(plain, head, keep_alive, http10), encode(full, head, keep_alive, http10));
                            assert_eq!(a, b, "status {status}, content type {ct}, body {i}, head {head}, 1.0 {http10}");
                            checked += 1;
                        }
                    }
                }
            }
        }
        assert_eq!(checked, 5 * 6 * 3 * 4 * 2);
    }

    /// A reply given with a list that `response::listed` takes (`Given::Listed`) is encoded
    /// into the same bytes as the response `response::build` makes of the same list: repeated
    /// names, trailers, a date, dropped fields, with and without a body, HEAD, 204 and 304,
    /// kept alive or closing, to HTTP/1.1 and HTTP/1.0 requests.
    #[tokio::test]
    async fn a_listed_reply_is_encoded_as_its_response() {
        let mut encoder = Encoder::new().await;
        let mut encode = |given, head, keep_alive, http10| encoder.encode(given, head, keep_alive, http10);
        let lists: [&[u8]; 9] = [
            b"",
            b"content-type\napplication/json; charset=utf-8\ncache-control\nno-store",
            b"a\n1\nb\n2\na\n3\nset-cookie\nx=1\nset-cookie\ny=2",
            b"trailer\nx-t\nx-a\n1\ntrailer\nx-u",
            b"date\nThu, 01 Jan 1970 00:00:00 GMT\nx-a\ncaf\xe9",
            b"connection\nclose\nkeep-alive\nt=5\nx-a\n1",
            b"transfer-encoding\nchunked\ncontent-length\n9\nx-a\n1",
            b"content-type\ntext/plain\ncontent-type\ntext/html",
            b"x-empty\n\nx-inner\na  b\tc",
        ];
        let body = |i: usize| match i {
            0 => ResponseBody::Empty,
            1 => ResponseBody::Full(None),
            _ => ResponseBody::Full(Some(Bytes::from("{}"))),
        };
        let mut checked = 0;
        for list in lists {
            for status in [200, 204, 304, 404] {
                let status = StatusCode::from_u16(status).unwrap();
                for i in 0..3 {
                    for (head, keep_alive) in [(false, true), (false, false), (true, true), (true, false)] {
                        for http10 in [false, true] {
                            let bodyless = matches!(body(i), ResponseBody::Empty);
                            // A declared length without a body is `build`'s (kept for HEAD, or refused).
                            let Ok(fields) = crate::response::listed(0, list.to_vec(), status, bodyless) else {
                                assert!(list.starts_with(b"transfer-encoding") && bodyless, "{list:?}");
                                continue;
                            };
                            let listed = Given::Listed { status, list: fields, body: body(i) };
                            let packed = crate::response::HeaderList::Packed(list.to_vec());
                            let built = crate::response::build(status.as_u16().into(), 0, Some(&packed), body(i), head);
                            let full = Given::Full(built.unwrap());
                            let (a, b) =
                                (encode(listed, head, keep_alive, http10), encode(full, head, keep_alive, http10));
                            assert_eq!(a, b, "{list:?}, status {status}, body {i}, head {head}, 1.0 {http10}");
                            checked += 1;
                        }
                    }
                }
            }
        }
        assert_eq!(checked, 9 * 4 * 3 * 4 * 2 - 2 * 4 * 2);
    }

    #[tokio::test]
    async fn a_body_of_declared_length_is_read_on_the_fast_path() {
        let (body, handed_over) = first_request(b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello").await;
        assert!(!handed_over);
        assert!(matches!(body, Some(RequestBody::Full(b)) if b == "hello"));
    }

    #[tokio::test]
    async fn an_expected_body_is_read_on_the_fast_path() {
        let input = b"POST /p HTTP/1.1\r\nHost: x\r\nExpect: 100-Continue\r\nContent-Length: 5\r\n\r\nhello";
        let (body, handed_over) = first_request(input).await;
        assert!(!handed_over);
        assert!(matches!(body, Some(RequestBody::Full(b)) if b == "hello"));
        let (body, handed_over) =
            first_request(b"POST /p HTTP/1.1\r\nHost: x\r\nExpect: other\r\nContent-Length: 1\r\n\r\nx").await;
        assert!(handed_over && body.is_none());
    }

    #[tokio::test]
    async fn a_chunked_body_goes_to_hyper() {
        let (body, handed_over) =
            first_request(b"POST /p HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n").await;
        assert!(handed_over && body.is_none());
    }

    #[test]
    fn declared_lengths_the_fast_path_takes() {
        assert_eq!(declared_length(b"0"), Some(0));
        assert_eq!(declared_length(b"65536"), Some(65536));
        for refused in [&b""[..], b"00", b"007", b"1,1", b"+1", b" 1", b"99999999999"] {
            assert_eq!(declared_length(refused), None, "{refused:?}");
        }
    }

    #[test]
    fn fields_come_in_header_map_order() {
        let heads = [
            httparse::Header { name: "Host", value: b"h" },
            httparse::Header { name: "Accept", value: b"a" },
            httparse::Header { name: "X-B", value: b"1" },
            httparse::Header { name: "accept", value: b"b" },
        ];
        let mut out = Vec::new();
        write_fields(&heads, &mut out);
        assert_eq!(out, b"host\nh\naccept\na\naccept\nb\nx-b\n1");
    }

    #[test]
    fn close_is_found_among_options() {
        assert!(has_token(b"keep-alive, Close", b"close"));
        assert!(!has_token(b"closed", b"close"));
        assert!(has_token(b"foo ,\tKeep-Alive", b"keep-alive"));
        assert!(visible(b"a\tb ~") && !visible(b"close, \xff") && !visible(b"a\x7f"));
    }
}
