//! The PROXY protocol v2 header on the benchmark's connections, for the kinds that carry it
//! (`porxy-proxy`, `haproxy-proxy`): the header the load generator puts ahead of each
//! connection ([`header`]), and the reader with which the backend takes the one the proxy
//! sends it ([`Preface`]).
//!
//! The load generator plays a load balancer in front of the proxy: its headers name a client of
//! TEST-NET-1 (192.0.2.1, RFC 5737; 2001:db8::1 for an IPv6 proxy address), which no real
//! connection here has. The backend keeps the source its header named, and its `W` service
//! says it, so the harness checks before measuring that the proxy both took the client's header
//! and sent one of its own naming that client (see `peers::start`).
//!
//! The backend tells a header from a service byte by the first byte of the connection: a v2
//! header starts with `\r` (its 12-byte signature), no service byte does. So one backend serves
//! the plain kinds and the PROXY kinds of a section alike, without a flag, and a connection
//! without a header costs it one comparison, once, before its service byte.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use ppp::v2;

/// The 12 bytes every v2 header starts with.
pub const SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// The client the load generator's headers name, when the proxy listens on IPv4.
pub const CLIENT_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
/// The same for a proxy on IPv6 (a header has one address family).
const CLIENT_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
/// The signature, the version and command, the family and protocol, and the length of the rest
/// (bytes 14..16, big endian).
const FIXED: usize = 16;
/// The lowest client port named, above the privileged ones.
const FIRST_PORT: u16 = 1024;

/// A v2 `PROXY` header for a TCP connection from the benchmark's client, port `port`, to
/// `destination` (the proxy's address).
pub fn header(port: u16, destination: SocketAddr) -> Vec<u8> {
    let source = client(port, destination);
    v2::Builder::with_addresses(
        v2::Version::Two | v2::Command::Proxy,
        v2::Protocol::Stream,
        (source, destination),
    )
    .build()
    // Building fails only past 64 KiB of addresses and TLVs; this header is 28 or 52 bytes.
    .expect("a PROXY v2 header with two addresses of one family and no TLVs")
}

/// The client a header to `destination` names, with port `port`: of the destination's family,
/// since a header has one.
pub fn client(port: u16, destination: SocketAddr) -> SocketAddr {
    match destination {
        SocketAddr::V4(_) => SocketAddr::from((CLIENT_V4, port)),
        SocketAddr::V6(_) => SocketAddr::from((CLIENT_V6, port)),
    }
}

/// The client port the header of a workload's connection number `n` names: connections open
/// at the same time name different clients, as they would behind a load balancer.
pub fn client_port(n: usize) -> u16 {
    let span = usize::from(u16::MAX - FIRST_PORT) + 1;
    // Below u16::MAX - FIRST_PORT + 1 after the modulo, so the sum fits.
    FIRST_PORT + (n % span) as u16
}

/// The backend's view of a connection's PROXY header: whether one came, and what it named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Preface {
    /// Nothing read yet: a header may come.
    Maybe,
    /// A header is arriving; its bytes so far (a header in pieces is waited for).
    Reading(Vec<u8>),
    /// A header came and was taken whole; the source it named (none for `LOCAL`, `UNSPEC` and
    /// the like).
    Read(Option<SocketAddr>),
    /// The connection began with something else.
    Absent,
}

