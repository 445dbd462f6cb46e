//! One direction of a relay: bytes read from a source stream, held, written to a sink.
//!
//! A pipe knows nothing of sockets or polling. The caller tells it what the source and the sink
//! are ready for; it reads and writes until one of them would block, what it holds is full, or
//! the iteration budget runs out, and it clears a readiness flag only when a call said
//! `WouldBlock` (or a short write proved the sink full): the rules of `step.rs`, shared with
//! the fan-out machine. A FIN from the source is passed on as `shutdown_write` on the sink once
//! every held byte is written, and bytes the sink holds inside (a TLS record) are flushed.
//!
//! The bytes wait in a user-space buffer ([`Mode::Copy`]) or in a kernel pipe, moved with
//! splice(2) ([`Mode::Splice`]); the decisions above are the same for both (see [`Held`]). What
//! differs on the splice path:
//! - a splice in that says `WouldBlock` while the pipe holds bytes may mean the pipe is full (the
//!   kernel counts slots, not bytes), so reading stops until some bytes are written out, and the
//!   source's readiness is kept;
//! - only bulk data is spliced: a direction uses a pipe after a big read, a buffer after a small
//!   one (see [`Pools::bulk_read`]), switching whenever what it holds is empty;
//! - a direction that cannot get a pipe copies instead (see [`crate::splice`]); bytes already in
//!   a pipe are moved to a buffer first when a socket refuses splices, so their order holds.

use std::io::{self, ErrorKind};

use crate::buffer::Buffer;
use crate::conn::hold::{Held, Mode, Pools};
use crate::conn::readiness::Readiness;
use crate::conn::step::{self, End, Read, Write};
use crate::conn::transport::Transport;
use crate::splice::{self, Fallback};

/// How far the pipe has got towards passing on the source's EOF.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PipeState {
    /// Bytes flow.
    Open,
    /// The source sent EOF; held bytes are still being written.
    Draining,
    /// EOF was passed on: the sink's write side is shut down.
    Done,
}

/// Which end of a pipe failed.
#[derive(Debug)]
pub(crate) enum PipeError {
    Source(io::Error),
    Sink(io::Error),
}

/// What one [`Pipe::pump`] call did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Pumped {
    /// Bytes written to the sink.
    pub(crate) moved: u64,
    /// Bytes read from the source (activity, even if not yet written).
    pub(crate) read: u64,
    /// The source's EOF arrived in this call.
    pub(crate) finished: bool,
    /// The budget ran out while there was still work to do.
    pub(crate) yielded: bool,
}

/// What a pipe holds in user space, taken out to carry the connection to another process:
/// how far the source's end of stream has got, and the bytes read and not yet written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PipeSnapshot {
    pub(crate) state: PipeState,
    pub(crate) pending: Vec<u8>,
}

/// One direction of a relay.
pub(crate) struct Pipe {
    state: PipeState,
    mode: Mode,
    held: Held,
    /// On the splice path: the last read was big, so the next bytes go through a pipe.
    bulk: bool,
    /// A splice in said `WouldBlock` with bytes in the kernel pipe: it may be full, so no read
    /// until some bytes have been written out.
    pipe_full: bool,
    /// The other direction is over too, so the connection closes as soon as this one is: the
    /// close sends the FIN, and a `shutdown_write` first would be a syscall for nothing (when
    /// the sink's close ends its stream: see [`Transport::close_ends_stream`]).
    last: bool,
    /// Passing the EOF on said `WouldBlock`: it is tried again once the sink is writable.
    fin_blocked: bool,
    /// It holds a preface ([`Pipe::prepend`]) not yet written: the source's bytes that are
    /// ready are read first, to go out in one write with it.
    preface: bool,
}

impl Pipe {
    /// A direction that moves its bytes as `mode` says (it may fall back from splicing to
    /// copying, never the other way).
    pub(crate) fn new(mode: Mode) -> Self {
        Pipe {
            state: PipeState::Open,
            mode,
            held: Held::Nothing,
            bulk: false,
            pipe_full: false,
            last: false,
            fin_blocked: false,
            preface: false,
        }
    }

