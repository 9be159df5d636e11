//! The request target and authority, checked and written as the absolute URL JS sees:
//! the form the WHATWG URL parser gives (`new URL(url).href === url`), or a 400.
//!
//! - Authority (Host, `:authority`, or an absolute-form target's): no userinfo (RFC 9110
//!   4.2.4, RFC 9113 8.3.1), a port of at most 65535 digits-only, dropped when it is the
//!   scheme's default; a host lowercased, an IPv4 address in any of the forms the URL
//!   parser reads written dotted-decimal, an IPv6 address written compressed.
//! - Path: `.` and `..` segments (also as `%2e`) resolved and `\` read as `/`, as the URL
//!   parser does for http(s); bytes it percent-encodes are percent-encoded. A path with
//!   no dot segment and nothing to encode (the common case) is copied as it is.
//! - `*` (asterisk-form) only for OPTIONS, seen as the path `/*` (what `new URL("*",
//!   base)` gives); authority-form only for CONNECT.
//!
//! Not done: punycode labels (`xn--`) pass unchecked, so a malformed one could still
//! make `new URL` throw.

use http::request::Parts;
use http::Method;

/// Why a target or authority was refused: always a 400.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct BadTarget;

/// Writes `scheme://authority/path?query` for the request to `out`. `host` is the Host
/// header to use when the target carries no authority; `local` is the fallback for a
/// request with neither (HTTP/1.0).
pub(crate) fn write_url(
    head: &Parts,
    scheme: &str,
    host: Option<&[u8]>,
    local: &str,
    authorities: &mut AuthorityCache,
    out: &mut Vec<u8>,
) -> Result<(), BadTarget> {
    let uri = &head.uri;
    let path = uri.path_and_query().map_or("", |p| p.as_str());
    // Authority-form (`CONNECT host:port`): no path.
    if uri.scheme().is_none() && uri.authority().is_some() && head.method != Method::CONNECT {
        return Err(BadTarget);
    }
    out.extend_from_slice(scheme.as_bytes());
    out.extend_from_slice(b"://");
    let authority = uri.authority().map(|a| a.as_str().as_bytes()).or(host).filter(|a| !a.is_empty());
    match authority {
        Some(a) => authorities.write(a, default_port(scheme), out)?,
        None => out.extend_from_slice(local.as_bytes()),
    }
    if path == "*" {
        return if head.method == Method::OPTIONS {
            out.extend_from_slice(b"/*");
            Ok(())
        } else {
            Err(BadTarget)
        };
    }
    // Split at the first `?`, which the parse already found (a search cost a `memchr` call,
    // about 60 instructions for a short path). An empty path reads as `/` here, and is
    // written as `/` below all the same.
    let (path, query) = match uri.path_and_query() {
        Some(p) => (p.path().as_bytes(), p.query().map(str::as_bytes)),
        None => (&b""[..], None),
    };
    write_path_and_query(path, query, out)
}

/// Writes `scheme://authority` and the origin-form target `path` (`?query`) of a request
/// read past hyper (fast_h1.rs), as `write_url` does for hyper's: the target's bytes are
/// ones `http::Uri` takes as they are (the caller checks), `path` starts with `/`.
pub(crate) fn write_origin_url(
    scheme: &str,
    host: Option<&[u8]>,
    local: &str,
    path: &[u8],
    query: Option<&[u8]>,
    authorities: &mut AuthorityCache,
    out: &mut Vec<u8>,
) -> Result<(), BadTarget> {
    out.extend_from_slice(scheme.as_bytes());
    out.extend_from_slice(b"://");
    match host.filter(|a| !a.is_empty()) {
        Some(a) => authorities.write(a, default_port(scheme), out)?,
        None => out.extend_from_slice(local.as_bytes()),
    }
    write_path_and_query(path, query, out)
}

/// The path and query of a URL, as the URL parser writes them.
fn write_path_and_query(path: &[u8], query: Option<&[u8]>, out: &mut Vec<u8>) -> Result<(), BadTarget> {
    if path.is_empty() {
        out.push(b'/');
    } else if path[0] != b'/' {
        // hyper hands origin-form and absolute-form paths starting with `/`.
        return Err(BadTarget);
    } else if path_is_plain(path) {
        out.extend_from_slice(path);
    } else {
        write_path(path, out);
    }
    if let Some(query) = query {
        out.push(b'?');
        for &b in query {
            if QUERY_ENCODE[b as usize] {
                push_encoded(b, out);
            } else {
                out.push(b);
            }
        }
    }
    Ok(())
}

