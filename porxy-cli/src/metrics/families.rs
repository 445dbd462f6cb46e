//! porxy's per-tunnel metric families, from a status snapshot (the sharded counters summed,
//! nothing kept twice): per tunnel, per backend, the certificates' expiry, and the build. Labels
//! are bounded: tunnel name and listen address, backend address, direction, close reason and
//! fault, state; never a client's. The proxy-wide families are in `proxy_wide.rs`.

use std::time::UNIX_EPOCH;

use porxy_core::{BackendState, BackendStatus, CloseReason, Status, TunnelStatus};

use super::exposition::{Exposition, Kind};

/// Every backend state, for one series each.
const STATES: [BackendState; 5] = [
    BackendState::Up,
    BackendState::Down,
    BackendState::Draining,
    BackendState::Disabled,
    BackendState::Removing,
];

/// Writes porxy's families for `status`; `name_of` names each tunnel.
pub fn write(text: &mut Exposition, status: &Status, name_of: &dyn Fn(&TunnelStatus) -> String) {
    text.family(
        "porxy_build_info",
        Kind::Gauge,
        "The porxy build, as its version and commit labels.",
    )
    .sample(
        &[
            ("version", env!("CARGO_PKG_VERSION")),
            ("commit", env!("PORXY_COMMIT")),
        ],
        1,
    );
    let tunnels: Vec<(String, String, &TunnelStatus)> = status
        .tunnels
        .iter()
        .map(|t| (name_of(t), t.local.to_string(), t))
        .collect();
    let per_tunnel = |text: &mut Exposition,
                      name: &'static str,
                      kind: Kind,
                      help: &str,
                      value: fn(&TunnelStatus) -> u64| {
        let mut family = text.family(name, kind, help);
        for (tunnel, listen, t) in &tunnels {
            family.sample(&[("tunnel", tunnel), ("listen", listen)], value(t));
        }
    };
    per_tunnel(
        text,
        "porxy_tunnel_connections_open",
        Kind::Gauge,
        "Connections open now.",
        |t| t.open,
    );
    per_tunnel(
        text,
        "porxy_tunnel_connections_accepted_total",
        Kind::Counter,
        "Connections accepted since the tunnel opened.",
        |t| t.accepted,
    );
    per_tunnel(
        text,
        "porxy_tunnel_connections_imported_total",
        Kind::Counter,
        "Established connections taken over from the porxy this one replaced.",
        |t| t.imported,
    );
    per_tunnel(
        text,
        "porxy_tunnel_queue_waits_total",
        Kind::Counter,
        "Clients that waited for a backend's slot, every backend being at max_conns.",
        |t| t.queued,
    );
    per_tunnel(
        text,
        "porxy_tunnel_queue_timeouts_total",
        Kind::Counter,
        "Clients that waited for a slot in vain, for queue_timeout.",
        |t| t.closes.get(CloseReason::QueueTimeout),
    );
    per_tunnel(
        text,
        "porxy_tunnel_connect_failures_total",
        Kind::Counter,
        "Upstream connects that failed, including those after which another backend served.",
        |t| t.connect_failures,
    );
    let mut bytes = text.family(
        "porxy_tunnel_bytes_total",
        Kind::Counter,
        "Bytes relayed, up (client to upstream) and down (upstream to client).",
    );
    for (tunnel, listen, t) in &tunnels {
        bytes.sample(
            &[("tunnel", tunnel), ("listen", listen), ("direction", "up")],
            t.bytes_to_upstream,
        );
        bytes.sample(
            &[
                ("tunnel", tunnel),
                ("listen", listen),
                ("direction", "down"),
            ],
            t.bytes_to_client,
        );
    }
    let mut closes = text.family(
        "porxy_tunnel_closes_total",
        Kind::Counter,
        "Connections ended, by close reason and whose fault it was.",
    );
    for (tunnel, listen, t) in &tunnels {
        for reason in CloseReason::ALL {
            let fault = reason.fault().to_string();
            closes.sample(
                &[
                    ("tunnel", tunnel),
                    ("listen", listen),
                    ("reason", reason.as_str()),
                    ("fault", &fault),
                ],
                t.closes.get(reason),
            );
        }
    }
    let mut lifetime = text.family(
        "porxy_tunnel_connection_duration_seconds",
        Kind::Histogram,
        "How long connections lived, from accept to close (those handed over not counted).",
    );
    for (tunnel, listen, t) in &tunnels {
        lifetime.histogram(&[("tunnel", tunnel), ("listen", listen)], &t.lifetime);
    }
    write_backends(text, &tunnels);
    let mut expiry = text.family(
        "porxy_tls_certificate_expiry_timestamp_seconds",
        Kind::Gauge,
        "When each certificate a tunnel holds stops being valid, in seconds since the epoch.",
    );
    for (tunnel, listen, t) in &tunnels {
        for c in &t.certificates {
            let at = c
                .not_after
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let path = c.path.display().to_string();
            expiry.sample(
                &[
                    ("tunnel", tunnel),
                    ("listen", listen),
                    ("role", c.role.as_str()),
                    ("path", &path),
                    ("serial", &c.serial),
                ],
                at,
            );
        }
    }
}

