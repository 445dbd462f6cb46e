//! The runtime API: open, re-open (change), close, and binding errors, on a running proxy.

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};

use porxy_core::{CloseMode, Endpoint, Error, Remote, RemoteFault, TunnelSpec};

use crate::support::client::{connect, expect_reset, refused, round_trip, IO_TIMEOUT};
use crate::support::proxy::{builder, spec_to, start, start_to, tunnel, wait_all_closed};
use crate::support::Backend;

/// Reads the greeting a [`Backend::greeting_echo`] sends first.
fn greeting(stream: &mut TcpStream) -> String {
    let mut buf = [0u8; 1];
    stream.read_exact(&mut buf).expect("a greeting");
    String::from_utf8_lossy(&buf).into_owned()
}

#[test]
fn open_at_runtime_relays() {
    let first = Backend::echo();
    let second = Backend::echo();
    let (proxy, first_local) = start_to(first.addr());
    let opened = proxy.handle().open(&spec_to(second.addr())).unwrap();
    assert!(!opened.replaced);
    assert_ne!(opened.local.port(), 0, "the real port is reported");
    assert_ne!(opened.local, first_local);
    assert_eq!(opened.remotes, vec![second.addr()]);
    round_trip(&mut connect(opened.local), b"through the runtime tunnel");
    round_trip(&mut connect(first_local), b"through the first tunnel");
    assert_eq!((first.accepted(), second.accepted()), (1, 1));
}

/// Re-opening a bound address with another remote changes it for new connections only.
#[test]
fn reopen_changes_remote_for_new_connections_only() {
    let old = Backend::greeting_echo(b"A");
    let new = Backend::greeting_echo(b"B");
    let (proxy, local) = start_to(old.addr());
    let mut established = connect(local);
    assert_eq!(greeting(&mut established), "A");

    let changed = TunnelSpec::new(local, [Endpoint::Addr(new.addr())]);
    let opened = proxy.handle().open(&changed).unwrap();
    assert!(
        opened.replaced,
        "the tunnel on {local} is changed, not opened anew"
    );
    assert_eq!(opened.local, local);

    let mut fresh = connect(local);
    assert_eq!(
        greeting(&mut fresh),
        "B",
        "a new connection reaches the new remote"
    );
    round_trip(&mut fresh, b"to the new backend");
    round_trip(&mut established, b"still to the old backend");
    assert_eq!((old.accepted(), new.accepted()), (1, 1));
    let status = proxy.handle().status();
    let tunnel = status.tunnel(local).expect("the tunnel is listed");
    assert_eq!(tunnel.remotes, vec![new.addr()]);
    assert_eq!(tunnel.open, 2);
}

/// Closing with `KeepConnections`: the port refuses new connections at once, an established
/// connection goes on relaying.
#[test]
fn close_keep_connections_refuses_new_keeps_old() {
    let echo = Backend::echo();
    let (proxy, local) = start_to(echo.addr());
    let handle = proxy.handle();
    let mut established = connect(local);
    round_trip(&mut established, b"before the close");

    handle.close(local, CloseMode::KeepConnections).unwrap();
    assert!(
        refused(local),
        "{local} refuses connections once close returns"
    );
    assert!(handle.status().tunnel(local).is_none());
    round_trip(&mut established, b"after the close");
    assert_eq!(handle.status().open_connections(), 1);
    assert!(matches!(
        handle.close(local, CloseMode::KeepConnections),
        Err(Error::NoSuchTunnel(addr)) if addr == local
    ));
}

/// Closing with `CloseConnections` resets the established connections.
#[test]
fn close_connections_resets_established() {
    let echo = Backend::echo();
    let (proxy, local) = start_to(echo.addr());
    let handle = proxy.handle();
    let mut established = connect(local);
    round_trip(&mut established, b"before the close");

    handle.close(local, CloseMode::CloseConnections).unwrap();
    assert!(refused(local));
    expect_reset(&mut established, IO_TIMEOUT / 5);
    wait_all_closed(&handle);
}

/// Opening on a port another socket holds fails with `Error::Bind` naming the address; the
/// proxy goes on relaying on its other tunnels.
#[test]
fn open_on_port_in_use_fails_with_bind_error() {
    let echo = Backend::echo();
    let (proxy, local) = start_to(echo.addr());
    let squatter = TcpListener::bind("127.0.0.1:0").unwrap();
    let taken: SocketAddr = squatter.local_addr().unwrap();

    let err = proxy
        .handle()
        .open(&TunnelSpec::new(taken, [Endpoint::Addr(echo.addr())]))
        .expect_err("the port is taken");
    match &err {
        Error::Bind { addr, source } => {
            assert_eq!(*addr, taken);
            assert_eq!(source.kind(), std::io::ErrorKind::AddrInUse);
        }
        other => panic!("expected Error::Bind, got {other:?}"),
    }
    assert!(
        err.to_string().contains(&taken.to_string()),
        "the message names the address: {err}"
    );
    assert!(proxy.handle().status().tunnel(taken).is_none());
    round_trip(&mut connect(local), b"the other tunnel still works");
}

