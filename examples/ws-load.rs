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
//!
//! Run with: cargo run --release --example ws-load -- --url ws://127.0.0.1:3000 --mode echo

use futures_util::{SinkExt, StreamExt};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Message;

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
            _ => {
                eprintln!("unknown argument {k}");
                std::process::exit(2);
            }
        }
    }
    a
}

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(url: &str) -> Socket {
    for _ in 0..50 {
        if let Ok((ws, _)) = tokio_tungstenite::connect_async(url).await {
            return ws;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("cannot connect to {url}");
    std::process::exit(1);
}

/// Counts what arrives after the warm-up, until the end.
struct Counter {
    measuring: AtomicBool,
    done: AtomicBool,
    count: AtomicU64,
    errors: AtomicU64,
}

async fn echo(a: &Args, c: Arc<Counter>) {
    let payload = vec![b'x'; a.size];
    let mut tasks = Vec::new();
    for _ in 0..a.connections {
        let ws = connect(&a.url).await;
        let c = c.clone();
        let payload = payload.clone();
        let window = a.window;
        tasks.push(tokio::spawn(async move {
            let (mut tx, mut rx) = ws.split();
            for _ in 0..window {
                if tx.send(Message::binary(payload.clone())).await.is_err() {
                    c.errors.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            }
            while let Some(m) = rx.next().await {
                match m {
                    Ok(Message::Binary(_)) | Ok(Message::Text(_)) => {
                        if c.measuring.load(Ordering::Relaxed) {
                            c.count.fetch_add(1, Ordering::Relaxed);
                        }
                        if c.done.load(Ordering::Relaxed) {
                            break;
                        }
                        if tx.send(Message::binary(payload.clone())).await.is_err() {
                            c.errors.fetch_add(1, Ordering::Relaxed);
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(_) => {
                        c.errors.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                }
            }
            let _ = tx.close().await;
        }));
    }
    run_clock(a, &c).await;
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(2), t).await;
    }
}

async fn fanout(a: &Args, c: Arc<Counter>) {
    let subs = a.subscribers;
    // Deliveries of the publish in flight, per publish sequence, are not tracked one by
    // one: the publisher may run ahead of the slowest subscriber by `window` publishes.
    let delivered = Arc::new(AtomicU64::new(0));
    let progress = Arc::new(Notify::new());
    let mut tasks = Vec::new();
    for _ in 0..subs {
        let ws = connect(&format!("{}/sub", a.url)).await;
        let (c, delivered, progress) = (c.clone(), delivered.clone(), progress.clone());
        tasks.push(tokio::spawn(async move {
            let (_tx, mut rx) = ws.split();
            while let Some(m) = rx.next().await {
                match m {
                    Ok(Message::Binary(_)) | Ok(Message::Text(_)) => {
                        if c.measuring.load(Ordering::Relaxed) {
                            c.count.fetch_add(1, Ordering::Relaxed);
                        }
                        delivered.fetch_add(1, Ordering::Relaxed);
                        progress.notify_one();
                    }
                    Ok(_) => {}
                    Err(_) => {
                        c.errors.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                }
                if c.done.load(Ordering::Relaxed) {
                    return;
                }
            }
        }));
    }
    // Let the server register every subscription before publishing.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let publisher = connect(&format!("{}/pub", a.url)).await;
    let payload = vec![b'x'; a.size];
    let (window, c2) = (a.window as u64, c.clone());
    let pubs = tokio::spawn(async move {
        let (mut tx, _rx) = publisher.split();
        let mut sent: u64 = 0;
        while !c2.done.load(Ordering::Relaxed) {
            let got = delivered.load(Ordering::Relaxed);
            if sent * subs as u64 <= got + window * subs as u64 {
                if tx.send(Message::binary(payload.clone())).await.is_err() {
                    c2.errors.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                sent += 1;
            } else {
                let _ = tokio::time::timeout(Duration::from_millis(50), progress.notified()).await;
            }
        }
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
