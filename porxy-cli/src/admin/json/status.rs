//! What `STATUS FULL` shows, as JSON (`GET /status`): every tunnel with its counters, close
//! reasons, backends and certificates; every reactor; every generation; accept pauses.

use std::time::SystemTime;

use porxy_core::{CloseReason, Status, TunnelStatus};
use serde_json::{json, Map, Value};

/// The whole snapshot; `names` gives each tunnel's name by listen address.
pub fn status(status: &Status, name_of: impl Fn(&TunnelStatus) -> String) -> Value {
    let now = SystemTime::now();
    let tunnels: Vec<Value> = status
        .tunnels
        .iter()
        .map(|t| tunnel(t, name_of(t), now))
        .collect();
    json!({
        "stopping": status.stopping,
        "open": status.open_connections(),
        "tunnels": tunnels,
        "reactors": status.reactors.iter().map(|r| json!({
            "index": r.index, "open": r.open, "adopted": r.adopted, "shortages": r.shortages,
            "splice_fallbacks": {
                "budget": r.splice_fallbacks.budget,
                "create": r.splice_fallbacks.create,
                "unsupported": r.splice_fallbacks.unsupported,
            },
        })).collect::<Vec<_>>(),
        "accept_pauses": {
            "connection_limit": status.accept_pauses.connection_limit,
            "accept_rate": status.accept_pauses.accept_rate,
            "resource_shortage": status.accept_pauses.resource_shortage,
            "over_share": status.accept_pauses.over_share,
        },
        "generations": status.generations.iter().map(|g| json!({
            "id": g.id, "open": g.open, "current": g.current,
        })).collect::<Vec<_>>(),
    })
}

/// What became of the access log's records.
pub fn access_log(counts: &crate::access_log::Counts) -> Value {
    let get = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    json!({
        "written": get(&counts.written),
        "dropped": get(&counts.dropped),
        "failed": get(&counts.failed),
    })
}

fn tunnel(t: &TunnelStatus, name: String, now: SystemTime) -> Value {
    let mut closes = Map::new();
    for reason in CloseReason::ALL {
        closes.insert(reason.as_str().into(), t.closes.get(reason).into());
    }
    json!({
        "name": name,
        "listen": t.local.to_string(),
        "mode": t.mode.to_string(),
        "strategy": t.strategy.to_string(),
        "reply": t.reply.map(|r| r.to_string()),
        "open": t.open,
        "accepted": t.accepted,
        "imported": t.imported,
        "bytes_up": t.bytes_to_upstream,
        "bytes_down": t.bytes_to_client,
        "connect_failures": t.connect_failures,
        "closes": closes,
        "backends": t.backends.iter().map(|b| json!({
            "address": b.addr.to_string(),
            "state": b.state.to_string(),
            "weight": b.weight,
            "open": b.open,
            "total": b.total,
            "failures": b.failures,
            "bytes_to_backend": b.bytes_to_backend,
            "bytes_from_backend": b.bytes_from_backend,
            "bytes_sent": b.bytes_sent,
            "lag_drops": b.lag_drops,
        })).collect::<Vec<_>>(),
        "certificates": t.certificates.iter().map(|c| json!({
            "role": c.role.as_str(),
            "path": c.path.display().to_string(),
            "serial": c.serial,
            "names": c.names,
            "not_after": humantime::format_rfc3339_seconds(c.not_after).to_string(),
            "days_left": c.days_left(now),
        })).collect::<Vec<_>>(),
    })
}
