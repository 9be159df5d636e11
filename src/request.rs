//! Request heads on the JS thread: the URL, header lookups, the flat header list, and
//! the client address, each produced only when JS asks.

use crate::bridge::IncomingRequest;
use http::header::HOST;

/// The absolute URL of a request: scheme, the Host header (or the authority of an
/// absolute-form target, or the local address), then the path and query.
pub fn url(head: &http::request::Parts, scheme: &str, local: &str) -> String {
    let authority = head
        .uri
        .authority()
        .map(|a| a.as_str())
        .or_else(|| head.headers.get(HOST).and_then(|h| h.to_str().ok()))
        .filter(|h| !h.is_empty())
        .unwrap_or(local);
    let path = head.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    // An asterisk-form target (`OPTIONS *`) has no path to speak of.
    let path = if path.starts_with('/') { path } else { "/" };
    let mut s = String::with_capacity(scheme.len() + 3 + authority.len() + path.len());
    s.push_str(scheme);
    s.push_str("://");
    s.push_str(authority);
    s.push_str(path);
    s
}

/// The combined value of a header (`, `-joined when repeated), as raw bytes.
pub fn header(req: &IncomingRequest, name: &str) -> Option<Vec<u8>> {
    let mut all = req.head.headers.get_all(name).iter();
    let first = all.next()?;
    let mut out = first.as_bytes().to_vec();
    for v in all {
        out.extend_from_slice(b", ");
        out.extend_from_slice(v.as_bytes());
    }
    Some(out)
}

/// Every header as one string, `name\nvalue\nname\nvalue…` (JS splits it into the flat
/// `[name, value, …]` list), in arrival order per name, names lowercase; empty when none.
/// One string costs JS far less than an array of two per header. A newline cannot occur
/// in a name or value: the parser refuses one in either.
pub fn packed_headers(req: &IncomingRequest) -> Vec<u8> {
    let headers = &req.head.headers;
    let size: usize = headers.iter().map(|(n, v)| n.as_str().len() + v.len() + 2).sum();
    let mut out = Vec::with_capacity(size);
    for (n, v) in headers {
        if !out.is_empty() {
            out.push(b'\n');
        }
        out.extend_from_slice(n.as_str().as_bytes());
        out.push(b'\n');
        out.extend_from_slice(v.as_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bridge::{RequestBody, Ticket};
    use std::sync::Arc;

    fn incoming(req: http::Request<()>) -> IncomingRequest {
        let (head, _) = req.into_parts();
        IncomingRequest {
            head,
            body: RequestBody::None,
            remote: "127.0.0.1:9".parse().unwrap(),
            reply: None,
            ticket: Arc::new(Ticket::default()),
            url: String::new(),
        }
    }

    #[test]
    fn url_uses_host_header() {
        let r = incoming(http::Request::get("/a?b=1").header("host", "example.test:8080").body(()).unwrap());
        assert_eq!(url(&r.head, "http", "127.0.0.1:1"), "http://example.test:8080/a?b=1");
    }

    #[test]
    fn url_without_host_falls_back_to_local_address() {
        let r = incoming(http::Request::get("/x").body(()).unwrap());
        assert_eq!(url(&r.head, "http", "127.0.0.1:1"), "http://127.0.0.1:1/x");
    }

    #[test]
    fn repeated_headers_are_joined() {
        let r = incoming(http::Request::get("/").header("accept", "a").header("accept", "b").body(()).unwrap());
        assert_eq!(header(&r, "accept").unwrap(), b"a, b");
        assert!(header(&r, "missing").is_none());
    }

    #[test]
    fn packed_headers_keep_order_and_empty_values() {
        let r = incoming(
            http::Request::get("/").header("host", "h").header("x-empty", "").header("accept", "a").header("accept", "b:c").body(()).unwrap(),
        );
        assert_eq!(packed_headers(&r), b"host\nh\nx-empty\n\naccept\na\naccept\nb:c");
        assert!(packed_headers(&incoming(http::Request::get("/").body(()).unwrap())).is_empty());
    }
}
