//! Logging: tracing events to stderr, filtered by `--log` (EnvFilter syntax).
//!
//! stdout is reserved for the READY line (and `--check`'s verdict), so nothing here writes
//! to it.

use std::io::IsTerminal;

use tracing_subscriber::filter::{EnvFilter, ParseError};

use crate::error::CliError;

/// Parses a filter like `info` or `porxy_core=debug,warn`; rejects what EnvFilter would
/// otherwise drop silently.
pub(crate) fn filter(text: &str) -> Result<EnvFilter, ParseError> {
    EnvFilter::builder().parse(text)
}

/// Installs the global subscriber: human-readable lines on stderr, colored only on a terminal.
pub(crate) fn init(filter_text: &str) -> Result<(), CliError> {
    let filter = filter(filter_text).map_err(|source| CliError::Logging(source.to_string()))?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init()
        .map_err(|source| CliError::Logging(source.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters() {
        for good in [
            "info",
            "warn,porxy_core=debug",
            "porxy_core::listener=trace",
            "",
        ] {
            assert!(filter(good).is_ok(), "{good}");
        }
        for bad in ["porxy_core=loud", "[{", "info,=x"] {
            assert!(filter(bad).is_err(), "{bad}");
        }
    }
}
