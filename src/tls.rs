//! TLS: certificate configuration (PEM, encrypted keys, SNI, client certificates),
//! hot reload, and the handshake that hands a connection to HTTP/1.1 or HTTP/2 by ALPN.
//!
//! Each `tls` entry becomes its own rustls `ServerConfig` (its certificate, its client
//! verifier). The handshake reads the ClientHello first (`LazyConfigAcceptor`), picks the
//! entry by SNI, then finishes with that entry's config, so each host name can have its
//! own `ca`/`requestCert`: for TLS 1.3 and HTTP/1.1 in rustls' unbuffered connection, whose
//! keys then serve our own record layer (records.rs); otherwise in rustls' buffered one. The table of entries is behind a lock read once per handshake:
//! `setTls` swaps it, connections already open keep the config they shook hands with.

use crate::error::{BridgeError, BridgeResult, ErrorKind};
use napi_derive::napi;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::{Acceptor, WebPkiClientVerifier};
use rustls::{RootCertStore, ServerConfig};
use std::collections::HashMap;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::LazyConfigAcceptor;

/// One certificate entry as the JS layer passes it: PEM text (a chain, several CAs
/// concatenated), already normalized from strings, Buffers and arrays.
#[napi(object)]
#[derive(Clone, Default)]
pub struct NativeTls {
    pub cert: String,
    pub key: String,
    pub ca: Option<String>,
    pub passphrase: Option<String>,
    pub server_name: Option<String>,
    pub request_cert: Option<bool>,
}

// By hand: a debug print of the options must not show the private key or its passphrase.
impl std::fmt::Debug for NativeTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NativeTls")
            .field("server_name", &self.server_name)
            .field("request_cert", &self.request_cert)
            .field("cert_len", &self.cert.len())
            .field("ca_len", &self.ca.as_ref().map(String::len))
            .finish_non_exhaustive()
    }
}

fn config_error(msg: impl Into<String>) -> BridgeError {
    BridgeError::new(ErrorKind::TlsConfig, msg)
}

/// `which` names the entry in messages: "tls" for one, "tls[1] (example.com)" for a list.
fn entry_name(entries: &[NativeTls], i: usize) -> String {
    let base = if entries.len() == 1 { "tls".to_string() } else { format!("tls[{i}]") };
    match &entries[i].server_name {
        Some(n) => format!("{base} ({n})"),
        None => base,
    }
}

fn parse_certs(pem: &str, what: &str, which: &str) -> BridgeResult<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| config_error(format!("{which}.{what} is not valid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(config_error(format!("{which}.{what} contains no PEM certificate (-----BEGIN CERTIFICATE-----)")));
    }
    Ok(certs)
}

const ENCRYPTED_BEGIN: &str = "-----BEGIN ENCRYPTED PRIVATE KEY-----";
const ENCRYPTED_END: &str = "-----END ENCRYPTED PRIVATE KEY-----";

/// The private key: PKCS#8, PKCS#1 (RSA) or SEC1 (EC), or PKCS#8 encrypted with
/// `passphrase` (PBES2, what `openssl genpkey -aes256` and `openssl pkcs8 -topk8` write).
fn parse_key(pem: &str, passphrase: Option<&str>, which: &str) -> BridgeResult<PrivateKeyDer<'static>> {
    if let Some(start) = pem.find(ENCRYPTED_BEGIN) {
        let end = pem[start..]
            .find(ENCRYPTED_END)
            .map(|e| start + e + ENCRYPTED_END.len())
            .ok_or_else(|| config_error(format!("{which}.key is not valid PEM: no {ENCRYPTED_END} line")))?;
        let Some(passphrase) = passphrase else {
            return Err(config_error(format!("{which}.key is encrypted and no passphrase was given")));
        };
        let (_, der) = pkcs8::der::pem::decode_vec(&pem.as_bytes()[start..end])
            .map_err(|e| config_error(format!("{which}.key is not valid PEM: {e}")))?;
        let info = pkcs8::EncryptedPrivateKeyInfoRef::try_from(der.as_slice())
            .map_err(|e| config_error(format!("{which}.key is not a valid encrypted PKCS#8 key: {e}")))?;
        let plain = info.decrypt(passphrase.as_bytes()).map_err(|e| {
            config_error(format!("{which}.key could not be decrypted: wrong passphrase or unsupported cipher ({e})"))
        })?;
        return Ok(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(plain.as_bytes().to_vec())));
    }
    if pem.contains("Proc-Type: 4,ENCRYPTED") {
        return Err(config_error(format!(
            "{which}.key uses OpenSSL's legacy PEM encryption; convert it to encrypted PKCS#8 \
             (openssl pkcs8 -topk8 -v2 aes-256-cbc)"
        )));
    }
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => config_error(format!(
            "{which}.key contains no PEM private key (-----BEGIN PRIVATE KEY----- or RSA/EC PRIVATE KEY)"
        )),
        e => config_error(format!("{which}.key is not valid PEM: {e}")),
    })
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Whether a suite is AES-128-GCM (TLS 1.3, or TLS 1.2 with ECDHE).
fn is_aes128(suite: rustls::CipherSuite) -> bool {
    use rustls::CipherSuite as S;
    matches!(
        suite,
        S::TLS13_AES_128_GCM_SHA256
            | S::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
            | S::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
    )
}

