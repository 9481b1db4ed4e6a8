//! Reading one HTTP/1.1 request off a keep-alive connection, for the small servers tests run
//! (fake IMDS, OTLP and webhook receivers): request line, headers, a `content-length` body.

use std::collections::BTreeMap;
use std::io::BufRead;

pub struct Request {
    pub method: String,
    pub path: String,
    /// Header names in lower case.
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
}

/// The next request on `r`; None at end of stream or on a malformed request. At most 100
/// headers; a body longer than `max_body` is cut there (the rest stays unread).
pub fn read_request(r: &mut impl BufRead, max_body: usize) -> Option<Request> {
    let mut line = String::new();
    if r.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next()?.to_string(), parts.next()?.to_string());
    let mut headers = BTreeMap::new();
    for _ in 0..100 {
        let mut h = String::new();
        if r.read_line(&mut h).ok()? == 0 {
            return None;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let len: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len.min(max_body)];
    r.read_exact(&mut body).ok()?;
    Some(Request {
        method,
        path,
        headers,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_requests_one_after_another() {
        let text = "POST /v1/traces HTTP/1.1\r\nContent-Length: 3\r\nX-A: b\r\n\r\nabcGET /x HTTP/1.1\r\n\r\n";
        let mut r = std::io::Cursor::new(text.as_bytes());
        let a = read_request(&mut r, 1 << 20).unwrap();
        assert_eq!((a.method.as_str(), a.path.as_str()), ("POST", "/v1/traces"));
        assert_eq!(a.headers["x-a"], "b");
        assert_eq!(a.body, b"abc");
        let b = read_request(&mut r, 1 << 20).unwrap();
        assert_eq!(
            (b.method.as_str(), b.path.as_str(), b.body.len()),
            ("GET", "/x", 0)
        );
        assert!(read_request(&mut r, 1 << 20).is_none());
    }
}
