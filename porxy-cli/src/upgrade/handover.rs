//! The last step of an upgrade: the old porxy hands its established connections to the new one
//! (sockets, the bytes buffered between them, their half-close state and clocks) and exits at
//! once, while every connection goes on in the new process. See the module docs for the steps
//! before; this one begins once the old porxy has answered `OK` and stopped accepting.
//!
//! 5. The new porxy asks `SESSIONS porxy-sessions/2` (the session format it reads), or says
//!    `DRAIN` (`--leave-connections`) to leave the connections with the old one, which then
//!    finishes them before it exits, as before this step existed. An older new porxy says
//!    nothing and closes: the same as `DRAIN`.
//! 6. The old porxy answers `SESSIONS porxy-sessions/2` when it writes that format (otherwise
//!    `ERR ...`, and it keeps and drains its connections; so does a porxy of format 1 asked for
//!    format 2, and the other way round), takes its connections out of its reactors and sends
//!    them in frames ([`porxy_core::session::wire`]) of at most 120 connections and 240
//!    sockets (a fan-out connection brings one per destination besides its client's), the
//!    sockets attached. The new porxy answers each frame `ACK` as soon as it
//!    holds the whole frame, before it touches a connection, then takes them in; or `ERR why`.
//!    The frame with no connection ends the transfer. An older old porxy closes instead of
//!    answering: its connections finish there.
//!
//! Every step has a timeout. The rule that keeps a connection from being lost or relayed twice
//! when something fails half-way: the new porxy never takes in a frame it has not acknowledged,
//! and the old one closes its copies of a frame's sockets only once acknowledged. So when the
//! new porxy goes away or refuses a frame (`ERR`, end of stream, a failed send), the old one
//! takes that frame and every later connection back into its own reactors and drains them
//! there, as if it had never tried. Only when an answer does not come within the timeout is a
//! frame in doubt (the new porxy may hold it yet): the old porxy then closes its copies plainly
//! and logs how many; the connections live on with whoever holds the other copies.
//!
//! Connections whose upstream connect is still in flight (a fan-out connection's, to any of its
//! destinations) leave as soon as it completes, for up to [`SETTLE`]; any still connecting then
//! finish in the old porxy.

use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use porxy_core::session::wire::{
    self, FrameHeader, WireError, FORMAT, FRAME_HEADER_LEN, MAX_FRAME_BODY, MAX_FRAME_DESCRIPTORS,
    MAX_FRAME_SESSIONS,
};
use porxy_core::{ImportReport, ProxyHandle, Session};
use sendfd::{RecvWithFd, SendWithFd};

use super::line::{LineError, LineReader};
use super::raw::{own, read_line, time_left};
use super::STEP_TIMEOUT;

/// How long connections whose upstream connect is in flight may take to complete it and leave.
pub(crate) const SETTLE: Duration = Duration::from_secs(3);
/// Longest line of this step.
const MAX_LINE: usize = 1024;
/// How much of a frame's body is read at once: what a frame costs follows the bytes that came.
const BODY_CHUNK: usize = 256 * 1024;

/// Why a transfer stopped early.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HandoverError {
    #[error("{step}: {source}")]
    Io {
        step: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("{0}")]
    Protocol(String),
    #[error("a frame of connections: {0}")]
    Wire(#[from] WireError),
}

fn io_error(step: &'static str) -> impl Fn(io::Error) -> HandoverError {
    move |source| HandoverError::Io { step, source }
}

/// What the old porxy handed over.
#[derive(Debug, Default)]
struct Sent {
    connections: usize,
    buffered: usize,
    /// Sent, but no answer came: the new porxy may hold them.
    in_doubt: usize,
}