fn is_chacha(suite: rustls::CipherSuite) -> bool {
    use rustls::CipherSuite as S;
    matches!(
        suite,
        S::TLS13_CHACHA20_POLY1305_SHA256
            | S::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
            | S::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256
    )
}

/// The server's suites, AES-128-GCM first: where AES is in hardware, as good as AES-256-GCM
/// for security at 10 rounds instead of 14 (the choice of Go's TLS server too).
fn server_provider() -> Arc<rustls::crypto::CryptoProvider> {
    let mut p = rustls::crypto::ring::default_provider();
    p.cipher_suites.sort_by_key(|s| !is_aes128(s.suite()));
    Arc::new(p)
}

/// A client that lists ChaCha20-Poly1305 before any AES suite says it lacks AES hardware
/// (mobile clients do): it gets its own order. Every other client gets the server's.
fn prefers_chacha(client_suites: &[rustls::CipherSuite]) -> bool {
    let known = |s: &&rustls::CipherSuite| rustls::crypto::ring::ALL_CIPHER_SUITES.iter().any(|k| k.suite() == **s);
    client_suites.iter().find(known).is_some_and(|s| is_chacha(*s))
}

/// One entry's rustls config.
fn build_config(entries: &[NativeTls], i: usize, http2: bool) -> BridgeResult<ServerConfig> {
    let e = &entries[i];
    let which = entry_name(entries, i);
    let certs = parse_certs(&e.cert, "cert", &which)?;
    let key = parse_key(&e.key, e.passphrase.as_deref(), &which)?;
    let builder = ServerConfig::builder_with_provider(server_provider())
        .with_safe_default_protocol_versions()
        .map_err(|err| config_error(format!("{which}: {err}")))?;
    let request_cert = e.request_cert.unwrap_or(false);
    let builder = match (&e.ca, request_cert) {
        (Some(ca), true) => {
            let mut roots = RootCertStore::empty();
            for c in parse_certs(ca, "ca", &which)? {
                roots
                    .add(c)
                    .map_err(|err| config_error(format!("{which}.ca has a certificate rustls rejects: {err}")))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .map_err(|err| config_error(format!("{which}.ca cannot verify client certificates: {err}")))?;
            builder.with_client_cert_verifier(verifier)
        }
        (None, true) => {
            return Err(config_error(format!(
                "{which}.requestCert needs ca: the certificates that sign client certificates"
            )))
        }
        (_, false) => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(certs, key).map_err(|err| match err {
        rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => {
            config_error(format!("{which}.key does not match the certificate in {which}.cert"))
        }
        err => config_error(format!("{which}.key cannot be used: {err}")),
    })?;
    config.alpn_protocols = if http2 { vec![b"h2".to_vec(), b"http/1.1".to_vec()] } else { vec![b"http/1.1".to_vec()] };
    // Stateless resumption, as node:https offers by default: a returning client skips
    // the key exchange.
    if let Ok(ticketer) = rustls::crypto::ring::Ticketer::new() {
        config.ticketer = ticketer;
    }
    config.ignore_client_order = true;
    // The keys are taken after the handshake for the records done here (records.rs).
    config.enable_secret_extraction = true;
    Ok(config)
}

/// One entry's configs: in the server's suite order, and in the client's for a client that
/// prefers ChaCha20 (`prefers_chacha`). They share the certificate and the ticket keys.
#[derive(Clone)]
struct EntryConfigs {
    server_order: Arc<ServerConfig>,
    client_order: Arc<ServerConfig>,
}

impl EntryConfigs {
    fn new(config: ServerConfig) -> EntryConfigs {
        let mut client_order = config.clone();
        client_order.ignore_client_order = false;
        let client_order = Arc::new(client_order);
        EntryConfigs { server_order: Arc::new(config), client_order }
    }

    fn get(&self, chacha: bool) -> Arc<ServerConfig> {
        if chacha {
            self.client_order.clone()
        } else {
            self.server_order.clone()
        }
    }
}

/// The configs of one `tls` option: by exact host name, by wildcard suffix, and the
/// default for clients without SNI or with a name no entry has.
pub struct CertTable {
    exact: HashMap<String, EntryConfigs>,
    /// `*.example.com` is kept as `.example.com`: it matches one label before it.
    wildcard: Vec<(String, EntryConfigs)>,
    default: EntryConfigs,
}

impl CertTable {
    /// Parses and checks every entry; the first error is returned, naming its entry.
    pub fn build(entries: &[NativeTls], http2: bool) -> BridgeResult<CertTable> {
        if entries.is_empty() {
            return Err(config_error("tls must have at least one certificate entry"));
        }
        let mut exact = HashMap::new();
        let mut wildcard = Vec::new();
        let mut default = None;
        let mut first = None;
        for (i, e) in entries.iter().enumerate() {
            let config = EntryConfigs::new(build_config(entries, i, http2)?);
            first.get_or_insert_with(|| config.clone());
            match e.server_name.as_deref().map(|n| n.trim().to_ascii_lowercase()) {
                None => {
                    if default.is_some() {
                        return Err(config_error(format!(
                            "{}: only one entry may leave out serverName (it is the default)",
                            entry_name(entries, i)
                        )));
                    }
                    default = Some(config);
                }
                Some(n) if n.is_empty() => {
                    return Err(config_error(format!("{}.serverName must not be empty", entry_name(entries, i))))
                }
                Some(n) => match n.strip_prefix('*') {
                    Some(suffix) if suffix.starts_with('.') => wildcard.push((suffix.to_string(), config)),
                    _ => {
                        exact.insert(n, config);
                    }
                },
            }
        }
        // Without an entry lacking serverName, the first entry is the default.
        let default = match default.or(first) {
            Some(d) => d,
            None => return Err(config_error("tls must have at least one certificate entry")),
        };
        Ok(CertTable { exact, wildcard, default })
    }

    /// The config for a client's SNI name, in the suite order for it (`prefers_chacha`).
    fn pick(&self, server_name: Option<&str>, chacha: bool) -> Arc<ServerConfig> {
        if let Some(name) = server_name {
            // rustls gives the SNI name lower-cased and without a trailing dot.
            if let Some(c) = self.exact.get(name) {
                return c.get(chacha);
            }
            if let Some(dot) = name.find('.') {
                let suffix = &name[dot..];
                if let Some((_, c)) = self.wildcard.iter().find(|(s, _)| s == suffix) {
                    return c.get(chacha);
                }
            }
        }
        self.default.get(chacha)
    }
}

/// The verified identity of a client that presented a certificate (mTLS).
#[derive(Debug)]
pub struct ClientCertificate {
    pub subject: String,
    pub issuer: String,
    /// Milliseconds since the Unix epoch.
    pub valid_from: f64,
    pub valid_to: f64,
    /// SHA-256 of the DER certificate, as `AB:CD:…` (node:tls's `fingerprint256`).
    pub fingerprint256: String,
    /// Hexadecimal, upper case, as node:tls gives it.
    pub serial_number: String,
    pub raw: Vec<u8>,
}

fn hex_colon(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 3);
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 {
            s.push(':');
        }
        s.push_str(&format!("{b:02X}"));
    }
    s
}

