//! The READY line: the one line porxy prints on stdout once it serves, for scripts and tests to
//! learn the bound addresses.

use std::net::SocketAddr;

use crate::named_tunnel::NamedTunnel;

/// `READY pid=<pid> tunnel.<name>=<bound addr> ... [control=<addr>] [admin=...] [rpc=...]
/// [metrics=...]`, newline-terminated, in tunnel order.
pub(crate) fn ready_line(
    pid: u32,
    tunnels: &[NamedTunnel],
    bound: &[SocketAddr],
    control: Option<&crate::clients::BoundAddr>,
    fronts: &[(&str, Option<&crate::clients::BoundAddr>)],
) -> String {
    let mut line = format!("READY pid={pid}");
    for (tunnel, addr) in tunnels.iter().zip(bound) {
        line.push_str(&format!(" tunnel.{}={addr}", tunnel.name));
    }
    if let Some(control) = control {
        line.push_str(&format!(" control={control}"));
    }
    for (name, addr) in fronts {
        if let Some(addr) = addr {
            line.push_str(&format!(" {name}={addr}"));
        }
    }
    line.push('\n');
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(name: &str, spec: &str) -> NamedTunnel {
        NamedTunnel {
            name: name.into(),
            spec: spec.parse().unwrap(),
            local_origin: format!("--tunnel {name}"),
            remote_origins: vec![format!("--tunnel {name}")],
        }
    }

    #[test]
    fn ready_line_lists_tunnels_in_order() {
        let tunnels = [named("demo", "0=7000"), named("cli-1", "[::1]:0=7000")];
        let bound: Vec<SocketAddr> = vec![
            "127.0.0.1:41000".parse().unwrap(),
            "[::1]:41001".parse().unwrap(),
        ];
        assert_eq!(
            ready_line(42, &tunnels, &bound, None, &[]),
            "READY pid=42 tunnel.demo=127.0.0.1:41000 tunnel.cli-1=[::1]:41001\n"
        );
        let control = crate::clients::BoundAddr::Tcp("127.0.0.1:9999".parse().unwrap());
        assert_eq!(
            ready_line(42, &tunnels[..1], &bound[..1], Some(&control), &[]),
            "READY pid=42 tunnel.demo=127.0.0.1:41000 control=127.0.0.1:9999\n"
        );
    }
}
