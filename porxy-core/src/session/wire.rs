//! The wire format of [`Session`]s: how one porxy process sends its connections to another over
//! a Unix socket, the bytes in frames and the sockets attached (SCM_RIGHTS).
//!
//! The two processes first agree on [`FORMAT`] (the caller exchanges it as a line, so that a
//! successor speaking another version fails clearly, before any socket moves). Then come frames:
//!
//! ```text
//! header, FRAME_HEADER_LEN = 16 bytes, sent in one sendmsg with the frame's descriptors:
//!   0..4    magic "PXS2"
//!   4..8    u32 sessions in the frame, at most MAX_FRAME_SESSIONS (0: the end, no body)
//!   8..12   u32 descriptors attached, at most MAX_FRAME_DESCRIPTORS
//!   12..16  u32 body length, at most MAX_FRAME_BODY
//! body: the sessions one after the other
//!   u8      kind: 0 a client waiting for a backend, 1 a relaying connection, 2 a fan-out one
//!   u64     the connection's id in the sending process
//!   addr    the tunnel's listen address
//!   addr    the client's address
//!   relaying connections only:
//!     addr  the backend's address
//!     pipe  client → upstream, then pipe upstream → client
//!     clocks
//!   fan-out connections only:
//!     u8    reply: 0 primary (destination 0 answers the client), 1 none
//!     u32   max_lag, in bytes
//!     u8    min_live
//!     u8    destinations, 1 to 64; per destination, in the connection's order:
//!             addr  its backend's address
//!             u8    0 open (its socket is attached), 1 finished, 2 gone (left earlier)
//!             u8    flags: 1 it was sent FIN, 2 it sent EOF
//!             u64   position in the client's stream up to which it was sent everything
//!     u8    client flags: 1 its EOF was read, 2 it was sent FIN (reply none)
//!     u64   base: the position of the open destination furthest behind
//!     u32   length, then the client's bytes from base on (the log)
//!     pipe  primary → client
//!     clocks
//! addr:   u8 family (4 or 6), the address (4 or 16 bytes), u16 port
//! pipe:   u8 end of stream: 0 open, 1 draining (EOF read, bytes pending), 2 done (passed on)
//!         u32 length, then the bytes read and not yet written
//! clocks: u64 idle for, in microseconds
//!         u64 half-closed for, in microseconds, plus 1 (0: not half-closed)
//! descriptors, per session in order: the client socket, then a relaying one's upstream
//! socket, or a fan-out one's open destinations' sockets in order
//! ```
//!
//! A fan-out session takes 1 + N descriptors: frames are filled by descriptors as well as by
//! sessions and bytes ([`descriptor_count`]).
//!
//! Integers are big-endian. Descriptors travel with the first byte of the header, so a receiver
//! reads the header with recvmsg and the body with plain reads of exactly its length.
//!
//! Decoding checks everything before it builds a session: a bad frame yields an error and
//! closes the received descriptors plainly (the sender still holds the connections).

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use super::{Kind, Relay, Session};
use crate::config::MAX_BUFFER_SIZE;
use crate::conn::frozen::RelayState;
use crate::conn::pipe::PipeSnapshot;
use crate::spec::MAX_MAX_LAG;
use fields::{put_addr, put_clocks, put_pipe, Reader};

/// The version of this format, as the two processes agree on it. Version 2 added fan-out
/// connections; a process speaks one version only.
pub const FORMAT: &str = "porxy-sessions/2";
/// The length of a frame header.
pub const FRAME_HEADER_LEN: usize = 16;
/// Most sessions in one frame.
pub const MAX_FRAME_SESSIONS: usize = 120;
/// Most descriptors in one frame: below the kernel's 253 per message.
pub const MAX_FRAME_DESCRIPTORS: usize = 240;
/// Longest frame body: room for one session with the largest buffers, a relaying one's both
/// ways or a fan-out one's log (at most `max_lag` and two buffers) and reply buffer.
pub const MAX_FRAME_BODY: usize = MAX_MAX_LAG + 3 * MAX_BUFFER_SIZE + 64 * 1024;

