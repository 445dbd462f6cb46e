//! The report's markdown: the header, a table per section with each figure's ratio to the
//! better peer, the per-round detail, and the notes. The figures themselves are in
//! [`super::figures`].

use std::fmt::Write as _;
use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use super::cells::{figure_row, number, ratio};
use super::figures::{figures, Better, Figure, Stat};
use super::Results;
use crate::peers::Setup;
use crate::plan::{self, Section, SectionId};

impl Results {
    /// The setups of a section that have results, in the order they ran.
    fn setups(&self, section: SectionId) -> Vec<Setup> {
        let mut setups: Vec<Setup> = Vec::new();
        for plan_section in plan::sections(&self.settings) {
            if plan_section.id == section {
                setups = plan_section.setups;
            }
        }
        setups
    }
}

/// Renders the whole report as markdown.
pub fn render(results: &Results) -> String {
    let mut out = String::new();
    let s = &results.settings;
    let _ = writeln!(out, "# porxy benchmark\n");
    let _ = writeln!(
        out,
        "- mode: **{}**: {:.2} s windows after {:.2} s of warm-up, {} round(s), {} idle connections; took {:.0} s",
        s.mode.name(),
        s.window.as_secs_f64(),
        s.warmup.as_secs_f64(),
        s.rounds,
        s.idle,
        results.took.as_secs_f64()
    );
    let _ = writeln!(
        out,
        "- machine: {} CPUs, Linux {}, {}; load average (1/5/15 min) at start {}, at end {}",
        results.env.cpus,
        results.env.kernel,
        results.env.nofile,
        results.env.load_at_start,
        results.load_at_end
    );
    for version in &results.env.versions {
        let _ = writeln!(out, "- {version}");
    }
    let _ = writeln!(
        out,
        "- each cell: the figure (ratio to the better of haproxy and nginx with the same thread count, \
         haproxy-proxy's for porxy-proxy, haproxy-tls's and nginx-tls's for porxy-tls, \
         haproxy-sni's and nginx-sni's for porxy-sni, haproxy-log's and nginx-log's for \
         porxy-log); \
         ↑ higher is better, ↓ lower is better; CPU and memory are the proxy process's own \
         (with its children), from /proc"
    );
    if let Some(quiet) = &results.quiet {
        let _ = writeln!(out, "- {quiet}");
    }
    for note in &results.notes {
        let _ = writeln!(out, "- note: {note}");
    }
    for section in plan::sections(s) {
        render_section(&mut out, results, &section);
    }
    render_notes(&mut out, results);
    out
}

fn render_section(out: &mut String, results: &Results, plan: &Section) {
    let section = plan.id;
    let setups = results.setups(section);
    if setups.is_empty() {
        return;
    }
    let _ = writeln!(out, "\n## {}\n", plan.title());
    let header: Vec<String> = setups.iter().map(|s| column_name(section, *s)).collect();
    let _ = writeln!(out, "| figure | unit | {} |", header.join(" | "));
    let _ = writeln!(out, "|---|---|{}", "---:|".repeat(setups.len()));
    // Only the figures measured: `--phases` may leave some out, and a row of dashes says nothing.
    let rows: Vec<Figure> = figures(section)
        .into_iter()
        .filter(|f| {
            setups
                .iter()
                .any(|&s| results.value(section, s, f).is_some())
        })
        .collect();
    for figure in &rows {
        let cells: Vec<String> = setups
            .iter()
            .map(|&setup| cell(results, section, setup, &setups, figure))
            .collect();
        figure_row(out, figure, &cells);
    }
    if section == SectionId::Syscalls {
        render_calls_by_name(out, results, &setups, &header, &rows);
    }
    render_negotiated(out, results, section, &setups);
    super::paired::render(out, results, plan, &setups, &rows);
    super::log_lines::render(out, results, section, &setups);
    if plan.rounds > 1 {
        let _ = writeln!(out, "\nPer round (in the order run):\n");
        let _ = writeln!(out, "| figure | {} |", header.join(" | "));
        let _ = writeln!(out, "|---|{}", "---:|".repeat(setups.len()));
        for figure in rows
            .iter()
            .filter(|f| matches!(f.stat, Stat::Gbps | Stat::Rate))
        {
            let cells: Vec<String> = setups
                .iter()
                .map(|&setup| {
                    let values = results.by_round(section, setup, figure);
                    let shown: Vec<String> = values
                        .into_iter()
                        .map(|v| v.map_or_else(|| "—".to_owned(), number))
                        .collect();
                    if shown.is_empty() {
                        "—".into()
                    } else {
                        shown.join(" / ")
                    }
                })
                .collect();
            let _ = writeln!(
                out,
                "| {} {} | {} |",
                figure.label.trim(),
                figure.unit.trim_end_matches([' ', '↑', '↓']),
                cells.join(" | ")
            );
        }
    }
}

