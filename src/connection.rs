//! One connection: protocol selection, hyper settings, the request hand-off to JS,
//! timeouts and shutdown.

use crate::bridge::{AbortReason, Doorbell, Event, Given, IncomingRequest, Reply, RequestBody, Ticket};
use crate::cork::{Cork, Watched};
use crate::in_thread::NotedExecutor;
use crate::options::{ServerConfig, PRECOLLECT_LIMIT};
use crate::response;
use crate::stats::Stats;
use bytes::BytesMut;
use http_body::Body;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::TokioTimer;
use hyper_util::server::graceful::GracefulConnection;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::ptr::NonNull;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::watch;

/// Where the server is in its life; connection tasks watch it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    Running,
    /// Stop accepting; finish in-flight requests; close idle connections.
    Draining,
    /// Drop every connection now.
    Forced,
}

/// Longest request target served; longer gets 414. Kept apart from `maxHeaderSize`, as
/// nginx does, so a long URL and many headers are told apart.
pub const MAX_URI_LEN: usize = 16 * 1024;

/// hyper parses heads up to this much beyond `maxHeaderSize`, so that a long target can
/// be answered 414 (checked in `handle`) instead of 431.
const HEAD_SLACK: usize = 64 * 1024;

/// What every connection task of one server shares.
pub struct ServerShared {
    pub doorbell: Arc<Doorbell>,
    pub stats: Arc<Stats>,
    pub config: ServerConfig,
    pub phase: watch::Receiver<Phase>,
    /// The bound address, for the URLs of requests without a Host.
    pub local: String,
    /// Set for an HTTPS server: every connection starts with a TLS handshake.
    pub tls: Option<Arc<crate::tls::TlsAcceptor>>,
    /// HTTP/1.1 connections (plain or TLS) start on the fast path (fast_h1.rs): on unless
    /// `FETCH_RS_H1_FAST=0` when the server started.
    fast_h1: bool,
    h1: http1::Builder,
    h2: http2::Builder<NotedExecutor>,
}

impl ServerShared {
    pub fn new(
        doorbell: Arc<Doorbell>,
        stats: Arc<Stats>,
        config: ServerConfig,
        phase: watch::Receiver<Phase>,
        local: String,
    ) -> Self {
        let mut h1 = http1::Builder::new();
        // No pipeline_flush: with it, hyper 1.x leaves the automatic 400 for a malformed
        // request unflushed; cork.rs coalesces pipelined responses instead.
        // half_close (plain TCP only, `with_tls`): hyper then does not read while a request
        // is out. That read reserved a new read buffer while a body's last chunk could
        // still hold the old one, and cost a system call per request (echo of 100 KiB
        // bodies: 0.99 `recvfrom` an echo against 1.95, 7-14% of its CPU); the connection
        // task watches the socket instead (`Cork::watch`, in `drive`) and sees a client that
        // leaves. One that only half-closes between requests (`nc -N`) is still answered:
        // cork.rs keeps that end of stream from hyper until the answers are out.
        // No header_read_timeout: `drive` keeps `headerTimeout` on the connection's own timer.
        // hyper's would ask its dispatcher for one more pass after every head (to start the
        // timer for the next one): about 3% of a small request's instructions.
        h1.keep_alive(true)
            .half_close(true)
            .max_header_size(config.max_header_size + HEAD_SLACK)
            .max_buf_size(config.max_header_size + HEAD_SLACK + 8192)
            .header_read_timeout(None);
        let mut h2 = http2::Builder::new(NotedExecutor);
        // HTTP/2 limits (RFC 9113 section 10.5): streams at once, the header list (HPACK
        // bombs and CONTINUATION floods end at this size), streams a client may reset
        // before they are accepted (rapid reset, CVE-2023-44487, answered with GOAWAY) and
        // streams the server itself reset for protocol errors. The flow-control window,
        // each stream's and the connection's (`http2WindowSize`, 1 MiB), bounds the request
        // body bytes a connection holds before its handlers read them.
        h2.timer(TokioTimer::new())
            .max_header_list_size(config.max_header_size.min(u32::MAX as usize) as u32)
            .max_concurrent_streams(config.http2_max_concurrent_streams)
            .max_pending_accept_reset_streams(H2_MAX_PENDING_RESETS)
            .max_local_error_reset_streams(H2_MAX_LOCAL_ERROR_RESETS)
            .initial_stream_window_size(config.http2_window_size)
            .initial_connection_window_size(config.http2_window_size);
        let fast_h1 = crate::fast_h1::enabled();
        ServerShared { doorbell, stats, config, phase, local, tls: None, fast_h1, h1, h2 }
    }

    /// Makes this an HTTPS server.
    pub fn with_tls(mut self, tls: Option<Arc<crate::tls::TlsAcceptor>>) -> Self {
        // TLS records must be read to see an end of stream: hyper's own read while a
        // request is out stays (no `Cork::watch` over TLS), as the fast path's (`read_out`).
        self.h1.half_close(tls.is_none());
        self.tls = tls;
        self
    }
}

/// Streams a client may open and reset before the server has accepted them; more and the
/// connection gets GOAWAY. h2's default (20).
const H2_MAX_PENDING_RESETS: usize = 20;
/// Streams the server resets for a client's protocol errors before it sends GOAWAY
/// (RUSTSEC-2024-0003); hyper's default.
const H2_MAX_LOCAL_ERROR_RESETS: usize = 1024;

/// The checks hyper leaves to the server: RFC 9112 section 3.2 (exactly one valid Host
/// in HTTP/1.1), the target length (414) and `maxHeaderSize` for the header fields (431).
fn check_head(
    head: &http::request::Parts,
    fields: &crate::request::HeadFields<'_>,
    max_header_size: usize,
) -> Option<u16> {
    let target = head.uri.path_and_query().map_or(0, |p| p.as_str().len())
        + head.uri.authority().map_or(0, |a| a.as_str().len());
    if target > MAX_URI_LEN {
        return Some(414);
    }
    // Each field line is `name: value\r\n`.
    let size = fields.field_bytes + 4 * fields.count;
    if size > max_header_size {
        return Some(431);
    }
    if head.version == http::Version::HTTP_11 {
        let (Some(host), false) = (fields.host, fields.more_hosts) else { return Some(400) };
        // With an origin-form target the URL is made from the Host, and `head_text` refuses
        // one that is not a valid authority (more strictly than this check): only an
        // absolute-form target leaves the Host to be checked here.
        if !host.is_empty()
            && head.uri.authority().is_some()
            && http::uri::Authority::try_from(host.as_bytes()).is_err()
        {
            return Some(400);
        }
    }
    None
}

