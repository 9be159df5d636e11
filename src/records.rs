//! HTTPS/1.1 over TLS 1.3 and 1.2 with the records done here: rustls does the handshake
//! (unbuffered API), then hands over the session's keys (`KernelConnection`), and each record
//! is opened in place in our read buffer and sealed in place in our write buffer with ring's
//! AEAD, without rustls' plaintext and record buffers. rustls still computes the keys of a
//! TLS 1.3 key update. HTTP/2 stays on rustls' record layer (tls.rs).

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey};
use rustls::kernel::KernelConnection;
use rustls::server::{ServerConnectionData, UnbufferedServerConnection};
use rustls::unbuffered::{ConnectionState, EncodeError};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::AsyncWriteExt;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// The largest plaintext of a record (RFC 8446 section 5.1).
const MAX_PLAIN: usize = 1 << 14;
/// The largest ciphertext of a record (RFC 8446 section 5.2), header apart.
const MAX_CIPHER: usize = MAX_PLAIN + 256;
/// The same in TLS 1.2 (RFC 5246 section 6.2.3).
const MAX_CIPHER_12: usize = MAX_PLAIN + 2048;
const HEADER: usize = 5;
/// TLS 1.2 AES-GCM's explicit nonce, at the start of each record (RFC 5288 section 3).
const EXPLICIT: usize = 8;
/// What a read asks of the socket while no larger record is under way, and the read buffer's
/// size at rest (as rustls' own read buffer): an idle connection holds this much, not a whole
/// record's 16 KiB.
const READ_SIZE: usize = 4096;
/// A write `Vec` grown past this by a large response is let go once it is sent.
const OUT_KEEP: usize = 4096;
const TAG: usize = 16;
const APPLICATION_DATA: u8 = 0x17;
const ALERT: u8 = 0x15;
const HANDSHAKE: u8 = 0x16;
const KEY_UPDATE: u8 = 24;

/// The socket while rustls' `Acceptor` reads the ClientHello: rustls is given whole records
/// only, and what it was given is kept (`given`), so that the same bytes can start an
/// unbuffered connection with the config the ClientHello picked; what was read past them
/// stays here too.
pub struct WholeRecords {
    pub io: TcpStream,
    pending: Vec<u8>,
    /// The bytes given to rustls, while they are kept (until `pass_through`).
    given: Option<Vec<u8>>,
    /// After the ClientHello, for rustls' own handshake: bytes go as they come.
    pass: bool,
    /// The record being given to rustls is `pending[rec..rec_end]`, given up to `at`.
    rec: usize,
    rec_end: usize,
    at: usize,
}

impl WholeRecords {
    pub fn new(io: TcpStream) -> WholeRecords {
        WholeRecords {
            io,
            pending: Vec::with_capacity(HEADER + MAX_CIPHER),
            given: Some(Vec::new()),
            pass: false,
            rec: 0,
            rec_end: 0,
            at: 0,
        }
    }

    /// Every byte read from the socket: those given to the `Acceptor`, then the rest.
    fn into_all(self) -> (TcpStream, Vec<u8>) {
        let mut all = self.given.unwrap_or_default();
        all.extend_from_slice(&self.pending[self.at..]);
        (self.io, all)
    }

    /// For rustls' own handshake after the `Acceptor`: what is read goes to rustls as it
    /// comes, and nothing is kept.
    pub fn pass_through(&mut self) {
        self.pass = true;
        self.given = None;
    }

    /// The bytes read and not given to rustls, taken (for rustls' own record layer).
    pub fn take_not_given(&mut self) -> Vec<u8> {
        let rest = self.pending.split_off(self.at);
        self.pending = Vec::new();
        self.given = None;
        self.at = 0;
        self.rec = 0;
        self.rec_end = 0;
        rest
    }
}

