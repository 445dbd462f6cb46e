//! The harness's one error type: a message that says what was being done, with its cause.
//!
//! The harness is a program, not a library: every error ends the run (after the children are
//! stopped by their guards), and is printed once by `main`. A message plus its context is all
//! a person needs, so there is no enum to match on.

use std::fmt;

/// What went wrong, in words, with the context it happened in.
#[derive(Debug)]
pub struct Error {
    message: String,
}

/// The harness's result.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// An error with this message.
    pub fn new(message: impl Into<String>) -> Self {
        Error {
            message: message.into(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl From<std::io::Error> for Error {
    fn from(err: std::io::Error) -> Self {
        Error::new(err.to_string())
    }
}

/// Adds what was being done to an error, as `doing: cause`.
pub trait Context<T> {
    /// Wraps the error with `what()`, computed only on failure.
    fn context<S: Into<String>>(self, what: impl FnOnce() -> S) -> Result<T>;
}

impl<T, E: fmt::Display> Context<T> for std::result::Result<T, E> {
    fn context<S: Into<String>>(self, what: impl FnOnce() -> S) -> Result<T> {
        self.map_err(|err| Error::new(format!("{}: {err}", what().into())))
    }
}