// A direction's pending bytes come from a buffer or a kernel pipe: both fit the bound the
// reader checks.
const _: () = assert!(crate::config::MAX_PIPE_SIZE <= MAX_BUFFER_SIZE);

const MAGIC: [u8; 4] = *b"PXS2";
const WAITING: u8 = 0;
const RELAYING: u8 = 1;
const FANOUT: u8 = 2;

/// Why a frame could not be made or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The header does not start with the magic bytes: the streams are out of step.
    #[error("not a session frame (magic {0:02x?})")]
    BadMagic([u8; 4]),
    /// A frame announces more than it may hold.
    #[error("frame too large: {what} {got}, at most {max}")]
    TooLarge {
        /// What is too large.
        what: &'static str,
        /// The value announced.
        got: usize,
        /// The limit.
        max: usize,
    },
    /// The descriptors received are not those the frame announces.
    #[error("{got} sockets came with a frame that holds {expected}")]
    Descriptors {
        /// What the frame's sessions need.
        expected: usize,
        /// What came.
        got: usize,
    },
    /// The body ends before a field, or goes on after the last session.
    #[error("malformed frame body: {0}")]
    Malformed(&'static str),
    /// A received descriptor is not a stream socket.
    #[error("descriptor {index} is not a stream socket")]
    NotAStream {
        /// Its position in the frame.
        index: usize,
        /// What the OS said, if it said anything.
        #[source]
        source: Option<io::Error>,
    },
    /// A session to encode has already given its sockets away.
    #[error("session {0} has no sockets left to send")]
    Taken(u64),
}

/// A frame header, parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct FrameHeader {
    sessions: u32,
    descriptors: u32,
    body_len: u32,
}

impl FrameHeader {
    /// The header that ends the stream of frames.
    pub const END: FrameHeader = FrameHeader {
        sessions: 0,
        descriptors: 0,
        body_len: 0,
    };

    /// Parses a header, checking the magic bytes and the limits.
    pub fn parse(bytes: &[u8; FRAME_HEADER_LEN]) -> Result<FrameHeader, WireError> {
        let magic: [u8; 4] = [bytes[0], bytes[1], bytes[2], bytes[3]];
        if magic != MAGIC {
            return Err(WireError::BadMagic(magic));
        }
        let word = |at: usize| {
            u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
        };
        let header = FrameHeader {
            sessions: word(4),
            descriptors: word(8),
            body_len: word(12),
        };
        let check = |what, got: u32, max: usize| {
            if got as usize > max {
                Err(WireError::TooLarge {
                    what,
                    got: got as usize,
                    max,
                })
            } else {
                Ok(())
            }
        };
        check("sessions", header.sessions, MAX_FRAME_SESSIONS)?;
        check("descriptors", header.descriptors, MAX_FRAME_DESCRIPTORS)?;
        check("body length", header.body_len, MAX_FRAME_BODY)?;
        Ok(header)
    }

    /// The header's bytes.
    pub fn to_bytes(self) -> [u8; FRAME_HEADER_LEN] {
        let mut bytes = [0u8; FRAME_HEADER_LEN];
        bytes[..4].copy_from_slice(&MAGIC);
        bytes[4..8].copy_from_slice(&self.sessions.to_be_bytes());
        bytes[8..12].copy_from_slice(&self.descriptors.to_be_bytes());
        bytes[12..16].copy_from_slice(&self.body_len.to_be_bytes());
        bytes
    }

    /// True for the header that ends the stream.
    pub fn is_end(&self) -> bool {
        self.sessions == 0
    }

    /// Descriptors that come with the header.
    pub fn descriptors(&self) -> usize {
        self.descriptors as usize
    }

    /// Bytes of body that follow the header.
    pub fn body_len(&self) -> usize {
        self.body_len as usize
    }
}

