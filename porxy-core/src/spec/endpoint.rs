//! An address as a user writes it: `8000`, `127.0.0.1:8000`, `[::1]:8000` or `db.local:5432`.
//!
//! Parsing is pure; name resolution happens only in [`Endpoint::resolve`] (with the runtime, in
//! `tunnel`), when a tunnel opens.
//! Any address may be listened on; [`RemoteFault`] says which ones cannot be a remote.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::str::FromStr;

use super::SpecError;

/// A listen or remote address before name resolution.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// A literal socket address. A bare port is read as `127.0.0.1:PORT`.
    Addr(SocketAddr),
    /// A host name and port, resolved when the tunnel opens.
    Host {
        /// The name to resolve.
        host: String,
        /// The TCP port.
        port: u16,
    },
}

impl Endpoint {
    /// What is wrong with this endpoint as a remote, as far as can be told before name
    /// resolution: everything for an address, the port for a host name.
    pub fn remote_fault(&self) -> Option<RemoteFault> {
        match self {
            Endpoint::Addr(addr) => RemoteFault::of(*addr),
            Endpoint::Host { port: 0, .. } => Some(RemoteFault::PortZero),
            Endpoint::Host { .. } => None,
        }
    }

    /// Parses the endpoint at the start of `text`; returns it and how many bytes it took.
    ///
    /// It stops before `,`, `[` (options), `=`, `*` (a weight) or white space, which the tunnel grammar uses as
    /// separators. Offsets in errors are relative to `text`.
    pub(crate) fn parse_prefix(text: &str) -> Result<(Endpoint, usize), (usize, String)> {
        if let Some(rest) = text.strip_prefix('[') {
            // An IPv6 literal: `[addr]:port`.
            let close = rest.find(']').ok_or((
                0,
                "an IPv6 address opened with `[` needs a closing `]`".to_string(),
            ))?;
            let ip_text = &rest[..close];
            let ip: std::net::Ipv6Addr = ip_text
                .parse()
                .map_err(|_| (1, format!("`{ip_text}` is not an IPv6 address")))?;
            let after = close + 2; // past `[` and `]`
            let tail = &text[after..];
            let Some(port_text) = tail.strip_prefix(':') else {
                return Err((
                    after,
                    format!("`[{ip_text}]` needs a port, like `[{ip_text}]:8000`"),
                ));
            };
            let len = token_len(port_text);
            let port = parse_port(&port_text[..len]).map_err(|m| (after + 1, m))?;
            let addr = SocketAddr::new(IpAddr::V6(ip), port);
            return Ok((Endpoint::Addr(addr), after + 1 + len));
        }
        let len = token_len(text);
        let token = &text[..len];
        if token.is_empty() {
            return Err((
                0,
                "expected an address like `8000`, `127.0.0.1:8000` or `[::1]:8000`".into(),
            ));
        }
        if token.bytes().all(|b| b.is_ascii_digit()) {
            let port = parse_port(token).map_err(|m| (0, m))?;
            let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port);
            return Ok((Endpoint::Addr(addr), len));
        }
        let Some(colon) = token.rfind(':') else {
            return Err((0, without_port(token)));
        };
        let (host, port_text) = (&token[..colon], &token[colon + 1..]);
        if host.contains(':') {
            return Err(too_many_colons(token, host, port_text));
        }
        if host.is_empty() {
            return Err((0, "expected a host before `:`".into()));
        }
        let port = parse_port(port_text).map_err(|m| (colon + 1, m))?;
        let endpoint = match host.parse::<Ipv4Addr>() {
            Ok(ip) => Endpoint::Addr(SocketAddr::new(IpAddr::V4(ip), port)),
            Err(_) if host.bytes().all(|b| b.is_ascii_digit() || b == b'.') => {
                return Err((0, format!("`{host}` is not an IPv4 address")));
            }
            Err(_) if is_host_name(host) => Endpoint::Host {
                host: host.to_string(),
                port,
            },
            Err(_) => return Err((0, format!("`{host}` is not a host name or IP address"))),
        };
        Ok((endpoint, len))
    }
}

/// Why an address cannot be a remote: a TCP connect to it reaches no one server.
///
/// Checked wherever a remote enters: the SPEC parser (with the column), and the API that opens
/// tunnels and adds backends (after name resolution, as
/// [`Error::UnusableRemote`](crate::Error::UnusableRemote)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RemoteFault {
    /// Port 0: no server listens on it (to listen on it means "any free port").
    PortZero,
    /// `0.0.0.0` or `::`: every address of the machine to listen on, no host to connect to
    /// (Linux takes a connect to it for one to this machine).
    Unspecified,
    /// The broadcast address 255.255.255.255.
    Broadcast,
    /// A multicast group (224.0.0.0/4, ff00::/8).
    Multicast,
}