/// Old side, steps 5 and 6: reads the new porxy's request and, if it asks for them, hands the
/// connections over. Never fails the stopping proxy: whatever is not handed over drains here.
pub(crate) fn answer(reader: &mut LineReader, handle: &ProxyHandle) {
    let conn = reader.stream();
    let request = conn
        .set_write_timeout(Some(STEP_TIMEOUT))
        .map_err(LineError::Io)
        .and_then(|()| reader.read_line(MAX_LINE, Instant::now() + STEP_TIMEOUT));
    let line = match request {
        Ok(line) => line,
        // An older new porxy says nothing and closes: the same as DRAIN.
        Err(LineError::Closed { partial }) if partial.is_empty() => String::new(),
        Err(e) => {
            tracing::warn!(error = %e, "no word from the new porxy about the established connections; they finish here");
            return;
        }
    };
    let mut out = reader.stream();
    let words: Vec<&str> = line.split_whitespace().collect();
    match words.as_slice() {
        [] => tracing::info!("the new porxy leaves the established connections here (an older version); they finish here"),
        ["DRAIN"] => tracing::info!("the new porxy leaves the established connections here; they finish here"),
        ["SESSIONS", format] if *format == FORMAT => {
            if let Err(e) = out.write_all(format!("SESSIONS {FORMAT}\n").as_bytes()) {
                tracing::warn!(error = %e, "the new porxy went away; the established connections finish here");
                return;
            }
            send(reader, handle);
        }
        ["SESSIONS", format] => {
            let _ = out.write_all(
                format!("ERR this porxy sends connections as {FORMAT}, not {format}\n").as_bytes(),
            );
            tracing::warn!(
                asked = %format,
                speaks = FORMAT,
                "the new porxy reads another session format; the established connections finish here"
            );
        }
        _ => tracing::warn!(line = %line, "unexpected request from the new porxy; the established connections finish here"),
    }
}

/// Old side, step 6: the frames, until the end or a failure (see the module docs).
fn send(reader: &mut LineReader, handle: &ProxyHandle) {
    let mut export = match handle.export_sessions(SETTLE) {
        Ok(export) => export,
        Err(e) => {
            tracing::error!(error = %e, "cannot take the connections out; they finish here");
            let _ = send_header(reader.stream(), &FrameHeader::END.to_bytes(), &[]);
            return;
        }
    };
    let mut sent = Sent::default();
    let failure = loop {
        let batch = export.next_batch(MAX_FRAME_SESSIONS);
        if batch.is_empty() {
            break send_header(reader.stream(), &FrameHeader::END.to_bytes(), &[])
                .err()
                .map(|e| (Vec::new(), e));
        }
        match send_frames(reader, batch, &mut sent) {
            Ok(()) => {}
            Err(failed) => break Some(failed),
        }
    };
    if let Some((mut unsent, why)) = failure {
        tracing::error!(error = %why, "handing the connections over failed; the rest finish here");
        // Taken back before the export is dropped, which lets the reactors end.
        unsent.extend(export.end());
        let count = unsent.len();
        if count > 0 {
            let reset = handle
                .import_sessions(unsent)
                .map_or(count, |report| report.reset);
            tracing::info!(
                connections = count,
                reset,
                "connections taken back; they finish here"
            );
        }
    }
    drop(export);
    if sent.in_doubt > 0 {
        tracing::error!(
            connections = sent.in_doubt,
            "the new porxy did not acknowledge connections it was sent; they are left to it"
        );
    }
    tracing::info!(
        connections = sent.connections,
        buffered_bytes = sent.buffered,
        "handed the established connections over to the new porxy"
    );
}

/// Sends `batch` in as many frames as its size needs. On failure, returns the sessions that
/// were not handed over (to take back) and why.
fn send_frames(
    reader: &mut LineReader,
    batch: Vec<Session>,
    sent: &mut Sent,
) -> Result<(), (Vec<Session>, HandoverError)> {
    let mut rest = batch.into_iter().peekable();
    while rest.peek().is_some() {
        // A frame holds what fits in its body and its descriptors; one session always fits.
        let mut frame = Vec::new();
        let (mut len, mut fds) = (0, 0);
        while let Some(next) = rest.peek() {
            let more = wire::encoded_len(next);
            let more_fds = wire::descriptor_count(next);
            let full = frame.len() == MAX_FRAME_SESSIONS
                || len + more > MAX_FRAME_BODY
                || fds + more_fds > MAX_FRAME_DESCRIPTORS;
            if !frame.is_empty() && full {
                break;
            }
            len += more;
            fds += more_fds;
            frame.extend(rest.next());
        }
        if let Err(reply) = send_frame(reader, &frame) {
            return match reply {
                Reply::InDoubt(why) => {
                    sent.in_doubt += frame.len();
                    frame.into_iter().for_each(Session::handed_over);
                    Err((rest.collect(), why))
                }
                Reply::Refused(why) => Err((frame.into_iter().chain(rest).collect(), why)),
            };
        }
        sent.connections += frame.len();
        sent.buffered += frame.iter().map(Session::buffered).sum::<usize>();
        // Acknowledged: the new porxy holds them; this process's copies close plainly.
        frame.into_iter().for_each(Session::handed_over);
    }
    Ok(())
}

