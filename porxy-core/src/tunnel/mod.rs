//! Tunnels: what a listening address forwards to, and with which settings.
//!
//! A [`Tunnel`] is immutable and shared as `Arc`: the listener hands it to reactors with every
//! accepted connection, and a connection keeps the one it started with. Changing a tunnel builds
//! a new `Tunnel` with the same id and counters; backends at the same address are carried over
//! (the same `Arc<Backend>`), so their counters and health go on.

pub(crate) mod backend_tls;
pub(crate) mod bandwidth;
mod endpoint;
pub(crate) mod lineage;
pub(crate) mod loaded;
mod opening;
pub(crate) mod reach;
mod resolve;
pub(crate) mod sni_routing;

pub(crate) use resolve::check_options;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use crate::balance::backend::{Backend, BackendState};
use crate::balance::health::CheckConfig;
use crate::balance::Balancer;
use crate::config::{ProxyConfig, TunnelSettings};
use crate::conn::access_rules::AccessRules;
use crate::conn::admission::{Admission, Verdict};
use crate::conn::client_limits::{ClientKey, ClientLimits};
use crate::conn::client_rate::ClientRate;
use crate::conn::fanout::FanoutSettings;
use crate::conn::opening::OpeningConfig;
use crate::conn::proxy_header;
use crate::error::Error;
use crate::generation::Generation;
use crate::spec::SendProxy;
use crate::spec::{Remote, TunnelSpec};
use crate::status::{BackendStatus, TunnelStats, TunnelStatus};
use crate::tls::server::ServerTls;
use backend_tls::BackendTls;
use bandwidth::Bandwidth;
pub(crate) use lineage::Lineage;
use loaded::Loaded;
use reach::OwnListener;
use resolve::{options_error, resolve, Resolved};
use sni_routing::SniRouting;

/// Identifies a tunnel across replacements of its remotes or options.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct TunnelId(pub(crate) u64);

/// A resolved, running tunnel.
pub(crate) struct Tunnel {
    pub(crate) id: TunnelId,
    pub(crate) local: SocketAddr,
    /// Its listening socket is IPv6 and takes IPv4 clients too (see [`OwnListener`]).
    pub(crate) dual_stack: bool,
    pub(crate) settings: TunnelSettings,
    pub(crate) balancer: Balancer,
    /// Backends dropped from the tunnel that still hold connections: shown in status (as
    /// removing) until their last connection ends, never picked.
    pub(crate) leaving: Vec<Arc<Backend>>,
    /// Connect attempts per client, across backends.
    pub(crate) attempts: u32,
    /// Active health checks, if on.
    pub(crate) check: Option<CheckConfig>,
    pub(crate) stats: Arc<TunnelStats>,
    /// The configuration generation this version was built in.
    pub(crate) generation: Arc<Generation>,
    /// The expression it was opened with, with the bound address, for status output.
    pub(crate) spec: TunnelSpec,
    /// Fan-out settings, when every client is copied to every remote.
    pub(crate) fanout: Option<FanoutSettings>,
    /// What its clients go through before a backend is picked; `None`: nothing, they pick at
    /// once.
    pub(crate) opening: Option<OpeningConfig>,
    /// Which backends serve which server names, if the tunnel routes by them.
    pub(crate) sni_routing: Option<SniRouting>,
    /// Who may connect, judged on the real client before the pick; `None`: everyone.
    pub(crate) admission: Option<Arc<dyn Admission>>,
    /// The PROXY header each backend (by its index in the balancer) gets ahead of the
    /// client's stream, if any: its own `send_proxy`, else the tunnel's.
    send_proxy: Box<[Option<SendProxy>]>,
    /// Active checks of a backend that gets a PROXY header send one first.
    check_send_proxy: bool,
    /// Active checks of its TLS backends do the TLS handshake.
    check_tls: bool,
    /// The most connections one client may hold at once, if limited.
    pub(crate) max_conns_per_client: Option<u32>,
    /// The per-client counts, shared by every version of the tunnel.
    pub(crate) clients: Arc<ClientLimits>,
    /// New connections one client may open per second, and in a burst, if limited.
    pub(crate) rate_per_client: Option<(u32, u32)>,
    /// The per-client rate buckets, shared by every version of the tunnel.
    pub(crate) rates: Arc<ClientRate>,
    /// The prefix by which IPv6 clients are one client, for the limit and the rate.
    pub(crate) client_ipv6_prefix: u8,
    /// Its connections' bandwidth limits.
    pub(crate) bandwidth: Bandwidth,
    /// Its TLS termination, if its clients speak TLS.
    pub(crate) tls: Option<ServerTls>,
    /// Its TLS to its backends, if it speaks TLS to them.
    pub(crate) backend_tls: Option<BackendTls>,
}