/// Counts a connection while it lives, including when its task panics.
struct ConnectionGuard(Arc<Stats>);

impl ConnectionGuard {
    fn new(stats: Arc<Stats>) -> Self {
        stats.connection_opened();
        ConnectionGuard(stats)
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.connection_closed();
    }
}

/// The HTTP/2 connection preface (RFC 9113 3.4): a connection that starts with all of it
/// speaks h2c with prior knowledge; one that differs from it in any byte is HTTP/1.1
/// (`PRIX / HTTP/1.1` included).
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Reads until the bytes read either differ from the h2 preface or are all of it,
/// whatever the segmentation; returns them (`None`: closed before a byte came).
async fn read_preface(stream: &mut TcpStream) -> Option<([u8; 24], usize)> {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 24];
    let mut n = 0;
    while n < buf.len() {
        let got = stream.read(&mut buf[n..]).await.ok()?;
        if got == 0 {
            break;
        }
        n += got;
        if buf[..n] != H2_PREFACE[..n] {
            break;
        }
    }
    (n > 0).then_some((buf, n))
}

/// How long and how much a closing HTTP/1.1 connection goes on reading and discarding
/// what the client still sends (the lingering close, as nginx's `lingering_close`): a
/// client still uploading a body the server refused must finish writing to read the
/// response (Node's fetch and node:http fail the whole request on a reset); closing with
/// its bytes unread sends a reset instead. 2 s covers a refused upload of tens of MiB on a
/// fast network; 64 MiB bounds what one client can make the server read for nothing.
const LINGER_TIME: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 64 * 1024 * 1024;

/// After the last response: FIN, then read and discard until the client closes too, or
/// `LINGER_TIME` or `LINGER_BYTES` runs out, or the server stops running.
async fn linger(cork: &Cork, mut phase: watch::Receiver<Phase>) {
    use tokio::io::AsyncReadExt;
    let Some(mut read) = cork.take_read_half() else { return };
    if cork.shutdown().await.is_err() {
        return;
    }
    let discard = async {
        // Read into spare capacity (`read_buf`): a closing connection does not zero 16 KiB
        // it will most often never fill.
        let mut buf = Vec::with_capacity(16 * 1024);
        let mut total = 0;
        while total < LINGER_BYTES {
            buf.clear();
            match read.read_buf(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => total += n,
            }
        }
    };
    tokio::select! {
        _ = tokio::time::timeout(LINGER_TIME, discard) => {}
        _ = phase.wait_for(|p| *p != Phase::Running) => {}
    }
}

/// Serves one accepted connection until it closes or the server is forced down.
///
/// One async fn from the start to the end of a connection (the start apart, in `start`):
/// the connection's task reads the state of each level of futures it is nested in at
/// every poll, a line each under load (`serve` above `serve_http` and a boxed `serve_tls`
/// took two lines a poll, 2 L1D read misses a request, where this takes one). The
/// connection's place under `maxConnections` (`permit`) is held here, released with the
/// rest at the end: an async block in the accept loop holding it around this was one more
/// such level.
pub async fn serve(
    stream: TcpStream,
    remote: SocketAddr,
    shared: Arc<ServerShared>,
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
) {
    let _permit = permit;
    let _guard = ConnectionGuard::new(shared.stats.clone());
    let _ = stream.set_nodelay(true);
    let Some((mut io, cork, h2, tls)) = start(stream, remote, &shared).await else { return };
    let mut phase = shared.phase.clone();
    let svc_shared = shared.clone();
    let svc_cork = cork.clone();
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut fast = shared.fast_h1;
    let fast_tls = tls.clone();
    // Requests carry the session only for its client certificate (`hand_over`): without one,
    // hyper's path takes no count of the session's `Arc` a request either.
    let tls = tls.filter(|s| s.client_certificate.is_some());
    let authorities = std::cell::RefCell::new(crate::target::AuthorityCache::default());
    let mut svc = service_fn(move |req| {
        // The round clock from the server's state (warm), not through the cork's doorbell.
        let started = svc_cork.now_in(&svc_shared.doorbell.round);
        // Taken apart here: the request passed whole was copied for the call (264 bytes, a
        // `memcpy` call) and then taken apart (its head copied again).
        let (head, body) = req.into_parts();
        let admitted =
            admit(head, body, &svc_cork, started, &svc_shared, scheme, &mut authorities.borrow_mut(), remote);
        handle(admitted, remote, tls.clone(), &svc_shared, InFlightCount::new(svc_cork.clone(), &svc_shared))
    });
    let mut clock = IdleClock::new(shared.config.idle_timeout);
    // An idle connection's hyper state can be released only where its socket's readiness
    // can be watched without reading (plain TCP, not TLS).
    let releasable = io.can_wait_readable();
    // hyper's connection state is boxed: the task of an idle HTTP/1.1 connection whose
    // hyper state was released (below) keeps only the small rest. So is `drive`'s future,
    // whose `Hot` must start a line: inline, its alignment would move tokio's own fields of
    // the task (the stage's tag, the task id) out of the header's line, a line more a poll.
    let end = if h2 {
        let mut conn = Box::pin(shared.h2.serve_connection(io, svc));
        Box::pin(drive(&mut conn, &cork, &phase, &mut clock, false, None)).await
    } else {
        // The fast path first, until a request it does not take (over TLS it reads on while
        // a request is out, where plain TCP's socket is watched: `FastH1::read_out`).
        loop {
            if fast {
                let tls = fast_tls.clone();
                let mut conn = Box::pin(crate::fast_h1::FastH1::new(io, cork.clone(), shared.clone(), remote, tls));
                let end =
                    Box::pin(drive(&mut conn, &cork, &phase, &mut clock, releasable, shared.config.header_timeout))
                        .await;
                let conn = Pin::into_inner(conn);
                if conn.handed_over && end == End::Finished {
                    // hyper takes the connection on from the bytes not consumed, after the
                    // answers already in the cork (they go out first).
                    io = conn.into_io();
                    fast = false;
                    continue;
                }
                if end != End::Quiet {
                    break end;
                }
                // Quiet: wait for the next request holding no buffer, as below.
                io = conn.into_io();
                if !wait_quiet(&mut io, &mut phase, &mut clock, shared.config.header_timeout).await {
                    break End::Finished;
                }
                continue;
            }
            let mut conn = Box::pin(shared.h1.serve_connection(io, svc));
            let end =
                Box::pin(drive(&mut conn, &cork, &phase, &mut clock, releasable, shared.config.header_timeout)).await;
            let upgrade = cork.upgrade.lock().unwrap_or_else(|p| p.into_inner()).take();
            if let (End::Finished, Some(ws)) = (end, upgrade) {
                // A WebSocket was accepted: hyper wrote the 101 and let go of the
                // connection, which the socket takes over from here.
                tracing::debug!(%remote, "connection upgraded to a WebSocket");
                let parts = Pin::into_inner(conn).into_parts();
                let (stats, phase) = (shared.stats.clone(), shared.phase.clone());
                // Boxed, as the TLS path: inline, its state would be in every connection's task.
                Box::pin(crate::websocket::take_over(parts.io, parts.read_buf, &cork, ws, stats, phase)).await;
                return;
            }
            if end != End::Quiet {
                break end;
            }
            // Quiet and settled: hand hyper's buffers back (an 8 KiB read buffer and an
            // 8 KiB header buffer, kept for the connection's life otherwise) and wait for
            // the next request holding no buffer. Bytes hyper had read but not parsed
            // are read again by the next hyper connection.
            let parts = Pin::into_inner(conn).into_parts();
            (io, svc) = (parts.io, parts.service);
            io.rewind(parts.read_buf);
            if !wait_quiet(&mut io, &mut phase, &mut clock, shared.config.header_timeout).await {
                break End::Finished;
            }
        }
    };
    tracing::debug!(%remote, reason = ?end, "connection closed");
    if end == End::Finished {
        // hyper finished (a close, an error answered with 400): send what it wrote.
        let _ = tokio::time::timeout(Duration::from_secs(5), cork.finish()).await;
        if !h2 {
            linger(&cork, shared.phase.clone()).await;
        }
    }
}

