//! The opening phase, read from a fake client: a preamble that comes whole, in pieces, too
//! late, too long, cut short or malformed; the bytes past it; and what the machine makes of it
//! (a pick with the client the preamble names, the early bytes first to the upstream).

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use super::fake::*;
use crate::conn::close::CloseReason;
use crate::conn::hold::Mode;
use crate::conn::machine::{AfterReady, Machine, SocketIx};
use crate::conn::opening::{Opening, OpeningConfig, OpeningError, OpeningStep, Parsed, Preamble};
use crate::conn::transport::Transport;
use crate::conn::{Action, Closing, Conn, Phase, Readiness, Side};

/// A preamble for tests: `HI <addr>\n`, or `HI -\n` for "the connection's own peer"; at most
/// [`MAX`] bytes.
struct Hello;

const MAX: usize = 40;
/// The reason the test preamble names for a failed opening (any will do, as long as the
/// machine passes it on).
const FAILED: CloseReason = CloseReason::ClientReset;

impl Preamble for Hello {
    fn max_len(&self) -> usize {
        MAX
    }

    fn name(&self) -> &'static str {
        "hello"
    }

    fn parse(&self, received: &[u8]) -> Parsed {
        let prefix = b"HI ";
        let head = &received[..received.len().min(prefix.len())];
        if head != &prefix[..head.len()] {
            return Parsed::Invalid("no HI".into());
        }
        let Some(end) = received.iter().position(|&b| b == b'\n') else {
            return Parsed::Incomplete;
        };
        let Ok(text) = std::str::from_utf8(&received[prefix.len()..end]) else {
            return Parsed::Invalid("not text".into());
        };
        let source = match text {
            "-" => None,
            addr => match addr.parse::<SocketAddr>() {
                Ok(addr) => Some(addr),
                Err(e) => return Parsed::Invalid(Box::new(e)),
            },
        };
        Parsed::Complete {
            len: end + 1,
            source,
            details: None,
            server_name: None,
        }
    }

    fn failure_reason(&self) -> CloseReason {
        FAILED
    }
}

/// Readable with a hang-up: the client's EOF has come.
const HANGUP: Readiness = Readiness {
    readable: true,
    writable: false,
    failed: true,
};

const TIMEOUT: Duration = Duration::from_secs(5);

fn config() -> OpeningConfig {
    OpeningConfig {
        preambles: Arc::new([Arc::new(Hello) as Arc<dyn Preamble>]),
        senders: None,
        handshake: None,
        timeout: TIMEOUT,
    }
}

fn opening() -> (Opening, std::time::Instant) {
    let t0 = std::time::Instant::now();
    (Opening::new(&config(), t0), t0)
}

fn source() -> SocketAddr {
    "192.0.2.7:4711".parse().unwrap()
}

#[test]
fn a_whole_preamble_opens_with_its_source_and_keeps_the_bytes_past_it() {
    let (mut opening, _) = opening();
    let mut client = FakeStream::new().reading([data(b"HI 192.0.2.7:4711\nGET / HTTP/1.0\r\n")]);
    opening.on_ready(R);
    let OpeningStep::Open(opened) = opening.read(&mut client) else {
        panic!("not open");
    };
    assert_eq!(opened.source, Some(source()));
    assert_eq!(opened.early, b"GET / HTTP/1.0\r\n");
    assert_eq!(
        client.read_calls, 1,
        "one read: the preamble and what follows came together"
    );
}

#[test]
fn a_preamble_in_pieces_waits_for_the_rest() {
    let (mut opening, _) = opening();
    let mut client = FakeStream::new().reading([data(b"HI 19"), Rd::WouldBlock]);
    opening.on_ready(R);
    assert!(matches!(opening.read(&mut client), OpeningStep::Wait));
    // No more readiness, no more reads.
    let calls = client.read_calls;
    assert!(matches!(opening.read(&mut client), OpeningStep::Wait));
    assert_eq!(client.read_calls, calls);
    client.reads.push_back(data(b"2.0.2.7:4711\n"));
    opening.on_ready(R);
    let OpeningStep::Open(opened) = opening.read(&mut client) else {
        panic!("not open");
    };
    assert_eq!(opened.source, Some(source()));
    assert!(opened.early.is_empty());
}

#[test]
fn a_preamble_naming_no_source_keeps_the_peer() {
    let (mut opening, _) = opening();
    let mut client = FakeStream::new().reading([data(b"HI -\n")]);
    opening.on_ready(R);
    let OpeningStep::Open(opened) = opening.read(&mut client) else {
        panic!("not open");
    };
    assert_eq!(opened.source, None);
}

