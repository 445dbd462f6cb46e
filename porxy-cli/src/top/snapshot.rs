//! What `porxy top` shows of a running porxy at one moment, read from the admin API's
//! `GET /status` (JSON) or from the control socket's `STATUS FULL` lines: per tunnel and per
//! backend the counters that make its rates, and each reactor's load.

use serde_json::Value;

/// One reading.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub tunnels: Vec<Tunnel>,
    /// Connections open per reactor, by index.
    pub reactors: Vec<u64>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tunnel {
    /// Its name (the admin API knows it), else its listen address.
    pub name: String,
    pub listen: String,
    pub open: u64,
    pub accepted: u64,
    pub bytes_up: u64,
    pub bytes_down: u64,
    /// Connect failures, and connections that failed otherwise (no backend, queue timeout).
    pub failures: u64,
    pub backends: Vec<Backend>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Backend {
    pub addr: String,
    pub state: String,
    pub open: u64,
    pub total: u64,
    pub failures: u64,
}

impl Snapshot {
    /// From `GET /status`'s body; `None` when it is not the shape porxy answers with.
    pub fn from_json(status: &Value) -> Option<Snapshot> {
        let num = |v: &Value, key: &str| v.get(key).and_then(Value::as_u64).unwrap_or(0);
        let text = |v: &Value, key: &str| {
            v.get(key)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let tunnels = status
            .get("tunnels")?
            .as_array()?
            .iter()
            .map(|t| Tunnel {
                name: text(t, "name"),
                listen: text(t, "listen"),
                open: num(t, "open"),
                accepted: num(t, "accepted"),
                bytes_up: num(t, "bytes_up"),
                bytes_down: num(t, "bytes_down"),
                failures: num(t, "connect_failures"),
                backends: t
                    .get("backends")
                    .and_then(Value::as_array)
                    .map(|list| {
                        list.iter()
                            .map(|b| Backend {
                                addr: text(b, "address"),
                                state: text(b, "state"),
                                open: num(b, "open"),
                                total: num(b, "total"),
                                failures: num(b, "failures"),
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
            })
            .collect();
        let reactors = status
            .get("reactors")?
            .as_array()?
            .iter()
            .map(|r| num(r, "open"))
            .collect();
        Some(Snapshot { tunnels, reactors })
    }

    /// From the body lines of `STATUS FULL` (after its `OK` line, before `END`).
    pub fn from_status_lines<'a>(lines: impl IntoIterator<Item = &'a str>) -> Snapshot {
        let mut snapshot = Snapshot::default();
        for line in lines {
            let mut words = line.split_whitespace();
            let (Some(kind), Some(addr)) = (words.next(), words.next()) else {
                continue;
            };
            let fields: Vec<(&str, &str)> = words.filter_map(|w| w.split_once('=')).collect();
            let num = |key: &str| {
                fields
                    .iter()
                    .find(|(k, _)| *k == key)
                    .and_then(|(_, v)| v.parse().ok())
                    .unwrap_or(0u64)
            };
            match kind {
                "tunnel" => snapshot.tunnels.push(Tunnel {
                    name: addr.to_string(),
                    listen: addr.to_string(),
                    open: num("open"),
                    accepted: num("accepted"),
                    bytes_up: num("bytes_up"),
                    bytes_down: num("bytes_down"),
                    failures: num("connect_failures"),
                    backends: Vec::new(),
                }),
                "backend" => {
                    let state = fields
                        .iter()
                        .find(|(k, _)| *k == "state")
                        .map_or("", |(_, v)| v);
                    if let Some(tunnel) = snapshot.tunnels.last_mut() {
                        tunnel.backends.push(Backend {
                            addr: addr.to_string(),
                            state: state.to_string(),
                            open: num("open"),
                            total: num("total"),
                            failures: num("failures"),
                        });
                    }
                }
                "reactor" => snapshot.reactors.push(num("open")),
                _ => {}
            }
        }
        snapshot
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_admin_status_gives_the_same_reading() {
        let status = serde_json::json!({
            "tunnels": [{
                "name": "web", "listen": "127.0.0.1:8000", "open": 2, "accepted": 9,
                "bytes_up": 100, "bytes_down": 2000, "connect_failures": 1,
                "backends": [{"address": "127.0.0.1:7000", "state": "up", "open": 2,
                              "total": 9, "failures": 1}],
            }],
            "reactors": [{"index": 0, "open": 2}],
        });
        let snapshot = Snapshot::from_json(&status).unwrap();
        assert_eq!(snapshot.reactors, vec![2]);
        let tunnel = &snapshot.tunnels[0];
        assert_eq!((tunnel.name.as_str(), tunnel.bytes_down), ("web", 2000));
        assert_eq!(tunnel.backends[0].addr, "127.0.0.1:7000");
        assert_eq!(
            Snapshot::from_json(&serde_json::json!({"error": "x"})),
            None
        );
    }

    #[test]
    fn status_full_lines_give_tunnels_backends_and_reactors() {
        let lines = [
            "tunnel 127.0.0.1:8000 remotes=127.0.0.1:7000 strategy=round_robin open=1 accepted=4 imported=0 bytes_up=12 bytes_down=30 connect_failures=2 closes=completed:3",
            "  backend 127.0.0.1:7000 state=draining weight=1 open=1 total=4 failures=2",
            "reactor 0 open=1 adopted=3",
            "reactor 1 open=0 adopted=1",
            "generation 1 open=1 current",
        ];
        let snapshot = Snapshot::from_status_lines(lines);
        assert_eq!(snapshot.reactors, vec![1, 0]);
        let tunnel = &snapshot.tunnels[0];
        assert_eq!(
            (
                tunnel.open,
                tunnel.accepted,
                tunnel.bytes_up,
                tunnel.bytes_down,
                tunnel.failures
            ),
            (1, 4, 12, 30, 2)
        );
        assert_eq!(
            tunnel.backends,
            vec![Backend {
                addr: "127.0.0.1:7000".into(),
                state: "draining".into(),
                open: 1,
                total: 4,
                failures: 2,
            }]
        );
    }
}