/// A quiet connection, its buffers given back, waits for its next request holding none:
/// true once the socket has something to read, false when the server stops running or the
/// header timeout (counted from the last request) runs out first.
async fn wait_quiet(
    io: &mut crate::cork::CorkedStream,
    phase: &mut watch::Receiver<Phase>,
    clock: &mut IdleClock,
    header_timeout: Option<Duration>,
) -> bool {
    io.park_scanner();
    crate::alloc::note_release();
    let timeout = clock.time_left(header_timeout);
    tokio::select! {
        _ = io.readable() => {}
        _ = phase.wait_for(|p| *p != Phase::Running) => return false,
        _ = async { tokio::time::sleep(timeout.unwrap_or_default()).await }, if timeout.is_some() => return false,
    }
    clock.restart();
    true
}

/// A connection's start: the TLS handshake (boxed: its state is large, and inline it would
/// make every connection's task that large, plain ones and idle ones included), or for
/// plain TCP the protocol's selection, HTTP/2 with prior knowledge or HTTP/1.1. A client
/// that sends nothing (or only part of the h2 preface) within the header timeout, or a
/// server closing meanwhile, ends it here (`None`).
#[allow(clippy::type_complexity)]
async fn start(
    stream: TcpStream,
    remote: SocketAddr,
    shared: &Arc<ServerShared>,
) -> Option<(crate::cork::CorkedStream, Arc<Cork>, bool, Option<Arc<crate::tls::Session>>)> {
    if let Some(tls) = shared.tls.clone() {
        let accepted = Box::pin(crate::tls::handshake(&tls, stream, shared)).await?;
        tracing::debug!(%remote, protocol = if accepted.h2 { "h2" } else { "http/1.1" }, "TLS connection accepted");
        let (io, cork) = Cork::from_halves(
            accepted.read,
            accepted.write,
            accepted.h2,
            &[],
            shared.doorbell.clone(),
            shared.stats.clone(),
        );
        return Some((io, cork, accepted.h2, Some(accepted.session)));
    }
    let mut phase = shared.phase.clone();
    let mut stream = stream;
    let wait = shared.config.header_timeout.unwrap_or(Duration::MAX);
    let (first, n) = tokio::select! {
        p = tokio::time::timeout(wait, read_preface(&mut stream)) => match p {
            Ok(Some(read)) => read,
            _ => {
                tracing::debug!(%remote, "connection closed: no request within the header timeout, or the client left");
                return None;
            }
        },
        _ = phase.wait_for(|p| *p != Phase::Running) => {
            tracing::debug!(%remote, "connection closed before its first request: the server is closing");
            return None;
        }
    };
    let h2 = shared.config.http2 && first[..n] == H2_PREFACE[..];
    tracing::debug!(%remote, protocol = if h2 { "h2c" } else { "http/1.1" }, "connection accepted");
    let (io, cork) = Cork::new(stream, h2, &first[..n], shared.doorbell.clone(), shared.stats.clone());
    Some((io, cork, h2, None))
}

/// How `drive` ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// hyper finished the connection (closed, or an error it answered).
    Finished,
    /// Cut off: the server forced it down, or the socket failed.
    CutOff,
    /// Quiet for two periods with nothing in progress: hyper's state may be released.
    Quiet,
}

/// How long a keep-alive connection stays quiet (no bytes either way, nothing in
/// progress) before hyper's state is released: two to three of these. Long enough that a
/// connection in use never pays for rebuilding hyper's connection (two buffers and a box),
/// short enough that idle connections hold little soon after going idle.
const QUIET_PERIOD: Duration = Duration::from_secs(1);

/// The quiet-time clock of one connection: a tick every period while hyper's state is
/// live (on the connection's one timer, see `drive`), never touched per request, and none
/// while released.
#[derive(Clone, Copy)]
struct IdleClock {
    period: Duration,
    /// When the next tick is due (`clock::now`); None while hyper's state is released.
    next_tick: Option<u64>,
    /// Periods in a row in which nothing moved.
    quiet: u32,
    /// `idleTimeout`: after this many quiet periods the connection is closed.
    close_after: Option<u32>,
}

impl IdleClock {
    fn new(idle_timeout: Option<Duration>) -> Self {
        let period = idle_timeout.map_or(QUIET_PERIOD, |d| d.min(QUIET_PERIOD)).max(Duration::from_millis(1));
        let close_after = idle_timeout.map(|d| (d.as_nanos().div_ceil(period.as_nanos())).max(1) as u32);
        let mut clock = IdleClock { period, next_tick: None, quiet: 0, close_after };
        clock.restart();
        clock
    }

