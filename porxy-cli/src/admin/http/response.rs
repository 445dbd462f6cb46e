//! An answer as it goes on the wire: the status line, `Content-Length` always (RFC 9112: so
//! the client knows where it ends on a kept-alive connection), `Content-Type` for a body,
//! `Connection: close` when the connection ends after it, no body for `HEAD`.

use serde::Serialize;

use super::error::{reason, HttpError};

/// An answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// `value` as a JSON body.
    pub fn json(status: u16, value: &impl Serialize) -> Response {
        let mut body = serde_json::to_vec_pretty(value).unwrap_or_else(|e| {
            // Serializing porxy's own values does not fail; were it to, say so in JSON.
            format!("{{\"error\": {{\"code\": 500, \"message\": \"{e}\"}}}}").into_bytes()
        });
        body.push(b'\n');
        Response {
            status,
            headers: vec![("Content-Type", "application/json".into())],
            body,
        }
    }

    /// An error's answer: `{"error": {"code": STATUS, "message": "..."}}`, with the headers
    /// its status calls for.
    pub fn error(error: &HttpError) -> Response {
        let mut body = serde_json::json!({
            "error": { "code": error.status, "message": error.message }
        });
        if let Some(kind) = error.kind {
            body["error"]["kind"] = kind.into();
        }
        let mut response = Response::json(error.status, &body);
        response.headers.extend(error.headers.iter().cloned());
        response
    }

    /// The bytes to send: the body left out for a `HEAD` request (its length still said),
    /// `Connection: close` if the connection ends after it.
    pub fn to_bytes(&self, head_only: bool, close: bool) -> Vec<u8> {
        let mut out = format!("HTTP/1.1 {} {}\r\n", self.status, reason(self.status));
        for (name, value) in &self.headers {
            out.push_str(&format!("{name}: {value}\r\n"));
        }
        if self.status != 204 && self.status >= 200 {
            out.push_str(&format!("Content-Length: {}\r\n", self.body.len()));
        }
        if close {
            out.push_str("Connection: close\r\n");
        }
        out.push_str("\r\n");
        let mut bytes = out.into_bytes();
        if !head_only {
            bytes.extend_from_slice(&self.body);
        }
        bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_is_json_with_its_headers() {
        let error =
            HttpError::new(405, "GET /stop only; use POST").with_header("Allow", "GET, POST");
        let bytes = Response::error(&error).to_bytes(false, false);
        let text = String::from_utf8(bytes).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(
            head.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"),
            "{head}"
        );
        assert!(head.contains("\r\nAllow: GET, POST"), "{head}");
        assert!(
            head.contains(&format!("\r\nContent-Length: {}", body.len())),
            "{head}"
        );
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["error"]["code"], 405);
        assert_eq!(json["error"]["message"], "GET /stop only; use POST");
    }

    #[test]
    fn head_keeps_the_length_and_drops_the_body() {
        let response = Response::json(200, &serde_json::json!({"ok": true}));
        let text = String::from_utf8(response.to_bytes(true, true)).unwrap();
        assert!(text.ends_with("Connection: close\r\n\r\n"), "{text}");
        assert!(text.contains(&format!("Content-Length: {}", response.body.len())));
    }
}
