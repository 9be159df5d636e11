//! Benchmark server with no JavaScript: hyper 1 on tokio answering the benchmark scenarios of
//! bench/ (see bench/README.md), the ceiling of the stack fetch-rs is built on. Same routes and
//! bodies as bench/servers/*.mjs; binds 127.0.0.1:$PORT, prints "READY <port>", serves HTTP/1.1
//! and HTTP/2 with prior knowledge (h2c). Exits on SIGTERM (default action).
//!
//! Worker threads: $HYPER_WORKERS, else the cores this process may run on (1 when the bench
//! runner pins it with `taskset -c 0`). HTTP/1 pipelined responses are flushed together
//! (hyper's `pipeline_flush`) unless HYPER_PIPELINE_FLUSH=0. Build and run with:
//!   cargo build --release --example hyper-baseline
//!   PORT=3000 target/release/examples/hyper-baseline

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpListener, TcpStream};

// The same allocator as the addon (its default `mimalloc` feature), so the ceiling is not lowered by malloc.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The body of the 100 KiB response scenario: 102,400 bytes of 'x'.
static BIG: [u8; 100 * 1024] = [b'x'; 100 * 1024];

/// The first bytes of the HTTP/2 connection preface; no HTTP/1.1 request starts with them.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

fn respond(status: StatusCode, content_type: Option<&'static str>, body: Bytes) -> Response<Full<Bytes>> {
    let mut res = Response::new(Full::new(body));
    *res.status_mut() = status;
    if let Some(t) = content_type {
        res.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(t));
    }
    res
}

fn json(body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    respond(StatusCode::OK, Some("application/json"), body.into())
}

/// The whole request body; an aborted body counts as empty (the response then says so).
async fn read_body(req: Request<Incoming>) -> Bytes {
    match req.into_body().collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => Bytes::new(),
    }
}

/// The routes of bench/lib/scenarios.mjs. The JS servers serialize `{ ok: true }` per request;
/// with no serde here the baseline sends the same bytes from a constant.
async fn handle(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let res = match (req.method(), req.uri().path()) {
        (&Method::GET, "/json") => json(&b"{\"ok\":true}"[..]),
        (&Method::GET, "/text") => {
            respond(StatusCode::OK, Some("text/plain;charset=UTF-8"), Bytes::from_static(b"Hello, World!"))
        }
        (&Method::POST, "/echo") => respond(StatusCode::OK, None, read_body(req).await),
        (&Method::GET, "/download") => respond(StatusCode::OK, None, Bytes::from_static(&BIG)),
        (&Method::POST, "/upload") => json(format!("{{\"length\":{}}}", read_body(req).await.len())),
        (&Method::GET, "/async") => {
            tokio::time::sleep(Duration::from_millis(1)).await;
            json(&b"{\"ok\":true}"[..])
        }
        _ => respond(StatusCode::NOT_FOUND, Some("text/plain;charset=UTF-8"), Bytes::from_static(b"Not Found")),
    };
    Ok(res)
}

/// Whether the client opened with the HTTP/2 preface; waits until enough bytes tell.
async fn is_h2_prior_knowledge(stream: &TcpStream) -> bool {
    let mut buf = [0u8; 24];
    loop {
        let n = match stream.peek(&mut buf).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => n,
        };
        if buf[..n] != H2_PREFACE[..n] {
            return false;
        }
        if n == H2_PREFACE.len() {
            return true;
        }
        // A prefix of the preface so far (rare: clients send it in one write): wait for more.
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

struct Protocols {
    h1: http1::Builder,
    h2: http2::Builder<TokioExecutor>,
}

async fn serve_connection(stream: TcpStream, protocols: Arc<Protocols>) {
    let _ = stream.set_nodelay(true);
    let h2 = is_h2_prior_knowledge(&stream).await;
    let io = TokioIo::new(stream);
    let service = service_fn(handle);
    // Errors are the client's doing (reset, malformed request): the connection just ends.
    if h2 {
        let _ = protocols.h2.serve_connection(io, service).await;
    } else {
        let _ = protocols.h1.serve_connection(io, service).await;
    }
}

fn main() -> std::io::Result<()> {
    let port: u16 = std::env::var("PORT").ok().and_then(|p| p.parse().ok()).unwrap_or(3000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(common::worker_threads("HYPER_WORKERS"))
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).await?;
        println!("READY {}", listener.local_addr()?.port());
        let mut h1 = http1::Builder::new();
        // Coalesces the responses to a pipelined batch into one write: the ceiling's best case.
        // HYPER_PIPELINE_FLUSH=0 turns it off (fetch-rs corks its writes its own way instead).
        let pipeline_flush = std::env::var("HYPER_PIPELINE_FLUSH").map_or(true, |v| v != "0");
        h1.keep_alive(true).pipeline_flush(pipeline_flush);
        let protocols = Arc::new(Protocols { h1, h2: http2::Builder::new(TokioExecutor::new()) });
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(accepted) => accepted,
                // Out of file descriptors and the like: back off instead of spinning.
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            tokio::spawn(serve_connection(stream, protocols.clone()));
        }
    })
}
