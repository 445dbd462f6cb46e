//! A request's head (request line and headers), parsed by httparse and judged once: what the
//! rest of the endpoint needs is typed here (method, path, version, how the body is framed,
//! whether the connection stays open, the headers it reads), and every head it cannot serve is
//! refused with its status (RFC 9110, RFC 9112). No IO.

use super::error::HttpError;

/// The longest head taken, request line and headers (431 beyond).
pub const MAX_HEAD: usize = 16 * 1024;
/// The most headers taken (431 beyond).
pub const MAX_HEADERS: usize = 64;

/// The methods the endpoint serves; any other is answered 405 by its route, or 501.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Delete,
    /// A method the endpoint has no use for (answered 405 with the path's `Allow`).
    Other,
}

impl Method {
    fn of(text: &str) -> Method {
        match text {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            _ => Method::Other,
        }
    }
}

/// How a request's body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body (neither `Content-Length` nor `Transfer-Encoding`).
    Empty,
    /// `Content-Length` bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// A parsed request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub method: Method,
    /// The path, percent-decoded, without its query.
    pub path: String,
    /// `1` for HTTP/1.1, `0` for HTTP/1.0.
    pub version: u8,
    pub framing: Framing,
    /// The connection stays open after the answer (HTTP/1.1 unless `Connection: close`;
    /// HTTP/1.0 only with `Connection: keep-alive`).
    pub keep_alive: bool,
    /// `Expect: 100-continue`: the client waits for a go-ahead before its body.
    pub expect_continue: bool,
    /// `Content-Type`, its media type lower-cased, parameters dropped.
    pub content_type: Option<String>,
    /// `Authorization`, as sent.
    pub authorization: Option<String>,
}

/// Parses the head at the start of `bytes`: `Ok(None)` while it is incomplete, else the head
/// and how many bytes it took.
pub fn parse(bytes: &[u8]) -> Result<Option<(Head, usize)>, HttpError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let taken = match request.parse(bytes) {
        Ok(httparse::Status::Complete(taken)) => taken,
        Ok(httparse::Status::Partial) if bytes.len() > MAX_HEAD => {
            return Err(too_large(format!("the head is over {MAX_HEAD} bytes")));
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(too_large(format!("more than {MAX_HEADERS} headers")));
        }
        Err(e) => return Err(HttpError::closing(400, format!("not an HTTP request: {e}"))),
    };
    if taken > MAX_HEAD {
        return Err(too_large(format!("the head is over {MAX_HEAD} bytes")));
    }
    let (Some(method), Some(target), Some(version)) =
        (request.method, request.path, request.version)
    else {
        return Err(HttpError::closing(400, "an incomplete request line"));
    };
    let mut head = Head {
        method: Method::of(method),
        path: String::new(),
        version,
        framing: Framing::Empty,
        keep_alive: version == 1,
        expect_continue: false,
        content_type: None,
        authorization: None,
    };
    head.path = path_of(target)?;
    let mut length: Option<u64> = None;
    let mut chunked = false;
    let mut host = false;
    for header in request.headers.iter() {
        let value = std::str::from_utf8(header.value)
            .map_err(|_| HttpError::closing(400, format!("header {} is not text", header.name)))?
            .trim();
        match header.name.to_ascii_lowercase().as_str() {
            "host" => host = true,
            "content-length" => {
                let parsed = value.parse::<u64>().map_err(|_| {
                    HttpError::closing(400, format!("Content-Length `{value}` is not a length"))
                })?;
                if length.is_some_and(|before| before != parsed) {
                    return Err(HttpError::closing(
                        400,
                        "two different Content-Length headers",
                    ));
                }
                length = Some(parsed);
            }
            "transfer-encoding" => {
                if !value.eq_ignore_ascii_case("chunked") {
                    return Err(HttpError::closing(
                        501,
                        format!("Transfer-Encoding `{value}` is not supported; use chunked"),
                    ));
                }
                chunked = true;
            }
            "connection" => {
                for token in value.split(',').map(str::trim) {
                    if token.eq_ignore_ascii_case("close") {
                        head.keep_alive = false;
                    } else if token.eq_ignore_ascii_case("keep-alive") {
                        head.keep_alive = true;
                    }
                }
            }
            "expect" => {
                if !value.eq_ignore_ascii_case("100-continue") {
                    return Err(HttpError::closing(
                        417,
                        format!("Expect `{value}` is not supported"),
                    ));
                }
                head.expect_continue = true;
            }
            "content-type" => {
                let media = value.split(';').next().unwrap_or("").trim();
                head.content_type = Some(media.to_ascii_lowercase());
            }
            "authorization" => head.authorization = Some(value.to_string()),
            _ => {}
        }
    }
    if version == 1 && !host {
        return Err(HttpError::closing(
            400,
            "an HTTP/1.1 request needs a Host header",
        ));
    }
    head.framing = match (length, chunked) {
        (Some(_), true) => {
            return Err(HttpError::closing(
                400,
                "both Content-Length and Transfer-Encoding: the body's end is ambiguous",
            ));
        }
        (Some(0) | None, false) => Framing::Empty,
        (Some(n), false) => Framing::Length(n),
        (None, true) => Framing::Chunked,
    };
    Ok(Some((head, taken)))
}