impl ClientCertificate {
    /// Reads the fields of a certificate rustls already verified. `None` only if it does
    /// not parse as X.509 here, which verification makes unexpected.
    fn parse(der: &CertificateDer<'_>) -> Option<ClientCertificate> {
        use x509_cert::der::Decode;
        let cert = x509_cert::Certificate::from_der(der.as_ref()).ok()?;
        let tbs = cert.tbs_certificate();
        let ms = |t: x509_cert::time::Time| t.to_unix_duration().as_millis() as f64;
        let digest = ring::digest::digest(&ring::digest::SHA256, der.as_ref());
        let serial: String = tbs.serial_number().as_bytes().iter().map(|b| format!("{b:02X}")).collect();
        Some(ClientCertificate {
            subject: tbs.subject().to_string(),
            issuer: tbs.issuer().to_string(),
            valid_from: ms(tbs.validity().not_before),
            valid_to: ms(tbs.validity().not_after),
            fingerprint256: hex_colon(digest.as_ref()),
            serial_number: serial,
            raw: der.as_ref().to_vec(),
        })
    }
}

/// `event.clientCertificate` as it crosses to JS (dates as milliseconds).
#[napi(object)]
pub struct ClientCertificateInfo {
    pub subject: String,
    pub issuer: String,
    pub valid_from: f64,
    pub valid_to: f64,
    pub fingerprint256: String,
    pub serial_number: String,
    pub raw: napi::bindgen_prelude::Buffer,
}