    /// A pipe that goes on from `snapshot` (taken by [`Pipe::freeze`], maybe in another
    /// process), moving its bytes as `mode` says: the pending bytes, in a buffer, are written
    /// first, and the end of stream stays as far as it had got.
    /// An open pipe with `pending` bytes already held for its sink (those that came past a
    /// client's preamble).
    pub(crate) fn with_pending(pending: &[u8], mode: Mode, pools: &mut Pools) -> Self {
        let mut pipe = Pipe::new(mode);
        if !pending.is_empty() {
            pipe.held = Held::Buffer(pools.buffers.take_filled(pending));
        }
        pipe
    }

    pub(crate) fn restore(snapshot: &PipeSnapshot, mode: Mode, pools: &mut Pools) -> Self {
        let mut pipe = Pipe::new(mode);
        pipe.state = snapshot.state;
        if !snapshot.pending.is_empty() {
            pipe.held = Held::Buffer(pools.buffers.take_filled(&snapshot.pending));
        }
        pipe
    }

    /// Takes the pipe's state out, and gives what it held back to `pools`: bytes waiting in a
    /// kernel pipe are read out of it into the snapshot. The pipe is left empty: it must not be
    /// pumped again. Fails only if a kernel pipe cannot be read (it never should: its bytes are
    /// counted); the connection cannot move then, and the caller resets it.
    pub(crate) fn freeze(&mut self, pools: &mut Pools) -> io::Result<PipeSnapshot> {
        let pending = match &mut self.held {
            Held::Nothing => Vec::new(),
            Held::Buffer(buf) => buf.pending().to_vec(),
            Held::Pipe(pipe) => {
                let mut out = vec![0u8; pipe.len()];
                let mut filled = 0;
                // Bounded: each pull takes at least a byte, or the loop ends.
                while filled < out.len() {
                    match pipe.pull(&mut out[filled..]) {
                        Ok(0) => break,
                        Ok(n) => filled += n,
                        Err(e) if e.kind() == ErrorKind::Interrupted => {}
                        Err(e) => return Err(e),
                    }
                }
                if filled < out.len() {
                    return Err(io::Error::new(
                        ErrorKind::UnexpectedEof,
                        "a kernel pipe held fewer bytes than counted",
                    ));
                }
                out
            }
        };
        match std::mem::replace(&mut self.held, Held::Nothing) {
            Held::Nothing => {}
            Held::Buffer(buf) => pools.buffers.give(buf),
            Held::Pipe(pipe) => pools.pipes.give(pipe),
        }
        Ok(PipeSnapshot {
            state: self.state,
            pending,
        })
    }

    /// Puts `bytes` ahead of everything the pipe holds for its sink: a PROXY header for an
    /// upstream just connected, before the client's bytes. Called before the pipe is first
    /// pumped, when it holds at most a buffer; bytes in a kernel pipe would be read out first.
    /// Fails only as [`Pipe::freeze`] does.
    pub(crate) fn prepend(&mut self, bytes: &[u8], pools: &mut Pools) -> io::Result<()> {
        let held = self.freeze(pools)?;
        let mut all = Vec::with_capacity(bytes.len() + held.pending.len());
        all.extend_from_slice(bytes);
        all.extend_from_slice(&held.pending);
        if !all.is_empty() {
            self.held = Held::Buffer(pools.buffers.take_filled(&all));
            self.preface = true;
        }
        Ok(())
    }

    /// Tells the pipe whether the other direction is over (see [`Pipe::last`]).
    pub(crate) fn set_last(&mut self, last: bool) {
        self.last = last;
    }

    pub(crate) fn state(&self) -> PipeState {
        self.state
    }

    /// Bytes read and not yet written.
    pub(crate) fn held(&self) -> usize {
        self.held.len()
    }

    /// How this direction moves its bytes now.
    #[cfg(test)]
    pub(crate) fn mode(&self) -> Mode {
        self.mode
    }

    /// Moves bytes from `src` to `dst` while readiness allows, spending at most `budget`
    /// syscalls (each read, write, splice or shutdown costs one), and reading at most
    /// `read_cap` bytes (a bandwidth limit's grant; `u64::MAX`: no limit).
    ///
    /// What was done is returned even when a call failed: bytes written before the failure
    /// were relayed and must be counted.
    #[allow(clippy::too_many_arguments)] // Both ends and their readiness, and two bounds.
    pub(crate) fn pump(
        &mut self,
        src: &mut impl Transport,
        src_ready: &mut Readiness,
        dst: &mut impl Transport,
        dst_ready: &mut Readiness,
        pools: &mut Pools,
        budget: &mut u32,
        read_cap: u64,
    ) -> (Pumped, Result<(), PipeError>) {
        let mut done = Pumped::default();
        let result = self.pump_inner(
            src, src_ready, dst, dst_ready, pools, budget, read_cap, &mut done,
        );
        // A buffer or a pipe is held only while bytes are in flight.
        if self.held.len() == 0 {
            self.pipe_full = false;
            self.held.release_if_empty(pools);
        }
        (done, result)
    }

