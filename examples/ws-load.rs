//! WebSocket load generator for bench/ws.mjs: many connections on a multi-threaded tokio
//! runtime, so the client is never what limits the result. Prints one JSON line.
//!
//! Modes:
//! - `echo`: each of `--connections` sockets keeps `--window` messages of `--size` bytes in
//!   flight against an echo server at `--url`; counts echoed messages per second.
//! - `fanout`: `--subscribers` sockets connect to `--url`/sub (the server subscribes them to
//!   one topic), one publisher to `--url`/pub; each message the publisher sends makes the
//!   server publish one message to every subscriber. The publisher keeps `--window`
//!   publishes in flight (counted as delivered once every subscriber had it); counts
//!   deliveries per second.
//! - `echo` with `--messages N` (for bench/ws-instructions.mjs): a counted run instead of a
//!   timed one. Each connection first echoes `--warm` messages, then the generator prints
//!   `WARM` and waits for a line on stdin; then each connection echoes exactly N messages,
//!   the generator prints `MEASURED` and waits for another line before it closes. Whoever
//!   drives it (a profiler's control) knows the exact count of messages between the two.
//! - `fanout` with `--messages N`: the same for a fan-out. The publisher sends `--warm`
//!   publishes (keeping `--window` in flight), waits until every subscriber had them all,
//!   prints `WARM` and waits; then exactly N publishes, delivered to every subscriber, then
//!   `MEASURED`. The JSON line counts deliveries (N x subscribers).
//!
//! The client side of the protocol is written by hand and kept to the least work per
//! message, so that one load core can outrun any server on one core: frames are masked
//! once up front, every frame a read brings is counted with a header scan (no message is
//! built), and the replies to them go out in one write.
//!
//! Run with: cargo run --release --example ws-load -- --url ws://127.0.0.1:3000 --mode echo

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;

struct Args {
    url: String,
    mode: String,
    connections: usize,
    subscribers: usize,
    size: usize,
    window: usize,
    duration: f64,
    warmup: f64,
    threads: usize,
    /// Counted mode: messages per connection (0: a timed run).
    messages: usize,
    /// Counted mode: warm-up messages per connection.
    warm: usize,
    /// Text messages (ASCII) instead of binary ones (`--text`).
    text: bool,
}

fn args() -> Args {
    let mut a = Args {
        url: "ws://127.0.0.1:3000".into(),
        mode: "echo".into(),
        connections: 100,
        subscribers: 1000,
        size: 64,
        window: 4,
        duration: 5.0,
        warmup: 1.0,
        threads: 1,
        messages: 0,
        warm: 200,
        text: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let v = it.next().unwrap_or_default();
        match k.as_str() {
            "--url" => a.url = v,
            "--mode" => a.mode = v,
            "--connections" => a.connections = v.parse().unwrap_or(a.connections),
            "--subscribers" => a.subscribers = v.parse().unwrap_or(a.subscribers),
            "--size" => a.size = v.parse().unwrap_or(a.size),
            "--window" => a.window = v.parse().unwrap_or(a.window).max(1),
            "--duration" => a.duration = v.parse().unwrap_or(a.duration),
            "--warmup" => a.warmup = v.parse().unwrap_or(a.warmup),
            "--threads" => a.threads = v.parse().unwrap_or(a.threads).max(1),
            "--messages" => a.messages = v.parse().unwrap_or(a.messages),
            "--warm" => a.warm = v.parse().unwrap_or(a.warm),
            "--text" => a.text = v != "false",
            _ => {
                eprintln!("unknown argument {k}");
                std::process::exit(2);
            }
        }
    }
    a
}

/// A connected WebSocket: the TCP stream after the 101, and what arrived with the 101.
struct Socket {
    stream: TcpStream,
    early: Vec<u8>,
}

