//! The error codes of porxy's own, one per kind of refusal the library and the front end
//! give, for JSON-RPC (outside -32768..-32000, which the spec keeps) and beside the HTTP status
//! in the admin API's error bodies. The README's table lists them.

use porxy_core::Error;

use crate::control::outcome::{sort, AdminError, Sort};
use crate::reload::ReloadError;

/// No tunnel listens there, or no route has that name.
pub const NO_SUCH_TUNNEL: i64 = 1001;
/// A tunnel listens on that address already.
pub const TUNNEL_EXISTS: i64 = 1002;
/// The address cannot be bound (in use, not allowed).
pub const PORT_IN_USE: i64 = 1003;
/// The tunnel has no such backend.
pub const NO_SUCH_BACKEND: i64 = 1004;
/// The tunnel has that backend already.
pub const BACKEND_EXISTS: i64 = 1005;
/// The backend is still being removed.
pub const BACKEND_LEAVING: i64 = 1006;
/// A tunnel cannot lose its last backend.
pub const LAST_BACKEND: i64 = 1007;
/// The remote is porxy's own listener.
pub const SELF_LOOP: i64 = 1008;
/// A value cannot be used: an address that does not resolve, options that do not fit.
pub const INVALID_VALUE: i64 = 1009;
/// A certificate or key file cannot be used.
pub const TLS_FILE: i64 = 1010;
/// The proxy is stopping.
pub const STOPPING: i64 = 1011;
/// A reload was refused: no file, a broken file, a file without listeners.
pub const RELOAD_REFUSED: i64 = 1012;
/// Anything else (a bug, a resource of the OS).
pub const INTERNAL: i64 = 1013;

/// Every code, with its name, for the docs and the tests.
#[cfg_attr(not(test), allow(dead_code))]
pub const ALL: [(i64, &str); 13] = [
    (NO_SUCH_TUNNEL, "no such tunnel"),
    (TUNNEL_EXISTS, "tunnel exists"),
    (PORT_IN_USE, "port in use"),
    (NO_SUCH_BACKEND, "no such backend"),
    (BACKEND_EXISTS, "backend exists"),
    (BACKEND_LEAVING, "backend leaving"),
    (LAST_BACKEND, "last backend"),
    (SELF_LOOP, "self loop"),
    (INVALID_VALUE, "invalid value"),
    (TLS_FILE, "TLS file"),
    (STOPPING, "stopping"),
    (RELOAD_REFUSED, "reload refused"),
    (INTERNAL, "internal"),
];

/// The code of an admin command's refusal.
pub fn of_admin(error: &AdminError) -> i64 {
    match error {
        AdminError::BadRequest(_) => INVALID_VALUE,
        AdminError::Invalid(e)
        | AdminError::NotFound(e)
        | AdminError::Conflict(e)
        | AdminError::Stopping(e)
        | AdminError::Internal(e) => of_core(e),
        AdminError::ReloadRefused(ReloadError::Core(e)) => of_core(e),
        AdminError::ReloadRefused(_) => RELOAD_REFUSED,
        AdminError::ReopenFailed(_) => INTERNAL,
    }
}

/// The code of a core error.
pub fn of_core(error: &Error) -> i64 {
    match error {
        Error::Tunnel { source, .. } => of_core(source),
        Error::NoSuchTunnel(_) => NO_SUCH_TUNNEL,
        Error::AlreadyListening(_) => TUNNEL_EXISTS,
        Error::Bind { .. } => PORT_IN_USE,
        Error::NoSuchBackend { .. } => NO_SUCH_BACKEND,
        Error::BackendExists { .. } => BACKEND_EXISTS,
        Error::BackendLeaving { .. } => BACKEND_LEAVING,
        Error::LastBackend { .. } => LAST_BACKEND,
        Error::SelfLoop { .. } => SELF_LOOP,
        Error::Tls { .. } => TLS_FILE,
        Error::Stopped => STOPPING,
        // The rest by the control socket's sorting: values that cannot be used, or not ours.
        other => match sort(other) {
            Sort::Invalid => INVALID_VALUE,
            _ => INTERNAL,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The README's table lists every code with its kind, and no other.
    #[test]
    fn the_readme_table_is_this_one() {
        let readme = include_str!("../../../../README.md");
        let table: Vec<&str> = readme
            .lines()
            .skip_while(|line| *line != "| code | kind |")
            .skip(2)
            .take_while(|line| line.starts_with('|'))
            .collect();
        let want: Vec<String> = ALL
            .iter()
            .map(|(code, kind)| format!("| {code} | {kind} |"))
            .collect();
        assert_eq!(table, want);
    }

    #[test]
    fn codes_are_ours_and_distinct() {
        for (i, (code, _)) in ALL.iter().enumerate() {
            assert!(!(-32768..=-32000).contains(code), "{code} is the spec's");
            assert!(ALL[i + 1..].iter().all(|(other, _)| other != code));
        }
    }
}
