//! The fake stream and the test rig around a [`Conn`](super::super::Conn).

use std::collections::VecDeque;
use std::io::{self, ErrorKind};
use std::time::{Duration, Instant};

use super::super::close::CloseReason;
use super::super::hold::{Mode, Pools};
use super::super::transport::Transport;
use super::super::{
    Action, AfterConnectFailure, Closing, Conn, ConnectFailure, Phase, Readiness, Side,
};
use crate::config::TunnelSettings;
use crate::splice::KernelPipe;

/// One scripted result of [`Stream::read`].
#[derive(Debug, Clone)]
pub(super) enum Rd {
    /// Hands out these bytes; what does not fit stays for the next read.
    Data(Vec<u8>),
    /// Fills every read, for ever (never leaves the script): a peer that always has more.
    Endless,
    WouldBlock,
    Interrupted,
    /// `Ok(0)`.
    Eof,
    Fail(ErrorKind),
    /// Hands out these bytes alone, never joined with what follows: one record's plaintext,
    /// as a TLS layer reads it.
    Record(Vec<u8>),
}

/// One scripted behaviour of [`Stream::write`].
#[derive(Debug, Clone, Copy)]
pub(super) enum Wr {
    /// Takes at most this many bytes.
    Accept(usize),
    WouldBlock,
    Interrupted,
    Fail(ErrorKind),
}

pub(super) const ACCEPT_ALL: Wr = Wr::Accept(usize::MAX);

/// A stream that plays back a script and records every byte written to it.
///
/// Its splices follow the same script as `read` and `write` (and count as read and write
/// calls), moving the bytes into or out of the real kernel pipe they are given.
#[derive(Debug)]
pub(super) struct FakeStream {
    /// Read results, in order; an empty script reads as `WouldBlock`.
    pub(super) reads: VecDeque<Rd>,
    /// Write behaviours, in order; when empty, `write_idle` applies to every call.
    pub(super) writes: VecDeque<Wr>,
    pub(super) write_idle: Wr,
    /// Makes `shutdown_write` fail with this.
    pub(super) shutdown_error: Option<ErrorKind>,
    /// Makes the next `splice_to_pipe` fail with this OS error (as a socket that does not take
    /// splices: `EINVAL`).
    pub(super) splice_in_error: Option<i32>,
    /// Makes the next `splice_from_pipe` fail with this OS error.
    pub(super) splice_out_error: Option<i32>,
    /// What [`Transport::short_read_drains`] answers (a kernel socket: true).
    pub(super) short_read_drains: bool,
    /// What [`Transport::close_ends_stream`] answers (a kernel socket: true).
    pub(super) close_ends_stream: bool,
    /// `shutdown_write` says `WouldBlock` this many times before it succeeds.
    pub(super) shutdown_blocks: u32,
    /// Written bytes stay inside (in `inside`) until `flush`, as a TLS layer holds records.
    pub(super) holds_back: bool,
    pub(super) inside: Vec<u8>,
    /// `flush` says `WouldBlock` this many times before it pushes `inside` out.
    pub(super) flush_blocks: u32,
    pub(super) flush_calls: usize,
    /// `peek` works, as a kernel socket's (else it says `Unsupported`).
    pub(super) peekable: bool,
    pub(super) peek_calls: usize,
    /// What each `handshake` call answers, in order; when empty, `Ok` (complete).
    pub(super) handshakes: VecDeque<Result<(), ErrorKind>>,
    /// Bytes of the early bytes its handshake takes as its own, in all.
    pub(super) handshake_takes: usize,
    /// The early bytes its handshake took.
    pub(super) handshake_took: Vec<u8>,
    pub(super) handshake_calls: usize,

