//! One connection: protocol selection, hyper settings, the request hand-off to JS,
//! timeouts and shutdown.

use crate::bridge::{AbortReason, Doorbell, Event, IncomingRequest, Reply, RequestBody, Ticket};
use crate::options::{ServerConfig, PRECOLLECT_LIMIT};
use crate::response;
use crate::stats::Stats;
use bytes::BytesMut;
use http_body::Body;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;
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

/// What every connection task of one server shares.
pub struct ServerShared {
    pub doorbell: Arc<Doorbell>,
    pub stats: Arc<Stats>,
    pub config: ServerConfig,
    pub phase: watch::Receiver<Phase>,
    builder: auto::Builder<TokioExecutor>,
}

impl ServerShared {
    pub fn new(
        doorbell: Arc<Doorbell>,
        stats: Arc<Stats>,
        config: ServerConfig,
        phase: watch::Receiver<Phase>,
    ) -> Self {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        {
            let mut h1 = builder.http1();
            // No pipeline_flush: with it, hyper 1.x leaves the automatic 400 for a
            // malformed request unflushed (connection::tests::malformed_request_line_gets_400).
            h1.keep_alive(true)
                .timer(TokioTimer::new())
                // hyper needs at least 8 KiB of read buffer; a head larger than this is 431.
                .max_buf_size(config.max_header_size.max(8192))
                .header_read_timeout(config.header_timeout);
        }
        {
            let mut h2 = builder.http2();
            h2.timer(TokioTimer::new()).max_header_list_size(config.max_header_size.min(u32::MAX as usize) as u32);
        }
        ServerShared { doorbell, stats, config, phase, builder }
    }
}

/// Counts a connection while it lives, including when its task panics.
struct ConnectionGuard(Arc<Stats>);

impl ConnectionGuard {
    fn new(stats: Arc<Stats>) -> Self {
        stats.active_connections.fetch_add(1, Ordering::Relaxed);
        ConnectionGuard(stats)
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.active_connections.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Serves one accepted connection until it closes or the server is forced down.
pub async fn serve(stream: TcpStream, remote: SocketAddr, shared: Arc<ServerShared>) {
    let _guard = ConnectionGuard::new(shared.stats.clone());
    let _ = stream.set_nodelay(true);
    let mut phase = shared.phase.clone();
    let svc_shared = shared.clone();
    let svc = service_fn(move |req| handle(req, remote, svc_shared.clone()));
    let conn = shared.builder.serve_connection(TokioIo::new(stream), svc);
    tokio::pin!(conn);
    let mut draining = false;
    loop {
        let current = *phase.borrow_and_update();
        if current == Phase::Forced {
            return;
        }
        if current == Phase::Draining && !draining {
            draining = true;
            conn.as_mut().graceful_shutdown();
        }
        tokio::select! {
            _ = conn.as_mut() => return,
            changed = phase.changed() => {
                if changed.is_err() {
                    // The server object is gone: nothing can answer requests any more.
                    return;
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

/// Counts a request waiting on JS.
struct PendingGuard(Arc<Stats>);

impl Drop for PendingGuard {
    fn drop(&mut self) {
        self.0.pending_requests.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn collect_small(mut body: Incoming, limit: u64) -> Result<bytes::Bytes, u16> {
    let mut buf = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| 400u16)?;
        if let Ok(data) = frame.into_data() {
            if (buf.len() + data.len()) as u64 > limit {
                return Err(413);
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(buf.freeze())
}

async fn handle(
    req: http::Request<Incoming>,
    remote: SocketAddr,
    shared: Arc<ServerShared>,
) -> Result<Reply, Infallible> {
    let started = Instant::now();
    let stats = &shared.stats;
    stats.total_requests.fetch_add(1, Ordering::Relaxed);
    let (head, body) = req.into_parts();
    let limit = shared.config.max_body_size;
    let body = if body.is_end_stream() {
        RequestBody::None
    } else {
        match body.size_hint().exact() {
            Some(n) if n > limit => return Ok(response::status_only(413)),
            Some(n) if n <= PRECOLLECT_LIMIT => match collect_small(body, limit).await {
                Ok(b) => RequestBody::Full(b),
                Err(status) => return Ok(response::status_only(status)),
            },
            _ => RequestBody::Incoming(body),
        }
    };

    let waiting = stats.pending_requests.fetch_add(1, Ordering::Relaxed) + 1;
    let _pending = PendingGuard(stats.clone());
    if waiting > shared.config.max_pending_requests {
        return Ok(response::overloaded());
    }

    let (tx, rx) = oneshot::channel();
    let ticket = Arc::new(Ticket::default());
    let mut in_flight = InFlight { ticket: ticket.clone(), doorbell: shared.doorbell.clone(), armed: true };
    shared.doorbell.push(Event::Request(Box::new(IncomingRequest { head, body, remote, reply: Some(tx), ticket })));

    let reply = match shared.config.request_timeout {
        Some(t) => match tokio::time::timeout(t, rx).await {
            Ok(r) => r,
            Err(_) => {
                in_flight.armed = false;
                shared.doorbell.push(Event::Abort(in_flight.ticket.clone(), AbortReason::Timeout));
                let mut res = response::status_only(503);
                res.headers_mut().insert(http::header::CONNECTION, http::HeaderValue::from_static("close"));
                return Ok(res);
            }
        },
        None => rx.await,
    };
    in_flight.armed = false;
    stats.record_response(started.elapsed());
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
        (Arc::new(ServerShared::new(Arc::new(Doorbell::new()), Arc::new(Stats::new()), config, rx)), tx)
    }

    /// Serves one connection over a duplex pipe, sends `input`, and returns all output.
    async fn exchange(input: &[u8]) -> String {
        let (shared, _phase) = shared();
        let (client, server) = tokio::io::duplex(64 * 1024);
        let svc_shared = shared.clone();
        let remote: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let svc = service_fn(move |req| handle(req, remote, svc_shared.clone()));
        let task = tokio::spawn(async move {
            let _ = shared.builder.serve_connection(TokioIo::new(server), svc).await;
        });
        let (mut r, mut w) = tokio::io::split(client);
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
}
