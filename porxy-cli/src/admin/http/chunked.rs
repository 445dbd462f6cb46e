//! A chunked request body (RFC 9112 §7.1), decoded as its bytes come and bounded: what `curl
//! -T -` and other streaming clients send. Chunk sizes are read by httparse; trailers are read
//! and dropped. No IO.

use super::error::HttpError;
use super::head::MAX_HEAD;

/// Decodes one chunked body, at most `max` bytes of data.
#[derive(Debug)]
pub struct Chunked {
    state: State,
    body: Vec<u8>,
    max: usize,
    /// Bytes of trailers taken so far (bounded like a head).
    trailers: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// A chunk-size line is next.
    Size,
    /// This many bytes of chunk data are still to come.
    Data(u64),
    /// The CRLF after a chunk's data is next.
    DataEnd,
    /// Trailer lines, up to an empty one.
    Trailers,
    Done,
}

impl Chunked {
    pub fn new(max: usize) -> Chunked {
        Chunked {
            state: State::Size,
            body: Vec::new(),
            max,
            trailers: 0,
        }
    }

    /// Takes what it can from the front of `input`: how many bytes it took, and whether the
    /// body is complete. Taking fewer than given, and not complete, means it needs more.
    pub fn feed(&mut self, input: &[u8]) -> Result<(usize, bool), HttpError> {
        let mut at = 0;
        // Bounded: each turn takes bytes or returns.
        loop {
            let rest = &input[at..];
            match self.state {
                State::Done => return Ok((at, true)),
                State::Size => match httparse::parse_chunk_size(rest) {
                    Ok(httparse::Status::Complete((taken, size))) => {
                        at += taken;
                        if size == 0 {
                            self.state = State::Trailers;
                        } else if self.body.len() as u64 + size > self.max as u64 {
                            return Err(HttpError::closing(
                                413,
                                format!("the body is over the limit of {} bytes", self.max),
                            ));
                        } else {
                            self.state = State::Data(size);
                        }
                    }
                    Ok(httparse::Status::Partial) if rest.len() > 1024 => {
                        return Err(HttpError::closing(400, "a chunk size line too long"));
                    }
                    Ok(httparse::Status::Partial) => return Ok((at, false)),
                    Err(_) => return Err(HttpError::closing(400, "a bad chunk size")),
                },
                State::Data(left) => {
                    if rest.is_empty() {
                        return Ok((at, false));
                    }
                    let n = (left.min(rest.len() as u64)) as usize;
                    self.body.extend_from_slice(&rest[..n]);
                    at += n;
                    self.state = match left - n as u64 {
                        0 => State::DataEnd,
                        more => State::Data(more),
                    };
                }
                State::DataEnd => {
                    if rest.len() < 2 {
                        return Ok((at, false));
                    }
                    if &rest[..2] != b"\r\n" {
                        return Err(HttpError::closing(
                            400,
                            "a chunk's data does not end with CRLF",
                        ));
                    }
                    at += 2;
                    self.state = State::Size;
                }
                State::Trailers => {
                    let Some(end) = rest.windows(2).position(|w| w == b"\r\n") else {
                        if self.trailers + rest.len() > MAX_HEAD {
                            return Err(HttpError::closing(431, "the trailers are too long"));
                        }
                        return Ok((at, false));
                    };
                    at += end + 2;
                    self.trailers += end + 2;
                    if self.trailers > MAX_HEAD {
                        return Err(HttpError::closing(431, "the trailers are too long"));
                    }
                    if end == 0 {
                        self.state = State::Done;
                    }
                }
            }
        }
    }

    /// The body's bytes, once complete.
    pub fn into_body(self) -> Vec<u8> {
        self.body
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &[u8] = b"4\r\nWiki\r\n6;ext=1\r\npedia \r\nE\r\nin \r\n\r\nchunks.\r\n0\r\nX-Trailer: 1\r\n\r\nNEXT";

    #[test]
    fn a_chunked_body_decodes_and_stops_at_its_end() {
        let mut chunked = Chunked::new(1024);
        let (taken, done) = chunked.feed(BODY).unwrap();
        assert!(done);
        assert_eq!(&BODY[taken..], b"NEXT", "the next request's bytes are left");
        assert_eq!(chunked.into_body(), b"Wikipedia in \r\n\r\nchunks.");
    }

    #[test]
    fn a_body_fed_a_byte_at_a_time_is_the_same() {
        let mut chunked = Chunked::new(1024);
        let mut pending = Vec::new();
        let mut done = false;
        for &byte in &BODY[..BODY.len() - 4] {
            pending.push(byte);
            let (taken, complete) = chunked.feed(&pending).unwrap();
            pending.drain(..taken);
            done = complete;
        }
        assert!(done);
        assert_eq!(chunked.into_body(), b"Wikipedia in \r\n\r\nchunks.");
    }

    #[test]
    fn too_much_or_malformed_is_refused() {
        assert_eq!(Chunked::new(8).feed(BODY).unwrap_err().status, 413);
        assert_eq!(Chunked::new(64).feed(b"zz\r\n").unwrap_err().status, 400);
        assert_eq!(Chunked::new(64).feed(b"2\r\nabXY").unwrap_err().status, 400);
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..2048)) {
            let mut chunked = Chunked::new(512);
            if let Ok((taken, _)) = chunked.feed(&bytes) {
                proptest::prop_assert!(taken <= bytes.len());
            }
        }
    }
}
