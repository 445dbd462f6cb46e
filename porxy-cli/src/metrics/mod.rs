//! Prometheus metrics (`GET /metrics` on the admin endpoint): the text exposition format
//! ([`exposition`]), written at each scrape from a status snapshot of porxy's own sharded
//! counters ([`families`]) and from `/proc/self` ([`process`]). No registry, no second copy of
//! a counter; a scrape never waits on a reactor or a reload.

pub mod exposition;
pub mod families;
pub mod process;

use porxy_core::{Status, TunnelStatus};

/// The whole scrape for `status`.
pub fn scrape(status: &Status, name_of: &dyn Fn(&TunnelStatus) -> String) -> String {
    let mut text = exposition::Exposition::default();
    families::write(&mut text, status, name_of);
    process::write(&mut text);
    text.finish()
}