#[test]
fn a_preamble_too_late_fails_at_the_deadline_not_before() {
    let (mut opening, t0) = opening();
    assert_eq!(opening.deadline(), t0 + TIMEOUT);
    assert!(matches!(
        opening.on_timer(t0 + TIMEOUT - Duration::from_millis(1)),
        OpeningStep::Wait
    ));
    assert!(matches!(
        opening.on_timer(t0 + TIMEOUT),
        OpeningStep::Fail(OpeningError::Timeout)
    ));
}

#[test]
fn a_preamble_longer_than_its_limit_fails_without_reading_past_it() {
    let (mut opening, _) = opening();
    let mut long = b"HI ".to_vec();
    long.resize(3 * MAX, b'x');
    let mut client = FakeStream::new().reading([Rd::Data(long)]);
    opening.on_ready(R);
    let step = opening.read(&mut client);
    assert!(
        matches!(step, OpeningStep::Fail(OpeningError::TooLong { max: MAX })),
        "{step:?}"
    );
    assert_eq!(
        client.delivered.len(),
        MAX,
        "not a byte past the limit is read"
    );
}

#[test]
fn a_client_that_ends_before_its_preamble_fails() {
    let (mut opening, _) = opening();
    let mut client = FakeStream::new().reading([data(b"HI 1")]);
    opening.on_ready(R);
    assert!(matches!(opening.read(&mut client), OpeningStep::Wait));
    client.reads.push_back(Rd::Eof);
    opening.on_ready(HANGUP);
    let step = opening.read(&mut client);
    assert!(
        matches!(
            step,
            OpeningStep::Fail(OpeningError::Closed { received: 4 })
        ),
        "{step:?}"
    );
}

#[test]
fn a_malformed_preamble_fails_with_what_is_wrong() {
    let (mut opening, _) = opening();
    let mut client = FakeStream::new().reading([data(b"HI 192.0.2.300:1\n")]);
    opening.on_ready(R);
    let OpeningStep::Fail(error) = opening.read(&mut client) else {
        panic!("not failed");
    };
    assert!(matches!(error, OpeningError::Malformed(_)));
    assert_eq!(error.to_string(), "invalid socket address syntax");
}

#[test]
fn machine_opens_then_the_early_bytes_reach_the_upstream_first() {
    let mut rig = Rig::connecting();
    let mut machine = Machine::Opening(Box::new(Opening::new(&config(), rig.t0)));
    assert_eq!(machine.deadline(), Some(rig.t0 + TIMEOUT));
    assert!(
        !machine.can_travel(),
        "an opening connection stays where it is"
    );
    rig.client
        .reads
        .extend([data(b"HI 192.0.2.7:4711\nearly"), Rd::WouldBlock]);
    assert_eq!(
        machine.on_ready(SocketIx::Client, R),
        AfterReady::Drive,
        "the client's bytes are the opening's to read"
    );
    let mut no_upstreams: [Option<FakeStream>; 0] = [];
    let action = machine.drive(&mut rig.client, &mut no_upstreams, &mut rig.pools, rig.t0);
    assert_eq!(
        action,
        Action::Pick {
            source: Some(source())
        }
    );
    assert_eq!(
        machine.deadline(),
        None,
        "an opened machine waits for nothing"
    );
    let opened = machine.take_opened().expect("opened");
    assert_eq!(opened.early, b"early");

    // The relay built from it waits for a backend, holding the early bytes: a waiting client
    // travels alone, so this one cannot travel.
    let mut conn = Conn::opened(
        rig.t0,
        settings(Mode::Copy),
        1,
        &opened.early,
        opened.client_ready,
        &mut rig.pools,
    );
    assert_eq!(conn.phase(), Phase::Queued);
    assert!(!conn.can_travel());
    conn.restart_connect(rig.t0);
    // Connected, the backend gets its PROXY header first, then the early bytes, then the
    // rest of the stream.
    assert_eq!(
        conn.on_connected(rig.t0, Some(b"HDR;"), &mut rig.pools),
        None
    );
    rig.conn = conn;
    rig.client.reads.push_back(data(b" and late"));
    rig.ready(Side::Client, R);
    rig.ready(Side::Upstream, W);
    assert_eq!(rig.drive(secs(1)), Action::Wait);
    assert_eq!(rig.upstream.written, b"HDR;early and late");
    assert_eq!(
        rig.upstream.write_sizes,
        [18],
        "the header waited for the client's ready bytes: one write"
    );
    assert_eq!(rig.conn.take_unreported(), (18, 0));
}

