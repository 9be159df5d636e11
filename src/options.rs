//! Server options as the addon receives them: defaults, validation and clear errors.

use crate::error::{BridgeError, BridgeResult, ErrorKind};
use napi_derive::napi;
use std::net::IpAddr;
use std::time::Duration;

/// Options for the native server. The JS `Server` validates them first and passes
/// plain numbers; every field is checked again here.
#[napi(object)]
#[derive(Debug, Clone, Default)]
pub struct NativeOptions {
    pub host: Option<String>,
    pub port: Option<u32>,
    /// A Unix domain socket's path to listen on instead of `host` and `port` (a leading NUL:
    /// a Linux abstract name).
    pub unix: Option<String>,
    pub reuse_port: Option<bool>,
    /// An IPv6 host (`::`) without IPv4 (`IPV6_V6ONLY`); no effect on an IPv4 host.
    pub ipv6_only: Option<bool>,
    pub backlog: Option<u32>,
    pub max_connections: Option<u32>,
    pub max_body_size: Option<f64>,
    pub max_header_size: Option<u32>,
    pub max_pending_requests: Option<u32>,
    pub worker_threads: Option<u32>,
    pub header_timeout_ms: Option<f64>,
    pub idle_timeout_ms: Option<f64>,
    pub timeout_ms: Option<f64>,
    pub ws_max_payload_length: Option<f64>,
    pub ws_idle_timeout_ms: Option<f64>,
    pub ws_backpressure_limit: Option<f64>,
    pub ws_close_on_backpressure_limit: Option<bool>,
    pub ws_per_message_deflate: Option<bool>,
    /// Certificates: one entry per host name (SNI), one without `serverName` the default.
    pub tls: Option<Vec<crate::tls::NativeTls>>,
    /// Offer HTTP/2 (ALPN `h2`, and h2c by preface); false: HTTP/1.1 only.
    pub http2: Option<bool>,
    pub tls_handshake_timeout_ms: Option<f64>,
    pub http2_max_concurrent_streams: Option<u32>,
    pub http2_window_size: Option<u32>,
}

/// Validated configuration used by the listener and the connections.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub host: IpAddr,
    pub port: u16,
    /// Listen on this Unix domain socket instead (`listener::bind`); checked there, where a
    /// bad path is an `ERR_LISTEN` naming it.
    pub unix: Option<String>,
    pub reuse_port: bool,
    pub ipv6_only: bool,
    pub backlog: i32,
    pub max_connections: usize,
    pub max_body_size: u64,
    pub max_header_size: usize,
    pub max_pending_requests: usize,
    /// 0: no worker threads, the network runs on the JS thread (`in_thread.rs`).
    pub worker_threads: usize,
    /// `workerThreads` was given (else it is the default for the machine's cores).
    pub worker_threads_set: bool,
    pub header_timeout: Option<Duration>,
    /// A connection with no request in progress and no bytes either way for this long is closed.
    pub idle_timeout: Option<Duration>,
    /// Time the listener has to produce a response.
    pub request_timeout: Option<Duration>,
    /// Checked when the server listens (`ERR_TLS_CONFIG` from `listen()`), not here.
    pub tls: Option<Vec<crate::tls::NativeTls>>,
    pub http2: bool,
    pub tls_handshake_timeout: Option<Duration>,
    pub http2_max_concurrent_streams: u32,
    /// HTTP/2 flow-control window, each stream's and the connection's: request body bytes a
    /// client may send before the handlers read them.
    pub http2_window_size: u32,
    /// Defaults of every WebSocket (the `websocket` options).
    pub ws: WsDefaults,
}

/// The server's WebSocket options, each socket's defaults.
#[derive(Debug, Clone, Copy)]
pub struct WsDefaults {
    /// Largest message; a larger one closes the socket with 1009.
    pub max_payload: usize,
    /// A socket silent this long is pinged, and closed if still silent as long again.
    pub idle_timeout: Option<Duration>,
    /// Bytes a socket's send queue holds before `send` drops messages.
    pub backpressure_limit: usize,
    pub close_on_backpressure_limit: bool,
    /// Offer permessage-deflate when the client asks for it.
    pub per_message_deflate: bool,
}

/// Request bodies at most this large (with a declared length) are read before the
/// request reaches JS, so `text()` and `json()` resolve without another round trip.
/// Above it the body is streamed on demand. 64 KiB is where copying stops being
/// cheaper than a second hop (DESIGN.md section 2, rule 7).
pub const PRECOLLECT_LIMIT: u64 = 64 * 1024;

