//! The few Linux facilities the harness needs: CPU sets (for `taskset` and for pinning our own
//! load threads), RLIMIT_NOFILE, and a process tree's CPU time and resident memory from /proc.
//!
//! CPU time is `utime + stime` of `/proc/PID/stat` (clock ticks, `sysconf(_SC_CLK_TCK)`),
//! summed over the process and its descendants, so that nginx's workers count for nginx;
//! resident memory is `VmRSS` of `/proc/PID/status`, summed the same way.

use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::io;

/// A set of CPUs, written as `taskset -c` wants it: `0`, `1`, `0,1`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cpus(Vec<usize>);

impl Cpus {
    /// Just this CPU.
    pub fn one(cpu: usize) -> Self {
        Cpus(vec![cpu])
    }

    /// Every CPU of the machine: how "unpinned" is spelled, since a child would otherwise
    /// inherit whatever affinity its parent happens to have.
    pub fn all() -> Self {
        let n = std::thread::available_parallelism().map_or(1, |n| n.get());
        Cpus((0..n).collect())
    }

    /// Restricts the calling thread to these CPUs (Linux applies `sched_setaffinity(0)` to the
    /// calling thread only).
    pub fn pin_current_thread(&self) -> io::Result<()> {
        // SAFETY: cpu_set_t is a plain bit array for which all-zero is the empty set; CPU_SET
        // is only called with indexes below CPU_SETSIZE; the pointer and size passed to
        // sched_setaffinity describe that local set.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            for &cpu in &self.0 {
                if cpu < libc::CPU_SETSIZE as usize {
                    libc::CPU_SET(cpu, &mut set);
                }
            }
            if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    }
}

impl fmt::Display for Cpus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list: Vec<String> = self.0.iter().map(|c| c.to_string()).collect();
        f.write_str(&list.join(","))
    }
}

/// Clock ticks per second, the unit of `utime` and `stime` in /proc.
pub fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf only reads a configuration value.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(ticks).ok().filter(|&t| t > 0).unwrap_or(100)
}

/// The descriptor limit this process (and so every child) runs with, after trying to raise it.
#[derive(Debug, Clone)]
pub struct Nofile {
    /// The soft limit now in force.
    pub soft: u64,
    /// The hard limit now in force.
    pub hard: u64,
    /// Why the limit is below what was wanted, if it is.
    pub shortfall: Option<String>,
}

/// Raises RLIMIT_NOFILE to `want` for soft and hard; when the hard limit cannot be raised
/// (no CAP_SYS_RESOURCE), raises the soft limit to the hard one and says so.
pub fn raise_nofile(want: u64) -> Nofile {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the rlimit we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Nofile {
            soft: 1024,
            hard: 1024,
            shortfall: Some(format!("getrlimit: {}", io::Error::last_os_error())),
        };
    }
    let mut shortfall = None;
    if limit.rlim_max < want {
        let raised = libc::rlimit {
            rlim_cur: want,
            rlim_max: want,
        };
        // SAFETY: setrlimit reads the rlimit we own.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit = raised;
        } else {
            shortfall = Some(format!(
                "RLIMIT_NOFILE hard limit {} could not be raised to {want}: {}",
                limit.rlim_max,
                io::Error::last_os_error()
            ));
        }
    }
    if limit.rlim_cur < limit.rlim_max.min(want) {
        let soft = libc::rlimit {
            rlim_cur: limit.rlim_max.min(want),
            rlim_max: limit.rlim_max,
        };
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &soft) } == 0 {
            limit = soft;
        }
    }
    Nofile {
        soft: limit.rlim_cur,
        hard: limit.rlim_max,
        shortfall,
    }
}

/// Machine-wide CPU counters, to tell afterwards whether anything else ran during a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MachineCpu {
    /// Ticks spent running anything (user, nice, system, irq, softirq), all CPUs.
    pub busy: u64,
    /// Ticks the hypervisor gave to someone else (a virtual machine's noisy neighbours).
    pub steal: u64,
    /// All ticks, all CPUs.
    pub total: u64,
    /// Ticks of this process and of its children that were waited for (so every proxy and
    /// backend, once stopped), plus the kernel's softirq threads, which work for the load.
    pub ours: u64,
}

/// Reads /proc/stat, /proc/self/stat and the softirq threads' stat.
pub fn machine_cpu() -> io::Result<MachineCpu> {
    let stat = fs::read_to_string("/proc/stat")?;
    let line = stat
        .lines()
        .find(|l| l.starts_with("cpu "))
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no cpu line in /proc/stat"))?;
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    let field = |i: usize| f.get(i).copied().unwrap_or(0);
    // user nice system idle iowait irq softirq steal (guest time is inside user already).
    let busy = field(0) + field(1) + field(2) + field(5) + field(6);
    let total = (0..8).map(field).sum();
    let own = fs::read_to_string("/proc/self/stat")?;
    let own = parse_own_times(&own).unwrap_or(0);
    let mut softirq_threads = 0;
    for pid in pids() {
        let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if comm.starts_with("ksoftirqd/") {
            softirq_threads += Stat::read(pid).map_or(0, |s| s.cpu_ticks);
        }
    }
    Ok(MachineCpu {
        busy,
        steal: field(7),
        total,
        ours: own + softirq_threads,
    })
}

