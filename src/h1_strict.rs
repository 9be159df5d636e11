//! HTTP/1.1 framing rules that hyper does not enforce, checked on the request bytes as
//! they are read, before hyper parses them.
//!
//! node:http (llhttp) refuses these and hyper accepts them; a proxy in front that agrees
//! with one and a server that agrees with the other is what request smuggling needs:
//!
//! - a bare LF ending a line of a request head (RFC 9112 2.2 lets a server accept it; we
//!   do not),
//! - `Content-Length` given twice or as a list, even with equal values (RFC 9110 8.6
//!   allows either answer; we take the strict one),
//! - `chunked` named twice in `Transfer-Encoding` (RFC 9112 7: never applied twice),
//! - whitespace after a chunk size that no `;` extension follows (`5 \r\n`; RFC 9112 7.1
//!   allows whitespace only before a chunk extension).
//!
//! A violation is answered by hyper itself: `scan` returns where it is, and the reader
//! hands hyper the bytes before it followed by `\0\r\n\r\n` (a NUL, which hyper's parser
//! refuses wherever it stands, then the end of a head, which hyper waits for before it
//! parses again), so the client gets hyper's 400 at exactly that request, after the
//! responses to the requests before it (pipelining keeps its order). The scanner then
//! stops. It follows request framing (heads, `Content-Length`
//! and chunked bodies) to know where each head starts; when it meets anything it does not
//! understand, hyper will refuse that too, so it stops checking rather than guessing.
//!
//! Bytes after an upgrade are not HTTP/1.1: none is served today (hyper runs without
//! `with_upgrades`); a connection that upgrades must stop calling `scan`.
//!
//! Cost: a head is searched for line ends eight bytes at a time (`find_lf`); only
//! `Content-Length` and `Transfer-Encoding` lines are looked at further; body bytes are
//! skipped by count.
//! State is a few words plus the start of a line split across reads (at most
//! `LINE_KEEP` bytes).

/// Bytes of a line split across reads kept to classify it: enough for a
/// `Transfer-Encoding` or `Content-Length` line with any sane value. Such a line longer
/// than this is refused.
const LINE_KEEP: usize = 96;

/// What the scanner expects next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// A request head (or the empty lines allowed before one).
    Head,
    /// This many bytes of a `Content-Length` body.
    Length(u64),
    /// A chunk-size line: the size so far, and whether whitespace followed it.
    ChunkSize {
        size: u64,
        digits: bool,
        space: bool,
    },
    /// A chunk extension, up to the CR.
    ChunkExt {
        size: u64,
    },
    /// The LF ending a chunk-size line.
    ChunkSizeLf {
        size: u64,
    },
    /// This many bytes of chunk data.
    ChunkData(u64),
    /// The CRLF after chunk data.
    ChunkDataCr,
    ChunkDataLf,
    /// Trailer lines after the last chunk, ended by an empty line.
    Trailers,
    /// Stopped at the end of a head whose body is read past hyper (`take_direct`).
    Direct,
    /// Stopped: a violation was found, or framing the scanner does not follow.
    Off,
}

/// Per-connection scanner state (see the module comment).
pub(crate) struct Strict {
    state: State,
    /// Where the violation found by the current `scan` is.
    violation: Option<usize>,
    /// The last byte of the previous read, for a CRLF split across reads.
    last: u8,
    /// The request line of the current head was seen.
    request_line: bool,
    /// The start of the current line when it began in an earlier read (its first
    /// `LINE_KEEP` bytes), and the bytes of it seen so far (0: it starts in this read).
    line: [u8; LINE_KEEP],
    line_total: usize,
    /// Of the current head: `Content-Length` fields seen and the value, `chunked` tokens
    /// in `Transfer-Encoding`, whether `chunked` was the last coding, and whether any
    /// `Transfer-Encoding` was present.
    content_lengths: u32,
    content_length: u64,
    chunked: u8,
    chunked_last: bool,
    transfer_encoding: bool,
    /// Request heads ended since `take_heads` last looked.
    heads: u32,
    /// Of the current head: an `Expect` field was present, and where the `Content-Length`
    /// value's digits are in the current read (when its line is wholly in it).
    expect: bool,
    length_at: Option<(usize, usize)>,
    /// `scan` stops at a head whose body may be read past hyper (`DIRECT_MIN` up to
    /// `DIRECT_MAX`; `take_direct`): set for plain TCP connections.
    direct_ok: bool,
    direct: DirectHead,
}