/// Opens `url` (`ws://host:port/path`) and does the opening handshake (RFC 6455
/// section 4.1), retrying while the server starts.
async fn connect(url: &str) -> Socket {
    let rest = url.strip_prefix("ws://").unwrap_or(url);
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    for _ in 0..50 {
        if let Ok(s) = handshake(host, path).await {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("cannot connect to {url}");
    std::process::exit(1);
}

async fn handshake(host: &str, path: &str) -> std::io::Result<Socket> {
    let mut stream = TcpStream::connect(host).await?;
    stream.set_nodelay(true)?;
    // The key is the RFC's example: the server's answer is not checked beyond its status.
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    stream.write_all(req.as_bytes()).await?;
    let mut buf = Vec::with_capacity(1024);
    loop {
        if stream.read_buf(&mut buf).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            if !buf.starts_with(b"HTTP/1.1 101") {
                return Err(std::io::Error::other("no 101"));
            }
            return Ok(Socket { stream, early: buf[end + 4..].to_vec() });
        }
    }
}

/// A masked binary frame of `size` bytes, as a client must send it.
fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    const MASK: [u8; 4] = [0x11, 0x22, 0x33, 0x44];
    let mut f = vec![0x80 | opcode];
    let len = payload.len();
    if len < 126 {
        f.push(0x80 | len as u8);
    } else if len < 65536 {
        f.push(0x80 | 126);
        f.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        f.push(0x80 | 127);
        f.extend_from_slice(&(len as u64).to_be_bytes());
    }
    f.extend_from_slice(&MASK);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
    f
}

/// What a scan of received bytes found.
struct Scan {
    /// Whole data messages (final data frames).
    messages: u64,
    /// Bytes of whole frames, to drop from the front of the buffer.
    used: usize,
    /// A close frame came.
    closed: bool,
}

/// Counts the whole frames at the front of `buf` without building them.
fn scan(buf: &[u8]) -> Scan {
    let mut s = Scan { messages: 0, used: 0, closed: false };
    loop {
        let b = &buf[s.used..];
        if b.len() < 2 {
            return s;
        }
        let (mut len, mut head) = ((b[1] & 0x7f) as usize, 2);
        if len == 126 {
            if b.len() < 4 {
                return s;
            }
            len = u16::from_be_bytes([b[2], b[3]]) as usize;
            head = 4;
        } else if len == 127 {
            if b.len() < 10 {
                return s;
            }
            len = u64::from_be_bytes([b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9]]) as usize;
            head = 10;
        }
        if b[1] & 0x80 != 0 {
            head += 4;
        }
        if b.len() < head + len {
            return s;
        }
        let opcode = b[0] & 0x0f;
        if opcode == 8 {
            s.closed = true;
        } else if b[0] & 0x80 != 0 && opcode < 8 {
            s.messages += 1;
        }
        s.used += head + len;
    }
}

/// Reads frames into `buf` (what is left of a frame stays at its front); returns the
/// scan of what arrived, or `None` when the connection ended or failed.
async fn read_frames(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Scan> {
    loop {
        if buf.capacity() - buf.len() < 16 * 1024 {
            buf.reserve(64 * 1024);
        }
        match stream.read_buf(buf).await {
            Ok(0) | Err(_) => return None,
            Ok(_) => {}
        }
        let s = scan(buf);
        buf.drain(..s.used);
        if s.messages > 0 || s.closed {
            return Some(s);
        }
    }
}

/// Counts what arrives after the warm-up, until the end.
struct Counter {
    measuring: AtomicBool,
    done: AtomicBool,
    count: AtomicU64,
    errors: AtomicU64,
}

async fn echo(a: &Args, c: Arc<Counter>) {
    let frame = client_frame(if a.text { 1 } else { 2 }, &vec![b'x'; a.size]);
    // `window` frames back to back: n echoes are answered with the first n of them.
    let frames: Arc<Vec<u8>> = Arc::new(frame.repeat(a.window));
    let mut tasks = Vec::new();
    for _ in 0..a.connections {
        let Socket { mut stream, early } = connect(&a.url).await;
        let (c, frames, flen) = (c.clone(), frames.clone(), frame.len());
        tasks.push(tokio::spawn(async move {
            let mut buf = early;
            if stream.write_all(&frames).await.is_err() {
                c.errors.fetch_add(1, Ordering::Relaxed);
                return;
            }
            loop {
                let Some(s) = read_frames(&mut stream, &mut buf).await else {
                    if !c.done.load(Ordering::Relaxed) {
                        c.errors.fetch_add(1, Ordering::Relaxed);
                    }
                    return;
                };
                if c.measuring.load(Ordering::Relaxed) {
                    c.count.fetch_add(s.messages, Ordering::Relaxed);
                }
                if c.done.load(Ordering::Relaxed) || s.closed {
                    break;
                }
                // At most `window` are in flight, so at most that many came back.
                let n = (s.messages as usize).min(frames.len() / flen);
                if stream.write_all(&frames[..n * flen]).await.is_err() {
                    c.errors.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            }
            // A close frame with 1000, then the end of the connection.
            let _ = stream.write_all(&client_frame(8, &1000u16.to_be_bytes())).await;
        }));
    }
    run_clock(a, &c).await;
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(2), t).await;
    }
}