    #[allow(clippy::too_many_arguments)]
    fn pump_inner(
        &mut self,
        src: &mut impl Transport,
        src_ready: &mut Readiness,
        dst: &mut impl Transport,
        dst_ready: &mut Readiness,
        pools: &mut Pools,
        budget: &mut u32,
        read_cap: u64,
        done: &mut Pumped,
    ) -> Result<(), PipeError> {
        loop {
            let pending = self.held.len() > 0;
            let can_write = pending && dst_ready.writable;
            let can_flush = !pending && dst_ready.writable && dst.holds_output();
            let allowed = read_cap.saturating_sub(done.read);
            let room = self.held.room() > 0 && !self.pipe_full && allowed > 0;
            let can_read = self.state == PipeState::Open && src_ready.readable && room;
            let can_finish = self.state == PipeState::Draining
                && !pending
                && (!self.fin_blocked || dst_ready.writable);
            if !(can_write || can_flush || can_read || can_finish) {
                return Ok(());
            }
            if *budget == 0 {
                done.yielded = true;
                return Ok(());
            }
            *budget -= 1;
            if can_write && !(self.preface && can_read) {
                self.preface = false;
                self.write_out(dst, &mut dst_ready.writable, pools, done)?;
            } else if can_flush {
                if let End::Failed(e) = step::flush(dst, &mut dst_ready.writable) {
                    return Err(PipeError::Sink(e));
                }
            } else if can_read {
                self.read_in(src, src_ready, pools, allowed, done)?;
            } else if self.last && dst.close_ends_stream() {
                self.state = PipeState::Done;
            } else {
                match step::end_stream(dst, &mut dst_ready.writable) {
                    End::Done => self.state = PipeState::Done,
                    End::Idle => self.fin_blocked = true,
                    End::Failed(e) => return Err(PipeError::Sink(e)),
                }
            }
        }
    }

    /// One write (or splice out) of the held bytes.
    fn write_out(
        &mut self,
        dst: &mut impl Transport,
        dst_writable: &mut bool,
        pools: &mut Pools,
        done: &mut Pumped,
    ) -> Result<(), PipeError> {
        let want = self.held.len();
        let result = match &mut self.held {
            Held::Nothing => return Ok(()), // Not called without pending bytes.
            Held::Buffer(buf) => dst.write(buf.pending()).inspect(|&n| buf.consumed(n)),
            Held::Pipe(pipe) => dst.splice_from_pipe(pipe, want),
        };
        match step::written(result, want, dst_writable) {
            Write::Wrote(n) => {
                done.moved += n as u64;
                self.pipe_full = false;
                Ok(())
            }
            Write::Idle => Ok(()),
            Write::Failed(e) if self.is_pipe() && splice::is_unsupported(&e) => {
                self.fall_back(pools, &e).map_err(PipeError::Sink)
            }
            Write::Failed(e) => Err(self.failed(PipeError::Sink(e))),
        }
    }

