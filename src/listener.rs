//! Binding (socket2: reuse-port, backlog), the accept loop and the connection limit.

use crate::connection::{self, Phase, ServerShared};
use crate::error::{BridgeError, BridgeResult, ErrorKind};
use crate::options::ServerConfig;
use socket2::{Domain, Protocol, Socket, Type};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Semaphore};

/// Binds synchronously, so `listen()` knows the port before it returns.
pub fn bind(config: &ServerConfig) -> BridgeResult<std::net::TcpListener> {
    let addr = SocketAddr::new(config.host, config.port);
    let err = |e: io::Error| BridgeError::new(ErrorKind::Listen, format!("cannot listen on {addr}: {e}"));
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP)).map_err(err)?;
    socket.set_reuse_address(true).map_err(err)?;
    #[cfg(unix)]
    if config.reuse_port {
        socket.set_reuse_port(true).map_err(err)?;
    }
    if addr.is_ipv6() {
        // "::" should accept IPv4 too, as node:http does.
        let _ = socket.set_only_v6(false);
    }
    socket.bind(&addr.into()).map_err(err)?;
    socket.listen(config.backlog).map_err(err)?;
    socket.set_nonblocking(true).map_err(err)?;
    Ok(socket.into())
}

/// Errors that concern one connection only; the loop goes on at once.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
    )
}

/// The first wait after an accept error that is not about one connection; it doubles
/// with each error in a row up to `ACCEPT_BACKOFF_MAX`. Out of file descriptors
/// (EMFILE/ENFILE) or memory, accept fails at once for as long as the shortage lasts,
/// since the waiting connection keeps the socket readable: retrying without a pause would
/// spin a core.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);

/// The longest wait between tries: how late, at most, a server notices that descriptors
/// are free again.
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// A run of failed accepts (an "episode"): logged once when it starts, and once with
/// its count and length when an accept succeeds again.
struct AcceptTrouble {
    failures: u64,
    since: std::time::Instant,
    delay: Duration,
}

impl AcceptTrouble {
    fn start(e: &io::Error) -> Self {
        tracing::warn!(error = %e, "accept failed; retrying with backoff (up to {ACCEPT_BACKOFF_MAX:?} between tries)");
        AcceptTrouble { failures: 1, since: std::time::Instant::now(), delay: ACCEPT_BACKOFF_MIN }
    }

    /// The wait before the next try after one more failure.
    fn next_delay(&mut self) -> Duration {
        let d = self.delay;
        self.delay = (self.delay * 2).min(ACCEPT_BACKOFF_MAX);
        d
    }

    fn recovered(self) {
        let ms = self.since.elapsed().as_millis();
        tracing::warn!(failures = self.failures, "accepting again after {} failed accepts over {ms} ms", self.failures);
    }
}

/// Accepts until the server leaves `Phase::Running`. With `maxConnections` reached,
/// new connections wait in the kernel's backlog until one closes.
pub async fn accept_loop(listener: std::net::TcpListener, shared: Arc<ServerShared>) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "cannot register the listening socket; not accepting");
            return;
        }
    };
    let limit = Arc::new(Semaphore::new(shared.config.max_connections));
    let mut phase: watch::Receiver<Phase> = shared.phase.clone();
    let mut trouble: Option<AcceptTrouble> = None;
    loop {
        if *phase.borrow_and_update() != Phase::Running {
            return;
        }
        let permit = tokio::select! {
            p = limit.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
            _ = phase.changed() => continue,
        };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = phase.changed() => continue,
        };
        match accepted {
            Ok((stream, remote)) => {
                if let Some(t) = trouble.take() {
                    t.recovered();
                }
                // The permit goes with the connection: `serve` is the task's future itself,
                // with no block around it whose state each poll would read.
                crate::in_thread::spawn(connection::serve(stream, remote, shared.clone(), Some(permit)));
            }
            Err(e) if is_connection_error(&e) => {
                tracing::debug!(error = %e, "accept: connection gone before it was taken")
            }
            Err(e) => {
                // Out of file descriptors or memory: back off instead of spinning, and
                // log the episode, not each try.
                let t = match trouble.as_mut() {
                    Some(t) => {
                        t.failures += 1;
                        t
                    }
                    None => trouble.insert(AcceptTrouble::start(&e)),
                };
                let wait = t.next_delay();
                drop(permit);
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = phase.changed() => {}
                }
            }
        }
    }
}
