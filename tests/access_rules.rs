//! Access rules (`allow`, `deny`) and who may send a PROXY header (`proxy_from`): clients from
//! several loopback addresses (127.0.0.0/8 is all loopback), judged on their real address
//! before any backend is touched; refusals are counted as `denied`.

use std::io::Write;
use std::net::{IpAddr, Shutdown, SocketAddr};
use std::time::Duration;

use crate::support::client::{read_until_end, round_trip, try_connect_from, End};
use crate::support::control::{opened_addr, porxy_with_control, ControlClient};
use crate::support::process::{Porxy, TempDir};
use crate::support::{wait_until, Backend};

const WAIT: Duration = Duration::from_secs(10);

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn porxy(backend: SocketAddr, options: &str) -> Porxy {
    let tunnel = format!("127.0.0.1:0={backend}[{options}]");
    Porxy::start(&["--tunnel", &tunnel])
}

/// From `source`, sends `first` through `tunnel`; true if it came back (echoed) whole.
fn served(source: &str, tunnel: SocketAddr, first: &[u8], echoed: &[u8]) -> bool {
    // Refused at once, the connection may already be reset when the connect returns.
    let Ok(mut stream) = try_connect_from(ip(source), tunnel) else {
        return false;
    };
    if stream.write_all(first).is_err() {
        return false;
    }
    let _ = stream.shutdown(Shutdown::Write);
    let ending = read_until_end(&mut stream);
    ending.end == End::Eof && ending.bytes == echoed
}

/// Whether `porxy` has logged a refusal.
fn denied_logged(porxy: &Porxy) -> bool {
    porxy.stderr().contains("reason=denied")
}

#[test]
fn the_most_specific_rule_decides_and_a_refusal_touches_no_backend() {
    let backend = Backend::echo();
    let porxy = porxy(
        backend.addr(),
        "allow=127.0.0.0/8,deny=127.0.0.3;127.0.0.4/31",
    );
    let tunnel = porxy.tunnel("cli-1");
    assert!(served("127.0.0.2", tunnel, b"ping", b"ping"));
    assert_eq!(backend.accepted(), 1);
    for refused in ["127.0.0.3", "127.0.0.4", "127.0.0.5"] {
        assert!(!served(refused, tunnel, b"ping", b"ping"), "{refused}");
    }
    assert_eq!(
        backend.accepted(),
        1,
        "no backend was contacted for a refused client"
    );
    wait_until(WAIT, "the refusal logged", || denied_logged(&porxy));
    assert!(served("127.0.0.6", tunnel, b"still", b"still"));
}

#[test]
fn rules_judge_the_client_a_proxy_header_names() {
    let backend = Backend::echo();
    let porxy = porxy(backend.addr(), "accept_proxy=v1,deny=192.0.2.0/24");
    let tunnel = porxy.tunnel("cli-1");
    let header = |client: &str| {
        format!(
            "PROXY TCP4 {client} {} 4711 {}\r\nhello",
            tunnel.ip(),
            tunnel.port()
        )
    };
    assert!(!served(
        "127.0.0.2",
        tunnel,
        header("192.0.2.7").as_bytes(),
        b"hello"
    ));
    assert!(served(
        "127.0.0.2",
        tunnel,
        header("198.51.100.1").as_bytes(),
        b"hello"
    ));
    assert_eq!(backend.accepted(), 1);
}

#[test]
fn only_peers_in_proxy_from_may_send_a_header() {
    let backend = Backend::echo();
    let porxy = porxy(backend.addr(), "accept_proxy=v1,proxy_from=127.0.0.2");
    let tunnel = porxy.tunnel("cli-1");
    let header = format!(
        "PROXY TCP4 198.51.100.1 {} 4711 {}\r\nhello",
        tunnel.ip(),
        tunnel.port()
    );
    assert!(served("127.0.0.2", tunnel, header.as_bytes(), b"hello"));
    assert!(!served("127.0.0.3", tunnel, header.as_bytes(), b"hello"));
    assert_eq!(backend.accepted(), 1);
    wait_until(WAIT, "the refusal logged", || denied_logged(&porxy));
}

#[test]
fn rules_change_at_runtime_for_new_connections() {
    let backend = Backend::echo();
    let (porxy, control) = porxy_with_control(&[]);
    let mut control = ControlClient::connect(control);
    let reply = control.cmd(&format!(
        "OPEN 127.0.0.1:0={}[deny=127.0.0.3]",
        backend.addr()
    ));
    let tunnel = opened_addr(&reply);
    assert!(served("127.0.0.2", tunnel, b"a", b"a"));
    assert!(!served("127.0.0.3", tunnel, b"b", b"b"));
    // Held across the change: an established connection is not judged again.
    let mut held = try_connect_from(ip("127.0.0.2"), tunnel).unwrap();
    round_trip(&mut held, b"held");
    let reply = control.cmd(&format!("OPEN {tunnel}={}[deny=127.0.0.2]", backend.addr()));
    assert!(reply.starts_with("OK"), "{reply}");
    assert!(!served("127.0.0.2", tunnel, b"c", b"c"));
    assert!(served("127.0.0.3", tunnel, b"d", b"d"));
    round_trip(&mut held, b"still held");
    held.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_until_end(&mut held).end, End::Eof);
    drop(porxy);
}