    /// Starts counting from now (hyper's state is live again).
    fn restart(&mut self) {
        self.next_tick = Some(crate::clock::now().saturating_add(nanos(self.period)));
        self.quiet = 0;
    }

    /// Whether a tick is due at `now`; if so, the next one is a period from now (a task held
    /// up past several ticks must not count them all as quiet at once).
    fn tick_due(&mut self, now: u64) -> bool {
        match self.next_tick {
            Some(t) if t <= now => {
                self.next_tick = Some(now.saturating_add(nanos(self.period)));
                true
            }
            _ => false,
        }
    }

    fn timed_out(&self) -> bool {
        self.close_after.is_some_and(|n| self.quiet >= n)
    }

    /// How long a released connection may wait for its next request: what is left of
    /// `idleTimeout` and of `headerTimeout` (`drive`'s header deadline ran from the last
    /// response, which is about when the quiet began); None: no limit. Stops the ticks.
    fn time_left(&mut self, header_timeout: Option<Duration>) -> Option<Duration> {
        self.next_tick = None;
        let quiet_for = self.period * self.quiet;
        let idle = self.close_after.map(|n| self.period * n.saturating_sub(self.quiet));
        let header = header_timeout.map(|t| t.saturating_sub(quiet_for));
        match (idle, header) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// A duration as nanoseconds of `clock::now`'s clock.
fn nanos(d: Duration) -> u64 {
    d.as_nanos().min(u64::MAX as u128) as u64
}

/// A connection's timer (`drive`), polled with a waker that marks the cork before it wakes
/// the task (`cork::TimerWake`): a poll of the connection asks whether the timer fired with
/// `Cork::take_timer_woken`, a flag among the cork's others, not by the timer's own state, a
/// separate allocation cold at every poll (`Sleep::is_elapsed`: 1.45 L1D misses a poll under
/// 50 connections, callgrind). The waker lives here, not in the poll's state, which is read
/// at every poll and would take another cache line.
struct Timer {
    sleep: Pin<Box<tokio::time::Sleep>>,
    cork: Arc<Cork>,
    /// The task's waker as last seen, and the timer's made from it.
    wake: Option<(std::task::Waker, std::task::Waker)>,
}

impl Timer {
    fn poll(&mut self, cx: &mut std::task::Context<'_>) -> Poll<()> {
        let task = cx.waker();
        let waker = match &self.wake {
            Some((seen, waker)) if seen.will_wake(task) => waker,
            _ => {
                let wake = crate::cork::TimerWake { cork: self.cork.clone(), task: task.clone() };
                &self.wake.insert((task.clone(), std::task::Waker::from(Arc::new(wake)))).1
            }
        };
        self.sleep.as_mut().poll(&mut std::task::Context::from_waker(waker))
    }
}

/// What a poll of `drive` reads at every poll, together (60 bytes): with 50 connections
/// served in turn, a connection's state is cold at each of its polls, and these fields
/// spread over the closure's state (with the cold ones between them) took three lines a
/// poll. The rest (the phase watch, the timer's box, the quiet-time clock) is read only
/// after the phase changed or the timer fired. Aligned to a line (the closure is boxed by
/// `serve`, so the alignment does not reach the task): at 8 bytes' alignment the task put
/// it across two lines, a miss each at every poll.
#[repr(C, align(64))]
struct Hot<'a, C> {
    cork: &'a Cork,
    conn: Pin<&'a mut C>,
    gate: watch::Receiver<Phase>,
    /// When the timer fires next (`clock::now`); never after the clock's next tick.
    timer_at: u64,
    /// `headerTimeout` in nanoseconds; `NEVER`: none.
    head_timeout: u64,
    /// When the head awaited must be in (`clock::now`); `NEVER`: none awaited.
    head_due: u64,
    /// The phase watch was polled once.
    phase_polled: bool,
    /// A graceful shutdown is wanted: the server drains, or `idleTimeout` passed.
    drain: bool,
    /// The graceful shutdown was started.
    draining: bool,
    /// The timer must be polled (to register the task): it was armed or moved.
    timer_moved: bool,
}

/// A connection `drive` polls: hyper's, or the fast path's (fast_h1.rs).
trait Driven: Future {
    /// Stops taking requests: the connection closes once the one in progress is answered.
    fn graceful_shutdown(self: Pin<&mut Self>);
}

impl<C: GracefulConnection> Driven for C {
    fn graceful_shutdown(self: Pin<&mut Self>) {
        GracefulConnection::graceful_shutdown(self)
    }
}

impl Driven for crate::fast_h1::FastH1 {
    fn graceful_shutdown(self: Pin<&mut Self>) {
        self.get_mut().graceful_shutdown()
    }
}

/// No time: a deadline that never comes (`Hot`).
const NEVER: u64 = u64::MAX;

/// Polls a connection until it ends, flushing corked writes after each poll and starting
/// a graceful shutdown when the server drains or `idleTimeout` passes. With `releasable`,
/// returns `End::Quiet` once the connection has been quiet for two periods with nothing
/// in progress (`Cork::settled`), so its caller can release hyper's state.
///
/// One tokio timer serves the connection: armed at the quiet-time clock's next tick or at
/// the earliest deadline a request asked for (deadline.rs), whichever comes first, and
/// moved only when something asks for an earlier time. It is polled only after it moved
/// or fired, and the server's phase only once it changed: a poll for a request's reply
/// touches neither.
///
/// A plain function that returns its poll's future, not an async fn: an async fn's state
/// is one more level of futures in the connection's task, whose tag is read at every poll
/// (a line of its own under load). Everything the poll uses is moved into its closure,
/// which is then in one place in the task's memory, cold at each poll (the task's other
/// connections ran in between); what every poll reads is in one line of it (`Hot`).
fn drive<'a, C: Driven>(
    conn: &'a mut Pin<Box<C>>,
    cork: &'a Arc<Cork>,
    phase: &watch::Receiver<Phase>,
    clock: &'a mut IdleClock,
    releasable: bool,
    head_timeout: Option<Duration>,
) -> impl Future<Output = End> + 'a {
    // Resolves (CutOff) when the server is forced down or gone. Draining is read from the
    // gate (`Hot`) once it changed: the connection's poll starts the graceful shutdown
    // itself, since it holds the connection.
    let mut rx = phase.clone();
    let mut watch_phase = crate::woken::WhenWoken::new(async move {
        let _ = rx.wait_for(|p| *p == Phase::Forced).await;
        tracing::debug!("connection forced closed: the shutdown grace period is over");
        End::CutOff
    });
    // Times here are readings of `clock::now` (u64 arithmetic, no `Instant`'s), turned into
    // an instant only to move the timer.
    let far = || crate::clock::now().saturating_add(86_400 * 1_000_000_000);
    let head_timeout = head_timeout.map_or(NEVER, nanos);
    // `headerTimeout` (HTTP/1.1): a request head must be in within this of the connection
    // being ready for one (its start, or the last request answered and its response
    // handed to the socket); NEVER while a request is in progress.
    let head_due = if head_timeout == NEVER { NEVER } else { crate::clock::now().saturating_add(head_timeout) };
    let timer_at = clock.next_tick.unwrap_or_else(far).min(head_due);
    let sleep = Box::pin(tokio::time::sleep_until(cork.deadlines.instant_at(timer_at).into()));
    let mut timer = Box::new(Timer { sleep, cork: cork.clone(), wake: None });
    cork.deadlines.armed(timer_at);
    let mut hot = Hot {
        cork,
        conn: conn.as_mut(),
        // The phase watch is polled at the first poll, which registers the task, and then
        // only once the phase has changed: a load of the watch's version, shared by every
        // connection. The gate is never marked seen: once the phase changed, every poll
        // looks again (the watch's wake-up may come after the version's change).
        gate: phase.clone(),
        timer_at,
        head_timeout,
        head_due,
        phase_polled: false,
        drain: false,
        draining: false,
        timer_moved: true,
    };
    std::future::poll_fn(move |cx| {
        let h = &mut hot;
        let cork = h.cork;
        cork.poll_started();
        if !h.phase_polled || h.gate.has_changed().unwrap_or(true) {
            h.phase_polled = true;
            if let Poll::Ready(end) = Pin::new(&mut watch_phase).poll(cx) {
                return Poll::Ready(end);
            }
            if *h.gate.borrow() == Phase::Draining {
                h.drain = true;
            }
        }
        loop {
            if h.drain && !h.draining {
                h.draining = true;
                h.conn.as_mut().graceful_shutdown();
            }
            let done = h.conn.as_mut().poll(cx).is_ready();
            crate::body::run_woken_readers();
            if done {
                return Poll::Ready(End::Finished);
            }
            // hyper does not read while a request is out (`half_close`): the task looks.
            if cork.watches() && !cork.awaiting_head() {
                match cork.watch(cx) {
                    Watched::Nothing => {}
                    // The waiting request tells JS at its next poll.
                    Watched::HalfClosed => continue,
                    Watched::Gone => {
                        tracing::debug!("the client left while a response was pending");
                        return Poll::Ready(End::Finished);
                    }
                }
            }
            // Corked responses go out now unless hyper is on a pipelined request.
            if cork.after_poll(cx).is_err() {
                return Poll::Ready(End::CutOff);
            }
            // The timer is never set after the clock's next tick (`timer_at`), so only a
            // deadline a request asked for, or a new head deadline, can move it earlier.
            let mut next = cork.take_earliest().unwrap_or(NEVER);
            if h.head_timeout != NEVER {
                match (cork.awaiting_head(), h.head_due != NEVER) {
                    (true, false) => {
                        h.head_due = cork.now().saturating_add(h.head_timeout);
                        next = next.min(h.head_due);
                    }
                    (false, true) => h.head_due = NEVER,
                    _ => {}
                }
            }
            if next < h.timer_at {
                h.timer_at = next;
                timer.sleep.as_mut().reset(cork.deadlines.instant_at(next).into());
                cork.deadlines.armed(next);
                h.timer_moved = true;
            }
            if !(std::mem::take(&mut h.timer_moved) || cork.take_timer_woken()) {
                return Poll::Pending;
            }
            if timer.poll(cx).is_pending() {
                return Poll::Pending;
            }
            // The timer fired: a request's deadline may be due (hyper is polled again
            // above, and its due sleeps complete), or the clock's tick. The clock is the
            // caller's (read and written only here).
            let now = crate::clock::now();
            cork.deadlines.fired(now);
            if h.head_due != NEVER && h.head_due <= now {
                // Still waiting for a head, unless JS still holds the last request (its
                // body may still be coming in) or its response is still being written.
                if cork.settled_for_head() {
                    tracing::debug!("no request head within headerTimeout: closing the connection");
                    return Poll::Ready(End::Finished);
                }
                h.head_due = now.saturating_add(h.head_timeout);
            }
            if clock.tick_due(now) {
                if cork.idle_since_last_check() {
                    clock.quiet += 1;
                } else {
                    clock.quiet = 0;
                }
                if clock.timed_out() {
                    tracing::debug!("idle timeout: closing the connection");
                    h.drain = true;
                } else if releasable && clock.quiet >= 2 && !h.drain && cork.settled() {
                    return Poll::Ready(End::Quiet);
                }
            }
            h.timer_at = clock.next_tick.unwrap_or_else(far).min(h.head_due);
            timer.sleep.as_mut().reset(cork.deadlines.instant_at(h.timer_at).into());
            cork.deadlines.armed(h.timer_at);
            h.timer_moved = true;
        }
    })
}

