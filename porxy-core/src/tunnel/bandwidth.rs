//! A tunnel's bandwidth limits: what each of its connections may read a second each way
//! (`max_rate_up`, `max_rate_down`), and what all of them together may
//! (`max_tunnel_rate_up`, `max_tunnel_rate_down`), in buckets every version of the tunnel
//! shares, so that a change of the rate applies to the bytes as they flow.

use std::sync::Arc;
use std::time::Instant;

use crate::conn::throttle::{self, Throttle};
use crate::rate::Rate;

/// The tunnel-wide buckets, shared by every version of a tunnel.
#[derive(Debug)]
pub(crate) struct TunnelBuckets {
    up: Arc<Rate>,
    down: Arc<Rate>,
}

impl Default for TunnelBuckets {
    fn default() -> Self {
        let now = Instant::now();
        TunnelBuckets {
            up: Arc::new(Rate::new(now)),
            down: Arc::new(Rate::new(now)),
        }
    }
}

/// What one tunnel version limits.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BandwidthLimits {
    /// Bytes a second each connection reads from its client, and from its upstream.
    pub(crate) conn: (Option<u64>, Option<u64>),
    /// Bytes a second the tunnel's connections together read each way.
    pub(crate) tunnel: (Option<u64>, Option<u64>),
}

/// A tunnel version's limits, with the buckets of its lineage.
#[derive(Debug)]
pub(crate) struct Bandwidth {
    limits: BandwidthLimits,
    buckets: Arc<TunnelBuckets>,
}

impl Bandwidth {
    /// `limits` from now on, in `buckets` (whose rates change to this version's).
    pub(crate) fn new(limits: BandwidthLimits, buckets: Arc<TunnelBuckets>) -> Bandwidth {
        let set = |rate: &Rate, per_second: Option<u64>| {
            rate.set(per_second, per_second.map_or(1, throttle::burst));
        };
        set(&buckets.up, limits.tunnel.0);
        set(&buckets.down, limits.tunnel.1);
        Bandwidth { limits, buckets }
    }

    /// The buckets, for the next version.
    pub(crate) fn buckets(&self) -> Arc<TunnelBuckets> {
        self.buckets.clone()
    }

    /// The limits of a connection that starts relaying at `now`, if the tunnel has any.
    #[inline]
    pub(crate) fn throttle(&self, now: Instant) -> Option<Box<Throttle>> {
        if self.limits == BandwidthLimits::default() {
            return None;
        }
        let shared = |limited: Option<u64>, bucket: &Arc<Rate>| limited.map(|_| bucket.clone());
        Throttle::new(
            now,
            self.limits.conn,
            (
                shared(self.limits.tunnel.0, &self.buckets.up),
                shared(self.limits.tunnel.1, &self.buckets.down),
            ),
        )
    }
}