#[test]
fn proxy_wide_rules_apply_to_listeners_without_their_own() {
    let backend = Backend::echo();
    let dir = TempDir::new();
    let config = dir.write(
        "porxy.toml",
        &format!(
            "[proxy]\ndeny = [\"127.0.0.3\"]\n\n\
             [backends.echo]\naddress = \"{}\"\n\n\
             [listeners.plain]\nlisten = \"127.0.0.1:0\"\nbackends = [\"echo\"]\n\n\
             [listeners.own]\nlisten = \"127.0.0.1:0\"\nbackends = [\"echo\"]\nallow = [\"127.0.0.0/8\"]\n",
            backend.addr()
        ),
    );
    let porxy = Porxy::start(&["--config", config.to_str().unwrap()]);
    let (plain, own) = (porxy.tunnel("plain"), porxy.tunnel("own"));
    assert!(served("127.0.0.2", plain, b"a", b"a"));
    assert!(
        !served("127.0.0.3", plain, b"b", b"b"),
        "the proxy-wide deny"
    );
    assert!(
        served("127.0.0.3", own, b"c", b"c"),
        "a listener's own rules replace the proxy-wide ones"
    );
}

/// Opens `n` connections from `source` at once (threads), each doing a round trip and then
/// holding on; how many were served.
fn concurrent_held(source: &str, tunnel: SocketAddr, n: usize) -> Vec<std::net::TcpStream> {
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let source = ip(source);
            std::thread::spawn(move || {
                let mut stream = try_connect_from(source, tunnel).ok()?;
                let msg = format!("hello {i}");
                stream.write_all(msg.as_bytes()).ok()?;
                let mut back = vec![0u8; msg.len()];
                std::io::Read::read_exact(&mut stream, &mut back).ok()?;
                (back == msg.as_bytes()).then_some(stream)
            })
        })
        .collect();
    handles
        .into_iter()
        .filter_map(|h| h.join().unwrap())
        .collect()
}

#[test]
fn a_client_holds_at_most_its_limit_across_reactors() {
    let backend = Backend::echo();
    let tunnel = format!("127.0.0.1:0={}[max_conns_per_client=5]", backend.addr());
    let porxy = Porxy::start(&["--tunnel", &tunnel, "--reactors", "4"]);
    let tunnel = porxy.tunnel("cli-1");
    // 40 connects at once from one client, spread over four reactors: exactly five held.
    let held = concurrent_held("127.0.0.2", tunnel, 40);
    assert_eq!(held.len(), 5, "held {} of 40", held.len());
    // Another client is not held back by the first.
    assert!(served("127.0.0.3", tunnel, b"other", b"other"));
    wait_until(WAIT, "the refusals counted", || {
        porxy.stderr().contains("reason=client_limit")
    });
    // Once its connections end, the client may connect again.
    drop(held);
    wait_until(WAIT, "the counts given back", || {
        served("127.0.0.2", tunnel, b"again", b"again")
    });
    let again = concurrent_held("127.0.0.2", tunnel, 12);
    assert_eq!(again.len(), 5);
}

#[test]
fn a_client_opens_at_most_its_burst_then_its_rate() {
    let backend = Backend::echo();
    let tunnel = format!(
        "127.0.0.1:0={}[rate_per_client=1,rate_burst=3]",
        backend.addr()
    );
    let porxy = Porxy::start(&["--tunnel", &tunnel, "--reactors", "2"]);
    let tunnel = porxy.tunnel("cli-1");
    let started = std::time::Instant::now();
    let served_count = (0..8)
        .filter(|i| {
            served(
                "127.0.0.2",
                tunnel,
                format!("{i}").as_bytes(),
                format!("{i}").as_bytes(),
            )
        })
        .count();
    // The burst, and one more for each whole second the attempts took (a token a second).
    let seconds = started.elapsed().as_secs() as usize;
    assert!(
        (3..=3 + seconds).contains(&served_count),
        "{served_count} served in {seconds} s"
    );
    assert!(
        served("127.0.0.3", tunnel, b"other", b"other"),
        "another client"
    );
    wait_until(WAIT, "the refusals logged", || {
        porxy.stderr().contains("reason=client_rate")
    });
}