fn invalid(msg: String) -> BridgeError {
    BridgeError::new(ErrorKind::InvalidOption, msg)
}

fn duration_ms(name: &str, v: Option<f64>, default_ms: f64) -> BridgeResult<Option<Duration>> {
    let ms = v.unwrap_or(default_ms);
    if !ms.is_finite() || ms < 0.0 {
        return Err(invalid(format!("{name} must be a non-negative number of milliseconds, got {ms}")));
    }
    Ok(if ms == 0.0 { None } else { Some(Duration::from_secs_f64(ms / 1000.0)) })
}

/// A positive byte count (at most 2^53), or the default.
pub(crate) fn bytes(name: &str, v: Option<f64>, default: f64) -> BridgeResult<usize> {
    let n = v.unwrap_or(default);
    if !n.is_finite() || n < 1.0 || n.fract() != 0.0 || n > 9007199254740991.0 {
        return Err(invalid(format!("{name} must be a positive integer, got {n}")));
    }
    Ok(n.min(usize::MAX as f64) as usize)
}

/// The default number of tokio worker threads: the JS thread is the bottleneck, so
/// leave it a core of its own, and more than four workers rarely help one JS thread.
/// With one core (the process's CPU affinity or its cgroup's CPU quota), none where the
/// network can run on the JS thread (Linux): a worker thread could only take turns with
/// the JS thread on that core, and handing each batch over costs two wake-ups
/// (docs/network-thread.md, "The default on one core").
pub fn default_worker_threads() -> usize {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    worker_threads_for(cores)
}

fn worker_threads_for(cores: usize) -> usize {
    if cores <= 1 && cfg!(target_os = "linux") {
        return 0;
    }
    cores.saturating_sub(1).clamp(1, 4)
}

impl ServerConfig {
    pub fn from_options(o: &NativeOptions) -> BridgeResult<Self> {
        let host_str = o.host.clone().unwrap_or_else(|| "0.0.0.0".to_string());
        let host_trimmed = host_str.trim_start_matches('[').trim_end_matches(']');
        let host: IpAddr = if host_trimmed == "localhost" {
            IpAddr::from([127, 0, 0, 1])
        } else {
            host_trimmed
                .parse()
                .map_err(|_| invalid(format!("host must be an IP address or \"localhost\", got {host_str:?}")))?
        };
        let port = o.port.unwrap_or(0);
        if port > 65535 {
            return Err(invalid(format!("port must be between 0 and 65535, got {port}")));
        }
        let max_body = o.max_body_size.unwrap_or(10.0 * 1024.0 * 1024.0);
        if !max_body.is_finite() || max_body < 0.0 || max_body.fract() != 0.0 {
            return Err(invalid(format!("maxBodySize must be a non-negative integer, got {max_body}")));
        }
        let positive = |name: &str, v: Option<u32>, d: u32| -> BridgeResult<u32> {
            let v = v.unwrap_or(d);
            if v == 0 {
                return Err(invalid(format!("{name} must be a positive integer")));
            }
            Ok(v)
        };
        let unix = match &o.unix {
            Some(path) if path.is_empty() => return Err(invalid("unix must be a non-empty path".to_string())),
            // The kernel would end the path at the NUL: another path than the one given.
            Some(path) if path.bytes().skip(1).any(|b| b == 0) => {
                return Err(invalid(format!("unix must not contain a NUL byte but as its first, got {path:?}")))
            }
            // Every process bound to one port shares its connections; a Unix socket path is
            // one listener's.
            Some(_) if o.reuse_port == Some(true) => {
                return Err(invalid(
                    "reusePort does not apply to a Unix socket: one socket file has one listener".into(),
                ))
            }
            Some(_) if o.ipv6_only == Some(true) => {
                return Err(invalid("ipv6Only does not apply to a Unix socket".into()))
            }
            other => other.clone(),
        };
        Ok(ServerConfig {
            host,
            port: port as u16,
            unix,
            reuse_port: o.reuse_port.unwrap_or(false),
            ipv6_only: o.ipv6_only.unwrap_or(false),
            backlog: positive("backlog", o.backlog, 2048)?.min(i32::MAX as u32) as i32,
            max_connections: positive("maxConnections", o.max_connections, 65536)? as usize,
            max_body_size: max_body as u64,
            max_header_size: positive("maxHeaderSize", o.max_header_size, 16 * 1024)? as usize,
            max_pending_requests: positive("maxPendingRequests", o.max_pending_requests, 16384)? as usize,
            worker_threads: match o.worker_threads {
                // 0: the network runs on the JS thread (`in_thread.rs`).
                Some(n) => n as usize,
                None => default_worker_threads(),
            },
            worker_threads_set: o.worker_threads.is_some(),
            header_timeout: duration_ms("headerTimeout", o.header_timeout_ms, 30_000.0)?,
            idle_timeout: duration_ms("idleTimeout", o.idle_timeout_ms, 10_000.0)?,
            request_timeout: duration_ms("timeout", o.timeout_ms, 30_000.0)?,
            ws: WsDefaults {
                max_payload: bytes("websocket.maxPayloadLength", o.ws_max_payload_length, 16.0 * 1024.0 * 1024.0)?,
                idle_timeout: duration_ms("websocket.idleTimeout", o.ws_idle_timeout_ms, 120_000.0)?,
                backpressure_limit: bytes(
                    "websocket.backpressureLimit",
                    o.ws_backpressure_limit,
                    16.0 * 1024.0 * 1024.0,
                )?,
                close_on_backpressure_limit: o.ws_close_on_backpressure_limit.unwrap_or(false),
                per_message_deflate: o.ws_per_message_deflate.unwrap_or(false),
            },
            tls: o.tls.clone(),
            http2: o.http2.unwrap_or(true),
            tls_handshake_timeout: duration_ms("tlsHandshakeTimeout", o.tls_handshake_timeout_ms, 10_000.0)?,
            // 128: what nginx and hyper's own server default to; enough for a browser page.
            http2_max_concurrent_streams: positive("http2MaxConcurrentStreams", o.http2_max_concurrent_streams, 128)?,
            http2_window_size: window_size(o.http2_window_size)?,
        })
    }
}