impl Preface {
    /// Takes a header's bytes off the front of `data`, the first bytes the connection sent or
    /// the next ones; returns what follows the header (all of `data` when no header is being
    /// read), or `None` while the header is not whole yet. A malformed header is an error: the
    /// backend closes the connection.
    pub fn take<'a>(&mut self, data: &'a [u8]) -> io::Result<Option<&'a [u8]>> {
        match self {
            Preface::Absent | Preface::Read(_) => Ok(Some(data)),
            Preface::Maybe => match data.first() {
                None => Ok(Some(data)),
                Some(&first) if first == SIGNATURE[0] => {
                    *self = Preface::Reading(Vec::with_capacity(FIXED + 36));
                    self.take(data)
                }
                Some(_) => {
                    *self = Preface::Absent;
                    Ok(Some(data))
                }
            },
            Preface::Reading(bytes) => {
                // Only the header's own bytes are copied: the fixed part first, then as many as
                // its length says; what follows stays in `data`.
                let mut used = FIXED.saturating_sub(bytes.len()).min(data.len());
                bytes.extend_from_slice(&data[..used]);
                if bytes.len() < FIXED {
                    return Ok(None);
                }
                if bytes[..SIGNATURE.len()] != SIGNATURE {
                    return Err(io::Error::other("not a PROXY v2 signature"));
                }
                let total = FIXED + usize::from(u16::from_be_bytes([bytes[14], bytes[15]]));
                let more = (total - bytes.len()).min(data.len() - used);
                bytes.extend_from_slice(&data[used..used + more]);
                used += more;
                if bytes.len() < total {
                    return Ok(None);
                }
                let parsed = v2::Header::try_from(bytes.as_slice())
                    .map_err(|e| io::Error::other(format!("a bad PROXY v2 header: {e}")))?;
                let source = match parsed.addresses {
                    v2::Addresses::IPv4(a) => {
                        Some(SocketAddr::from((a.source_address, a.source_port)))
                    }
                    v2::Addresses::IPv6(a) => {
                        Some(SocketAddr::from((a.source_address, a.source_port)))
                    }
                    v2::Addresses::Unspecified | v2::Addresses::Unix(_) => None,
                };
                *self = Preface::Read(source);
                Ok(Some(&data[used..]))
            }
        }
    }

    /// The source the connection's header named, if it came with one that named one.
    pub fn source(&self) -> Option<SocketAddr> {
        match self {
            Preface::Read(source) => *source,
            Preface::Maybe | Preface::Reading(_) | Preface::Absent => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxy_addr() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 8000))
    }

    #[test]
    fn the_header_names_the_test_client_and_is_sixteen_bytes_plus_its_length() {
        let bytes = header(client_port(5), proxy_addr());
        assert_eq!(bytes[..12], SIGNATURE);
        assert_eq!(
            bytes.len(),
            16 + usize::from(u16::from_be_bytes([bytes[14], bytes[15]]))
        );
        let parsed = v2::Header::try_from(bytes.as_slice()).expect("parses");
        assert_eq!(
            parsed.addresses,
            v2::Addresses::from((SocketAddr::from((CLIENT_V4, 1029)), proxy_addr()))
        );
    }

    #[test]
    fn client_ports_stay_above_the_privileged_ones() {
        assert_eq!(client_port(0), 1024);
        assert_eq!(client_port(64_511), u16::MAX);
        assert_eq!(client_port(64_512), 1024);
    }

    #[test]
    fn a_whole_header_is_taken_and_the_rest_is_left() {
        let mut data = header(4000, proxy_addr());
        data.extend_from_slice(b"Ohello");
        let mut preface = Preface::Maybe;
        assert_eq!(
            preface.take(&data).expect("a good header"),
            Some(&b"Ohello"[..])
        );
        assert_eq!(preface.source(), Some(SocketAddr::from((CLIENT_V4, 4000))));
        // Taken once: what comes next is the stream's.
        assert_eq!(preface.take(b"more").expect("passes"), Some(&b"more"[..]));
    }

    #[test]
    fn a_header_in_pieces_is_waited_for_byte_by_byte() {
        let mut data = header(4001, SocketAddr::from(([0u16, 0, 0, 0, 0, 0, 0, 1], 8000)));
        data.push(b'E');
        let mut preface = Preface::Maybe;
        // Every byte but the header's last, one at a time; then that byte with the service's.
        let last = data.len() - 2;
        for i in 0..last {
            assert_eq!(preface.take(&data[i..=i]).expect("good so far"), None);
        }
        assert_eq!(preface.take(&data[last..]).expect("whole"), Some(&b"E"[..]));
        assert_eq!(preface.source(), Some(SocketAddr::from((CLIENT_V6, 4001))));
    }

    #[test]
    fn a_service_byte_first_means_no_header() {
        let mut preface = Preface::Maybe;
        assert_eq!(preface.take(b"").expect("nothing yet"), Some(&b""[..]));
        assert_eq!(preface, Preface::Maybe);
        assert_eq!(preface.take(b"E\r\n").expect("passes"), Some(&b"E\r\n"[..]));
        assert_eq!(preface, Preface::Absent);
        assert_eq!(preface.source(), None);
    }

    #[test]
    fn a_bad_signature_is_refused_without_waiting_for_its_length() {
        let mut bytes = header(4002, proxy_addr());
        bytes[5] = b'X';
        bytes[14..16].copy_from_slice(&u16::MAX.to_be_bytes());
        assert!(Preface::Maybe.take(&bytes).is_err());
    }
}
