//! The register of the clients an admin front end serves at once, and the rule that bounds
//! them.
//!
//! At most [`MAX_CLIENTS`] are in a register. When one more client comes, the client that has
//! waited longest for its next request is evicted to make room (it is marked, and its reading
//! is ended, so that its front end tells it why and closes), so that clients that connect and
//! say nothing can never lock an operator out. Only when every client is busy (running a
//! command or writing a reply) is the newcomer refused.
//!
//! A client counts as waiting from its admission until its first request, then from the end of
//! each reply until the next request. The register knows nothing of what a request is: the
//! front end says when its client waits and when it is busy ([`Member`]). Time is passed in.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

/// Clients served at once by one register.
pub const MAX_CLIENTS: usize = 32;

/// The clients served now.
#[derive(Default)]
pub struct Register {
    running: Mutex<Vec<(u64, Arc<Client>)>>,
    next_id: AtomicU64,
}

/// What [`Register::admit`] decided.
pub enum Admission {
    /// The client is in the register (another may have been evicted to make room) while the
    /// [`Member`] lives.
    Admitted(Member),
    /// The register is full and every client in it is busy: the newcomer is refused.
    Full,
}

/// Whether a client that stops waiting may go on ([`Member::busy`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// It is served.
    Kept,
    /// It was evicted to make room for a newer client while it waited: its front end tells it
    /// why, and closes its connection.
    Evicted,
}

/// A client's place in the register; dropping it leaves the register.
pub struct Member {
    register: Arc<Register>,
    id: u64,
    client: Arc<Client>,
}

/// What the register knows of one client, shared by the client's thread and the admitting one.
struct Client {
    /// Since when the client has waited for a request; `None` while it is busy.
    waiting_since: Mutex<Option<Instant>>,
    /// Evicted to make room for a newer client.
    evicted: AtomicBool,
    /// Ends the client's reading (a blocked read returns end of stream).
    stop_reading: Box<dyn Fn() + Send + Sync>,
}

impl Register {
    /// Admits a client, waiting from `now` for its first request; at the limit, evicts the
    /// client that has waited longest (marks it and calls its `stop_reading`). `stop_reading`
    /// must end this client's reading from another thread, should it be evicted in turn.
    pub fn admit(
        self: &Arc<Self>,
        stop_reading: Box<dyn Fn() + Send + Sync>,
        now: Instant,
    ) -> Admission {
        let client = Arc::new(Client {
            // Waiting from the start: a client that says nothing is the first to make room.
            waiting_since: Mutex::new(Some(now)),
            evicted: AtomicBool::new(false),
            stop_reading,
        });
        let mut running = self.running();
        if running.len() >= MAX_CLIENTS {
            let Some((_, longest)) = running
                .iter()
                .enumerate()
                .filter_map(|(index, (_, c))| c.waiting_since().map(|since| (since, index)))
                .min()
            else {
                return Admission::Full;
            };
            let (_, victim) = running.swap_remove(longest);
            victim.evicted.store(true, Ordering::SeqCst);
            (victim.stop_reading)();
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        running.push((id, client.clone()));
        Admission::Admitted(Member {
            register: self.clone(),
            id,
            client,
        })
    }

    /// The clients in the register now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.running().len()
    }

    fn running(&self) -> MutexGuard<'_, Vec<(u64, Arc<Client>)>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn leave(&self, id: u64) {
        self.running().retain(|(i, _)| *i != id);
    }
}

impl Member {
    /// The client waits for its next request from `now`; before its first one, from its
    /// admission still (so that clients that never speak are evicted in the order they came).
    pub fn waiting(&self, now: Instant) {
        self.client.waiting_since().get_or_insert(now);
    }

    /// The client's wait is over (a request came, or its reading ended): it cannot be evicted
    /// until it waits again. Says whether it was evicted while it waited.
    pub fn busy(&self) -> Standing {
        *self.client.waiting_since() = None;
        if self.client.evicted.load(Ordering::SeqCst) {
            Standing::Evicted
        } else {
            Standing::Kept
        }
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.register.leave(self.id);
    }
}

impl Client {
    fn waiting_since(&self) -> MutexGuard<'_, Option<Instant>> {
        self.waiting_since.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    use super::*;

    /// A register, and a count of the readings it ended.
    fn register() -> (Arc<Register>, Arc<AtomicUsize>) {
        (Arc::default(), Arc::default())
    }