/// A client that says nothing first (the server speaks first): the header goes out alone, at
/// once, and the client's bytes follow when they come.
#[test]
fn a_header_goes_out_at_once_when_the_client_has_nothing_yet() {
    let mut rig = Rig::connecting();
    assert_eq!(
        rig.conn.on_connected(rig.t0, Some(b"HDR;"), &mut rig.pools),
        None
    );
    rig.ready(Side::Upstream, W);
    assert_eq!(rig.drive(secs(1)), Action::Wait);
    assert_eq!(rig.upstream.written, b"HDR;");
    rig.client.reads.push_back(data(b"later"));
    rig.ready(Side::Client, R);
    assert_eq!(rig.drive(secs(2)), Action::Wait);
    assert_eq!(rig.upstream.written, b"HDR;later");
    assert_eq!(rig.upstream.write_sizes, [4, 5]);
}

#[test]
fn machine_closes_a_failed_opening_with_the_preambles_reason() {
    let rig = Rig::connecting();
    let mut machine = Machine::Opening(Box::new(Opening::new(&config(), rig.t0)));
    assert_eq!(machine.on_timer(rig.t0 + secs(1)), Action::Wait);
    assert_eq!(
        machine.on_timer(rig.t0 + TIMEOUT),
        close(FAILED, Closing::Reset, Closing::Graceful)
    );

    let mut machine = Machine::Opening(Box::new(Opening::new(&config(), rig.t0)));
    let mut client = FakeStream::new().reading([data(b"NO\n")]);
    machine.on_ready(SocketIx::Client, R);
    let mut no_upstreams: [Option<FakeStream>; 0] = [];
    let mut pools = pools(1);
    assert_eq!(
        machine.drive(&mut client, &mut no_upstreams, &mut pools, rig.t0),
        close(FAILED, Closing::Reset, Closing::Graceful)
    );
}

#[test]
fn a_handshake_alone_waits_for_the_transport_then_opens() {
    let t0 = std::time::Instant::now();
    let config = OpeningConfig {
        preambles: Arc::new([]),
        handshake: Some(FAILED),
        ..config()
    };
    let mut opening = Opening::new(&config, t0);
    let mut client = FakeStream::new();
    client
        .handshakes
        .extend([Err(ErrorKind::WouldBlock), Ok(())]);
    opening.on_ready(R);
    assert!(matches!(opening.read(&mut client), OpeningStep::Wait));
    assert_eq!(
        client.read_calls, 0,
        "the transport reads for its handshake itself"
    );
    opening.on_ready(R);
    let OpeningStep::Open(opened) = opening.read(&mut client) else {
        panic!("not open");
    };
    assert_eq!(opened.source, None);
    assert!(opened.early.is_empty());
    assert_eq!(client.handshake_calls, 2);
}

#[test]
fn a_handshake_after_a_preamble_takes_its_own_bytes_from_past_the_preamble() {
    let t0 = std::time::Instant::now();
    let config = OpeningConfig {
        handshake: Some(FAILED),
        ..config()
    };
    let mut opening = Opening::new(&config, t0);
    let mut client = FakeStream::new().reading([data(b"HI 192.0.2.7:4711\nHELLOearly")]);
    client.handshake_takes = 5;
    opening.on_ready(R);
    let OpeningStep::Open(opened) = opening.read(&mut client) else {
        panic!("not open");
    };
    assert_eq!(opened.source, Some(source()));
    assert_eq!(client.handshake_took, b"HELLO");
    assert_eq!(
        opened.early, b"early",
        "what the handshake left goes to the upstream"
    );
}

#[test]
fn a_failed_handshake_closes_with_the_openings_reason() {
    let t0 = std::time::Instant::now();
    let config = OpeningConfig {
        preambles: Arc::new([]),
        handshake: Some(FAILED),
        ..config()
    };
    let mut machine = Machine::Opening(Box::new(Opening::new(&config, t0)));
    let mut client = FakeStream::new();
    client.handshakes.push_back(Err(ErrorKind::InvalidData));
    machine.on_ready(SocketIx::Client, R);
    let mut no_upstreams: [Option<FakeStream>; 0] = [];
    let mut pools = pools(1);
    assert_eq!(
        machine.drive(&mut client, &mut no_upstreams, &mut pools, t0),
        close(FAILED, Closing::Reset, Closing::Graceful)
    );
}