/// One frame, encoded: send `header` with `descriptors` attached, then `body`.
#[derive(Debug)]
#[non_exhaustive]
pub struct Frame<'a> {
    /// The header bytes.
    pub header: [u8; FRAME_HEADER_LEN],
    /// The body bytes.
    pub body: Vec<u8>,
    /// The sockets, in order, borrowed from the sessions.
    pub descriptors: Vec<BorrowedFd<'a>>,
}

/// Bytes `session` takes in a frame body.
pub fn encoded_len(session: &Session) -> usize {
    let addr = |a: &SocketAddr| if a.is_ipv4() { 7 } else { 19 };
    let head = 1 + 8 + addr(&session.tunnel) + addr(&session.peer);
    let pipe = |p: &PipeSnapshot| 5 + p.pending.len();
    let clocks = 16;
    match &session.kind {
        Kind::Waiting => head,
        Kind::Relaying(relay) => {
            head + addr(&relay.backend) + pipe(&relay.state.up) + pipe(&relay.state.down) + clocks
        }
        Kind::Fanout(fan) => {
            let dests: usize = fan.dests.iter().map(|a| addr(a) + 1 + 1 + 8).sum();
            head + 1
                + 4
                + 1
                + 1
                + dests
                + 1
                + 8
                + 4
                + fan.state.log.len()
                + pipe(&fan.state.down)
                + clocks
        }
    }
}

/// Descriptors `session` takes in a frame: its client's socket, and one per upstream (a
/// relaying connection's one, a fan-out connection's open destinations').
pub fn descriptor_count(session: &Session) -> usize {
    1 + upstreams_of(&session.kind)
}

/// Encodes up to [`MAX_FRAME_SESSIONS`] sessions whose [`descriptor_count`]s add up to at most
/// [`MAX_FRAME_DESCRIPTORS`] and whose [`encoded_len`]s add up to at most [`MAX_FRAME_BODY`]
/// into one frame. The sessions keep their sockets: once the receiver has acknowledged the
/// frame, close them with [`Session::handed_over`].
pub fn encode_frame(sessions: &[Session]) -> Result<Frame<'_>, WireError> {
    let limit = |what, got: usize, max: usize| {
        if got > max {
            Err(WireError::TooLarge { what, got, max })
        } else {
            Ok(())
        }
    };
    limit("sessions", sessions.len(), MAX_FRAME_SESSIONS)?;
    let fds: usize = sessions.iter().map(descriptor_count).sum();
    limit("descriptors", fds, MAX_FRAME_DESCRIPTORS)?;
    let len: usize = sessions.iter().map(encoded_len).sum();
    limit("body length", len, MAX_FRAME_BODY)?;
    let mut body = Vec::with_capacity(len);
    let mut descriptors = Vec::with_capacity(fds);
    for session in sessions {
        let Some((client, upstreams)) = session.sockets() else {
            return Err(WireError::Taken(session.id));
        };
        let expected = upstreams_of(&session.kind);
        if upstreams.len() != expected {
            return Err(WireError::Descriptors {
                expected: 1 + expected,
                got: 1 + upstreams.len(),
            });
        }
        descriptors.push(client.as_fd());
        descriptors.extend(upstreams.iter().map(AsFd::as_fd));
        match &session.kind {
            Kind::Waiting => {
                body.push(WAITING);
                put_common(&mut body, session);
            }
            Kind::Relaying(relay) => {
                body.push(RELAYING);
                put_common(&mut body, session);
                put_addr(&mut body, relay.backend);
                put_pipe(&mut body, &relay.state.up);
                put_pipe(&mut body, &relay.state.down);
                put_clocks(&mut body, relay.state.idle_for, relay.state.half_closed_for);
            }
            Kind::Fanout(fan) => {
                body.push(FANOUT);
                put_common(&mut body, session);
                fanout::put_fanout(&mut body, fan)?;
            }
        }
    }
    let header = FrameHeader {
        // Bounded above by the checks at the top.
        sessions: sessions.len() as u32,
        descriptors: descriptors.len() as u32,
        body_len: body.len() as u32,
    };
    Ok(Frame {
        header: header.to_bytes(),
        body,
        descriptors,
    })
}

