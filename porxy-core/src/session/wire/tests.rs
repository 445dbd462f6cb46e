//! Round trips of the wire format, and the frames it refuses.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

use super::*;
use crate::conn::fanout::frozen::{FanState, FrozenDest, FrozenPhase};
use crate::conn::fanout::FanoutSettings;
use crate::conn::pipe::PipeState;
use crate::session::Fanout;
use crate::spec::Reply;

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
        assert_eq!(a.kind, b.kind);
    }
    assert_eq!(got[0].buffered(), 28 + 256);
    assert!(got[0].half_closed());
    assert_eq!(got[1].backend(), None);

    // The sockets are the same connections: bytes written on the received ones arrive.
    let (client, mut upstreams) = got[0].take_sockets().unwrap();
    assert_eq!(upstreams.len(), 1, "a relaying session has its upstream");
    let upstream = upstreams.remove(0);
    (&client).write_all(b"to the client").unwrap();
    (&upstream).write_all(b"to the backend").unwrap();
    let mut buf = [0u8; 14];
    client_peer.read_exact(&mut buf[..13]).unwrap();
    assert_eq!(&buf[..13], b"to the client");
    upstream_peer.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"to the backend");
    let (waiting, none) = got[1].take_sockets().unwrap();
    assert!(none.is_empty());
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

/// Sends `session` with the last of its `sockets` descriptors left out: the decode must refuse
/// it, naming both counts.
#[track_caller]
fn assert_one_socket_short_is_refused(session: &Session, sockets: usize) {
    let frame = encode_frame(std::slice::from_ref(session)).unwrap();
    let (header, body, mut fds) = transmit(&frame);
    assert_eq!(fds.len(), sockets);
    fds.pop();
    let err = decode_frame(&header, &body, fds).unwrap_err();
    assert!(
        matches!(err, WireError::Descriptors { expected, got } if expected == sockets && got == sockets - 1),
        "{err}"
    );
}

#[test]
fn a_frame_without_its_sockets_is_refused() {
    let (session, _, _) = relaying(1);
    assert_one_socket_short_is_refused(&session, 2);
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

/// Every body cut short of `session`'s frame is refused as malformed, without a panic; returns
/// the frame's header and whole body.
fn assert_truncations_refused(session: &Session) -> (FrameHeader, Vec<u8>) {
    let frame = encode_frame(std::slice::from_ref(session)).unwrap();
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
    (header, body)
}

#[test]
fn every_truncation_of_a_body_is_refused_without_a_panic() {
    let (session, _, _) = relaying(1);
    let (header, body) = assert_truncations_refused(&session);
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
    if let Kind::Relaying(relay) = &mut session.kind {
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
        let mut reader = Reader::new(&body);
        assert_eq!(reader.addr().unwrap(), addr);
        assert!(reader.is_done());
    }
}

/// A fan-out session to three destinations: the primary (open, at the head, its replies
/// pending for the client), a mirror dropped earlier (gone, no socket), and a lagging mirror
/// (open, behind: the log starts at its position). Returns the session and the peers of its
/// client and two open destinations.
fn fanning(id: u64) -> (Session, TcpStream, Vec<TcpStream>) {
    let (client, client_peer) = pair();
    let (primary, primary_peer) = pair();
    let (mirror, mirror_peer) = pair();
    let base = 1000;
    let log: Vec<u8> = (0..3000).map(|i| (i % 251) as u8).collect();
    let head = base + log.len() as u64;
    let dest = |phase, sent, fin_sent, eof| FrozenDest {
        phase,
        sent,
        fin_sent,
        eof,
    };
    let fan = Fanout {
        settings: FanoutSettings {
            reply: Reply::Primary,
            max_lag: 1 << 20,
            min_live: 1,
        },
        dests: vec![
            "127.0.0.1:7001".parse().unwrap(),
            "[2001:db8::2]:7002".parse().unwrap(),
            "127.0.0.1:7003".parse().unwrap(),
        ],
        state: FanState {
            base,
            log,
            dests: vec![
                dest(FrozenPhase::Open, head, true, false),
                dest(FrozenPhase::Gone, 10, false, false),
                dest(FrozenPhase::Open, base, false, true),
            ],
            client_eof: true,
            client_fin_sent: false,
            down: PipeSnapshot {
                state: PipeState::Open,
                pending: b"the primary's reply".to_vec(),
            },
            idle_for: Duration::from_millis(250),
            half_closed_for: Some(Duration::from_secs(2)),
        },
    };
    let session = Session::fanout(
        client,
        vec![primary, mirror],
        id,
        "127.0.0.1:8001".parse().unwrap(),
        "10.1.2.3:40002".parse().unwrap(),
        fan,
    );
    (session, client_peer, vec![primary_peer, mirror_peer])
}

/// The fan-out part of a session, to change it.
fn fan_of(session: &mut Session) -> &mut Fanout {
    match &mut session.kind {
        Kind::Fanout(fan) => fan,
        _ => panic!("not a fan-out session"),
    }
}

#[test]
fn a_fanout_session_survives_a_round_trip_with_a_socket_per_open_destination() {
    let (fan, mut client_peer, mut dest_peers) = fanning(9);
    let (relay, _, _) = relaying(10);
    let sent = vec![fan, relay];
    assert_eq!(
        descriptor_count(&sent[0]),
        3,
        "the client and two open destinations"
    );
    let frame = encode_frame(&sent).unwrap();
    assert_eq!(frame.descriptors.len(), 5);
    assert_eq!(
        frame.body.len(),
        sent.iter().map(encoded_len).sum::<usize>()
    );
    let (header, body, fds) = transmit(&frame);
    let mut got = decode_frame(&header, &body, fds).unwrap();
    assert_eq!(got[0].kind, sent[0].kind);
    assert_eq!(got[1].kind, sent[1].kind);
    assert!(got[0].is_fanout());
    assert_eq!(
        got[0].destinations(),
        [
            "127.0.0.1:7001".parse::<SocketAddr>().unwrap(),
            "127.0.0.1:7003".parse().unwrap()
        ],
        "the gone mirror stays behind"
    );
    assert_eq!(got[0].buffered(), 3000 + 19);
    assert!(got[0].half_closed());
    assert_eq!(got[0].backend(), None);

    // The open destinations' sockets come in order, after the client's.
    let (client, upstreams) = got[0].take_sockets().unwrap();
    assert_eq!(upstreams.len(), 2);
    (&client).write_all(b"c").unwrap();
    for (i, socket) in upstreams.iter().enumerate() {
        (&*socket).write_all(&[b'0' + i as u8]).unwrap();
    }
    let mut buf = [0u8; 1];
    client_peer.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"c");
    for (i, peer) in dest_peers.iter_mut().enumerate() {
        peer.read_exact(&mut buf).unwrap();
        assert_eq!(buf[0], b'0' + i as u8, "destination socket {i}");
    }
    for session in sent {
        session.handed_over();
    }
}

