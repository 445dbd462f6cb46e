//! How the report's cells are written: a figure's row, a number, a ratio.

use std::fmt::Write as _;

use super::figures::Figure;

/// One figure's row: its label, its unit, then `cells`.
pub(super) fn figure_row(out: &mut String, figure: &Figure, cells: &[String]) {
    let _ = writeln!(
        out,
        "| {} | {} | {} |",
        figure.label,
        figure.unit,
        cells.join(" | ")
    );
}

/// A number with as many digits as are meaningful for its size.
pub(super) fn number(value: f64) -> String {
    let magnitude = value.abs();
    if magnitude >= 100.0 {
        format!("{value:.0}")
    } else if magnitude >= 10.0 {
        format!("{value:.1}")
    } else if magnitude >= 1.0 {
        format!("{value:.2}")
    } else {
        format!("{value:.3}")
    }
}

/// A ratio with two significant digits at least (direct's latency ratios are tiny).
pub(super) fn ratio(value: f64) -> String {
    if value >= 10.0 {
        format!("{value:.1}")
    } else if value >= 0.1 {
        format!("{value:.2}")
    } else {
        format!("{value:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_keep_meaningful_digits() {
        assert_eq!(number(12345.6), "12346");
        assert_eq!(number(12.34), "12.3");
        assert_eq!(number(1.234), "1.23");
        assert_eq!(number(0.1234), "0.123");
    }
}