impl From<&ClientCertificate> for ClientCertificateInfo {
    fn from(c: &ClientCertificate) -> Self {
        ClientCertificateInfo {
            subject: c.subject.clone(),
            issuer: c.issuer.clone(),
            valid_from: c.valid_from,
            valid_to: c.valid_to,
            fingerprint256: c.fingerprint256.clone(),
            serial_number: c.serial_number.clone(),
            raw: c.raw.clone().into(),
        }
    }
}

/// What a TLS connection's requests learn about it.
#[derive(Debug, Default)]
pub struct Session {
    pub client_certificate: Option<ClientCertificate>,
}

/// The TLS side of a listening server: the current certificate table and the handshake.
pub struct TlsAcceptor {
    table: RwLock<Arc<CertTable>>,
    http2: bool,
}

/// How a finished handshake goes on.
pub struct Accepted {
    /// The connection's halves: records done here (records.rs) or by rustls (`split_stream`).
    pub read: crate::cork::ReadHalf,
    pub write: crate::cork::WriteHalf,
    /// ALPN chose `h2`. Without ALPN, HTTP/1.1.
    pub h2: bool,
    pub session: Arc<Session>,
}

impl TlsAcceptor {
    pub fn new(entries: &[NativeTls], http2: bool) -> BridgeResult<TlsAcceptor> {
        Ok(TlsAcceptor { table: RwLock::new(Arc::new(CertTable::build(entries, http2)?)), http2 })
    }

    /// Replaces the certificates for new connections; on error the old ones stay.
    pub fn set(&self, entries: &[NativeTls]) -> BridgeResult<()> {
        let table = Arc::new(CertTable::build(entries, self.http2)?);
        *self.table.write().unwrap_or_else(|p| p.into_inner()) = table;
        Ok(())
    }

