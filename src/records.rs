//! HTTPS/1.1 over TLS 1.3 with the records done here: rustls does the handshake (unbuffered
//! API), then hands over the session's keys (`KernelConnection`), and each record is opened
//! in place in our read buffer and sealed in place in our write buffer with ring's AEAD,
//! without rustls' plaintext and record buffers. rustls still computes the keys of a key
//! update. TLS 1.2 and HTTP/2 stay on rustls' record layer (tls.rs).

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
const HEADER: usize = 5;
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

/// Whether the records of a connection whose ClientHello this is may be done here: the
/// client offers TLS 1.3 (its `supported_versions`, read from the bytes `io` kept) and a TLS
/// 1.3 suite, so rustls will pick TLS 1.3, and ALPN will not pick h2 (`h2`: the server
/// offers it).
pub fn takes(hello: &rustls::server::ClientHello<'_>, io: &WholeRecords, h2: bool) -> bool {
    let tls13 = hello
        .cipher_suites()
        .iter()
        .any(|s| rustls::crypto::ring::ALL_CIPHER_SUITES.iter().any(|k| k.suite() == *s && k.tls13().is_some()));
    let wants_h2 = h2 && hello.alpn().is_some_and(|mut a| a.any(|p| p == b"h2"));
    tls13 && !wants_h2 && io.given.as_deref().is_some_and(offers_tls13)
}

/// Whether the ClientHello at the start of `records` (as read from the socket) lists TLS 1.3
/// in its `supported_versions` extension (RFC 8446 section 4.2.1). What does not parse says
/// no: that connection stays on rustls' record layer, which serves every version.
fn offers_tls13(records: &[u8]) -> bool {
    // The handshake bytes of the leading handshake records: a ClientHello may span records.
    let mut hello = Vec::new();
    let mut at = 0;
    while let Some(h) = records.get(at..at + HEADER) {
        let len = u16::from_be_bytes([h[3], h[4]]) as usize;
        match records.get(at + HEADER..at + HEADER + len) {
            Some(body) if h[0] == HANDSHAKE => hello.extend_from_slice(body),
            _ => break,
        }
        at += HEADER + len;
    }
    hello_offers_tls13(&hello).unwrap_or(false)
}

/// A ClientHello handshake message's `supported_versions` has TLS 1.3; `None` if the message
/// does not parse.
fn hello_offers_tls13(message: &[u8]) -> Option<bool> {
    struct Bytes<'a>(&'a [u8]);
    impl<'a> Bytes<'a> {
        fn take(&mut self, n: usize) -> Option<&'a [u8]> {
            let (a, b) = (self.0.get(..n)?, self.0.get(n..)?);
            self.0 = b;
            Some(a)
        }
        fn len8(&mut self) -> Option<&'a [u8]> {
            let n = self.take(1)?[0] as usize;
            self.take(n)
        }
        fn len16(&mut self) -> Option<&'a [u8]> {
            let n = self.take(2)?;
            self.take(u16::from_be_bytes([n[0], n[1]]) as usize)
        }
    }
    let mut m = Bytes(message);
    let head = m.take(4)?;
    if head[0] != 1 {
        return None;
    }
    let mut body = Bytes(m.take(u32::from_be_bytes([0, head[1], head[2], head[3]]) as usize)?);
    body.take(2 + 32)?; // legacy_version, random
    body.len8()?; // legacy_session_id
    body.len16()?; // cipher_suites
    body.len8()?; // legacy_compression_methods
    let mut extensions = Bytes(body.len16()?);
    while !extensions.0.is_empty() {
        let kind = extensions.take(2)?;
        let data = extensions.len16()?;
        if kind == [0, 43] {
            let versions = Bytes(data).len8()?;
            return Some(versions.chunks_exact(2).any(|v| v == [3, 4]));
        }
    }
    Some(false)
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
    // `takes` saw TLS 1.3 offered with a suite of it, so rustls picked it; a check all the
    // same, as the records here are TLS 1.3's only.
    if kernel.protocol_version() != rustls::ProtocolVersion::TLSv1_3 {
        return Err(invalid("TLS 1.2 negotiated where TLS 1.3 was offered; not served"));
    }
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

    /// The next record's nonce (RFC 8446 section 5.3): the IV with the sequence number.
    fn nonce(&mut self) -> Nonce {
        let mut n = self.iv;
        for (b, s) in n[4..].iter_mut().zip(self.seq.to_be_bytes()) {
            *b ^= s;
        }
        self.seq += 1;
        Nonce::assume_unique_for_key(n)
    }
}

/// Alert descriptions (RFC 8446 section 6).
const CLOSE_NOTIFY: u8 = 0;
const UNEXPECTED_MESSAGE: u8 = 10;
const BAD_RECORD_MAC: u8 = 20;
const RECORD_OVERFLOW: u8 = 22;
const DECODE_ERROR: u8 = 50;
const INTERNAL_ERROR: u8 = 80;
const USER_CANCELED: u8 = 90;

struct State {
    io: TcpStream,
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
}

type Shared = Arc<std::sync::Mutex<State>>;

fn lock(s: &Shared) -> std::sync::MutexGuard<'_, State> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