#[test]
fn a_waiting_client_whose_preamble_was_read_here_stays_even_with_no_bytes_past_it() {
    // Were it to travel as a waiting client, the next process would wait for a preamble that
    // never comes again.
    let mut rig = Rig::connecting();
    let mut conn = Conn::opened(
        rig.t0,
        settings(Mode::Copy),
        1,
        &[],
        Readiness::default(),
        &mut rig.pools,
    );
    assert_eq!(conn.phase(), Phase::Queued);
    assert!(!conn.can_travel());
    assert_eq!(
        conn.freeze(&mut rig.pools, rig.t0).unwrap(),
        crate::conn::frozen::Frozen::Stays
    );
    // A client queued without an opening travels as before.
    let mut plain = Conn::queued(rig.t0, settings(Mode::Copy), 1);
    assert!(plain.can_travel());
    assert_eq!(
        plain.freeze(&mut rig.pools, rig.t0).unwrap(),
        crate::conn::frozen::Frozen::Waiting
    );
}

/// A client whose transport peeks, as a kernel socket does.
fn peeking(steps: impl IntoIterator<Item = Rd>) -> FakeStream {
    let mut client = FakeStream::new().reading(steps);
    client.peekable = true;
    client
}

#[test]
fn a_peeked_preamble_is_taken_exactly_and_the_stream_stays_in_the_kernel() {
    let (mut opening, _) = opening();
    let mut client = peeking([data(b"HI 192.0.2.7:4711\nGET / HTTP/1.0\r\n")]);
    opening.on_ready(R);
    let OpeningStep::Open(opened) = opening.read(&mut client) else {
        panic!("not open");
    };
    assert_eq!(opened.source, Some(source()));
    assert!(
        opened.early.is_empty(),
        "nothing past the preamble was taken"
    );
    assert_eq!(
        client.delivered, b"HI 192.0.2.7:4711\n",
        "exactly the preamble was read"
    );
    assert!(
        opened.client_ready.readable,
        "the stream's first bytes wait in the kernel and raise no new event: the relay reads them"
    );
    let mut rest = [0u8; 64];
    let n = client.read(&mut rest).unwrap();
    assert_eq!(&rest[..n], b"GET / HTTP/1.0\r\n");
}

#[test]
fn a_preamble_over_many_small_writes_is_peeked_until_whole_and_taken_once() {
    let (mut opening, _) = opening();
    let mut client = peeking([]);
    for piece in [&b"H"[..], b"I 19", b"2.0.2", b".7:47", b"11"] {
        client.reads.push_back(data(piece));
        opening.on_ready(R);
        assert!(matches!(opening.read(&mut client), OpeningStep::Wait));
        assert_eq!(
            client.read_calls, 0,
            "nothing is taken before the preamble is whole"
        );
    }
    client.reads.push_back(data(b"\n"));
    opening.on_ready(R);
    let OpeningStep::Open(opened) = opening.read(&mut client) else {
        panic!("not open");
    };
    assert_eq!(opened.source, Some(source()));
    assert_eq!(client.delivered, b"HI 192.0.2.7:4711\n");
    assert!(!opened.client_ready.readable, "nothing past it yet");
}

#[test]
fn a_peeked_preamble_cut_short_by_the_clients_end_fails() {
    let (mut opening, _) = opening();
    let mut client = peeking([data(b"HI 1"), Rd::Eof]);
    opening.on_ready(HANGUP);
    let step = opening.read(&mut client);
    assert!(
        matches!(
            step,
            OpeningStep::Fail(OpeningError::Closed { received: 4 })
        ),
        "{step:?}"
    );
}

#[test]
fn a_peeked_preamble_longer_than_its_limit_fails_taking_nothing() {
    let (mut opening, _) = opening();
    let mut long = b"HI ".to_vec();
    long.resize(3 * MAX, b'x');
    let mut client = peeking([Rd::Data(long)]);
    opening.on_ready(R);
    let step = opening.read(&mut client);
    assert!(
        matches!(step, OpeningStep::Fail(OpeningError::TooLong { max: MAX })),
        "{step:?}"
    );
    assert_eq!(client.read_calls, 0);
}

/// A second preamble that is the start of the stream: `NAME!`, read for its name, consuming
/// nothing (as a peeked ClientHello is).
struct Named;

impl Preamble for Named {
    fn max_len(&self) -> usize {
        MAX
    }

