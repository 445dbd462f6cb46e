//! What is measured: a [`Kind`] of proxy (or the direct connection), a [`Setup`], a kind
//! with its threads and polling, for the TLS kinds the [`CertKey`] of the certificate they
//! terminate TLS with, and each [`Phase`] a setup goes through. How each is started is
//! `peers.rs`'s; its configuration, `configs.rs`'s (and `sni.rs`'s for the `-sni` kinds'
//! routes).

use std::fmt;

/// porxy's busy-poll window in the busy-polling section: longer than the gap between two
/// messages of a request/response exchange on loopback, so a busy reactor never sleeps.
pub const PORXY_BUSY_POLL: &str = "1ms";

/// What carries the connections. `--kinds` takes them by [`Kind::name`] (clap's kebab-case
/// of the variant, which a test holds to it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, clap::ValueEnum)]
pub enum Kind {
    /// The client talks to the backend itself: the limit of the machine.
    Direct,
    /// porxy, from target/release, with its defaults (splice(2) on Linux).
    Porxy,
    /// The same porxy with `splice=off`: every byte copied through a buffer, as HAProxy and
    /// nginx do here; the row the copy-path targets are read from.
    PorxyCopy,
    /// porxy with `accept_proxy=v2,send_proxy=v2`: a PROXY header taken from each client and
    /// one sent to the backend.
    PorxyProxy,
    /// HAProxy, `mode tcp`.
    Haproxy,
    /// HAProxy with `accept-proxy` on its bind and `send-proxy-v2` on its server.
    HaproxyProxy,
    /// nginx, stream module.
    Nginx,
    /// porxy terminating TLS (`tls_cert`, `tls_key`); the backend stays plaintext.
    PorxyTls,
    /// HAProxy terminating TLS (`bind ... ssl crt FILE`), `mode tcp`.
    HaproxyTls,
    /// nginx's stream module terminating TLS (`listen ... ssl`).
    NginxTls,
    /// porxy routing TLS by the server name of each ClientHello without terminating it
    /// (`sni_routes`), in front of TLS backends; the bytes are relayed untouched (spliced).
    PorxySni,
    /// HAProxy doing the same: `mode tcp`, `tcp-request inspect-delay` until a whole
    /// ClientHello is in, `use_backend ... if { req.ssl_sni -i NAME }`, a default backend.
    HaproxySni,
    /// nginx's stream module doing the same: `ssl_preread on` and a `map` of
    /// `$ssl_preread_server_name` to the upstream.
    NginxSni,
    /// porxy with `--access-log FILE` (logfmt): one line per connection as it ends, written by
    /// its writer thread into a file of the run's temporary directory.
    PorxyLog,
    /// HAProxy with `option tcplog` and `log stdout format raw`, its stdout a file.
    HaproxyLog,
    /// nginx with `access_log FILE` in a `log_format` of the fields porxy writes (unbuffered:
    /// see [`crate::access_log`]).
    NginxLog,
    /// Another porxy binary (`--porxy-b PATH`) with porxy's arguments: an A/B of two builds in
    /// one run, `porxy` over `porxy-b` in the paired table.
    PorxyB,
}

/// What a kind adds to the kind it is measured beside ([`Kind::baseline`]), for the paired
/// tables of the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Difference {
    /// The PROXY protocol taken from the client and sent to the backend.
    ProxyProtocol,
    /// TLS routed by server name.
    SniRouting,
    /// An access log line per connection.
    AccessLog,
    /// Another build of porxy (this one over `--porxy-b`'s).
    Build,
}

