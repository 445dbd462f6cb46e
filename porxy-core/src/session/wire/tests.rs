//! Round trips of the wire format, and the frames it refuses.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

use super::*;

/// A connected pair of loopback sockets: (ours, the peer's).
fn pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let ours = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (theirs, _) = listener.accept().unwrap();
    (ours, theirs)
}

fn relaying(id: u64) -> (Session, TcpStream, TcpStream) {
    let (client, client_peer) = pair();
    let (upstream, upstream_peer) = pair();
    let relay = Relay {
        backend: "[2001:db8::1]:5432".parse().unwrap(),
        state: RelayState {
            up: PipeSnapshot {
                state: PipeState::Draining,
                pending: b"client bytes not yet written".to_vec(),
            },
            down: PipeSnapshot {
                state: PipeState::Open,
                pending: (0..=255).collect(),
            },
            idle_for: Duration::from_millis(1500),
            half_closed_for: Some(Duration::ZERO),
        },
    };
    let session = Session::relaying(
        client,
        upstream,
        id,
        "127.0.0.1:8000".parse().unwrap(),
        "10.1.2.3:40000".parse().unwrap(),
        relay,
    );
    (session, client_peer, upstream_peer)
}

/// What a receiver gets: the header parsed, the body, and duplicates of the descriptors.
fn transmit(frame: &Frame<'_>) -> (FrameHeader, Vec<u8>, Vec<OwnedFd>) {
    let header = FrameHeader::parse(&frame.header).unwrap();
    let fds = frame
        .descriptors
        .iter()
        .map(|fd| fd.try_clone_to_owned().unwrap())
        .collect();
    (header, frame.body.clone(), fds)
}

#[test]
fn sessions_survive_a_round_trip() {
    let (relay_session, mut client_peer, mut upstream_peer) = relaying(7);
    let (waiting_client, mut waiting_peer) = pair();
    let waiting = Session::waiting(
        waiting_client,
        8,
        "[::1]:9000".parse().unwrap(),
        "[::1]:40001".parse().unwrap(),
    );
    let sent = vec![relay_session, waiting];
    let frame = encode_frame(&sent).unwrap();
    assert_eq!(frame.descriptors.len(), 3);
    assert_eq!(
        frame.body.len(),
        sent.iter().map(encoded_len).sum::<usize>()
    );
    let (header, body, fds) = transmit(&frame);
    assert!(!header.is_end());
    assert_eq!((header.descriptors(), header.body_len()), (3, body.len()));

    let mut got = decode_frame(&header, &body, fds).unwrap();
    assert_eq!(got.len(), 2);
    for (a, b) in sent.iter().zip(&got) {
        assert_eq!((a.id, a.tunnel, a.peer), (b.id, b.tunnel, b.peer));
        assert_eq!(a.relay, b.relay);
    }
    assert_eq!(got[0].buffered(), 28 + 256);
    assert!(got[0].half_closed());
    assert_eq!(got[1].backend(), None);

    // The sockets are the same connections: bytes written on the received ones arrive.
    let (client, upstream) = got[0].take_sockets().unwrap();
    let upstream = upstream.expect("a relaying session has its upstream");
    (&client).write_all(b"to the client").unwrap();
    (&upstream).write_all(b"to the backend").unwrap();
    let mut buf = [0u8; 14];
    client_peer.read_exact(&mut buf[..13]).unwrap();
    assert_eq!(&buf[..13], b"to the client");
    upstream_peer.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"to the backend");
    let (waiting, none) = got[1].take_sockets().unwrap();
    assert!(none.is_none());
    (&waiting).write_all(b"!").unwrap();
    waiting_peer.read_exact(&mut buf[..1]).unwrap();

    // The sent copies are closed as handed over: the connections stay up.
    for session in sent {
        session.handed_over();
    }
    (&client).write_all(b"still").unwrap();
    client_peer.read_exact(&mut buf[..5]).unwrap();
    assert_eq!(&buf[..5], b"still");
}

#[test]
fn the_end_header_round_trips() {
    let end = FrameHeader::parse(&FrameHeader::END.to_bytes()).unwrap();
    assert!(end.is_end());
    assert_eq!((end.descriptors(), end.body_len()), (0, 0));
}

