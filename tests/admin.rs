//! The HTTP admin endpoint (`--admin`), driven with curl as users drive it: the routing table
//! read, replaced and read back while connections follow; backends; status; reload and stop;
//! and every refusal with its status and JSON body.

mod errors;
mod redeploy;
mod routes;
mod rpc;
mod state;

use std::time::Duration;

use crate::support::process::Porxy;

const WAIT: Duration = Duration::from_secs(10);

/// porxy with `args` and an admin endpoint on a free loopback port; its admin address.
fn with_admin(args: &[&str]) -> (Porxy, String) {
    let mut all = vec!["--admin", "127.0.0.1:0"];
    all.extend_from_slice(args);
    let porxy = Porxy::start(&all);
    let admin = porxy.admin().expect("admin= in the READY line").to_string();
    (porxy, admin)
}
