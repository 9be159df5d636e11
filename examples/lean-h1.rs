//! Benchmark reference with no JavaScript and no hyper: a lean HTTP/1.1 server on tokio, to
//! measure what hyper's own machinery (dispatcher, `Conn` state machine, `http::Request`,
//! `HeaderMap`s, encoder, the service call) costs a plain request against a path that parses
//! each head in place and answers from one buffer (docs/network-thread.md, "Plain requests,
//! round twenty-four"). Binds 127.0.0.1:$PORT, prints "READY <port>", exits on SIGTERM; the
//! same runtime shape as examples/hyper-baseline.rs (a multi-thread runtime, $LEAN_WORKERS
//! workers, else the cores it may run on: 1 under the bench runner's `taskset -c 0`).
//!
//! Routes: GET (and HEAD) /json and /text as hyper-baseline answers them; anything else 404.
//! What it does as a server must: keep-alive (HTTP/1.1 by default, HTTP/1.0 on request),
//! pipelining (every answer to one read goes out in one write, in order), a `Date` header,
//! `Content-Length` on every answer, request bodies framed by `Content-Length` read and
//! dropped, `Expect: 100-continue` answered, and these refused with the answer and a close:
//! a malformed head, a bare LF, a missing or repeated `Host` on HTTP/1.1, a repeated or
//! malformed `Content-Length` (400); a head over 16 KiB or over 100 header lines (431); a
//! version other than HTTP/1.0 or 1.1 (505); `Transfer-Encoding` (501, see below).
//! A refused or closing connection shuts its write side and drops what the client still sends
//! for up to 2 s, so its answer is not lost to a reset.
//! What it leaves out, where fetch-rs would hand the connection to hyper or keep its own:
//! chunked request bodies, HTTP/2 (h2c prior knowledge), upgrades, header and idle timeouts
//! (hyper-baseline has none either), connection limits, graceful shutdown and statistics.
//!   cargo build --release --example lean-h1
//!   PORT=3000 target/release/examples/lean-h1

mod common;
// The `Date` text, shared with the addon's fast HTTP/1.1 path (its unit test runs here too).
#[path = "../src/imf_date.rs"]
mod imf_date;
use imf_date::imf_fixdate;

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

// The same allocator as the addon and hyper-baseline.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The largest request head, request line included.
const MAX_HEAD: usize = 16 * 1024;
/// Header lines a head may have (hyper's default limit).
const MAX_HEADERS: usize = 100;
/// What one read asks for; the buffer grows past it only for a head split across reads.
const READ_SIZE: usize = 8 * 1024;

/// IMF-fixdate of the current second, rebuilt when the second changes (one connection's
/// answers to one read share a clock reading).
struct Date {
    second: u64,
    text: [u8; 29],
}

impl Date {
    fn new() -> Self {
        let mut d = Date { second: u64::MAX, text: [b' '; 29] };
        d.refresh();
        d
    }

    fn refresh(&mut self) {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        if now != self.second {
            self.second = now;
            self.text = imf_fixdate(now);
        }
    }
}

/// A `Connection` header for an answer: none (HTTP/1.1 keep-alive), `close`, or `keep-alive`
/// (HTTP/1.0 that asked for it).
#[derive(Clone, Copy, PartialEq)]
enum Persist {
    Default,
    Close,
    KeepAlive,
}

/// A complete answer: status line, headers, body (none for HEAD).
fn answer(out: &mut Vec<u8>, date: &Date, status: &[u8], ctype: Option<&[u8]>, body: &[u8], head: bool, conn: Persist) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status);
    out.extend_from_slice(b"\r\n");
    if let Some(t) = ctype {
        out.extend_from_slice(b"content-type: ");
        out.extend_from_slice(t);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"content-length: ");
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut n = body.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
    match conn {
        Persist::Default => {}
        Persist::Close => out.extend_from_slice(b"\r\nconnection: close"),
        Persist::KeepAlive => out.extend_from_slice(b"\r\nconnection: keep-alive"),
    }
    out.extend_from_slice(b"\r\ndate: ");
    out.extend_from_slice(&date.text);
    out.extend_from_slice(b"\r\n\r\n");
    if !head {
        out.extend_from_slice(body);
    }
}

/// What to do with the request just parsed.
enum Verdict {
    /// Answered; the connection goes on (or closes after the answer when `close`), after
    /// `body` bytes of request body are read and dropped.
    Next { used: usize, body: u64, close: bool },
    /// An error answer was written: send what is buffered, then close.
    Refused,
    /// The head is not complete yet.
    Partial,
}

