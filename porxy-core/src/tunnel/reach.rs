//! Whether a remote reaches one of porxy's own listening sockets: a tunnel that would forward
//! to porxy itself.
//!
//! Such a tunnel never reaches a server: each client's upstream connect comes back as a new
//! client of porxy, which connects again, and so on, until the chain fills `max_connections`,
//! rebuilds itself from the listen backlog after every timeout, and leaves every other tunnel
//! starved. So a remote that reaches a listener of the same proxy is refused, always, whichever
//! tunnel listens there (a chain through porxy itself is never needed: forward to the other
//! tunnel's remotes instead).
//!
//! A remote reaches a listening socket when its port is the socket's (the bound port: a tunnel
//! opened on port 0 is judged by the port it got) and
//! - its address is the socket's, or
//! - the socket listens on every address (`0.0.0.0`, `[::]`) of the remote's family, and the
//!   remote's address is one of this machine's ([`LocalAddrs`]). porxy binds IPv6 sockets
//!   IPv6-only, so `[::]` is reached by IPv4 addresses only through a dual-stack socket, which
//!   only an inherited one can be ([`OwnListener::dual_stack`]).
//!
//! An IPv4-mapped IPv6 remote (`[::ffff:127.0.0.1]`) is judged as the IPv4 address it
//! connects to. A loop through another proxy (porxy → HAProxy → porxy) cannot be seen from
//! here: that one is the operator's to avoid.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};

use mio::net::TcpListener;

/// One of porxy's listening sockets, as a remote could reach it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OwnListener {
    /// The bound address (the real port, when port 0 was asked for).
    pub(crate) addr: SocketAddr,
    /// An IPv6 socket that takes IPv4 clients too (IPV6_V6ONLY off).
    pub(crate) dual_stack: bool,
}

impl OwnListener {
    /// What `socket`, bound and listening, is reached by.
    pub(crate) fn of(socket: &TcpListener) -> io::Result<OwnListener> {
        let addr = socket.local_addr()?;
        let dual_stack = addr.is_ipv6() && !socket2::SockRef::from(socket).only_v6()?;
        Ok(OwnListener { addr, dual_stack })
    }

    /// A socket porxy is about to bind on `addr` (IPv6 ones IPv6-only, see `handle::bind`).
    pub(crate) fn to_bind(addr: SocketAddr) -> OwnListener {
        OwnListener {
            addr,
            dual_stack: false,
        }
    }

    /// Whether a connect to `remote` would arrive on this socket; `local` says which addresses
    /// are this machine's.
    pub(crate) fn reached_by(&self, remote: SocketAddr, local: &mut impl Locality) -> bool {
        let ip = remote.ip().to_canonical();
        if remote.port() != self.addr.port() {
            return false;
        }
        let listening = self.addr.ip();
        if ip == listening.to_canonical() {
            return true;
        }
        let every_address = match listening {
            IpAddr::V4(v4) => v4.is_unspecified() && ip.is_ipv4(),
            IpAddr::V6(v6) => v6.is_unspecified() && (ip.is_ipv6() || self.dual_stack),
        };
        every_address && local.is_local(ip)
    }
}

/// The listen address, of `listens`, that a connect to `remote` would arrive on: the rule
/// `open`, `reload` and `add_backend` apply, for a configuration checked before anything binds
/// (the porxy binary's `--check`). A listen address on port 0 is skipped: its port is known
/// only once bound, and is checked then. Listening sockets are taken as porxy binds them (IPv6
/// ones IPv6-only).
pub fn reached_listener(remote: SocketAddr, listens: &[SocketAddr]) -> Option<SocketAddr> {
    let mut local = LocalAddrs::default();
    listens
        .iter()
        .filter(|listen| listen.port() != 0)
        .map(|listen| OwnListener::to_bind(*listen))
        .find(|listener| listener.reached_by(remote, &mut local))
        .map(|listener| listener.addr)
}

/// Tells whether an address is one of this machine's.
pub(crate) trait Locality {
    /// True when a connect to `ip` stays on this machine.
    fn is_local(&mut self, ip: IpAddr) -> bool;
}

/// The machine's own answer to "is this address mine?", asked once per address per check.
///
/// Loopback addresses (127.0.0.0/8, `::1`) and the unspecified ones are this machine's. For
/// another address, the kernel is asked which route a packet to it would take, the way a
/// connect would: a UDP socket is connected to it (nothing is sent) and keeps the source
/// address the kernel picked. For an address of this machine the route is local and the source
/// is that very address. Anything that fails counts as not local.
#[derive(Debug, Default)]
pub(crate) struct LocalAddrs {
    known: Vec<(IpAddr, bool)>,
}

impl Locality for LocalAddrs {
    fn is_local(&mut self, ip: IpAddr) -> bool {
        if let Some((_, local)) = self.known.iter().find(|(known, _)| *known == ip) {
            return *local;
        }
        let local = ip.is_loopback() || ip.is_unspecified() || routed_to_itself(ip);
        self.known.push((ip, local));
        local
    }
}