    /// Every byte handed out by `read`.
    pub(super) delivered: Vec<u8>,
    /// Every byte accepted by `write`.
    pub(super) written: Vec<u8>,
    /// The size of every accepted write.
    pub(super) write_sizes: Vec<usize>,
    pub(super) read_calls: usize,
    pub(super) write_calls: usize,
    pub(super) shutdown_calls: usize,
    /// `written.len()` when `shutdown_write` succeeded.
    pub(super) shutdown_at: Option<usize>,
    pub(super) eof_given: bool,
    /// Calls of `splice_to_pipe` and `splice_from_pipe` (also counted as read and write calls).
    pub(super) splices_in: usize,
    pub(super) splices_out: usize,
}

impl FakeStream {
    pub(super) fn new() -> Self {
        FakeStream {
            reads: VecDeque::new(),
            writes: VecDeque::new(),
            write_idle: ACCEPT_ALL,
            shutdown_error: None,
            splice_in_error: None,
            splice_out_error: None,
            short_read_drains: true,
            close_ends_stream: true,
            shutdown_blocks: 0,
            holds_back: false,
            inside: Vec::new(),
            flush_blocks: 0,
            flush_calls: 0,
            peekable: false,
            peek_calls: 0,
            handshakes: VecDeque::new(),
            handshake_takes: 0,
            handshake_took: Vec::new(),
            handshake_calls: 0,
            delivered: Vec::new(),
            written: Vec::new(),
            write_sizes: Vec::new(),
            read_calls: 0,
            write_calls: 0,
            shutdown_calls: 0,
            shutdown_at: None,
            eof_given: false,
            splices_in: 0,
            splices_out: 0,
        }
    }

    pub(super) fn reading(mut self, steps: impl IntoIterator<Item = Rd>) -> Self {
        self.reads.extend(steps);
        self
    }

    pub(super) fn writing(mut self, steps: impl IntoIterator<Item = Wr>, then: Wr) -> Self {
        self.writes.extend(steps);
        self.write_idle = then;
        self
    }

    pub(super) fn syscalls(&self) -> usize {
        self.read_calls + self.write_calls + self.shutdown_calls
    }
}

impl Transport for FakeStream {
    /// As a socket's receive queue answers a peek: the bytes of every `Data` step at the head
    /// of the script, none taken.
    fn peek(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if !self.peekable {
            return Err(ErrorKind::Unsupported.into());
        }
        self.peek_calls += 1;
        let mut seen = 0;
        for step in &self.reads {
            let Rd::Data(bytes) = step else {
                break;
            };
            let n = bytes.len().min(buf.len() - seen);
            buf[seen..seen + n].copy_from_slice(&bytes[..n]);
            seen += n;
            if seen == buf.len() {
                break;
            }
        }
        match self.reads.front() {
            _ if seen > 0 => Ok(seen),
            Some(Rd::Eof) => Ok(0),
            Some(Rd::Fail(kind)) => Err((*kind).into()),
            _ => Err(ErrorKind::WouldBlock.into()),
        }
    }