/// Decodes a frame: its header, its body and the descriptors that came with it. Checks the
/// whole frame before building any session; on error every descriptor is closed plainly.
pub fn decode_frame(
    header: &FrameHeader,
    body: &[u8],
    descriptors: Vec<OwnedFd>,
) -> Result<Vec<Session>, WireError> {
    if body.len() != header.body_len() {
        return Err(WireError::Malformed(
            "the body is not as long as the header says",
        ));
    }
    let mut reader = Reader::new(body);
    let mut metas = Vec::with_capacity(header.sessions as usize);
    for _ in 0..header.sessions {
        metas.push(read_session(&mut reader)?);
    }
    if !reader.is_done() {
        return Err(WireError::Malformed("bytes after the last session"));
    }
    let expected: usize = metas.iter().map(|m| 1 + upstreams_of(&m.kind)).sum();
    if expected != descriptors.len() || expected != header.descriptors() {
        return Err(WireError::Descriptors {
            expected,
            got: descriptors.len(),
        });
    }
    for (index, fd) in descriptors.iter().enumerate() {
        match socket2::SockRef::from(fd).r#type() {
            Ok(t) if t == socket2::Type::STREAM => {}
            Ok(_) => {
                return Err(WireError::NotAStream {
                    index,
                    source: None,
                })
            }
            Err(e) => {
                return Err(WireError::NotAStream {
                    index,
                    source: Some(e),
                })
            }
        }
    }
    let mut fds = descriptors.into_iter().map(TcpStream::from);
    let mut sessions = Vec::with_capacity(metas.len());
    for meta in metas {
        // Counted above: there is a descriptor for every socket.
        let Some(client) = fds.next() else {
            return Err(WireError::Malformed("descriptors ran out"));
        };
        let upstreams: Vec<TcpStream> = fds.by_ref().take(upstreams_of(&meta.kind)).collect();
        let mut session = Session::waiting(client, meta.id, meta.tunnel, meta.peer);
        session.upstreams = upstreams;
        session.kind = meta.kind;
        sessions.push(session);
    }
    Ok(sessions)
}

/// Upstream sockets a session of this kind carries.
fn upstreams_of(kind: &Kind) -> usize {
    match kind {
        Kind::Waiting => 0,
        Kind::Relaying(_) => 1,
        Kind::Fanout(fan) => fan.state.open_dests(),
    }
}

/// A session's fields, read before any socket is attached.
struct Meta {
    id: u64,
    tunnel: SocketAddr,
    peer: SocketAddr,
    kind: Kind,
}

fn read_session(reader: &mut Reader<'_>) -> Result<Meta, WireError> {
    let kind = reader.u8("kind")?;
    let id = reader.u64("id")?;
    let tunnel = reader.addr()?;
    let peer = reader.addr()?;
    let kind = match kind {
        WAITING => Kind::Waiting,
        RELAYING => {
            let backend = reader.addr()?;
            let up = reader.pipe()?;
            let down = reader.pipe()?;
            let (idle_for, half_closed_for) = reader.clocks()?;
            Kind::Relaying(Relay {
                backend,
                state: RelayState {
                    up,
                    down,
                    idle_for,
                    half_closed_for,
                },
            })
        }
        FANOUT => Kind::Fanout(reader.fanout()?),
        _ => return Err(WireError::Malformed("unknown session kind")),
    };
    Ok(Meta {
        id,
        tunnel,
        peer,
        kind,
    })
}

fn put_common(body: &mut Vec<u8>, session: &Session) {
    body.extend_from_slice(&session.id.to_be_bytes());
    put_addr(body, session.tunnel);
    put_addr(body, session.peer);
}

mod fanout;
mod fields;
#[cfg(test)]
mod tests;