/// `utime + stime + cutime + cstime` of a /proc/PID/stat line.
fn parse_own_times(text: &str) -> Option<u64> {
    let after_comm = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    (14..=17)
        .map(|n| fields.get(n - 3)?.parse::<u64>().ok())
        .sum()
}

/// CPU time and resident memory of a process and its descendants at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// `utime + stime`, in clock ticks.
    pub cpu_ticks: u64,
    /// `VmRSS`, in KiB.
    pub rss_kib: u64,
}

/// The identity of a process that survives PID reuse: its PID and its start time in ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessId {
    /// The PID.
    pub pid: u32,
    /// Field 22 of /proc/PID/stat.
    pub start_ticks: u64,
}

/// Reads the usage of `root` and every descendant. Fails only when `root` itself cannot be
/// read (a descendant may exit between the scan and the read).
pub fn tree_usage(root: u32) -> io::Result<Usage> {
    let mut total = Usage {
        cpu_ticks: 0,
        rss_kib: 0,
    };
    let root_stat = Stat::read(root)?;
    total.cpu_ticks += root_stat.cpu_ticks;
    total.rss_kib += rss_kib(root)?;
    for child in descendants(root) {
        if let (Ok(stat), Ok(rss)) = (Stat::read(child.pid), rss_kib(child.pid)) {
            total.cpu_ticks += stat.cpu_ticks;
            total.rss_kib += rss;
        }
    }
    Ok(total)
}

/// Every live descendant of `root`, found by scanning /proc for parent links.
pub fn descendants(root: u32) -> Vec<ProcessId> {
    let mut children: HashMap<u32, Vec<ProcessId>> = HashMap::new();
    for pid in pids() {
        if let Ok(stat) = Stat::read(pid) {
            children.entry(stat.ppid).or_default().push(ProcessId {
                pid,
                start_ticks: stat.start_ticks,
            });
        }
    }
    let mut found = Vec::new();
    let mut frontier = vec![root];
    while let Some(parent) = frontier.pop() {
        for child in children.remove(&parent).unwrap_or_default() {
            frontier.push(child.pid);
            found.push(child);
        }
    }
    found
}

/// Whether `id` still names the same live process (same PID, same start time).
pub fn is_same_process(id: ProcessId) -> bool {
    Stat::read(id.pid).is_ok_and(|stat| stat.start_ticks == id.start_ticks)
}

/// The fields of /proc/PID/stat the harness uses.
struct Stat {
    ppid: u32,
    cpu_ticks: u64,
    start_ticks: u64,
}

impl Stat {
    fn read(pid: u32) -> io::Result<Stat> {
        let text = fs::read_to_string(format!("/proc/{pid}/stat"))?;
        parse_stat(&text).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("unexpected /proc/{pid}/stat"),
            )
        })
    }
}

/// Parses the fields after the command name, which is in parentheses and may hold anything.
fn parse_stat(text: &str) -> Option<Stat> {
    let after_comm = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    // fields[0] is field 3 (state) of proc(5); field N is fields[N - 3].
    let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    Some(Stat {
        ppid: u32::try_from(field(4)?).ok()?,
        cpu_ticks: field(14)? + field(15)?,
        start_ticks: field(22)?,
    })
}

/// VmRSS of one process in KiB (0 for a zombie, which has no VmRSS line).
fn rss_kib(pid: u32) -> io::Result<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/status"))?;
    Ok(text
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .unwrap_or(0))
}

/// The process ids in /proc now.
fn pids() -> impl Iterator<Item = u32> {
    fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str().and_then(|s| s.parse().ok()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_read_after_the_command_name() {
        let line = "4242 (a) b (c)) S 17 4242 4242 0 -1 4194560 100 0 0 0 \
                    250 37 0 0 20 0 3 0 123456 1000000 300 18446744073709551615";
        let stat = parse_stat(line).expect("parses");
        assert_eq!(stat.ppid, 17);
        assert_eq!(stat.cpu_ticks, 287);
        assert_eq!(stat.start_ticks, 123456);
    }

    #[test]
    fn own_times_add_children_that_were_waited_for() {
        let line = "7 (x) S 1 7 7 0 -1 0 0 0 0 0 10 20 30 40 20 0 1 0 5 0 0";
        assert_eq!(parse_own_times(line), Some(100));
        assert!(machine_cpu().expect("/proc/stat").total > 0);
    }

    #[test]
    fn own_usage_is_readable() {
        let usage = tree_usage(std::process::id()).expect("own /proc entry");
        assert!(usage.rss_kib > 0);
    }

    #[test]
    fn cpus_print_as_taskset_lists() {
        assert_eq!(Cpus::one(1).to_string(), "1");
        assert!(!Cpus::all().to_string().is_empty());
    }
}