/// Whether the kernel would send a packet for `ip` from `ip` itself: a local route.
fn routed_to_itself(ip: IpAddr) -> bool {
    let any = match ip {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    let Ok(probe) = UdpSocket::bind(SocketAddr::new(any, 0)) else {
        return false;
    };
    // The port is irrelevant: connecting a UDP socket only picks its route and source.
    probe
        .connect(SocketAddr::new(ip, 9))
        .and_then(|()| probe.local_addr())
        .is_ok_and(|source| source.ip() == ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A machine whose own addresses are the loopback ones and those listed.
    struct Machine(Vec<IpAddr>);

    impl Locality for Machine {
        fn is_local(&mut self, ip: IpAddr) -> bool {
            ip.is_loopback() || self.0.contains(&ip)
        }
    }

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn listener(addr: &str) -> OwnListener {
        OwnListener::to_bind(sa(addr))
    }

    #[test]
    fn a_listener_is_reached_by_its_own_address_only_on_its_port() {
        let mut machine = Machine(vec!["10.0.0.5".parse().unwrap()]);
        let l = listener("127.0.0.1:8000");
        assert!(l.reached_by(sa("127.0.0.1:8000"), &mut machine));
        assert!(l.reached_by(sa("[::ffff:127.0.0.1]:8000"), &mut machine));
        assert!(!l.reached_by(sa("127.0.0.1:8001"), &mut machine));
        assert!(!l.reached_by(sa("127.0.0.2:8000"), &mut machine));
        assert!(!l.reached_by(sa("10.0.0.5:8000"), &mut machine));
        let l = listener("10.0.0.5:8000");
        assert!(l.reached_by(sa("10.0.0.5:8000"), &mut machine));
        assert!(!l.reached_by(sa("127.0.0.1:8000"), &mut machine));
    }

    #[test]
    fn a_wildcard_listener_is_reached_by_every_address_of_the_machine_in_its_family() {
        let mut machine = Machine(vec![
            "10.0.0.5".parse().unwrap(),
            "fd00::5".parse().unwrap(),
        ]);
        let v4 = listener("0.0.0.0:8000");
        for mine in ["127.0.0.1:8000", "127.0.0.9:8000", "10.0.0.5:8000"] {
            assert!(v4.reached_by(sa(mine), &mut machine), "{mine}");
        }
        for other in [
            "10.0.0.6:8000",
            "10.0.0.5:8001",
            "[::1]:8000",
            "[fd00::5]:8000",
        ] {
            assert!(!v4.reached_by(sa(other), &mut machine), "{other}");
        }
        let v6 = listener("[::]:8000");
        for mine in ["[::1]:8000", "[fd00::5]:8000"] {
            assert!(v6.reached_by(sa(mine), &mut machine), "{mine}");
        }
        for other in ["127.0.0.1:8000", "10.0.0.5:8000", "[fd00::6]:8000"] {
            assert!(
                !v6.reached_by(sa(other), &mut machine),
                "IPv6-only: {other}"
            );
        }
        let dual = OwnListener {
            addr: sa("[::]:8000"),
            dual_stack: true,
        };
        for mine in ["127.0.0.1:8000", "10.0.0.5:8000", "[::1]:8000"] {
            assert!(
                dual.reached_by(sa(mine), &mut machine),
                "dual stack: {mine}"
            );
        }
        assert!(!dual.reached_by(sa("10.0.0.6:8000"), &mut machine));
    }

    #[test]
    fn the_kernel_says_loopback_and_own_addresses_are_local() {
        let mut local = LocalAddrs::default();
        assert!(local.is_local("127.0.0.1".parse().unwrap()));
        assert!(local.is_local("127.0.0.2".parse().unwrap()));
        assert!(local.is_local("::1".parse().unwrap()));
        // TEST-NET-2 is never assigned to a machine.
        assert!(!local.is_local("198.51.100.7".parse().unwrap()));
        // The source address the kernel picks toward elsewhere is, itself, this machine's.
        let probe = UdpSocket::bind("0.0.0.0:0").unwrap();
        if let Ok(source) = probe
            .connect("198.51.100.7:9")
            .and_then(|()| probe.local_addr())
        {
            assert!(local.is_local(source.ip()), "{source}");
        }
    }

    /// The check before binding: fixed ports only, the same rule as for bound sockets.
    #[test]
    fn reached_listener_names_the_listen_address_reached() {
        let listens = [sa("127.0.0.1:8000"), sa("0.0.0.0:8001"), sa("127.0.0.1:0")];
        assert_eq!(
            reached_listener(sa("127.0.0.1:8000"), &listens),
            Some(listens[0])
        );
        assert_eq!(
            reached_listener(sa("127.0.0.2:8001"), &listens),
            Some(listens[1])
        );
        assert_eq!(reached_listener(sa("127.0.0.1:8002"), &listens), None);
        // Port 0 is known only once bound.
        assert_eq!(reached_listener(sa("127.0.0.1:0"), &listens), None);
        assert_eq!(
            reached_listener(sa("[::1]:8001"), &listens),
            None,
            "IPv6-only"
        );
    }
}
