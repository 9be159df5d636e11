//! Binding (socket2: reuse-port, backlog), the accept loop and the connection limit. A
//! server listens on TCP or on a Unix domain socket (`unix`); a connection accepted on
//! the latter is served as a TCP one (`Listening::accept`).

use crate::connection::{self, Phase, ServerShared};
use crate::error::{BridgeError, BridgeResult, ErrorKind};
use crate::options::ServerConfig;
use socket2::{Domain, Protocol, Socket, Type};
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Semaphore};

/// A bound listening socket, not yet accepting.
pub enum Bound {
    Tcp(std::net::TcpListener),
    /// With the socket file it made (none for an abstract name), removed when dropped.
    Unix(std::os::unix::net::UnixListener, Option<SocketFile>),
}

/// The peer address of a connection on a Unix socket, which has none: no TCP peer is
/// 0.0.0.0 port 0, and JS, which knows the server's transport, shows none (`requestIP`
/// is null).
pub const UNIX_PEER: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0);

/// The longest Unix socket path: `sun_path` (108 bytes on Linux, 104 on macOS) less the
/// NUL that ends it; an abstract name (leading NUL) has none.
fn sun_path_max(abstract_name: bool) -> usize {
    // SAFETY: a plain C struct of integers and arrays, valid zeroed.
    let addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_path.len() - usize::from(!abstract_name)
}

/// Binds synchronously, so `listen()` knows the port before it returns.
pub fn bind(config: &ServerConfig) -> BridgeResult<Bound> {
    if let Some(path) = &config.unix {
        return bind_unix(path, config.backlog);
    }
    let addr = SocketAddr::new(config.host, config.port);
    let err = |e: io::Error| BridgeError::new(ErrorKind::Listen, format!("cannot listen on {addr}: {e}"));
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP)).map_err(err)?;
    socket.set_reuse_address(true).map_err(err)?;
    #[cfg(unix)]
    if config.reuse_port {
        socket.set_reuse_port(true).map_err(err)?;
    }
    if addr.is_ipv6() {
        // "::" accepts IPv4 too, as node:http's does, unless `ipv6Only` asks otherwise; a
        // system that cannot say (dual stack off for good) keeps its own.
        if config.ipv6_only {
            socket.set_only_v6(true).map_err(err)?;
        } else {
            let _ = socket.set_only_v6(false);
        }
    }
    socket.bind(&addr.into()).map_err(err)?;
    socket.listen(config.backlog).map_err(err)?;
    socket.set_nonblocking(true).map_err(err)?;
    Ok(Bound::Tcp(socket.into()))
}

/// The socket file a server made by listening on a Unix socket: removed when the server
/// closes (or fails to start), as node:http does, unless another file has taken its place.
pub struct SocketFile {
    /// Absolute, so a change of the working directory meanwhile removes the right file.
    path: PathBuf,
    /// The file as bound: device, inode and change time (a file made after ours was
    /// removed may get its inode number again).
    id: (u64, u64, i64, i64),
}