/// The last authority a connection's requests named, as received and as written: most
/// connections name the same one in every request, which is then copied, not checked
/// and canonicalized again. One allocation per connection, made at its first request.
#[derive(Default)]
pub(crate) struct AuthorityCache {
    /// The authority as received, then as written from `split` on (empty: none yet).
    both: Vec<u8>,
    split: usize,
    default_port: u16,
}

/// Longer authorities are written each time rather than kept.
const AUTHORITY_CACHE_MAX: usize = 128;

impl AuthorityCache {
    /// `write_authority`, or the copy of its last result for the same authority.
    fn write(&mut self, a: &[u8], default_port: u16, out: &mut Vec<u8>) -> Result<(), BadTarget> {
        if !self.both.is_empty() && self.default_port == default_port && &self.both[..self.split] == a {
            out.extend_from_slice(&self.both[self.split..]);
            return Ok(());
        }
        let start = out.len();
        write_authority(a, default_port, out)?;
        if a.len() <= AUTHORITY_CACHE_MAX {
            self.both.clear();
            self.both.extend_from_slice(a);
            self.split = a.len();
            self.both.extend_from_slice(&out[start..]);
            self.default_port = default_port;
        }
        Ok(())
    }
}

fn default_port(scheme: &str) -> u16 {
    if scheme == "https" {
        443
    } else {
        80
    }
}

// https://url.spec.whatwg.org/#path-percent-encode-set
/// Bytes the URL parser percent-encodes in a path (its path percent-encode set: C0
/// controls, space, `"`, `#`, `<`, `>`, `?`, `` ` ``, `{`, `}`, DEL and above), plus `\`
/// (a separator for http) and `.`/`%` only at a segment start (checked apart).
const PATH_ENCODE: [bool; 256] = encode_set(b"\"#<>?`{}");

// https://url.spec.whatwg.org/#special-query-percent-encode-set
/// Bytes the URL parser percent-encodes in the query of an http(s) URL (its special-query
/// percent-encode set: C0 controls, space, `"`, `#`, `<`, `>`, `'`, DEL and above).
const QUERY_ENCODE: [bool; 256] = encode_set(b"\"#<>'");

/// A percent-encode set as a byte table: C0 controls, space, DEL and above (what every set
/// of the URL Standard holds), plus `extra`.
const fn encode_set(extra: &[u8]) -> [bool; 256] {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        t[b] = b <= 0x20 || b >= 0x7f;
        b += 1;
    }
    let mut i = 0;
    while i < extra.len() {
        t[extra[i] as usize] = true;
        i += 1;
    }
    t
}

fn push_encoded(b: u8, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.extend_from_slice(&[b'%', HEX[(b >> 4) as usize], HEX[(b & 15) as usize]]);
}

// https://url.spec.whatwg.org/#single-dot-path-segment
/// A dot segment as the URL parser sees one: `.` or `..`, any dot possibly `%2e`.
fn dots(seg: &[u8]) -> Option<u8> {
    let single = |s: &[u8]| s == b"." || s.eq_ignore_ascii_case(b"%2e");
    if single(seg) {
        return Some(1);
    }
    let double = match seg.len() {
        2 => seg == b"..",
        4 => seg.eq_ignore_ascii_case(b".%2e") || seg.eq_ignore_ascii_case(b"%2e."),
        6 => seg.eq_ignore_ascii_case(b"%2e%2e"),
        _ => false,
    };
    double.then_some(2)
}

/// True when the path is already what the URL parser gives: nothing to encode, no `\`,
/// no dot segment. One pass; a segment is looked at only when it starts with `.` or `%`.
fn path_is_plain(path: &[u8]) -> bool {
    let mut i = 0;
    while i < path.len() {
        let b = path[i];
        if PATH_ENCODE[b as usize] || b == b'\\' {
            return false;
        }
        if b == b'/' {
            if let Some(&next) = path.get(i + 1) {
                if next == b'.' || next == b'%' {
                    let seg = &path[i + 1..];
                    let end = seg.iter().position(|&c| c == b'/' || c == b'\\').unwrap_or(seg.len());
                    if dots(&seg[..end]).is_some() {
                        return false;
                    }
                }
            }
        }
        i += 1;
    }
    true
}

