//! One connection: protocol selection, hyper settings, the request hand-off to JS,
//! timeouts and shutdown.

use crate::bridge::{AbortReason, Doorbell, Event, IncomingRequest, Reply, RequestBody, Ticket};
use crate::cork::Cork;
use crate::options::{ServerConfig, PRECOLLECT_LIMIT};
use crate::response;
use crate::stats::Stats;
use bytes::BytesMut;
use http_body::Body;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::graceful::GracefulConnection;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::sync::{oneshot, watch};

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
    h1: http1::Builder,
    h2: http2::Builder<TokioExecutor>,
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
        h1.keep_alive(true)
            .timer(TokioTimer::new())
            .max_header_size(config.max_header_size + HEAD_SLACK)
            .max_buf_size(config.max_header_size + HEAD_SLACK + 8192)
            .header_read_timeout(config.header_timeout);
        let mut h2 = http2::Builder::new(TokioExecutor::new());
        // HTTP/2 limits (RFC 9113 section 10.5): streams at once, the header list (HPACK
        // bombs and CONTINUATION floods end at this size), streams a client may reset
        // before they are accepted (rapid reset, CVE-2023-44487, answered with GOAWAY) and
        // streams the server itself reset for protocol errors. Flow-control windows keep
        // h2's defaults (1 MiB), so a slow reader holds at most that much per stream.
        h2.timer(TokioTimer::new())
            .max_header_list_size(config.max_header_size.min(u32::MAX as usize) as u32)
            .max_concurrent_streams(config.http2_max_concurrent_streams)
            .max_pending_accept_reset_streams(H2_MAX_PENDING_RESETS)
            .max_local_error_reset_streams(H2_MAX_LOCAL_ERROR_RESETS);
        ServerShared { doorbell, stats, config, phase, local, tls: None, h1, h2 }
    }

    /// Makes this an HTTPS server.
    pub fn with_tls(mut self, tls: Option<Arc<crate::tls::TlsAcceptor>>) -> Self {
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
fn check_head(head: &http::request::Parts, max_header_size: usize) -> Option<u16> {
    let target = head.uri.path_and_query().map_or(0, |p| p.as_str().len())
        + head.uri.authority().map_or(0, |a| a.as_str().len());
    if target > MAX_URI_LEN {
        return Some(414);
    }
    let mut size = 0;
    for (name, value) in &head.headers {
        // Each field line is `name: value\r\n`.
        size += name.as_str().len() + value.len() + 4;
    }
    if size > max_header_size {
        return Some(431);
    }
    if head.version == http::Version::HTTP_11 {
        let mut hosts = head.headers.get_all(http::header::HOST).iter();
        let (Some(host), None) = (hosts.next(), hosts.next()) else { return Some(400) };
        if !host.is_empty() && http::uri::Authority::try_from(host.as_bytes()).is_err() {
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

/// The HTTP/2 connection preface starts with these bytes; no HTTP/1.1 method does.
const H2_PREFIX: &[u8; 3] = b"PRI";

/// Serves one accepted connection until it closes or the server is forced down.
pub async fn serve(stream: TcpStream, remote: SocketAddr, shared: Arc<ServerShared>) {
    let _guard = ConnectionGuard::new(shared.stats.clone());
    let _ = stream.set_nodelay(true);
    if let Some(tls) = shared.tls.clone() {
        if let Some(accepted) = crate::tls::handshake(&tls, stream, &shared).await {
            tracing::debug!(%remote, protocol = if accepted.h2 { "h2" } else { "http/1.1" }, "TLS connection accepted");
            let (read, write) = tokio::io::split(accepted.stream);
            let (io, cork) = Cork::from_halves(Box::new(read), Box::new(write), accepted.h2);
            serve_http(io, cork, accepted.h2, remote, Some(accepted.session), shared).await;
        }
        return;
    }
    let mut phase = shared.phase.clone();
    // Protocol selection: HTTP/2 with prior knowledge, or HTTP/1.1. A client that sends
    // nothing within the header timeout, or a server closing meanwhile, ends it here.
    let mut prefix = [0u8; 3];
    let wait = shared.config.header_timeout.unwrap_or(Duration::MAX);
    let peeked = tokio::select! {
        p = tokio::time::timeout(wait, stream.peek(&mut prefix)) => match p {
            Ok(Ok(n)) if n > 0 => n,
            _ => {
                tracing::debug!(%remote, "connection closed: no request within the header timeout, or the client left");
                return;
            }
        },
        _ = phase.wait_for(|p| *p != Phase::Running) => {
            tracing::debug!(%remote, "connection closed before its first request: the server is closing");
            return;
        }
    };
    let h2 = shared.config.http2 && peeked == prefix.len() && &prefix == H2_PREFIX;
    tracing::debug!(%remote, protocol = if h2 { "h2c" } else { "http/1.1" }, "connection accepted");
    let (io, cork) = Cork::new(stream, h2);
    serve_http(io, cork, h2, remote, None, shared).await;
}

/// Serves HTTP/1.1 or HTTP/2 over a connection's (plain or decrypted) bytes.
async fn serve_http(
    io: crate::cork::CorkedStream,
    cork: Arc<Cork>,
    h2: bool,
    remote: SocketAddr,
    tls: Option<Arc<crate::tls::Session>>,
    shared: Arc<ServerShared>,
) {
    let phase = shared.phase.clone();
    let svc_shared = shared.clone();
    let svc_cork = cork.clone();
    let svc = service_fn(move |req| handle(req, remote, tls.clone(), svc_shared.clone(), svc_cork.clone()));
    let finished = if h2 {
        drive(shared.h2.serve_connection(io, svc), &cork, phase, shared.config.idle_timeout).await
    } else {
        drive(shared.h1.serve_connection(io, svc), &cork, phase, shared.config.idle_timeout).await
    };
    tracing::debug!(%remote, reason = if finished { "done" } else { "cut off" }, "connection closed");
    if finished {
        // hyper finished (a close, an error answered with 400): send what it wrote.
        let _ = tokio::time::timeout(Duration::from_secs(5), cork.finish()).await;
    }
}

/// Polls a connection to its end, flushing corked writes after each poll and starting a
/// graceful shutdown when the server drains. Returns false when it was cut off.
async fn drive<C: GracefulConnection>(
    conn: C,
    cork: &Cork,
    mut phase: watch::Receiver<Phase>,
    idle_timeout: Option<Duration>,
) -> bool {
    // The idle check runs once per period: a connection idle through a whole period is
    // closed, so it goes after one to two periods; no timer is touched per request.
    let mut idle_check = idle_timeout.map(|d| tokio::time::interval_at(tokio::time::Instant::now() + d, d));
    let mut conn = pin!(conn);
    // Set by the loop below; the corked future starts the graceful shutdown itself,
    // since it holds the connection.
    let drain = AtomicBool::new(false);
    let mut draining = false;
    let mut corked = pin!(std::future::poll_fn(|cx| {
        crate::in_thread::note_work();
        if !draining && drain.load(Ordering::Relaxed) {
            draining = true;
            conn.as_mut().graceful_shutdown();
        }
        if conn.as_mut().poll(cx).is_ready() {
            return Poll::Ready(true);
        }
        // Corked responses go out now unless hyper is on a pipelined request.
        match cork.after_poll(cx) {
            Ok(()) => Poll::Pending,
            Err(_) => Poll::Ready(false),
        }
    }));
    loop {
        match *phase.borrow_and_update() {
            Phase::Forced => {
                tracing::debug!("connection forced closed: the shutdown grace period is over");
                return false;
            }
            Phase::Draining => drain.store(true, Ordering::Relaxed),
            Phase::Running => {}
        }
        tokio::select! {
            done = corked.as_mut() => return done,
            changed = phase.changed() => {
                // An error means the server object is gone: nothing can answer any more.
                if changed.is_err() {
                    return false;
                }
            }
            _ = async { idle_check.as_mut()?.tick().await; Some(()) }, if idle_check.is_some() => {
                if cork.idle_since_last_check() {
                    tracing::debug!("idle timeout: closing the connection");
                    drain.store(true, Ordering::Relaxed);
                }
            }
        }
    }
}

/// Disarmed once the response is in hand; otherwise tells JS the request was
/// abandoned (client gone), so the listener's `request.signal` can abort.
struct InFlight {
    ticket: Arc<Ticket>,
    doorbell: Arc<Doorbell>,
    armed: bool,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.armed {
            self.doorbell.push(Event::Abort(self.ticket.clone(), AbortReason::ClientGone));
        }
    }
}

/// Counts a request of one connection while its response is being produced.
struct InFlightCount(Arc<Cork>);

impl Drop for InFlightCount {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Counts a request waiting on JS.
struct PendingGuard(Arc<Stats>);

impl Drop for PendingGuard {
    fn drop(&mut self) {
        self.0.pending_requests.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What a declared length reserves before any of the body has arrived: a client that
/// declares 64 KiB and sends nothing holds this much, not 64 KiB.
const PRECOLLECT_FIRST_RESERVE: u64 = 16 * 1024;

/// Reads a body of declared length `len` (at most `PRECOLLECT_LIMIT`) into one buffer:
/// up to 16 KiB reserved at first, the rest of the declared size once bytes arrive.
async fn collect_small(mut body: Incoming, len: u64, limit: u64) -> Result<bytes::Bytes, u16> {
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
fn closing(status: u16) -> Reply {
    let mut res = response::status_only(status);
    res.headers_mut().insert(http::header::CONNECTION, http::HeaderValue::from_static("close"));
    res
}

async fn handle(
    req: http::Request<Incoming>,
    remote: SocketAddr,
    tls: Option<Arc<crate::tls::Session>>,
    shared: Arc<ServerShared>,
    cork: Arc<Cork>,
) -> Result<Reply, Infallible> {
    let started = Instant::now();
    cork.in_flight.fetch_add(1, Ordering::Relaxed);
    let in_flight_count = InFlightCount(cork);
    let stats = &shared.stats;
    stats.total_requests.fetch_add(1, Ordering::Relaxed);
    let (head, body) = req.into_parts();
    if let Some(status) = check_head(&head, shared.config.max_header_size) {
        // A request this broken may come from a confused or hostile peer: end the connection.
        tracing::debug!(%remote, status, "request head refused; closing the connection");
        return Ok(closing(status));
    }
    let limit = shared.config.max_body_size;
    let body = if body.is_end_stream() {
        RequestBody::None
    } else {
        match body.size_hint().exact() {
            Some(n) if n > limit => {
                tracing::debug!(%remote, length = n, limit, "request body over maxBodySize: 413");
                return Ok(response::status_only(413));
            }
            Some(n) if n <= PRECOLLECT_LIMIT => {
                // The listener's time limit also bounds the wait for this body: a client
                // that stops sending mid-body gets 408, and the connection ends.
                let collected = match shared.config.request_timeout {
                    Some(t) => tokio::time::timeout(t, collect_small(body, n, limit)).await.unwrap_or(Err(408)),
                    None => collect_small(body, n, limit).await,
                };
                match collected {
                    Ok(b) => RequestBody::Full(b),
                    Err(408) => {
                        tracing::debug!(%remote, "request body not received within the timeout: 408");
                        return Ok(closing(408));
                    }
                    Err(status) => return Ok(response::status_only(status)),
                }
            }
            _ => RequestBody::Incoming(body),
        }
    };

    let waiting = stats.pending_requests.fetch_add(1, Ordering::Relaxed) + 1;
    let _pending = PendingGuard(stats.clone());
    if waiting > shared.config.max_pending_requests {
        tracing::debug!(waiting, "too many requests waiting for JavaScript: 503");
        return Ok(response::overloaded());
    }

    let (tx, rx) = oneshot::channel();
    let ticket = Arc::new(Ticket::default());
    let mut in_flight = InFlight { ticket: ticket.clone(), doorbell: shared.doorbell.clone(), armed: true };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let text = crate::request::head_text(&head, scheme, &shared.local);
    let method = head.method;
    shared.doorbell.push(Event::Request(Box::new(IncomingRequest {
        method,
        text,
        body,
        remote,
        reply: Some(tx),
        ticket,
        tls,
    })));

    let reply = match shared.config.request_timeout {
        Some(t) => match tokio::time::timeout(t, rx).await {
            Ok(r) => r,
            Err(_) => {
                in_flight.armed = false;
                tracing::debug!(%remote, "the listener did not respond within the timeout: 503");
                shared.doorbell.push(Event::Abort(in_flight.ticket.clone(), AbortReason::Timeout));
                return Ok(closing(503));
            }
        },
        None => rx.await,
    };
    in_flight.armed = false;
    stats.record_response(started.elapsed());
    let mut reply = reply;
    if let Ok(res) = reply.as_mut() {
        if let crate::body::ResponseBody::Stream(s) = res.body_mut() {
            s.hold(crate::cork::StreamingGuard::new(in_flight_count.0.clone()));
        }
    }
    // A dropped sender means JS released the request without answering it.
    Ok(reply.unwrap_or_else(|_| response::status_only(500)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::NativeOptions;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn shared() -> (Arc<ServerShared>, watch::Sender<Phase>) {
        let (tx, rx) = watch::channel(Phase::Running);
        let config = ServerConfig::from_options(&NativeOptions::default()).unwrap();
        let local = "127.0.0.1:1".to_string();
        (Arc::new(ServerShared::new(Arc::new(Doorbell::new()), Arc::new(Stats::new()), config, rx, local)), tx)
    }

    /// Serves one connection on a loopback socket, sends `input`, and returns all output.
    async fn exchange(input: &[u8]) -> String {
        let (shared, _phase) = shared();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let (stream, remote) = listener.accept().await.unwrap();
            serve(stream, remote, shared).await;
        });
        let client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut r, mut w) = client.into_split();
        w.write_all(input).await.unwrap();
        let mut out = Vec::new();
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), r.read_to_end(&mut out)).await;
        task.abort();
        String::from_utf8_lossy(&out).into_owned()
    }

    #[tokio::test]
    async fn malformed_request_line_gets_400() {
        let out = exchange(b"GARBAGE\r\n\r\n").await;
        assert!(out.starts_with("HTTP/1.1 400"), "{out:?}");
    }

    #[tokio::test]
    async fn invalid_header_line_gets_400() {
        let out = exchange(b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n").await;
        assert!(out.starts_with("HTTP/1.1 400"), "{out:?}");
    }

    #[tokio::test]
    async fn declared_body_over_the_limit_gets_413_before_dispatch() {
        let out = exchange(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\n").await;
        assert!(out.starts_with("HTTP/1.1 413"), "{out:?}");
    }

    #[tokio::test]
    async fn http11_without_host_gets_400() {
        let out = exchange(b"GET / HTTP/1.1\r\n\r\n").await;
        assert!(out.starts_with("HTTP/1.1 400"), "{out:?}");
    }

    #[tokio::test]
    async fn two_host_headers_get_400() {
        let out = exchange(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n").await;
        assert!(out.starts_with("HTTP/1.1 400"), "{out:?}");
    }

    #[tokio::test]
    async fn long_target_gets_414() {
        let req = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(MAX_URI_LEN + 1));
        let out = exchange(req.as_bytes()).await;
        assert!(out.starts_with("HTTP/1.1 414"), "{out:?}");
    }

    #[tokio::test]
    async fn header_fields_over_max_header_size_get_431() {
        let req = format!("GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "a".repeat(17 * 1024));
        let out = exchange(req.as_bytes()).await;
        assert!(out.starts_with("HTTP/1.1 431"), "{out:?}");
    }
}