impl RemoteFault {
    /// What is wrong with `addr` as a remote, if anything. An IPv4-mapped IPv6 address
    /// (`[::ffff:a.b.c.d]`) is judged as the IPv4 address it stands for, which it reaches.
    pub fn of(addr: SocketAddr) -> Option<RemoteFault> {
        let ip = addr.ip().to_canonical();
        if ip.is_unspecified() {
            Some(RemoteFault::Unspecified)
        } else if ip == IpAddr::V4(Ipv4Addr::BROADCAST) {
            Some(RemoteFault::Broadcast)
        } else if ip.is_multicast() {
            Some(RemoteFault::Multicast)
        } else if addr.port() == 0 {
            Some(RemoteFault::PortZero)
        } else {
            None
        }
    }
}

impl fmt::Display for RemoteFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RemoteFault::PortZero => {
                "port 0 is no server's port (to listen on, it means any free port); a remote \
                 needs the port its server listens on"
            }
            RemoteFault::Unspecified => {
                "the unspecified address (`0.0.0.0`, `[::]`) means every address of this \
                 machine, to listen on; a remote needs one host's address"
            }
            RemoteFault::Broadcast => {
                "255.255.255.255 is the broadcast address; TCP connects to one host, so a \
                 remote needs one host's address"
            }
            RemoteFault::Multicast => {
                "a multicast address names a group; TCP connects to one host, so a remote \
                 needs one host's address"
            }
        })
    }
}

impl FromStr for Endpoint {
    type Err = SpecError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let trimmed = text.trim();
        let lead = text.len() - text.trim_start().len();
        let (endpoint, used) = Endpoint::parse_prefix(trimmed)
            .map_err(|(at, message)| SpecError::new(text, lead + at, message))?;
        if used != trimmed.len() {
            return Err(SpecError::new(
                text,
                lead + used,
                format!("unexpected `{}` after the address", &trimmed[used..]),
            ));
        }
        Ok(endpoint)
    }
}

impl From<SocketAddr> for Endpoint {
    fn from(addr: SocketAddr) -> Self {
        Endpoint::Addr(addr)
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Addr(addr) => write!(f, "{addr}"),
            Endpoint::Host { host, port } => write!(f, "{host}:{port}"),
        }
    }
}

/// What is wrong with `token`, an unbracketed address without a `:` (a bare port would have
/// parsed): a signed or otherwise odd number, a host or IPv4 address without its port, or
/// nothing an address can be.
fn without_port(token: &str) -> String {
    let unsigned = token.strip_prefix(['-', '+']).unwrap_or(token);
    if unsigned.len() < token.len() && unsigned.bytes().all(|b| b.is_ascii_digit()) {
        return format!("`{token}` is not a port number (0 to 65535)");
    }
    let numeric = token.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    if numeric && token.parse::<Ipv4Addr>().is_err() {
        return format!("`{token}` is neither a port number (0 to 65535) nor an IPv4 address");
    }
    if numeric || is_host_name(token) {
        return format!("`{token}` needs a port, like `{token}:8000`");
    }
    format!("`{token}` is not a port number, host name or IP address")
}

/// The fault of `token`, an unbracketed address with more than one `:` (`host` is what comes
/// before the last one): an IPv6 address without brackets, or an IPv4 address or host name
/// with a second port. Offsets are relative to `token`.
fn too_many_colons(token: &str, host: &str, port_text: &str) -> (usize, String) {
    if host.parse::<std::net::Ipv6Addr>().is_ok() {
        return (
            0,
            format!("IPv6 addresses go in brackets, like `[{host}]:{port_text}`"),
        );
    }
    if token.parse::<std::net::Ipv6Addr>().is_ok() {
        return (
            0,
            format!("IPv6 addresses go in brackets, with a port, like `[{token}]:8000`"),
        );
    }
    let first = token.find(':').unwrap_or(0);
    let name = &token[..first];
    let kind = if name.parse::<Ipv4Addr>().is_ok() {
        Some("an IPv4 address")
    } else if is_host_name(name) {
        Some("a host name")
    } else {
        None
    };
    match kind {
        Some(kind) if !token.contains("::") => {
            // The second `:`, where the address stops making sense.
            let second = first + 1 + token[first + 1..].find(':').unwrap_or(0);
            (
                second,
                format!("`{token}` has too many colons: {kind} takes one `:PORT`"),
            )
        }
        _ => (
            0,
            format!(
                "`{token}` is not an address: an IPv6 address goes in brackets, like `[::1]:8000`"
            ),
        ),
    }
}

/// Length of the run of characters that can belong to an unbracketed address.
fn token_len(text: &str) -> usize {
    text.find(|c: char| matches!(c, ',' | '[' | ']' | '=' | '*') || c.is_whitespace())
        .unwrap_or(text.len())
}

fn parse_port(text: &str) -> Result<u16, String> {
    if text.is_empty() {
        return Err("expected a port number after `:`".into());
    }
    if !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("`{text}` is not a port number (0 to 65535)"));
    }
    text.parse()
        .map_err(|_| format!("port `{text}` is out of range (0 to 65535)"))
}

/// A DNS name as RFC 1123 allows it: labels of letters, digits and hyphens, separated by dots.
fn is_host_name(host: &str) -> bool {
    host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}