/// The declared lengths whose bodies may be read past hyper: over `PRECOLLECT_LIMIT` (a
/// smaller one is read before JS gets the request, as it comes with its head), up to
/// `COLLECT_RESERVE_MAX` (a longer one is collected in pieces as it comes).
pub(crate) const DIRECT_MIN: u64 = crate::options::PRECOLLECT_LIMIT + 1;
pub(crate) const DIRECT_MAX: u64 = crate::body::COLLECT_RESERVE_MAX;

/// A head whose body is to be read past hyper (direct.rs): `scan` stopped at its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct DirectHead {
    /// Where the body starts in the bytes scanned.
    pub(crate) body_at: usize,
    /// Where the length's digits are, and how many.
    pub(crate) digits_at: usize,
    pub(crate) digits: usize,
    pub(crate) length: u64,
    /// The heads that ended in this scan, this one included.
    pub(crate) heads: u32,
}

impl Default for Strict {
    fn default() -> Self {
        Strict {
            state: State::Head,
            violation: None,
            last: 0,
            request_line: false,
            line: [0; LINE_KEEP],
            line_total: 0,
            content_lengths: 0,
            content_length: 0,
            chunked: 0,
            chunked_last: false,
            transfer_encoding: false,
            heads: 0,
            expect: false,
            length_at: None,
            direct_ok: false,
            direct: DirectHead::default(),
        }
    }
}

/// What a header line says that the scanner cares about.
enum Field {
    Other,
    Expect,
    ContentLength(Option<u64>),
    TransferEncoding { chunked: u8, last_chunked: bool },
}

fn field(line: &[u8]) -> Field {
    let Some(colon) = memchr::memchr(b':', line) else { return Field::Other };
    let (name, value) = (&line[..colon], &line[colon + 1..]);
    if name.eq_ignore_ascii_case(b"content-length") {
        let v = value.trim_ascii();
        let mut n: u64 = 0;
        let valid = !v.is_empty()
            && v.iter().all(|&b| {
                b.is_ascii_digit()
                    && match n.checked_mul(10).and_then(|n| n.checked_add(u64::from(b - b'0'))) {
                        Some(m) => {
                            n = m;
                            true
                        }
                        None => false,
                    }
            });
        Field::ContentLength(valid.then_some(n))
    } else if name.eq_ignore_ascii_case(b"expect") {
        Field::Expect
    } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
        let mut chunked = 0;
        let mut last_chunked = false;
        for coding in value.split(|&b| b == b',') {
            let coding = coding.trim_ascii();
            if coding.is_empty() {
                continue;
            }
            last_chunked = coding.eq_ignore_ascii_case(b"chunked");
            chunked += u8::from(last_chunked);
        }
        Field::TransferEncoding { chunked, last_chunked }
    } else {
        Field::Other
    }
}