/// Echoes exactly `n` messages on `stream`, keeping up to `frames` in flight.
async fn echo_exactly(stream: &mut TcpStream, buf: &mut Vec<u8>, frames: &[u8], flen: usize, n: usize) -> bool {
    let window = frames.len() / flen;
    let mut sent = n.min(window);
    if stream.write_all(&frames[..sent * flen]).await.is_err() {
        return false;
    }
    let mut received = 0;
    while received < n {
        let Some(s) = read_frames(stream, buf).await else { return false };
        if s.closed {
            return false;
        }
        received += s.messages as usize;
        let more = (s.messages as usize).min(n - sent);
        if more > 0 {
            if stream.write_all(&frames[..more * flen]).await.is_err() {
                return false;
            }
            sent += more;
        }
    }
    true
}

/// Waits for a line on stdin (the driver's go-ahead), after printing `what`.
async fn handshake_with_driver(what: &str) {
    println!("{what}");
    let _ = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        let _ = std::io::stdin().read_line(&mut line);
    })
    .await;
}

/// The counted echo (`--messages`): warm-up, WARM, N messages per connection, MEASURED.
async fn echo_counted(a: &Args, c: Arc<Counter>) {
    let frame = client_frame(if a.text { 1 } else { 2 }, &vec![b'x'; a.size]);
    let frames: Arc<Vec<u8>> = Arc::new(frame.repeat(a.window));
    let flen = frame.len();
    let mut sockets = Vec::new();
    for _ in 0..a.connections {
        sockets.push(connect(&a.url).await);
    }
    // Each phase runs on every connection at once, as the timed run does.
    let phase = |sockets: Vec<Socket>, n: usize| {
        let tasks: Vec<_> = sockets
            .into_iter()
            .map(|Socket { mut stream, early }| {
                let (frames, c) = (frames.clone(), c.clone());
                tokio::spawn(async move {
                    let mut buf = early;
                    if !echo_exactly(&mut stream, &mut buf, &frames, flen, n).await {
                        c.errors.fetch_add(1, Ordering::Relaxed);
                    }
                    Socket { stream, early: buf }
                })
            })
            .collect();
        async move {
            let mut back = Vec::new();
            for t in tasks {
                if let Ok(s) = t.await {
                    back.push(s);
                }
            }
            back
        }
    };
    let sockets = phase(sockets, a.warm).await;
    handshake_with_driver("WARM").await;
    let started = Instant::now();
    let mut sockets = phase(sockets, a.messages).await;
    let seconds = started.elapsed().as_secs_f64();
    handshake_with_driver("MEASURED").await;
    for s in &mut sockets {
        let _ = s.stream.write_all(&client_frame(8, &1000u16.to_be_bytes())).await;
    }
    let n = (a.messages * sockets.len()) as u64;
    println!(
        "{{\"mode\":\"echo\",\"messages\":{},\"seconds\":{:.3},\"perSecond\":{:.1},\"errors\":{}}}",
        n,
        seconds,
        n as f64 / seconds,
        c.errors.load(Ordering::Relaxed)
    );
}