/// The system-call section's detail: each proxy's calls by name, per unit of work.
fn render_calls_by_name(
    out: &mut String,
    results: &Results,
    setups: &[Setup],
    header: &[String],
    rows: &[Figure],
) {
    let _ = writeln!(
        out,
        "\nBy call, per unit of work (calls under 0.01 per unit left out):\n"
    );
    let _ = writeln!(out, "| figure | {} |", header.join(" | "));
    let _ = writeln!(out, "|---|{}", "---|".repeat(setups.len()));
    for figure in rows {
        let Stat::Syscalls { per } = figure.stat else {
            continue;
        };
        let cells: Vec<String> = setups
            .iter()
            .map(|&setup| {
                let calls = results.calls_by_name(SectionId::Syscalls, setup, figure.phase, per);
                if calls.is_empty() {
                    return "—".into();
                }
                calls
                    .iter()
                    .map(|(name, n)| format!("{name} {}", number(*n)))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .collect();
        let _ = writeln!(
            out,
            "| {} ({}) | {} |",
            figure.label,
            figure.unit.trim_end_matches([' ', '↑', '↓']),
            cells.join(" | ")
        );
    }
}

fn column_name(section: SectionId, setup: Setup) -> String {
    match (section, setup.busy_polling()) {
        // Say how it busy-polls: the same kinds run without it in the other sections.
        (_, Some(how)) => format!("{} {how}", setup.kind.name()),
        (
            SectionId::Pinned
            | SectionId::Busy
            | SectionId::Syscalls
            | SectionId::Tls(_)
            | SectionId::Sni,
            None,
        ) => setup.kind.name().to_owned(),
        (SectionId::Scaling, None) => setup.to_string(),
    }
}

/// `value (ratio×)`, `value` when there is no peer to compare with, `—` when not measured.
fn cell(results: &Results, section: SectionId, setup: Setup, all: &[Setup], f: &Figure) -> String {
    let Some(value) = results.value(section, setup, f) else {
        return "—".into();
    };
    // A -proxy kind is compared with the peers doing the same work: haproxy-proxy; a -tls
    // kind with haproxy-tls and nginx-tls; a -sni kind with haproxy-sni and nginx-sni; a -log
    // kind with haproxy-log and nginx-log.
    let peers: Vec<f64> = all
        .iter()
        .filter(|p| p.kind.is_peer() && p.threads == setup.threads)
        .filter(|p| p.kind.proxy_protocol() == setup.kind.proxy_protocol())
        .filter(|p| p.kind.tls() == setup.kind.tls())
        .filter(|p| p.kind.sni() == setup.kind.sni())
        .filter(|p| p.kind.access_log() == setup.kind.access_log())
        .filter_map(|&p| results.value(section, p, f))
        .collect();
    let best = match f.better {
        Better::Higher => peers.iter().copied().reduce(f64::max),
        Better::Lower => peers.iter().copied().reduce(f64::min),
        Better::Neither => None,
    };
    match best {
        Some(best) if best > 0.0 => format!("{} ({}×)", number(value), ratio(value / best)),
        _ => number(value),
    }
}

/// Under a TLS section's table: what each proxy negotiated with the client, and whether it
/// resumed a session, as its check before the first round found.
fn render_negotiated(out: &mut String, results: &Results, section: SectionId, setups: &[Setup]) {
    let lines: Vec<String> = setups
        .iter()
        .filter_map(|&setup| {
            let negotiated = results.negotiated.get(&(section, setup))?;
            Some(format!("- {}: {negotiated}", setup.kind.name()))
        })
        .collect();
    if !lines.is_empty() {
        let _ = writeln!(
            out,
            "\nNegotiated (each proxy's check before its first round):\n"
        );
        let _ = writeln!(out, "{}", lines.join("\n"));
    }
}

/// Memory details, errors, how the proxies stopped and what they logged.
fn render_notes(out: &mut String, results: &Results) {
    let mut lines = Vec::new();
    for ((section, setup, phase), rounds) in &results.timed {
        let errors: u64 = rounds.iter().map(|m| m.errors).sum();
        if errors > 0 {
            lines.push(format!(
                "{section:?} {setup} {phase:?}: {errors} failed operations in the windows"
            ));
        }
    }
    if !results.memory.is_empty() {
        let _ = writeln!(out, "\n## Idle connections in detail\n");
        let _ = writeln!(
            out,
            "| setup | round | conns | opened in | RSS before | RSS with them open | RSS after closing | CPU while idle |"
        );
        let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|");
        for ((_, setup), rounds) in &results.memory {
            for (i, m) in rounds.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "| {setup} | {} | {} | {:.2} s | {:.1} MiB | {:.1} MiB | {:.1} MiB | {:.1} % |",
                    i + 1,
                    m.conns,
                    m.open_secs,
                    m.before_kib as f64 / 1024.0,
                    m.open_kib as f64 / 1024.0,
                    m.closed_kib as f64 / 1024.0,
                    m.idle_cpu_share * 100.0
                );
            }
        }
    }
    for stop in &results.stops {
        let exit = &stop.exit;
        // Ending by the SIGTERM the harness sent is as normal as exiting 0 (HAProxy does that).
        let normal = exit.status.success() || exit.status.signal() == Some(libc::SIGTERM);
        if exit.killed || !normal || exit.after > Duration::from_secs(1) {
            lines.push(format!(
                "{} (round {}): stopped with {} {:.2} s after SIGTERM{}",
                stop.setup,
                stop.round,
                exit.status,
                exit.after.as_secs_f64(),
                if exit.killed {
                    ", had to be killed"
                } else {
                    ""
                }
            ));
        }
        if !stop.log.is_empty() {
            let shown: Vec<&str> = stop.log.iter().take(3).map(String::as_str).collect();
            lines.push(format!(
                "{} (round {}) logged {} line(s), first: {}",
                stop.setup,
                stop.round,
                stop.log.len(),
                shown.join(" ⏎ ")
            ));
        }
    }
    if !lines.is_empty() {
        let _ = writeln!(out, "\n## Notes\n");
        for line in lines {
            let _ = writeln!(out, "- {line}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Phase;

    #[test]
    fn busy_columns_say_how_they_busy_poll() {
        use crate::peers::Kind;
        let names: Vec<String> = [
            Setup::new(Kind::Direct, 1),
            Setup::busy(Kind::Porxy),
            Setup::busy(Kind::Haproxy),
        ]
        .into_iter()
        .map(|setup| column_name(SectionId::Busy, setup))
        .collect();
        assert_eq!(
            names,
            ["direct", "porxy --busy-poll 1ms", "haproxy busy-polling"]
        );
        assert_eq!(
            column_name(SectionId::Pinned, Setup::new(Kind::Haproxy, 1)),
            "haproxy"
        );
        let rows = figures(SectionId::Busy);
        assert!(rows
            .iter()
            .all(|f| matches!(f.phase, Phase::Rr1 | Phase::Rr64)));
        assert_eq!(rows.len(), 10, "5 rows for each of Rr1 and Rr64");
    }
}
