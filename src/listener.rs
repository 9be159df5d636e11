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
                let shared = shared.clone();
                tokio::spawn(async move {
                    connection::serve(stream, remote, shared).await;
                    drop(permit);
                });
            }
            Err(e) if is_connection_error(&e) => {
                tracing::debug!(error = %e, "accept: connection gone before it was taken")
            }
            Err(e) => {
                // Out of file descriptors or memory: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed; backing off 50 ms");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}
