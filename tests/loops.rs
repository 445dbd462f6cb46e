//! Regression: a tunnel whose remote is one of porxy's own listening sockets (`OPEN P=P`, or an
//! address that reaches one) was accepted. One client then filled `max_connections` with a
//! chain of self-connections, which rebuilt itself from the backlog after every timeout, and
//! every other tunnel stayed dead until `CLOSE P NOW`. Now such a remote is refused, and so is
//! a listener that such a remote would reach, wherever either enters: open, change, start,
//! reload, a backend added.
//!
//! Nothing here binds a wildcard address: a wildcard listener is judged before it is bound
//! (and refused then), and what a wildcard reaches is checked through `reached_listener`, the
//! same rule the proxy applies to its bound sockets.

use std::net::{IpAddr, SocketAddr};

use porxy_core::{Endpoint, Error, Remote, TunnelSpec};

use crate::support::client::{connect, round_trip};
use crate::support::control::{porxy_with_control, ControlClient};
use crate::support::proxy::{builder, start_to, tunnel};
use crate::support::Backend;

/// The three addresses of an [`Error::SelfLoop`], inside an [`Error::Tunnel`] or not.
#[track_caller]
fn self_loop(err: &Error) -> (SocketAddr, SocketAddr, SocketAddr) {
    match err {
        Error::SelfLoop {
            tunnel,
            remote,
            listener,
        } => (*tunnel, *remote, *listener),
        Error::Tunnel { source, .. } => self_loop(source),
        other => panic!("expected Error::SelfLoop, got {other:?}"),
    }
}

fn spec(local: &str, remote: SocketAddr) -> TunnelSpec {
    let local: SocketAddr = local.parse().unwrap();
    TunnelSpec::new(local, [Endpoint::Addr(remote)])
}

/// A free port on 127.0.0.1, from a socket bound there and closed again.
fn free_port() -> u16 {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    probe.local_addr().unwrap().port()
}

#[test]
fn a_tunnel_to_its_own_or_another_listen_address_is_refused() {
    let echo = Backend::echo();
    let (proxy, local) = start_to(echo.addr());
    let handle = proxy.handle();

    let err = handle.open(&spec(&local.to_string(), local)).unwrap_err();
    assert_eq!(self_loop(&err), (local, local, local));
    assert_eq!(
        err.to_string(),
        format!(
            "tunnel {local} would forward to porxy itself: its remote {local} reaches porxy's \
             listener {local}; a remote must be a server elsewhere"
        )
    );
    let err = handle.open(&spec("127.0.0.1:0", local)).unwrap_err();
    let (_, remote, listener) = self_loop(&err);
    assert_eq!((remote, listener), (local, local));
    let err = handle
        .add_backend(local, Remote::from(Endpoint::Addr(local)))
        .unwrap_err();
    assert_eq!(self_loop(&err), (local, local, local));

    assert_eq!(handle.status().tunnels.len(), 1, "nothing opened");
    assert_eq!(tunnel(&handle, local).remotes, vec![echo.addr()]);
    round_trip(&mut connect(local), b"the tunnel goes on as it was");
}

/// A tunnel asked on port 0 is judged by the port it got: here an inherited socket, whose port
/// the remote names.
#[test]
fn a_tunnel_on_port_0_is_judged_by_the_port_it_got() {
    let socket = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let got = socket.local_addr().unwrap();
    let err = builder()
        .inherit("127.0.0.1:0".parse().unwrap(), socket)
        .tunnel(spec("127.0.0.1:0", got))
        .start()
        .map(|_| ())
        .unwrap_err();
    assert_eq!(self_loop(&err), (got, got, got));
}

/// At start, in either order: a remote on the port of a tunnel opened later is refused too.
#[test]
fn a_listener_that_an_earlier_tunnels_remote_reaches_is_refused_at_start() {
    let echo = Backend::echo();
    let port = free_port();
    let target = SocketAddr::from(([127, 0, 0, 1], port));
    let err = builder()
        .tunnel(spec("127.0.0.1:0", target))
        .tunnel(spec(&target.to_string(), echo.addr()))
        .start()
        .map(|_| ())
        .unwrap_err();
    let (_, remote, listener) = self_loop(&err);
    assert_eq!((remote, listener), (target, target));
}