/// How a frame failed.
enum Reply {
    /// The new porxy did not take it (it said so, went away, or the frame did not get out).
    Refused(HandoverError),
    /// No answer in time: the new porxy may hold it.
    InDoubt(HandoverError),
}

fn send_frame(reader: &mut LineReader, sessions: &[Session]) -> Result<(), Reply> {
    let frame = wire::encode_frame(sessions).map_err(|e| Reply::Refused(e.into()))?;
    let fds: Vec<RawFd> = frame.descriptors.iter().map(|fd| fd.as_raw_fd()).collect();
    let conn = reader.stream();
    send_header(conn, &frame.header, &fds)
        .and_then(|()| {
            let mut out = conn;
            out.write_all(&frame.body)
                .map_err(io_error("sending connections"))
        })
        .map_err(Reply::Refused)?;
    let step = "waiting for the new porxy to acknowledge connections";
    match reader.read_line(MAX_LINE, Instant::now() + STEP_TIMEOUT) {
        Ok(line) if line == "ACK" => Ok(()),
        Ok(line) => Err(Reply::Refused(HandoverError::Protocol(format!(
            "the new porxy refused connections: {line}"
        )))),
        Err(LineError::Closed { .. }) => Err(Reply::Refused(HandoverError::Protocol(
            "the new porxy went away before it acknowledged connections".into(),
        ))),
        Err(LineError::TimedOut { .. }) => Err(Reply::InDoubt(HandoverError::Io {
            step,
            source: io::ErrorKind::TimedOut.into(),
        })),
        Err(LineError::Io(source)) => Err(Reply::Refused(HandoverError::Io { step, source })),
        Err(e @ LineError::TooLong { .. }) => Err(Reply::Refused(HandoverError::Protocol(
            format!("{step}: {e}"),
        ))),
    }
}

/// Sends a frame header with `fds` attached to its first byte.
fn send_header(conn: &UnixStream, header: &[u8], fds: &[RawFd]) -> Result<(), HandoverError> {
    let step = io_error("sending connections");
    let n = conn.send_with_fd(header, fds).map_err(&step)?;
    if n == 0 {
        return Err(step(io::ErrorKind::WriteZero.into()));
    }
    // The descriptors went with the first byte; the rest of the header follows plainly.
    let mut out = conn;
    out.write_all(&header[n..]).map_err(step)
}

/// What the new porxy took over.
#[derive(Debug, Default)]
pub(crate) struct Received {
    pub(crate) report: ImportReport,
    pub(crate) buffered: usize,
    pub(crate) half_closed: usize,
}

/// New side, steps 5 and 6: asks for the old porxy's connections and takes them in; how many
/// went to a tunnel here.
pub(crate) fn take_connections(conn: &mut UnixStream, handle: &ProxyHandle) -> u64 {
    let mut received = Received::default();
    match receive(conn, handle, &mut received) {
        Ok(true) => {}
        Ok(false) => return 0,
        Err(e) => {
            tracing::error!(error = %e, "taking over the established connections stopped half-way; those not taken finish in the previous porxy")
        }
    }
    let report = received.report;
    tracing::info!(
        connections = report.matched + report.detached,
        detached = report.detached,
        reset = report.reset,
        buffered_bytes = received.buffered,
        half_closed = received.half_closed,
        "took over the established connections of the previous porxy"
    );
    // Those a tunnel here took in (the detached ones count in no tunnel's status).
    report.matched as u64
}

/// New side, step 5 with `--leave-connections`.
pub(crate) fn leave_connections(conn: &mut UnixStream) {
    if let Err(e) = conn.write_all(b"DRAIN\n") {
        tracing::warn!(error = %e, "cannot tell the previous porxy to keep its connections; it keeps them anyway");
    }
    tracing::info!("the established connections finish in the previous porxy");
}