/// A per-backend family: its name, type, help, and the figure it reads.
type BackendFigure = (&'static str, Kind, &'static str, fn(&BackendStatus) -> u64);

/// The per-backend families.
fn write_backends(text: &mut Exposition, tunnels: &[(String, String, &TunnelStatus)]) {
    let backends: Vec<(&str, String, &BackendStatus)> = tunnels
        .iter()
        .flat_map(|(tunnel, _, t)| {
            t.backends
                .iter()
                .map(move |b| (tunnel.as_str(), b.addr.to_string(), b))
        })
        .collect();
    let mut up = text.family(
        "porxy_backend_up",
        Kind::Gauge,
        "1 while the backend is up, else 0.",
    );
    for (tunnel, backend, b) in &backends {
        up.sample(
            &[("tunnel", tunnel), ("backend", backend)],
            u8::from(b.state == BackendState::Up),
        );
    }
    let mut state = text.family(
        "porxy_backend_state",
        Kind::Gauge,
        "The backend's state: 1 for the one it is in, 0 for the others.",
    );
    for (tunnel, backend, b) in &backends {
        for s in STATES {
            let name = s.to_string();
            state.sample(
                &[("tunnel", tunnel), ("backend", backend), ("state", &name)],
                u8::from(b.state == s),
            );
        }
    }
    let counts: [BackendFigure; 5] = [
        (
            "porxy_backend_connections_open",
            Kind::Gauge,
            "Connections open to the backend now.",
            |b| b.open,
        ),
        (
            "porxy_backend_connections_total",
            Kind::Counter,
            "Connections the backend took.",
            |b| b.total,
        ),
        (
            "porxy_backend_connect_failures_total",
            Kind::Counter,
            "Connects to the backend that failed.",
            |b| b.failures,
        ),
        (
            "porxy_backend_sent_bytes_total",
            Kind::Counter,
            "Fan-out: bytes sent to the destination.",
            |b| b.bytes_sent,
        ),
        (
            "porxy_backend_lag_drops_total",
            Kind::Counter,
            "Fan-out: times the destination fell max_lag behind and was dropped.",
            |b| b.lag_drops,
        ),
    ];
    let mut bytes = text.family(
        "porxy_backend_bytes_total",
        Kind::Counter,
        "Bytes relayed to the backend and from it (a fan-out connection's replies come from \
         its primary).",
    );
    for (tunnel, backend, b) in &backends {
        bytes
            .sample(
                &[
                    ("tunnel", tunnel),
                    ("backend", backend),
                    ("direction", "to_backend"),
                ],
                b.bytes_to_backend,
            )
            .sample(
                &[
                    ("tunnel", tunnel),
                    ("backend", backend),
                    ("direction", "from_backend"),
                ],
                b.bytes_from_backend,
            );
    }
    let mut connect = text.family(
        "porxy_backend_connect_duration_seconds",
        Kind::Histogram,
        "How long successful connects to the backend took.",
    );
    for (tunnel, backend, b) in &backends {
        connect.histogram(&[("tunnel", tunnel), ("backend", backend)], &b.connect_time);
    }
    for (name, kind, help, value) in counts {
        let mut family = text.family(name, kind, help);
        for (tunnel, backend, b) in &backends {
            family.sample(&[("tunnel", tunnel), ("backend", backend)], value(b));
        }
    }
}