/// A wildcard listener is reached by every address of this machine on its port, loopback
/// ones included, and by no other machine's.
#[test]
fn a_wildcard_listener_is_reached_by_loopback_and_the_machines_addresses() {
    let port = free_port();
    let wildcard = SocketAddr::from(([0, 0, 0, 0], port));
    for ip in [IpAddr::from([127, 0, 0, 1]), IpAddr::from([127, 0, 0, 2])] {
        let remote = SocketAddr::new(ip, port);
        assert_eq!(
            porxy_core::reached_listener(remote, &[wildcard]),
            Some(wildcard),
            "{remote}"
        );
    }
    // TEST-NET-2: never this machine's; another port: another listener.
    let elsewhere = SocketAddr::from(([198, 51, 100, 7], port));
    assert_eq!(porxy_core::reached_listener(elsewhere, &[wildcard]), None);
    let other_port = SocketAddr::from(([127, 0, 0, 1], port.wrapping_add(1).max(1)));
    assert_eq!(porxy_core::reached_listener(other_port, &[wildcard]), None);
}

/// The other way round: a wildcard (or a plain) listener on the port of a remote that points at
/// this machine is refused before it is bound, whichever tunnel the remote belongs to.
#[test]
fn a_listener_on_the_port_of_a_remote_on_this_machine_is_refused() {
    let echo = Backend::echo();
    let (proxy, _) = start_to(echo.addr());
    let handle = proxy.handle();
    let target = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let pointing = handle.open(&spec("127.0.0.1:0", target)).unwrap().local;

    let wildcard = SocketAddr::from(([0, 0, 0, 0], target.port()));
    for listen in [wildcard, target] {
        let err = handle
            .open(&spec(&listen.to_string(), echo.addr()))
            .unwrap_err();
        assert_eq!(self_loop(&err), (pointing, target, listen), "{listen}");
    }
    assert_eq!(handle.status().tunnels.len(), 2, "nothing more opened");
}

/// A reload is judged whole: a new tunnel to a kept one's address, a kept one changed to
/// itself, or a new listener a kept remote reaches, are refused, and nothing changes.
#[test]
fn a_reload_that_would_loop_changes_nothing() {
    let echo = Backend::echo();
    let (proxy, local) = start_to(echo.addr());
    let handle = proxy.handle();
    let kept = spec(&local.to_string(), echo.addr());
    let target = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let cases = [
        vec![kept.clone(), spec("127.0.0.1:0", local)],
        vec![spec(&local.to_string(), local)],
        vec![
            spec(&local.to_string(), target),
            spec(&target.to_string(), echo.addr()),
        ],
    ];
    for config in cases {
        let err = handle.reload(&config).unwrap_err();
        let (_, remote, listener) = self_loop(&err);
        assert_eq!(remote, listener, "{config:?}: {err}");
        assert!(
            err.to_string().starts_with("tunnel `"),
            "names the spec: {err}"
        );
    }
    let status = handle.status();
    assert_eq!(status.tunnels.len(), 1);
    assert_eq!(tunnel(&handle, local).remotes, vec![echo.addr()]);
    round_trip(&mut connect(local), b"the tunnel goes on as it was");
}

/// Through the control socket, `OPEN P=P` gets an `ERR:` that says why.
#[test]
fn open_p_equals_p_over_control_is_refused_with_the_reason() {
    let echo = Backend::echo();
    let (_porxy, control_addr) = porxy_with_control(&[]);
    let mut control = ControlClient::connect(control_addr);
    let opened = control.cmd(&format!("OPEN 127.0.0.1:0={}", echo.addr()));
    let local = crate::support::control::opened_addr(&opened);
    assert_eq!(
        control.cmd(&format!("OPEN {local}={local}")),
        format!(
            "ERR: tunnel {local} would forward to porxy itself: its remote {local} reaches \
             porxy's listener {local}; a remote must be a server elsewhere"
        )
    );
    round_trip(&mut connect(local), b"still to the echo server");
}