fn too_large(message: String) -> HttpError {
    HttpError::closing(431, message)
}

/// The path of a request target: origin form (`/a/b?q`), percent-decoded, query dropped.
fn path_of(target: &str) -> Result<String, HttpError> {
    if !target.starts_with('/') {
        return Err(HttpError::closing(
            400,
            format!("the request target `{target}` is not a path"),
        ));
    }
    let raw = target.split(['?', '#']).next().unwrap_or("");
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    // Bounded: each turn takes one byte or one `%XX`.
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok());
            let Some(byte) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) else {
                return Err(HttpError::closing(
                    400,
                    format!("a bad escape in the path `{raw}`"),
                ));
            };
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out)
        .map_err(|_| HttpError::closing(400, format!("the path `{raw}` is not UTF-8")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(text: &str) -> Head {
        parse(text.as_bytes()).unwrap().unwrap().0
    }

    fn refused(text: &[u8]) -> HttpError {
        parse(text).unwrap_err()
    }

    #[test]
    fn a_request_reads_into_its_parts() {
        let text = "POST /routes/web%2D1?x=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\n\
                    Content-Type: Application/JSON; charset=utf-8\r\n\
                    Authorization: Bearer s3cret\r\n\r\n{}";
        let (head, taken) = parse(text.as_bytes()).unwrap().unwrap();
        assert_eq!(taken, text.len() - 2);
        assert_eq!(head.method, Method::Post);
        assert_eq!(head.path, "/routes/web-1");
        assert_eq!(head.framing, Framing::Length(12));
        assert!(head.keep_alive);
        assert_eq!(head.content_type.as_deref(), Some("application/json"));
        assert_eq!(head.authorization.as_deref(), Some("Bearer s3cret"));
    }

    #[test]
    fn keep_alive_follows_the_version_and_connection() {
        assert!(!head("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").keep_alive);
        assert!(!head("GET / HTTP/1.0\r\n\r\n").keep_alive);
        assert!(head("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").keep_alive);
    }

    #[test]
    fn an_incomplete_head_waits() {
        assert_eq!(parse(b"GET / HTTP/1.1\r\nHost: a\r\n"), Ok(None));
        assert_eq!(parse(b""), Ok(None));
    }

    #[test]
    fn heads_that_cannot_be_served_are_refused_with_their_status() {
        let status = |text: &[u8]| refused(text).status;
        let mut long = b"GET / HTTP/1.1\r\nHost: a\r\nX: ".to_vec();
        long.resize(MAX_HEAD + 10, b'a');
        assert_eq!(status(&long), 431);
        let many: String = (0..=MAX_HEADERS).map(|i| format!("X{i}: 1\r\n")).collect();
        assert_eq!(
            status(format!("GET / HTTP/1.1\r\n{many}\r\n").as_bytes()),
            431
        );
        assert_eq!(status(b"GET / HTTP/1.1\r\n\r\n"), 400, "no Host");
        assert_eq!(
            status(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n"),
            400
        );
        assert_eq!(
            status(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n"),
            400
        );
        assert_eq!(
            status(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n"),
            501
        );
        assert_eq!(
            status(b"GET / HTTP/1.1\r\nHost: a\r\nExpect: magic\r\n\r\n"),
            417
        );
        assert_eq!(status(b"GET /%zz HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
        assert_eq!(status(b"GET http://x/ HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
        assert_eq!(
            status(b"\x16\x03\x01\x02\x00"),
            400,
            "TLS to a plain endpoint"
        );
        let message = refused(b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: x\r\n\r\n").message;
        assert_eq!(message, "Content-Length `x` is not a length");
    }

    proptest::proptest! {
        /// Any bytes: a head, a wait, or a refusal that says what; never a panic.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..4096)) {
            if let Err(error) = parse(&bytes) {
                proptest::prop_assert!(!error.message.is_empty());
                proptest::prop_assert!(error.close);
            }
        }
    }
}