/// Whether a comma-separated header value names `token` (case-insensitive).
fn has_token(value: &[u8], token: &[u8]) -> bool {
    value.split(|&b| b == b',').any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

/// `Content-Length`: digits only, no list, no sign (RFC 9110 8.6).
fn content_length(value: &[u8]) -> Option<u64> {
    if value.is_empty() || value.len() > 19 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(value.iter().fold(0u64, |n, &d| n * 10 + u64::from(d - b'0')))
}

/// Parses the head at the start of `buf` and writes its answer to `out`.
fn serve_one(buf: &[u8], out: &mut Vec<u8>, date: &Date) -> Verdict {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let refuse = |out: &mut Vec<u8>, status: &[u8]| {
        answer(out, date, status, None, b"", false, Persist::Close);
        Verdict::Refused
    };
    let used = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) if n <= MAX_HEAD => n,
        Ok(httparse::Status::Complete(_)) => return refuse(out, b"431 Request Header Fields Too Large"),
        Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => return Verdict::Partial,
        Ok(httparse::Status::Partial) => return refuse(out, b"431 Request Header Fields Too Large"),
        Err(httparse::Error::TooManyHeaders) => return refuse(out, b"431 Request Header Fields Too Large"),
        Err(httparse::Error::Version) => return refuse(out, b"505 HTTP Version Not Supported"),
        Err(_) => return refuse(out, b"400 Bad Request"),
    };
    // httparse takes a bare LF as a line end; a proxy that does not is a smuggling risk.
    let mut at = 0;
    while let Some(i) = memchr::memchr(b'\n', &buf[at..used]) {
        if at + i == 0 || buf[at + i - 1] != b'\r' {
            return refuse(out, b"400 Bad Request");
        }
        at += i + 1;
    }
    let (Some(method), Some(target), Some(version)) = (req.method, req.path, req.version) else {
        return refuse(out, b"400 Bad Request");
    };
    let mut hosts = 0;
    let mut length = None;
    let mut close = version == 0;
    let mut expect_continue = false;
    for h in req.headers.iter() {
        let name = h.name.as_bytes();
        if name.eq_ignore_ascii_case(b"host") {
            hosts += 1;
        } else if name.eq_ignore_ascii_case(b"content-length") {
            match (length, content_length(h.value)) {
                (None, Some(n)) => length = Some(n),
                _ => return refuse(out, b"400 Bad Request"),
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            // Chunked bodies are the general path's (hyper's) to frame.
            return refuse(out, b"501 Not Implemented");
        } else if name.eq_ignore_ascii_case(b"connection") {
            if has_token(h.value, b"close") {
                close = true;
            } else if version == 0 && has_token(h.value, b"keep-alive") {
                close = false;
            }
        } else if name.eq_ignore_ascii_case(b"expect") {
            if !h.value.eq_ignore_ascii_case(b"100-continue") {
                return refuse(out, b"417 Expectation Failed");
            }
            expect_continue = version == 1;
        }
    }
    if version == 1 && hosts != 1 {
        return refuse(out, b"400 Bad Request");
    }
    let body = length.unwrap_or(0);
    if expect_continue && body > 0 {
        out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
    }
    let conn = match (close, version) {
        (true, _) => Persist::Close,
        (false, 0) => Persist::KeepAlive,
        (false, _) => Persist::Default,
    };
    let path = target.split_once('?').map_or(target, |(p, _)| p);
    let head = method == "HEAD";
    match (method, path) {
        ("GET" | "HEAD", "/json") => {
            answer(out, date, b"200 OK", Some(b"application/json"), b"{\"ok\":true}", head, conn)
        }
        ("GET" | "HEAD", "/text") => {
            answer(out, date, b"200 OK", Some(b"text/plain;charset=UTF-8"), b"Hello, World!", head, conn)
        }
        _ => answer(out, date, b"404 Not Found", Some(b"text/plain;charset=UTF-8"), b"Not Found", head, conn),
    }
    Verdict::Next { used, body, close }
}

async fn serve_connection(mut stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let mut buf: Vec<u8> = Vec::with_capacity(READ_SIZE);
    let mut out: Vec<u8> = Vec::with_capacity(READ_SIZE);
    let mut date = Date::new();
    // Request body bytes still to drop before the next head.
    let mut skip: u64 = 0;
    loop {
        if buf.capacity() - buf.len() < READ_SIZE / 2 {
            buf.reserve(READ_SIZE);
        }
        match stream.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        date.refresh();
        let mut start = 0;
        let mut done = false;
        loop {
            if skip > 0 {
                let take = skip.min((buf.len() - start) as u64);
                skip -= take;
                start += take as usize;
                if skip > 0 {
                    break;
                }
            }
            if start == buf.len() {
                break;
            }
            match serve_one(&buf[start..], &mut out, &date) {
                Verdict::Next { used, body, close } => {
                    start += used;
                    skip = body;
                    if close {
                        done = true;
                        break;
                    }
                }
                Verdict::Refused => {
                    done = true;
                    break;
                }
                Verdict::Partial => break,
            }
        }
        // The unparsed rest (a split head) moves to the front; usually nothing is left.
        buf.drain(..start);
        if !out.is_empty() {
            if stream.write_all(&out).await.is_err() {
                return;
            }
            out.clear();
        }
        if done {
            linger(&mut stream, &mut buf).await;
            return;
        }
    }
}

/// Ends the connection after its last answer: the write side first, then what the client still
/// sends is read and dropped for a while, so that closing with unread bytes (which sends a
/// reset) does not discard the answer before the client has read it.
async fn linger(stream: &mut TcpStream, buf: &mut Vec<u8>) {
    if stream.shutdown().await.is_err() {
        return;
    }
    let drain = async {
        let mut total = 0usize;
        while total < 1 << 20 {
            buf.clear();
            match stream.read_buf(buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => total += n,
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), drain).await;
}

fn main() -> std::io::Result<()> {
    let port: u16 = std::env::var("PORT").ok().and_then(|p| p.parse().ok()).unwrap_or(3000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(common::worker_threads("LEAN_WORKERS"))
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).await?;
        println!("READY {}", listener.local_addr()?.port());
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(accepted) => accepted,
                // Out of file descriptors and the like: back off instead of spinning.
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            tokio::spawn(serve_connection(stream));
        }
    })
}
