//! Human-written quantities: durations (`500ms`, `5s`, `2m`) and byte sizes (`16KiB`, `1MiB`).
//!
//! Both the tunnel SPEC options and the CLI's TOML file use these, so they live in the core and
//! are parsed in one place.

use std::time::Duration;

/// The longest duration porxy takes for any timeout or deadline: 365 days. Longer ones would
/// overflow a clock reading, and mean "never" anyway.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// Why a written duration or size could not be read; the message says what is wrong with the
/// text, quoting it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UnitError {
    /// A bare number where a duration needs a unit.
    #[error("`{0}` has no unit; write it as `{0}s` or `{0}ms`")]
    NoUnit(String),
    /// Not a duration at all.
    #[error("`{text}` is not a duration like `500ms`, `5s` or `2m` ({why})")]
    NotADuration {
        /// The text.
        text: String,
        /// What the duration grammar said.
        why: String,
    },
    /// Longer than [`MAX_DURATION`].
    #[error("`{0}` is longer than the most porxy takes, 365 days")]
    TooLong(String),
    /// Not a size, or one too large to count.
    #[error("`{0}` is not a size like `65536`, `16KiB` or `1MiB`")]
    NotASize(String),
}

/// Parses a duration such as `250ms`, `5s`, `1m 30s` or `2h`, at most [`MAX_DURATION`].
///
/// A bare number is rejected: a timeout without a unit is a typo waiting to happen.
pub fn parse_duration(text: &str) -> Result<Duration, UnitError> {
    let text = text.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(UnitError::NoUnit(text.to_string()));
    }
    // humantime panics ("overflow in Duration::new") when its sum of parts comes to the last
    // seconds a u64 holds (found by the `units` fuzzer). No duration porxy takes needs more
    // than this, and within it no sum can come near: at most five parts of ten digits, in
    // years, is under a tenth of what a u64 holds.
    if text.len() > MAX_DURATION_TEXT || longest_digit_run(text) > MAX_DURATION_DIGITS {
        return Err(UnitError::TooLong(text.to_string()));
    }
    let duration = humantime::parse_duration(text).map_err(|e| UnitError::NotADuration {
        text: text.to_string(),
        why: e.to_string(),
    })?;
    if duration > MAX_DURATION {
        return Err(UnitError::TooLong(text.to_string()));
    }
    Ok(duration)
}

/// The longest text a duration may be written in, and the longest number in it.
const MAX_DURATION_TEXT: usize = 64;
const MAX_DURATION_DIGITS: usize = 10;

fn longest_digit_run(text: &str) -> usize {
    text.split(|c: char| !c.is_ascii_digit())
        .map(str::len)
        .max()
        .unwrap_or(0)
}

/// `now + duration`, with the duration capped at [`MAX_DURATION`] so that it cannot overflow.
pub(crate) fn after(now: std::time::Instant, duration: Duration) -> std::time::Instant {
    now + duration.min(MAX_DURATION)
}

/// Parses a byte size: a plain number of bytes, or a number with `B`, `KiB`, `MiB`, `GiB`,
/// `TiB` (or `K`, `M`, `KB`, `MB`, ..., which porxy reads as powers of 1024 too, like most
/// proxies do).
pub fn parse_size(text: &str) -> Result<usize, UnitError> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let bad = || UnitError::NotASize(text.to_string());
    if digits.is_empty() {
        return Err(bad());
    }
    let number: usize = digits.parse().map_err(|_| bad())?;
    let scale: usize = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        _ => return Err(bad()),
    };
    number.checked_mul(scale).ok_or_else(bad)
}

/// Formats a byte size the way [`parse_size`] reads it back: in the largest of KiB, MiB, GiB
/// or TiB that divides it, else in bytes.
pub fn format_size(bytes: u64) -> String {
    for (unit, shift) in [("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)] {
        if bytes != 0 && bytes.trailing_zeros() >= shift {
            return format!("{}{unit}", bytes >> shift);
        }
    }
    bytes.to_string()
}

/// Formats a duration the way [`parse_duration`] reads it, for status output and messages.
pub fn format_duration(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the `units` fuzzer: humantime panicked on a sum of parts at the top of a u64.
    #[test]
    fn absurd_durations_are_refused_not_a_panic() {
        let text = "00000000000s0000018446744073709551615s1000ms";
        assert_eq!(parse_duration(text), Err(UnitError::TooLong(text.into())));
        let long = "1s ".repeat(30);
        assert!(matches!(parse_duration(&long), Err(UnitError::TooLong(_))));
        assert_eq!(
            parse_duration("9999999999ns"),
            Ok(Duration::from_nanos(9_999_999_999))
        );
        assert_eq!(
            parse_duration("1h 30m 15s 500ms"),
            Ok(Duration::from_millis(5_415_500))
        );
    }

    #[test]
    fn sizes_read_back_as_written() {
        for bytes in [
            0u64,
            1,
            1000,
            1024,
            3 << 10,
            4 << 20,
            5 << 30,
            1 << 40,
            (1 << 20) + 1,
        ] {
            let text = format_size(bytes);
            assert_eq!(parse_size(&text), Ok(bytes as usize), "{text}");
        }
        assert_eq!(format_size(64 << 10), "64KiB");
        assert_eq!(format_size(1 << 40), "1TiB");
        assert_eq!(parse_size("2t"), Ok(2 << 40));
    }

    #[test]
    fn durations_need_a_unit() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("1m 30s"), Ok(Duration::from_secs(90)));
        assert_eq!(
            parse_duration("5").unwrap_err().to_string(),
            "`5` has no unit; write it as `5s` or `5ms`"
        );
        assert!(matches!(
            parse_duration("soon"),
            Err(UnitError::NotADuration { text, .. }) if text == "soon"
        ));
        assert!(parse_duration("").is_err());
        assert_eq!(
            parse_duration("300000000000y").unwrap_err().to_string(),
            "`300000000000y` is longer than the most porxy takes, 365 days"
        );
        assert_eq!(parse_duration("365days"), Ok(MAX_DURATION));
    }

    #[test]
    fn sizes_take_binary_units() {
        assert_eq!(parse_size("65536"), Ok(65536));
        assert_eq!(parse_size("16KiB"), Ok(16 * 1024));
        assert_eq!(parse_size("16k"), Ok(16 * 1024));
        assert_eq!(parse_size("1 MiB"), Ok(1 << 20));
        assert!(parse_size("KiB").is_err());
        assert_eq!(
            parse_size("12 parsecs").unwrap_err().to_string(),
            "`12 parsecs` is not a size like `65536`, `16KiB` or `1MiB`"
        );
        assert!(parse_size("99999999999999999999G").is_err());
    }
}