/// The first LF in `hay`. Header lines are short (tens of bytes), and `memchr` costs about
/// 50 instructions a call there (its dispatch, and a vector setup for a short input): a
/// word at a time costs less. In a word XORed with LFs, an LF is a zero byte, and the
/// lowest byte flagged by `(x - 0x01..) & !x & 0x80..` is exactly the lowest zero byte
/// (a borrow only runs upward from a zero byte). Words are read little-endian, so byte
/// order is the slice's on any target.
#[inline]
fn find_lf(hay: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    const LFS: u64 = ONES * b'\n' as u64;
    let mut words = hay.chunks_exact(8);
    let mut at = 0;
    for word in &mut words {
        let x = u64::from_le_bytes(<[u8; 8]>::try_from(word).unwrap_or_default()) ^ LFS;
        let found = x.wrapping_sub(ONES) & !x & HIGH;
        if found != 0 {
            return Some(at + (found.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    words.remainder().iter().position(|&b| b == b'\n').map(|k| at + k)
}

/// Could this line (its first bytes) be a `Content-Length`, `Transfer-Encoding` or
/// `Expect` field?
fn maybe_framing(first: u8) -> bool {
    matches!(first, b'c' | b'C' | b't' | b'T' | b'e' | b'E')
}

/// Where the value of the field `line` starts, past the colon and any whitespace.
fn value_at(line: &[u8]) -> usize {
    let colon = memchr::memchr(b':', line).map_or(line.len(), |c| c + 1);
    colon + line[colon..].iter().take_while(|b| b.is_ascii_whitespace()).count()
}

impl Strict {
    /// A scanner for a new connection; `direct_ok` for plain TCP (see `take_direct`).
    pub(crate) fn new(direct_ok: bool) -> Strict {
        Strict { direct_ok, ..Strict::default() }
    }

    /// Checks the bytes just read (`buf`), in order after everything checked before.
    /// Returns the position of a violation; checking stops there.
    #[inline(always)]
    pub(crate) fn scan(&mut self, buf: &[u8]) -> Option<usize> {
        // Its positions are in an earlier read's bytes: a head whose length line came in an
        // earlier read than its end keeps its body on hyper's path.
        self.length_at = None;
        let mut i = 0;
        while i < buf.len() {
            i = match self.state {
                State::Off => return self.violation.take(),
                // The caller takes the body out of `buf` and scans on after it.
                State::Direct => {
                    self.last = b'\n';
                    return None;
                }
                State::Head => self.head(buf, i),
                State::Length(n) => {
                    let take = n.min((buf.len() - i) as u64);
                    self.state = if take == n { State::Head } else { State::Length(n - take) };
                    i + take as usize
                }
                State::ChunkData(n) => {
                    let take = n.min((buf.len() - i) as u64);
                    self.state = if take == n { State::ChunkDataCr } else { State::ChunkData(n - take) };
                    i + take as usize
                }
                State::ChunkExt { size } => match memchr::memchr(b'\r', &buf[i..]) {
                    Some(k) => {
                        self.state = State::ChunkSizeLf { size };
                        i + k + 1
                    }
                    None => buf.len(),
                },
                State::Trailers => self.trailers(buf, i),
                _ => {
                    self.chunk_byte(buf, i);
                    i + 1
                }
            };
        }
        if let Some(&b) = buf.last() {
            self.last = b;
        }
        self.violation.take()
    }

    /// The last `scan` stopped at a head whose body is to be read past hyper (`take_direct`).
    #[inline]
    pub(crate) fn stopped(&self) -> bool {
        self.state == State::Direct
    }

    /// The head the last `scan` stopped at, if it did: one with one `Content-Length` from
    /// `DIRECT_MIN` to `DIRECT_MAX` and no `Transfer-Encoding` or `Expect`, whose length line
    /// was wholly in that read (with `direct_ok`). Scanning goes on at the next head; or,
    /// after `keep_body`, at its body.
    #[inline]
    pub(crate) fn take_direct(&mut self) -> Option<DirectHead> {
        if self.state != State::Direct {
            return None;
        }
        self.state = State::Head;
        Some(self.direct)
    }

    /// The body of the head `take_direct` gave stays in the bytes hyper gets after all:
    /// scanning goes on at it.
    pub(crate) fn keep_body(&mut self, length: u64) {
        self.state = State::Length(length);
    }

    /// Request heads that ended in the bytes scanned since the last call (a head counts
    /// once its empty line is in).
    pub(crate) fn take_heads(&mut self) -> u32 {
        std::mem::take(&mut self.heads)
    }

    /// Still following the framing: every head read so far was counted (`take_heads`).
    pub(crate) fn following(&self) -> bool {
        self.state != State::Off
    }

    /// Between requests: every request read so far is complete, and no byte of the next
    /// one has come. (False once checking stopped.)
    pub(crate) fn between_requests(&self) -> bool {
        self.state == State::Head && !self.request_line && self.line_total == 0
    }

    fn violation(&mut self, at: usize) {
        self.violation = Some(at);
        self.state = State::Off;
    }

    /// One byte of chunked framing outside data and extensions.
    fn chunk_byte(&mut self, buf: &[u8], at: usize) {
        let b = buf[at];
        self.state = match self.state {
            State::ChunkSize { size, digits, space } => match b {
                b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' if !space => {
                    let d = (b as char).to_digit(16).unwrap_or(0);
                    match size.checked_mul(16).and_then(|s| s.checked_add(u64::from(d))) {
                        Some(size) => State::ChunkSize { size, digits: true, space },
                        None => State::Off,
                    }
                }
                b' ' | b'\t' if digits => State::ChunkSize { size, digits, space: true },
                b';' if digits => State::ChunkExt { size },
                b'\r' if digits && space => return self.violation(at),
                b'\r' if digits => State::ChunkSizeLf { size },
                _ => State::Off,
            },
            State::ChunkSizeLf { size } => match b {
                b'\n' if size == 0 => {
                    self.line_total = 0;
                    State::Trailers
                }
                b'\n' => State::ChunkData(size),
                _ => State::Off,
            },
            State::ChunkDataCr if b == b'\r' => State::ChunkDataLf,
            State::ChunkDataLf if b == b'\n' => State::ChunkSize { size: 0, digits: false, space: false },
            _ => State::Off,
        };
    }

    /// Trailer lines: skipped to the empty line that ends them.
    fn trailers(&mut self, buf: &[u8], from: usize) -> usize {
        let Some(k) = find_lf(&buf[from..]) else {
            self.line_total += buf.len() - from;
            return buf.len();
        };
        let lf = from + k;
        let total = self.line_total + k;
        self.line_total = 0;
        if !self.ends_with_cr(buf, from, lf, total) {
            self.violation(lf);
            return buf.len();
        }
        if total == 1 {
            self.start_head();
        }
        lf + 1
    }

    /// Whether the line before the LF at `lf` (`total` bytes long in all, `from` where
    /// this read's part of it starts) ends with CR.
    fn ends_with_cr(&self, buf: &[u8], from: usize, lf: usize, total: usize) -> bool {
        if lf > from {
            buf[lf - 1] == b'\r'
        } else {
            total > 0 && self.last == b'\r'
        }
    }

    fn start_head(&mut self) {
        self.state = State::Head;
        self.request_line = false;
        self.line_total = 0;
        self.content_lengths = 0;
        self.content_length = 0;
        self.chunked = 0;
        self.chunked_last = false;
        self.transfer_encoding = false;
        // `length_at` is set with the first `Content-Length`, which `direct_head` needs.
        self.expect = false;
    }

    /// Head lines from `from`; returns where scanning goes on. Inlined into both of `scan`'s
    /// places, as it was into its one before the direct read took a second.
    #[inline(always)]
    fn head(&mut self, buf: &[u8], from: usize) -> usize {
        let mut i = from;
        loop {
            let Some(k) = find_lf(&buf[i..]) else {
                // A line continues in the next read: keep its start, which may matter.
                let rest = &buf[i..];
                let kept = self.line_total.min(LINE_KEEP);
                let keep = rest.len().min(LINE_KEEP - kept);
                self.line[kept..kept + keep].copy_from_slice(&rest[..keep]);
                self.line_total += rest.len();
                return buf.len();
            };
            let lf = i + k;
            let total = self.line_total + k;
            if !self.ends_with_cr(buf, i, lf, total) {
                self.violation(lf);
                return buf.len();
            }
            // `total` counts the CR: 1 is an empty line.
            let empty = total == 1;
            let mut whole_at = None;
            let framing = if empty || !self.request_line {
                None
            } else if self.line_total == 0 {
                // The whole line is in this read.
                let line = &buf[i..lf - 1];
                whole_at = Some(i);
                maybe_framing(line[0]).then(|| field(line))
            } else if !maybe_framing(self.line[0]) {
                None
            } else if total > LINE_KEEP {
                // A framing field too long to check is refused rather than passed.
                self.violation(lf);
                return buf.len();
            } else {
                let kept = self.line_total;
                self.line[kept..total].copy_from_slice(&buf[i..lf]);
                Some(field(&self.line[..total - 1]))
            };
            self.line_total = 0;
            i = lf + 1;
            if empty {
                if self.request_line {
                    self.end_of_head(i);
                    return i;
                }
                // Empty lines before a request line are allowed (RFC 9112 2.2).
                continue;
            }
            if !self.request_line {
                self.request_line = true;
                continue;
            }
            match framing {
                Some(Field::ContentLength(value)) => {
                    self.content_lengths += 1;
                    match value {
                        Some(n) if self.content_lengths == 1 => {
                            self.content_length = n;
                            self.length_at = whole_at.map(|at| {
                                let line = &buf[at..lf - 1];
                                let from = value_at(line);
                                let digits = line[from..].iter().take_while(|b| b.is_ascii_digit()).count();
                                (at + from, digits)
                            });
                        }
                        // Repeated, a list, or not a number: hyper refuses the last two,
                        // and the first is what we refuse beyond hyper.
                        _ => {
                            self.violation(lf);
                            return buf.len();
                        }
                    }
                }
                Some(Field::Expect) => self.expect = true,
                Some(Field::TransferEncoding { chunked, last_chunked }) => {
                    self.transfer_encoding = true;
                    self.chunked = self.chunked.saturating_add(chunked);
                    self.chunked_last = last_chunked;
                    if self.chunked > 1 {
                        self.violation(lf);
                        return buf.len();
                    }
                }
                _ => {}
            }
        }
    }

    /// A head with a large declared length ended at `body_at`: whether `scan` stops there
    /// (`take_direct`).
    #[cold]
    fn direct_head(&mut self, body_at: usize) -> bool {
        let length = self.content_length;
        let direct = self.direct_ok
            && length <= DIRECT_MAX
            && self.content_lengths == 1
            && !self.transfer_encoding
            && !self.expect;
        let (true, Some((digits_at, digits))) = (direct, self.length_at) else { return false };
        self.direct = DirectHead { body_at, digits_at, digits, length, heads: self.heads };
        self.start_head();
        self.state = State::Direct;
        true
    }

    /// The head ended: expect its body, then the next head.
    fn end_of_head(&mut self, body_at: usize) {
        self.heads += 1;
        let length = self.content_length;
        if length >= DIRECT_MIN && self.direct_head(body_at) {
            return;
        }
        let next = if self.transfer_encoding {
            // Not chunked last: hyper refuses the request.
            if self.chunked_last {
                State::ChunkSize { size: 0, digits: false, space: false }
            } else {
                State::Off
            }
        } else if self.content_lengths == 1 && length > 0 {
            State::Length(length)
        } else {
            State::Head
        };
        self.start_head();
        self.state = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Scans `input` whole, split at every position, and byte by byte; returns where the
    /// violation is (the same for all).
    fn scanned(input: &[u8]) -> Option<usize> {
        let whole = Strict::default().scan(input);
        for split in 0..=input.len() {
            let mut s = Strict::default();
            let found = s.scan(&input[..split]).or_else(|| s.scan(&input[split..]).map(|at| at + split));
            assert_eq!(found, whole, "split at {split} differs");
        }
        let mut s = Strict::default();
        let found = (0..input.len()).find(|&i| s.scan(&input[i..i + 1]).is_some());
        assert_eq!(found, whole, "byte by byte differs");
        whole
    }

    fn refused(input: &str) -> bool {
        scanned(input.as_bytes()).is_some()
    }

    #[test]
    fn valid_pipelined_requests_pass() {
        let input = "\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n\
             POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhe\nlo\
             POST /b HTTP/1.1\r\nhost: x\r\ntransfer-encoding: gzip, chunked\r\n\r\n5 ;a=b\r\nhel\nl\r\n0\r\nX-T: 1\r\n\r\n\
             GET / HTTP/1.1\r\nHost: x\r\nX-Long: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
        assert_eq!(scanned(input.as_bytes()), None);
    }

    #[test]
    fn bare_lf_in_a_head_is_refused() {
        assert_eq!(scanned(b"GET / HTTP/1.1\nHost: x\r\n\r\n"), Some(14));
        assert!(refused("GET / HTTP/1.1\r\nHost: x\n\r\n"));
        assert!(refused("GET / HTTP/1.1\r\nHost: x\r\n\n"));
        assert!(refused("GET / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\n\n"));
    }

    #[test]
    fn repeated_content_length_is_refused() {
        assert!(refused("POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello"));
        assert!(refused("POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\nhello"));
        assert!(refused("POST / HTTP/1.1\r\nContent-Length: abc\r\n\r\nhello"));
    }

    #[test]
    fn chunked_twice_is_refused() {
        assert!(refused(
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
        ));
        assert!(refused("POST / HTTP/1.1\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n"));
    }

    #[test]
    fn whitespace_after_a_chunk_size_is_refused_unless_an_extension_follows() {
        assert!(refused("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5 \r\nhello\r\n0\r\n\r\n"));
        assert!(refused("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\t\r\nhello\r\n0\r\n\r\n"));
        assert!(!refused("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5 ;x\r\nhello\r\n0\r\n\r\n"));
    }

    #[test]
    fn a_body_is_not_mistaken_for_a_head() {
        // Bare LFs and header-like bytes inside bodies are data.
        assert!(!refused("POST / HTTP/1.1\r\nContent-Length: 22\r\n\r\nContent-Length: 1\n\n\n\r\n"));
    }

    #[test]
    fn find_lf_finds_the_first_lf() {
        for len in 0..40 {
            for lf in 0..len {
                let mut hay = vec![b'a'; len];
                // Bytes around an LF that a carry could be confused by.
                for (i, b) in hay.iter_mut().enumerate() {
                    *b = [b'\x0b', b'\x09', 0, 0xff, b'a'][i % 5];
                }
                hay[lf] = b'\n';
                if lf + 1 < len {
                    hay[lf + 1] = b'\n';
                }
                assert_eq!(find_lf(&hay), Some(lf), "{hay:?}");
            }
            assert_eq!(find_lf(&vec![b'\r'; len]), None);
        }
    }

    #[test]
    fn heads_are_counted_as_they_end() {
        let mut s = Strict::default();
        assert_eq!(s.take_heads(), 0);
        s.scan(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nPOST / HTTP/1.1\r\nContent-Length: 2\r\n\r\nh");
        assert_eq!(s.take_heads(), 2);
        s.scan(b"iGET / HTTP/1.1\r\n");
        assert_eq!(s.take_heads(), 0);
        s.scan(b"\r\n");
        assert_eq!(s.take_heads(), 1);
        assert!(s.following());
        s.scan(b"GET / HTTP/1.1\n\n");
        assert!(!s.following());
    }

    #[test]
    fn a_large_declared_body_stops_the_scan_at_its_head() {
        let head = "GET / HTTP/1.1\r\nHost: x\r\n\r\nPOST /u HTTP/1.1\r\ncontent-length:  0070000 \r\n\r\n";
        let mut s = Strict::new(true);
        let buf = format!("{head}body");
        assert_eq!(s.scan(buf.as_bytes()), None);
        assert!(s.stopped());
        let d = s.take_direct().expect("a direct head");
        assert_eq!(d.body_at, head.len());
        assert_eq!(&buf[d.digits_at..d.digits_at + d.digits], "0070000");
        assert_eq!((d.length, d.heads), (70000, 2));
        // Scanning goes on at the next head (the body is not in what hyper gets), or at the
        // body when it stays hyper's.
        assert!(s.between_requests());
        assert!(s.take_direct().is_none());
        s.keep_body(3);
        s.scan(b"abcGET / HTTP/1.1\r\n\r\n");
        assert_eq!(s.take_heads(), 3);
        assert!(s.between_requests());
    }

    #[test]
    fn only_some_heads_have_their_body_read_past_hyper() {
        let direct = |direct_ok: bool, input: &str| {
            let mut s = Strict::new(direct_ok);
            s.scan(input.as_bytes());
            s.take_direct().is_some()
        };
        let post = |fields: &str| format!("POST / HTTP/1.1\r\n{fields}\r\n");
        assert!(direct(true, &post("Content-Length: 65537\r\n")));
        assert!(direct(true, &post("Content-Length: 1048576\r\n")));
        assert!(!direct(false, &post("Content-Length: 65537\r\n")));
        assert!(!direct(true, &post("Content-Length: 65536\r\n")));
        assert!(!direct(true, &post("Content-Length: 1048577\r\n")));
        assert!(!direct(true, &post("Content-Length: 70000\r\nExpect: 100-continue\r\n")));
        assert!(!direct(true, &post("Transfer-Encoding: chunked\r\nContent-Length: 70000\r\n")));
        // The length's line split across reads: its digits are not in the last one.
        let mut s = Strict::new(true);
        s.scan(b"POST / HTTP/1.1\r\nContent-Len");
        s.scan(b"gth: 70000\r\n\r\n");
        assert!(s.take_direct().is_none());
        assert_eq!(s.state, State::Length(70000));
        // The length's line whole in one read, the head's end in the next: its positions
        // are the first read's.
        let mut s = Strict::new(true);
        s.scan(b"POST / HTTP/1.1\r\nContent-Length: 70000\r\n");
        s.scan(b"Host: x\r\n\r\n");
        assert!(s.take_direct().is_none());
        assert_eq!(s.state, State::Length(70000));
    }

    #[test]
    fn between_requests_only_at_a_request_boundary() {
        let mut s = Strict::default();
        assert!(s.between_requests());
        s.scan(b"POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\nh");
        assert!(!s.between_requests());
        s.scan(b"i");
        assert!(s.between_requests());
        s.scan(b"GET");
        assert!(!s.between_requests());
    }
}
