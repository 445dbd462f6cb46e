//! End-to-end tests of porxy over real loopback sockets.
//!
//! One test binary (`cargo test -p porxy-cli --test e2e`), so the fixtures in `support` are
//! compiled once. The library is tested in-process through `porxy_core::Proxy`; the `cli`
//! module runs the `porxy` binary.

mod support;

mod accept;
mod access_log;
mod access_records;
mod access_rules;
mod admin;
mod balance;
mod bandwidth;
mod busy_poll;
mod cli;
mod close_record;
mod control;
mod fanout;
mod faults;
mod half_close;
mod idle;
mod lifecycle;
mod loops;
mod metrics;
mod proxy_protocol;
mod relay;
mod runtime;
mod scale;
mod sessions;
mod sni_routing;
mod stop;
mod systemd;
mod tls;
mod tls_backends;
mod tls_health;
mod top;
