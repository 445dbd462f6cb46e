//! What a feature costs a proxy: each kind with it on over its plain self, in the section that
//! measured both. The features: the PROXY protocol (each `-proxy` kind over its plain self, in
//! the pinned and system-call sections) and routing by server name without terminating (each
//! `-sni` kind over its plain self relaying the same TLS unrouted, in the SNI section).
//!
//! porxy-proxy and porxy (haproxy-proxy and haproxy; porxy-sni and porxy, and so on) run one
//! after the other in every round of the same section, against the same backend, so the ratio
//! of their figures is the feature's cost with the machine's drift mostly taken out; the
//! per-round ratios show how far one round's pair can be off, for judging a difference of a few
//! per cent. Aggregated figures are the section's own (see [`super::figures`]); a round's CPU
//! per unit is that round's CPU over its work, which the 10 ms tick of the CPU clock makes
//! coarser than the total.

use std::fmt::Write as _;

use super::cells::{figure_row, number};
use super::figures::{Better, Figure};
use super::Results;
use crate::peers::Setup;
use crate::plan::{Section, SectionId};

/// Appends the on ÷ off table for the `-proxy` or `-sni` setups of `section` that ran beside
/// their plain selves (same threads, same polling), one row per figure of `rows` measured for a
/// pair; nothing when there is no such pair.
pub(super) fn render(
    out: &mut String,
    results: &Results,
    section: &Section,
    setups: &[Setup],
    rows: &[Figure],
) {
    let pairs = pairs(setups);
    if pairs.is_empty() {
        return;
    }
    let id = section.id;
    let per_round = section.rounds > 1;
    let what = if pairs.iter().any(|(_, on)| on.kind.sni()) {
        "Routing by server name, on ÷ off: each `-sni` kind (the ClientHello read, the \
         connection routed by its server name) over the same proxy relaying the same TLS to the \
         routed port without looking at it, from the measurements above; above 1 means more \
         with routing on"
    } else {
        "The PROXY protocol, on ÷ off: each `-proxy` kind (a v2 header taken from every client \
         and one sent to the backend) over the same proxy without, from the measurements above; \
         above 1 means more with the protocol on"
    };
    let _ = writeln!(
        out,
        "\n{what}{}:\n",
        if per_round {
            "; \"by round\" gives each round's pair, run one after the other"
        } else {
            ""
        }
    );
    let mut header = String::from("| figure | unit |");
    let mut align = String::from("|---|---|");
    for &(off, on) in &pairs {
        let _ = write!(
            header,
            " {} | {} | on ÷ off |",
            off.kind.name(),
            on.kind.name()
        );
        align.push_str("---:|---:|---:|");
        if per_round {
            header.push_str(" by round |");
            align.push_str("---|");
        }
    }
    let _ = writeln!(out, "{header}\n{align}");
    // A fact about the run (the share of handshakes resumed) is not a cost.
    for figure in rows.iter().filter(|f| f.better != Better::Neither) {
        let cells: Vec<Option<Vec<String>>> = pairs
            .iter()
            .map(|&(off, on)| pair_cells(results, id, off, on, figure, per_round))
            .collect();
        if cells.iter().all(Option::is_none) {
            continue;
        }
        let width = if per_round { 4 } else { 3 };
        let cells: Vec<String> = cells
            .into_iter()
            .map(|c| c.unwrap_or_else(|| vec!["—".to_owned(); width]).join(" | "))
            .collect();
        figure_row(out, figure, &cells);
    }
}

/// Each `-proxy` or `-sni` setup with its plain self, `(off, on)`, in the order they ran.
fn pairs(setups: &[Setup]) -> Vec<(Setup, Setup)> {
    setups
        .iter()
        .filter(|on| on.kind.proxy_protocol() || on.kind.sni())
        .filter_map(|&on| {
            let off = Setup {
                kind: on.kind.without_proxy_protocol().without_sni(),
                ..on
            };
            setups.contains(&off).then_some((off, on))
        })
        .collect()
}

/// The cells of one pair for one figure (off, on, on ÷ off, and by round), or `None` when
/// neither was measured.
fn pair_cells(
    results: &Results,
    section: SectionId,
    off: Setup,
    on: Setup,
    figure: &Figure,
    per_round: bool,
) -> Option<Vec<String>> {
    let off_value = results.value(section, off, figure);
    let on_value = results.value(section, on, figure);
    if off_value.is_none() && on_value.is_none() {
        return None;
    }
    let shown = |v: Option<f64>| v.map_or_else(|| "—".to_owned(), number);
    let mut cells = vec![shown(off_value), shown(on_value), over(on_value, off_value)];
    if per_round {
        let rounds: Vec<String> = results
            .by_round(section, off, figure)
            .into_iter()
            .zip(results.by_round(section, on, figure))
            .map(|(off, on)| over(on, off))
            .collect();
        cells.push(if rounds.is_empty() {
            "—".into()
        } else {
            rounds.join(" / ")
        });
    }
    Some(cells)
}

/// `on ÷ off` with three decimals (the question is often a few per cent), `—` without both.
fn over(on: Option<f64>, off: Option<f64>) -> String {
    match (on, off) {
        (Some(on), Some(off)) if off > 0.0 => format!("{:.3}", on / off),
        _ => "—".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peers::Kind;

    #[test]
    fn each_proxy_kind_pairs_with_its_plain_self_when_both_ran() {
        let s = |kind| Setup::new(kind, 1);
        let setups = [
            s(Kind::Direct),
            s(Kind::Porxy),
            s(Kind::PorxyProxy),
            s(Kind::HaproxyProxy), // haproxy did not run: no pair
            s(Kind::Nginx),
        ];
        assert_eq!(pairs(&setups), [(s(Kind::Porxy), s(Kind::PorxyProxy))]);
        assert!(pairs(&[s(Kind::Porxy), s(Kind::Haproxy)]).is_empty());
        // Two threads pair with two threads only.
        assert!(pairs(&[s(Kind::Porxy), Setup::new(Kind::PorxyProxy, 2)]).is_empty());
    }

    #[test]
    fn each_sni_kind_pairs_with_its_plain_self_when_both_ran() {
        let s = |kind| Setup::new(kind, 1);
        let setups = [
            s(Kind::Porxy),
            s(Kind::PorxySni),
            s(Kind::Haproxy),
            s(Kind::HaproxySni),
            s(Kind::NginxSni), // nginx did not run: no pair
        ];
        assert_eq!(
            pairs(&setups),
            [
                (s(Kind::Porxy), s(Kind::PorxySni)),
                (s(Kind::Haproxy), s(Kind::HaproxySni))
            ]
        );
    }

    #[test]
    fn the_ratio_needs_both_figures() {
        assert_eq!(over(Some(1.05), Some(1.0)), "1.050");
        assert_eq!(over(Some(1.0), None), "—");
        assert_eq!(over(None, Some(1.0)), "—");
        assert_eq!(over(Some(1.0), Some(0.0)), "—");
    }
}
