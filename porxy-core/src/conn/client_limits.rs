//! Per-client connection limits (`max_conns_per_client`): how many connections one client may
//! hold at once on a tunnel, exact across reactors.
//!
//! A client is its real address (the one a PROXY header named, else its peer); IPv6 clients
//! are grouped by a prefix (`client_ipv6_prefix`, /64 by default, since one host commonly has
//! a whole /64): a [`ClientKey`]. The counts are shared by
//! every reactor, in shards behind locks taken for a few map operations per connection, so
//! two reactors taking two connections of one client at once can never both pass the limit.
//! Which connections hold a count is kept by connection id, so each gives its count back
//! exactly once, whatever ends it. Memory is bounded by the open connections: a client's entry
//! goes with its last connection.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Mutex;

/// Shards of the counts: reactors taking different clients rarely meet on one lock.
const SHARDS: usize = 16;
/// The prefix IPv6 clients are grouped by unless told otherwise.
pub(crate) const DEFAULT_IPV6_PREFIX: u8 = 64;

/// A client, as the limits and the rate count it: an IPv4 address (mapped IPv6 ones as
/// themselves), or an IPv6 prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct ClientKey(IpAddr);

impl ClientKey {
    /// `addr`'s client, IPv6 addresses grouped by their first `ipv6_prefix` bits (1 to 128).
    pub(crate) fn of(addr: IpAddr, ipv6_prefix: u8) -> ClientKey {
        match addr.to_canonical() {
            IpAddr::V6(v6) => {
                let kept = u32::from(ipv6_prefix.clamp(1, 128));
                let bits = u128::from(v6) & (u128::MAX << (128 - kept));
                ClientKey(IpAddr::V6(Ipv6Addr::from(bits)))
            }
            v4 => ClientKey(v4),
        }
    }
}

#[derive(Default)]
struct Shard {
    open: HashMap<ClientKey, u32>,
    /// Connection id -> the client it counts for.
    holders: HashMap<u64, ClientKey>,
}

/// One tunnel's per-client counts, shared by its versions (a change of the limit applies to
/// the counts as they stand).
pub(crate) struct ClientLimits {
    shards: Vec<Mutex<Shard>>,
}

impl Default for ClientLimits {
    fn default() -> Self {
        ClientLimits {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
        }
    }
}

impl ClientLimits {
    fn shard(&self, client: ClientKey) -> &Mutex<Shard> {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        client.hash(&mut hasher);
        &self.shards[hasher.finish() as usize % SHARDS]
    }

    /// Connection `id` of `client` takes a count, if the client holds fewer than `max`; false
    /// if it is at the limit (nothing taken).
    pub(crate) fn take(&self, id: u64, client: ClientKey, max: u32) -> bool {
        let mut shard = self.shard(client).lock().unwrap_or_else(|e| e.into_inner());
        let open = shard.open.entry(client).or_insert(0);
        if *open >= max {
            if *open == 0 {
                shard.open.remove(&client);
            }
            return false;
        }
        *open += 1;
        shard.holders.insert(id, client);
        true
    }

    /// Connection `id` of `client`, taken over from another process, counts whatever the
    /// limit: it exists already.
    pub(crate) fn adopt(&self, id: u64, client: ClientKey) {
        self.take(id, client, u32::MAX);
    }

    /// Connection `id` of `client` ends or leaves: its count goes back, if it holds one.
    pub(crate) fn give_back(&self, id: u64, client: ClientKey) {
        let mut shard = self.shard(client).lock().unwrap_or_else(|e| e.into_inner());
        if shard.holders.remove(&id).is_none() {
            return;
        }
        if let Some(open) = shard.open.get_mut(&client) {
            *open -= 1;
            if *open == 0 {
                shard.open.remove(&client);
            }
        }
    }

