//! The PROXY protocol header a client sends ahead of its stream (HAProxy's
//! `doc/proxy-protocol.txt`), read as an opening [`Preamble`]: the real client's address,
//! through a chain of proxies. Parsing is the `ppp` crate's.
//!
//! What the header names becomes the connection's client: a v1 `TCP4`/`TCP6` or a v2 `PROXY`
//! over TCP (IPv4 or IPv6). A header that names no address keeps the connection's own peer, as
//! the spec says: v1 `UNKNOWN`, v2 `LOCAL` (the sender's own health checks), v2 `UNSPEC` and
//! `UNIX` families. A v2 header for datagrams is refused: this is a stream.

use std::fmt;
use std::net::SocketAddr;

use ppp::v2;
use ppp::{v1, HeaderResult, PartialResult};

use super::close::CloseReason;
use super::opening::{Parsed, Preamble};
use crate::spec::{AcceptProxy, SendProxy};

/// The longest v1 header the spec allows, CRLF included.
const V1_MAX: usize = 107;
/// The longest v2 header taken: its 16 fixed bytes and up to 2 KiB of addresses and TLVs
/// (HAProxy's own headers, SSL details included, stay well under it).
const V2_MAX: usize = 16 + 2048;

/// A listener's PROXY header reader.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ProxyHeader {
    accept: AcceptProxy,
}

impl ProxyHeader {
    pub(crate) fn new(accept: AcceptProxy) -> ProxyHeader {
        ProxyHeader { accept }
    }
}

/// Why a header is refused.
#[derive(Debug)]
enum Refused {
    Malformed(String),
    /// A v2 header where only v1 is taken, or the reverse.
    Version(AcceptProxy),
    Datagram,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refused::Malformed(e) => write!(f, "not a PROXY header: {e}"),
            Refused::Version(accept) => {
                write!(
                    f,
                    "a PROXY header of another version (accept_proxy={accept})"
                )
            }
            Refused::Datagram => f.write_str("a PROXY v2 header for datagrams, on a stream"),
        }
    }
}

impl std::error::Error for Refused {}

impl Preamble for ProxyHeader {
    fn max_len(&self) -> usize {
        match self.accept {
            AcceptProxy::V1 => V1_MAX,
            AcceptProxy::V2 | AcceptProxy::Any => V2_MAX,
        }
    }

    fn name(&self) -> &'static str {
        "PROXY header"
    }

    fn parse(&self, received: &[u8]) -> Parsed {
        // `ppp` judges a v1 line cut short at some places (after a space, before a port) as
        // malformed: a v1 header is only judged once its line has ended.
        if self.accept != AcceptProxy::V2 && v1_line_unfinished(received) {
            return Parsed::Incomplete;
        }
        let result = match self.accept {
            AcceptProxy::V1 => HeaderResult::V1(v1::Header::try_from(received)),
            AcceptProxy::V2 => HeaderResult::V2(v2::Header::try_from(received)),
            AcceptProxy::Any => HeaderResult::parse(received),
        };
        if result.is_incomplete() {
            return Parsed::Incomplete;
        }
        let refused = |refused: Refused| Parsed::Invalid(Box::new(refused));
        match result {
            HeaderResult::V1(Ok(header)) => Parsed::Complete {
                len: header.header.len(),
                details: None,
                server_name: None,
                source: match header.addresses {
                    v1::Addresses::Tcp4(a) => {
                        Some(SocketAddr::from((a.source_address, a.source_port)))
                    }
                    v1::Addresses::Tcp6(a) => {
                        Some(SocketAddr::from((a.source_address, a.source_port)))
                    }
                    v1::Addresses::Unknown => None,
                },
            },
            HeaderResult::V2(Ok(header)) => {
                if header.protocol == v2::Protocol::Datagram {
                    return refused(Refused::Datagram);
                }
                let source = match (header.command, header.addresses) {
                    (v2::Command::Local, _) => None,
                    (v2::Command::Proxy, v2::Addresses::IPv4(a)) => {
                        Some(SocketAddr::from((a.source_address, a.source_port)))
                    }
                    (v2::Command::Proxy, v2::Addresses::IPv6(a)) => {
                        Some(SocketAddr::from((a.source_address, a.source_port)))
                    }
                    (v2::Command::Proxy, v2::Addresses::Unspecified | v2::Addresses::Unix(_)) => {
                        None
                    }
                };
                Parsed::Complete {
                    len: header.len(),
                    source,
                    details: tlv_details(&header),
                    server_name: None,
                }
            }
            // A well-formed header of the other version says more than "malformed".
            HeaderResult::V1(Err(_)) if self.accept == AcceptProxy::V1 && is_v2(received) => {
                refused(Refused::Version(self.accept))
            }
            HeaderResult::V2(Err(_)) if self.accept == AcceptProxy::V2 && is_v1(received) => {
                refused(Refused::Version(self.accept))
            }
            HeaderResult::V1(Err(e)) => refused(Refused::Malformed(e.to_string())),
            HeaderResult::V2(Err(e)) => refused(Refused::Malformed(e.to_string())),
        }
    }

    /// Every failed PROXY header closes as [`CloseReason::ProxyHeader`], the client's fault,
    /// whatever failed (the logs say what).
    fn failure_reason(&self) -> CloseReason {
        CloseReason::ProxyHeader
    }
}

