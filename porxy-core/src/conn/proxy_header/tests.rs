//! The PROXY header reader on byte-exact headers written by hand from the spec.

use std::net::SocketAddr;

use super::*;

fn parse(accept: AcceptProxy, bytes: &[u8]) -> Parsed {
    ProxyHeader::new(accept).parse(bytes)
}

fn complete(parsed: Parsed) -> (usize, Option<SocketAddr>) {
    match parsed {
        Parsed::Complete { len, source, .. } => (len, source),
        other => panic!("not complete: {other:?}"),
    }
}

fn addr(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

const V1_TCP4: &[u8] = b"PROXY TCP4 192.0.2.7 10.0.0.1 4711 80\r\n";

/// A v2 header: signature, version and command, family and protocol, then `rest` (addresses
/// and TLVs) with its length.
fn v2(command: u8, family_protocol: u8, rest: &[u8]) -> Vec<u8> {
    let mut header = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    header.push(0x20 | command);
    header.push(family_protocol);
    header.extend_from_slice(&(rest.len() as u16).to_be_bytes());
    header.extend_from_slice(rest);
    header
}

fn v2_tcp4() -> Vec<u8> {
    // 192.0.2.7:4711 -> 10.0.0.1:80
    v2(1, 0x11, &[192, 0, 2, 7, 10, 0, 0, 1, 0x12, 0x67, 0, 80])
}

#[test]
fn v1_names_the_client_and_its_length_is_the_line() {
    let mut bytes = V1_TCP4.to_vec();
    bytes.extend_from_slice(b"GET / HTTP/1.0\r\n");
    for accept in [AcceptProxy::V1, AcceptProxy::Any] {
        assert_eq!(
            complete(parse(accept, &bytes)),
            (V1_TCP4.len(), Some(addr("192.0.2.7:4711")))
        );
    }
    let tcp6 = b"PROXY TCP6 2001:db8::7 2001:db8::1 4711 443\r\n";
    assert_eq!(
        complete(parse(AcceptProxy::V1, tcp6)),
        (tcp6.len(), Some(addr("[2001:db8::7]:4711")))
    );
    let unknown = b"PROXY UNKNOWN\r\n";
    assert_eq!(
        complete(parse(AcceptProxy::V1, unknown)),
        (unknown.len(), None)
    );
}

#[test]
fn v2_names_the_client_over_ipv4_and_ipv6_and_keeps_the_peer_for_local() {
    let tcp4 = v2_tcp4();
    assert_eq!(tcp4.len(), 28);
    for accept in [AcceptProxy::V2, AcceptProxy::Any] {
        assert_eq!(
            complete(parse(accept, &tcp4)),
            (28, Some(addr("192.0.2.7:4711")))
        );
    }
    let mut six = Vec::new();
    six.extend_from_slice(
        &"2001:db8::7"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets(),
    );
    six.extend_from_slice(
        &"2001:db8::1"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets(),
    );
    six.extend_from_slice(&[0x12, 0x67, 1, 187]);
    let tcp6 = v2(1, 0x21, &six);
    assert_eq!(
        complete(parse(AcceptProxy::V2, &tcp6)),
        (16 + 36, Some(addr("[2001:db8::7]:4711")))
    );
    // LOCAL: the sender's own connection (a health check): its own address stands.
    assert_eq!(
        complete(parse(AcceptProxy::V2, &v2(0, 0x00, &[]))),
        (16, None)
    );
    // UNSPEC family with PROXY: no address to take.
    assert_eq!(
        complete(parse(AcceptProxy::V2, &v2(1, 0x00, &[]))),
        (16, None)
    );
}

#[test]
fn v2_tlvs_count_in_its_length_and_the_useful_ones_are_kept() {
    let mut rest = vec![192, 0, 2, 7, 10, 0, 0, 1, 0x12, 0x67, 0, 80];
    // PP2_TYPE_AUTHORITY (0x02): "example.com".
    rest.extend_from_slice(&[0x02, 0, 11]);
    rest.extend_from_slice(b"example.com");
    // PP2_TYPE_ALPN (0x01): "h2"; PP2_TYPE_UNIQUE_ID (0x05): two bytes; PP2_TYPE_NOOP.
    rest.extend_from_slice(&[0x01, 0, 2, b'h', b'2', 0x05, 0, 2, 0xbe, 0xef, 0x04, 0, 0]);
    let header = v2(1, 0x11, &rest);
    let mut bytes = header.clone();
    bytes.extend_from_slice(b"stream");
    let Parsed::Complete {
        len,
        source,
        details,
        ..
    } = parse(AcceptProxy::V2, &bytes)
    else {
        panic!("not complete");
    };
    assert_eq!((len, source), (header.len(), Some(addr("192.0.2.7:4711"))));
    assert_eq!(
        details.as_deref(),
        Some("authority=example.com alpn=h2 unique_id=beef"),
        "kept for the logs"
    );
}

#[test]
fn every_cut_of_a_header_waits_for_the_rest() {
    let v2 = v2_tcp4();
    for (accept, header) in [
        (AcceptProxy::V1, V1_TCP4),
        (AcceptProxy::Any, V1_TCP4),
        (AcceptProxy::V2, &v2[..]),
        (AcceptProxy::Any, &v2[..]),
    ] {
        for cut in 1..header.len() {
            let parsed = parse(accept, &header[..cut]);
            assert!(
                matches!(parsed, Parsed::Incomplete),
                "{accept} cut at {cut}: {parsed:?}"
            );
        }
    }
}

#[test]
fn what_is_no_header_is_refused_with_why() {
    let invalid = |accept, bytes: &[u8]| match parse(accept, bytes) {
        Parsed::Invalid(e) => e.to_string(),
        other => panic!("{accept} {bytes:?}: {other:?}"),
    };
    for accept in [AcceptProxy::V1, AcceptProxy::V2, AcceptProxy::Any] {
        assert!(invalid(accept, b"GET / HTTP/1.1\r\n").starts_with("not a PROXY header"));
    }
    assert!(invalid(
        AcceptProxy::V1,
        b"PROXY TCP4 999.0.2.7 10.0.0.1 4711 80\r\n"
    )
    .starts_with("not a PROXY header"));
    assert_eq!(
        invalid(AcceptProxy::V1, &v2_tcp4()),
        "a PROXY header of another version (accept_proxy=v1)"
    );
    assert_eq!(
        invalid(AcceptProxy::V2, V1_TCP4),
        "a PROXY header of another version (accept_proxy=v2)"
    );
    // Version 3 in the version nibble.
    let mut bad_version = v2_tcp4();
    bad_version[12] = 0x31;
    assert!(invalid(AcceptProxy::V2, &bad_version).starts_with("not a PROXY header"));
    // UDP over IPv4: not a stream.
    let udp = v2(1, 0x12, &[192, 0, 2, 7, 10, 0, 0, 1, 0x12, 0x67, 0, 80]);
    assert_eq!(
        invalid(AcceptProxy::V2, &udp),
        "a PROXY v2 header for datagrams, on a stream"
    );
}

#[test]
fn limits_are_the_specs() {
    assert_eq!(ProxyHeader::new(AcceptProxy::V1).max_len(), 107);
    assert_eq!(ProxyHeader::new(AcceptProxy::V2).max_len(), 16 + 2048);
    assert_eq!(ProxyHeader::new(AcceptProxy::Any).max_len(), 16 + 2048);
}

#[test]
fn headers_sent_are_what_the_reader_takes_back() {
    let client = addr("192.0.2.7:4711");
    let listener = addr("10.0.0.1:80");
    let v1 = header_to_send(SendProxy::V1, client, listener, None);
    assert_eq!(v1, b"PROXY TCP4 192.0.2.7 10.0.0.1 4711 80\r\n");
    let v2 = header_to_send(SendProxy::V2, client, listener, None);
    assert_eq!(v2, v2_tcp4(), "byte for byte as the spec writes it");
    for (accept, header) in [(AcceptProxy::V1, &v1), (AcceptProxy::V2, &v2)] {
        assert_eq!(
            complete(parse(accept, header)),
            (header.len(), Some(client))
        );
    }
    // One family: an IPv4 client of an IPv6 listener is given IPv4-mapped.
    let six = header_to_send(SendProxy::V1, client, addr("[2001:db8::1]:443"), None);
    assert_eq!(six, b"PROXY TCP6 ::ffff:192.0.2.7 2001:db8::1 4711 443\r\n");
    let six = header_to_send(SendProxy::V2, client, addr("[2001:db8::1]:443"), None);
    assert_eq!(
        complete(parse(AcceptProxy::V2, &six)),
        (16 + 36, Some(addr("[::ffff:192.0.2.7]:4711")))
    );
}

#[test]
fn a_v2_header_sent_carries_the_tls_server_name_as_its_authority() {
    let client = addr("192.0.2.7:4711");
    let listener = addr("10.0.0.1:443");
    let v2 = header_to_send(SendProxy::V2, client, listener, Some("www.example.test"));
    let Parsed::Complete {
        len,
        source,
        details,
        ..
    } = ProxyHeader::new(AcceptProxy::V2).parse(&v2)
    else {
        panic!("a complete header");
    };
    assert_eq!((len, source), (v2.len(), Some(client)));
    assert_eq!(details.as_deref(), Some("authority=www.example.test"));
    // v1 has no room for it: the same line as without.
    assert_eq!(
        header_to_send(SendProxy::V1, client, listener, Some("www.example.test")),
        header_to_send(SendProxy::V1, client, listener, None)
    );
}

#[test]
fn check_headers_name_no_client_and_the_reader_takes_them() {
    let v1 = header_for_check(SendProxy::V1);
    assert_eq!(v1, b"PROXY UNKNOWN\r\n");
    assert_eq!(complete(parse(AcceptProxy::V1, &v1)), (v1.len(), None));
    let v2 = header_for_check(SendProxy::V2);
    assert_eq!(
        v2, b"\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00",
        "LOCAL, UNSPEC, no address"
    );
    assert_eq!(complete(parse(AcceptProxy::V2, &v2)), (16, None));
}

mod properties {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    use proptest::prelude::*;

    use super::*;

    fn any_addr() -> impl Strategy<Value = SocketAddr> {
        prop_oneof![
            (any::<u32>(), any::<u16>())
                .prop_map(|(ip, port)| SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), port)),
            (any::<u128>(), any::<u16>())
                .prop_map(|(ip, port)| SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), port)),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Every header porxy sends reads back whole, naming the client, and every cut of it
        /// waits for the rest.
        #[test]
        fn sent_headers_read_back_and_every_cut_waits(
            source in any_addr(),
            destination in any_addr(),
            v2 in any::<bool>(),
            tail in proptest::collection::vec(any::<u8>(), 0..32),
        ) {
            let (version, accept) = if v2 {
                (SendProxy::V2, AcceptProxy::V2)
            } else {
                (SendProxy::V1, AcceptProxy::V1)
            };
            let header = header_to_send(version, source, destination, None);
            // One family: an IPv4 address beside an IPv6 one is named IPv4-mapped.
            let named = match (source, destination) {
                (SocketAddr::V4(s), SocketAddr::V6(_)) => {
                    SocketAddr::from((s.ip().to_ipv6_mapped(), s.port()))
                }
                _ => source,
            };
            let mut bytes = header.clone();
            bytes.extend_from_slice(&tail);
            for reader in [accept, AcceptProxy::Any] {
                match parse(reader, &bytes) {
                    Parsed::Complete { len, source, .. } => {
                        prop_assert_eq!(len, header.len());
                        prop_assert_eq!(source, Some(named));
                    }
                    other => prop_assert!(false, "{:?}", other),
                }
                for cut in 1..header.len() {
                    prop_assert!(matches!(parse(reader, &header[..cut]), Parsed::Incomplete));
                }
            }
        }

        /// Whatever a client sends, the reader answers without panicking, and a complete
        /// header never claims more bytes than came.
        #[test]
        fn any_bytes_get_an_answer(
            bytes in proptest::collection::vec(any::<u8>(), 0..300),
            prefix in prop_oneof![
                Just(Vec::new()),
                Just(b"PROXY ".to_vec()),
                Just(b"\r\n\r\n\0\r\nQUIT\n".to_vec()),
            ],
        ) {
            let mut input = prefix;
            input.extend_from_slice(&bytes);
            for accept in [AcceptProxy::V1, AcceptProxy::V2, AcceptProxy::Any] {
                if let Parsed::Complete { len, .. } = parse(accept, &input) {
                    prop_assert!(len <= input.len());
                }
            }
        }
    }
}