    fn handshake(&mut self, early: &mut Vec<u8>) -> io::Result<()> {
        self.handshake_calls += 1;
        let take = self.handshake_takes.min(early.len());
        self.handshake_took.extend(early.drain(..take));
        self.handshake_takes -= take;
        match self.handshakes.pop_front() {
            None | Some(Ok(())) => Ok(()),
            Some(Err(kind)) => Err(kind.into()),
        }
    }

    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.read_script(buf, true)
    }

    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.accept(buf.len())?;
        if self.holds_back {
            self.inside.extend_from_slice(&buf[..n]);
        } else {
            self.written.extend_from_slice(&buf[..n]);
        }
        Ok(n)
    }

    fn shutdown_write(&mut self) -> io::Result<()> {
        assert!(self.shutdown_at.is_none(), "shutdown_write twice");
        assert!(
            self.inside.is_empty(),
            "shutdown_write with bytes held inside"
        );
        self.shutdown_calls += 1;
        if self.shutdown_blocks > 0 {
            self.shutdown_blocks -= 1;
            return Err(ErrorKind::WouldBlock.into());
        }
        match self.shutdown_error {
            Some(kind) => Err(kind.into()),
            None => {
                self.shutdown_at = Some(self.written.len());
                Ok(())
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.flush_calls += 1;
        if self.flush_blocks > 0 {
            self.flush_blocks -= 1;
            return Err(ErrorKind::WouldBlock.into());
        }
        self.written.append(&mut self.inside);
        Ok(())
    }

    fn holds_output(&self) -> bool {
        !self.inside.is_empty()
    }

    fn short_read_drains(&self) -> bool {
        self.short_read_drains
    }

    fn close_ends_stream(&self) -> bool {
        self.close_ends_stream
    }

    fn splice_to_pipe(&mut self, pipe: &mut KernelPipe, max: usize) -> io::Result<usize> {
        self.splices_in += 1;
        if let Some(errno) = self.splice_in_error.take() {
            self.read_calls += 1;
            return Err(io::Error::from_raw_os_error(errno));
        }
        let mut buf = vec![0; max];
        let n = self.read_script(&mut buf, false)?;
        let pushed = pipe
            .push(&buf[..n])
            .expect("the pipe takes what fits its capacity");
        assert_eq!(pushed, n, "the pipe takes what fits its capacity");
        Ok(n)
    }

    fn splice_from_pipe(&mut self, pipe: &mut KernelPipe, max: usize) -> io::Result<usize> {
        self.splices_out += 1;
        if let Some(errno) = self.splice_out_error.take() {
            self.write_calls += 1;
            return Err(io::Error::from_raw_os_error(errno));
        }
        assert!(max <= pipe.len(), "splicing out more than the pipe holds");
        let n = self.accept(max)?;
        let mut buf = vec![0; n];
        let mut got = 0;
        while got < n {
            got += pipe
                .pull(&mut buf[got..])
                .expect("the pipe holds what it counts");
        }
        self.written.extend_from_slice(&buf);
        Ok(n)
    }
}

impl FakeStream {
    /// `read`, and the reading half of `splice_to_pipe`: a read whose bytes run short takes
    /// the `WouldBlock` step after them when `drain_ends` (the copy path stops reading there;
    /// a splice goes on and meets the step).
    fn read_script(&mut self, buf: &mut [u8], drain_ends: bool) -> io::Result<usize> {
        self.read_calls += 1;
        assert!(!self.eof_given, "read after EOF");
        assert!(!buf.is_empty(), "a read into no room would look like EOF");
        match self.reads.pop_front() {
            None | Some(Rd::WouldBlock) => Err(ErrorKind::WouldBlock.into()),
            Some(Rd::Interrupted) => Err(ErrorKind::Interrupted.into()),
            Some(Rd::Fail(kind)) => Err(kind.into()),
            Some(Rd::Eof) => {
                self.eof_given = true;
                Ok(0)
            }
            Some(Rd::Data(bytes)) => {
                self.reads.push_front(Rd::Data(bytes));
                Ok(self.read_queued(buf, drain_ends))
            }
            Some(Rd::Record(mut bytes)) => {
                let n = bytes.len().min(buf.len());
                buf[..n].copy_from_slice(&bytes[..n]);
                self.delivered.extend_from_slice(&bytes[..n]);
                bytes.drain(..n);
                if !bytes.is_empty() {
                    self.reads.push_front(Rd::Record(bytes));
                }
                Ok(n)
            }
            Some(Rd::Endless) => {
                let from = self.delivered.len();
                for (i, b) in buf.iter_mut().enumerate() {
                    *b = ((from + i) % 251) as u8;
                }
                self.delivered.extend_from_slice(buf);
                self.reads.push_front(Rd::Endless);
                Ok(buf.len())
            }
        }
    }

    /// Reads as a socket does from its receive queue: the bytes of every `Data` step at the
    /// head of the script, until `buf` is full. With `drain_ends`, a read that empties them
    /// also takes a `WouldBlock` step that follows: the reader knows the queue is empty, as
    /// that step would have told it.
    fn read_queued(&mut self, buf: &mut [u8], drain_ends: bool) -> usize {
        let mut n = 0;
        while n < buf.len() {
            let Some(Rd::Data(bytes)) = self.reads.front_mut() else {
                break;
            };
            let take = bytes.len().min(buf.len() - n);
            buf[n..n + take].copy_from_slice(&bytes[..take]);
            self.delivered.extend_from_slice(&bytes[..take]);
            bytes.drain(..take);
            n += take;
            if bytes.is_empty() {
                self.reads.pop_front();
            }
        }
        if drain_ends && n < buf.len() && matches!(self.reads.front(), Some(Rd::WouldBlock)) {
            self.reads.pop_front();
        }
        n
    }

    /// True when an EOF or an error waits in the script before the next `WouldBlock`: the
    /// poller reports a hang-up or an error with the readiness then, as it does for a socket
    /// whose FIN or reset has arrived.
    pub(super) fn hangup_queued(&self) -> bool {
        self.reads
            .iter()
            .take_while(|rd| !matches!(rd, Rd::WouldBlock))
            .any(|rd| matches!(rd, Rd::Eof | Rd::Fail(_)))
    }

    /// How many of `len` bytes the next write takes, by the script; records its size.
    fn accept(&mut self, len: usize) -> io::Result<usize> {
        assert!(self.shutdown_at.is_none(), "write after shutdown_write");
        assert!(len > 0, "a write of nothing");
        self.write_calls += 1;
        match self.writes.pop_front().unwrap_or(self.write_idle) {
            Wr::Accept(max) => {
                let n = max.min(len);
                self.write_sizes.push(n);
                Ok(n)
            }
            Wr::WouldBlock => Err(ErrorKind::WouldBlock.into()),
            Wr::Interrupted => Err(ErrorKind::Interrupted.into()),
            Wr::Fail(kind) => Err(kind.into()),
        }
    }
}

pub(super) const BUFFER_SIZE: usize = 1024;
/// Pipes the rig's pools may open at once.
pub(super) const MAX_PIPES: usize = 8;
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
pub(super) const IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// Half-closed after the client's FIN.
pub(super) const CLIENT_FIN_TIMEOUT: Duration = Duration::from_secs(60);
/// Half-closed after the upstream's FIN: apart from the client's, to tell which applies.
pub(super) const SERVER_FIN_TIMEOUT: Duration = Duration::from_secs(20);
pub(super) const QUEUE_TIMEOUT: Duration = Duration::from_secs(5);

pub(super) const R: Readiness = Readiness {
    readable: true,
    writable: false,
    failed: false,
};
pub(super) const W: Readiness = Readiness {
    readable: false,
    writable: true,
    failed: false,
};
pub(super) const RW: Readiness = Readiness {
    readable: true,
    writable: true,
    failed: false,
};
pub(super) const FAILED: Readiness = Readiness {
    readable: false,
    writable: false,
    failed: true,
};

pub(super) fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

pub(super) fn data(bytes: &[u8]) -> Rd {
    Rd::Data(bytes.to_vec())
}

/// A failed connect with no attempt left: the client is reset.
pub(super) fn gave_up(failed: CloseReason) -> ConnectFailure {
    ConnectFailure {
        failed,
        next: AfterConnectFailure::Close {
            client: Closing::Reset,
            upstream: Closing::Graceful,
        },
    }
}

/// A failed connect with attempts left.
pub(super) fn try_another(failed: CloseReason) -> ConnectFailure {
    ConnectFailure {
        failed,
        next: AfterConnectFailure::TryAnother,
    }
}

pub(super) fn close(reason: CloseReason, client: Closing, upstream: Closing) -> Action {
    Action::Close {
        reason,
        client,
        upstream,
    }
}

/// Small pools, with at most `max_pipes` pipes, that splice every read (not only bulk ones), so
/// that the tests of the splice path exercise pipes from the first byte.
pub(super) fn pools(max_pipes: usize) -> Pools {
    pools_sized(BUFFER_SIZE, BUFFER_SIZE, max_pipes)
}

/// Pools with buffers and pipes of the sizes given; every read may splice.
pub(super) fn pools_sized(buffer_size: usize, pipe_size: usize, max_pipes: usize) -> Pools {
    let mut pools = Pools::new(buffer_size, pipe_size, max_pipes);
    pools.bulk_read = 0;
    pools
}

/// The tests' tunnel settings (the timeouts above), moving bytes as `mode` says.
pub(super) fn settings(mode: Mode) -> TunnelSettings {
    TunnelSettings {
        connect_timeout: CONNECT_TIMEOUT,
        idle_timeout: IDLE_TIMEOUT,
        client_fin_timeout: CLIENT_FIN_TIMEOUT,
        server_fin_timeout: SERVER_FIN_TIMEOUT,
        queue_timeout: QUEUE_TIMEOUT,
        splice: mode == Mode::Splice,
    }
}

/// A connection with its two fake streams, small pools and a clock origin.
pub(super) struct Rig {
    pub(super) conn: Conn,
    pub(super) client: FakeStream,
    pub(super) upstream: FakeStream,
    pub(super) pools: Pools,
    pub(super) t0: Instant,
}

impl Rig {
    /// The upstream connect is in flight since `t0`; bytes will be copied.
    pub(super) fn connecting() -> Self {
        Rig::with_attempts(1)
    }

    /// A connecting connection that may make `attempts` connects in all; bytes will be copied.
    pub(super) fn with_attempts(attempts: u32) -> Self {
        Rig::new(Mode::Copy, attempts)
    }

    fn new(mode: Mode, attempts: u32) -> Self {
        let t0 = Instant::now();
        let settings = settings(mode);
        Rig {
            conn: Conn::new(t0, settings, attempts),
            client: FakeStream::new(),
            upstream: FakeStream::new(),
            pools: pools(MAX_PIPES),
            t0,
        }
    }

    /// Connected at `t0`; bytes are copied.
    pub(super) fn relaying() -> Self {
        Rig::relaying_on(Mode::Copy)
    }

    /// Connected at `t0`; bytes move as `mode` says.
    pub(super) fn relaying_on(mode: Mode) -> Self {
        let mut rig = Rig::new(mode, 1);
        assert_eq!(rig.conn.on_connected(rig.t0, None, &mut rig.pools), None);
        assert_eq!(rig.conn.phase(), Phase::Relaying);
        assert_eq!(rig.conn.modes(), (mode, mode));
        rig
    }

    /// Reports readiness for one side, with a hang-up added when the side's script holds an EOF
    /// or an error that has "arrived" (see [`FakeStream::hangup_queued`]).
    pub(super) fn ready(&mut self, side: Side, mut ready: Readiness) {
        if ready.readable && self.stream(side).hangup_queued() {
            ready.failed = true;
        }
        self.conn.on_ready(side, ready);
    }

    /// The fake stream of `side`.
    pub(super) fn stream(&mut self, side: Side) -> &mut FakeStream {
        match side {
            Side::Client => &mut self.client,
            Side::Upstream => &mut self.upstream,
        }
    }

    pub(super) fn drive(&mut self, at: Duration) -> Action {
        self.conn.drive(
            &mut self.client,
            &mut self.upstream,
            &mut self.pools,
            self.t0 + at,
        )
    }

    pub(super) fn on_timer(&mut self, at: Duration) -> Action {
        self.conn.on_timer(self.t0 + at)
    }

    pub(super) fn deadline(&self) -> Option<Duration> {
        self.conn.deadline().map(|d| d - self.t0)
    }
}