    fn current(&self) -> Arc<CertTable> {
        self.table.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Runs the handshake, bounded by `timeout`. Errors (garbage, plain HTTP, a client
    /// certificate missing or not trusted, a timeout) end this connection only.
    pub async fn accept(&self, stream: TcpStream, timeout: Option<Duration>) -> std::io::Result<Accepted> {
        let handshake = async {
            let mut start =
                LazyConfigAcceptor::new(Acceptor::default(), crate::records::WholeRecords::new(stream)).await?;
            let hello = start.client_hello();
            let config = self.current().pick(hello.server_name(), prefers_chacha(hello.cipher_suites()));
            // HTTP/1.1 (TLS 1.3 and 1.2): the records are done here (records.rs); h2 stays
            // on rustls' record layer.
            if crate::records::takes(&hello, &start.io, self.http2) {
                let done = crate::records::handshake(start.io, config).await?;
                let client_certificate = done.peer_certificate.as_ref().and_then(ClientCertificate::parse);
                let h2 = done.h2;
                let (read, write) = crate::records::split(done)?;
                return Ok(Accepted { read, write, h2, session: Arc::new(Session { client_certificate }) });
            }
            start.io.pass_through();
            let mut stream = start.into_stream(config).await?;
            let (io, conn) = stream.get_mut();
            // Records read past the handshake go to rustls.
            let rest = io.take_not_given();
            let mut rest = &rest[..];
            while !rest.is_empty() {
                conn.read_tls(&mut rest)?;
                conn.process_new_packets().map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
            }
            let h2 = conn.alpn_protocol() == Some(b"h2");
            let client_certificate =
                conn.peer_certificates().and_then(|c| c.first()).and_then(ClientCertificate::parse);
            let (read, write) = split_stream(stream);
            Ok(Accepted { read, write, h2, session: Arc::new(Session { client_certificate }) })
        };
        match timeout {
            Some(t) => tokio::time::timeout(t, handshake)
                .await
                .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake timed out"))?,
            None => handshake.await,
        }
    }
}

/// A TLS connection after its handshake, as the two halves a connection's `Cork` takes
/// (`cork::ReadHalf`, `cork::WriteHalf`). Both share the stream behind one uncontended
/// lock (a WebSocket's writes may come from the JS thread while its task reads).
///
/// Reads go straight to rustls rather than through tokio-rustls' `poll_read`: decrypted
/// bytes are copied out and the read ends there, without trying the socket again for a
/// record that is not there yet, and a read that finds nothing waits on the socket in a
/// few steps. Writes and flushes go straight to rustls too (`TlsWrite`); the shutdown
/// (close_notify) is tokio-rustls'.
fn split_stream(stream: TlsStream<crate::records::WholeRecords>) -> (crate::cork::ReadHalf, crate::cork::WriteHalf) {
    let shared = Arc::new(std::sync::Mutex::new(stream));
    (
        Box::new(TlsRead { tls: shared.clone(), drained: false, waits: false }),
        Box::new(TlsWrite { tls: shared, held: false }),
    )
}

type Shared = Arc<std::sync::Mutex<TlsStream<crate::records::WholeRecords>>>;

struct TlsRead {
    tls: Shared,
    /// The last socket read was short, which cleared the socket's readiness: the next read
    /// asks the readiness first, registering the task, without going through rustls (hyper
    /// reads again after each request and finds nothing). Otherwise (the last read waited,
    /// so this one mostly follows the socket's wake-up; or it filled its buffer) the socket
    /// is read at once: `SocketReader`'s `try_io` looks at the readiness anyway, and waits
    /// as the readiness check would where there is nothing.
    drained: bool,
    /// This read returned bytes and registered the task for the socket's next readiness.
    waits: bool,
}

/// A write encrypts into rustls and sends the records at once, under one lock; records the
/// socket has no room for stay in rustls (`held`) until a flush or the next write.
struct TlsWrite {
    tls: Shared,
    /// The last write or flush left records unsent (`ConnWrite::holds_output`).
    held: bool,
}

fn lock(s: &Shared) -> std::sync::MutexGuard<'_, TlsStream<crate::records::WholeRecords>> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

/// `std::io::Read` over the socket for `read_tls`: Pending becomes `WouldBlock`.
pub(crate) struct SocketReader<'a, 'b> {
    pub(crate) io: &'a mut TcpStream,
    pub(crate) cx: &'a mut Context<'b>,
    /// A read was short: the socket is drained and its readiness cleared.
    pub(crate) drained: bool,
}

impl std::io::Read for SocketReader<'_, '_> {
    /// A `recv` through `try_io`, not tokio's `poll_read`: `try_io` looks at the readiness
    /// without the task's budget or a waker, which is registered only where nothing is
    /// there (`TlsRead::drained`). A short read clears the readiness as `poll_read` does (the socket is
    /// drained: the next read waits without a `recv` that finds nothing). `try_io` clears it
    /// when its closure reports `WouldBlock`, against the readiness it saw before the
    /// `recv`, so that one arriving meanwhile is kept; the closure keeps the count aside.
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        // SAFETY: `buf` is writable memory of `buf.len()` bytes.
        unsafe { self.read_raw(buf.as_mut_ptr(), buf.len()) }
    }
}

impl SocketReader<'_, '_> {
    /// `read` into the spare capacity of `buf`, whose length grows by what was read: no
    /// zero-filled buffer first (the TLS 1.3 records' read buffer).
    pub(crate) fn read_spare(&mut self, buf: &mut Vec<u8>) -> std::io::Result<usize> {
        let spare = buf.spare_capacity_mut();
        // SAFETY: the spare capacity is writable memory of that length; `recv` writes only.
        let n = unsafe { self.read_raw(spare.as_mut_ptr().cast(), spare.len())? };
        // SAFETY: `recv` initialized the first `n` bytes past the length.
        unsafe { buf.set_len(buf.len() + n) };
        Ok(n)
    }

