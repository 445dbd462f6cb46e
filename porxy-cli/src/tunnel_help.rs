//! The text of `--help-tunnel`: the tunnel SPEC grammar, its options and examples.

use porxy_core::OPTION_KEYS;

/// The text of `--help-tunnel`.
pub(crate) fn tunnel_help() -> String {
    format!(
        "\
A tunnel SPEC says where to listen and where to forward:

    LOCAL=REMOTE[,REMOTE...][key=value,...]

LOCAL and each REMOTE is an address:
    8000                  a bare port means 127.0.0.1:8000
    0.0.0.0:8000          an IPv4 address and port
    [::1]:8000            an IPv6 address, in brackets, and port
    db.internal:5432      a host name and port, resolved once when the tunnel opens
A LOCAL port of 0 asks the system for a free port; the READY line tells which one.
A REMOTE must be one server's address: not port 0, 0.0.0.0 or [::], a broadcast or a
multicast address, nor one of porxy's own listen addresses (porxy would forward to itself;
a loop through another proxy is yours to avoid).

A REMOTE may carry a weight, REMOTE*WEIGHT (1 to 1000, default 1), its share of the load.

Options go last, in brackets, separated by commas, each at most once. Known options:
    {keys}.
  Timeouts (each overrides the proxy-wide setting for this tunnel):
    connect_timeout       how long one upstream connect may take
    idle_timeout          how long a connection may pass no byte either way
    half_closed_timeout   how long a connection may stay half-closed: the default of
                          the two below
    client_fin_timeout    how long it may stay half-closed after the client's FIN
                          (the client has stopped sending; the reply may still flow)
    server_fin_timeout    how long it may stay half-closed after the upstream's FIN
                          (the upstream has stopped sending; the client may still send)
  Balancing, with several REMOTEs:
    strategy              round_robin (default, by weight), least_conn, random (two
                          choices drawn by weight, the less loaded wins), hash (by
                          client IP: a client keeps its backend), first (failover: the
                          first one that can take it)
    attempts              connects per client across backends before it is reset,
                          1 to 16 (default: the number of remotes, at most 16)
    max_conns             most connections each remote takes at once
    queue_timeout         how long a client waits when every remote is full (5s)
  Health:
    max_fails             connect failures in a row that mark a remote down (3)
    fail_timeout          without checks, how long a down remote rests (10s)
    check=tcp             active checks: connect every check_interval (2s) within
                          check_timeout (1s); rise (2) good ones bring a remote up,
                          fall (3) bad ones take it down; check_send / check_expect
                          send a string and expect a reply prefix (\\r \\n \\, \\] escapes)
  Fan-out (mode=fanout: every client copied to every REMOTE):
    mode                  balance (default) or fanout
    reply                 primary (default: the first REMOTE answers the client; the
                          others' replies are thrown away) or none (a one-way feed)
    max_lag               bytes a REMOTE may fall behind before it is dropped from that
                          connection (default 1MiB; at least 64KiB)
    min_live              the client is reset when fewer REMOTEs than this are left (1)
  Data path:
    splice=on|off         relay with splice(2) through kernel pipes, so bytes never
                          enter porxy's memory (default on, on Linux), or copy them
                          through a buffer (off)
  PROXY protocol:
    accept_proxy          read a PROXY header (v1, v2 or any) ahead of each client and
                          take the client it names as the real one
    proxy_timeout         how long a client has to send its whole header (5s)
    send_proxy            send each upstream a PROXY header (v1 or v2) first, naming the
                          client (the one a header it sent named, if it sent one)
    proxy_from            the peers that may send a header (networks; others are refused)
  Access (networks separated by `;`, like 10.0.0.0/8;192.0.2.7):
    allow, deny           who may connect, judged on the real client: the most specific
                          network that holds it decides; outside both, refused if there
                          is an allow list
    max_conns_per_client  the most connections one client holds at once
    rate_per_client       new connections one client may open per second, with bursts of
                          rate_burst (default: the rate)
    client_ipv6_prefix    IPv6 clients in one prefix of this length are one client for
                          the two above (64)
  TLS termination (clients speak TLS; the backends get plaintext):
    tls_cert, tls_key     PEM files: the certificate chain (its own first) and its key
    tls_alpn              protocols offered by ALPN, most wanted first (h2;http/1.1)
    tls_min_version       the oldest TLS version taken: 1.2 (default) or 1.3
    tls_handshake_timeout how long a client has for its handshake (10s)
    tls_client_ca         mutual TLS: the CAs (PEM) clients' certificates must chain to
    tls_client_auth       required (default) or optional: may a client show none
  Routing by server name (TLS passes through untouched; not with mode=fanout):
    sni_routes            NAME>REMOTE|REMOTE;... : the SNI of each client's ClientHello
                          picks the remotes that may serve it (exact names, *.wildcards,
                          and * for any other name or none); an unrouted client is reset.
                          tls_handshake_timeout is the time for its ClientHello (10s)
  TLS to the backends (not with mode=fanout):
    backend_tls           on: speak TLS to every backend
    tls_ca                the CAs (PEM) backends' certificates must chain to (default: the
                          system's store)
    tls_server_name       the name their certificates must be for (default: the
                          remote's host name)
    tls_verify            off: take any certificate (logged as a warning)
    tls_alpn              (without tls_cert) protocols offered to the backends; with
                          tls_cert, each backend is offered what its client chose
    backend_tls_cert, backend_tls_key
                          the certificate shown to backends that ask for one
    check_tls             on (default): active checks do the TLS handshake too, the
                          certificate verified; off: a TCP connect is the check
  Bandwidth (bytes a second, like 1MiB; not with mode=fanout):
    max_rate_up, max_rate_down
                          what each connection reads from its client, from its upstream
    max_tunnel_rate_up, max_tunnel_rate_down
                          what the tunnel's connections read together, each way
Durations need a unit: 500ms, 5s, 2m, 1h, or combined like 1m30s.

Spaces around `=` and `,` are allowed; quote the SPEC for the shell when you use them
or brackets.

Examples:
    porxy --tunnel 8000=9000
    porxy --tunnel '0.0.0.0:8080=10.0.0.5:80,10.0.0.6:80'
    porxy --tunnel '[::1]:5433=db.internal:5432[connect_timeout=2s,idle_timeout=10m]'
    porxy --tunnel '8000=9000[client_fin_timeout=5s,server_fin_timeout=1m]'
    porxy --tunnel '8000=7001*3,7002,7003[strategy=least_conn,check=tcp,max_conns=100]'
    porxy --tunnel '8000=7001,7002[mode=fanout,reply=none,max_lag=4MiB]'
    porxy --config porxy.toml --tunnel 0=127.0.0.1:7000

Tunnels from --tunnel are named cli-1, cli-2, ... in the READY line:
    READY pid=4242 tunnel.cli-1=127.0.0.1:8000
",
        keys = wrapped(OPTION_KEYS, HELP_WIDTH - 4).join("\n    ")
    )
}

/// The widest line of the tunnel help.
pub(crate) const HELP_WIDTH: usize = 92;

/// `words`, comma-separated, in lines of at most `width` characters (a longer word alone).
fn wrapped(words: &[&str], width: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    for word in words {
        match lines.last_mut() {
            Some(line) if line.len() + 2 + word.len() < width => {
                line.push_str(", ");
                line.push_str(word);
            }
            Some(line) => {
                line.push(',');
                lines.push((*word).to_string());
            }
            None => lines.push((*word).to_string()),
        }
    }
    lines
}
