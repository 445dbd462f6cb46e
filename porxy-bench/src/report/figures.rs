//! The figures of the report: the rows of each section's table, and how each is computed from
//! the rounds of its phase (see the [`super`] docs for why each aggregate).

use super::{Memory, Results};
use crate::histogram::Histogram;
use crate::peers::Setup;
use crate::plan::{Phase, SectionId};
use crate::syscalls::Counts;

/// Which way is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Better {
    Higher,
    Lower,
    /// A fact about the run, not a goal (how many handshakes resumed): shown without a ratio.
    Neither,
}

/// How a figure is computed from the rounds of its phase.
#[derive(Debug, Clone, Copy)]
pub(super) enum Stat {
    /// Median of bits per second, in Gbit/s.
    Gbps,
    /// Proxy CPU seconds per GB moved.
    CpuPerGb,
    /// Median of operations per second.
    Rate,
    /// A latency quantile of the merged histograms, in µs.
    Quantile(f64),
    /// Proxy CPU µs per operation.
    CpuPerOpUs,
    /// Median RSS growth per idle connection, KiB.
    MemPerConn,
    /// The proxy's system calls per `per` units of work (bytes, requests or connections).
    Syscalls { per: f64 },
    /// The share of the handshakes counted that resumed a session, in %.
    ResumedShare,
}

/// One row of a table.
pub(super) struct Figure {
    pub(super) phase: Phase,
    pub(super) label: &'static str,
    pub(super) unit: &'static str,
    pub(super) better: Better,
    pub(super) stat: Stat,
}

/// The rows of a section's table.
pub(super) fn figures(section: SectionId) -> Vec<Figure> {
    let fig = |phase, label, unit, better, stat| Figure {
        phase,
        label,
        unit,
        better,
        stat,
    };
    use Better::{Higher, Lower};
    match section {
        SectionId::Tls(_) => return tls_figures(false),
        SectionId::Sni => return tls_figures(true),
        _ => {}
    }
    if section == SectionId::Syscalls {
        let calls =
            |phase, label, unit, per| fig(phase, label, unit, Lower, Stat::Syscalls { per });
        return vec![
            calls(Phase::BulkUp, "bulk up", "calls/MB ↓", 1e6),
            calls(Phase::BulkDown, "bulk down", "calls/MB ↓", 1e6),
            calls(Phase::Rr1, "req/resp 64 B, 1 conn", "calls/req ↓", 1.0),
            calls(Phase::Rr64, "req/resp 64 B, 64 conns", "calls/req ↓", 1.0),
            calls(Phase::Short, "short conns", "calls/conn ↓", 1.0),
        ];
    }
    let mut rows = vec![
        fig(
            Phase::BulkUp,
            "bulk up (client→server), 1 conn",
            "Gbit/s ↑",
            Higher,
            Stat::Gbps,
        ),
        fig(
            Phase::BulkUp,
            "bulk up: proxy CPU",
            "s/GB ↓",
            Lower,
            Stat::CpuPerGb,
        ),
        fig(
            Phase::BulkDown,
            "bulk down (server→client), 1 conn",
            "Gbit/s ↑",
            Higher,
            Stat::Gbps,
        ),
        fig(
            Phase::BulkDown,
            "bulk down: proxy CPU",
            "s/GB ↓",
            Lower,
            Stat::CpuPerGb,
        ),
    ];
    let rr = |rows: &mut Vec<Figure>, phase, label| {
        rows.push(fig(phase, label, "req/s ↑", Higher, Stat::Rate));
        rows.push(fig(
            phase,
            "  round trip p50",
            "µs ↓",
            Lower,
            Stat::Quantile(0.50),
        ));
        rows.push(fig(
            phase,
            "  round trip p99",
            "µs ↓",
            Lower,
            Stat::Quantile(0.99),
        ));
        rows.push(fig(
            phase,
            "  round trip p99.9",
            "µs ↓",
            Lower,
            Stat::Quantile(0.999),
        ));
        rows.push(fig(
            phase,
            "  proxy CPU",
            "µs/req ↓",
            Lower,
            Stat::CpuPerOpUs,
        ));
    };
    if section == SectionId::Busy {
        // Only round trips: what busy polling is for.
        let mut rows = Vec::new();
        rr(&mut rows, Phase::Rr1, "req/resp 64 B, 1 conn");
        rr(&mut rows, Phase::Rr64, "req/resp 64 B, 64 conns");
        return rows;
    }
    if section == SectionId::Pinned {
        rr(&mut rows, Phase::Rr1, "req/resp 64 B, 1 conn");
    }
    rr(&mut rows, Phase::Rr64, "req/resp 64 B, 64 conns");
    rows.push(fig(
        Phase::Short,
        "short conns (connect, 64 B each way, close; 32 in flight)",
        "conn/s ↑",
        Higher,
        Stat::Rate,
    ));
    rows.push(fig(
        Phase::Short,
        "  proxy CPU",
        "µs/conn ↓",
        Lower,
        Stat::CpuPerOpUs,
    ));
    if section == SectionId::Pinned {
        rows.push(fig(
            Phase::Idle,
            "idle conns: proxy RSS growth",
            "KiB/conn ↓",
            Lower,
            Stat::MemPerConn,
        ));
    }
    rows
}

