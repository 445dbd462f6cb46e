//! A tunnel as the binary knows it: its spec, the name it goes by (a listener's, `cli-N` for a
//! `--tunnel`, a route's), and where it was written, for messages.

use porxy_core::TunnelSpec;

/// A tunnel with the name it is known by and where it was written down, for messages.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct NamedTunnel {
    /// `demo` for `[listeners.demo]`, `cli-1` for the first `--tunnel`.
    pub(crate) name: String,
    /// What to open.
    pub(crate) spec: TunnelSpec,
    /// Where the listen address was written: `porxy.toml:8:10: listeners.demo.listen`.
    pub(crate) local_origin: String,
    /// Where each remote address was written, in the order of `spec.remotes`.
    pub(crate) remote_origins: Vec<String>,
}
