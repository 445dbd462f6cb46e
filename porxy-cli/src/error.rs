//! The binary's errors, and printing one: once, on stderr, as `porxy: error: ...` with its
//! causes, and for a bad tunnel SPEC the caret line under the fault.
//!
//! Every variant that is about something the user wrote carries where it was written (a
//! `file:line:col: key.path` prefix or the `--tunnel` argument), so the message is actionable
//! without the logs.

use std::io::{self, Write};
use std::net::SocketAddr;

use porxy_core::SpecError;

use crate::config_file::ConfigError;

/// Why the binary could not check or run the proxy (exit status 1).
#[derive(Debug, thiserror::Error)]
pub(crate) enum CliError {
    /// A `--tunnel` SPEC did not parse.
    #[error(transparent)]
    Spec(SpecError),
    /// The configuration file is unreadable or wrong.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Neither a file nor a tunnel was given.
    #[error("nothing to proxy: give --config FILE, --tunnel SPEC or --control ADDR")]
    NothingToProxy,
    /// A command-line setting is out of range.
    #[error("{origin}")]
    Setting {
        /// The flag.
        origin: String,
        /// The core's complaint.
        #[source]
        source: porxy_core::Error,
    },
    /// A host name did not resolve.
    #[error("{origin}")]
    Resolve {
        /// Where the address was written.
        origin: String,
        /// The core's complaint.
        #[source]
        source: porxy_core::Error,
    },
    /// A tunnel lists one remote address twice (porxy-core refuses to open it).
    #[error("{}", same_remote(addr, tunnel, first, second))]
    SameRemote {
        /// The address both resolve to.
        addr: SocketAddr,
        /// The tunnel's name.
        tunnel: String,
        /// Where the first was written.
        first: String,
        /// Where the second was written.
        second: String,
    },
    /// A remote resolves to an address no server can have.
    #[error("{origin}: {addr} cannot be connected to: {fault}")]
    UnusableRemote {
        /// The address it resolves to.
        addr: SocketAddr,
        /// What is wrong with it.
        fault: porxy_core::RemoteFault,
        /// Where it was written.
        origin: String,
    },
    /// A remote reaches one of the configuration's own listen addresses: porxy would forward
    /// to itself.
    #[error(
        "{origin}: {remote} reaches porxy's own listener on {listen} ({listener}), so porxy \
         would forward to itself; a remote must be a server elsewhere"
    )]
    SelfLoop {
        /// The remote, resolved.
        remote: SocketAddr,
        /// Where it was written.
        origin: String,
        /// The listen address it reaches.
        listen: SocketAddr,
        /// Where that was written.
        listener: String,
    },
    /// The control address cannot be bound, whatever the host's state.
    #[error("{origin}")]
    ControlAddr {
        /// Where it was written.
        origin: String,
        /// Why not (boxed: it may hold a core error, and this is rare).
        #[source]
        source: Box<crate::clients::ListenError>,
    },
    /// Two tunnels ask for one listen address; the second would silently replace the first.
    #[error("{second}: listens on {addr}, like {first}; give each tunnel its own address")]
    SameListen {
        /// The address both resolve to.
        addr: SocketAddr,
        /// Where the first was written.
        first: String,
        /// Where the second was written.
        second: String,
    },
    /// A file listener has the name a `--tunnel` gets, so the READY line would be ambiguous.
    #[error("--tunnel {name}: the name is taken by {origin}; rename that listener")]
    NameClash {
        /// The shared name.
        name: String,
        /// The file listener.
        origin: String,
    },
    /// The log filter was refused by the subscriber.
    #[error("cannot set up logging: {0}")]
    Logging(String),
    /// SIGINT/SIGTERM handling could not be set up.
    #[error("cannot set up signal handling")]
    Signals(#[source] io::Error),
    /// The proxy did not start (a port in use, no permission, ...).
    #[error("cannot start the proxy")]
    Start(#[source] porxy_core::Error),
    /// The proxy failed while stopping.
    #[error("the proxy did not stop cleanly")]
    Join(#[source] porxy_core::Error),
    /// stdout is gone.
    #[error("cannot write to stdout")]
    Stdout(#[source] io::Error),
    /// `porxy top` failed (its terminal, or its token file).
    #[error("porxy top")]
    Top(#[source] io::Error),
    /// An access log file cannot be opened for writing.
    #[error(transparent)]
    AccessLog(crate::access_log::OpenError),
    /// A takeover or the upgrade socket failed.
    #[error(transparent)]
    Upgrade(crate::upgrade::UpgradeError),
    /// The admin token file cannot be used.
    #[error("admin token file {}: {why}", path.display())]
    AdminToken {
        path: std::path::PathBuf,
        why: String,
    },
    /// The admin endpoint would listen beyond loopback with no token.
    #[error(
        "{origin}: the admin endpoint {addr} is reachable beyond this host and has no token; \
         give one (--admin-token-file, [admin] token_file, or $PORXY_ADMIN_TOKEN), listen on \
         loopback, or pass --admin-insecure"
    )]
    AdminExposed { origin: String, addr: String },
    /// The JSON-RPC socket would listen beyond loopback (it has no token).
    #[error(
        "{origin}: the JSON-RPC socket {addr} is reachable beyond this host and has no token; \
         listen on loopback or a Unix socket, or pass --admin-insecure"
    )]
    RpcExposed { origin: String, addr: String },
    /// The state file cannot be used.
    #[error(transparent)]
    State(#[from] crate::state_file::StateError),
    /// An admin front end's socket (control, HTTP admin) could not be set up (boxed: rare,
    /// and large).
    #[error(transparent)]
    Listen(Box<crate::clients::ListenError>),
}

/// The message of [`CliError::SameRemote`]: one `--tunnel` that lists an address twice, or two
/// backends of a file listener at one address.
fn same_remote(addr: &SocketAddr, tunnel: &str, first: &str, second: &str) -> String {
    if first == second {
        format!("{second}: lists {addr} twice; list it once, with a weight (`*N`) to send it more")
    } else {
        format!(
            "{second}: {addr} is also the address of {first}, and listener `{tunnel}` uses both; \
             list one backend once, with a weight to send it more"
        )
    }
}

/// Prints `err` on stderr: `porxy: error: <message>: <cause>: ...`, and for a bad SPEC the two
/// caret lines.
pub(crate) fn report(err: &CliError) {
    let mut text = format!("porxy: error: {}", chain(err));
    if let CliError::Spec(spec) = err {
        text.push('\n');
        text.push_str(&spec.caret());
    }
    text.push('\n');
    // Nowhere left to report a failure to write to stderr.
    let _ = io::stderr().lock().write_all(text.as_bytes());
}

/// The message and its causes joined by `: `, skipping a cause whose text the message already
/// holds (the core's errors include their source in their own message).
pub(crate) fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut cause = err.source();
    while let Some(next) = cause {
        let line = next.to_string();
        if !text.contains(&line) {
            text.push_str(": ");
            text.push_str(&line);
        }
        cause = next.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causes_are_chained_once() {
        let err = CliError::Start(porxy_core::Error::Bind {
            addr: "127.0.0.1:80".parse().unwrap(),
            source: io::Error::from(io::ErrorKind::PermissionDenied),
        });
        assert_eq!(
            chain(&err),
            "cannot start the proxy: cannot listen on 127.0.0.1:80: permission denied"
        );
        let err = CliError::Resolve {
            origin: "--tunnel cli-1 `0=nowhere.invalid:80`".into(),
            source: porxy_core::Error::NoAddress {
                endpoint: "nowhere.invalid:80".into(),
            },
        };
        assert_eq!(
            chain(&err),
            "--tunnel cli-1 `0=nowhere.invalid:80`: `nowhere.invalid:80` resolved to no address"
        );
    }
}