/// The rows of a TLS section: handshakes first (what TLS termination costs most), then bulk
/// through the TLS listener, then memory per idle TLS connection. The SNI section (`sni`) has
/// the same rows: there a handshake is a new connection the proxy routes, and the bulk passes
/// through it encrypted, neither decrypted nor encrypted by it.
fn tls_figures(sni: bool) -> Vec<Figure> {
    use Better::{Higher, Lower, Neither};
    let fig = |phase, label, unit, better, stat| Figure {
        phase,
        label,
        unit,
        better,
        stat,
    };
    vec![
        fig(
            Phase::Handshake,
            if sni {
                "full handshakes through the proxy (connect, handshake, 64 B each way, close; \
                 32 in flight)"
            } else {
                "full handshakes (connect, handshake, 64 B each way, close; 32 in flight)"
            },
            "handshakes/s ↑",
            Higher,
            Stat::Rate,
        ),
        fig(
            Phase::Handshake,
            "  proxy CPU",
            "µs/handshake ↓",
            Lower,
            Stat::CpuPerOpUs,
        ),
        fig(
            Phase::Resumed,
            "resumed handshakes (the same, the client offering its tickets)",
            "handshakes/s ↑",
            Higher,
            Stat::Rate,
        ),
        fig(
            Phase::Resumed,
            "  proxy CPU",
            "µs/handshake ↓",
            Lower,
            Stat::CpuPerOpUs,
        ),
        fig(
            Phase::Resumed,
            "  resumed",
            "% of handshakes",
            Neither,
            Stat::ResumedShare,
        ),
        fig(
            Phase::BulkUp,
            "bulk up (client→server) through TLS, 1 conn",
            "Gbit/s ↑",
            Higher,
            Stat::Gbps,
        ),
        fig(
            Phase::BulkUp,
            if sni {
                "  proxy CPU"
            } else {
                "  proxy CPU (decrypting)"
            },
            "s/GB ↓",
            Lower,
            Stat::CpuPerGb,
        ),
        fig(
            Phase::BulkDown,
            "bulk down (server→client) through TLS, 1 conn",
            "Gbit/s ↑",
            Higher,
            Stat::Gbps,
        ),
        fig(
            Phase::BulkDown,
            if sni {
                "  proxy CPU"
            } else {
                "  proxy CPU (encrypting)"
            },
            "s/GB ↓",
            Lower,
            Stat::CpuPerGb,
        ),
        fig(
            Phase::Idle,
            "idle TLS conns: proxy RSS growth",
            "KiB/conn ↓",
            Lower,
            Stat::MemPerConn,
        ),
    ]
}