/// Counts a request of one connection while its response is being produced: from
/// when hyper hands it over (before hyper reads on), not from the first poll.
///
/// With the server's counts and round clock, taken from the server's state (warm) as the
/// request starts: the poll for its reply reaches them from here (its own state, read
/// anyway), and neither poll reads the cork's line that holds them too (cold under load, a
/// miss a poll). Pointers into the `Arc`s the cork holds, kept alive by the cork held.
pub(crate) struct InFlightCount(Arc<Cork>, NonNull<Stats>, NonNull<crate::clock::Round>);

// SAFETY: the pointers are shared references into `Sync` values (a server's counts and
// its doorbell's clock) that the cork held alongside keeps alive; `Arc<Cork>` is `Send`.
unsafe impl Send for InFlightCount {}

impl InFlightCount {
    /// `shared`: the server the cork was made for (`start`), whose counts and doorbell it
    /// holds.
    pub(crate) fn new(cork: Arc<Cork>, shared: &ServerShared) -> Self {
        cork.in_flight_add(1);
        cork.request_handed();
        debug_assert!(cork.holds(&shared.stats, &shared.doorbell));
        let (stats, round) = (NonNull::from(&*shared.stats), NonNull::from(&shared.doorbell.round));
        InFlightCount(cork, stats, round)
    }

    /// The server's counts.
    fn stats(&self) -> &Stats {
        // SAFETY: a pointer into an `Arc` the cork in `self.0` holds (`new`), alive while it is.
        unsafe { self.1.as_ref() }
    }

