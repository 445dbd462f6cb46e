//! One takeover at a time: the running porxy's gate between a peer that asked `TAKEOVER` and
//! its listening sockets. A second peer is told why it must wait; after a takeover that
//! succeeded, none is let through again.

use std::sync::Mutex;
use std::time::Instant;

use super::peer::Peer;
use super::peers::lock;

/// Lets one takeover run at a time, and none after one has succeeded.
#[derive(Default)]
pub(super) struct Gate(Mutex<GateState>);

#[derive(Default, Debug, Clone, Copy)]
enum GateState {
    #[default]
    Open,
    /// A takeover by this process runs.
    Busy { pid: i32, since: Instant },
    /// This porxy was taken over; it stops.
    TakenOver,
}

impl Gate {
    /// Lets `peer`'s takeover through, or says why not.
    pub(super) fn enter(&self, peer: Peer) -> Result<(), String> {
        let mut state = lock(&self.0);
        match *state {
            GateState::Open => {
                *state = GateState::Busy {
                    pid: peer.pid,
                    since: Instant::now(),
                };
                Ok(())
            }
            GateState::Busy { pid, since } => Err(format!(
                "another takeover is under way (pid {pid}, for {}s)",
                since.elapsed().as_secs()
            )),
            GateState::TakenOver => {
                Err("this porxy has been taken over already and is stopping".into())
            }
        }
    }

    /// The running takeover has ended: done (`taken`), or abandoned.
    pub(super) fn leave(&self, taken: bool) {
        *lock(&self.0) = if taken {
            GateState::TakenOver
        } else {
            GateState::Open
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_takeover_at_a_time_and_none_after_success() {
        let gate = Gate::default();
        let peer = Peer { pid: 42, uid: 0 };
        assert_eq!(gate.enter(peer), Ok(()));
        let busy = gate.enter(Peer { pid: 7, uid: 0 }).unwrap_err();
        assert!(
            busy.starts_with("another takeover is under way (pid 42, for "),
            "{busy}"
        );
        gate.leave(false);
        assert_eq!(gate.enter(peer), Ok(()), "open again once abandoned");
        gate.leave(true);
        assert_eq!(
            gate.enter(peer),
            Err("this porxy has been taken over already and is stopping".into())
        );
    }
}
