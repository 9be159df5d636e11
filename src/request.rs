//! Request heads as JS receives them: the absolute URL and every header, written as text
//! on the connection's thread, so that the JS thread only turns them into one string per
//! batch of requests (`drain`).

use http::header::HOST;
use http::request::Parts;

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
/// complete the URL as `url` does.
pub fn head_text(head: &Parts, scheme: &str, local: &str) -> HeadText {
    let (authority, path) = url_parts(head, local);
    let headers_len: usize = head.headers.iter().map(|(n, v)| n.as_str().len() + v.len() + 2).sum();
    let url_len = scheme.len() + 3 + authority.len() + path.len();
    let mut bytes = Vec::with_capacity(url_len + headers_len);
    bytes.extend_from_slice(scheme.as_bytes());
    bytes.extend_from_slice(b"://");
    bytes.extend_from_slice(authority.as_bytes());
    bytes.extend_from_slice(path.as_bytes());
    for (i, (n, v)) in head.headers.iter().enumerate() {
        if i > 0 {
            bytes.push(b'\n');
        }
        bytes.extend_from_slice(n.as_str().as_bytes());
        bytes.push(b'\n');
        bytes.extend_from_slice(v.as_bytes());
    }
    HeadText { bytes, url_len }
}

/// The authority and path of a request's absolute URL: the Host header (or the authority
/// of an absolute-form target, or the local address), then the path and query.
fn url_parts<'a>(head: &'a Parts, local: &'a str) -> (&'a str, &'a str) {
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
    (authority, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(req: http::Request<()>) -> (String, String) {
        let (head, _) = req.into_parts();
        let t = head_text(&head, "http", "127.0.0.1:1");
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