// https://url.spec.whatwg.org/#path-state
/// The URL parser's path state for an http(s) URL, on a path starting with `/`.
fn write_path(path: &[u8], out: &mut Vec<u8>) {
    let base = out.len();
    // Where each written segment starts (its `/`), for `..`.
    let mut starts: Vec<usize> = Vec::new();
    let mut segs = path[1..].split(|&b| b == b'/' || b == b'\\').peekable();
    while let Some(seg) = segs.next() {
        let last = segs.peek().is_none();
        match dots(seg) {
            Some(2) => {
                if let Some(start) = starts.pop() {
                    out.truncate(start);
                }
                if last {
                    out.push(b'/');
                }
            }
            Some(_) => {
                if last {
                    out.push(b'/');
                }
            }
            None => {
                starts.push(out.len());
                out.push(b'/');
                for &b in seg {
                    if PATH_ENCODE[b as usize] {
                        push_encoded(b, out);
                    } else {
                        out.push(b);
                    }
                }
            }
        }
    }
    if out.len() == base {
        out.push(b'/');
    }
}

/// Writes `host[:port]` as the URL parser serializes it, or refuses it.
fn write_authority(a: &[u8], default_port: u16, out: &mut Vec<u8>) -> Result<(), BadTarget> {
    if a.contains(&b'@') {
        return Err(BadTarget);
    }
    let (host, port) = if a.first() == Some(&b'[') {
        let close = memchr::memchr(b']', a).ok_or(BadTarget)?;
        match &a[close + 1..] {
            [] => (&a[..=close], None),
            [b':', port @ ..] => (&a[..=close], Some(port)),
            _ => return Err(BadTarget),
        }
    } else {
        match memchr::memrchr(b':', a) {
            Some(c) => (&a[..c], Some(&a[c + 1..])),
            None => (a, None),
        }
    };
    write_host(host, out)?;
    if let Some(port) = port {
        if !port.iter().all(u8::is_ascii_digit) {
            return Err(BadTarget);
        }
        // An empty port is no port.
        if !port.is_empty() {
            let digits = &port[port.iter().position(|&d| d != b'0').unwrap_or(port.len() - 1)..];
            let value = if digits.len() > 5 {
                return Err(BadTarget);
            } else {
                digits.iter().fold(0u32, |n, &d| n * 10 + u32::from(d - b'0'))
            };
            if value > 65535 {
                return Err(BadTarget);
            }
            if value != u32::from(default_port) {
                out.push(b':');
                out.extend_from_slice(digits);
            }
        }
    }
    Ok(())
}

/// Bytes a domain keeps as they are: ASCII lowercase letters, digits and the punctuation
/// the URL parser allows in a domain.
const HOST_PLAIN: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_lowercase()
            || c.is_ascii_digit()
            || matches!(c, b'-' | b'.' | b'_' | b'~')
            || matches!(c, b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'=');
        b += 1;
    }
    t
};

/// A domain's bytes one by one: ASCII letters lowercased; the code points the URL parser
/// forbids in a domain, and percent-encoded hosts (which it would decode), refused.
fn write_domain_bytes(host: &[u8], out: &mut Vec<u8>) -> Result<(), BadTarget> {
    for &b in host {
        match b {
            b'A'..=b'Z' => out.push(b.to_ascii_lowercase()),
            _ if HOST_PLAIN[b as usize] => out.push(b),
            _ => return Err(BadTarget),
        }
    }
    Ok(())
}

fn write_host(host: &[u8], out: &mut Vec<u8>) -> Result<(), BadTarget> {
    if host.is_empty() {
        return Err(BadTarget);
    }
    if host[0] == b'[' {
        let inner = std::str::from_utf8(&host[1..host.len() - 1]).map_err(|_| BadTarget)?;
        let addr: std::net::Ipv6Addr = inner.parse().map_err(|_| BadTarget)?;
        out.push(b'[');
        write_ipv6(&addr, out);
        out.push(b']');
        return Ok(());
    }
    let start = out.len();
    if host.iter().all(|&b| HOST_PLAIN[b as usize]) {
        // The common case, copied at once: nothing to lowercase or refuse.
        out.extend_from_slice(host);
    } else {
        write_domain_bytes(host, out)?;
    }
    // A host whose last label is a number is an IPv4 address to the URL parser, or an error
    // (https://url.spec.whatwg.org/#ends-in-a-number-checker).
    let domain = &out[start..];
    let trimmed = domain.strip_suffix(b".").filter(|d| !d.is_empty()).unwrap_or(domain);
    let last = trimmed.rsplit(|&b| b == b'.').next().unwrap_or(trimmed);
    let numeric = !last.is_empty() && last.iter().all(u8::is_ascii_digit)
        || (last.len() >= 2 && last[..2].eq_ignore_ascii_case(b"0x") && last[2..].iter().all(u8::is_ascii_hexdigit));
    if numeric && !is_dotted_quad(trimmed) {
        let v4 = parse_ipv4(trimmed).ok_or(BadTarget)?;
        out.truncate(start);
        for (i, byte) in v4.to_be_bytes().iter().enumerate() {
            if i > 0 {
                out.push(b'.');
            }
            push_decimal(u32::from(*byte), out);
        }
    } else if numeric && trimmed.len() != domain.len() {
        // `1.2.3.4.`: the URL parser drops the trailing dot of an address.
        out.pop();
    }
    Ok(())
}