    fn name(&self) -> &'static str {
        "name"
    }

    fn parse(&self, received: &[u8]) -> Parsed {
        match received.iter().position(|&b| b == b'!') {
            None => Parsed::Incomplete,
            Some(end) => Parsed::Complete {
                len: 0,
                source: None,
                details: None,
                server_name: Some(String::from_utf8_lossy(&received[..end]).into_owned()),
            },
        }
    }

    fn failure_reason(&self) -> CloseReason {
        CloseReason::TlsHandshake
    }
}

fn header_then_name() -> OpeningConfig {
    OpeningConfig {
        preambles: Arc::new([
            Arc::new(Hello) as Arc<dyn Preamble>,
            Arc::new(Named) as Arc<dyn Preamble>,
        ]),
        ..config()
    }
}

#[test]
fn two_preambles_read_in_turn_keep_what_each_said() {
    let t0 = std::time::Instant::now();
    // Read (no peek): the name comes in the same read as the header.
    let mut opening = Opening::new(&header_then_name(), t0);
    let mut client = FakeStream::new().reading([data(b"HI 192.0.2.7:4711\nsni.test!rest")]);
    opening.on_ready(R);
    let OpeningStep::Open(opened) = opening.read(&mut client) else {
        panic!("not open");
    };
    assert_eq!(opened.source, Some(source()));
    assert_eq!(opened.server_name.as_deref(), Some("sni.test"));
    assert_eq!(
        opened.early, b"sni.test!rest",
        "the name is the stream's own"
    );

    // Peeked: the header taken exactly, the stream left in the kernel, the name in a later
    // segment.
    let mut opening = Opening::new(&header_then_name(), t0);
    let mut client = peeking([data(b"HI 192.0.2.7:4711\nsni.")]);
    opening.on_ready(R);
    assert!(matches!(opening.read(&mut client), OpeningStep::Wait));
    assert_eq!(client.delivered, b"HI 192.0.2.7:4711\n");
    client.reads.push_back(data(b"test!rest"));
    opening.on_ready(R);
    let OpeningStep::Open(opened) = opening.read(&mut client) else {
        panic!("not open");
    };
    assert_eq!(opened.source, Some(source()));
    assert_eq!(opened.server_name.as_deref(), Some("sni.test"));
    assert!(opened.early.is_empty(), "nothing taken past the header");
    assert!(opened.client_ready.readable, "the stream waits to be read");
}

#[test]
fn a_failure_names_the_reason_of_the_preamble_it_came_in() {
    let t0 = std::time::Instant::now();
    let mut opening = Opening::new(&header_then_name(), t0);
    assert_eq!(
        opening.failure_reason(&OpeningError::Timeout),
        FAILED,
        "the header's"
    );
    let mut client = FakeStream::new().reading([data(b"HI -\nno name yet")]);
    opening.on_ready(R);
    assert!(matches!(opening.read(&mut client), OpeningStep::Wait));
    assert!(matches!(
        opening.on_timer(t0 + TIMEOUT),
        OpeningStep::Fail(OpeningError::Timeout)
    ));
    assert_eq!(
        opening.failure_reason(&OpeningError::Timeout),
        CloseReason::TlsHandshake,
        "the name's"
    );
}

/// `Named`, with room for a preamble larger than one read.
struct LargeNamed;

impl Preamble for LargeNamed {
    fn max_len(&self) -> usize {
        20_000
    }

    fn name(&self) -> &'static str {
        "large name"
    }

    fn parse(&self, received: &[u8]) -> Parsed {
        Named.parse(received)
    }

    fn failure_reason(&self) -> CloseReason {
        FAILED
    }
}

#[test]
fn a_peeked_preamble_larger_than_a_read_is_seen_whole() {
    let config = OpeningConfig {
        preambles: Arc::new([Arc::new(LargeNamed) as Arc<dyn Preamble>]),
        ..config()
    };
    let mut opening = Opening::new(&config, std::time::Instant::now());
    let mut big = vec![b'n'; 9_000];
    big.extend_from_slice(b"!rest");
    let mut client = peeking([Rd::Data(big)]);
    opening.on_ready(R);
    let OpeningStep::Open(opened) = opening.read(&mut client) else {
        panic!("not open");
    };
    assert_eq!(opened.server_name.map(|n| n.len()), Some(9_000));
    assert_eq!(client.read_calls, 0, "nothing taken");
    assert!(
        client.peek_calls >= 2,
        "the buffer grew: {}",
        client.peek_calls
    );
}