impl Tunnel {
    /// Builds a tunnel version from a spec whose remotes resolved to `remotes` (same order).
    /// Backends of `previous` with the same address are carried over, with the weight and limit
    /// the spec gives now.
    ///
    /// Options that do not fit together are refused ([`Error::Options`]) before anything of
    /// `previous` changes; callers check them earlier still ([`check_options`]), before they
    /// resolve names or bind, so that a reload cannot fail half-way.
    pub(crate) fn build(
        lineage: Lineage,
        spec: &TunnelSpec,
        remotes: &[SocketAddr],
        config: &ProxyConfig,
        previous: Option<&Tunnel>,
        loaded: Loaded,
    ) -> Result<Tunnel, Error> {
        let Lineage {
            id,
            local,
            dual_stack,
            stats,
            generation,
            clients,
            rates,
            buckets,
        } = lineage;
        let count = spec.remotes.len().min(remotes.len());
        let Resolved {
            settings,
            strategy,
            passive,
            check,
            attempts,
            fanout,
            max_conns,
            accept_proxy,
            send_proxy,
            check_send_proxy,
            check_tls,
            proxy_from,
            allow,
            deny,
            max_conns_per_client,
            rate_per_client,
            client_ipv6_prefix,
            bandwidth,
            client_tls,
        } = resolve(&spec.options, count, config)
            .and_then(|resolved| spec.check_remotes().map(|()| resolved))
            .map_err(|conflict| options_error(spec, conflict))?;
        let backend_tls = BackendTls::new(loaded.backend_tls, spec, &remotes[..count]);
        // A TLS end must see its bytes: a tunnel with one toward any backend copies.
        let settings = TunnelSettings {
            splice: settings.splice && backend_tls.is_none(),
            ..settings
        };
        let backends: Vec<Arc<Backend>> = spec
            .remotes
            .iter()
            .zip(remotes)
            .map(|(remote, addr)| {
                let max_conns = remote.max_conns.or(max_conns);
                // The same address is the same backend: its connections, health and limit go
                // on, with the new weight and limit. That holds for one still being removed too
                // (the caller takes it back into service), unless its connections are to be
                // closed at a deadline, which cannot be called off.
                match previous.and_then(|p| p.backend_to_keep(*addr)) {
                    Some(backend) => {
                        backend.set_limits(remote.weight, max_conns);
                        backend.clone()
                    }
                    None => Arc::new(Backend::new(*addr, remote.weight, max_conns)),
                }
            })
            .collect();
        let leaving = previous
            .map(|p| {
                p.leaving
                    .iter()
                    .chain(&p.balancer.backends)
                    .filter(|b| !backends.iter().any(|n| Arc::ptr_eq(n, b)))
                    .filter(|b| b.open() > 0)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        let mut shown = spec.clone();
        shown.local = local.into();
        Ok(Tunnel {
            id,
            local,
            dual_stack,
            settings,
            balancer: Balancer::new(strategy, backends, passive),
            leaving,
            attempts,
            check,
            stats,
            generation,
            spec: shown,
            fanout,
            opening: opening::opening(accept_proxy, proxy_from, client_tls),
            sni_routing: spec
                .options
                .sni_routes
                .as_ref()
                .map(|routes| SniRouting::new(routes, &spec.remotes[..count])),
            admission: AccessRules::new(allow, deny)
                .map(|rules| Arc::new(rules) as Arc<dyn Admission>),
            send_proxy: spec
                .remotes
                .iter()
                .map(|remote| remote.send_proxy.or(send_proxy))
                .collect(),
            check_send_proxy,
            check_tls,
            max_conns_per_client,
            clients,
            rate_per_client,
            rates,
            client_ipv6_prefix,
            bandwidth: Bandwidth::new(bandwidth, buckets),
            tls: loaded.tls,
            backend_tls,
        })
    }

    /// What it read from files, for a version built again without reading them.
    pub(crate) fn loaded(&self) -> Loaded {
        Loaded {
            tls: self.tls.clone(),
            backend_tls: self
                .backend_tls
                .as_ref()
                .map(BackendTls::clients)
                .unwrap_or_default(),
        }
    }

    /// The PROXY header version backend `i` gets ahead of each client's stream, if any.
    #[inline]
    pub(crate) fn send_proxy_to(&self, i: usize) -> Option<SendProxy> {
        self.send_proxy.get(i).copied().flatten()
    }

    /// How backend `i` is checked, if checks are on: with a PROXY header ahead of the check's
    /// own bytes when `check_send_proxy` says so and the backend gets headers; over TLS, as
    /// its connections are, for a TLS backend (unless `check_tls=off`), the header then in
    /// the clear ahead of the ClientHello.
    pub(crate) fn check_of(&self, i: usize) -> Option<CheckConfig> {
        let mut check = self.check.clone()?;
        let header = self
            .send_proxy_to(i)
            .filter(|_| self.check_send_proxy)
            .map(proxy_header::header_for_check);
        let tls = self.backend_tls.as_ref().filter(|_| self.check_tls);
        match tls.and_then(|tls| tls.check(i, Vec::new())) {
            Some(mut tls) => {
                tls.preface = header.unwrap_or_default();
                check.tls = Some(tls);
            }
            None => {
                if let Some(mut send) = header {
                    send.extend(check.send.take().unwrap_or_default());
                    check.send = Some(send);
                }
            }
        }
        Some(check)
    }

    /// The client `addr` is, for the per-client limit and rate.
    #[inline]
    pub(crate) fn client_key(&self, addr: IpAddr) -> ClientKey {
        ClientKey::of(addr, self.client_ipv6_prefix)
    }

    /// The verdict on `client` (its real address), before a backend is picked.
    #[inline]
    pub(crate) fn admit(&self, client: SocketAddr) -> Verdict {
        match &self.admission {
            Some(rules) => rules.admit(client),
            None => Verdict::Admit,
        }
    }

    pub(crate) fn status(&self) -> TunnelStatus {
        let backends: Vec<BackendStatus> = self
            .balancer
            .backends
            .iter()
            .chain(&self.leaving)
            .filter(|b| !(b.state() == BackendState::Removing && b.open() == 0))
            .map(|b| {
                let (bytes_to_backend, bytes_from_backend) = b.bytes();
                BackendStatus {
                    addr: b.addr,
                    weight: b.weight(),
                    state: b.state(),
                    open: b.open(),
                    total: b.total(),
                    failures: b.failures(),
                    bytes_to_backend,
                    bytes_from_backend,
                    bytes_sent: b.sent(),
                    lag_drops: b.lag_drops(),
                    connect_time: b.connect_time(),
                }
            })
            .collect();
        let mut status = self.stats.snapshot(
            self.local,
            self.spec.to_string(),
            self.balancer.strategy,
            self.spec.options.mode.unwrap_or_default(),
            self.fanout.map(|f| f.reply),
            backends,
        );
        let listener = self.tls.iter().flat_map(ServerTls::certificates);
        let backend = self.backend_tls.iter().flat_map(BackendTls::certificates);
        status.certificates = listener.chain(backend).cloned().collect();
        status
    }

    /// Its listening socket, as a remote could reach it.
    pub(crate) fn own_listener(&self) -> OwnListener {
        OwnListener {
            addr: self.local,
            dual_stack: self.dual_stack,
        }
    }

    /// The addresses of the backends new connections may go to.
    pub(crate) fn remotes(&self) -> Vec<SocketAddr> {
        self.balancer.backends.iter().map(|b| b.addr).collect()
    }

    /// The backend a new version of this tunnel keeps for `addr`: the one serving it, or one
    /// being removed whose connections are not to be closed at a deadline.
    fn backend_to_keep(&self, addr: SocketAddr) -> Option<&Arc<Backend>> {
        self.balancer
            .backends
            .iter()
            .find(|b| b.addr == addr)
            .or_else(|| {
                self.leaving
                    .iter()
                    .find(|b| b.addr == addr && !b.close_ordered())
            })
    }

    /// Whether a new version of this tunnel may name `remotes`. A backend being removed whose
    /// connections are to be closed at a deadline cannot come back (the reactors would close
    /// its new connections too), nor may a second backend stand beside it for the same server:
    /// its address is refused until it is gone.
    pub(crate) fn can_take_back(&self, remotes: &[SocketAddr]) -> Result<(), Error> {
        for addr in remotes {
            if let Some(leaving) = self.leaving_backend(*addr).filter(|b| b.close_ordered()) {
                return Err(Error::BackendLeaving {
                    tunnel: self.local,
                    backend: *addr,
                    open: leaving.open(),
                });
            }
        }
        Ok(())
    }

    /// The backend at `addr` that was removed from the tunnel and still holds connections.
    pub(crate) fn leaving_backend(&self, addr: SocketAddr) -> Option<&Arc<Backend>> {
        self.leaving.iter().find(|b| b.addr == addr && b.open() > 0)
    }

    /// The spec's remote for backend `addr`, if the tunnel has it.
    pub(crate) fn remote(&self, addr: SocketAddr) -> Option<(usize, &Remote)> {
        self.balancer
            .backends
            .iter()
            .position(|b| b.addr == addr)
            .map(|i| (i, &self.spec.remotes[i]))
    }
}

impl std::fmt::Debug for Tunnel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tunnel")
            .field("id", &self.id)
            .field("local", &self.local)
            .field("backends", &self.balancer.backends)
            .finish()
    }
}