fn push_decimal(n: u32, out: &mut Vec<u8>) {
    if n >= 10 {
        push_decimal(n / 10, out);
    }
    out.push(b'0' + (n % 10) as u8);
}

/// `a.b.c.d` already as the URL parser writes it (the common `127.0.0.1`): no work.
fn is_dotted_quad(s: &[u8]) -> bool {
    let mut parts = 0;
    for p in s.split(|&b| b == b'.') {
        parts += 1;
        let ok = !p.is_empty()
            && p.len() <= 3
            && p.iter().all(u8::is_ascii_digit)
            && (p.len() == 1 || p[0] != b'0')
            && p.iter().fold(0u32, |n, &d| n * 10 + u32::from(d - b'0')) <= 255;
        if !ok || parts > 4 {
            return false;
        }
    }
    parts == 4
}

// https://url.spec.whatwg.org/#concept-ipv4-parser
/// The URL parser's IPv4 parser: one to four parts, each decimal, octal (leading 0) or
/// hex (0x); all but the last at most 255, the last filling the remaining bytes.
fn parse_ipv4(s: &[u8]) -> Option<u32> {
    let mut numbers = [0u64; 4];
    let mut count = 0;
    for p in s.split(|&b| b == b'.') {
        if count == 4 || p.is_empty() {
            return None;
        }
        let (digits, radix) = if p.len() >= 2 && p[..2].eq_ignore_ascii_case(b"0x") {
            (&p[2..], 16)
        } else if p.len() >= 2 && p[0] == b'0' {
            (&p[1..], 8)
        } else {
            (p, 10)
        };
        numbers[count] =
            if digits.is_empty() { 0 } else { u64::from_str_radix(std::str::from_utf8(digits).ok()?, radix).ok()? };
        count += 1;
    }
    let (last, rest) = numbers[..count].split_last()?;
    if rest.iter().any(|&n| n > 255) || *last >= 256u64.pow(5 - count as u32) {
        return None;
    }
    let mut v = *last;
    for (i, &n) in rest.iter().enumerate() {
        v += n << (8 * (3 - i));
    }
    u32::try_from(v).ok()
}