    /// # Safety
    /// `ptr` is writable memory of `len` bytes, not read here.
    unsafe fn read_raw(&mut self, ptr: *mut u8, len: usize) -> std::io::Result<usize> {
        let fd = self.io.as_raw_fd();
        loop {
            let mut drained = None;
            let r = self.io.try_io(tokio::io::Interest::READABLE, || {
                // SAFETY: `fd` is the socket `io` borrows for the call, and `ptr` is
                // writable memory of `len` bytes (the caller's promise).
                let n = unsafe { libc::recv(fd, ptr.cast(), len, 0) };
                if n < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                let n = n as usize;
                if n > 0 && n < len {
                    drained = Some(n);
                    return Err(std::io::ErrorKind::WouldBlock.into());
                }
                Ok(n)
            });
            if let Some(n) = drained {
                self.drained = true;
                return Ok(n);
            }
            match r {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                // Nothing there (or readiness not known): wait for it, registering the task.
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => match self.io.poll_read_ready(self.cx) {
                    Poll::Ready(Ok(())) => {}
                    Poll::Ready(Err(e)) => return Err(e),
                    Poll::Pending => return Err(std::io::ErrorKind::WouldBlock.into()),
                },
                Err(e) => return Err(e),
            }
        }
    }
}

impl AsyncRead for TlsRead {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        this.waits = false;
        let mut guard = lock(&this.tls);
        // What rustls' reader has for this read, as far as known: `None` at the start (what
        // an earlier read left: asked where `wants_read` says anything may be there); once
        // records are processed here, the decrypted bytes (`IoState`), or `ASK` for an end of
        // the stream. The reader is asked only where it has something: at a request, two of
        // its three calls found nothing (about 35 instructions).
        const ASK: usize = usize::MAX;
        let mut known: Option<usize> = None;
        loop {
            let (io, conn) = guard.get_mut();
            let io = &mut io.io;
            let ask = match known {
                // Something decrypted is waiting, or a close_notify came.
                None => !conn.wants_read(),
                Some(n) => n > 0,
            };
            if ask {
                // What is decrypted already, as much as fits.
                let mut copied = false;
                while buf.remaining() > 0 {
                    match conn.reader().into_first_chunk() {
                        // Empty: the client sent close_notify; the end of the stream.
                        Ok([]) => return Poll::Ready(Ok(())),
                        Ok(chunk) => {
                            let n = chunk.len().min(buf.remaining());
                            buf.put_slice(&chunk[..n]);
                            std::io::BufRead::consume(&mut conn.reader(), n);
                            copied = true;
                            // All that was decrypted is taken.
                            if known.is_some_and(|k| k == n) {
                                break;
                            }
                            known = known.map(|k| k.saturating_sub(n));
                        }
                        // Nothing waiting; or the socket ended without a close_notify
                        // (UnexpectedEof), which the next read reports if this one has data.
                        Err(e) if copied || e.kind() == std::io::ErrorKind::WouldBlock => break,
                        Err(e) => return Poll::Ready(Err(e)),
                    }
                }
                // All that was read is taken and the socket is drained: hyper's next read
                // would find nothing and register the task. It is registered now, under
                // this lock, and that read waits in the cork without coming here
                // (`ConnRead::waits_after_read`).
                if copied && this.drained && conn.wants_read() && io.poll_read_ready(cx).is_pending() {
                    this.drained = false;
                    this.waits = true;
                }
                if copied || buf.remaining() == 0 {
                    return Poll::Ready(Ok(()));
                }
            } else {
                // Nothing decrypted, and the socket drained by the last read: wait for it
                // without going through rustls, unless something came meanwhile.
                if this.drained && io.poll_read_ready(cx).is_pending() {
                    this.drained = false;
                    return Poll::Pending;
                }
                if buf.remaining() == 0 {
                    return Poll::Ready(Ok(()));
                }
            }
            // Nothing decrypted: read records from the socket.
            let mut reader = SocketReader { io, cx, drained: false };
            let read = conn.read_tls(&mut reader);
            this.drained = reader.drained;
            let ended = match read {
                Ok(n) => n == 0,
                // Nothing there: the task is registered for the socket's wake-up.
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Poll::Pending,
                Err(e) => return Poll::Ready(Err(e)),
            };
            match conn.process_new_packets() {
                // The end of the stream, a close_notify or the socket's end without one
                // (which only the reader reports), goes through the reader.
                Ok(state) if ended || state.peer_has_closed() => known = Some(ASK),
                Ok(state) => known = Some(state.plaintext_bytes_to_read()),
                Err(e) => {
                    // The alert describing the error, if the socket takes it now.
                    let _ = Pin::new(&mut *guard).poll_flush(cx);
                    return Poll::Ready(Err(std::io::Error::new(std::io::ErrorKind::InvalidData, e)));
                }
            }
        }
    }
}

impl crate::cork::ConnRead for TlsRead {
    fn waits_after_read(&mut self) -> bool {
        self.waits
    }
}

/// `std::io::Write` over the socket for `write_tls`: Pending becomes `WouldBlock`. One
/// record (a response of up to 16 KiB) goes out with `send`, not a one-slice `writev`,
/// which costs the kernel more per call.
pub(crate) struct SocketWriter<'a, 'b> {
    pub(crate) io: &'a mut TcpStream,
    pub(crate) cx: &'a mut Context<'b>,
}

