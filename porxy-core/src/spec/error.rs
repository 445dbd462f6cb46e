//! [`SpecError`]: a malformed tunnel expression or address, with the column of the fault.

use std::fmt;

/// A malformed tunnel expression or address, with the column of the fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError {
    input: String,
    /// Byte offset into `input` where the fault is.
    offset: usize,
    message: String,
}

impl SpecError {
    pub(crate) fn new(input: &str, offset: usize, message: impl Into<String>) -> Self {
        SpecError {
            input: input.to_string(),
            offset: offset.min(input.len()),
            message: message.into(),
        }
    }

    /// The 1-based column (in characters) of the fault.
    pub fn column(&self) -> usize {
        self.input[..self.offset].chars().count() + 1
    }

    /// What was wrong, without the position.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Two lines for a terminal: the input, and a caret under the fault.
    pub fn caret(&self) -> String {
        format!("  {}\n  {}^", self.input, " ".repeat(self.column() - 1))
    }
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "bad tunnel `{}` at column {}: {}",
            self.input,
            self.column(),
            self.message
        )
    }
}

impl std::error::Error for SpecError {}
