//! The in-process proxy fixture: a library [`Proxy`] whose stop on `Drop` is bounded in time,
//! and ways to wait on its counters.

use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::mpsc;
use std::time::Duration;

use porxy_core::{
    Endpoint, Proxy, ProxyBuilder, ProxyHandle, StopMode, StopReport, TunnelSpec, TunnelStatus,
};

use super::wait::wait_for;

/// How long a test waits for counters to catch up with what its sockets already saw.
pub const COUNTERS_SETTLE: Duration = Duration::from_secs(5);

/// A builder with test defaults: two reactors and a connect timeout short enough that no test
/// waits on the 5 s default.
pub fn builder() -> ProxyBuilder {
    super::raise_fd_limit();
    Proxy::builder()
        .reactors(2)
        .connect_timeout(Duration::from_secs(2))
}

/// `127.0.0.1:0=REMOTE`.
pub fn spec_to(remote: SocketAddr) -> TunnelSpec {
    let local: SocketAddr = "127.0.0.1:0".parse().unwrap();
    TunnelSpec::new(local, [Endpoint::Addr(remote)])
}

/// `spec` with its `splice` option set: `splice=on` or `splice=off`.
pub fn with_splice(mut spec: TunnelSpec, on: bool) -> TunnelSpec {
    spec.options.splice = Some(on);
    spec
}

/// How long a proxy may take to stop at once when its test ends.
const DROP_STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// A running proxy. Dereferences to [`Proxy`]. On `Drop` it stops the proxy at once and waits
/// for its threads, but not forever: a proxy that does not stop fails the test instead of
/// hanging the suite.
pub struct TestProxy {
    proxy: Option<Proxy>,
}

/// Starts a proxy from `builder`.
#[track_caller]
pub fn start(builder: ProxyBuilder) -> TestProxy {
    TestProxy {
        proxy: Some(builder.start().expect("start the proxy")),
    }
}

/// A proxy with the test defaults and one tunnel to `remote`; returns it and the tunnel address.
#[track_caller]
pub fn start_to(remote: SocketAddr) -> (TestProxy, SocketAddr) {
    let proxy = start(builder().tunnel(spec_to(remote)));
    let local = proxy.bound()[0];
    (proxy, local)
}

impl TestProxy {
    /// Joins the proxy after a stop, failing the test if that takes longer than `timeout`.
    #[track_caller]
    pub fn join_within(mut self, timeout: Duration) -> StopReport {
        let proxy = self.proxy.take().expect("a proxy not yet joined");
        match join_in_thread(proxy, timeout) {
            Some(report) => report.expect("the proxy's threads ended cleanly"),
            None => panic!("the proxy did not stop within {timeout:?}"),
        }
    }
}

impl Deref for TestProxy {
    type Target = Proxy;

    fn deref(&self) -> &Proxy {
        self.proxy.as_ref().expect("a proxy not yet joined")
    }
}

impl Drop for TestProxy {
    fn drop(&mut self) {
        let Some(proxy) = self.proxy.take() else {
            return;
        };
        proxy.handle().stop(StopMode::Now);
        if join_in_thread(proxy, DROP_STOP_TIMEOUT).is_none() {
            let message = format!("the proxy did not stop within {DROP_STOP_TIMEOUT:?}");
            // A second panic while unwinding would abort the whole test binary.
            if std::thread::panicking() {
                eprintln!("{message}");
            } else {
                panic!("{message}");
            }
        }
    }
}

/// Joins `proxy` on another thread; `None` if that takes longer than `timeout` (the joining
/// thread is then left behind: the proxy is stuck and the test fails anyway).
fn join_in_thread(
    proxy: Proxy,
    timeout: Duration,
) -> Option<Result<StopReport, porxy_core::Error>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(proxy.join());
    });
    rx.recv_timeout(timeout).ok()
}

/// The status of the tunnel on `local`; panics if there is none.
#[track_caller]
pub fn tunnel(handle: &ProxyHandle, local: SocketAddr) -> TunnelStatus {
    handle
        .status()
        .tunnel(local)
        .unwrap_or_else(|| panic!("no tunnel on {local} in the status"))
        .clone()
}

/// Waits until the status of the tunnel on `local` satisfies `done`, and returns it.
#[track_caller]
pub fn wait_tunnel(
    handle: &ProxyHandle,
    local: SocketAddr,
    what: &str,
    done: impl Fn(&TunnelStatus) -> bool,
) -> TunnelStatus {
    wait_for(COUNTERS_SETTLE, what, || tunnel(handle, local), done)
}

/// Waits until `n` connections of the tunnel on `local` have closed, and checks that every one
/// completed (none was reset for any reason); `context` names the case. Returns the status.
#[track_caller]
pub fn assert_all_completed(
    handle: &ProxyHandle,
    local: SocketAddr,
    n: u64,
    context: &str,
) -> TunnelStatus {
    let status = wait_tunnel(handle, local, "every close counted", |t| {
        t.closes.total() == n
    });
    assert_eq!(
        status.closes.get(porxy_core::CloseReason::Completed),
        n,
        "{context}: every connection completed: {:?}",
        status.closes
    );
    status
}

/// Waits until no connection is open on any reactor.
#[track_caller]
pub fn wait_all_closed(handle: &ProxyHandle) {
    wait_for(
        COUNTERS_SETTLE,
        "every reactor to have no open connection",
        || handle.status().reactors,
        |reactors| reactors.iter().all(|r| r.open == 0),
    );
}
