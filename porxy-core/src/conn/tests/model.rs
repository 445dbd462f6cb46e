//! The relay machine against a model, property-tested: random scripts of reads (bytes of
//! random sizes, would-block, interrupts), writes (short, would-block, interrupts), and an end
//! of stream or not on each side, driven as readiness comes. Whatever the scripts, on either
//! data path: what each side is sent is a prefix of what the other side gave (never a wrong,
//! lost-in-the-middle or repeated byte); the machine never panics and every drive returns; and
//! once both sides have ended and writes go through, everything arrives, each end of stream is
//! passed on once, after the last byte, and the connection completes.

use proptest::prelude::*;

use super::fake::{Rd, Rig, Wr, ACCEPT_ALL, RW};
use crate::conn::close::CloseReason;
use crate::conn::hold::Mode;
use crate::conn::{Action, Side};

/// Drives at most this many rounds: far more than any script here needs.
const MAX_ROUNDS: usize = 10_000;

/// One side's script: reads, then whether it ends with an end of stream.
#[derive(Debug, Clone)]
struct Script {
    reads: Vec<Rd>,
    writes: Vec<Wr>,
    eof: bool,
}

fn read_step() -> impl Strategy<Value = Rd> {
    prop_oneof![
        6 => prop::collection::vec(any::<u8>(), 1..3000).prop_map(Rd::Data),
        2 => Just(Rd::WouldBlock),
        1 => Just(Rd::Interrupted),
    ]
}

fn write_step() -> impl Strategy<Value = Wr> {
    prop_oneof![
        4 => (1usize..2000).prop_map(Wr::Accept),
        2 => Just(Wr::WouldBlock),
        1 => Just(Wr::Interrupted),
    ]
}

fn script() -> impl Strategy<Value = Script> {
    (
        prop::collection::vec(read_step(), 0..12),
        prop::collection::vec(write_step(), 0..20),
        any::<bool>(),
    )
        .prop_map(|(reads, writes, eof)| Script { reads, writes, eof })
}

fn mode() -> impl Strategy<Value = Mode> {
    prop_oneof![Just(Mode::Copy), Just(Mode::Splice)]
}

/// The bytes a script hands out.
fn given(script: &Script) -> Vec<u8> {
    script
        .reads
        .iter()
        .flat_map(|rd| match rd {
            Rd::Data(bytes) => bytes.clone(),
            _ => Vec::new(),
        })
        .collect()
}

/// A relaying connection on `mode` whose sides play `client` and `upstream`, and what to
/// check it against.
fn rigged(client: &Script, upstream: &Script, mode: Mode) -> (Rig, Expect) {
    let mut rig = Rig::relaying_on(mode);
    load(&mut rig, Side::Client, client);
    load(&mut rig, Side::Upstream, upstream);
    (rig, Expect::of(client, upstream))
}

fn load(rig: &mut Rig, side: Side, script: &Script) {
    let stream = rig.stream(side);
    stream.reads.extend(script.reads.iter().cloned());
    if script.eof {
        stream.reads.push_back(Rd::Eof);
    }
    stream.writes.extend(script.writes.iter().copied());
    stream.write_idle = ACCEPT_ALL;
}

/// What the connection is being checked against: the bytes each side gives, and whether each
/// ends its stream.
struct Expect {
    up_in: Vec<u8>,
    down_in: Vec<u8>,
    client_eof: bool,
    upstream_eof: bool,
}

impl Expect {
    fn of(client: &Script, upstream: &Script) -> Expect {
        Expect {
            up_in: given(client),
            down_in: given(upstream),
            client_eof: client.eof,
            upstream_eof: upstream.eof,
        }
    }

    /// One round: both sides ready, one drive; every byte out still a prefix of what the
    /// other side gave. `Some(reason)` once the connection closes.
    fn round(&self, rig: &mut Rig, round: usize) -> Result<Option<CloseReason>, TestCaseError> {
        rig.ready(Side::Client, RW);
        rig.ready(Side::Upstream, RW);
        let at = std::time::Duration::from_millis(round as u64);
        match rig.drive(at) {
            Action::Close { reason, .. } => return Ok(Some(reason)),
            Action::Wait | Action::Again => {}
            other => prop_assert!(false, "a relaying connection asked for {other:?}"),
        }
        prop_assert!(
            self.up_in.starts_with(&rig.upstream.written),
            "to the upstream"
        );
        prop_assert!(
            self.down_in.starts_with(&rig.client.written),
            "to the client"
        );
        Ok(None)
    }

    /// Nothing left to read, everything written, every end of stream passed on.
    fn settled(&self, rig: &Rig) -> bool {
        rig.client.reads.is_empty()
            && rig.upstream.reads.is_empty()
            && rig.client.written.len() == self.down_in.len()
            && rig.upstream.written.len() == self.up_in.len()
            && (!self.client_eof || rig.upstream.shutdown_at.is_some())
            && (!self.upstream_eof || rig.client.shutdown_at.is_some())
    }

