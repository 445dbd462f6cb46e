//! An HTTP error answer: its status and the message its JSON body carries, and whether the
//! connection must close after it (the request's bytes cannot be trusted to end where the
//! next one begins).

use std::fmt;

/// An error status with its reason, as the admin endpoint answers it:
/// `{"error": {"code": STATUS, "message": "..."}}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpError {
    pub status: u16,
    pub message: String,
    /// The connection closes after the answer.
    pub close: bool,
    /// Headers the status calls for (`Allow` with 405, `WWW-Authenticate` with 401).
    pub headers: Vec<(&'static str, String)>,
    /// porxy's own code for the kind of refusal, where there is one (the JSON-RPC error
    /// codes): `error.kind` in the body.
    pub kind: Option<i64>,
}

impl HttpError {
    /// An error the connection survives (the request was read whole).
    pub fn new(status: u16, message: impl Into<String>) -> HttpError {
        HttpError {
            status,
            message: message.into(),
            close: false,
            headers: Vec::new(),
            kind: None,
        }
    }

    /// An error after which the connection closes (the request was not read whole, or not
    /// understood).
    pub fn closing(status: u16, message: impl Into<String>) -> HttpError {
        HttpError {
            close: true,
            ..HttpError::new(status, message)
        }
    }

    /// With porxy's own code for its kind.
    pub fn with_kind(mut self, kind: i64) -> HttpError {
        self.kind = Some(kind);
        self
    }

    /// With `name: value` among its headers.
    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> HttpError {
        self.headers.push((name, value.into()));
        self
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status, self.message)
    }
}

impl std::error::Error for HttpError {}

/// The reason phrase of the statuses porxy answers with.
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        202 => "Accepted",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        417 => "Expectation Failed",
        422 => "Unprocessable Content",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}