/// Holds a connection through `tunnel` (which takes PROXY v1) for IPv6 client `client`; the
/// stream if it was served.
fn held_as(client: &str, tunnel: SocketAddr) -> Option<std::net::TcpStream> {
    let mut stream = try_connect_from(ip("127.0.0.2"), tunnel).ok()?;
    let header = format!("PROXY TCP6 {client} 2001:db8::1 4711 80\r\nhello");
    stream.write_all(header.as_bytes()).ok()?;
    let mut back = [0u8; 5];
    std::io::Read::read_exact(&mut stream, &mut back).ok()?;
    (&back == b"hello").then_some(stream)
}

/// IPv6 clients are one client by their /64, or by the prefix `client_ipv6_prefix` gives.
#[test]
fn ipv6_clients_are_grouped_by_their_prefix() {
    let backend = Backend::echo();
    // (the prefix option, then each client in turn: held, or refused as one already holding
    // its connection); every connection is held until the case ends.
    type Case<'a> = (&'a str, &'a [(&'a str, bool)]);
    let cases: [Case; 3] = [
        (
            "",
            &[
                ("2001:db8:1:2::a", true),
                ("2001:db8:1:2::b", false), // Same /64.
                ("2001:db8:1:3::a", true),  // Another /64, another client.
            ],
        ),
        (
            ",client_ipv6_prefix=48",
            &[
                ("2001:db8:1:2::a", true),
                ("2001:db8:1:3::a", false), // Same /48.
                ("2001:db8:2::a", true),
            ],
        ),
        (
            ",client_ipv6_prefix=128",
            &[
                ("2001:db8:1:2::a", true),
                ("2001:db8:1:2::b", true), // Each address is a client.
                ("2001:db8:1:2::a", false),
            ],
        ),
    ];
    for (prefix, clients) in cases {
        let options = format!("accept_proxy=v1,max_conns_per_client=1{prefix}");
        let porxy = porxy(backend.addr(), &options);
        let tunnel = porxy.tunnel("cli-1");
        let mut held = Vec::new();
        for (client, served) in clients {
            let stream = held_as(client, tunnel);
            assert_eq!(stream.is_some(), *served, "{options}: {client}");
            held.extend(stream);
        }
    }
}

/// A reload changes the proxy-wide rules for new connections (and says which `[proxy]`
/// settings must wait for the next start); an established connection is not judged again.
#[test]
fn a_reload_changes_the_proxy_wide_rules() {
    let backend = Backend::echo();
    let dir = TempDir::new();
    let file = |proxy: &str| {
        format!(
            "[proxy]\n{proxy}\n\n\
             [backends.echo]\naddress = \"{}\"\n\n\
             [listeners.plain]\nlisten = \"127.0.0.1:0\"\nbackends = [\"echo\"]\n",
            backend.addr()
        )
    };
    let config = dir.write("porxy.toml", &file("deny = [\"127.0.0.3\"]"));
    let porxy = Porxy::start(&[
        "--config",
        config.to_str().unwrap(),
        "--control",
        "127.0.0.1:0",
        "--reactors",
        "2",
    ]);
    let plain = porxy.tunnel("plain");
    let mut control = ControlClient::connect(porxy.control().unwrap().parse().unwrap());
    assert!(!served("127.0.0.3", plain, b"a", b"a"));
    let mut held = try_connect_from(ip("127.0.0.2"), plain).unwrap();
    round_trip(&mut held, b"held");

    dir.write(
        "porxy.toml",
        &file("deny = [\"127.0.0.2\"]\nbuffer_size = \"32KiB\""),
    );
    let reply = control.cmd("RELOAD");
    assert!(reply.starts_with("OK reloaded"), "{reply}");
    assert!(served("127.0.0.3", plain, b"b", b"b"), "no longer denied");
    assert!(!served("127.0.0.2", plain, b"c", b"c"), "denied now");
    round_trip(&mut held, b"still held");
    wait_until(WAIT, "the restart-only setting named", || {
        porxy.stderr().lines().any(|line| {
            line.contains("[proxy] settings changed that take effect at the next start")
                && line.contains("settings=buffer_size")
        })
    });
}

/// The rules on an IPv6 listener judge IPv6 clients: `[::1]` served under an allow list that
/// holds it, refused by a deny that names it, without touching the backend.
#[test]
fn rules_judge_ipv6_clients() {
    let Some(any6) = crate::support::client::ipv6_loopback("rules_judge_ipv6_clients") else {
        return;
    };
    let backend = Backend::echo();
    let tunnel = |rules: &str| {
        let spec = format!("{any6}={}[{rules}]", backend.addr());
        let porxy = Porxy::start(&["--tunnel", &spec]);
        let local = porxy.tunnel("cli-1");
        (porxy, local)
    };
    let (_allowing, allowed) = tunnel("allow=::1/128;127.0.0.0/8");
    assert!(served("::1", allowed, b"six", b"six"));
    let (_denying, denied) = tunnel("deny=::1");
    assert!(!served("::1", denied, b"six", b"six"));
    assert_eq!(
        backend.accepted(),
        1,
        "the refused client reached no backend"
    );
}