/// The header a health check sends first (`check_send_proxy`): it speaks for no client, so v2
/// sends `LOCAL` and v1 `UNKNOWN`, the forms the protocol has for a proxy's own connections.
pub(crate) fn header_for_check(version: SendProxy) -> Vec<u8> {
    match version {
        SendProxy::V1 => b"PROXY UNKNOWN\r\n".to_vec(),
        SendProxy::V2 => local_v2(),
    }
}

/// The header sent ahead of a client's stream to an upstream (`send_proxy`): `source` is the
/// client (the one a header it sent named, if it sent one), `destination` the address it
/// connected to. The two must be of one family: an IPv4 address beside an IPv6 one is given
/// in its IPv4-mapped IPv6 form.
///
/// A v2 header carries `authority`, the server name the client asked for in its TLS hello,
/// when porxy terminated its TLS (the `PP2_TYPE_AUTHORITY` TLV; v1 has no room for it).
pub(crate) fn header_to_send(
    version: SendProxy,
    source: SocketAddr,
    destination: SocketAddr,
    authority: Option<&str>,
) -> Vec<u8> {
    let (source, destination) = match (source, destination) {
        (SocketAddr::V4(s), SocketAddr::V6(_)) => (mapped(s), destination),
        (SocketAddr::V6(_), SocketAddr::V4(d)) => (source, mapped(d)),
        _ => (source, destination),
    };
    match version {
        SendProxy::V1 => {
            let family = if source.is_ipv4() { "TCP4" } else { "TCP6" };
            format!(
                "PROXY {family} {} {} {} {}\r\n",
                source.ip(),
                destination.ip(),
                source.port(),
                destination.port()
            )
            .into_bytes()
        }
        SendProxy::V2 => {
            let builder = v2::Builder::with_addresses(
                v2::Version::Two | v2::Command::Proxy,
                v2::Protocol::Stream,
                (source, destination),
            );
            let builder = match authority {
                Some(name) => builder.write_tlv(v2::Type::Authority, name.as_bytes()),
                None => Ok(builder),
            };
            builder
                .and_then(v2::Builder::build)
                // Building into memory from two addresses of one family and a server name
                // (at most 255 bytes) cannot fail; were it to, a LOCAL header (no address) is
                // still a valid one.
                .unwrap_or_else(|_| local_v2())
        }
    }
}

/// A v2 `LOCAL` header: no address.
fn local_v2() -> Vec<u8> {
    let mut header = V2_SIGNATURE.to_vec();
    header.extend_from_slice(&[0x20, 0x00, 0, 0]);
    header
}

fn mapped(addr: std::net::SocketAddrV4) -> SocketAddr {
    SocketAddr::from((addr.ip().to_ipv6_mapped(), addr.port()))
}

/// The TLVs of a v2 header worth a log line: the authority (the host name the client asked
/// for, SNI), the ALPN protocol, the sender's unique id. Values are shown as text where they
/// are printable ASCII, in hex otherwise, each at most 64 bytes.
fn tlv_details(header: &v2::Header<'_>) -> Option<String> {
    let mut parts = Vec::new();
    for tlv in header.tlvs().flatten() {
        let name = match tlv.kind {
            0x01 => "alpn",
            0x02 => "authority",
            0x05 => "unique_id",
            _ => continue,
        };
        let value = &tlv.value[..tlv.value.len().min(64)];
        let text = if value.iter().all(|b| b.is_ascii_graphic()) {
            String::from_utf8_lossy(value).into_owned()
        } else {
            value.iter().map(|b| format!("{b:02x}")).collect()
        };
        parts.push(format!("{name}={text}"));
    }
    (!parts.is_empty()).then(|| parts.join(" "))
}

/// The v2 signature.
const V2_SIGNATURE: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";

fn is_v2(received: &[u8]) -> bool {
    received.starts_with(V2_SIGNATURE)
}

fn is_v1(received: &[u8]) -> bool {
    received.starts_with(b"PROXY ")
}

/// Whether `received` may be the start of a v1 header whose line has not ended yet.
fn v1_line_unfinished(received: &[u8]) -> bool {
    let starts = if received.len() < 6 {
        b"PROXY ".starts_with(received)
    } else {
        is_v1(received)
    };
    starts && !received.windows(2).any(|pair| pair == b"\r\n")
}

#[cfg(test)]
mod tests;