    /// Everything arrived, and each end of stream was passed on after the last byte and only
    /// if one came: by a shutdown, or by the close that completes the connection (closing a
    /// kernel socket ends its stream).
    fn all_arrived(&self, rig: &Rig, closed: Option<CloseReason>) -> Result<(), TestCaseError> {
        prop_assert_eq!(&rig.upstream.written, &self.up_in);
        prop_assert_eq!(&rig.client.written, &self.down_in);
        let completed = closed == Some(CloseReason::Completed);
        for (eof, to, len) in [
            (self.client_eof, &rig.upstream, self.up_in.len()),
            (self.upstream_eof, &rig.client, self.down_in.len()),
        ] {
            match to.shutdown_at {
                Some(at) => prop_assert!(eof && at == len, "a FIN at {at} of {len}, eof {eof}"),
                None => prop_assert!(!eof || completed, "an end of stream not passed on"),
            }
            prop_assert!(to.shutdown_calls <= 1, "one shutdown at most");
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn relayed_bytes_are_exact_whatever_the_scripts(
        client in script(),
        upstream in script(),
        mode in mode(),
    ) {
        let (mut rig, expect) = rigged(&client, &upstream, mode);
        let mut closed = None;
        for round in 0..MAX_ROUNDS {
            closed = expect.round(&mut rig, round)?;
            if closed.is_some() || expect.settled(&rig) {
                break;
            }
        }
        expect.all_arrived(&rig, closed)?;
        if client.eof && upstream.eof {
            prop_assert_eq!(closed, Some(CloseReason::Completed));
        } else {
            prop_assert_eq!(closed, None, "a side still open keeps the connection");
        }
    }
}

/// A side's script that may fail: its reads or writes end in an error (a reset).
fn failing_script() -> impl Strategy<Value = (Script, bool)> {
    (script(), any::<bool>(), 0usize..4).prop_map(|(mut script, on_read, at)| {
        if on_read {
            let at = at.min(script.reads.len());
            script
                .reads
                .insert(at, Rd::Fail(std::io::ErrorKind::ConnectionReset));
            script.eof = false;
        } else {
            let at = at.min(script.writes.len());
            script
                .writes
                .insert(at, Wr::Fail(std::io::ErrorKind::BrokenPipe));
        }
        (script, on_read)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// With a reset on one side, the bytes that did go through are still exact, the machine
    /// never panics, and the connection never ends as completed: it ends with a reset, or waits
    /// on a side still open.
    #[test]
    fn a_reset_never_passes_for_a_clean_end(
        (client, _) in failing_script(),
        upstream in script(),
        mode in mode(),
    ) {
        let (mut rig, expect) = rigged(&client, &upstream, mode);
        let mut closed = None;
        for round in 0..MAX_ROUNDS {
            closed = expect.round(&mut rig, round)?;
            let quiet = rig.client.reads.is_empty() && rig.upstream.reads.is_empty();
            if closed.is_some() || (quiet && round > 100) {
                break;
            }
        }
        // The fault counts once the machine met it (a write it never made cannot fail).
        let met = !rig.client.writes.iter().any(|w| matches!(w, Wr::Fail(_)))
            && !rig.client.reads.iter().any(|r| matches!(r, Rd::Fail(_)));
        if !met {
            return Ok(());
        }
        prop_assert_ne!(closed, Some(CloseReason::Completed));
        if let Some(reason) = closed {
            prop_assert!(
                matches!(reason, CloseReason::ClientReset | CloseReason::UpstreamReset),
                "{reason:?}"
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Frozen at a random moment and restored in a new machine on the same streams (as an
    /// upgrade hands it over), the connection goes on exactly where it was: the same final
    /// state as without the move.
    #[test]
    fn a_frozen_and_restored_relay_goes_on_exactly(
        client in script(),
        upstream in script(),
        mode in mode(),
        freeze_at in 0usize..12,
    ) {
        use crate::conn::frozen::Frozen;
        use crate::conn::Conn;

        let (mut rig, expect) = rigged(&client, &upstream, mode);
        let mut closed = None;
        let mut moved = false;
        for round in 0..MAX_ROUNDS {
            let at = std::time::Duration::from_millis(round as u64);
            if round == freeze_at {
                let frozen = rig.conn.freeze(&mut rig.pools, rig.t0 + at);
                let Ok(Frozen::Relaying(state)) = frozen else {
                    prop_assert!(false, "a relaying connection froze as {frozen:?}");
                    unreachable!();
                };
                // The same sockets, in a new machine with its own pools (another process).
                let mut next = Rig::relaying();
                next.t0 = rig.t0;
                next.client = std::mem::replace(&mut rig.client, super::fake::FakeStream::new());
                next.upstream =
                    std::mem::replace(&mut rig.upstream, super::fake::FakeStream::new());
                next.conn = Conn::restored(rig.t0 + at, super::fake::settings(Mode::Copy), &state, &mut next.pools);
                rig = next;
                moved = true;
            }
            closed = expect.round(&mut rig, round)?;
            if closed.is_some() || (round > freeze_at && expect.settled(&rig)) {
                break;
            }
        }
        if !moved {
            // It ended before the moment to move it: nothing more to check here.
            return Ok(());
        }
        expect.all_arrived(&rig, closed)?;
    }
}
