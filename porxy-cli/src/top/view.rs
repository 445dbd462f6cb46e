//! Drawing one screen of `porxy top`: a header (source, totals, reactors' load, sort key, keys),
//! and a table with a row per tunnel followed by its backends' rows.

use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Cell, Paragraph, Row, Table};
use ratatui::Frame;

use super::rates::{SortKey, TunnelRow};

/// What one screen shows.
pub struct Screen<'a> {
    pub source: &'a str,
    pub rows: &'a [TunnelRow],
    pub reactors: &'a [u64],
    pub sort: SortKey,
    /// The last reading's failure, if it failed.
    pub error: Option<&'a str>,
}

pub fn draw(frame: &mut Frame<'_>, screen: &Screen<'_>) {
    let [header, table] =
        Layout::vertical([Constraint::Length(3), Constraint::Min(0)]).areas(frame.area());
    let open: u64 = screen.rows.iter().map(|r| r.open).sum();
    let conns: f64 = screen.rows.iter().map(|r| r.conns_per_s).sum();
    let reactors: Vec<String> = screen
        .reactors
        .iter()
        .enumerate()
        .map(|(i, open)| format!("{i}:{open}"))
        .collect();
    let status = match screen.error {
        Some(error) => format!("reading failed: {error}"),
        None => format!(
            "{} tunnels, {open} open, {} conn/s",
            screen.rows.len(),
            rate(conns)
        ),
    };
    let lines = vec![
        Line::from(format!("porxy top — {} — {status}", screen.source)),
        Line::from(format!("reactors (open) {}", reactors.join(" "))),
        Line::from(format!(
            "sorted by {}   s: next sort key   q: quit",
            screen.sort.label()
        )),
    ];
    frame.render_widget(Paragraph::new(lines), header);

    let head = Row::new(
        [
            "TUNNEL / BACKEND",
            "STATE",
            "OPEN",
            "CONN/S",
            "UP/S",
            "DOWN/S",
            "FAIL/S",
        ]
        .map(Cell::from),
    )
    .style(Style::default().add_modifier(Modifier::BOLD));
    let mut rows = Vec::new();
    for t in screen.rows {
        let name = if t.name == t.listen {
            t.listen.clone()
        } else {
            format!("{} {}", t.name, t.listen)
        };
        rows.push(Row::new(vec![
            Cell::from(name),
            Cell::from(""),
            Cell::from(t.open.to_string()),
            Cell::from(rate(t.conns_per_s)),
            Cell::from(bytes(t.up_per_s)),
            Cell::from(bytes(t.down_per_s)),
            Cell::from(rate(t.failures_per_s)),
        ]));
        for b in &t.backends {
            rows.push(Row::new(vec![
                Cell::from(format!("  {}", b.addr)),
                Cell::from(b.state.clone()),
                Cell::from(b.open.to_string()),
                Cell::from(rate(b.conns_per_s)),
                Cell::from(""),
                Cell::from(""),
                Cell::from(rate(b.failures_per_s)),
            ]));
        }
    }
    let widths = [
        Constraint::Min(28),
        Constraint::Length(9),
        Constraint::Length(8),
        Constraint::Length(9),
        Constraint::Length(10),
        Constraint::Length(10),
        Constraint::Length(8),
    ];
    frame.render_widget(Table::new(rows, widths).header(head), table);
}

/// A rate to one decimal.
fn rate(per_s: f64) -> String {
    format!("{per_s:.1}")
}

/// Bytes a second, in binary units.
fn bytes(per_s: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = per_s;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{value:.0} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_rates_read_in_binary_units() {
        assert_eq!(bytes(0.0), "0 B");
        assert_eq!(bytes(1023.0), "1023 B");
        assert_eq!(bytes(1536.0), "1.5 KiB");
        assert_eq!(bytes(3.0 * 1024.0 * 1024.0), "3.0 MiB");
    }
}
