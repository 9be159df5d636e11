//! Replies from JS turned into `http::Response`: status and header validation, the
//! content-type table, and the fast paths that skip a header list.

use crate::body::ResponseBody;
use crate::bridge::Reply;
use crate::error::{BridgeError, BridgeResult, ErrorKind};
use http::header::{HeaderName, HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use http::StatusCode;

/// The header value of a content-type code (`wire::CT_*`), which JS passes instead of a
/// header list for the common types.
pub fn content_type(code: u32) -> Option<HeaderValue> {
    use crate::wire::{CT_BYTES, CT_FORM, CT_JSON, CT_TEXT};
    // Made at compile time: at run time `from_static` checks every byte (about 170
    // instructions per response for `application/json`); a clone of a static value copies it.
    const fn value(code: u32) -> Option<HeaderValue> {
        match crate::wire::content_type(code) {
            Some(v) => Some(HeaderValue::from_static(v)),
            None => None,
        }
    }
    const TEXT: Option<HeaderValue> = value(CT_TEXT);
    const JSON: Option<HeaderValue> = value(CT_JSON);
    const BYTES: Option<HeaderValue> = value(CT_BYTES);
    const FORM: Option<HeaderValue> = value(CT_FORM);
    match code {
        CT_TEXT => TEXT,
        CT_JSON => JSON,
        CT_BYTES => BYTES,
        CT_FORM => FORM,
        _ => None,
    }
}

pub fn status_code(status: u32) -> BridgeResult<StatusCode> {
    // 1xx other than 101 cannot be a final response; 101 is the upgrade path.
    if !(200..=999).contains(&status) {
        return Err(BridgeError::new(
            ErrorKind::InvalidStatus,
            format!("status {status} is not a valid response status"),
        ));
    }
    StatusCode::from_u16(status as u16).map_err(|_| {
        BridgeError::new(ErrorKind::InvalidStatus, format!("status {status} is not a valid response status"))
    })
}

/// Header values cross as JS strings whose code units are bytes (ByteString in the
/// Fetch standard): a code point above 0xFF cannot be sent.
pub(crate) fn header_value(v: &str) -> BridgeResult<HeaderValue> {
    let res = if v.is_ascii() {
        HeaderValue::from_str(v)
    } else {
        let mut bytes = Vec::with_capacity(v.len());
        for c in v.chars() {
            let c = c as u32;
            if c > 0xFF {
                return Err(BridgeError::new(
                    ErrorKind::InvalidHeader,
                    format!("header value {v:?} has a character above U+00FF"),
                ));
            }
            bytes.push(c as u8);
        }
        HeaderValue::from_bytes(&bytes)
    };
    res.map_err(|_| BridgeError::new(ErrorKind::InvalidHeader, format!("invalid header value {v:?}")))
}

/// A response's header list from JS. lib/'s own `Headers` cross as one string of
/// `name\nvalue\n…` read as Latin-1 (`Packed`): one conversion for the whole list where
/// each string of a list costs V8's UTF-8 writer twice (measure, then write: about 700
/// instructions a field by callgrind), and their names and values are checked already (no
/// newline in either; values ByteStrings, so Latin-1 is their bytes). Any other list (a
/// foreign Response's) crosses as strings, `[name, value, …]` (`Strings`).
pub enum HeaderList {
    Packed(Vec<u8>),
    Strings(Vec<String>),
}

/// A field value as it crossed: a string, or Latin-1 bytes.
#[derive(Clone, Copy)]
enum FieldValue<'a> {
    Str(&'a str),
    Latin1(&'a [u8]),
}

impl FieldValue<'_> {
    fn header_value(self) -> BridgeResult<HeaderValue> {
        match self {
            FieldValue::Str(v) => header_value(v),
            FieldValue::Latin1(v) => HeaderValue::from_bytes(v).map_err(|_| {
                BridgeError::new(ErrorKind::InvalidHeader, format!("invalid header value {:?}", latin1(v)))
            }),
        }
    }

    /// The value's bytes as it crossed (a string's UTF-8): for `declared_length`.
    fn raw(&self) -> &[u8] {
        match self {
            FieldValue::Str(v) => v.as_bytes(),
            FieldValue::Latin1(v) => v,
        }
    }
}

/// Latin-1 bytes as the string they were, for messages.
fn latin1(v: &[u8]) -> String {
    v.iter().map(|&b| char::from(b)).collect()
}

fn odd_list() -> BridgeError {
    BridgeError::new(ErrorKind::InvalidHeader, "header list must hold name/value pairs")
}

impl HeaderList {
    /// How many fields it holds, about (for the map's room).
    fn fields(&self) -> usize {
        match self {
            HeaderList::Packed(b) if b.is_empty() => 0,
            HeaderList::Packed(b) => memchr::memchr_iter(b'\n', b).count().div_ceil(2),
            HeaderList::Strings(list) => list.len() / 2,
        }
    }

    /// Calls `f` with each field's name and value, in order.
    fn each(&self, mut f: impl FnMut(&[u8], FieldValue<'_>) -> BridgeResult<()>) -> BridgeResult<()> {
        match self {
            HeaderList::Strings(list) => {
                if list.len() % 2 != 0 {
                    return Err(odd_list());
                }
                for pair in list.chunks_exact(2) {
                    f(pair[0].as_bytes(), FieldValue::Str(&pair[1]))?;
                }
            }
            HeaderList::Packed(bytes) if bytes.is_empty() => {}
            HeaderList::Packed(bytes) => {
                let mut at = 0;
                let mut name: Option<&[u8]> = None;
                for end in memchr::memchr_iter(b'\n', bytes).chain(std::iter::once(bytes.len())) {
                    let part = &bytes[at..end];
                    at = end + 1;
                    match name.take() {
                        None => name = Some(part),
                        Some(n) => f(n, FieldValue::Latin1(part))?,
                    }
                }
                if name.is_some() {
                    return Err(odd_list());
                }
            }
        }
        Ok(())
    }
}

/// A `Content-Length` value from JS: one decimal number (RFC 9110 section 8.6).
fn declared_length(v: &[u8]) -> Option<u64> {
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(v).ok()?.parse().ok()
}

/// Builds a response from JS's parts. `headers` is a flat `[name, value, …]` list;
/// `head`: the request is a HEAD.
///
/// The framing is hyper's, from the body: a `Content-Length` from JS is dropped when the
/// response has a body (the body's length is sent, or chunked for a stream). Without a
/// body (null), a declared length is what a HEAD response must carry (RFC 9110 section
/// 9.3.2: the length a GET would get; a proxied HEAD, `fetch(url, { method: "HEAD" })`,
/// has no body and the upstream's length), so it is kept for HEAD; for any other request
/// it promises bytes that are not there, an application error (`ContentLengthWithoutBody`)
/// rather than a silent `content-length: 0`. 204 and 304 never get a length from a body
/// anyway, and a value that is not a number is dropped as before.
pub fn build(
    status: u32,
    ct: u32,
    headers: Option<&HeaderList>,
    body: ResponseBody,
    head: bool,
) -> BridgeResult<Reply> {
    let bodyless = matches!(body, ResponseBody::Empty);
    let mut res = with_content_type(status_code(status)?, ct, body, headers.map_or(0, |list| list.fields().min(1024)));
    let status = res.status();
    let map = res.headers_mut();
    let mut connection: Option<Vec<HeaderValue>> = None;
    if let Some(list) = headers {
        list.each(|name, value| {
            let name = HeaderName::from_bytes(name).map_err(|_| {
                BridgeError::new(ErrorKind::InvalidHeader, format!("invalid header name {:?}", latin1(name)))
            })?;
            // Framing is hyper's job: a length or transfer coding from JS could make
            // the message disagree with its body.
            if name == http::header::CONTENT_LENGTH {
                let Some(len) = declared_length(value.raw()) else { return Ok(()) };
                if !bodyless || len == 0 || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
                    return Ok(());
                }
                if !head {
                    return Err(BridgeError::new(
                        ErrorKind::ContentLengthWithoutBody,
                        format!("the response declares content-length: {len} but has no body"),
                    ));
                }
                map.insert(http::header::CONTENT_LENGTH, HeaderValue::from(len));
                return Ok(());
            }
            if is_hop_by_hop(&name, status.as_u16().into()) {
                // Validated all the same: a bad value is the handler's bug either way.
                let value = value.header_value()?;
                if name == http::header::CONNECTION {
                    connection.get_or_insert_with(Vec::new).push(value);
                }
                return Ok(());
            }
            map.append(name, value.header_value()?);
            Ok(())
        })?;
    }
    // Headers that Connection names are hop-by-hop too (RFC 9110 section 7.6.1), wherever
    // they stood in the list.
    if let Some(values) = connection {
        for v in &values {
            let Ok(text) = v.to_str() else { continue };
            for token in text.split(',') {
                if let Ok(named) = HeaderName::from_bytes(token.trim().as_bytes()) {
                    map.remove(named);
                }
            }
        }
    }
    Ok(res)
}

/// The most fields a list may hold to go as a list (`listed`): a longer one is rare, and its
/// fields are grouped by name in quadratic time.
const LISTED_FIELDS: usize = 32;

/// A reply's packed header list as `build` would leave it, kept a list (`bridge::Given::Listed`):
/// `name\nvalue\n…`, names lowercase, each name's fields together in the order of its first
/// (a `HeaderMap`'s order), no framing or hop-by-hop field. The fast HTTP/1.1 path writes it
/// as it is; hyper's path makes the map of it (`listed_reply`).
pub struct FieldList(Vec<u8>);

impl FieldList {
    /// The fields, in order.
    pub(crate) fn fields(&self) -> Fields<'_> {
        Fields { bytes: &self.0, at: 0 }
    }
}

