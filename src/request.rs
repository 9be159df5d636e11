//! Request heads as JS receives them: the absolute URL and every header, written as text
//! on the connection's thread, so that the JS thread only turns them into one string per
//! batch of requests (`drain`).

use crate::target::{write_url, AuthorityCache, BadTarget};
use http::header::{HOST, UPGRADE};
use http::request::Parts;

/// What `admit` needs to know of a request's fields, found in one pass over them: the
/// first Host and whether there are more, their sizes, and whether an `Upgrade` is among
/// them (two lookups by name and two more passes before).
pub(crate) struct HeadFields<'a> {
    pub host: Option<&'a http::HeaderValue>,
    pub more_hosts: bool,
    /// The bytes of every field's name and value, and how many fields there are.
    pub field_bytes: usize,
    pub count: usize,
    pub upgrade: bool,
}

impl<'a> HeadFields<'a> {
    pub fn of(head: &'a Parts) -> Self {
        let mut h = HeadFields { host: None, more_hosts: false, field_bytes: 0, count: 0, upgrade: false };
        for (name, value) in &head.headers {
            h.field_bytes += name.as_str().len() + value.len();
            h.count += 1;
            if name == HOST {
                if h.host.is_some() {
                    h.more_hosts = true;
                } else {
                    h.host = Some(value);
                }
            } else if name == UPGRADE {
                h.upgrade = true;
            }
        }
        h
    }
}

/// A request head as JS receives it: the URL, then the headers packed as
/// `name\nvalue\nname\nvalue…` (names lowercase, in arrival order per name; nothing when
/// there are none). JS splits the headers into its flat `[name, value, …]` list when first
/// asked. A newline cannot occur in a name or value: the parser refuses one in either.
#[derive(Default)]
pub struct HeadText {
    pub bytes: Vec<u8>,
    pub url_len: usize,
}

/// The head text of a request (see `HeadText`); `scheme` and `local` (the bound address)
/// complete the URL (see `target::write_url`). A target or authority the URL cannot be
/// made from, or an h2 Host that differs from `:authority`, is refused. `authorities` is
/// the connection's (see `AuthorityCache`).
pub(crate) fn head_text(
    head: &Parts,
    fields: &HeadFields<'_>,
    scheme: &str,
    local: &str,
    authorities: &mut AuthorityCache,
) -> Result<HeadText, BadTarget> {
    let host = fields.host.map(|h| h.as_bytes());
    if head.version == http::Version::HTTP_2 {
        // RFC 9113 8.3.1: a Host must identify the same entity as `:authority`.
        if let (Some(authority), Some(host)) = (head.uri.authority(), host) {
            if !authority.as_str().as_bytes().eq_ignore_ascii_case(host) || fields.more_hosts {
                return Err(BadTarget);
            }
        }
    }
    let headers_len = fields.field_bytes + 2 * fields.count;
    let target_len = head.uri.path_and_query().map_or(1, |p| p.as_str().len());
    let mut bytes =
        Vec::with_capacity(scheme.len() + 3 + host.map_or(local.len(), <[u8]>::len) + target_len + 8 + headers_len);
    write_url(head, scheme, host, local, authorities, &mut bytes)?;
    let url_len = bytes.len();
    for (i, (n, v)) in head.headers.iter().enumerate() {
        if i > 0 {
            bytes.push(b'\n');
        }
        bytes.extend_from_slice(n.as_str().as_bytes());
        bytes.push(b'\n');
        bytes.extend_from_slice(v.as_bytes());
    }
    Ok(HeadText { bytes, url_len })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(req: http::Request<()>) -> (String, String) {
        let (head, _) = req.into_parts();
        let t =
            head_text(&head, &HeadFields::of(&head), "http", "127.0.0.1:1", &mut AuthorityCache::default()).unwrap();
        let s = String::from_utf8(t.bytes).unwrap();
        (s[..t.url_len].to_string(), s[t.url_len..].to_string())
    }

    #[test]
    fn url_uses_host_header() {
        let (url, _) = text(http::Request::get("/a?b=1").header("host", "example.test:8080").body(()).unwrap());
        assert_eq!(url, "http://example.test:8080/a?b=1");
    }

    #[test]
    fn url_without_host_falls_back_to_local_address() {
        let (url, headers) = text(http::Request::get("/x").body(()).unwrap());
        assert_eq!(url, "http://127.0.0.1:1/x");
        assert_eq!(headers, "");
    }

    #[test]
    fn headers_follow_the_url_in_order_with_empty_values() {
        let (url, headers) = text(
            http::Request::get("/")
                .header("host", "h")
                .header("x-empty", "")
                .header("accept", "a")
                .header("accept", "b:c")
                .body(())
                .unwrap(),
        );
        assert_eq!(url, "http://h/");
        assert_eq!(headers, "host\nh\nx-empty\n\naccept\na\naccept\nb:c");
    }
}