    /// Counts the request answered (`Stats::record_response`), started at `started`.
    #[inline]
    fn record_response(&self, started: u64) {
        // SAFETY: as `stats`.
        let round = unsafe { self.2.as_ref() };
        self.stats().record_response(started, self.0.now_in(round));
    }
}

impl Drop for InFlightCount {
    fn drop(&mut self) {
        self.0.in_flight_add(usize::MAX);
        self.0.answered();
    }
}

/// What a declared length reserves before any of the body has arrived: a client that
/// declares 64 KiB and sends nothing holds this much, not 64 KiB.
const PRECOLLECT_FIRST_RESERVE: u64 = 16 * 1024;

/// Reads a body of declared length `len` (at most `PRECOLLECT_LIMIT`) into one buffer:
/// up to 16 KiB reserved at first, the rest of the declared size once bytes arrive.
async fn collect_small(mut body: crate::direct::Source, len: u64, limit: u64) -> Result<bytes::Bytes, u16> {
    let mut buf = BytesMut::with_capacity(len.min(PRECOLLECT_FIRST_RESERVE) as usize);
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| 400u16)?;
        if let Ok(data) = frame.into_data() {
            if (buf.len() + data.len()) as u64 > limit {
                return Err(413);
            }
            crate::body::extend_declared(&mut buf, &data, len);
        }
    }
    Ok(buf.freeze())
}

/// A status-only reply that also ends the connection.
pub(crate) fn closing(status: u16) -> Reply {
    let mut res = response::status_only(status);
    res.headers_mut().insert(http::header::CONNECTION, http::HeaderValue::from_static("close"));
    res
}

/// A request head that passed the checks, turned into what JS gets.
struct Admitted {
    /// `clock::now` when the head was handed over.
    started: u64,
    method: http::Method,
    text: crate::request::HeadText,
    websocket: Option<Box<crate::websocket::Offer>>,
    /// hyper's, or read past hyper (the same size).
    body: crate::direct::Source,
    http2: bool,
}

/// The synchronous start of a request, run as hyper hands it over (in the service call,
/// with the connection's `authorities` cache): the head's checks and the text JS gets. The
/// head goes no further than this, so it is no part of the request's future, which hyper
/// moves for every request. `Err`: the answer, without JS (boxed: it is rare, and inline
/// it would make every request's future larger).
#[allow(clippy::too_many_arguments)]
fn admit(
    mut head: http::request::Parts,
    body: Incoming,
    cork: &Arc<crate::cork::Cork>,
    started: u64,
    shared: &ServerShared,
    scheme: &str,
    authorities: &mut crate::target::AuthorityCache,
    remote: SocketAddr,
) -> Result<Admitted, Box<Reply>> {
    shared.stats.request_received();
    // A body read past hyper (direct.rs) is this request's when its head was the one hyper
    // hands over now.
    let body = match cork.claim_direct() {
        None => crate::direct::Source::Hyper(body),
        Some(d) => {
            // hyper saw zeros in its place: JS gets the length the client sent.
            head.headers.insert(http::header::CONTENT_LENGTH, d.declared());
            crate::direct::Source::Direct(d)
        }
    };
    let fields = crate::request::HeadFields::of(&head);
    if let Some(status) = check_head(&head, &fields, shared.config.max_header_size) {
        // A request this broken may come from a confused or hostile peer: end the connection.
        tracing::debug!(%remote, status, "request head refused; closing the connection");
        return Err(Box::new(closing(status)));
    }
    let websocket = if fields.upgrade { crate::websocket::offer(&head) } else { None };
    // The URL and headers as JS gets them; a target or authority no URL can be made
    // from is refused before any of the body is read.
    let Ok(text) = crate::request::head_text(&head, &fields, scheme, &shared.local, authorities) else {
        tracing::debug!(%remote, "request target or Host refused: 400");
        return Err(Box::new(closing(400)));
    };
    // Its map, emptied, becomes a response's (`response::plain`).
    response::keep_map(head.headers);
    let http2 = head.version == http::Version::HTTP_2;
    Ok(Admitted { started, method: head.method, text, websocket, body, http2 })
}

/// The start of a request's answer, run in hyper's call of the service (as `admit`): the
/// body's checks, and the hand-off to JS. What it returns is the request's future, which
/// hyper moves into place for every request, so it is kept small: the state of a request
/// waiting for JS (`Waiting`), an answer already made, or (boxed) the read of a small body
/// that JS gets whole.
fn handle(
    admitted: Result<Admitted, Box<Reply>>,
    remote: SocketAddr,
    tls: Option<Arc<crate::tls::Session>>,
    shared: &Arc<ServerShared>,
    in_flight_count: InFlightCount,
) -> Answer {
    let Admitted { started, method, text, websocket, body, http2 } = match admitted {
        Ok(a) => a,
        Err(reply) => return Answer::Now(Some((reply, in_flight_count))),
    };
    let limit = shared.config.max_body_size;
    if body.is_end_stream() {
        return hand_over(
            Handover { started, method, text, websocket, body: RequestBody::None, http2 },
            remote,
            tls.as_ref(),
            shared,
            in_flight_count,
        );
    }
    match body.size_hint().exact() {
        Some(n) if n > limit => {
            tracing::debug!(%remote, length = n, limit, "request body over maxBodySize: 413");
            Answer::Now(Some((Box::new(response::status_only(413)), in_flight_count)))
        }
        Some(n) if n <= PRECOLLECT_LIMIT => {
            let shared = shared.clone();
            Answer::Reading(Box::pin(async move {
                // The listener's time limit also bounds the wait for this body: a client that
                // stops sending mid-body gets 408, and the connection ends.
                let timeout = shared.config.request_timeout;
                let collected =
                    crate::deadline::within(&in_flight_count.0, started, timeout, collect_small(body, n, limit))
                        .await
                        .unwrap_or(Err(408));
                match collected {
                    Ok(b) => {
                        let body = RequestBody::Full(b);
                        hand_over(
                            Handover { started, method, text, websocket, body, http2 },
                            remote,
                            tls.as_ref(),
                            &shared,
                            in_flight_count,
                        )
                        .await
                    }
                    Err(408) => {
                        tracing::debug!(%remote, "request body not received within the timeout: 408");
                        Ok(closing(408))
                    }
                    Err(status) => Ok(response::status_only(status)),
                }
            }))
        }
        _ => {
            let body = RequestBody::Incoming(body);
            hand_over(
                Handover { started, method, text, websocket, body, http2 },
                remote,
                tls.as_ref(),
                shared,
                in_flight_count,
            )
        }
    }
}