/// `close` of a tunnel leaves the other tunnels of the proxy alone.
#[test]
fn close_leaves_other_tunnels_alone() {
    let echo = Backend::echo();
    let proxy = start(
        builder()
            .tunnel(spec_to(echo.addr()))
            .tunnel(spec_to(echo.addr())),
    );
    let (closed, kept) = (proxy.bound()[0], proxy.bound()[1]);
    proxy
        .handle()
        .close(closed, CloseMode::CloseConnections)
        .unwrap();
    assert!(refused(closed));
    round_trip(&mut connect(kept), b"the other tunnel");
}

/// Regression: the API took remotes no connect can reach as one server (port 0, the
/// unspecified, broadcast and multicast addresses) in `open` and `add_backend`, where the SPEC
/// parser cannot see them (built in code, or a host name). Refused with the tunnel and address.
#[test]
fn remotes_no_server_can_be_are_refused_by_the_api() {
    let echo = Backend::echo();
    let (proxy, local) = start_to(echo.addr());
    let handle = proxy.handle();
    let cases: &[(&str, RemoteFault)] = &[
        ("127.0.0.1:0", RemoteFault::PortZero),
        ("0.0.0.0:80", RemoteFault::Unspecified),
        ("[::]:80", RemoteFault::Unspecified),
        ("255.255.255.255:80", RemoteFault::Broadcast),
        ("224.0.0.1:80", RemoteFault::Multicast),
        ("[ff02::1]:80", RemoteFault::Multicast),
    ];
    for (remote, want) in cases {
        let remote: SocketAddr = remote.parse().unwrap();
        let err = handle
            .open(&spec_to(remote))
            .expect_err("a remote no server can be");
        assert!(
            matches!(&err, Error::UnusableRemote { remote: r, fault, .. } if *r == remote && fault == want),
            "open with {remote}: {err:?}"
        );
        assert!(err.to_string().contains(&remote.to_string()), "{err}");
        let err = handle
            .add_backend(local, Remote::from(Endpoint::Addr(remote)))
            .expect_err("a backend no server can be");
        assert!(
            matches!(&err, Error::UnusableRemote { tunnel, remote: r, .. } if *r == remote && *tunnel == local.to_string()),
            "add_backend with {remote}: {err:?}"
        );
    }
    assert_eq!(handle.status().tunnels.len(), 1, "nothing opened");
    assert_eq!(tunnel(&handle, local).remotes.len(), 1, "nothing added");
    round_trip(&mut connect(local), b"the tunnel goes on as it was");
}

/// Regression: after `CLOSE L` (connections go on) and `OPEN L`, `CLOSE L NOW` reset only the
/// new tunnel's connections; those of the earlier tunnel on L could never be cut. Now it
/// reaches every connection that came in on L.
#[test]
fn close_now_also_resets_the_connections_of_earlier_tunnels_on_the_address() {
    let echo = Backend::echo();
    let (proxy, local) = start_to(echo.addr());
    let handle = proxy.handle();
    let mut earlier = connect(local);
    round_trip(&mut earlier, b"through the first tunnel");
    handle.close(local, CloseMode::KeepConnections).unwrap();
    round_trip(&mut earlier, b"goes on after the close");

    let reopened = handle
        .open(&TunnelSpec::new(local, [Endpoint::Addr(echo.addr())]))
        .unwrap();
    assert_eq!((reopened.local, reopened.replaced), (local, false));
    let mut later = connect(local);
    round_trip(&mut later, b"through the second tunnel");

    handle.close(local, CloseMode::CloseConnections).unwrap();
    expect_reset(&mut later, IO_TIMEOUT / 5);
    expect_reset(&mut earlier, IO_TIMEOUT / 5);
    wait_all_closed(&handle);
}

/// Regression: `CLOSE L NOW` on an L with no tunnel left but connections still going said "no
/// tunnel listens on L" and left them be. It resets them; with none left, the error stands.
#[test]
fn close_now_without_a_tunnel_resets_the_connections_left_on_the_address() {
    let echo = Backend::echo();
    let (proxy, local) = start_to(echo.addr());
    let handle = proxy.handle();
    let mut left = connect(local);
    round_trip(&mut left, b"before the close");
    handle.close(local, CloseMode::KeepConnections).unwrap();
    round_trip(&mut left, b"goes on after the close");

    let closed = handle.close(local, CloseMode::CloseConnections).unwrap();
    assert_eq!((closed.listening, closed.reset), (false, 1), "{closed:?}");
    expect_reset(&mut left, IO_TIMEOUT / 5);
    wait_all_closed(&handle);
    assert!(matches!(
        handle.close(local, CloseMode::CloseConnections),
        Err(Error::NoSuchTunnel(addr)) if addr == local
    ));
}