#[cfg(test)]
impl Tunnel {
    /// A tunnel built from `spec` (addresses only), after `previous`, for unit tests
    /// elsewhere.
    pub(crate) fn for_test(spec: &str, previous: Option<&Tunnel>) -> Tunnel {
        let spec: TunnelSpec = spec.parse().unwrap();
        let remotes: Vec<SocketAddr> = spec
            .remotes
            .iter()
            .map(|r| r.endpoint.resolve().unwrap())
            .collect();
        Tunnel::build(
            Lineage::for_test(),
            &spec,
            &remotes,
            &ProxyConfig::default(),
            previous,
            Loaded::default(),
        )
        .unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh tunnel identity on 127.0.0.1:1, for building tunnels in tests.
    fn test_lineage() -> Lineage {
        Lineage::for_test()
    }
    use crate::balance::backend::Health;
    use crate::spec::MAX_ATTEMPTS;

    fn build(spec: &str, previous: Option<&Tunnel>) -> Tunnel {
        Tunnel::for_test(spec, previous)
    }

    /// A tunnel with no rules admits everyone; with rules, their verdict stands.
    #[test]
    fn admission_is_the_rules_verdict() {
        struct OnlyLoopback;
        impl Admission for OnlyLoopback {
            fn admit(&self, client: SocketAddr) -> Verdict {
                if client.ip().is_loopback() {
                    Verdict::Admit
                } else {
                    Verdict::Refuse(crate::conn::close::CloseReason::TunnelClosed)
                }
            }
        }
        let mut tunnel = build("127.0.0.1:0=127.0.0.1:9001", None);
        let far: SocketAddr = "192.0.2.1:5000".parse().unwrap();
        assert_eq!(tunnel.admit(far), Verdict::Admit);
        tunnel.admission = Some(Arc::new(OnlyLoopback));
        assert_eq!(
            tunnel.admit(far),
            Verdict::Refuse(crate::conn::close::CloseReason::TunnelClosed)
        );
        assert_eq!(
            tunnel.admit("127.0.0.1:5000".parse().unwrap()),
            Verdict::Admit
        );
    }

    /// Regression: a new weight or limit made a new backend for the same address, so the old
    /// and the new one each counted toward their own limit, and health started over.
    #[test]
    fn a_new_weight_or_limit_keeps_the_backend() {
        let first = build("127.0.0.1:1=127.0.0.1:9[max_conns=5]", None);
        let backend = first.balancer.backends[0].clone();
        let passive = first.balancer.passive;
        backend
            .try_reserve(std::time::Instant::now(), &passive)
            .unwrap();
        backend.set_health(Health::Down);

        let second = build("127.0.0.1:1=127.0.0.1:9*3[max_conns=7]", Some(&first));
        let kept = &second.balancer.backends[0];
        assert!(Arc::ptr_eq(kept, &backend), "the same backend goes on");
        assert_eq!((kept.weight(), kept.max_conns()), (3, Some(7)));
        assert_eq!(kept.open(), 1, "its connection still counts");
        assert_eq!(kept.health(), Health::Down, "its health goes on");
        assert!(second.leaving.is_empty());
    }

    /// The default is every backend once, but no more than an explicit `attempts` may be.
    #[test]
    fn default_attempts_are_the_backend_count_up_to_the_maximum() {
        let spec = |n: u16| {
            let remotes: Vec<String> = (0..n).map(|i| format!("127.0.0.1:{}", 1000 + i)).collect();
            format!("127.0.0.1:1={}", remotes.join(","))
        };
        assert_eq!(build(&spec(1), None).attempts, 1);
        assert_eq!(build(&spec(3), None).attempts, 3);
        assert_eq!(build(&spec(16), None).attempts, 16);
        assert_eq!(build(&spec(17), None).attempts, MAX_ATTEMPTS);
        assert_eq!(build(&spec(40), None).attempts, MAX_ATTEMPTS);
        assert_eq!(MAX_ATTEMPTS, 16);
        let explicit = build(&format!("{}[attempts=2]", spec(40)), None);
        assert_eq!(explicit.attempts, 2);
    }

    /// Removing a backend from a fan-out tunnel whose `min_live` counted it: the new version
    /// goes on with all the remotes left as its `min_live` (a new spec is refused it, a
    /// removal is not).
    #[test]
    fn a_removal_below_min_live_still_builds() {
        let mut spec: TunnelSpec = "127.0.0.1:1=127.0.0.1:9,127.0.0.1:10[mode=fanout,min_live=2]"
            .parse()
            .unwrap();
        spec.remotes.pop();
        let remotes = ["127.0.0.1:9".parse().unwrap()];
        let lineage = test_lineage();
        let tunnel = Tunnel::build(
            lineage,
            &spec,
            &remotes,
            &ProxyConfig::default(),
            None,
            Loaded::default(),
        )
        .expect("a removal is not refused");
        assert_eq!(tunnel.fanout.map(|f| f.min_live), Some(1));
    }

    /// A check of a TLS backend speaks TLS, its PROXY header in the clear ahead of the
    /// ClientHello and its bytes inside; `check_tls=off` checks over plain TCP, the header
    /// ahead of the bytes.
    #[test]
    fn checks_of_tls_backends_speak_tls_with_the_proxy_header_in_the_clear() {
        let build_tls = |options: &str| {
            let spec: TunnelSpec = format!(
                "127.0.0.1:1=127.0.0.1:9,127.0.0.1:10[backend_tls=on,tls_verify=off,check=on,\
                 send_proxy=v1,check_send_proxy=on,check_send=PING{options}]"
            )
            .parse()
            .unwrap();
            let remotes = [
                "127.0.0.1:9".parse().unwrap(),
                "127.0.0.1:10".parse().unwrap(),
            ];
            let loaded = Loaded::read(&spec).unwrap();
            let config = ProxyConfig::default();
            Tunnel::build(test_lineage(), &spec, &remotes, &config, None, loaded).unwrap()
        };
        let check = build_tls("").check_of(1).unwrap();
        let tls = check.tls.as_ref().expect("over TLS");
        assert_eq!(tls.preface, b"PROXY UNKNOWN\r\n");
        assert_eq!(
            tls.name,
            rustls::pki_types::ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into())
        );
        assert_eq!(check.send.as_deref(), Some(&b"PING"[..]));

        let check = build_tls(",check_tls=off").check_of(0).unwrap();
        assert!(check.tls.is_none());
        assert_eq!(check.send.as_deref(), Some(&b"PROXY UNKNOWN\r\nPING"[..]));
    }
}
