//! The tunnel grammar: `LOCAL=REMOTE[,REMOTE...][key=value,...]`, its addresses, options and
//! the names they take.
//!
//! The same text is accepted on the command line (`porxy --tunnel`), by the control socket
//! (`OPEN`) and in the docs, so it is parsed here, once. Parsing is pure (no name resolution) and
//! every rejection names the column and what was expected there.
//!
//! This module is a leaf: it uses nothing of the running proxy (no `Error`, config, tunnel or
//! balancing state), so the runtime may use it everywhere without a cycle. Name resolution
//! ([`Endpoint::resolve`]) and turning options into the settings a tunnel runs with live with
//! the runtime, in `tunnel`.

mod endpoint;
mod error;
mod mode;
mod networks;
mod options;
mod parser;
mod proxy_header;
mod remote_tls;
mod sni_routes;
mod strategy;
mod tls;

use std::fmt;
use std::str::FromStr;

pub use endpoint::{Endpoint, RemoteFault};
pub use error::{
    OptionError, OptionErrorKind, OptionsConflict, SpecError, SpecErrorKind, UnknownName,
    UnknownOption,
};
pub use mode::{Reply, TunnelMode};
pub use networks::{NetworkError, Networks};
pub(crate) use options::MAX_ATTEMPTS;
pub use options::{OptionKey, TunnelOptions, MAX_FANOUT, MAX_MAX_LAG, MIN_MAX_LAG, OPTION_KEYS};
pub use proxy_header::{AcceptProxy, SendProxy};
pub use remote_tls::RemoteTls;
pub use sni_routes::{SniRoute, SniRouteError, SniRoutes};
pub use strategy::Strategy;
pub use tls::{ClientAuth, TlsVersion};

use parser::Parser;

/// What a user asks for: where to listen, where to forward, and per-tunnel options.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct TunnelSpec {
    /// The address to listen on.
    pub local: Endpoint,
    /// The upstreams; with several, the tunnel's strategy spreads connections over them.
    pub remotes: Vec<Remote>,
    /// Per-tunnel overrides of the proxy-wide settings.
    pub options: TunnelOptions,
}

/// One upstream of a tunnel: where it is, and its share of the load.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Remote {
    /// The address.
    pub endpoint: Endpoint,
    /// Its weight for the balancing strategy (1 to 1000; default 1). In a SPEC: `REMOTE*WEIGHT`.
    pub weight: u32,
    /// Most connections it takes at once; `None` means the tunnel's `max_conns`, if any.
    pub max_conns: Option<u32>,
    /// The PROXY header it gets ahead of each client's stream; `None` means the tunnel's
    /// `send_proxy`, if any. (The config file's `[backends.NAME] send_proxy`; a SPEC has no
    /// syntax for it.)
    pub send_proxy: Option<SendProxy>,
    /// Its own TLS settings, each over the tunnel's (the config file's `[backends.NAME]` TLS
    /// keys; a SPEC has no syntax for them).
    pub tls: RemoteTls,
}

impl TunnelSpec {
    /// Whether porxy speaks TLS to `remote` (one of its remotes): the remote's own say, else
    /// the tunnel's `backend_tls`.
    pub fn tls_to(&self, remote: &Remote) -> bool {
        remote
            .tls
            .enabled
            .unwrap_or(self.options.backend_tls == Some(true))
    }
}

/// Largest weight a remote may have.
pub const MAX_WEIGHT: u32 = 1000;

impl From<Endpoint> for Remote {
    fn from(endpoint: Endpoint) -> Self {
        Remote {
            endpoint,
            weight: 1,
            max_conns: None,
            send_proxy: None,
            tls: RemoteTls::default(),
        }
    }
}

impl fmt::Display for Remote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.endpoint)?;
        if self.weight != 1 {
            write!(f, "*{}", self.weight)?;
        }
        Ok(())
    }
}

impl FromStr for Remote {
    type Err = SpecError;

    /// `ADDRESS` or `ADDRESS*WEIGHT`, as a remote is written in a SPEC.
    fn from_str(input: &str) -> Result<Self, Self::Err> {
        Parser::new(input).remote_alone()
    }
}

impl TunnelSpec {
    /// A tunnel from `local` to `remotes` with default options.
    pub fn new<R: Into<Remote>>(
        local: impl Into<Endpoint>,
        remotes: impl IntoIterator<Item = R>,
    ) -> Self {
        TunnelSpec {
            local: local.into(),
            remotes: remotes.into_iter().map(Into::into).collect(),
            options: TunnelOptions::default(),
        }
    }

    /// Replaces the options.
    pub fn with_options(mut self, options: TunnelOptions) -> Self {
        self.options = options;
        self
    }
}

impl FromStr for TunnelSpec {
    type Err = SpecError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        Parser::new(input).spec()
    }
}

impl fmt::Display for TunnelSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}=", self.local)?;
        for (i, remote) in self.remotes.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{remote}")?;
        }
        let pairs = self.options.pairs();
        if !pairs.is_empty() {
            f.write_str("[")?;
            for (i, (key, value)) in pairs.iter().enumerate() {
                if i > 0 {
                    f.write_str(",")?;
                }
                write!(f, "{key}={value}")?;
            }
            f.write_str("]")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