impl AsyncRead for WholeRecords {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.pass {
            if this.at < this.pending.len() {
                let n = (this.pending.len() - this.at).min(buf.remaining());
                buf.put_slice(&this.pending[this.at..this.at + n]);
                this.at += n;
                return Poll::Ready(Ok(()));
            }
            return Pin::new(&mut this.io).poll_read(cx, buf);
        }
        loop {
            if this.at == this.rec_end {
                let have = &this.pending[this.at..];
                if have.len() >= HEADER {
                    let len = HEADER + u16::from_be_bytes([have[3], have[4]]) as usize;
                    // Not a record (plain HTTP, garbage): all of it goes to rustls at once,
                    // which rejects it with an alert as before.
                    let record = (0x14..=0x18).contains(&have[0]) && have[1] == 3 && len <= HEADER + MAX_CIPHER;
                    if !record {
                        this.rec = this.at;
                        this.rec_end = this.pending.len();
                    } else if have.len() >= len {
                        this.rec = this.at;
                        this.rec_end = this.at + len;
                    }
                }
            }
            if this.at < this.rec_end {
                let n = (this.rec_end - this.at).min(buf.remaining());
                buf.put_slice(&this.pending[this.at..this.at + n]);
                if let Some(given) = &mut this.given {
                    given.extend_from_slice(&this.pending[this.at..this.at + n]);
                }
                this.at += n;
                return Poll::Ready(Ok(()));
            }
            if this.at > 0 {
                this.pending.drain(..this.at);
                this.at = 0;
                this.rec = 0;
                this.rec_end = 0;
            }
            let len = this.pending.len();
            this.pending.reserve(4096);
            let mut rb = ReadBuf::uninit(this.pending.spare_capacity_mut());
            let r = Pin::new(&mut this.io).poll_read(cx, &mut rb);
            let got = rb.filled().len();
            // SAFETY: the read initialized the first `got` bytes past the length.
            unsafe { this.pending.set_len(len + got) };
            match r {
                Poll::Ready(Ok(())) if got == 0 => return Poll::Ready(Ok(())),
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl AsyncWrite for WholeRecords {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        true
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

fn invalid(msg: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg)
}

/// Whether the records of a connection whose ClientHello this is may be done here: ALPN will
/// not pick h2 (`h2`: the server offers it), and `io` kept the bytes the handshake starts
/// from. Both versions rustls speaks (TLS 1.3 and 1.2) and all its suites (AES-GCM and
/// ChaCha20-Poly1305) are done here.
pub fn takes(hello: &rustls::server::ClientHello<'_>, io: &WholeRecords, h2: bool) -> bool {
    let wants_h2 = h2 && hello.alpn().is_some_and(|mut a| a.any(|p| p == b"h2"));
    !wants_h2 && io.given.is_some()
}

/// A handshake finished by rustls' unbuffered connection, turned into keys.
pub struct Handshaken {
    io: TcpStream,
    /// Received bytes past the handshake: `inbuf[plain..]` still sealed, `inbuf[..plain]`
    /// application data rustls opened with the handshake's last records.
    inbuf: Vec<u8>,
    plain: usize,
    peer_closed: bool,
    secrets: rustls::ExtractedSecrets,
    kernel: KernelConnection<ServerConnectionData>,
    pub h2: bool,
    pub peer_certificate: Option<rustls::pki_types::CertificateDer<'static>>,
}

/// Runs the handshake with `config` over the bytes the `Acceptor` read (the ClientHello) and
/// the socket, as rustls' unbuffered connection asks, until it is done; then takes the keys.
/// A handshake that fails sends rustls' alert first.
pub async fn handshake(io: WholeRecords, config: Arc<rustls::ServerConfig>) -> std::io::Result<Handshaken> {
    let (mut io, mut inbuf) = io.into_all();
    let mut conn = UnbufferedServerConnection::new(config).map_err(invalid)?;
    let mut out: Vec<u8> = Vec::new();
    let mut plain: Vec<u8> = Vec::new();
    let mut peer_closed = false;
    let mut failed: Option<rustls::Error> = None;
    loop {
        let input: &mut [u8] = if failed.is_some() { &mut [] } else { &mut inbuf };
        let status = conn.process_tls_records(input);
        let mut discard = status.discard;
        let mut read = false;
        let mut done = false;
        match status.state {
            Err(e) => {
                // The alert rustls queued for the error is sent, then the handshake ends.
                if failed.is_some() {
                    break;
                }
                failed = Some(e);
            }
            Ok(ConnectionState::EncodeTlsData(mut e)) => {
                // Asked with no room first: the answer is the size the message needs.
                let at = out.len();
                let size = match e.encode(&mut []) {
                    Err(EncodeError::InsufficientSize(s)) => s.required_size,
                    Ok(_) => 0,
                    Err(e) => return Err(invalid(e.to_string())),
                };
                if size > 0 {
                    out.resize(at + size, 0);
                    let n = e.encode(&mut out[at..]).map_err(|e| invalid(e.to_string()))?;
                    out.truncate(at + n);
                }
            }
            Ok(ConnectionState::TransmitTlsData(t)) => {
                io.write_all(&out).await?;
                out.clear();
                t.done();
            }
            Ok(ConnectionState::ReadTraffic(mut r)) => {
                while let Some(record) = r.next_record() {
                    let record = record.map_err(invalid)?;
                    discard += record.discard;
                    plain.extend_from_slice(record.payload);
                }
            }
            // After an error only its alert is wanted.
            Ok(_) if failed.is_some() => break,
            Ok(ConnectionState::PeerClosed) => peer_closed = true,
            Ok(ConnectionState::BlockedHandshake) => read = true,
            Ok(ConnectionState::WriteTraffic(_)) => done = true,
            Ok(_) => return Err(invalid("TLS handshake ended in a state the server does not expect")),
        }
        if failed.is_none() {
            inbuf.drain(..discard);
        }
        // In TLS 1.3 the server may write after its own Finished, before the client's:
        // the handshake is done once that is read too.
        if done && conn.is_handshaking() {
            read = true;
        } else if done {
            break;
        }
        if read && failed.is_none() {
            if peer_closed {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            inbuf.reserve(HEADER + MAX_CIPHER);
            let n = tokio::io::AsyncReadExt::read_buf(&mut io, &mut inbuf).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
        }
    }
    if let Some(e) = failed {
        if !out.is_empty() {
            let _ = io.write_all(&out).await;
        }
        return Err(invalid(e));
    }
    let h2 = conn.alpn_protocol() == Some(b"h2");
    let peer_certificate = conn.peer_certificates().and_then(|c| c.first()).map(|c| c.clone().into_owned());
    let (secrets, kernel) = conn.dangerous_into_kernel_connection().map_err(invalid)?;
    let n = plain.len();
    plain.extend_from_slice(&inbuf);
    Ok(Handshaken { io, inbuf: plain, plain: n, peer_closed, secrets, kernel, h2, peer_certificate })
}

/// One direction's key and record count.
struct Direction {
    key: LessSafeKey,
    iv: [u8; 12],
    seq: u64,
}

impl Direction {
    fn new((seq, secrets): (u64, rustls::ConnectionTrafficSecrets)) -> std::io::Result<Direction> {
        use rustls::ConnectionTrafficSecrets as S;
        let (alg, key, iv) = match secrets {
            S::Aes128Gcm { key, iv } => (&ring::aead::AES_128_GCM, key, iv),
            S::Aes256Gcm { key, iv } => (&ring::aead::AES_256_GCM, key, iv),
            S::Chacha20Poly1305 { key, iv } => (&ring::aead::CHACHA20_POLY1305, key, iv),
            _ => return Err(invalid("TLS cipher suite without a record layer here")),
        };
        let key = LessSafeKey::new(UnboundKey::new(alg, key.as_ref()).map_err(|_| invalid("TLS key of a bad size"))?);
        let iv: [u8; 12] = iv.as_ref().try_into().map_err(|_| invalid("TLS nonce of a bad size"))?;
        Ok(Direction { key, iv, seq })
    }

    /// The next record's sequence number and nonce: the IV with the sequence number (RFC
    /// 8446 section 5.3; TLS 1.2's ChaCha20-Poly1305, RFC 7905; and the nonce TLS 1.2's
    /// AES-GCM records are sealed with, whose last 8 bytes are sent, as rustls does).
    fn next(&mut self) -> (u64, [u8; 12]) {
        let seq = self.seq;
        let mut n = self.iv;
        for (b, s) in n[4..].iter_mut().zip(seq.to_be_bytes()) {
            *b ^= s;
        }
        self.seq += 1;
        (seq, n)
    }
}

/// How records are protected, by the version and suite negotiated.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Protection {
    /// TLS 1.3: the outer type is application_data, the real one the last byte of the
    /// plaintext before any padding; the header is the AAD.
    Tls13,
    /// TLS 1.2 AES-GCM: each record starts with its explicit nonce, the rest of the nonce is
    /// the 4-byte salt (RFC 5288); the AAD is the sequence number, type, version and length.
    Tls12Gcm,
    /// TLS 1.2 ChaCha20-Poly1305: the nonce as TLS 1.3's, the AAD as TLS 1.2 AES-GCM's.
    Tls12Chacha,
}

/// TLS 1.2's AAD (RFC 5246 section 6.2.3.3): sequence number, type, version, plaintext length.
fn aad12(seq: u64, kind: u8, len: usize) -> [u8; 13] {
    let mut a = [0u8; 13];
    a[..8].copy_from_slice(&seq.to_be_bytes());
    a[8] = kind;
    a[9] = 3;
    a[10] = 3;
    a[11..].copy_from_slice(&(len as u16).to_be_bytes());
    a
}

/// Alert descriptions (RFC 8446 section 6).
const CLOSE_NOTIFY: u8 = 0;
const UNEXPECTED_MESSAGE: u8 = 10;
const BAD_RECORD_MAC: u8 = 20;
const RECORD_OVERFLOW: u8 = 22;
const DECODE_ERROR: u8 = 50;
const INTERNAL_ERROR: u8 = 80;
const USER_CANCELED: u8 = 90;
const NO_RENEGOTIATION: u8 = 100;
const WARNING: u8 = 1;
const CLIENT_HELLO: u8 = 1;

struct State {
    io: TcpStream,
    protection: Protection,
    rx: Direction,
    tx: Direction,
    kernel: KernelConnection<ServerConnectionData>,
    /// Records sealed with one key before the next is taken (the suite's confidentiality limit).
    tx_limit: u64,
    /// Received bytes: `[start..]` not yet opened; `plain` opened and not yet taken. Its
    /// capacity is `READ_SIZE`, grown to a whole record while one larger is read; reads go to
    /// the spare capacity (never zero-filled first).
    inbuf: Vec<u8>,
    start: usize,
    plain: (usize, usize),
    /// close_notify came: the end of the stream once `plain` is taken.
    eof: bool,
    /// The last socket read was short (as `tls::TlsRead::drained`).
    drained: bool,
    /// A fatal alert was sent or received: every later read and write fails.
    broken: bool,
    /// Sealed records not yet sent: `out[sent..]`.
    out: Vec<u8>,
    sent: usize,
    /// close_notify is sealed.
    closing: bool,
    /// TLS 1.2: a renegotiation was refused (a second one ends the connection, as rustls).
    refused_renegotiation: bool,
}

type Shared = Arc<std::sync::Mutex<State>>;

fn lock(s: &Shared) -> std::sync::MutexGuard<'_, State> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

/// The connection's halves over the keys of a finished handshake.
pub fn split(h: Handshaken) -> std::io::Result<(crate::cork::ReadHalf, crate::cork::WriteHalf)> {
    let chacha = matches!(h.secrets.tx.1, rustls::ConnectionTrafficSecrets::Chacha20Poly1305 { .. });
    let protection = match h.kernel.protocol_version() {
        rustls::ProtocolVersion::TLSv1_3 => Protection::Tls13,
        rustls::ProtocolVersion::TLSv1_2 if chacha => Protection::Tls12Chacha,
        rustls::ProtocolVersion::TLSv1_2 => Protection::Tls12Gcm,
        _ => return Err(invalid("TLS version without a record layer here")),
    };
    let rx = Direction::new(h.secrets.rx)?;
    let tx = Direction::new(h.secrets.tx)?;
    let tx_limit = match h.kernel.negotiated_cipher_suite() {
        rustls::SupportedCipherSuite::Tls13(s) => s.common.confidentiality_limit,
        rustls::SupportedCipherSuite::Tls12(s) => s.common.confidentiality_limit,
    };
    // The handshake's leftover bytes stay where they are.
    let mut inbuf = h.inbuf;
    inbuf.reserve_exact(READ_SIZE.saturating_sub(inbuf.len()));
    let state = State {
        io: h.io,
        protection,
        rx,
        tx,
        kernel: h.kernel,
        tx_limit,
        inbuf,
        start: h.plain,
        plain: (0, h.plain),
        eof: h.peer_closed,
        drained: false,
        broken: false,
        out: Vec::new(),
        sent: 0,
        closing: false,
        refused_renegotiation: false,
    };
    let shared = Arc::new(std::sync::Mutex::new(state));
    Ok((Box::new(RecRead { s: shared.clone(), waits: false }), Box::new(RecWrite { s: shared, held: false })))
}

struct RecRead {
    s: Shared,
    /// This read returned bytes and registered the task for the socket's next readiness.
    waits: bool,
}

/// Writes seal into `State::out` and send at once; what the socket has no room for stays
/// there (`held`) until a flush or the next write.
struct RecWrite {
    s: Shared,
    held: bool,
}

impl State {
    /// Ends the connection for `why`: the alert `desc` is sealed and sent if the socket takes
    /// it now, and every later read and write fails.
    fn fail(&mut self, desc: u8, why: &'static str) -> std::io::Error {
        if !self.broken {
            self.broken = true;
            self.out.drain(..self.sent);
            self.sent = 0;
            self.seal(ALERT, &[std::io::IoSlice::new(&[2, desc])], 2);
            let _ = self.send_now();
        }
        invalid(why)
    }

    /// Opens the next whole record in `inbuf`, if there is one: true if one was opened.
    fn open(&mut self) -> std::io::Result<bool> {
        let have = &self.inbuf[self.start..];
        if have.len() < HEADER {
            return Ok(false);
        }
        let len = u16::from_be_bytes([have[3], have[4]]) as usize;
        let outer = have[0];
        let tls13 = self.protection == Protection::Tls13;
        // After the handshake every TLS 1.3 record is sealed and says application_data
        // outside (RFC 8446 section 5.2); TLS 1.2's say their type, of which a client sends
        // these three.
        if if tls13 { outer != APPLICATION_DATA } else { !matches!(outer, APPLICATION_DATA | ALERT | HANDSHAKE) } {
            return Err(self.fail(UNEXPECTED_MESSAGE, "TLS record of an unexpected type after the handshake"));
        }
        if len > self.max_cipher() {
            return Err(self.fail(RECORD_OVERFLOW, "TLS record over the largest ciphertext (record_overflow)"));
        }
        if have.len() < HEADER + len {
            return Ok(false);
        }
        if self.rx.seq == u64::MAX {
            return Err(self.fail(INTERNAL_ERROR, "TLS record sequence number exhausted"));
        }
        let header: [u8; HEADER] = [have[0], have[1], have[2], have[3], have[4]];
        let body = self.start + HEADER;
        let (kind, content) = if tls13 {
            let (_, nonce) = self.rx.next();
            let nonce = Nonce::assume_unique_for_key(nonce);
            let opened = match self.rx.key.open_in_place(nonce, Aad::from(header), &mut self.inbuf[body..body + len]) {
                Ok(opened) => opened,
                Err(_) => return Err(self.fail(BAD_RECORD_MAC, "TLS record failed authentication (bad_record_mac)")),
            };
            // The inner content type is the last byte that is not padding.
            let Some(last) = opened.iter().rposition(|b| *b != 0) else {
                return Err(self.fail(UNEXPECTED_MESSAGE, "TLS record without a content type"));
            };
            if last > MAX_PLAIN {
                return Err(self.fail(RECORD_OVERFLOW, "TLS record over 2^14 bytes of plaintext (record_overflow)"));
            }
            (opened[last], (body, body + last))
        } else {
            let explicit = if self.protection == Protection::Tls12Gcm { EXPLICIT } else { 0 };
            // Too short for its nonce and tag: it cannot authenticate (as rustls answers it).
            let Some(plain) = len.checked_sub(explicit + TAG) else {
                return Err(self.fail(BAD_RECORD_MAC, "TLS record failed authentication (bad_record_mac)"));
            };
            if plain > MAX_PLAIN {
                return Err(self.fail(RECORD_OVERFLOW, "TLS record over 2^14 bytes of plaintext (record_overflow)"));
            }
            let (seq, mut nonce) = self.rx.next();
            if explicit > 0 {
                nonce[4..].copy_from_slice(&self.inbuf[body..body + EXPLICIT]);
            }
            let sealed = &mut self.inbuf[body + explicit..body + len];
            let aad = Aad::from(aad12(seq, outer, plain));
            if self.rx.key.open_in_place(Nonce::assume_unique_for_key(nonce), aad, sealed).is_err() {
                return Err(self.fail(BAD_RECORD_MAC, "TLS record failed authentication (bad_record_mac)"));
            }
            (outer, (body + explicit, body + explicit + plain))
        };
        self.start += HEADER + len;
        match kind {
            APPLICATION_DATA => self.plain = content,
            ALERT => self.alert(content)?,
            HANDSHAKE if tls13 => self.handshake_message(content)?,
            HANDSHAKE => self.renegotiation(content)?,
            _ => return Err(self.fail(UNEXPECTED_MESSAGE, "TLS record of an unexpected content type")),
        }
        Ok(true)
    }

    /// The largest ciphertext of a record the version allows, header apart.
    fn max_cipher(&self) -> usize {
        if self.protection == Protection::Tls13 {
            MAX_CIPHER
        } else {
            MAX_CIPHER_12
        }
    }

    /// TLS 1.2: a handshake message after the handshake is a client's renegotiation, which
    /// is refused with a warning, once; another, or any other message, ends the connection
    /// (as rustls answers them).
    fn renegotiation(&mut self, (a, b): (usize, usize)) -> std::io::Result<()> {
        if a < b && self.inbuf[a] == CLIENT_HELLO && !self.refused_renegotiation {
            self.refused_renegotiation = true;
            self.seal(ALERT, &[std::io::IoSlice::new(&[WARNING, NO_RENEGOTIATION])], 2);
            return Ok(());
        }
        Err(self.fail(UNEXPECTED_MESSAGE, "TLS handshake message after the handshake"))
    }

    /// An alert: close_notify ends the stream; user_canceled is only a warning; any other
    /// ends the connection.
    fn alert(&mut self, (a, b): (usize, usize)) -> std::io::Result<()> {
        match self.inbuf[a..b] {
            [_, CLOSE_NOTIFY] => self.eof = true,
            [_, USER_CANCELED] => {}
            // TLS 1.2's warnings are not fatal (RFC 5246 section 7.2); TLS 1.3 has none.
            [WARNING, _] if self.protection != Protection::Tls13 => {}
            [_, _] => {
                self.broken = true;
                return Err(std::io::Error::new(std::io::ErrorKind::ConnectionAborted, "TLS alert from the client"));
            }
            _ => return Err(self.fail(DECODE_ERROR, "TLS alert of a bad length")),
        }
        Ok(())
    }

    /// Handshake messages after the handshake: only KeyUpdate comes from a client (the
    /// server asks for no certificate after the handshake). Each must be whole in its record.
    fn handshake_message(&mut self, (mut a, b): (usize, usize)) -> std::io::Result<()> {
        while a < b {
            let m = &self.inbuf[a..b];
            if m.len() < 4 {
                return Err(self.fail(UNEXPECTED_MESSAGE, "TLS handshake message split across records"));
            }
            let len = u32::from_be_bytes([0, m[1], m[2], m[3]]) as usize;
            if m[0] != KEY_UPDATE {
                return Err(self.fail(UNEXPECTED_MESSAGE, "TLS handshake message after the handshake"));
            }
            if len != 1 || m.len() < 5 || m[4] > 1 {
                return Err(self.fail(DECODE_ERROR, "TLS KeyUpdate malformed"));
            }
            let requested = m[4] == 1;
            // The client's next records are sealed with the next key.
            match self.kernel.update_rx_secret() {
                Ok(next) => self.rx = Direction::new(next)?,
                Err(_) => return Err(self.fail(INTERNAL_ERROR, "TLS key update failed")),
            }
            // Asked for ours too: a KeyUpdate of our own under the old key, then the new.
            if requested {
                self.update_tx()?;
            }
            a += 5;
            // What follows a key change is sealed with the next key: nothing more may share
            // the KeyUpdate's record (RFC 8446 section 5.1).
            if a < b {
                return Err(self.fail(UNEXPECTED_MESSAGE, "TLS KeyUpdate not at the end of its record"));
            }
        }
        Ok(())
    }

    /// Seals a KeyUpdate (update_not_requested) and takes the next sending key.
    fn update_tx(&mut self) -> std::io::Result<()> {
        let message = [KEY_UPDATE, 0, 0, 1, 0];
        self.seal(HANDSHAKE, &[std::io::IoSlice::new(&message)], message.len());
        match self.kernel.update_tx_secret() {
            Ok(next) => self.tx = Direction::new(next)?,
            Err(_) => return Err(self.fail(INTERNAL_ERROR, "TLS key update failed")),
        }
        Ok(())
    }

    /// Sends what is sealed: true when all is sent, false when the socket is full (with a
    /// wake-up registered for room).
    fn send(&mut self, cx: &mut Context<'_>) -> std::io::Result<bool> {
        while self.sent < self.out.len() {
            let mut w = crate::tls::SocketWriter { io: &mut self.io, cx };
            match std::io::Write::write(&mut w, &self.out[self.sent..]) {
                Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                Ok(n) => self.sent += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        self.out.clear();
        self.sent = 0;
        if self.out.capacity() > OUT_KEEP {
            self.out = Vec::new();
        }
        Ok(true)
    }

    /// `send` without a task to wake: for an alert before the connection ends.
    fn send_now(&mut self) -> std::io::Result<()> {
        while self.sent < self.out.len() {
            match self.io.try_write(&self.out[self.sent..]) {
                Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                Ok(n) => self.sent += n,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Seals one record of `kind` around the first `take` bytes of `bufs` at the end of
    /// `out`, in place: header, plaintext, the content type, the tag (RFC 8446 section 5.2).
    fn seal(&mut self, kind: u8, bufs: &[std::io::IoSlice<'_>], take: usize) {
        // TLS 1.2 apart, so that TLS 1.3's path stays as it was (one branch more).
        if self.protection != Protection::Tls13 {
            return self.seal12(kind, bufs, take);
        }
        let at = self.out.len();
        let inner = padded_inner(take);
        self.out.reserve(HEADER + inner + PAD_ROOM + TAG);
        let len = (inner + TAG) as u16;
        let [hi, lo] = len.to_be_bytes();
        let header = [APPLICATION_DATA, 3, 3, hi, lo];
        self.out.extend_from_slice(&header);
        append(&mut self.out, bufs, take);
        self.out.push(kind);
        // Zero padding up to `inner` (RFC 8446 section 5.4): a fixed-size copy, cut back.
        self.out.extend_from_slice(&[0; PAD_ROOM]);
        self.out.truncate(at + HEADER + inner);
        let nonce = Nonce::assume_unique_for_key(self.tx.next().1);
        // Sealing fails only for a plaintext over the AEAD's limit (gigabytes), which a
        // record cannot reach.
        if let Ok(tag) = self.tx.key.seal_in_place_separate_tag(nonce, Aad::from(header), &mut self.out[at + HEADER..])
        {
            self.out.extend_from_slice(tag.as_ref());
        }
    }

    /// `seal` for TLS 1.2: header (the real type), the explicit nonce (AES-GCM), plaintext,
    /// the tag; the AAD is `aad12`'s.
    fn seal12(&mut self, kind: u8, bufs: &[std::io::IoSlice<'_>], take: usize) {
        let at = self.out.len();
        let explicit = if self.protection == Protection::Tls12Gcm { EXPLICIT } else { 0 };
        self.out.reserve(HEADER + explicit + take + TAG);
        let len = (explicit + take + TAG) as u16;
        let [hi, lo] = len.to_be_bytes();
        self.out.extend_from_slice(&[kind, 3, 3, hi, lo]);
        let (seq, nonce) = self.tx.next();
        // The nonce's last 8 bytes are the explicit part (as rustls seals).
        self.out.extend_from_slice(&nonce[12 - explicit..]);
        append(&mut self.out, bufs, take);
        let aad = Aad::from(aad12(seq, kind, take));
        let nonce = Nonce::assume_unique_for_key(nonce);
        if let Ok(tag) = self.tx.key.seal_in_place_separate_tag(nonce, aad, &mut self.out[at + HEADER + explicit..]) {
            self.out.extend_from_slice(tag.as_ref());
        }
    }
}

/// The most zero bytes of padding a sealed TLS 1.3 record gets (`padded_inner`).
const PAD_ROOM: usize = 15;

/// The length of a TLS 1.3 record's inner plaintext (RFC 8446 section 5.2: content, type,
/// zero padding) around `take` bytes of content: padded up to whole 16-byte blocks where
/// the record has room (at most 2^14 + 1 bytes, section 5.4). ring's AES-GCM then seals
/// whole blocks only: a last partial block costs it a copy into a zeroed block and back
/// and a single-block AES call, for the same number of AES and GHASH blocks; the client
/// strips the padding as it must (section 5.4).
fn padded_inner(take: usize) -> usize {
    let inner = take + 1;
    let padded = inner.next_multiple_of(16);
    if padded <= MAX_PLAIN + 1 {
        padded
    } else {
        inner
    }
}

/// Appends the first `take` bytes of `bufs` to `out`.
fn append(out: &mut Vec<u8>, bufs: &[std::io::IoSlice<'_>], mut take: usize) {
    for b in bufs {
        if take == 0 {
            break;
        }
        let n = b.len().min(take);
        out.extend_from_slice(&b[..n]);
        take -= n;
    }
}

impl AsyncRead for RecRead {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        this.waits = false;
        let mut g = lock(&this.s);
        let s = &mut *g;
        if s.broken {
            return Poll::Ready(Err(invalid("TLS connection failed")));
        }
        loop {
            let (a, b) = s.plain;
            if a < b {
                let n = (b - a).min(buf.remaining());
                buf.put_slice(&s.inbuf[a..a + n]);
                s.plain.0 += n;
                if s.plain.0 == b && s.start == s.inbuf.len() {
                    s.start = 0;
                    s.inbuf.clear();
                    // All that was read is taken and the socket is drained: hyper's next read
                    // would find nothing; the task is registered now (as `tls::TlsRead`).
                    if s.drained && !s.eof && s.io.poll_read_ready(cx).is_pending() {
                        s.drained = false;
                        this.waits = true;
                    }
                }
                return Poll::Ready(Ok(()));
            }
            if s.eof || buf.remaining() == 0 {
                return Poll::Ready(Ok(()));
            }
            if s.open()? {
                // Our KeyUpdate, if the client asked for one, goes out with the next write or
                // flush; sent now where the socket takes it.
                // Where the socket is full, it is left for the write half, which registers
                // for room.
                if s.sent < s.out.len() {
                    let _ = s.send_now();
                }
                continue;
            }
            // Nothing whole: the socket drained by the last read is waited for first.
            if s.drained && s.io.poll_read_ready(cx).is_pending() {
                s.drained = false;
                return Poll::Pending;
            }
            // The record begun goes to the front, so that it fits whole.
            if s.start > 0 {
                s.inbuf.drain(..s.start);
                s.start = 0;
            }
            let held = s.inbuf.len();
            if held == s.inbuf.capacity() {
                // Full with part of one record (whole ones are opened): one larger than the
                // buffer, which grows to the largest record for it.
                let whole = HEADER + s.max_cipher();
                if held >= whole {
                    return Poll::Ready(Err(s.fail(INTERNAL_ERROR, "TLS read buffer full")));
                }
                s.inbuf.reserve_exact(whole - held);
            } else if held == 0 && s.inbuf.capacity() > READ_SIZE {
                // Nothing held: back to the size at rest.
                s.inbuf = Vec::with_capacity(READ_SIZE);
            }
            let mut reader = crate::tls::SocketReader { io: &mut s.io, cx, drained: false };
            let r = reader.read_spare(&mut s.inbuf);
            s.drained = reader.drained;
            match r {
                // The socket ended without close_notify: as rustls reports it.
                Ok(0) => {
                    return Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "peer closed connection without sending TLS close_notify",
                    )))
                }
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Poll::Pending,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl crate::cork::ConnRead for RecRead {
    fn waits_after_read(&mut self) -> bool {
        self.waits
    }
}

impl AsyncWrite for RecWrite {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        self.poll_write_vectored(cx, &[std::io::IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let mut g = lock(&this.s);
        let s = &mut *g;
        if s.broken || s.closing {
            return Poll::Ready(Err(std::io::ErrorKind::BrokenPipe.into()));
        }
        // Records still held go first; while the socket has no room for them, nothing more
        // is taken.
        if s.sent < s.out.len() && !s.send(cx)? {
            this.held = true;
            return Poll::Pending;
        }
        // One record's worth a write, sealed and sent.
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        let n = total.min(MAX_PLAIN);
        if n > 0 {
            if s.tx.seq >= s.tx_limit {
                // TLS 1.2 has no key update: the connection ends there, as rustls ends it.
                if s.protection != Protection::Tls13 {
                    s.closing = true;
                    s.seal(ALERT, &[std::io::IoSlice::new(&[WARNING, CLOSE_NOTIFY])], 2);
                    let _ = s.send(cx)?;
                    return Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::BrokenPipe,
                        "TLS 1.2 key used for the most records it may seal; connection closed",
                    )));
                }
                s.update_tx()?;
            }
            s.seal(APPLICATION_DATA, bufs, n);
        }
        this.held = !s.send(cx)?;
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let mut g = lock(&this.s);
        this.held = !g.send(cx)?;
        if this.held {
            return Poll::Pending;
        }
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let mut g = lock(&this.s);
        let s = &mut *g;
        if !s.closing && !s.broken {
            s.closing = true;
            s.seal(ALERT, &[std::io::IoSlice::new(&[1, CLOSE_NOTIFY])], 2);
        }
        this.held = !s.send(cx)?;
        if this.held {
            return Poll::Pending;
        }
        Pin::new(&mut s.io).poll_shutdown(cx)
    }
}

impl crate::cork::ConnWrite for RecWrite {
    fn holds_output(&self) -> bool {
        self.held
    }
}

#[cfg(test)]
mod key_update_tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    /// A client's KeyUpdate followed by more in the same record: what follows a key change
    /// must come under the next key, so the server ends the connection (unexpected_message)
    /// rather than reading on.
    #[tokio::test]
    async fn a_key_update_sharing_its_record_ends_the_connection() {
        let entry = crate::tls::NativeTls {
            cert: include_str!("../test/fixtures/tls/a.pem").into(),
            key: include_str!("../test/fixtures/tls/a.key").into(),
            ca: None,
            passphrase: None,
            server_name: None,
            request_cert: None,
        };
        let acceptor = crate::tls::TlsAcceptor::new(&[entry], false).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (socket, _) = listener.accept().await.unwrap();
            let mut accepted = acceptor.accept(socket, None).await.unwrap();
            let mut buf = [0u8; 64];
            tokio::time::timeout(std::time::Duration::from_secs(5), accepted.read.read(&mut buf)).await
        });

        let mut roots = rustls::RootCertStore::empty();
        use rustls::pki_types::pem::PemObject;
        for ca in rustls::pki_types::CertificateDer::pem_slice_iter(include_bytes!("../test/fixtures/tls/ca.pem")) {
            roots.add(ca.unwrap()).unwrap();
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.enable_secret_extraction = true;
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let stream = tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await.unwrap();
        let (mut tcp, conn) = stream.into_inner();
        #[allow(deprecated)]
        let secrets = conn.dangerous_extract_secrets().unwrap();
        let mut tx = Direction::new(secrets.tx).unwrap();

        // Two KeyUpdates (update_not_requested) and the inner content type in one record.
        let mut record = vec![APPLICATION_DATA, 3, 3, 0, 0];
        record.extend_from_slice(&[KEY_UPDATE, 0, 0, 1, 0, KEY_UPDATE, 0, 0, 1, 0, HANDSHAKE]);
        let len = (record.len() - HEADER + TAG) as u16;
        record[3..5].copy_from_slice(&len.to_be_bytes());
        let header: [u8; HEADER] = record[..HEADER].try_into().unwrap();
        let nonce = Nonce::assume_unique_for_key(tx.next().1);
        let tag = tx.key.seal_in_place_separate_tag(nonce, Aad::from(header), &mut record[HEADER..]).unwrap();
        record.extend_from_slice(tag.as_ref());
        tcp.write_all(&record).await.unwrap();

        let read = server.await.unwrap().expect("the server ends the connection, not waits");
        let e = read.expect_err("the record is refused");
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
        assert!(e.to_string().contains("KeyUpdate not at the end of its record"), "{e}");
    }
}
