//! Rates between two readings: connections, bytes each way and failures per second, per
//! tunnel and per backend. A counter that went down (porxy restarted, a tunnel reopened)
//! counts from zero rather than going negative.

use std::time::Duration;

use super::snapshot::{Backend, Snapshot, Tunnel};

/// A tunnel's figures now, with its rates since the reading before.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TunnelRow {
    pub name: String,
    pub listen: String,
    pub open: u64,
    pub conns_per_s: f64,
    pub up_per_s: f64,
    pub down_per_s: f64,
    pub failures_per_s: f64,
    pub backends: Vec<BackendRow>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct BackendRow {
    pub addr: String,
    pub state: String,
    pub open: u64,
    pub conns_per_s: f64,
    pub failures_per_s: f64,
}

/// The rows for `now`, `elapsed` after `before` (none the first time: rates are zero).
pub fn rows(before: Option<&Snapshot>, now: &Snapshot, elapsed: Duration) -> Vec<TunnelRow> {
    let seconds = elapsed.as_secs_f64().max(1e-3);
    let per_s = |now: u64, then: Option<u64>| match then {
        Some(then) => now.saturating_sub(then) as f64 / seconds,
        None => 0.0,
    };
    now.tunnels
        .iter()
        .map(|t| {
            let old: Option<&Tunnel> =
                before.and_then(|b| b.tunnels.iter().find(|o| o.listen == t.listen));
            TunnelRow {
                name: t.name.clone(),
                listen: t.listen.clone(),
                open: t.open,
                conns_per_s: per_s(t.accepted, old.map(|o| o.accepted)),
                up_per_s: per_s(t.bytes_up, old.map(|o| o.bytes_up)),
                down_per_s: per_s(t.bytes_down, old.map(|o| o.bytes_down)),
                failures_per_s: per_s(t.failures, old.map(|o| o.failures)),
                backends: t
                    .backends
                    .iter()
                    .map(|b| {
                        let old: Option<&Backend> =
                            old.and_then(|o| o.backends.iter().find(|ob| ob.addr == b.addr));
                        BackendRow {
                            addr: b.addr.clone(),
                            state: b.state.clone(),
                            open: b.open,
                            conns_per_s: per_s(b.total, old.map(|o| o.total)),
                            failures_per_s: per_s(b.failures, old.map(|o| o.failures)),
                        }
                    })
                    .collect(),
            }
        })
        .collect()
}

/// What the rows are sorted by, most first (the name: in order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortKey {
    #[default]
    Name,
    Open,
    ConnsPerSecond,
    BytesPerSecond,
    FailuresPerSecond,
}

impl SortKey {
    /// The keys in the order `s` cycles through them.
    const ALL: [SortKey; 5] = [
        SortKey::Name,
        SortKey::Open,
        SortKey::ConnsPerSecond,
        SortKey::BytesPerSecond,
        SortKey::FailuresPerSecond,
    ];

    pub fn next(self) -> SortKey {
        let i = SortKey::ALL.iter().position(|k| *k == self).unwrap_or(0);
        SortKey::ALL[(i + 1) % SortKey::ALL.len()]
    }

    pub fn label(self) -> &'static str {
        match self {
            SortKey::Name => "name",
            SortKey::Open => "open",
            SortKey::ConnsPerSecond => "conn/s",
            SortKey::BytesPerSecond => "bytes/s",
            SortKey::FailuresPerSecond => "fail/s",
        }
    }

    /// From its label or a short word for it (`--sort`).
    pub fn parse(text: &str) -> Result<SortKey, String> {
        match text {
            "name" => Ok(SortKey::Name),
            "open" => Ok(SortKey::Open),
            "conn/s" | "conns" => Ok(SortKey::ConnsPerSecond),
            "bytes/s" | "bytes" => Ok(SortKey::BytesPerSecond),
            "fail/s" | "failures" => Ok(SortKey::FailuresPerSecond),
            other => Err(format!(
                "unknown sort key {other:?}: expected name, open, conns, bytes or failures"
            )),
        }
    }

    /// Sorts `rows` by this key.
    pub fn sort(self, rows: &mut [TunnelRow]) {
        let desc = |a: f64, b: f64| b.total_cmp(&a);
        match self {
            SortKey::Name => rows.sort_by(|a, b| a.name.cmp(&b.name)),
            SortKey::Open => rows.sort_by_key(|r| std::cmp::Reverse(r.open)),
            SortKey::ConnsPerSecond => rows.sort_by(|a, b| desc(a.conns_per_s, b.conns_per_s)),
            SortKey::BytesPerSecond => {
                rows.sort_by(|a, b| desc(a.up_per_s + a.down_per_s, b.up_per_s + b.down_per_s))
            }
            SortKey::FailuresPerSecond => {
                rows.sort_by(|a, b| desc(a.failures_per_s, b.failures_per_s))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tunnel(listen: &str, accepted: u64, bytes: u64) -> Tunnel {
        Tunnel {
            name: listen.into(),
            listen: listen.into(),
            accepted,
            bytes_up: bytes,
            ..Tunnel::default()
        }
    }

    #[test]
    fn rates_are_deltas_per_second_and_never_negative() {
        let before = Snapshot {
            tunnels: vec![tunnel("a", 10, 1000), tunnel("b", 50, 0)],
            reactors: vec![],
        };
        let now = Snapshot {
            tunnels: vec![tunnel("a", 30, 5000), tunnel("b", 5, 0), tunnel("c", 7, 0)],
            reactors: vec![],
        };
        let rows = rows(Some(&before), &now, Duration::from_secs(2));
        assert_eq!((rows[0].conns_per_s, rows[0].up_per_s), (10.0, 2000.0));
        assert_eq!(rows[1].conns_per_s, 0.0, "a counter that went down");
        assert_eq!(rows[2].conns_per_s, 0.0, "a tunnel seen for the first time");
    }

    #[test]
    fn sort_keys_cycle_and_sort_most_first() {
        assert_eq!(SortKey::FailuresPerSecond.next(), SortKey::Name);
        let mut rows = vec![
            TunnelRow {
                name: "a".into(),
                conns_per_s: 1.0,
                ..TunnelRow::default()
            },
            TunnelRow {
                name: "b".into(),
                conns_per_s: 9.0,
                ..TunnelRow::default()
            },
        ];
        SortKey::ConnsPerSecond.sort(&mut rows);
        assert_eq!(rows[0].name, "b");
        SortKey::Name.sort(&mut rows);
        assert_eq!(rows[0].name, "a");
        assert_eq!(SortKey::parse("conns"), Ok(SortKey::ConnsPerSecond));
    }
}