impl std::io::Write for SocketWriter<'_, '_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // A `send` of its own, as a plain response's (`cork::write_flat`): tokio's write
        // would first look at the socket's readiness (a cold line at every response under
        // load) and count the task's budget. A full socket is left to tokio's write, which
        // finds it full and registers the task for room.
        // SAFETY: the descriptor is the socket `io` borrows for the call, and `buf` is
        // initialized memory of `buf.len()` bytes.
        let sent = unsafe { libc::send(self.io.as_raw_fd(), buf.as_ptr().cast(), buf.len(), libc::MSG_NOSIGNAL) };
        if sent >= 0 {
            return Ok(sent as usize);
        }
        let e = std::io::Error::last_os_error();
        if !matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted) {
            return Err(e);
        }
        match Pin::new(&mut *self.io).poll_write(self.cx, buf) {
            Poll::Ready(r) => r,
            Poll::Pending => Err(std::io::ErrorKind::WouldBlock.into()),
        }
    }

    fn write_vectored(&mut self, bufs: &[std::io::IoSlice<'_>]) -> std::io::Result<usize> {
        if let [one] = bufs {
            return self.write(one);
        }
        match Pin::new(&mut *self.io).poll_write_vectored(self.cx, bufs) {
            Poll::Ready(r) => r,
            Poll::Pending => Err(std::io::ErrorKind::WouldBlock.into()),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Writes of up to this many bytes in several slices are gathered first
/// (`crate::cork::gather`): rustls' own vectored write lists the slices in a `Vec` it
/// allocates and copies from the list in more steps, for a JSON response 236 instructions
/// more than a write of one slice, where gathering costs about 90 (callgrind).
const GATHER: usize = 4096;

/// Sends the records rustls holds until none is left (true) or the socket is full (false,
/// with a wake-up registered for when it has room).
fn send_records(
    io: &mut TcpStream,
    conn: &mut rustls::ServerConnection,
    cx: &mut Context<'_>,
) -> std::io::Result<bool> {
    while conn.wants_write() {
        match conn.write_tls(&mut SocketWriter { io, cx }) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

impl AsyncWrite for TlsWrite {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        self.poll_write_vectored(cx, &[std::io::IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let mut guard = lock(&this.tls);
        let (io, conn) = guard.get_mut();
        let io = &mut io.io;
        // Records still held go first; while the socket has no room for them, nothing more
        // is taken.
        if conn.wants_write() && !send_records(io, conn, cx)? {
            this.held = true;
            return Poll::Pending;
        }
        // Encrypted into records (up to rustls' buffer limit, 64 KiB) and sent.
        let mut space = [std::mem::MaybeUninit::uninit(); GATHER];
        let n = match crate::cork::gather(bufs, &mut space) {
            Some(flat) => std::io::Write::write(&mut conn.writer(), flat)?,
            None => std::io::Write::write_vectored(&mut conn.writer(), bufs)?,
        };
        this.held = !send_records(io, conn, cx)?;
        if n == 0 && this.held {
            return Poll::Pending;
        }
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let mut guard = lock(&this.tls);
        let (io, conn) = guard.get_mut();
        let io = &mut io.io;
        // The connection's fatal error, if it has one, as tokio-rustls' flush reports it.
        std::io::Write::flush(&mut conn.writer())?;
        // A TCP socket's flush does nothing: sending the records is all.
        this.held = !send_records(io, conn, cx)?;
        if this.held {
            return Poll::Pending;
        }
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut *lock(&this.tls)).poll_shutdown(cx);
        this.held = r.is_pending();
        r
    }
}

impl crate::cork::ConnWrite for TlsWrite {
    fn holds_output(&self) -> bool {
        self.held
    }
}

/// The handshake of one connection, counted in the stats; `None` when it failed, timed
/// out (`tlsHandshakeTimeout`), or the server began closing meanwhile.
pub(crate) async fn handshake(
    tls: &TlsAcceptor,
    stream: TcpStream,
    shared: &crate::connection::ServerShared,
) -> Option<Accepted> {
    use crate::connection::Phase;
    use std::sync::atomic::Ordering;
    let mut phase = shared.phase.clone();
    let result = tokio::select! {
        r = tls.accept(stream, shared.config.tls_handshake_timeout) => r,
        _ = phase.wait_for(|p| *p != Phase::Running) => {
            tracing::debug!("TLS handshake abandoned: the server is closing");
            return None;
        }
    };
    match result {
        Ok(a) => {
            shared.stats.tls_handshakes.fetch_add(1, Ordering::Relaxed);
            Some(a)
        }
        Err(e) => {
            tracing::debug!(error = %e, "TLS handshake failed; connection closed");
            shared.stats.tls_handshake_failures.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_pem_is_a_config_error() {
        let e = CertTable::build(&[NativeTls { cert: "nope".into(), key: "nope".into(), ..Default::default() }], true)
            .err()
            .unwrap();
        assert_eq!(e.kind, ErrorKind::TlsConfig);
        assert!(e.message.contains("tls.cert"), "{}", e.message);
    }

    #[test]
    fn key_without_pem_is_named() {
        let e = parse_key("x", None, "tls").err().unwrap();
        assert!(e.message.contains("no PEM private key"), "{}", e.message);
    }

    #[test]
    fn encrypted_key_without_passphrase_is_named() {
        let pem = format!("{ENCRYPTED_BEGIN}\nAAAA\n{ENCRYPTED_END}\n");
        let e = parse_key(&pem, None, "tls").err().unwrap();
        assert!(e.message.contains("no passphrase"), "{}", e.message);
    }

    const A_CERT: &str = include_str!("../test/fixtures/tls/a.pem");
    const A_KEY: &str = include_str!("../test/fixtures/tls/a.key");
    const B_CERT: &str = include_str!("../test/fixtures/tls/b.pem");
    const B_KEY: &str = include_str!("../test/fixtures/tls/b.key");

    fn entry(cert: &str, key: &str, name: Option<&str>) -> NativeTls {
        NativeTls { cert: cert.into(), key: key.into(), server_name: name.map(Into::into), ..Default::default() }
    }

    #[test]
    fn sni_picks_exact_then_wildcard_then_default() {
        let table = CertTable::build(
            &[entry(A_CERT, A_KEY, None), entry(B_CERT, B_KEY, Some("B.test")), entry(B_CERT, B_KEY, Some("*.w.test"))],
            true,
        )
        .unwrap();
        let exact = table.pick(Some("b.test"), false);
        assert!(Arc::ptr_eq(&exact, &table.exact["b.test"].server_order));
        assert!(Arc::ptr_eq(&table.pick(Some("b.test"), true), &table.exact["b.test"].client_order));
        assert!(Arc::ptr_eq(&table.pick(Some("x.w.test"), false), &table.wildcard[0].1.server_order));
        assert!(Arc::ptr_eq(&table.pick(Some("x.y.w.test"), false), &table.default.server_order));
        assert!(Arc::ptr_eq(&table.pick(None, false), &table.default.server_order));
        assert_eq!(table.default.server_order.alpn_protocols, vec![b"h2".to_vec(), b"http/1.1".to_vec()]);
    }

    #[test]
    fn chacha_first_keeps_the_client_order() {
        use rustls::CipherSuite as S;
        // GREASE and unknown values before the first suite rustls knows are skipped.
        assert!(prefers_chacha(&[S::Unknown(0x0a0a), S::TLS13_CHACHA20_POLY1305_SHA256, S::TLS13_AES_128_GCM_SHA256]));
        assert!(!prefers_chacha(&[S::TLS13_AES_256_GCM_SHA384, S::TLS13_CHACHA20_POLY1305_SHA256]));
        assert!(!prefers_chacha(&[]));
        let p = server_provider();
        assert_eq!(p.cipher_suites[0].suite(), S::TLS13_AES_128_GCM_SHA256);
    }

    #[test]
    fn key_of_another_certificate_is_named() {
        let e = CertTable::build(&[entry(A_CERT, B_KEY, None)], true).err().unwrap();
        assert!(e.message.contains("does not match the certificate"), "{}", e.message);
    }

    #[test]
    fn http1_only_offers_only_http11() {
        let table = CertTable::build(&[entry(A_CERT, A_KEY, None)], false).unwrap();
        assert_eq!(table.default.server_order.alpn_protocols, vec![b"http/1.1".to_vec()]);
    }

    #[test]
    fn debug_output_leaves_out_the_key() {
        let e = NativeTls { key: "SECRET KEY".into(), passphrase: Some("hunter2".into()), ..Default::default() };
        let shown = format!("{e:?}");
        assert!(!shown.contains("SECRET") && !shown.contains("hunter2"), "{shown}");
    }

    #[test]
    fn fingerprint_is_colon_hex() {
        assert_eq!(hex_colon(&[0xab, 0x01, 0xff]), "AB:01:FF");
    }
}