/// The fields of a packed list, each `(name, value)`; the list must hold pairs (`listed`
/// checked it).
pub(crate) struct Fields<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Iterator for Fields<'a> {
    type Item = (&'a [u8], &'a [u8]);

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        let rest = self.bytes.get(self.at..).filter(|r| !r.is_empty())?;
        let name_end = newline(rest)?;
        let value = &rest[name_end + 1..];
        let value_end = newline(value).unwrap_or(value.len());
        self.at += name_end + 1 + value_end + 1;
        Some((&rest[..name_end], &value[..value_end]))
    }
}

/// Where the first newline of `b` is. Eight bytes at a time: a field is a few dozen bytes,
/// where `memchr`'s call and set-up cost more than the search (about 80 instructions a
/// call by callgrind).
#[inline]
fn newline(b: &[u8]) -> Option<usize> {
    const ONES: u64 = u64::from_ne_bytes([1; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    let chunks = b.chunks_exact(8);
    let tail = chunks.remainder();
    for (i, chunk) in chunks.enumerate() {
        let mut word = [0; 8];
        word.copy_from_slice(chunk);
        // A zero byte of `x` is a newline of the chunk; the lowest byte flagged is the first
        // zero (a borrow can flag bytes above one only).
        let x = u64::from_le_bytes(word) ^ (ONES * u64::from(b'\n'));
        let zero = x.wrapping_sub(ONES) & !x & HIGH;
        if zero != 0 {
            return Some(i * 8 + (zero.trailing_zeros() / 8) as usize);
        }
    }
    let at = b.len() - tail.len();
    tail.iter().position(|&c| c == b'\n').map(|p| at + p)
}

/// Bytes of a field value `HeaderValue::from_bytes` takes: visible bytes, obs-text, spaces
/// and tabs.
const VALUE_BYTE: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        t[b] = (b >= 0x20 && b != 0x7f) || b == b'\t' as usize;
        b += 1;
    }
    t
};

