//! Under a section with `-log` kinds: the lines each one's access log gained in each phase
//! beside the connections the load opened through it in that phase (all rounds), so that a
//! log measured as cheap is seen to have written a line for every connection. The connections
//! that saw the proxy listen and checked it, before the first phase of each round, are a column
//! of their own.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::Results;
use crate::access_log::Lines;
use crate::peers::Setup;
use crate::plan::{Phase, SectionId};

/// Appends the table, when a `-log` setup of `section` counted lines; nothing otherwise.
pub(super) fn render(out: &mut String, results: &Results, section: SectionId, setups: &[Setup]) {
    let counted: Vec<(Setup, &Vec<Lines>)> = setups
        .iter()
        .filter_map(|&setup| Some((setup, results.log_lines.get(&(section, setup))?)))
        .collect();
    if counted.is_empty() {
        return;
    }
    let mut columns: Vec<Option<Phase>> = counted
        .iter()
        .flat_map(|(_, lines)| lines.iter().map(|l| l.phase))
        .collect();
    columns.sort();
    columns.dedup();
    let _ = writeln!(
        out,
        "\nAccess log lines written ÷ connections opened through the proxy, all rounds (each \
         connection must have its line; \"check\" is the connections that saw the proxy listen \
         (HAProxy's and nginx's) and checked it, before each round's first phase):\n"
    );
    let names: Vec<String> = columns
        .iter()
        .map(|c| c.map_or_else(|| "check".to_owned(), |p| format!("{p:?}")))
        .collect();
    let _ = writeln!(out, "| setup | {} | all |", names.join(" | "));
    let _ = writeln!(out, "|---|{}---|", "---:|".repeat(columns.len()));
    for (setup, lines) in counted {
        let sums = sums(lines);
        let cells: Vec<String> = columns
            .iter()
            .map(|c| sums.get(c).map_or_else(|| "—".to_owned(), |&s| cell(s)))
            .collect();
        let all = sums.values().fold((0, 0), |(w, o), &(written, opened)| {
            (w + written, o + opened)
        });
        let _ = writeln!(
            out,
            "| {} | {} | {} |",
            setup.kind.name(),
            cells.join(" | "),
            cell(all)
        );
    }
}

/// `(written, opened)` by phase, over the rounds.
fn sums(lines: &[Lines]) -> BTreeMap<Option<Phase>, (u64, u64)> {
    let mut sums = BTreeMap::new();
    for l in lines {
        let sum: &mut (u64, u64) = sums.entry(l.phase).or_default();
        sum.0 += l.written;
        sum.1 += l.opened;
    }
    sums
}

/// `written / opened`, marked when they differ.
fn cell((written, opened): (u64, u64)) -> String {
    if written == opened {
        format!("{written} / {opened}")
    } else {
        format!("**{written} / {opened}**")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_summed_by_phase_and_a_shortfall_stands_out() {
        let l = |phase, opened, written| Lines {
            phase,
            opened,
            written,
        };
        let rounds = [
            l(None, 2, 2),
            l(Some(Phase::Short), 100, 100),
            l(None, 2, 2),
            l(Some(Phase::Short), 50, 49),
        ];
        let sums = sums(&rounds);
        assert_eq!(sums[&None], (4, 4));
        assert_eq!(sums[&Some(Phase::Short)], (149, 150));
        assert_eq!(cell((4, 4)), "4 / 4");
        assert_eq!(cell((149, 150)), "**149 / 150**");
    }
}