// https://url.spec.whatwg.org/#concept-ipv6-serializer
/// IPv6 as the URL serializer writes it: lowercase hex pieces, the first longest run of
/// two or more zero pieces as `::`, never the dotted IPv4 tail.
fn write_ipv6(addr: &std::net::Ipv6Addr, out: &mut Vec<u8>) {
    let pieces = addr.segments();
    let (mut best, mut best_len) = (None, 1);
    let mut i = 0;
    while i < 8 {
        if pieces[i] == 0 {
            let run = pieces[i..].iter().take_while(|&&p| p == 0).count();
            if run > best_len {
                best = Some(i);
                best_len = run;
            }
            i += run;
        } else {
            i += 1;
        }
    }
    let mut i = 0;
    while i < 8 {
        if Some(i) == best {
            out.extend_from_slice(if i == 0 { b"::" } else { b":" });
            i += best_len;
            continue;
        }
        out.extend_from_slice(format!("{:x}", pieces[i]).as_bytes());
        if i < 7 {
            out.push(b':');
        }
        i += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(target: &str, host: Option<&str>) -> Result<String, BadTarget> {
        url_for(Method::GET, target, host)
    }

    fn url_for(method: Method, target: &str, host: Option<&str>) -> Result<String, BadTarget> {
        let (head, _) = http::Request::builder().method(method).uri(target).body(()).unwrap().into_parts();
        let mut out = Vec::new();
        write_url(&head, "http", host.map(str::as_bytes), "127.0.0.1:1", &mut AuthorityCache::default(), &mut out)?;
        Ok(String::from_utf8(out).unwrap())
    }

    #[test]
    fn a_connection_writes_each_authority_as_a_fresh_one_would() {
        // One cache across requests, as a connection has: every answer must be the one a
        // new cache gives, whatever came before (a repeat, another host, a bad one).
        let hosts = [
            "Example.COM:80",
            "Example.COM:80",
            "example.com",
            "0x7f.1",
            "0x7f.1",
            "a b",
            "Example.COM:80",
            "[::1]:8080",
        ];
        let mut cache = AuthorityCache::default();
        for scheme in ["http", "https", "http"] {
            for host in hosts {
                let mut out = Vec::new();
                let got = cache.write(host.as_bytes(), default_port(scheme), &mut out).map(|()| out);
                let mut fresh = Vec::new();
                let want = write_authority(host.as_bytes(), default_port(scheme), &mut fresh).map(|()| fresh);
                assert_eq!(got, want, "{scheme} {host}");
            }
        }
    }

    #[test]
    fn plain_targets_are_copied() {
        assert_eq!(
            url("/a/b.js?x=1&y=%20", Some("example.com:8080")).unwrap(),
            "http://example.com:8080/a/b.js?x=1&y=%20"
        );
        assert_eq!(url("/", Some("127.0.0.1:3000")).unwrap(), "http://127.0.0.1:3000/");
        assert_eq!(url("/a?b?c=/d", Some("h")).unwrap(), "http://h/a?b?c=/d");
        assert_eq!(url("/a?", Some("h")).unwrap(), "http://h/a?");
        assert_eq!(url("http://h?q", None).unwrap(), "http://h/?q");
        assert_eq!(url("/", None).unwrap(), "http://127.0.0.1:1/");
    }

    #[test]
    fn dot_segments_are_resolved_as_the_url_parser_does() {
        assert_eq!(url("/a/./x/../y", Some("h")).unwrap(), "http://h/a/y");
        assert_eq!(url("/url/%2e%2E/y", Some("h")).unwrap(), "http://h/y");
        assert_eq!(url("/../../secret.txt", Some("h")).unwrap(), "http://h/secret.txt");
        assert_eq!(url("/a/..", Some("h")).unwrap(), "http://h/");
        assert_eq!(url("/a/.", Some("h")).unwrap(), "http://h/a/");
        assert_eq!(url("/a/.%2e/", Some("h")).unwrap(), "http://h/");
        assert_eq!(url("/a/..b/.c", Some("h")).unwrap(), "http://h/a/..b/.c");
        assert_eq!(url("/a/%2e%2e?x=/../", Some("h")).unwrap(), "http://h/?x=/../");
    }

    #[test]
    fn authorities_are_canonical_or_refused() {
        assert_eq!(url("/", Some("EXAMPLE.com:080")).unwrap(), "http://example.com/");
        assert_eq!(url("/", Some("x:")).unwrap(), "http://x/");
        assert_eq!(url("/", Some("x:0081")).unwrap(), "http://x:81/");
        assert_eq!(url("/", Some("0x7f.1")).unwrap(), "http://127.0.0.1/");
        assert_eq!(url("/", Some("1.2.3.4.:8080")).unwrap(), "http://1.2.3.4:8080/");
        assert_eq!(url("/", Some("010.0.0.1")).unwrap(), "http://8.0.0.1/");
        assert_eq!(url("/", Some("4294967295")).unwrap(), "http://255.255.255.255/");
        assert_eq!(url("/", Some("[0:0::1]:80")).unwrap(), "http://[::1]/");
        assert_eq!(url("/", Some("[::ffff:1.2.3.4]")).unwrap(), "http://[::ffff:102:304]/");
        for bad in [
            "x:abc",
            "x:99999",
            "x:65536",
            "good.example@evil.example",
            "a.256",
            "x.1.2.3.4",
            "4294967296",
            "08.1",
            "[::1",
            ":80",
            "a%41",
        ] {
            assert_eq!(url("/", Some(bad)), Err(BadTarget), "{bad}");
        }
    }

    #[test]
    fn asterisk_only_for_options_and_authority_form_only_for_connect() {
        assert_eq!(url_for(Method::OPTIONS, "*", Some("h")).unwrap(), "http://h/*");
        assert_eq!(url_for(Method::GET, "*", Some("h")), Err(BadTarget));
        assert_eq!(url_for(Method::GET, "evil.example:80", Some("h")), Err(BadTarget));
        assert_eq!(url_for(Method::CONNECT, "evil.example:443", Some("h")).unwrap(), "http://evil.example:443/");
    }
}