/// The transfer; `Ok(false)` when the old porxy does not hand connections over.
fn receive(
    conn: &mut UnixStream,
    handle: &ProxyHandle,
    received: &mut Received,
) -> Result<bool, HandoverError> {
    conn.set_read_timeout(Some(STEP_TIMEOUT))
        .and_then(|()| conn.set_write_timeout(Some(STEP_TIMEOUT)))
        .and_then(|()| conn.write_all(format!("SESSIONS {FORMAT}\n").as_bytes()))
        .map_err(io_error("asking for the established connections"))?;
    let answer = read_line(conn, MAX_LINE, Instant::now() + STEP_TIMEOUT)
        .map_err(io_error("reading the answer about connections"))?;
    match answer.as_deref().map(str::trim_end) {
        None => {
            tracing::info!("the previous porxy does not hand its connections over (an older version); they finish there");
            return Ok(false);
        }
        Some(line) if line == format!("SESSIONS {FORMAT}") => {}
        Some(line) => {
            tracing::warn!(answer = %line, "the previous porxy does not hand its connections over; they finish there");
            return Ok(false);
        }
    }
    loop {
        let Some(sessions) = receive_frame(conn)? else {
            return Ok(true);
        };
        // ACK before taking any in: from now on this process alone carries them on.
        if let Err(e) = conn.write_all(b"ACK\n") {
            tracing::warn!(error = %e, "cannot acknowledge connections; taking them in anyway");
        }
        received.buffered += sessions.iter().map(Session::buffered).sum::<usize>();
        received.half_closed += sessions.iter().filter(|s| s.half_closed()).count();
        let count = sessions.len();
        let report = handle.import_sessions(sessions).unwrap_or_else(|_| {
            let mut all_reset = ImportReport::default();
            all_reset.reset = count;
            all_reset
        });
        received.report.matched += report.matched;
        received.report.detached += report.detached;
        received.report.reset += report.reset;
    }
}

/// Reads one frame; `None` at the end. On a bad frame, tells the old porxy (`ERR`) and closes
/// the received descriptors plainly: the old porxy still holds those connections.
fn receive_frame(conn: &mut UnixStream) -> Result<Option<Vec<Session>>, HandoverError> {
    let result = read_frame(conn);
    if let Err(e) = &result {
        let why = e.to_string().replace('\n', " ");
        let _ = conn.write_all(format!("ERR {why}\n").as_bytes());
    }
    result
}

fn read_frame(conn: &mut UnixStream) -> Result<Option<Vec<Session>>, HandoverError> {
    let step = io_error("receiving connections");
    let mut header = [0u8; FRAME_HEADER_LEN];
    // One more than a frame may hold, to tell a frame that brought too many.
    let mut raw_fds: Vec<RawFd> = vec![-1; MAX_FRAME_DESCRIPTORS + 1];
    let (mut len, count) = conn
        .set_read_timeout(Some(STEP_TIMEOUT))
        .and_then(|()| conn.recv_with_fd(&mut header, &mut raw_fds))
        .map_err(&step)?;
    // Own every descriptor received at once, so that none leaks on an error below.
    let fds: Vec<_> = raw_fds[..count].iter().map(|&fd| own(fd)).collect();
    if len == 0 {
        return Err(HandoverError::Protocol(
            "the previous porxy closed the connection before the end of the transfer".into(),
        ));
    }
    // One deadline for the rest of the frame, however its bytes trickle in.
    let deadline = Instant::now() + STEP_TIMEOUT;
    while len < FRAME_HEADER_LEN {
        let n = time_left(conn, deadline)
            .and_then(|()| conn.read(&mut header[len..]))
            .map_err(&step)?;
        if n == 0 {
            return Err(HandoverError::Protocol(
                "the transfer ended inside a frame".into(),
            ));
        }
        len += n;
    }
    let header = FrameHeader::parse(&header)?;
    if header.is_end() {
        return Ok(None);
    }
    // Grown as bytes arrive, never sized by the header's word alone: a peer that announces a
    // large body and sends little costs what it sent.
    let wanted = header.body_len();
    let mut body = Vec::new();
    let mut chunk = vec![0u8; BODY_CHUNK.min(wanted)];
    while body.len() < wanted {
        let room = (wanted - body.len()).min(chunk.len());
        match time_left(conn, deadline).and_then(|()| conn.read(&mut chunk[..room])) {
            Ok(0) => break,
            Ok(n) => body.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(step(e)),
        }
    }
    if body.len() < wanted {
        return Err(HandoverError::Protocol(format!(
            "the transfer ended inside a frame ({} of its {wanted} bytes came)",
            body.len()
        )));
    }
    Ok(Some(wire::decode_frame(&header, &body, fds)?))
}