async fn fanout(a: &Args, c: Arc<Counter>) {
    let subs = a.subscribers;
    // Deliveries of the publish in flight, per publish sequence, are not tracked one by
    // one: the publisher may run ahead of the slowest subscriber by `window` publishes.
    let delivered = Arc::new(AtomicU64::new(0));
    let progress = Arc::new(Notify::new());
    let mut tasks = Vec::new();
    for _ in 0..subs {
        let Socket { mut stream, early } = connect(&format!("{}/sub", a.url)).await;
        let (c, delivered, progress) = (c.clone(), delivered.clone(), progress.clone());
        tasks.push(tokio::spawn(async move {
            let mut buf = early;
            while let Some(s) = read_frames(&mut stream, &mut buf).await {
                if c.measuring.load(Ordering::Relaxed) {
                    c.count.fetch_add(s.messages, Ordering::Relaxed);
                }
                delivered.fetch_add(s.messages, Ordering::Relaxed);
                progress.notify_one();
                if c.done.load(Ordering::Relaxed) || s.closed {
                    return;
                }
            }
            if !c.done.load(Ordering::Relaxed) {
                c.errors.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    // Let the server register every subscription before publishing.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let Socket { stream: mut publisher, .. } = connect(&format!("{}/pub", a.url)).await;
    let frame = client_frame(if a.text { 1 } else { 2 }, &vec![b'x'; a.size]);
    if a.messages > 0 {
        // Counted: every publish of a phase delivered everywhere before the phase ends.
        let mut sent: u64 = 0;
        let mut phase = async |n: usize| -> bool {
            let end = sent + n as u64;
            while delivered.load(Ordering::Relaxed) < end * subs as u64 {
                let got = delivered.load(Ordering::Relaxed);
                if sent < end && sent * subs as u64 <= got + a.window as u64 * subs as u64 {
                    if publisher.write_all(&frame).await.is_err() {
                        return false;
                    }
                    sent += 1;
                } else if tokio::time::timeout(Duration::from_secs(30), progress.notified()).await.is_err() {
                    return false;
                }
            }
            true
        };
        let warm_ok = phase(a.warm).await;
        handshake_with_driver("WARM").await;
        let started = Instant::now();
        let ok = warm_ok && phase(a.messages).await;
        let seconds = started.elapsed().as_secs_f64();
        handshake_with_driver("MEASURED").await;
        c.done.store(true, Ordering::Relaxed);
        let _ = publisher.write_all(&client_frame(8, &1000u16.to_be_bytes())).await;
        let n = (a.messages * subs) as u64;
        let errors = c.errors.load(Ordering::Relaxed) + u64::from(!ok);
        println!(
            "{{\"mode\":\"fanout\",\"messages\":{},\"seconds\":{:.3},\"perSecond\":{:.1},\"errors\":{}}}",
            n,
            seconds,
            n as f64 / seconds,
            errors
        );
        for t in tasks {
            t.abort();
        }
        return;
    }
    let (window, c2) = (a.window as u64, c.clone());
    let pubs = tokio::spawn(async move {
        let mut sent: u64 = 0;
        while !c2.done.load(Ordering::Relaxed) {
            let got = delivered.load(Ordering::Relaxed);
            if sent * subs as u64 <= got + window * subs as u64 {
                if publisher.write_all(&frame).await.is_err() {
                    c2.errors.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                sent += 1;
            } else {
                let _ = tokio::time::timeout(Duration::from_millis(50), progress.notified()).await;
            }
        }
        let _ = publisher.write_all(&client_frame(8, &1000u16.to_be_bytes())).await;
    });
    run_clock(a, &c).await;
    let _ = tokio::time::timeout(Duration::from_secs(2), pubs).await;
    for t in tasks {
        t.abort();
    }
}

async fn run_clock(a: &Args, c: &Counter) {
    tokio::time::sleep(Duration::from_secs_f64(a.warmup)).await;
    c.measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(a.duration)).await;
    c.measuring.store(false, Ordering::Relaxed);
    let seconds = started.elapsed().as_secs_f64();
    c.done.store(true, Ordering::Relaxed);
    let n = c.count.load(Ordering::Relaxed);
    println!(
        "{{\"mode\":\"{}\",\"messages\":{},\"seconds\":{:.3},\"perSecond\":{:.1},\"errors\":{}}}",
        a.mode,
        n,
        seconds,
        n as f64 / seconds,
        c.errors.load(Ordering::Relaxed)
    );
}

fn main() {
    let a = args();
    let rt = match tokio::runtime::Builder::new_multi_thread().worker_threads(a.threads).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start tokio: {e}");
            std::process::exit(1);
        }
    };
    let c = Arc::new(Counter {
        measuring: AtomicBool::new(false),
        done: AtomicBool::new(false),
        count: AtomicU64::new(0),
        errors: AtomicU64::new(0),
    });
    rt.block_on(async {
        match a.mode.as_str() {
            "echo" if a.messages > 0 => echo_counted(&a, c).await,
            "echo" => echo(&a, c).await,
            "fanout" => fanout(&a, c).await,
            m => {
                eprintln!("unknown mode {m}");
                std::process::exit(2);
            }
        }
    });
    // Sockets still open are dropped with the runtime.
    rt.shutdown_timeout(Duration::from_millis(200));
}