    /// Connections `addr`'s client holds now.
    #[cfg(test)]
    fn open(&self, client: ClientKey) -> u32 {
        let shard = self.shard(client).lock().unwrap();
        shard.open.get(&client).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    /// The client of address `text`, IPv6 by its /64.
    fn ip(text: &str) -> ClientKey {
        ClientKey::of(text.parse().unwrap(), DEFAULT_IPV6_PREFIX)
    }

    #[test]
    fn a_client_takes_up_to_its_limit_and_each_count_goes_back_once() {
        let limits = ClientLimits::default();
        assert!(limits.take(1, ip("192.0.2.7"), 2));
        assert!(limits.take(2, ip("192.0.2.7"), 2));
        assert!(!limits.take(3, ip("192.0.2.7"), 2), "at the limit");
        assert!(limits.take(4, ip("192.0.2.8"), 2), "another client");
        limits.give_back(1, ip("192.0.2.7"));
        limits.give_back(1, ip("192.0.2.7"));
        limits.give_back(3, ip("192.0.2.7")); // Refused: it held none.
        assert_eq!(limits.open(ip("192.0.2.7")), 1);
        // Taken over from another process: counted whatever the limit.
        limits.adopt(7, ip("192.0.2.7"));
        assert_eq!(limits.open(ip("192.0.2.7")), 2);
        limits.give_back(7, ip("192.0.2.7"));
        assert!(limits.take(5, ip("192.0.2.7"), 2));
        assert!(!limits.take(6, ip("192.0.2.7"), 2));
    }

    #[test]
    fn ipv6_clients_count_by_their_64_and_mapped_ipv4_as_itself() {
        let limits = ClientLimits::default();
        assert!(limits.take(1, ip("2001:db8:1:2::a"), 1));
        assert!(!limits.take(2, ip("2001:db8:1:2::b"), 1), "same /64");
        assert!(limits.take(3, ip("2001:db8:1:3::a"), 1), "another /64");
        assert!(limits.take(4, ip("10.0.0.1"), 1));
        assert!(!limits.take(5, ip("::ffff:10.0.0.1"), 1));
    }

    #[test]
    fn the_ipv6_prefix_decides_who_is_one_client() {
        let a: IpAddr = "2001:db8:1:2::a".parse().unwrap();
        let same_48: IpAddr = "2001:db8:1:ff::b".parse().unwrap();
        assert_ne!(ClientKey::of(a, 64), ClientKey::of(same_48, 64));
        assert_eq!(ClientKey::of(a, 48), ClientKey::of(same_48, 48));
        let next: IpAddr = "2001:db8:1:2::b".parse().unwrap();
        assert_ne!(
            ClientKey::of(a, 128),
            ClientKey::of(next, 128),
            "each address"
        );
        assert_eq!(
            ClientKey::of(a, 1),
            ClientKey::of("::1".parse().unwrap(), 1)
        );
        // IPv4 (and IPv4 mapped in IPv6) is never grouped.
        let v4: IpAddr = "10.0.0.1".parse().unwrap();
        assert_ne!(
            ClientKey::of(v4, 1),
            ClientKey::of("10.0.0.2".parse().unwrap(), 1)
        );
    }

    #[test]
    fn memory_goes_with_the_last_connection() {
        let limits = ClientLimits::default();
        for id in 0..1000u64 {
            let addr = IpAddr::from([10, 0, (id / 256) as u8, (id % 256) as u8]);
            let addr = ClientKey::of(addr, DEFAULT_IPV6_PREFIX);
            assert!(limits.take(id, addr, 3));
            limits.give_back(id, addr);
        }
        let entries: usize = limits
            .shards
            .iter()
            .map(|s| {
                let s = s.lock().unwrap();
                s.open.len() + s.holders.len()
            })
            .sum();
        assert_eq!(entries, 0);
    }

    #[test]
    fn threads_taking_at_once_never_pass_the_limit() {
        let limits = Arc::new(ClientLimits::default());
        let taken: u32 = (0..8u64)
            .map(|t| {
                let limits = limits.clone();
                std::thread::spawn(move || {
                    (0..100u64)
                        .filter(|i| limits.take(t * 1000 + i, ip("192.0.2.7"), 5))
                        .count() as u32
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().unwrap())
            .sum();
        assert_eq!(taken, 5);
        assert_eq!(limits.open(ip("192.0.2.7")), 5);
    }
}