/// Bytes of a header name that `HeaderName::from_bytes` keeps as they are: RFC 9110's
/// `tchar`, letters lowercase only.
const NAME_BYTE: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_lowercase()
            || c.is_ascii_digit()
            || matches!(
                c,
                b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+' | b'-' | b'.' | b'^' | b'_' | b'`' | b'|' | b'~'
            );
        b += 1;
    }
    t
};

/// What `build` does with a field, by its (lowercase) name.
enum FieldKind {
    Kept,
    ContentLength,
    Connection,
    /// Dropped (`is_hop_by_hop`), its value checked all the same.
    HopByHop,
}

fn field_kind(name: &[u8], status: StatusCode) -> FieldKind {
    match name {
        b"content-length" => FieldKind::ContentLength,
        b"connection" => FieldKind::Connection,
        b"transfer-encoding" | b"te" | b"upgrade" | b"keep-alive" => FieldKind::HopByHop,
        b"proxy-authenticate" if status == StatusCode::PROXY_AUTHENTICATION_REQUIRED => FieldKind::Kept,
        n if n.starts_with(b"proxy-") => FieldKind::HopByHop,
        _ => FieldKind::Kept,
    }
}

/// A packed list (lib/'s own Headers, `HeaderList::Packed`) as the fields `build` would put
/// in the response's map, without the map: checked as `build` checks it, a `Content-Length`
/// dropped where `build` drops it, hop-by-hop fields dropped, a name's fields grouped. The
/// list is given back (`Err`) wherever `build`'s outcome is anything else or harder to
/// match: a name not a lowercase token, a value it refuses, an odd list, a declared length
/// it keeps (HEAD) or refuses, a `Connection` that names another field than `close` or
/// `keep-alive` (or `close` beside a field so named), a content-type code beside the list,
/// more than `LISTED_FIELDS` fields. `bodyless`: the reply has no body (`ResponseBody::Empty`).
pub fn listed(ct: u32, list: Vec<u8>, status: StatusCode, bodyless: bool) -> Result<FieldList, Vec<u8>> {
    if crate::wire::content_type(ct).is_some() {
        return Err(list);
    }
    if list.is_empty() {
        return Ok(FieldList(list));
    }
    // Each kept field: where its name starts and ends, where its value ends.
    let mut kept = [(0u32, 0u32, 0u32); LISTED_FIELDS];
    let mut count = 0;
    let (mut dropped, mut repeats, mut names_close) = (false, false, false);
    let bytes = &list[..];
    let mut at = 0;
    loop {
        // The name: token bytes up to a newline; the value: bytes it may have up to a
        // newline or the end. Anything else is `build`'s to refuse.
        let name_end = at + bytes[at..].iter().take_while(|&&b| NAME_BYTE[b as usize]).count();
        let name_len = name_end - at;
        if bytes.get(name_end) != Some(&b'\n') || name_len == 0 || name_len > u16::MAX as usize {
            return Err(list);
        }
        let name = &bytes[at..name_end];
        let value_at = name_end + 1;
        let value_end = value_at + bytes[value_at..].iter().take_while(|&&b| VALUE_BYTE[b as usize]).count();
        if value_end < bytes.len() && bytes[value_end] != b'\n' {
            return Err(list);
        }
        let value = &bytes[value_at..value_end];
        match field_kind(name, status) {
            FieldKind::ContentLength => {
                let drop = match declared_length(value) {
                    None => true,
                    Some(len) => {
                        !bodyless || len == 0 || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED
                    }
                };
                if !drop {
                    return Err(list);
                }
                dropped = true;
            }
            FieldKind::Connection => {
                // `build` removes each field that a token names (a value of visible ASCII);
                // `keep-alive` is dropped anyway.
                if value.iter().all(|&b| b == b'\t' || (0x20..0x7f).contains(&b)) {
                    for token in value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                        let a_name =
                            !token.is_empty() && token.iter().all(|&b| NAME_BYTE[b.to_ascii_lowercase() as usize]);
                        if !a_name || token.eq_ignore_ascii_case(b"keep-alive") {
                            continue;
                        }
                        if !token.eq_ignore_ascii_case(b"close") {
                            return Err(list);
                        }
                        names_close = true;
                    }
                }
                dropped = true;
            }
            FieldKind::HopByHop => dropped = true,
            FieldKind::Kept => {
                if count == LISTED_FIELDS {
                    return Err(list);
                }
                repeats |= kept[..count].iter().any(|&(s, e, _)| &bytes[s as usize..e as usize] == name);
                kept[count] = (at as u32, name_end as u32, value_end as u32);
                count += 1;
            }
        }
        if value_end == bytes.len() {
            break;
        }
        at = value_end + 1;
    }
    let kept = &kept[..count];
    let name_of = |&(s, e, _): &(u32, u32, u32)| &bytes[s as usize..e as usize];
    if names_close && kept.iter().any(|f| name_of(f) == b"close") {
        return Err(list);
    }
    if !dropped && !repeats {
        return Ok(FieldList(list));
    }
    // Written again: the kept fields, each name's together.
    let mut out = Vec::with_capacity(list.len());
    for (i, field) in kept.iter().enumerate() {
        let name = name_of(field);
        if kept[..i].iter().any(|f| name_of(f) == name) {
            continue;
        }
        for &(s, e, v) in kept[i..].iter().filter(|f| name_of(f) == name) {
            if !out.is_empty() {
                out.push(b'\n');
            }
            out.extend_from_slice(&bytes[s as usize..e as usize]);
            out.push(b'\n');
            out.extend_from_slice(&bytes[e as usize + 1..v as usize]);
        }
    }
    Ok(FieldList(out))
}

/// The response of a reply given with a list (`bridge::Given::Listed`), for hyper's path:
/// the map `build` makes of the same reply.
pub fn listed_reply(status: StatusCode, list: &FieldList, body: ResponseBody) -> Reply {
    let mut res = with_content_type(status, crate::wire::CT_NONE, body, list.fields().count());
    let map = res.headers_mut();
    for (name, value) in list.fields() {
        // Checked by `listed`: neither fails.
        if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name), HeaderValue::from_bytes(value)) {
            map.append(name, value);
        }
    }
    res
}

/// The response of a reply given without a header list (`bridge::Given::Plain`), made on
/// the connection's side: what `build` makes of the same status, code and body with no
/// list (the status already checked by `status_code`).
#[inline(always)]
pub fn plain(status: StatusCode, ct: u32, body: ResponseBody) -> Reply {
    with_content_type(status, ct, body, 0)
}

/// A response with its status and the content type of `ct`, its header map (a kept one
/// where this thread has one) with room for `more` fields besides.
#[inline(always)]
fn with_content_type(status: StatusCode, ct: u32, body: ResponseBody, more: usize) -> Reply {
    let mut map = kept_map().unwrap_or_default();
    let content_type = content_type(ct);
    // Sized for what it will hold, with the Content-Length hyper inserts: a map's first
    // insert otherwise makes room for 6 fields (about 600 bytes, 8 index slots written)
    // where most responses have two.
    map.reserve(1 + usize::from(content_type.is_some()) + more);
    if let Some(v) = content_type {
        map.insert(CONTENT_TYPE, v);
    }
    // The response is put together last, from its parts: one whose map was filled in place
    // (its address passed to the map's calls) was made aside and copied out on its way to
    // hyper (152 bytes, a `memcpy` call at each step).
    let (mut parts, ()) = http::Response::new(()).into_parts();
    parts.status = status;
    parts.headers = map;
    http::Response::from_parts(parts, body)
}

/// Header maps kept for the responses of one thread, at most.
const MAPS_KEPT: usize = 64;
/// A map is kept only if its room (`HeaderMap::capacity`) is at most this many fields: the
/// kept maps hold at most about 64 x 2.5 KiB per thread.
const MAP_KEPT_FIELDS: usize = 24;

thread_local! {
    /// Request heads' header maps, emptied (`keep_map`), for the responses made on this
    /// thread (`plain`, `build`). hyper keeps a response's map once it has written the head
    /// and parses the connection's next request into it; `admit` had that map freed with the
    /// request's head, and the response allocated one again: two blocks allocated and freed
    /// a request.
    static MAPS: std::cell::RefCell<Vec<http::HeaderMap>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Keeps a request head's header map, emptied, for a response made on this thread
/// (`with_content_type`); a map with room for many fields, or one more than `MAPS_KEPT`,
/// is dropped.
pub(crate) fn keep_map(mut map: http::HeaderMap) {
    if map.capacity() > MAP_KEPT_FIELDS {
        return;
    }
    let _ = MAPS.try_with(|maps| {
        let Ok(mut maps) = maps.try_borrow_mut() else { return };
        if maps.len() < MAPS_KEPT {
            map.clear();
            maps.push(map);
        }
    });
}

/// An empty header map kept by `keep_map`, if there is one.
fn kept_map() -> Option<http::HeaderMap> {
    MAPS.try_with(|maps| maps.try_borrow_mut().ok()?.pop()).ok().flatten()
}

/// Fields that describe one connection, not the message (RFC 9110 section 7.6.1, and
/// RFC 9112 for Transfer-Encoding): a handler that passes on an upstream response's
/// headers (a proxy) must not send them, since this connection's framing and options are
/// hyper's. `Proxy-*` fields are for a proxy hop; `Proxy-Authenticate` stays on a 407,
/// where a server acting as a proxy sends it to its client.
pub(crate) fn is_hop_by_hop(name: &HeaderName, status: u32) -> bool {
    use http::header::{CONNECTION, PROXY_AUTHENTICATE, TE, TRANSFER_ENCODING, UPGRADE};
    if name == CONNECTION || name == TRANSFER_ENCODING || name == TE || name == UPGRADE {
        return true;
    }
    let n = name.as_str();
    if n == "keep-alive" {
        return true;
    }
    n.starts_with("proxy-") && !(name == PROXY_AUTHENTICATE && status == 407)
}

/// A body-less response with only a status; used for errors raised on the Rust side.
pub fn status_only(status: u16) -> Reply {
    let mut res = http::Response::new(ResponseBody::Empty);
    *res.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    res
}

/// 503 for a server whose JS thread has too much waiting.
pub fn overloaded() -> Reply {
    let mut res = status_only(503);
    res.headers_mut().insert(RETRY_AFTER, HeaderValue::from_static("1"));
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crlf_in_header_value_is_rejected() {
        let h = vec!["x-a".to_string(), "a\r\nInjected: 1".to_string()];
        let e = build(200, 0, Some(&HeaderList::Strings(h)), ResponseBody::Empty, false).unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidHeader);
    }

    #[test]
    fn invalid_header_name_is_rejected() {
        let h = vec!["bad name".to_string(), "v".to_string()];
        assert!(build(200, 0, Some(&HeaderList::Strings(h)), ResponseBody::Empty, false).is_err());
    }

    #[test]
    fn repeated_headers_stay_separate() {
        let h: Vec<String> = ["set-cookie", "a=1", "set-cookie", "b=2"].iter().map(|s| s.to_string()).collect();
        let r = build(200, 0, Some(&HeaderList::Strings(h)), ResponseBody::Empty, false).unwrap();
        assert_eq!(r.headers().get_all("set-cookie").iter().count(), 2);
    }

    #[test]
    fn latin1_values_become_single_bytes() {
        let h = vec!["x-a".to_string(), "caf\u{e9}".to_string()];
        let r = build(200, 0, Some(&HeaderList::Strings(h)), ResponseBody::Empty, false).unwrap();
        assert_eq!(r.headers()["x-a"].as_bytes(), b"caf\xe9");
        let h = vec!["x-a".to_string(), "\u{20ac}".to_string()];
        assert!(build(200, 0, Some(&HeaderList::Strings(h)), ResponseBody::Empty, false).is_err());
    }

    fn packed(text: &[u8]) -> HeaderList {
        HeaderList::Packed(text.to_vec())
    }

    #[test]
    fn a_packed_list_makes_the_fields_a_list_of_strings_makes() {
        let text = b"x-a\n1\nset-cookie\na=1\nset-cookie\nb=2\nx-b\n\ncontent-type\ntext/plain";
        let strings = text.split(|&b| b == b'\n').map(|p| String::from_utf8(p.to_vec()).unwrap()).collect();
        let a = build(200, 0, Some(&packed(text)), ResponseBody::Empty, false).unwrap();
        let b = build(200, 0, Some(&HeaderList::Strings(strings)), ResponseBody::Empty, false).unwrap();
        assert_eq!(a.headers(), b.headers());
        assert_eq!(a.headers().get_all("set-cookie").iter().count(), 2);
        assert_eq!(a.headers()["x-b"], "");
        let empty = build(200, 0, Some(&packed(b"")), ResponseBody::Empty, false).unwrap();
        assert!(empty.headers().is_empty());
    }

    #[test]
    fn a_packed_list_is_checked_as_strings_are() {
        // Latin-1 bytes are the value's bytes.
        let r = build(200, 0, Some(&packed(b"x-a\ncaf\xe9")), ResponseBody::Empty, false).unwrap();
        assert_eq!(r.headers()["x-a"].as_bytes(), b"caf\xe9");
        for bad in [&b"x-a"[..], b"x-a\n1\nx-b", b"bad name\nv", b"x-a\na\rb", b"x-a\na\0b"] {
            let e = build(200, 0, Some(&packed(bad)), ResponseBody::Empty, false).unwrap_err();
            assert_eq!(e.kind, ErrorKind::InvalidHeader, "{bad:?}");
        }
        let r =
            build(200, 0, Some(&packed(b"content-length\n5\nconnection\nclose")), ResponseBody::Empty, true).unwrap();
        let fields: Vec<_> = r.headers().iter().map(|(n, v)| (n.as_str(), v.as_bytes())).collect();
        assert_eq!(fields, [("content-length", &b"5"[..])]);
    }

    /// Lists `listed` takes or gives back, each against `build`'s map of it (`listed_reply`'s
    /// when taken), for bodies and none, GET and HEAD, 200, 204, 304 and 407.
    #[test]
    fn a_listed_reply_makes_the_map_build_makes() {
        let lists: [&[u8]; 22] = [
            b"",
            b"content-type\napplication/json; charset=utf-8\ncache-control\nno-store",
            b"a\n1\nb\n2\na\n3",
            b"set-cookie\na=1\nx-b\n\nset-cookie\nb=2; Path=/",
            b"x-a\ncaf\xe9 \t au lait\nx-b\n\x80\xff",
            b"content-length\n5\nx-a\n1",
            b"content-length\n0\nx-a\n1",
            b"content-length\nfive\nx-a\n1",
            b"connection\nclose\nx-a\n1\nkeep-alive\ntimeout=5",
            b"connection\nkeep-alive, Close\nclose\nyes",
            b"connection\nx-a\nx-a\n1\nx-b\n2",
            b"connection\n\xff x-a\nx-a\n1",
            b"transfer-encoding\nchunked\nte\ntrailers\nupgrade\nh2c\nx-a\n1",
            b"proxy-authenticate\nBasic\nproxy-connection\nclose\nx-a\n1",
            b"trailer\nx-t\nx-a\n1\ntrailer\nx-u",
            b"date\nThu, 01 Jan 1970 00:00:00 GMT",
            b"X-Upper\n1",
            b"x-a\n1\nx-b",
            b"x-a\n1\n",
            b"x-a\na\rb",
            b"bad name\nv",
            b"x-a\n\x7f",
        ];
        let mut taken = 0;
        for list in lists {
            for status in [200, 204, 304, 407] {
                for full in [false, true] {
                    for head in [false, true] {
                        let body = || match full {
                            true => ResponseBody::full(bytes::Bytes::from_static(b"abc")),
                            false => ResponseBody::Empty,
                        };
                        let built = build(status, 0, Some(&packed(list)), body(), head);
                        let code = StatusCode::from_u16(status as u16).unwrap();
                        match listed(0, list.to_vec(), code, !full) {
                            Ok(fields) => {
                                taken += 1;
                                let r = listed_reply(code, &fields, body());
                                let built = built.unwrap_or_else(|e| panic!("{list:?}: {}", e.message));
                                let order = |r: &Reply| {
                                    r.headers().iter().map(|(n, v)| (n.clone(), v.clone())).collect::<Vec<_>>()
                                };
                                assert_eq!(order(&r), order(&built), "{list:?} {status} {full} {head}");
                                // The list holds the map's fields in its order.
                                let from_list: Vec<_> = fields.fields().collect();
                                let from_map: Vec<_> = built
                                    .headers()
                                    .iter()
                                    .map(|(n, v)| (n.as_str().as_bytes(), v.as_bytes()))
                                    .collect();
                                assert_eq!(from_list, from_map, "{list:?}");
                            }
                            // Given back whole, for `build`.
                            Err(back) => assert_eq!(back, list),
                        }
                    }
                }
            }
        }
        assert!(taken > 100, "{taken}");
        // Given back: a content-type code beside a list, many fields, a length kept for HEAD.
        let ok = StatusCode::OK;
        assert!(listed(crate::wire::CT_JSON, b"x-a\n1".to_vec(), ok, false).is_err());
        assert!(listed(crate::wire::CT_JSON, Vec::new(), ok, false).is_err());
        let many: Vec<u8> = (0..40).flat_map(|i| format!("x-{i}\n{i}\n").into_bytes()).collect();
        assert!(listed(0, many[..many.len() - 1].to_vec(), ok, false).is_err());
        assert!(listed(0, b"content-length\n5".to_vec(), ok, true).is_err());
        assert!(listed(0, b"content-length\n5".to_vec(), ok, false).is_ok());
    }

    #[test]
    fn newlines_are_found_at_every_place() {
        for len in 0..40 {
            for at in 0..=len {
                let mut b = vec![b'a'; len];
                if at < len {
                    b[at] = b'\n';
                    // Bytes that differ from a newline by one bit, and a later newline.
                    b.iter_mut().take(at).for_each(|c| *c = 0x0b);
                    if at + 2 < len {
                        b[at + 2] = b'\n';
                    }
                }
                assert_eq!(newline(&b), (at < len).then_some(at), "{len} {at}");
            }
        }
    }

    #[test]
    fn a_kept_map_goes_to_a_plain_response_empty() {
        let mut map = http::HeaderMap::new();
        map.insert("x-req", HeaderValue::from_static("1"));
        map.append("accept", HeaderValue::from_static("a"));
        map.append("accept", HeaderValue::from_static("b"));
        keep_map(map);
        let r = plain(StatusCode::CREATED, crate::wire::CT_JSON, ResponseBody::Empty);
        assert_eq!(r.status(), StatusCode::CREATED);
        let fields: Vec<_> = r.headers().iter().map(|(n, v)| (n.as_str(), v.as_bytes())).collect();
        assert_eq!(fields, [("content-type", &b"application/json"[..])]);
        // What `build` makes of the same reply without a header list.
        let built = build(201, crate::wire::CT_JSON, None, ResponseBody::Empty, false).unwrap();
        assert_eq!(built.headers(), r.headers());
        assert!(plain(StatusCode::OK, crate::wire::CT_NONE, ResponseBody::Empty).headers().is_empty());
    }

    #[test]
    fn status_out_of_range_is_rejected() {
        assert!(status_code(99).is_err());
        assert!(status_code(1000).is_err());
        assert!(status_code(599).is_ok());
    }

    #[test]
    fn hop_by_hop_headers_are_not_sent() {
        let h: Vec<String> = [
            "x-before",
            "1",
            "connection",
            "keep-alive, X-Before, x-after",
            "keep-alive",
            "timeout=5",
            "te",
            "trailers",
            "upgrade",
            "h2c",
            "proxy-connection",
            "keep-alive",
            "proxy-authenticate",
            "Basic",
            "x-after",
            "2",
            "x-kept",
            "3",
            "content-type",
            "text/plain",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let r = build(200, 0, Some(&HeaderList::Strings(h)), ResponseBody::Empty, false).unwrap();
        let mut names: Vec<&str> = r.headers().keys().map(|n| n.as_str()).collect();
        names.sort_unstable();
        assert_eq!(names, ["content-type", "x-kept"]);
    }

    #[test]
    fn proxy_authenticate_is_kept_on_407() {
        let h: Vec<String> = ["proxy-authenticate", "Basic realm=\"p\""].iter().map(|s| s.to_string()).collect();
        let r = build(407, 0, Some(&HeaderList::Strings(h)), ResponseBody::Empty, false).unwrap();
        assert_eq!(r.headers()["proxy-authenticate"], "Basic realm=\"p\"");
    }

    #[test]
    fn framing_headers_from_js_are_ignored() {
        let h: Vec<String> =
            ["content-length", "5", "transfer-encoding", "chunked"].iter().map(|s| s.to_string()).collect();
        let r =
            build(200, 0, Some(&HeaderList::Strings(h)), ResponseBody::full(bytes::Bytes::from_static(b"abc")), false)
                .unwrap();
        assert!(r.headers().is_empty());
    }

    fn cl(v: &str) -> HeaderList {
        HeaderList::Strings(vec!["content-length".to_string(), v.to_string()])
    }

    #[test]
    fn head_without_body_keeps_its_declared_length() {
        let r = build(200, 0, Some(&cl("12345")), ResponseBody::Empty, true).unwrap();
        assert_eq!(r.headers()["content-length"], "12345");
    }

    #[test]
    fn get_without_body_and_a_declared_length_is_an_error() {
        let e = build(200, 0, Some(&cl("12345")), ResponseBody::Empty, false).unwrap_err();
        assert_eq!(e.kind, ErrorKind::ContentLengthWithoutBody);
        assert!(build(200, 0, Some(&cl("0")), ResponseBody::Empty, false).is_ok());
        assert!(build(304, 0, Some(&cl("12345")), ResponseBody::Empty, false).is_ok());
    }

    #[test]
    fn a_body_sets_the_length_whatever_is_declared() {
        let body = ResponseBody::full(bytes::Bytes::from_static(b"abc"));
        let r = build(200, 0, Some(&cl("12345")), body, true).unwrap();
        assert!(r.headers().get("content-length").is_none());
    }
}
