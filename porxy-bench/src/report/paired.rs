//! What a feature costs a proxy: each kind with it on over its plain self, in the section that
//! measured both, one table per feature. The features: the PROXY protocol (each `-proxy` kind
//! over its plain self, in the pinned and system-call sections), routing by server name without
//! terminating (each `-sni` kind over its plain self relaying the same TLS unrouted, in the SNI
//! section) and the access log (each `-log` kind over its plain self, pinned and system-call
//! sections); and, as a feature of its own, this porxy build over another (porxy over porxy-b).
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
use crate::setup::Difference;

/// Appends an on ÷ off table for each feature whose setups in `section` ran beside their
/// plain selves (same threads, same polling), one row per figure of `rows` measured for a
/// pair; nothing when there is no such pair.
pub(super) fn render(
    out: &mut String,
    results: &Results,
    section: &Section,
    setups: &[Setup],
    rows: &[Figure],
) {
    let pairs = pairs(setups);
    let mut differences: Vec<Difference> = pairs.iter().map(|&(d, _, _)| d).collect();
    differences.sort();
    differences.dedup();
    for difference in differences {
        let pairs: Vec<(Setup, Setup)> = pairs
            .iter()
            .filter(|&&(d, _, _)| d == difference)
            .map(|&(_, off, on)| (off, on))
            .collect();
        render_table(out, results, section, difference, &pairs, rows);
    }
}

/// What the table of a feature says above it, and the name of its ratio's column.
fn title(difference: Difference) -> (&'static str, &'static str) {
    match difference {
        Difference::ProxyProtocol => (
            "The PROXY protocol, on ÷ off: each `-proxy` kind (a v2 header taken from every \
             client and one sent to the backend) over the same proxy without, from the \
             measurements above; above 1 means more with the protocol on",
            "on ÷ off",
        ),
        Difference::SniRouting => (
            "Routing by server name, on ÷ off: each `-sni` kind (the ClientHello read, the \
             connection routed by its server name) over the same proxy relaying the same TLS to \
             the routed port without looking at it, from the measurements above; above 1 means \
             more with routing on",
            "on ÷ off",
        ),
        Difference::AccessLog => (
            "The access log, on ÷ off: each `-log` kind (a line per connection written to a \
             file) over the same proxy without, from the measurements above; above 1 means more \
             with the log on",
            "on ÷ off",
        ),
        Difference::Build => (
            "This porxy over the other build, porxy ÷ porxy-b (`--porxy-b`; the same arguments), \
             from the measurements above; above 1 means more with this build",
            "porxy ÷ porxy-b",
        ),
    }
}

/// One feature's table: its `pairs` of setups, `(off, on)`.
fn render_table(
    out: &mut String,
    results: &Results,
    section: &Section,
    difference: Difference,
    pairs: &[(Setup, Setup)],
    rows: &[Figure],
) {
    let id = section.id;
    let per_round = section.rounds > 1;
    let (what, ratio_name) = title(difference);
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
    for &(off, on) in pairs {
        let _ = write!(
            header,
            " {} | {} | {ratio_name} |",
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

/// Each setup with a feature and its plain self (porxy and porxy-b for the build),
/// `(feature, off, on)`, in the order they ran.
fn pairs(setups: &[Setup]) -> Vec<(Difference, Setup, Setup)> {
    setups
        .iter()
        .filter_map(|&on| {
            let (baseline, difference) = on.kind.baseline()?;
            let off = Setup {
                kind: baseline,
                ..on
            };
            setups.contains(&off).then_some((difference, off, on))
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
        assert_eq!(
            pairs(&setups),
            [(
                Difference::ProxyProtocol,
                s(Kind::Porxy),
                s(Kind::PorxyProxy)
            )]
        );
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
                (Difference::SniRouting, s(Kind::Porxy), s(Kind::PorxySni)),
                (
                    Difference::SniRouting,
                    s(Kind::Haproxy),
                    s(Kind::HaproxySni)
                )
            ]
        );
    }

    #[test]
    fn each_log_kind_pairs_with_its_plain_self_and_porxy_with_the_other_build() {
        let s = |kind| Setup::new(kind, 1);
        let setups = [
            s(Kind::Porxy),
            s(Kind::PorxyB),
            s(Kind::PorxyLog),
            s(Kind::Haproxy),
            s(Kind::HaproxyLog),
            s(Kind::NginxLog), // nginx did not run: no pair
        ];
        assert_eq!(
            pairs(&setups),
            [
                (Difference::Build, s(Kind::PorxyB), s(Kind::Porxy)),
                (Difference::AccessLog, s(Kind::Porxy), s(Kind::PorxyLog)),
                (Difference::AccessLog, s(Kind::Haproxy), s(Kind::HaproxyLog))
            ]
        );
        assert!(pairs(&[s(Kind::Porxy), s(Kind::Nginx)]).is_empty());
    }

    #[test]
    fn the_ratio_needs_both_figures() {
        assert_eq!(over(Some(1.05), Some(1.0)), "1.050");
        assert_eq!(over(Some(1.0), None), "—");
        assert_eq!(over(None, Some(1.0)), "—");
        assert_eq!(over(Some(1.0), Some(0.0)), "—");
    }
}
