//! Whether the reactors are turning: each is asked to answer through its mailbox, as any
//! message reaches it, so a reactor stuck in a long step or a deadlock does not answer. For a
//! watchdog (systemd's `WATCHDOG=1`) that must stop its pings when the proxy no longer serves.

use std::time::{Duration, Instant};

use super::ProxyHandle;
use crate::reactor::ReactorMsg;

impl ProxyHandle {
    /// The reactors that did not answer within `within` (by index; empty when every one
    /// answered). A reactor that has ended (the proxy stopped) does not answer either.
    pub fn unresponsive_reactors(&self, within: Duration) -> Vec<usize> {
        let deadline = Instant::now() + within;
        let (tx, rx) = crossbeam_channel::unbounded();
        let mut waiting: Vec<bool> = vec![true; self.shared.reactors.len()];
        for (index, reactor) in self.shared.reactors.iter().enumerate() {
            let _ = reactor.send(ReactorMsg::Ping {
                index,
                answer: tx.clone(),
            });
        }
        drop(tx);
        while waiting.iter().any(|w| *w) {
            match rx.recv_deadline(deadline) {
                Ok(index) => {
                    if let Some(w) = waiting.get_mut(index) {
                        *w = false;
                    }
                }
                Err(_) => break,
            }
        }
        waiting
            .iter()
            .enumerate()
            .filter(|(_, w)| **w)
            .map(|(i, _)| i)
            .collect()
    }
}