impl Kind {
    /// The name in tables and messages.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Direct => "direct",
            Kind::Porxy => "porxy",
            Kind::PorxyCopy => "porxy-copy",
            Kind::PorxyProxy => "porxy-proxy",
            Kind::Haproxy => "haproxy",
            Kind::HaproxyProxy => "haproxy-proxy",
            Kind::Nginx => "nginx",
            Kind::PorxyTls => "porxy-tls",
            Kind::HaproxyTls => "haproxy-tls",
            Kind::NginxTls => "nginx-tls",
            Kind::PorxySni => "porxy-sni",
            Kind::HaproxySni => "haproxy-sni",
            Kind::NginxSni => "nginx-sni",
            Kind::PorxyLog => "porxy-log",
            Kind::HaproxyLog => "haproxy-log",
            Kind::NginxLog => "nginx-log",
            Kind::PorxyB => "porxy-b",
        }
    }

    /// The program that runs: [`Kind::Porxy`], [`Kind::Haproxy`] or [`Kind::Nginx`] for every
    /// variant of each (the direct connection for itself).
    pub fn program(self) -> Kind {
        match self {
            Kind::Porxy
            | Kind::PorxyCopy
            | Kind::PorxyProxy
            | Kind::PorxyTls
            | Kind::PorxySni
            | Kind::PorxyLog
            | Kind::PorxyB => Kind::Porxy,
            Kind::Haproxy
            | Kind::HaproxyProxy
            | Kind::HaproxyTls
            | Kind::HaproxySni
            | Kind::HaproxyLog => Kind::Haproxy,
            Kind::Nginx | Kind::NginxTls | Kind::NginxSni | Kind::NginxLog => Kind::Nginx,
            Kind::Direct => Kind::Direct,
        }
    }

    /// Whether the proxy terminates TLS: its clients speak TLS (the load generator is a
    /// rustls client), the backend gets the plaintext. These kinds are measured in a section
    /// of their own, against each other.
    pub fn tls(self) -> bool {
        matches!(self, Kind::PorxyTls | Kind::HaproxyTls | Kind::NginxTls)
    }

    /// Whether the proxy routes TLS by server name without terminating it, in front of TLS
    /// backends. These kinds are measured in a section of their own, each beside its plain
    /// self ([`Kind::without_sni`]) relaying the same TLS to the same backend unrouted.
    pub fn sni(self) -> bool {
        matches!(self, Kind::PorxySni | Kind::HaproxySni | Kind::NginxSni)
    }

    /// The same proxy relaying without looking at the ClientHello: the kind a `-sni` kind is
    /// compared with to see what the peek and the routing cost; itself for the others.
    pub fn without_sni(self) -> Kind {
        match self {
            Kind::PorxySni | Kind::HaproxySni | Kind::NginxSni => self.program(),
            other => other,
        }
    }

    /// Whether the proxy writes an access log line per connection (into
    /// [`crate::access_log`]'s file).
    pub fn access_log(self) -> bool {
        matches!(self, Kind::PorxyLog | Kind::HaproxyLog | Kind::NginxLog)
    }

    /// The kind this one is measured beside to see what it adds, and what that is: each
    /// `-proxy`, `-sni` and `-log` kind's plain self, and porxy-b for porxy (this build over
    /// the other); `None` for the others.
    pub fn baseline(self) -> Option<(Kind, Difference)> {
        match self {
            Kind::PorxyProxy | Kind::HaproxyProxy => {
                Some((self.without_proxy_protocol(), Difference::ProxyProtocol))
            }
            Kind::PorxySni | Kind::HaproxySni | Kind::NginxSni => {
                Some((self.without_sni(), Difference::SniRouting))
            }
            Kind::PorxyLog | Kind::HaproxyLog | Kind::NginxLog => {
                Some((self.program(), Difference::AccessLog))
            }
            Kind::Porxy => Some((Kind::PorxyB, Difference::Build)),
            _ => None,
        }
    }

    /// Whether this is one of the peers porxy is compared with (a figure's ratio is to the
    /// better peer with the PROXY protocol on or off alike, see [`Kind::proxy_protocol`],
    /// terminating TLS or not alike, see [`Kind::tls`], routing by server name or not
    /// alike, see [`Kind::sni`], and logging each connection or not alike, see
    /// [`Kind::access_log`]).
    pub fn is_peer(self) -> bool {
        matches!(self.program(), Kind::Haproxy | Kind::Nginx)
    }

    /// Whether the proxy takes a PROXY header from each client and sends one to the backend
    /// (the load generator then sends one ahead of every connection).
    pub fn proxy_protocol(self) -> bool {
        matches!(self, Kind::PorxyProxy | Kind::HaproxyProxy)
    }

    /// The same proxy with the PROXY protocol off: the kind a `-proxy` kind is compared with
    /// to see what the protocol costs; itself for the others.
    pub fn without_proxy_protocol(self) -> Kind {
        match self {
            Kind::PorxyProxy => Kind::Porxy,
            Kind::HaproxyProxy => Kind::Haproxy,
            other => other,
        }
    }
}