#[test]
fn headers_out_of_step_or_too_large_are_refused() {
    let mut bytes = FrameHeader::END.to_bytes();
    bytes[0] = b'X';
    assert!(matches!(
        FrameHeader::parse(&bytes),
        Err(WireError::BadMagic(_))
    ));
    let mut bytes = FrameHeader::END.to_bytes();
    bytes[4..8].copy_from_slice(&(MAX_FRAME_SESSIONS as u32 + 1).to_be_bytes());
    assert!(matches!(
        FrameHeader::parse(&bytes),
        Err(WireError::TooLarge {
            what: "sessions",
            ..
        })
    ));
    let mut bytes = FrameHeader::END.to_bytes();
    bytes[12..16].copy_from_slice(&u32::MAX.to_be_bytes());
    assert!(matches!(
        FrameHeader::parse(&bytes),
        Err(WireError::TooLarge {
            what: "body length",
            ..
        })
    ));
}

#[test]
fn a_frame_without_its_sockets_is_refused() {
    let (session, _, _) = relaying(1);
    let frame = encode_frame(std::slice::from_ref(&session)).unwrap();
    let (header, body, mut fds) = transmit(&frame);
    fds.pop();
    let err = decode_frame(&header, &body, fds).unwrap_err();
    assert!(
        matches!(
            err,
            WireError::Descriptors {
                expected: 2,
                got: 1
            }
        ),
        "{err}"
    );
}

#[test]
fn a_descriptor_that_is_not_a_stream_socket_is_refused() {
    let (session, _, _) = relaying(1);
    let frame = encode_frame(std::slice::from_ref(&session)).unwrap();
    let (header, body, mut fds) = transmit(&frame);
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    fds[1] = udp.as_fd().try_clone_to_owned().unwrap();
    let err = decode_frame(&header, &body, fds).unwrap_err();
    assert!(
        matches!(err, WireError::NotAStream { index: 1, .. }),
        "{err}"
    );
}

#[test]
fn every_truncation_of_a_body_is_refused_without_a_panic() {
    let (session, _, _) = relaying(1);
    let frame = encode_frame(std::slice::from_ref(&session)).unwrap();
    let (header, body, _) = transmit(&frame);
    for len in 0..body.len() {
        let short = FrameHeader {
            body_len: len as u32,
            ..header
        };
        let result = decode_frame(&short, &body[..len], Vec::new());
        assert!(
            matches!(result, Err(WireError::Malformed(_))),
            "{len}: {result:?}"
        );
    }
    // Bytes after the last session.
    let mut long = body.clone();
    long.push(0);
    let header = FrameHeader {
        body_len: long.len() as u32,
        ..header
    };
    assert!(matches!(
        decode_frame(&header, &long, Vec::new()),
        Err(WireError::Malformed("bytes after the last session"))
    ));
}

#[test]
fn bytes_pending_after_a_passed_on_end_of_stream_are_refused() {
    let (mut session, _, _) = relaying(1);
    if let Some(relay) = session.relay.as_mut() {
        relay.state.up.state = PipeState::Done;
    }
    let frame = encode_frame(std::slice::from_ref(&session)).unwrap();
    let (header, body, fds) = transmit(&frame);
    assert!(matches!(
        decode_frame(&header, &body, fds),
        Err(WireError::Malformed(
            "bytes pending after the end of stream was passed on"
        ))
    ));
}

#[test]
fn a_session_without_sockets_cannot_be_encoded() {
    let (mut session, _, _) = relaying(3);
    let _sockets = session.take_sockets();
    assert!(matches!(
        encode_frame(std::slice::from_ref(&session)),
        Err(WireError::Taken(3))
    ));
}

/// A session dropped without being handed over resets its connections: the peer sees an
/// error, not a clean end of stream.
#[test]
fn a_dropped_session_resets_its_connections() {
    let (session, mut client_peer, _) = relaying(1);
    drop(session);
    let mut buf = [0u8; 1];
    let err = client_peer.read(&mut buf).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset);
}

#[test]
fn addresses_of_both_families_round_trip() {
    for addr in [
        "0.0.0.0:0",
        "255.255.255.255:65535",
        "[::]:1",
        "[fe80::1]:443",
    ] {
        let addr: SocketAddr = addr.parse().unwrap();
        let mut body = Vec::new();
        put_addr(&mut body, addr);
        let mut reader = Reader { rest: &body };
        assert_eq!(reader.addr().unwrap(), addr);
        assert!(reader.rest.is_empty());
    }
}