/// 1 MiB: hyper's default, what one stream needs to upload at 50 MiB/s over a 20 ms round
/// trip (docs/network-thread.md, "HTTP/2 with large bodies, round nineteen").
pub const HTTP2_WINDOW_SIZE: u32 = 1024 * 1024;

/// `http2WindowSize`: from the spec's initial window (65,535, below which a connection's
/// window cannot go) to its largest (2^31 - 1, RFC 9113 section 6.9.1).
fn window_size(v: Option<u32>) -> BridgeResult<u32> {
    match v {
        None => Ok(HTTP2_WINDOW_SIZE),
        Some(n) if (65_535..=i32::MAX as u32).contains(&n) => Ok(n),
        Some(n) => Err(invalid(format!("http2WindowSize must be between 65535 and 2147483647, got {n}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        let c = ServerConfig::from_options(&NativeOptions::default()).unwrap();
        assert_eq!(c.port, 0);
        assert_eq!(c.max_body_size, 10 * 1024 * 1024);
        assert_eq!(c.worker_threads, default_worker_threads());
    }

    #[test]
    fn worker_threads_by_cores() {
        let one = if cfg!(target_os = "linux") { 0 } else { 1 };
        assert_eq!([1, 2, 3, 5, 64].map(worker_threads_for), [one, 1, 2, 4, 4]);
    }

    #[test]
    fn out_of_range_port_is_rejected() {
        let o = NativeOptions { port: Some(70000), ..Default::default() };
        let e = ServerConfig::from_options(&o).unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidOption);
    }

    #[test]
    fn hostnames_other_than_localhost_are_rejected() {
        let o = NativeOptions { host: Some("example.com".into()), ..Default::default() };
        assert!(ServerConfig::from_options(&o).is_err());
        let o = NativeOptions { host: Some("::1".into()), ..Default::default() };
        assert!(ServerConfig::from_options(&o).is_ok());
    }

    #[test]
    fn unix_paths_are_checked() {
        let unix = |p: &str, reuse_port| NativeOptions { unix: Some(p.into()), reuse_port, ..Default::default() };
        assert!(ServerConfig::from_options(&unix("/tmp/a.sock", None)).is_ok());
        assert!(ServerConfig::from_options(&unix("\0abstract", None)).is_ok());
        let ipv6_only = NativeOptions { ipv6_only: Some(true), ..unix("/tmp/a.sock", None) };
        for bad in [unix("", None), unix("/tmp/a\0b", None), unix("/tmp/a.sock", Some(true)), ipv6_only] {
            assert_eq!(ServerConfig::from_options(&bad).unwrap_err().kind, ErrorKind::InvalidOption);
        }
    }

    #[test]
    fn zero_timeout_disables_it() {
        let o = NativeOptions { idle_timeout_ms: Some(0.0), ..Default::default() };
        assert!(ServerConfig::from_options(&o).unwrap().idle_timeout.is_none());
    }
}