/// A request as JS is to get it.
pub(crate) struct Handover {
    pub started: u64,
    pub method: http::Method,
    pub text: crate::request::HeadText,
    pub websocket: Option<Box<crate::websocket::Offer>>,
    pub body: RequestBody,
    pub http2: bool,
}

/// Hands a request to JS, unless too many wait for it already (503).
pub(crate) fn hand_over(
    request: Handover,
    remote: SocketAddr,
    tls: Option<&Arc<crate::tls::Session>>,
    shared: &ServerShared,
    in_flight_count: InFlightCount,
) -> Answer {
    let Handover { started, method, text, websocket, body, http2 } = request;
    // The listener's time limit runs from now: after a body read first, else from the head.
    let listener_from = if matches!(body, RequestBody::Full(_)) { in_flight_count.0.now() } else { started };
    let stats = &shared.stats;
    let waiting = stats.pending_requests() + 1;
    if waiting > shared.config.max_pending_requests as u64 {
        tracing::debug!(waiting, "too many requests waiting for JavaScript: 503");
        return Answer::Now(Some((Box::new(response::overloaded()), in_flight_count)));
    }
    stats.pending_added();
    // A request whose body hyper may still be reading: while JS holds its record (which
    // holds the ticket) the connection is not settled (Cork::settled). Other requests leave
    // no trace there.
    let streamed = matches!(body, RequestBody::Incoming(_));
    // The session goes with the request only for its client certificate (JS's
    // `requestClientCertificate`): without one, no count of the connection's `Arc` is taken
    // and given back per request.
    let tls = tls.filter(|s| s.client_certificate.is_some()).cloned();
    let (ticket, record) =
        Ticket::with_record(move || IncomingRequest { method, text, body, remote, websocket, tls, http2 });
    in_flight_count.0.set_last_request(streamed.then_some(&ticket));
    shared.doorbell.push(Event::Request(record));
    // A client that half-closes may still read the answer, or may be gone: TCP cannot
    // tell. The listener's `request.signal` aborts as for a client that left, and the
    // answer is still sent: a request read after the end of the stream is told now, one
    // waiting when it comes is told by its next poll (`Waiting::poll`).
    let half_close_told = in_flight_count.0.half_closed();
    if half_close_told {
        shared.doorbell.push(Event::Abort(ticket.clone(), AbortReason::HalfClosed));
    }
    let limit = crate::deadline::Limit::new(listener_from, shared.config.request_timeout);
    Answer::Waiting(Waiting { ticket, in_flight_count: Some(in_flight_count), started, limit, remote, half_close_told })
}

/// A request's future (see `handle`).
pub(crate) enum Answer {
    /// Answered without JS; None once taken. The count holds until then, as it would
    /// while JS answered.
    Now(Option<(Box<Reply>, InFlightCount)>),
    /// Reading a small body before JS gets the request.
    Reading(Pin<Box<dyn Future<Output = Result<Reply, Infallible>> + Send>>),
    Waiting(Waiting),
}

impl Answer {
    /// The answer as JS gave it: a plain reply is left for the fast HTTP/1.1 path to encode
    /// without a header map (`fast_h1`).
    #[inline(always)]
    pub(crate) fn poll_given(&mut self, cx: &mut std::task::Context<'_>) -> Poll<Given> {
        match self {
            Answer::Now(reply) => {
                Poll::Ready(Given::Full(reply.take().map_or_else(|| response::status_only(500), |(r, _)| *r)))
            }
            Answer::Reading(fut) => fut.as_mut().poll(cx).map(|Ok(reply)| Given::Full(reply)),
            Answer::Waiting(waiting) => waiting.poll_given(cx),
        }
    }
}

impl Future for Answer {
    type Output = Result<Reply, Infallible>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Self::Output> {
        self.get_mut().poll_given(cx).map(|given| Ok(given.into_reply()))
    }
}

/// A request in JS's hands. Dropped before its answer came (the client left, hyper let go
/// of the request), it tells JS, so that the listener's `request.signal` aborts.
pub(crate) struct Waiting {
    ticket: Arc<Ticket>,
    /// None once answered. Its connection's cork has the doorbell and the counts.
    in_flight_count: Option<InFlightCount>,
    /// `clock::now` when the head was handed over.
    started: u64,
    /// The listener's time limit (`timeout`).
    limit: crate::deadline::Limit,
    remote: SocketAddr,
    /// JS was told of the client's half-close (`Cork::half_closed`).
    half_close_told: bool,
}

impl Waiting {
    #[inline(always)]
    fn poll_given(&mut self, cx: &mut std::task::Context<'_>) -> Poll<Given> {
        let Some(count) = self.in_flight_count.as_ref() else {
            return Poll::Ready(Given::Full(response::status_only(500)));
        };
        let s = match self.ticket.poll_given(cx) {
            Poll::Ready(s) => s,
            Poll::Pending => {
                // The end of the stream came while this request waits: hyper's read that
                // saw it (`CorkedStream::poll_read`) is followed by this poll.
                if !self.half_close_told && count.0.half_closed() {
                    self.half_close_told = true;
                    count.0.doorbell.push(Event::Abort(self.ticket.clone(), AbortReason::HalfClosed));
                }
                if let Some(at) = self.ticket.take_limit(&count.0.doorbell) {
                    self.limit = crate::deadline::Limit::until(at);
                }
                if self.limit.poll_passed(&count.0, cx).is_pending() {
                    return Poll::Pending;
                }
                tracing::debug!(remote = %self.remote, "the listener did not respond within the timeout: 503");
                count.0.doorbell.push(Event::Abort(self.ticket.clone(), AbortReason::Timeout));
                self.answered();
                return Poll::Ready(Given::Full(closing(503)));
            }
        };
        count.record_response(self.started);
        let hold = |body: &mut crate::body::ResponseBody| {
            if let crate::body::ResponseBody::Stream(s) = body {
                s.hold(crate::cork::StreamingGuard::new(count.0.clone()));
            }
        };
        // Made by `take` alone (see `Ticket::poll_given`); a 500 when JS released the request
        // without answering it.
        let reply = self.ticket.take(s, hold, |res| {
            hold(res.body_mut());
            crate::websocket::claim(res, &count.0);
        });
        self.answered();
        Poll::Ready(reply)
    }