    /// One read (or splice in) from the source, into what the direction holds (taken first,
    /// when it holds nothing). A read into a buffer follows `step::read_into`'s rules (a short
    /// read may prove the source drained); a splice may stop short of the queue's end, when the
    /// pipe runs out of slots, so a short splice proves nothing.
    /// One read (or splice in) of at most `allowed` bytes.
    fn read_in(
        &mut self,
        src: &mut impl Transport,
        src_ready: &mut Readiness,
        pools: &mut Pools,
        allowed: u64,
        done: &mut Pumped,
    ) -> Result<(), PipeError> {
        self.choose_holder(pools);
        let allowed = usize::try_from(allowed).unwrap_or(usize::MAX);
        let room = self.held.room().min(allowed);
        let read = match &mut self.held {
            Held::Nothing => return Ok(()), // choose_holder leaves something to read into.
            Held::Buffer(buf) => {
                let spare = buf.spare();
                let len = room.min(spare.len());
                let spare = &mut spare[..len];
                let read = step::read_into(src, spare, src_ready);
                if let Read::Data(n) = read {
                    buf.filled(n);
                }
                read
            }
            Held::Pipe(pipe) => match src.splice_to_pipe(pipe, room) {
                Ok(0) => Read::Eof,
                Ok(n) => Read::Data(n),
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    if pipe.len() > 0 {
                        // The socket is drained, or the pipe is out of slots: wait for a write
                        // either way, and keep the readiness in case it was the pipe.
                        self.pipe_full = true;
                    } else {
                        src_ready.readable = false;
                    }
                    Read::Idle
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => Read::Idle,
                Err(e) => Read::Failed(e),
            },
        };
        match read {
            Read::Eof => {
                self.state = PipeState::Draining;
                done.finished = true;
                Ok(())
            }
            Read::Data(n) => {
                done.read += n as u64;
                self.bulk = n >= pools.bulk_read || n == room;
                Ok(())
            }
            Read::Idle => Ok(()),
            Read::Failed(e) if self.is_pipe() && splice::is_unsupported(&e) => {
                self.fall_back(pools, &e).map_err(PipeError::Source)
            }
            Read::Failed(e) => Err(self.failed(PipeError::Source(e))),
        }
    }

    /// Makes sure the direction holds something to read into: a pipe for bulk data on the
    /// splice path, while the reactor has one to give; a buffer otherwise. What it holds is
    /// swapped for the other kind only while empty, so bytes keep their order.
    fn choose_holder(&mut self, pools: &mut Pools) {
        let want_pipe = self.mode == Mode::Splice && (self.bulk || pools.bulk_read == 0);
        match &self.held {
            Held::Nothing => {}
            held if held.len() > 0 || held.is_pipe() == want_pipe => return,
            _ => self.held.release_if_empty(pools),
        }
        if want_pipe {
            match pools.pipes.take() {
                Ok(Some(pipe)) => {
                    self.held = Held::Pipe(pipe);
                    return;
                }
                // The reactor's budget of pipes is used up: copy for now.
                Ok(None) => {}
                Err(e) => {
                    self.mode = Mode::Copy;
                    pools.pipes.fell_back(Fallback::Create, Some(&e));
                }
            }
        }
        self.held = Held::Buffer(pools.buffers.take());
    }

    /// A socket refused a splice: this direction copies from now on. Bytes already in the pipe
    /// move to a buffer, to be written before anything read later.
    fn fall_back(&mut self, pools: &mut Pools, error: &io::Error) -> io::Result<()> {
        self.mode = Mode::Copy;
        self.pipe_full = false;
        pools.pipes.fell_back(Fallback::Unsupported, Some(error));
        let Held::Pipe(mut pipe) = std::mem::replace(&mut self.held, Held::Nothing) else {
            return Ok(());
        };
        pipe.mark_failed();
        if pipe.len() == 0 {
            pools.pipes.give(pipe);
            return Ok(());
        }
        // A pipe may hold more than a buffer (`pipe_size` is apart from `buffer_size`).
        let mut buf = pools.buffers.take_at_least(pipe.len());
        let moved = move_to_buffer(&mut pipe, &mut buf);
        pools.pipes.give(pipe);
        self.held = Held::Buffer(buf);
        moved
    }

    fn is_pipe(&self) -> bool {
        self.held.is_pipe()
    }

    /// A call failed: the pipe held, if any, is never reused.
    fn failed(&mut self, error: PipeError) -> PipeError {
        if let Held::Pipe(pipe) = &mut self.held {
            pipe.mark_failed();
        }
        error
    }
}

/// Reads every byte of `pipe` into `buf`, which has room for all of them.
fn move_to_buffer(pipe: &mut splice::KernelPipe, buf: &mut Buffer) -> io::Result<()> {
    while pipe.len() > 0 {
        let spare = buf.spare();
        if spare.is_empty() {
            return Err(io::Error::other("a pipe held more than a buffer"));
        }
        match pipe.pull(spare) {
            Ok(0) => return Err(ErrorKind::UnexpectedEof.into()),
            Ok(n) => buf.filled(n),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
