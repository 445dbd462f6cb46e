//! SNI routing without termination (the `-sni` kinds): the routes every proxy is given, and
//! how each proxy is told them.
//!
//! The same two routes for all three: the name the load generator sends ([`SERVER_NAME`]) goes
//! to the TLS backend's routed port, any other name (and a ClientHello without one) to its
//! default port. Each proxy waits for the client's whole ClientHello, reads the server name in
//! it, connects to the port routed for it and relays the TLS stream untouched: no certificate,
//! no key, no decryption. Each says it its own way:
//!
//! - porxy: `--tunnel '127.0.0.1:0=ROUTED,DEFAULT[sni_routes=bench.test>ROUTED;*>DEFAULT]'`.
//!   It peeks the ClientHello (`MSG_PEEK`, parsed by rustls) and splices afterwards.
//! - HAProxy: `mode tcp` with `tcp-request inspect-delay 5s`, `tcp-request content accept if
//!   { req.ssl_hello_type 1 }` (wait for a whole ClientHello), `use_backend routed if
//!   { req.ssl_sni -i bench.test }` and `default_backend fallback`, as its manual's
//!   `req.ssl_sni` example (the underscore spellings `req_ssl_sni`, `req_ssl_hello_type` are
//!   deprecated aliases of the same fetches).
//! - nginx: `ssl_preread on;` and `proxy_pass $upstream;` with `map $ssl_preread_server_name
//!   $upstream { bench.test routed; default fallback; }` over two `upstream` blocks, as the
//!   `ngx_stream_ssl_preread_module` documentation's example.
//!
//! Their plain selves, measured beside them in the same section, relay the same TLS to the
//! routed port without looking at it: the difference is what the peek and the routing cost.

use std::net::SocketAddr;

use crate::certs::SERVER_NAME;

/// HAProxy's inspect delay and the longest nginx waits for a ClientHello by default (its
/// `preread_timeout` is 30 s; porxy's `tls_handshake_timeout` 10 s): far above what a
/// loopback handshake takes, so none of them ever times out here.
const INSPECT_DELAY: &str = "5s";

/// The two destinations of the routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Routes {
    /// Where [`SERVER_NAME`] goes: the TLS backend's routed port.
    pub routed: SocketAddr,
    /// Where every other name goes: the TLS backend's default port.
    pub default: SocketAddr,
}

impl Routes {
    /// porxy's tunnel SPEC: both ports as remotes, `sni_routes` between them.
    pub fn porxy_tunnel(&self) -> String {
        let Routes { routed, default } = self;
        format!("127.0.0.1:0={routed},{default}[sni_routes={SERVER_NAME}>{routed};*>{default}]")
    }

    /// The lines of HAProxy's frontend after its `bind`: wait for the ClientHello, route by
    /// its server name, the rest to the default.
    pub fn haproxy_rules(&self) -> String {
        format!(
            "    tcp-request inspect-delay {INSPECT_DELAY}\n    \
             tcp-request content accept if {{ req.ssl_hello_type 1 }}\n    \
             use_backend routed if {{ req.ssl_sni -i {SERVER_NAME} }}\n    \
             default_backend fallback\n"
        )
    }

    /// HAProxy's two backends, one server each.
    pub fn haproxy_backends(&self) -> String {
        format!(
            "backend routed\n    server s1 {}\n\nbackend fallback\n    server s1 {}\n",
            self.routed, self.default
        )
    }

    /// nginx's `map` of the server name to an upstream, and the two upstreams, inside its
    /// `stream` block.
    pub fn nginx_map(&self) -> String {
        format!(
            "    map $ssl_preread_server_name $upstream {{\n        {SERVER_NAME} routed;\n        \
             default fallback;\n    }}\n\n    \
             upstream routed {{\n        server {};\n    }}\n\n    \
             upstream fallback {{\n        server {};\n    }}\n\n",
            self.routed, self.default
        )
    }
}

/// The line of nginx's `server` block that reads the ClientHello before its `proxy_pass`.
pub const NGINX_PREREAD: &str = "        ssl_preread on;\n";

/// What nginx's `proxy_pass` names when it routes: the map's result.
pub const NGINX_UPSTREAM: &str = "$upstream";

#[cfg(test)]
mod tests {
    use super::*;

    fn routes() -> Routes {
        Routes {
            routed: SocketAddr::from(([127, 0, 0, 1], 7001)),
            default: SocketAddr::from(([127, 0, 0, 1], 7002)),
        }
    }

    #[test]
    fn porxy_routes_the_bench_name_and_defaults_the_rest() {
        assert_eq!(
            routes().porxy_tunnel(),
            "127.0.0.1:0=127.0.0.1:7001,127.0.0.1:7002\
             [sni_routes=bench.test>127.0.0.1:7001;*>127.0.0.1:7002]"
        );
    }

    #[test]
    fn haproxy_waits_for_the_hello_then_routes_by_its_name() {
        let rules = routes().haproxy_rules();
        let lines: Vec<&str> = rules.lines().map(str::trim).collect();
        assert_eq!(
            lines,
            [
                "tcp-request inspect-delay 5s",
                "tcp-request content accept if { req.ssl_hello_type 1 }",
                "use_backend routed if { req.ssl_sni -i bench.test }",
                "default_backend fallback",
            ]
        );
        let backends = routes().haproxy_backends();
        assert!(backends.contains("backend routed\n    server s1 127.0.0.1:7001\n"));
        assert!(backends.contains("backend fallback\n    server s1 127.0.0.1:7002\n"));
    }

    #[test]
    fn nginx_maps_the_preread_name_to_an_upstream() {
        let map = routes().nginx_map();
        for line in [
            "map $ssl_preread_server_name $upstream {",
            "bench.test routed;",
            "default fallback;",
            "upstream routed {",
            "server 127.0.0.1:7001;",
            "upstream fallback {",
            "server 127.0.0.1:7002;",
        ] {
            assert!(map.lines().any(|l| l.trim() == line), "{line}: {map}");
        }
        assert_eq!(NGINX_PREREAD.trim(), "ssl_preread on;");
    }
}
