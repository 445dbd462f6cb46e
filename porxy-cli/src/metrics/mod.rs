//! Prometheus metrics (`GET /metrics` on the admin endpoint): the text exposition format
//! ([`exposition`]), written at each scrape from a status snapshot of porxy's own sharded
//! counters ([`families`], [`proxy_wide`]) and from `/proc/self` ([`process`]). No registry, no second copy of
//! a counter; a scrape never waits on a reactor or a reload.

pub mod exposition;
pub mod families;
pub mod process;
pub mod proxy_wide;

use std::sync::atomic::Ordering;

use porxy_core::{Status, TunnelStatus};

use crate::reload::ReloadCounts;
use exposition::Kind;

/// The whole scrape for `status`, with how reloads went.
pub fn scrape(
    status: &Status,
    reloads: &ReloadCounts,
    access: &crate::access_log::Counts,
    name_of: &dyn Fn(&TunnelStatus) -> String,
) -> String {
    let mut text = exposition::Exposition::default();
    families::write(&mut text, status, name_of);
    proxy_wide::write(&mut text, status);
    text.family(
        "porxy_reloads_total",
        Kind::Counter,
        "Reloads of the configuration or the routing table, by result.",
    )
    .sample(&[("result", "ok")], reloads.ok.load(Ordering::Relaxed))
    .sample(
        &[("result", "failed")],
        reloads.failed.load(Ordering::Relaxed),
    );
    let last_ok = reloads.last_ok.load(Ordering::Relaxed);
    if last_ok > 0 {
        text.family(
            "porxy_last_reload_success_timestamp_seconds",
            Kind::Gauge,
            "When the last reload that worked was done, in seconds since the epoch.",
        )
        .sample(&[], last_ok);
    }
    text.family(
        "porxy_access_log_records_total",
        Kind::Counter,
        "Access log records by what became of them: written, dropped (the writer could not \
         keep up; the connection was not slowed) or failed (the write returned an error).",
    )
    .sample(
        &[("result", "written")],
        access.written.load(Ordering::Relaxed),
    )
    .sample(
        &[("result", "dropped")],
        access.dropped.load(Ordering::Relaxed),
    )
    .sample(
        &[("result", "failed")],
        access.failed.load(Ordering::Relaxed),
    );
    process::write(&mut text);
    text.finish()
}
