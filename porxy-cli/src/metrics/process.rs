//! The standard process metrics (`process_start_time_seconds`, `process_cpu_seconds_total`,
//! `process_resident_memory_bytes`, `process_open_fds`, `process_max_fds`), read from
//! `/proc/self` at each scrape. A figure that cannot be read is left out, not made up.

use super::exposition::{Exposition, Kind};

/// The kernel's clock ticks per second for `/proc` times (USER_HZ, 100 on Linux).
const TICKS_PER_SECOND: f64 = 100.0;

/// Writes the process families.
pub fn write(text: &mut Exposition) {
    let stat = std::fs::read_to_string("/proc/self/stat").ok();
    // Fields after the command name, which is in parentheses and may hold spaces; `after`
    // starts at field 3 of proc(5).
    let fields: Vec<&str> = stat
        .as_deref()
        .and_then(|s| s.rfind(')').map(|at| &s[at + 2..]))
        .map(|after| after.split_whitespace().collect())
        .unwrap_or_default();
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
    if let (Some(utime), Some(stime)) = (field(14), field(15)) {
        let seconds = (utime + stime) as f64 / TICKS_PER_SECOND;
        text.family(
            "process_cpu_seconds_total",
            Kind::Counter,
            "Total user and system CPU time spent in seconds.",
        )
        .sample(&[], seconds);
    }
    let boot = std::fs::read_to_string("/proc/stat").ok().and_then(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("btime "))
            .and_then(|v| v.trim().parse::<u64>().ok())
    });
    if let (Some(boot), Some(start)) = (boot, field(22)) {
        let seconds = boot as f64 + start as f64 / TICKS_PER_SECOND;
        text.family(
            "process_start_time_seconds",
            Kind::Gauge,
            "Start time of the process since unix epoch in seconds.",
        )
        .sample(&[], seconds);
    }
    let rss = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        });
    if let Some(kib) = rss {
        text.family(
            "process_resident_memory_bytes",
            Kind::Gauge,
            "Resident memory size in bytes.",
        )
        .sample(&[], kib * 1024);
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        text.family(
            "process_open_fds",
            Kind::Gauge,
            "Number of open file descriptors.",
        )
        // The directory's own descriptor, open while it is read, is not the process's.
        .sample(&[], fds.count().saturating_sub(1));
    }
    let max = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3))
                .and_then(|v| v.parse::<u64>().ok())
        });
    if let Some(max) = max {
        text.family(
            "process_max_fds",
            Kind::Gauge,
            "Maximum number of open file descriptors.",
        )
        .sample(&[], max);
    }
}