/// Frames are filled by descriptors too: 1 + N per fan-out session, at most
/// MAX_FRAME_DESCRIPTORS in all.
#[test]
fn a_frame_with_more_descriptors_than_a_message_carries_is_refused() {
    let mut sessions = Vec::new();
    let mut peers = Vec::new();
    while sessions.iter().map(descriptor_count).sum::<usize>() <= MAX_FRAME_DESCRIPTORS {
        let (session, client_peer, dest_peers) = fanning(sessions.len() as u64);
        sessions.push(session);
        peers.push((client_peer, dest_peers));
    }
    assert!(sessions.len() < MAX_FRAME_SESSIONS);
    assert!(matches!(
        encode_frame(&sessions),
        Err(WireError::TooLarge {
            what: "descriptors",
            ..
        })
    ));
    assert!(encode_frame(&sessions[1..]).is_ok());
    sessions.into_iter().for_each(Session::handed_over);
}

/// Decoding refuses fan-out states that would send a destination bytes it never had, or the
/// FIN twice, or hold more than a connection may: the checks of `FanState::check`, seen
/// through the wire.
#[test]
fn fanout_states_that_break_the_invariants_are_refused() {
    type Breakage = fn(&mut Fanout);
    let cases: &[(&str, Breakage)] = &[
        ("beyond the head", |f| f.state.dests[0].sent = 5000),
        ("lacks bytes the log does not hold", |f| {
            f.state.dests[2].sent = 999
        }),
        ("does not start at", |f| f.state.dests[2].sent = 1001),
        ("longer than max_lag", |f| {
            f.settings.max_lag = 64 * 1024;
            f.state.log = vec![0; 64 * 1024 + 2 * MAX_BUFFER_SIZE + 1];
            f.state.dests[0].sent = 1000 + f.state.log.len() as u64;
        }),
        ("sent FIN before the client's last byte", |f| {
            f.state.client_eof = false
        }),
        ("the primary is gone", |f| f.state.dests.swap(0, 1)),
        ("EOF and its reply pipe disagree", |f| {
            f.state.dests[0].eof = true
        }),
        ("reply bytes in a one-way feed", |f| {
            f.settings.reply = Reply::None
        }),
        ("min_live", |f| f.settings.min_live = 4),
        ("max_lag out of range", |f| f.settings.max_lag = 1),
    ];
    for (expected, breakage) in cases {
        let (mut session, _, _) = fanning(1);
        breakage(fan_of(&mut session));
        // The sockets follow the (broken) count of open destinations.
        let open = fan_of(&mut session).state.open_dests();
        session.upstreams.truncate(open);
        let frame = encode_frame(std::slice::from_ref(&session)).unwrap();
        let (header, body, fds) = transmit(&frame);
        match decode_frame(&header, &body, fds) {
            Err(WireError::Malformed(why)) => {
                assert!(why.contains(expected), "{expected}: refused for `{why}`")
            }
            other => panic!("{expected}: {other:?}"),
        }
    }
}

#[test]
fn every_truncation_of_a_fanout_body_is_refused_without_a_panic() {
    let (session, _, _) = fanning(1);
    assert_truncations_refused(&session);
}

#[test]
fn a_fanout_session_without_its_destination_sockets_is_refused() {
    let (session, _, _) = fanning(1);
    assert_one_socket_short_is_refused(&session, 3);
}