    /// Admits a client at `at`, counting its reading ended in `stopped`.
    fn admit(register: &Arc<Register>, stopped: &Arc<AtomicUsize>, at: Instant) -> Admission {
        let stopped = stopped.clone();
        let stop = move || {
            stopped.fetch_add(1, Ordering::SeqCst);
        };
        register.admit(Box::new(stop), at)
    }

    fn admitted(admission: Admission) -> Member {
        match admission {
            Admission::Admitted(member) => member,
            Admission::Full => panic!("refused"),
        }
    }

    fn ms(start: Instant, ms: u64) -> Instant {
        start + Duration::from_millis(ms)
    }

    #[test]
    fn at_the_limit_the_longest_waiting_client_makes_room() {
        let (register, stopped) = register();
        let start = Instant::now();
        let mut all = Vec::new();
        for n in 0..MAX_CLIENTS {
            // The one waiting longest is in the middle, not first in line.
            let offset = if n == 5 { 0 } else { 10 + n as u64 };
            let member = admitted(admit(&register, &stopped, ms(start, offset)));
            if n % 2 == 0 && n != 5 {
                assert_eq!(member.busy(), Standing::Kept);
            }
            all.push(member);
        }
        let _newcomer = admitted(admit(&register, &stopped, ms(start, 100)));
        assert_eq!(stopped.load(Ordering::SeqCst), 1, "one reading ended");
        let evicted: Vec<usize> = (0..MAX_CLIENTS)
            .filter(|&n| all[n].busy() == Standing::Evicted)
            .collect();
        assert_eq!(evicted, [5]);
        assert_eq!(register.len(), MAX_CLIENTS);
        // The evicted client's leaving takes nobody else's place with it.
        all.remove(5);
        assert_eq!(register.len(), MAX_CLIENTS);
    }

    #[test]
    fn at_the_limit_with_every_client_busy_the_newcomer_is_refused() {
        let (register, stopped) = register();
        let start = Instant::now();
        let all: Vec<Member> = (0..MAX_CLIENTS)
            .map(|n| admitted(admit(&register, &stopped, ms(start, n as u64))))
            .collect();
        for member in &all {
            member.busy();
        }
        assert!(matches!(
            admit(&register, &stopped, ms(start, 100)),
            Admission::Full
        ));
        assert_eq!(register.len(), MAX_CLIENTS);
        assert_eq!(stopped.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn clients_that_never_speak_make_room_in_the_order_they_came() {
        let (register, stopped) = register();
        let start = Instant::now();
        let all: Vec<Member> = (0..MAX_CLIENTS)
            .map(|n| admitted(admit(&register, &stopped, ms(start, n as u64))))
            .collect();
        // Waiting again before a first request keeps the wait counted from admission.
        all[0].waiting(ms(start, 1000));
        let _newcomers: Vec<Member> = (0..3)
            .map(|n| admitted(admit(&register, &stopped, ms(start, 2000 + n))))
            .collect();
        let evicted: Vec<usize> = (0..MAX_CLIENTS)
            .filter(|&n| all[n].busy() == Standing::Evicted)
            .collect();
        assert_eq!(evicted, [0, 1, 2]);
    }

    #[test]
    fn after_a_request_a_client_waits_from_its_reply() {
        let (register, stopped) = register();
        let start = Instant::now();
        let all: Vec<Member> = (0..MAX_CLIENTS)
            .map(|n| admitted(admit(&register, &stopped, ms(start, n as u64))))
            .collect();
        // The first client asks something and then waits again, later than all the others.
        assert_eq!(all[0].busy(), Standing::Kept);
        all[0].waiting(ms(start, 1000));
        let _newcomer = admitted(admit(&register, &stopped, ms(start, 2000)));
        assert_eq!(all[0].busy(), Standing::Kept);
        assert_eq!(all[1].busy(), Standing::Evicted);
    }

    #[test]
    fn a_client_that_leaves_makes_room_for_nobody_evicted() {
        let (register, stopped) = register();
        let start = Instant::now();
        let mut all: Vec<Member> = (0..MAX_CLIENTS)
            .map(|n| admitted(admit(&register, &stopped, ms(start, n as u64))))
            .collect();
        drop(all.pop());
        assert_eq!(register.len(), MAX_CLIENTS - 1);
        let _newcomer = admitted(admit(&register, &stopped, ms(start, 100)));
        assert_eq!(register.len(), MAX_CLIENTS);
        assert_eq!(stopped.load(Ordering::SeqCst), 0);
        assert!(all.iter().all(|m| m.busy() == Standing::Kept));
    }
}