/// The connection's halves over the keys of a finished handshake.
pub fn split(h: Handshaken) -> std::io::Result<(crate::cork::ReadHalf, crate::cork::WriteHalf)> {
    let rx = Direction::new(h.secrets.rx)?;
    let tx = Direction::new(h.secrets.tx)?;
    let tx_limit = h.kernel.negotiated_cipher_suite().tls13().map_or(u64::MAX, |s| s.common.confidentiality_limit);
    // The handshake's leftover bytes stay where they are.
    let mut inbuf = h.inbuf;
    inbuf.reserve_exact(READ_SIZE.saturating_sub(inbuf.len()));
    let state = State {
        io: h.io,
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
        // After the handshake every record is sealed and says application_data outside
        // (RFC 8446 section 5.2).
        if have[0] != APPLICATION_DATA {
            return Err(self.fail(UNEXPECTED_MESSAGE, "TLS record of an unexpected type after the handshake"));
        }
        if len > MAX_CIPHER {
            return Err(self.fail(RECORD_OVERFLOW, "TLS record over 2^14 + 256 bytes (record_overflow)"));
        }
        if have.len() < HEADER + len {
            return Ok(false);
        }
        if self.rx.seq == u64::MAX {
            return Err(self.fail(INTERNAL_ERROR, "TLS record sequence number exhausted"));
        }
        let header: [u8; HEADER] = [have[0], have[1], have[2], have[3], have[4]];
        let body = self.start + HEADER;
        let nonce = self.rx.nonce();
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
        let kind = opened[last];
        self.start += HEADER + len;
        let content = (body, body + last);
        match kind {
            APPLICATION_DATA => self.plain = content,
            ALERT => self.alert(content)?,
            HANDSHAKE => self.handshake_message(content)?,
            _ => return Err(self.fail(UNEXPECTED_MESSAGE, "TLS record of an unexpected content type")),
        }
        Ok(true)
    }

    /// An alert: close_notify ends the stream; user_canceled is only a warning; any other
    /// ends the connection.
    fn alert(&mut self, (a, b): (usize, usize)) -> std::io::Result<()> {
        match self.inbuf[a..b] {
            [_, CLOSE_NOTIFY] => self.eof = true,
            [_, USER_CANCELED] => {}
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
    fn seal(&mut self, kind: u8, bufs: &[std::io::IoSlice<'_>], mut take: usize) {
        let at = self.out.len();
        self.out.reserve(HEADER + take + 1 + TAG);
        let len = (take + 1 + TAG) as u16;
        let [hi, lo] = len.to_be_bytes();
        let header = [APPLICATION_DATA, 3, 3, hi, lo];
        self.out.extend_from_slice(&header);
        for b in bufs {
            if take == 0 {
                break;
            }
            let n = b.len().min(take);
            self.out.extend_from_slice(&b[..n]);
            take -= n;
        }
        self.out.push(kind);
        let nonce = self.tx.nonce();
        // Sealing fails only for a plaintext over the AEAD's limit (gigabytes), which a
        // record cannot reach.
        if let Ok(tag) = self.tx.key.seal_in_place_separate_tag(nonce, Aad::from(header), &mut self.out[at + HEADER..])
        {
            self.out.extend_from_slice(tag.as_ref());
        }
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
                if held >= HEADER + MAX_CIPHER {
                    return Poll::Ready(Err(s.fail(INTERNAL_ERROR, "TLS read buffer full")));
                }
                s.inbuf.reserve_exact(HEADER + MAX_CIPHER - held);
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
mod tests {
    use super::*;

    /// The first flight (the ClientHello's records) of a rustls client with `versions`.
    fn client_hello(versions: &[&'static rustls::SupportedProtocolVersion]) -> Vec<u8> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        let name = rustls::pki_types::ServerName::try_from("example.test").unwrap();
        let mut conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
        let mut out = Vec::new();
        while conn.wants_write() {
            conn.write_tls(&mut out).unwrap();
        }
        out
    }

    /// `records`' handshake bytes again, `first` of them in one record and the rest in another.
    fn split_records(records: &[u8], first: usize) -> Vec<u8> {
        let body = &records[HEADER..];
        let mut out = Vec::new();
        for part in [&body[..first], &body[first..]] {
            out.extend_from_slice(&[HANDSHAKE, 3, 1]);
            out.extend_from_slice(&(part.len() as u16).to_be_bytes());
            out.extend_from_slice(part);
        }
        out
    }

    #[test]
    fn supported_versions_of_a_client_hello() {
        let both = client_hello(&[&rustls::version::TLS13, &rustls::version::TLS12]);
        assert!(offers_tls13(&both));
        assert!(offers_tls13(&split_records(&both, 40)));
        assert!(!offers_tls13(&client_hello(&[&rustls::version::TLS12])));
        // TLS 1.3 suites listed, supported_versions without TLS 1.3: the version is what counts.
        // Its type (43), a length, and a list one byte shorter than that.
        let ext = both
            .windows(5)
            .position(|w| w[..3] == [0, 43, 0] && w[4] as usize + 1 == w[3] as usize)
            .expect("a supported_versions extension");
        let mut only12 = both.clone();
        let (list, len) = (ext + 5, both[ext + 4] as usize);
        for v in only12[list..list + len].chunks_exact_mut(2) {
            if v == [3, 4] {
                v.copy_from_slice(&[3, 3]);
            }
        }
        assert_ne!(only12, both);
        assert!(!offers_tls13(&only12));
        // Cut short anywhere, or not a handshake record: no, and no panic.
        for n in 0..both.len() {
            assert!(!offers_tls13(&both[..n]), "a ClientHello cut at {n} bytes");
        }
        let mut alert = both.clone();
        alert[0] = ALERT;
        assert!(!offers_tls13(&alert));
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
        let nonce = tx.nonce();
        let tag = tx.key.seal_in_place_separate_tag(nonce, Aad::from(header), &mut record[HEADER..]).unwrap();
        record.extend_from_slice(tag.as_ref());
        tcp.write_all(&record).await.unwrap();

        let read = server.await.unwrap().expect("the server ends the connection, not waits");
        let e = read.expect_err("the record is refused");
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
        assert!(e.to_string().contains("KeyUpdate not at the end of its record"), "{e}");
    }
}