impl Results {
    /// The value of `figure` for `setup`, when it was measured.
    pub(super) fn value(&self, section: SectionId, setup: Setup, figure: &Figure) -> Option<f64> {
        if let Stat::MemPerConn = figure.stat {
            let rounds = self.memory.get(&(section, setup))?;
            return median(rounds.iter().map(Memory::per_conn_kib).collect());
        }
        let rounds = self.timed.get(&(section, setup, figure.phase))?;
        let work: u64 = rounds.iter().map(|m| m.work).sum();
        let cpu: Option<f64> = rounds.iter().map(|m| m.cpu_secs).sum();
        match figure.stat {
            Stat::Gbps => median(
                rounds
                    .iter()
                    .map(|m| m.work as f64 * 8.0 / m.secs / 1e9)
                    .collect(),
            ),
            Stat::Rate => median(rounds.iter().map(|m| m.work as f64 / m.secs).collect()),
            Stat::CpuPerGb => cpu.filter(|_| work > 0).map(|c| c / (work as f64 / 1e9)),
            Stat::CpuPerOpUs => cpu.filter(|_| work > 0).map(|c| c * 1e6 / work as f64),
            Stat::Quantile(q) => {
                let mut merged = Histogram::default();
                for h in rounds.iter().filter_map(|m| m.latency.as_ref()) {
                    merged.merge(h);
                }
                merged.quantile(q).map(|ns| ns as f64 / 1e3)
            }
            Stat::ResumedShare => {
                let resumed: Option<u64> = rounds.iter().map(|m| m.resumed).sum();
                resumed
                    .filter(|_| work > 0)
                    .map(|r| r as f64 * 100.0 / work as f64)
            }
            Stat::Syscalls { per } => {
                let calls: Option<u64> = rounds
                    .iter()
                    .map(|m| m.syscalls.as_ref().map(|c| c.total))
                    .sum();
                calls
                    .filter(|_| work > 0)
                    .map(|c| c as f64 * per / work as f64)
            }
            Stat::MemPerConn => None,
        }
    }

    /// The system calls of `setup` in `phase` by name, per `per` units of work, most frequent
    /// first, leaving out those under 0.01 per unit.
    pub(super) fn calls_by_name(
        &self,
        section: SectionId,
        setup: Setup,
        phase: Phase,
        per: f64,
    ) -> Vec<(String, f64)> {
        let Some(rounds) = self.timed.get(&(section, setup, phase)) else {
            return Vec::new();
        };
        let work: u64 = rounds.iter().map(|m| m.work).sum();
        let mut counts = Counts::default();
        for m in rounds {
            if let Some(c) = &m.syscalls {
                counts.add(c);
            }
        }
        if work == 0 {
            return Vec::new();
        }
        counts
            .by_call
            .into_iter()
            .map(|(name, n)| (name, n as f64 * per / work as f64))
            .filter(|&(_, n)| n >= 0.01)
            .collect()
    }

    /// A figure's value in each round of `setup`, in the order run (`None` where a round has
    /// none); nothing for latency quantiles, which are read from the rounds' histograms merged.
    pub(super) fn by_round(
        &self,
        section: SectionId,
        setup: Setup,
        figure: &Figure,
    ) -> Vec<Option<f64>> {
        if let Stat::MemPerConn = figure.stat {
            return self
                .memory
                .get(&(section, setup))
                .map(|rounds| rounds.iter().map(|m| Some(m.per_conn_kib())).collect())
                .unwrap_or_default();
        }
        let Some(rounds) = self.timed.get(&(section, setup, figure.phase)) else {
            return Vec::new();
        };
        if let Stat::Quantile(_) = figure.stat {
            return Vec::new();
        }
        rounds
            .iter()
            .map(|m| {
                let work = m.work as f64;
                let cpu = m.cpu_secs.filter(|_| m.work > 0);
                match figure.stat {
                    Stat::Gbps => Some(work * 8.0 / m.secs / 1e9),
                    Stat::Rate => Some(work / m.secs),
                    Stat::CpuPerGb => cpu.map(|c| c / (work / 1e9)),
                    Stat::CpuPerOpUs => cpu.map(|c| c * 1e6 / work),
                    Stat::Syscalls { per } => m
                        .syscalls
                        .as_ref()
                        .filter(|_| m.work > 0)
                        .map(|c| c.total as f64 * per / work),
                    Stat::ResumedShare => m
                        .resumed
                        .filter(|_| m.work > 0)
                        .map(|r| r as f64 * 100.0 / work),
                    Stat::Quantile(_) | Stat::MemPerConn => None,
                }
            })
            .collect()
    }
}

/// The median of some values (the mean of the middle two for an even count).
fn median(mut values: Vec<f64>) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    Some(if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(Vec::new()), None);
    }
}