fn file_id(m: &std::fs::Metadata) -> (u64, u64, i64, i64) {
    (m.dev(), m.ino(), m.ctime(), m.ctime_nsec())
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        use std::os::unix::fs::FileTypeExt;
        let ours =
            std::fs::symlink_metadata(&self.path).is_ok_and(|m| m.file_type().is_socket() && file_id(&m) == self.id);
        if ours {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// How a Unix socket path is named in errors: `\0name` for an abstract one.
fn shown(path: &str) -> String {
    format!("unix:{}", path.replace('\0', "\\0"))
}

/// Binds a Unix domain socket at `path` (a leading NUL: a Linux abstract name, no file).
/// The file gets the mode `bind` gives it (0777 less the umask), as node:http's does. A
/// file already there is an error, as with node:http, Bun and Deno, stale socket or not:
/// whether anything still serves on it cannot be told without connecting (and racing a
/// server starting there), and removing it could take the path from a live server; the
/// message says which case it is.
fn bind_unix(path: &str, backlog: i32) -> BridgeResult<Bound> {
    let err = |what: String| BridgeError::new(ErrorKind::Listen, format!("cannot listen on {}: {what}", shown(path)));
    let abstract_name = path.starts_with('\0');
    if abstract_name && !cfg!(any(target_os = "linux", target_os = "android")) {
        return Err(err("abstract socket names (a leading NUL) are Linux's only".into()));
    }
    let max = sun_path_max(abstract_name);
    if path.len() > max {
        return Err(err(format!(
            "the path is {} bytes, longer than the {max} a Unix socket address holds",
            path.len()
        )));
    }
    let io_err = |e: io::Error| err(e.to_string());
    let addr = socket2::SockAddr::unix(path).map_err(io_err)?;
    let socket = Socket::new(Domain::UNIX, Type::STREAM, None).map_err(io_err)?;
    if let Err(e) = socket.bind(&addr) {
        return Err(match e.kind() {
            io::ErrorKind::AddrInUse if !abstract_name => err(in_use(path, e)),
            _ => io_err(e),
        });
    }
    // From here the file is ours: removed again if listening fails.
    let file = if abstract_name {
        None
    } else {
        let path = std::path::absolute(path).map_err(io_err)?;
        let m = std::fs::symlink_metadata(&path).map_err(io_err)?;
        Some(SocketFile { path, id: file_id(&m) })
    };
    socket.listen(backlog).map_err(io_err)?;
    socket.set_nonblocking(true).map_err(io_err)?;
    Ok(Bound::Unix(socket.into(), file))
}

/// What is in the way at `path` when binding says it is in use.
fn in_use(path: &str, e: io::Error) -> String {
    use std::os::unix::fs::FileTypeExt;
    let socket = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket());
    if !socket {
        return format!("{e}: a file that is not a socket is there");
    }
    // Not blocking: a connect to a live server whose backlog is full would wait, and that
    // server may be this thread's own (`workerThreads: 0`).
    let refused = Socket::new(Domain::UNIX, Type::STREAM, None)
        .and_then(|s| s.set_nonblocking(true).map(|()| s))
        .and_then(|s| s.connect(&socket2::SockAddr::unix(path)?));
    match refused {
        Err(c) if c.kind() == io::ErrorKind::ConnectionRefused => {
            format!("{e}: a socket file that no server answers on (left by one that did not close); remove it to listen here")
        }
        _ => format!("{e}: another server listens on it"),
    }
}

/// A listening socket registered with the runtime.
enum Listening {
    Tcp(tokio::net::TcpListener),
    Unix(tokio::io::unix::AsyncFd<std::os::unix::net::UnixListener>),
}

impl Listening {
    fn new(bound: Bound) -> io::Result<Self> {
        Ok(match bound {
            Bound::Tcp(l) => Listening::Tcp(tokio::net::TcpListener::from_std(l)?),
            // The socket file's guard is dropped here: `Core` keeps its own (`Bound::split`).
            // SAFETY: the listener owns its descriptor, which nothing closes or replaces
            // while it is registered (the `AsyncFd` owns the listener).
            Bound::Unix(l, _) => Listening::Unix(unsafe { tokio::io::unix::AsyncFd::register(l) }?),
        })
    }

    /// The next connection. One on a Unix socket is served as TCP: every call the
    /// connection code makes on its socket (`read`, `readv`, `send`, `recv`, `peek`,
    /// `shutdown`) works the same on a Unix stream socket, and `set_nodelay` fails
    /// harmlessly; so HTTP/1.1, h2c, TLS and WebSockets need no code of their own there
    /// (a guard test, `a_unix_stream_serves_as_tcp`, checks those calls).
    async fn accept(&self) -> io::Result<(tokio::net::TcpStream, SocketAddr)> {
        match self {
            Listening::Tcp(l) => l.accept().await,
            Listening::Unix(l) => loop {
                let mut ready = l.readable().await?;
                if let Ok(accepted) = ready.try_io(|l| accept_unix(l.get_ref())) {
                    let fd = accepted?;
                    return Ok((tokio::net::TcpStream::from_std(std::net::TcpStream::from(fd))?, UNIX_PEER));
                }
            },
        }
    }
}

/// One `accept4`, non-blocking and close-on-exec as mio accepts TCP connections.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn accept_unix(l: &std::os::unix::net::UnixListener) -> io::Result<OwnedFd> {
    // SAFETY: a plain system call on a listening socket; no peer address is asked for.
    let fd = unsafe {
        libc::accept4(
            l.as_raw_fd(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new descriptor, owned by nothing else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn accept_unix(l: &std::os::unix::net::UnixListener) -> io::Result<OwnedFd> {
    let (s, _) = l.accept()?;
    s.set_nonblocking(true)?;
    Ok(s.into())
}

impl Bound {
    /// The port, and for a Unix socket its file's guard (which the server keeps until it
    /// closes) split off.
    pub fn split(self) -> BridgeResult<(Bound, u16, Option<SocketFile>)> {
        Ok(match self {
            Bound::Tcp(l) => {
                let port = l.local_addr().map_err(|e| BridgeError::new(ErrorKind::Listen, e.to_string()))?.port();
                (Bound::Tcp(l), port, None)
            }
            Bound::Unix(l, file) => (Bound::Unix(l, None), 0, file),
        })
    }
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
pub async fn accept_loop(listener: Bound, shared: Arc<ServerShared>) {
    let listener = match Listening::new(listener) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn temp_path(name: &str) -> String {
        let p = std::env::temp_dir().join(format!("fetch-rs-{}-{name}.sock", std::process::id()));
        let _ = std::fs::remove_file(&p);
        p.to_string_lossy().into_owned()
    }

    /// A guard of serving a Unix connection as TCP (`Listening::accept`): the calls the
    /// connection code makes on its socket work on a Unix stream socket too.
    #[tokio::test]
    async fn a_unix_stream_serves_as_tcp() {
        let path = temp_path("as-tcp");
        let Bound::Unix(l, file) = bind_unix(&path, 16).unwrap() else { panic!("not a Unix listener") };
        let listening = Listening::new(Bound::Unix(l, None)).unwrap();
        let mut client = tokio::net::UnixStream::connect(&path).await.unwrap();
        let (mut server, peer) = listening.accept().await.unwrap();
        assert_eq!(peer, UNIX_PEER);
        // Fails (no TCP options on this socket) and changes nothing: `serve` ignores it.
        assert!(server.set_nodelay(true).is_err());
        client.write_all(b"ping").await.unwrap();
        let mut b = [0u8; 4];
        server.readable().await.unwrap();
        assert_eq!(server.peek(&mut b).await.unwrap(), 4);
        // readv, as cork.rs reads.
        let mut head = [0u8; 2];
        let mut tail = [0u8; 8];
        let iov = [
            libc::iovec { iov_base: head.as_mut_ptr().cast(), iov_len: head.len() },
            libc::iovec { iov_base: tail.as_mut_ptr().cast(), iov_len: tail.len() },
        ];
        // SAFETY: two buffers that live across the call.
        let n = unsafe { libc::readv(server.as_raw_fd(), iov.as_ptr(), 2) };
        assert_eq!((n, &head, &tail[..2]), (4, b"pi", &b"ng"[..]));
        // send with MSG_NOSIGNAL, as cork.rs, tls.rs and websocket.rs write.
        // SAFETY: a buffer that lives across the call.
        let sent = unsafe { libc::send(server.as_raw_fd(), b"pong".as_ptr().cast(), 4, libc::MSG_NOSIGNAL) };
        assert_eq!(sent, 4);
        server.write_all(b"!").await.unwrap();
        // The write side's shutdown: the client reads to the end.
        server.shutdown().await.unwrap();
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"pong!");
        // The read side still works after it (the lingering close).
        client.write_all(b"late").await.unwrap();
        drop(client);
        let mut rest = Vec::new();
        server.read_to_end(&mut rest).await.unwrap();
        assert_eq!(rest, b"late");
        // A peer gone: a send fails with an error, not a SIGPIPE.
        // SAFETY: as above.
        let sent = unsafe { libc::send(server.as_raw_fd(), b"x".as_ptr().cast(), 1, libc::MSG_NOSIGNAL) };
        assert_eq!(sent, -1);
        drop(file);
        assert!(std::fs::symlink_metadata(&path).is_err(), "the socket file was not removed");
    }

    #[test]
    fn only_the_servers_own_socket_file_is_removed() {
        let path = temp_path("own");
        let Bound::Unix(l, file) = bind_unix(&path, 16).unwrap() else { panic!("not a Unix listener") };
        drop(l);
        // Another file took the path meanwhile: it stays, a socket too.
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, b"not ours").unwrap();
        let Some(file) = file else { panic!("no socket file") };
        let id = file.id;
        drop(file);
        assert_eq!(std::fs::read(&path).unwrap(), b"not ours");
        std::fs::remove_file(&path).unwrap();
        // Past the file system's clock granularity (a tick), as any later server would be.
        std::thread::sleep(std::time::Duration::from_millis(30));
        let other = std::os::unix::net::UnixListener::bind(&path).unwrap();
        drop(SocketFile { path: std::path::absolute(&path).unwrap(), id });
        assert!(std::fs::symlink_metadata(&path).is_ok(), "another server's socket file was removed");
        drop(other);
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn a_path_too_long_is_a_listen_error() {
        let path = format!("/tmp/{}", "a".repeat(200));
        let Err(e) = bind_unix(&path, 16) else { panic!("bound {path}") };
        assert_eq!(e.kind, ErrorKind::Listen);
        assert!(e.message.contains("longer than"), "{}", e.message);
    }
}