/// The key of the certificate the TLS kinds terminate TLS with: one certificate of each, made
/// at the start of the run (`certs.rs`) and used by all three proxies alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CertKey {
    /// ECDSA on P-256 (rcgen's default key): the cheap signature most sites use now.
    EcdsaP256,
    /// RSA 2048 (made with the `openssl` CLI; rcgen cannot generate RSA keys): the server's
    /// signature in a full handshake costs far more, which is what this variant is for.
    Rsa2048,
}

impl CertKey {
    /// The name in titles and messages.
    pub fn name(self) -> &'static str {
        match self {
            CertKey::EcdsaP256 => "ECDSA P-256",
            CertKey::Rsa2048 => "RSA 2048",
        }
    }

    /// The stem of its files in the run's temporary directory.
    pub fn file_stem(self) -> &'static str {
        match self {
            CertKey::EcdsaP256 => "tls-ecdsa",
            CertKey::Rsa2048 => "tls-rsa",
        }
    }
}

/// One measurement of a setup (named in `--phases` as idle, bulk-up, bulk-down, rr1, rr64,
/// short, handshake, resumed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, clap::ValueEnum)]
pub enum Phase {
    /// Many idle connections held: the proxy's resident memory per connection.
    Idle,
    /// Bulk transfer, client to backend, one connection.
    BulkUp,
    /// Bulk transfer, backend to client, one connection.
    BulkDown,
    /// 64-byte request/response over one connection.
    Rr1,
    /// 64-byte request/response over 64 connections.
    Rr64,
    /// Connect, one 64-byte exchange, close.
    Short,
    /// TLS: connect, a full handshake, one 64-byte exchange, close.
    Handshake,
    /// TLS: the same with the session resumed from an earlier connection's ticket.
    Resumed,
}

/// A kind with its number of threads (porxy reactors, HAProxy threads, nginx workers), and
/// whether it busy-polls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Setup {
    /// What.
    pub kind: Kind,
    /// How many threads.
    pub threads: usize,
    /// Polls without sleeping (porxy `--busy-poll`, HAProxy `busy-polling`) instead of its
    /// default; only porxy and HAProxy do.
    pub busy: bool,
}

impl Setup {
    /// `kind` with `threads` threads and its default polling.
    pub fn new(kind: Kind, threads: usize) -> Setup {
        Setup {
            kind,
            threads,
            busy: false,
        }
    }

    /// `kind` with one thread, busy-polling.
    pub fn busy(kind: Kind) -> Setup {
        Setup {
            kind,
            threads: 1,
            busy: true,
        }
    }

    /// How this setup busy-polls, as its configuration says it: `--busy-poll 1ms` for porxy,
    /// `busy-polling` for HAProxy; `None` with default polling, for the direct connection
    /// (no proxy to poll) and for nginx (which cannot busy-poll; `peers::start` refuses it).
    pub fn busy_polling(&self) -> Option<String> {
        match (self.busy, self.kind) {
            (true, Kind::Porxy | Kind::PorxyCopy) => Some(format!("--busy-poll {PORXY_BUSY_POLL}")),
            (true, Kind::Haproxy) => Some("busy-polling".into()),
            _ => None,
        }
    }
}

impl fmt::Display for Setup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            Kind::Direct => f.write_str("direct"),
            kind => {
                write!(f, "{}×{}", kind.name(), self.threads)?;
                match self.busy_polling() {
                    Some(how) => write!(f, " {how}"),
                    None => Ok(()),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::ValueEnum;

    use super::*;

    #[test]
    fn every_kind_is_named_on_the_command_line_as_in_the_tables() {
        for kind in Kind::value_variants() {
            let value = kind.to_possible_value().expect("no kind is skipped");
            assert_eq!(value.get_name(), kind.name());
        }
    }
}
