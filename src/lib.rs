//! fetch-rs's native half: the crate root. The JS-facing surface is two lists you can grep:
//! `calls.rs` (every per-request call, with its table of arguments, ownership and thread)
//! and `registry.rs` (`NativeServer`, a server's life: listen, close, stats, garbage
//! collection); what both languages agree on (records, codes) is `wire.rs`, and `error.rs`
//! is how an error reaches JS. `lib/native.ts` is the one TS file that binds them.
//!
//! A server is a `NativeServer` object with a `handle`; every per-request call is a plain
//! function bound to that handle (`calls(handle).respondText(id, …)`: the handle is the
//! function's data), because a function is several times cheaper to call than a class
//! method.
//!
//! | `NativeServer` | arguments | ownership and thread |
//! |---|---|---|
//! | `new NativeServer(options)`, `.handle` | validated options | JS thread; nothing starts |
//! | `.listen(doorbell)` | fn rung with no arguments when events wait | binds now, starts tokio; returns the port |
//! | `.close(graceMs)`, `.forceClose()`, `.shutdown()` | | drain then force; a CLOSED record follows; then release |
//! | `.setRef(on)` | boolean | JS thread; whether the listening server keeps Node's loop alive |
//! | `.setTls(entries)` | PEM entries | new TLS connections use them; throws `ERR_TLS_CONFIG` and keeps the old ones |
//! | `.stats()` | | `[activeConnections, totalRequests, requestsPerSecond, avgLatencyMs, pendingRequests, tlsHandshakes, tlsHandshakeFailures, webSockets]` |
//!
//! Module map: the network side is `listener.rs` (accept), `connection.rs` (one
//! connection), `request.rs`/`response.rs`/`body.rs` (messages), `bridge.rs` (the queue to
//! JS); the JS thread's side is `js_side.rs` (drain), `slab.rs` (requests by id),
//! `core.rs` (a server's operations), `lending.rs` (zero-copy bodies). WebSocket:
//! `websocket.rs` (handshake, framing, permessage-deflate, the task of one socket) and
//! `pubsub.rs` (the JS thread's sockets by id and their topics).

// Tests may unwrap: a panic there is a failed test, not a crashed server.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]
// napi-rs registers the exports only outside `cfg(test)`, so a test build sees the whole
// napi surface, and what only it reaches, as unused.
#![cfg_attr(test, allow(dead_code))]

mod alloc;
mod body;
mod bridge;
mod calls;
mod clock;
mod connection;
mod core;
mod cork;
mod deadline;
mod diagnostics;
mod direct;
mod error;
mod fast_h1;
mod h1_strict;
mod imf_date;
mod in_thread;
mod js_side;
mod lending;
mod listener;
mod options;
mod pubsub;
mod records;
mod registry;
mod request;
mod response;
mod slab;
mod stats;
mod target;
mod tls;
mod websocket;
mod wire;
mod woken;
