//! Per-client connection rate (`rate_per_client`, `rate_burst`): how many new connections one
//! client may open per second on a tunnel, as a token bucket shared by every reactor.
//!
//! A client (a [`ClientKey`], as for [`ClientLimits`]) starts with
//! `burst` tokens; each new connection takes one; tokens come back at `rate` a second, up to
//! `burst`. A connection with no token left is refused. Buckets live in locked shards, so two
//! reactors never both take a client's last token.
//!
//! Memory is bounded: a bucket that has filled up again says nothing a missing one does not,
//! so it is dropped when its shard is swept; and a shard holds at most [`SHARD_ENTRIES`]
//! buckets (so at most `SHARDS * SHARD_ENTRIES` = 65,536 per tunnel, about 3 MiB): when a
//! flood of distinct addresses fills it, the fullest buckets go first, which forgets the least.
//!
//! [`ClientLimits`]: super::client_limits::ClientLimits

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Mutex;
use std::time::Instant;

use super::client_limits::ClientKey;

const SHARDS: usize = 16;
/// Most buckets one shard holds.
const SHARD_ENTRIES: usize = 4096;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    /// The tokens at `now`, refilled at `rate` a second up to `burst`.
    fn refill(&mut self, now: Instant, rate: f64, burst: f64) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(burst);
        self.at = now;
    }
}

/// One tunnel's per-client buckets, shared by its versions.
pub(crate) struct ClientRate {
    shards: Vec<Mutex<HashMap<ClientKey, Bucket>>>,
}

impl Default for ClientRate {
    fn default() -> Self {
        ClientRate {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
        }
    }
}

impl ClientRate {
    /// Whether `client` may open a connection at `now`, at `rate` a second with bursts of
    /// `burst`; if so, it has taken a token.
    pub(crate) fn admit(&self, client: ClientKey, now: Instant, rate: u32, burst: u32) -> bool {
        let (rate, burst) = (f64::from(rate), f64::from(burst.max(1)));
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        client.hash(&mut hasher);
        let shard = &self.shards[hasher.finish() as usize % SHARDS];
        let mut buckets = shard.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= SHARD_ENTRIES && !buckets.contains_key(&client) {
            sweep(&mut buckets, now, rate, burst);
        }
        let bucket = buckets.entry(client).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        bucket.refill(now, rate, burst);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    #[cfg(test)]
    fn entries(&self) -> usize {
        self.shards.iter().map(|s| s.lock().unwrap().len()).sum()
    }
}

/// Makes room in a full shard: drops the buckets that are full again (they say nothing), then,
/// if that was not enough, the fullest half.
fn sweep(buckets: &mut HashMap<ClientKey, Bucket>, now: Instant, rate: f64, burst: f64) {
    for bucket in buckets.values_mut() {
        bucket.refill(now, rate, burst);
    }
    buckets.retain(|_, b| b.tokens < burst);
    if buckets.len() >= SHARD_ENTRIES {
        let mut tokens: Vec<f64> = buckets.values().map(|b| b.tokens).collect();
        tokens.sort_by(f64::total_cmp);
        let cut = tokens[tokens.len() / 2];
        buckets.retain(|_, b| b.tokens < cut);
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;
    use std::time::Duration;

    use super::*;
    use crate::conn::client_limits::DEFAULT_IPV6_PREFIX;

    /// The time one token takes to come back at `rate` a second.
    fn one_token(rate: u32) -> Duration {
        Duration::from_secs_f64(1.0 / f64::from(rate))
    }

    fn ip(text: &str) -> ClientKey {
        ClientKey::of(text.parse().unwrap(), DEFAULT_IPV6_PREFIX)
    }

    #[test]
    fn a_burst_then_the_rate() {
        let rate = ClientRate::default();
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(rate.admit(ip("192.0.2.7"), t0, 10, 3));
        }
        assert!(
            !rate.admit(ip("192.0.2.7"), t0, 10, 3),
            "the burst is spent"
        );
        assert!(rate.admit(ip("192.0.2.8"), t0, 10, 3), "another client");
        let later = t0 + one_token(10);
        assert!(
            rate.admit(ip("192.0.2.7"), later, 10, 3),
            "a token came back"
        );
        assert!(!rate.admit(ip("192.0.2.7"), later, 10, 3));
        // A long pause fills the bucket to the burst, not beyond.
        let much_later = later + Duration::from_secs(60);
        for _ in 0..3 {
            assert!(rate.admit(ip("192.0.2.7"), much_later, 10, 3));
        }
        assert!(!rate.admit(ip("192.0.2.7"), much_later, 10, 3));
    }

    #[test]
    fn a_flood_of_addresses_stays_within_the_bound() {
        let rate = ClientRate::default();
        let t0 = Instant::now();
        for i in 0..200_000u32 {
            let addr = ClientKey::of(IpAddr::from(i.to_be_bytes()), DEFAULT_IPV6_PREFIX);
            rate.admit(addr, t0, 1, 5);
        }
        assert!(
            rate.entries() <= SHARDS * SHARD_ENTRIES,
            "{}",
            rate.entries()
        );
    }
}