    /// The request no longer waits on JS: it leaves the counts.
    fn answered(&mut self) {
        if let Some(count) = self.in_flight_count.take() {
            // A limit set again that this task did not take leaves the list with it.
            self.ticket.take_limit(&count.0.doorbell);
            count.stats().pending_removed();
        }
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        if let Some(count) = &self.in_flight_count {
            count.0.doorbell.push(Event::Abort(self.ticket.clone(), AbortReason::ClientGone));
            self.answered();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::NativeOptions;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

    fn shared() -> (Arc<ServerShared>, watch::Sender<Phase>) {
        let (tx, rx) = watch::channel(Phase::Running);
        let config = ServerConfig::from_options(&NativeOptions::default()).unwrap();
        let local = "127.0.0.1:1".to_string();
        (Arc::new(ServerShared::new(Arc::new(Doorbell::new()), Arc::new(Stats::new()), config, rx, local)), tx)
    }

    /// Serves one connection on a loopback socket; returns the client's halves and the
    /// serving task (to abort once done).
    async fn connect() -> (OwnedReadHalf, OwnedWriteHalf, tokio::task::JoinHandle<()>) {
        let (shared, phase) = shared();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let _phase = phase;
            let (stream, remote) = listener.accept().await.unwrap();
            serve(stream, remote, shared, None).await;
        });
        let client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (r, w) = client.into_split();
        (r, w, task)
    }

    /// An idle connection is its task and its socket (hyper's state is boxed, and released
    /// when idle): the task, a future allocated per connection, must stay small, so large
    /// states (the TLS handshake, hyper's connection) are boxed rather than inline.
    #[tokio::test]
    async fn a_connection_task_is_small() {
        let (shared, _phase) = shared();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = tokio::net::TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (stream, remote) = listener.accept().await.unwrap();
        let task = serve(stream, remote, shared, None);
        // 1,160 bytes when written; 3,432 with the TLS handshake inline.
        let size = std::mem::size_of_val(&task);
        assert!(size <= 1536, "the task of one connection is {size} bytes");
        drop((task, client));
    }

    #[tokio::test]
    async fn a_request_future_is_small() {
        let (shared, _phase) = shared();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (_io, cork) = Cork::new(stream, false, &[], shared.doorbell.clone(), shared.stats.clone());
        fn output_size<A, R, F: Fn(A) -> R>(_: &F) -> usize {
            std::mem::size_of::<R>()
        }
        let service = |req| handle(req, addr, None, &shared, InFlightCount::new(cork.clone(), &shared));
        // hyper moves each request's future into place: 1,096 bytes as an async fn that
        // held the body's read and the timers' states inline, 1,320 while it also held the
        // request head across its awaits; 88 as the state of a request waiting for JS.
        let size = output_size(&service);
        assert!(size <= 128, "the future of one request is {size} bytes");
    }

    /// Serves one connection on a loopback socket, sends `input`, and returns all output.
    async fn exchange(input: &[u8]) -> String {
        let (mut r, mut w, task) = connect().await;
        w.write_all(input).await.unwrap();
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(2), r.read_to_end(&mut out)).await;
        task.abort();
        String::from_utf8_lossy(&out).into_owned()
    }

    /// Sends `input` on a connection of its own; asserts the reply has `status`.
    async fn expect_status(input: &[u8], status: u16) {
        let out = exchange(input).await;
        assert!(out.starts_with(&format!("HTTP/1.1 {status}")), "{out:?}");
    }

    /// As `exchange`, writing `parts` 50 ms apart and reading the first `want` bytes back.
    async fn exchange_parts(parts: &[&[u8]], want: usize) -> Vec<u8> {
        let (mut r, mut w, task) = connect().await;
        for part in parts {
            w.write_all(part).await.unwrap();
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut out = vec![0u8; want];
        let _ = tokio::time::timeout(Duration::from_secs(2), r.read_exact(&mut out)).await;
        task.abort();
        out
    }

    #[tokio::test]
    async fn h2c_preface_split_after_one_byte_gets_settings() {
        let out = exchange_parts(&[&H2_PREFACE[..1], &H2_PREFACE[1..]], 9).await;
        // A frame header: 24-bit length, type 0x4 (SETTINGS), flags, stream 0.
        assert_eq!(out[3], 0x4, "{out:?}");
    }

    #[tokio::test]
    async fn h2c_preface_split_after_two_bytes_gets_settings() {
        let out = exchange_parts(&[&H2_PREFACE[..2], &H2_PREFACE[2..]], 9).await;
        assert_eq!(out[3], 0x4, "{out:?}");
    }

    #[tokio::test]
    async fn a_head_that_leaves_the_preface_late_is_http11() {
        expect_status(b"PRI * HTTP/1.1\r\nHost: x\r\n\r\n", 400).await;
    }

    #[tokio::test]
    async fn bare_lf_in_a_head_gets_400() {
        expect_status(b"GET / HTTP/1.1\nHost: x\n\n", 400).await;
    }

    #[tokio::test]
    async fn repeated_content_length_after_a_partial_read_gets_400() {
        // hyper has part of the head already: it parses again only once a head end comes.
        let out = exchange_parts(
            &[b"POST / HTTP/1.1\r\nHost: x\r\n", b"Content-Length: 1\r\nContent-Length: 1\r\n\r\nx"],
            12,
        )
        .await;
        assert_eq!(&out, b"HTTP/1.1 400", "{:?}", String::from_utf8_lossy(&out));
    }

    #[tokio::test]
    async fn malformed_request_line_gets_400() {
        expect_status(b"GARBAGE\r\n\r\n", 400).await;
    }

    #[tokio::test]
    async fn invalid_header_line_gets_400() {
        expect_status(b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n", 400).await;
    }

    #[tokio::test]
    async fn declared_body_over_the_limit_gets_413_before_dispatch() {
        expect_status(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\n", 413).await;
    }

    #[tokio::test]
    async fn http11_without_host_gets_400() {
        expect_status(b"GET / HTTP/1.1\r\n\r\n", 400).await;
    }

    #[tokio::test]
    async fn two_host_headers_get_400() {
        expect_status(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400).await;
    }

    #[tokio::test]
    async fn long_target_gets_414() {
        let req = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(MAX_URI_LEN + 1));
        expect_status(req.as_bytes(), 414).await;
    }

    #[tokio::test]
    async fn header_fields_over_max_header_size_get_431() {
        let req = format!("GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "a".repeat(17 * 1024));
        expect_status(req.as_bytes(), 431).await;
    }
}
