//! Fixtures shared by the end-to-end tests.
//!
//! Everything binds `127.0.0.1:0` and talks over loopback only. Every blocking socket call has a
//! timeout, every wait for a condition is a bounded poll ([`wait::wait_until`]), and every fixture
//! stops itself on `Drop` (threads joined, sockets closed, processes killed and reaped).

pub mod backend;
pub mod client;
pub mod control;
pub mod curl;
pub mod fanout;
pub mod haproxy;
pub mod load;
pub mod payload;
pub mod process;
pub mod proxy;
pub mod tls;
pub mod wait;

pub use backend::Backend;
pub use wait::{wait_for, wait_until};

use std::sync::Once;

/// Raises this process's soft descriptor limit to its hard limit, once.
///
/// The tests run in parallel threads of one process and share its descriptors; the scale test
/// alone holds about 5,000.
pub fn raise_fd_limit() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit/setrlimit only read and write the struct passed to them.
        unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0
                && limit.rlim_cur < limit.rlim_max
            {
                limit.rlim_cur = limit.rlim_max;
                libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
            }
        }
    });
}

/// The current soft descriptor limit of this process.
pub fn fd_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct passed to it.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    limit.rlim_cur
}
