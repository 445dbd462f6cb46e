//! What can be wrong with what a user wrote, one type per layer of the grammar:
//!
//! - [`UnknownName`]: a word that names no strategy, mode or reply;
//! - [`UnknownOption`]: a key that names no option; [`OptionError`]: a bad value for one option;
//! - [`OptionsConflict`]: options that are each fine but do not fit together;
//! - [`SpecError`]: a malformed SPEC or address, with the column of the fault and, in
//!   [`SpecError::kind`], which of the above it was.
//!
//! Each is an enum or carries one, so that a front end (the control socket, a JSON-RPC
//! server) can map them to codes; their `Display` is the text porxy has always printed.

use std::fmt;

use super::endpoint::RemoteFault;
use super::mode::{Reply, TunnelMode};
use super::networks::NetworkError;
use super::options::{OptionKey, MAX_FANOUT, OPTION_KEYS};
use super::sni_routes::SniRouteError;
use super::Strategy;
use crate::units::UnitError;

/// A malformed tunnel expression or address, with the column of the fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError {
    input: String,
    /// Byte offset into `input` where the fault is.
    offset: usize,
    message: String,
    /// Boxed: most errors are syntax errors, and every `Result` carrying one stays small.
    kind: Box<SpecErrorKind>,
}

/// Which part of a SPEC was wrong ([`SpecError::kind`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SpecErrorKind {
    /// The text does not follow the grammar: a missing `=`, a malformed address or weight, ...
    Syntax,
    /// A remote no TCP connect reaches as one server.
    Remote(RemoteFault),
    /// A key in brackets that names no option.
    UnknownOption(UnknownOption),
    /// A bad value for a known option.
    Option(OptionError),
    /// An option given a second time.
    Repeated {
        /// The option.
        key: OptionKey,
        /// The 1-based column of its first occurrence.
        first_column: usize,
    },
    /// Options that do not fit together, or with the remotes.
    Conflict(OptionsConflict),
}

impl SpecError {
    /// A syntax error: `message` says what was expected at `offset` of `input`.
    pub(crate) fn new(input: &str, offset: usize, message: impl Into<String>) -> Self {
        SpecError::with(input, offset, SpecErrorKind::Syntax, message.into())
    }

    /// An error of one of the typed kinds, which say what is wrong themselves (a syntax error
    /// comes through [`SpecError::new`], with what was expected).
    pub(crate) fn of(input: &str, offset: usize, kind: SpecErrorKind) -> Self {
        let message = match &kind {
            SpecErrorKind::Syntax => "malformed tunnel".to_string(),
            SpecErrorKind::Remote(fault) => fault.to_string(),
            SpecErrorKind::UnknownOption(unknown) => unknown.to_string(),
            SpecErrorKind::Option(error) => error.to_string(),
            SpecErrorKind::Repeated { key, first_column } => format!(
                "option `{key}` is given twice (first at column {first_column}); give each \
                 option once"
            ),
            SpecErrorKind::Conflict(conflict) => conflict.to_string(),
        };
        SpecError::with(input, offset, kind, message)
    }

    fn with(input: &str, offset: usize, kind: SpecErrorKind, message: String) -> Self {
        SpecError {
            input: input.to_string(),
            offset: offset.min(input.len()),
            message,
            kind: Box::new(kind),
        }
    }

    /// The 1-based column (in characters) of the fault.
    pub fn column(&self) -> usize {
        column_at(&self.input, self.offset)
    }

    /// What was wrong, without the position.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Which part of the SPEC was wrong, typed.
    pub fn kind(&self) -> &SpecErrorKind {
        &self.kind
    }

    /// Two lines for a terminal: the input, and a caret under the fault.
    pub fn caret(&self) -> String {
        format!("  {}\n  {}^", self.input, " ".repeat(self.column() - 1))
    }
}

/// The 1-based column (in characters) of byte `offset` of `input`.
pub(super) fn column_at(input: &str, offset: usize) -> usize {
    input[..offset.min(input.len())].chars().count() + 1
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "bad tunnel `{}` at column {}: {}",
            self.input,
            self.column(),
            self.message
        )
    }
}

impl std::error::Error for SpecError {}

/// A word that names no strategy, mode or reply: the error of their `FromStr`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownName {
    of: Named,
    /// The word, as written.
    text: String,
}

/// The values that are names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Named {
    Strategy,
    Mode,
    Reply,
    AcceptProxy,
    SendProxy,
    TlsVersion,
    ClientAuth,
}

impl UnknownName {
    pub(super) fn new(of: Named, text: &str) -> Self {
        UnknownName {
            of,
            text: text.to_string(),
        }
    }

    /// The option whose value it was meant to be: `strategy`, `mode`, `reply` or
    /// `accept_proxy`.
    pub fn option(&self) -> OptionKey {
        match self.of {
            Named::Strategy => OptionKey::Strategy,
            Named::Mode => OptionKey::Mode,
            Named::Reply => OptionKey::Reply,
            Named::AcceptProxy => OptionKey::AcceptProxy,
            Named::SendProxy => OptionKey::SendProxy,
            Named::TlsVersion => OptionKey::TlsMinVersion,
            Named::ClientAuth => OptionKey::TlsClientAuth,
        }
    }

    /// The word, as written.
    pub fn text(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for UnknownName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = &self.text;
        match self.of {
            Named::Strategy => write!(
                f,
                "unknown strategy `{text}`; known strategies: {}",
                Strategy::NAMES.join(", ")
            ),
            Named::Mode => write!(
                f,
                "unknown mode `{text}`; known modes: {}",
                TunnelMode::NAMES.join(", ")
            ),
            Named::Reply => write!(
                f,
                "unknown reply `{text}`; use {}",
                Reply::NAMES.join(" or ")
            ),
            Named::AcceptProxy => write!(f, "unknown accept_proxy `{text}`; use v1, v2 or any"),
            Named::SendProxy => write!(f, "unknown send_proxy `{text}`; use v1 or v2"),
            Named::TlsVersion => write!(f, "unknown tls_min_version `{text}`; use 1.2 or 1.3"),
            Named::ClientAuth => {
                write!(
                    f,
                    "unknown tls_client_auth `{text}`; use required or optional"
                )
            }
        }
    }
}

impl std::error::Error for UnknownName {}

/// A key that names no option: the error of [`OptionKey`]'s `FromStr`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownOption {
    /// The key as options are compared: trimmed, lower case, `_` for `-`.
    key: String,
}

impl UnknownOption {
    pub(super) fn new(key: String) -> Self {
        UnknownOption { key }
    }

    /// The key, trimmed, in lower case, with `_` for `-`.
    pub fn key(&self) -> &str {
        &self.key
    }
}

impl fmt::Display for UnknownOption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown option `{}`; known options: {}",
            self.key,
            OPTION_KEYS.join(", ")
        )
    }
}

impl std::error::Error for UnknownOption {}

/// A bad value for one option: which option, and what is wrong with the value.
///
/// Its `Display` leads with the option's name (`attempts: ...`) unless the complaint names it
/// already; [`OptionError::kind`] alone suits a caller that has said which option it was (the
/// config file names the key in its location).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptionError {
    key: OptionKey,
    kind: OptionErrorKind,
}

/// What is wrong with an option's value.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum OptionErrorKind {
    /// Not a duration porxy takes (no unit, malformed, longer than 365 days), or not a size.
    BadQuantity(UnitError),
    /// A duration of zero, which would end every connection at once.
    Zero,
    /// A duration longer than porxy takes (365 days).
    TooLong,
    /// Not a whole number in the option's range.
    NotInRange {
        /// The value as given.
        value: String,
        /// The least the option takes.
        min: u32,
        /// The most the option takes.
        max: u32,
    },
    /// A size out of the option's range (`max_lag`: 64 KiB to 1 GiB).
    SizeNotInRange {
        /// The value as given.
        value: String,
        /// The fewest bytes it may be.
        min: u64,
        /// The most bytes it may be.
        max: u64,
    },
    /// Not one of the words an on/off option takes.
    NotASwitch {
        /// The value as given.
        value: String,
        /// The words it takes, like "`on` or `off`".
        expected: &'static str,
    },
    /// An escape other than `\r`, `\n`, `\t` and `\\`.
    UnknownEscape(char),
    /// A `\` at the end of the text.
    TrailingBackslash,
    /// A word that names no strategy, mode or reply.
    UnknownName(UnknownName),
    /// Not a list of networks (`proxy_from`, `allow`, `deny`).
    BadNetworks(NetworkError),
    /// Not routes by server name (`sni_routes`).
    BadSniRoutes(SniRouteError),
    /// A typed setter was given an option whose value is of another type.
    WrongType {
        /// What the option takes, like "a duration".
        takes: &'static str,
    },
}

impl OptionError {
    pub(super) fn new(key: OptionKey, kind: OptionErrorKind) -> Self {
        OptionError { key, kind }
    }

    /// The option.
    pub fn key(&self) -> OptionKey {
        self.key
    }

    /// What is wrong with its value.
    pub fn kind(&self) -> &OptionErrorKind {
        &self.kind
    }
}

impl fmt::Display for OptionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            // "unknown strategy `x`; ..." says which option it is.
            OptionErrorKind::UnknownName(name) => write!(f, "{name}"),
            kind => write!(f, "{}: {kind}", self.key),
        }
    }
}

impl std::error::Error for OptionError {}

impl fmt::Display for OptionErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OptionErrorKind::BadQuantity(error) => write!(f, "{error}"),
            OptionErrorKind::Zero => f.write_str("must be more than zero"),
            OptionErrorKind::TooLong => f.write_str("must be at most 365 days"),
            OptionErrorKind::NotInRange { value, min, max } => {
                write!(f, "`{value}` is not a whole number from {min} to {max}")
            }
            OptionErrorKind::SizeNotInRange { value, min, max } => write!(
                f,
                "must be from {} to {}, not `{value}`",
                crate::units::format_size(*min),
                crate::units::format_size(*max)
            ),
            OptionErrorKind::NotASwitch { value, expected } => {
                write!(f, "`{value}` is not {expected}")
            }
            OptionErrorKind::UnknownEscape(c) => {
                write!(f, "unknown escape `\\{c}`; use \\r, \\n, \\t or \\\\")
            }
            OptionErrorKind::TrailingBackslash => {
                f.write_str("a `\\` at the end needs a letter after it")
            }
            OptionErrorKind::UnknownName(name) => write!(f, "{name}"),
            OptionErrorKind::BadNetworks(error) => write!(f, "{error}"),
            OptionErrorKind::BadSniRoutes(error) => write!(f, "{error}"),
            OptionErrorKind::WrongType { takes } => write!(f, "takes {takes}"),
        }
    }
}

/// Options that are each fine but do not fit together, or with the number of remotes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum OptionsConflict {
    /// A fan-out option (`reply`, `max_lag`, `min_live`) without `mode=fanout`.
    FanoutOnly(OptionKey),
    /// A balancing option (`strategy`, `attempts`, `queue_timeout`) with `mode=fanout`.
    BalanceOnly(OptionKey),
    /// More remotes than a fan-out tunnel copies to.
    TooManyRemotes {
        /// How many the tunnel has.
        remotes: usize,
    },
    /// `min_live` above the number of remotes: no connection could start.
    MinLiveAboveRemotes {
        /// The `min_live` given.
        min_live: u32,
        /// How many remotes the tunnel has.
        remotes: usize,
    },
    /// A PROXY header option (`proxy_timeout`, `proxy_from`) without `accept_proxy`.
    AcceptProxyOnly(OptionKey),
    /// `rate_burst` without `rate_per_client`.
    RatePerClientOnly(OptionKey),
    /// A bandwidth limit with `mode=fanout` (its copies are paced by the slowest destination
    /// and `max_lag` instead).
    RelayOnly(OptionKey),
    /// One of `tls_cert` and `tls_key` without the other: this one is missing.
    TlsPair(OptionKey),
    /// `tls_cert` and `tls_key` list different numbers of files (they pair by position).
    TlsPairs {
        /// Certificate chains listed.
        certs: usize,
        /// Keys listed.
        keys: usize,
    },
    /// An option of TLS to the backends without `backend_tls=on`.
    BackendTlsOnly(OptionKey),
    /// `tls_client_auth` without `tls_client_ca`.
    ClientCaOnly,
    /// A TLS option without `tls_cert` and `tls_key`.
    TlsOnly(OptionKey),
    /// `check_send_proxy` on a tunnel none of whose remotes gets a PROXY header.
    NoProxyHeaderToCheck,
    /// Fan-out remotes sent PROXY headers of different versions: every destination is sent
    /// the one copy of the client's stream.
    FanoutProxyVersions,
    /// A remote has TLS settings of its own, but porxy does not speak TLS to it.
    RemoteTlsOnly {
        /// The remote.
        remote: String,
        /// The tunnel option its setting stands for.
        key: OptionKey,
    },
    /// A route of `sni_routes` names a remote the tunnel does not have.
    SniRouteRemote {
        /// The remote as the route names it.
        remote: String,
    },
}

impl fmt::Display for OptionsConflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OptionsConflict::FanoutOnly(key) => {
                write!(f, "option `{key}` applies only with mode=fanout")
            }
            OptionsConflict::BalanceOnly(key) => write!(
                f,
                "option `{key}` does not apply with mode=fanout: every remote gets every client"
            ),
            OptionsConflict::TooManyRemotes { remotes } => write!(
                f,
                "mode=fanout copies to at most {MAX_FANOUT} remotes, not {remotes}"
            ),
            OptionsConflict::MinLiveAboveRemotes { min_live, remotes } => write!(
                f,
                "min_live={min_live} is more than the {remotes} remotes of the tunnel"
            ),
            OptionsConflict::AcceptProxyOnly(key) => {
                write!(f, "option `{key}` applies only with accept_proxy")
            }
            OptionsConflict::RatePerClientOnly(key) => {
                write!(f, "option `{key}` applies only with rate_per_client")
            }
            OptionsConflict::RelayOnly(key) => write!(
                f,
                "option `{key}` does not apply with mode=fanout (every client goes to every \
                 remote, at the pace of its destinations, within max_lag, over plain TCP)"
            ),
            OptionsConflict::TlsPair(missing) => {
                write!(f, "a TLS certificate needs its chain and its key: `{missing}` is missing")
            }
            OptionsConflict::TlsPairs { certs, keys } => write!(
                f,
                "tls_cert lists {certs} file(s) and tls_key {keys}: each certificate needs its key, in the same order"
            ),
            OptionsConflict::BackendTlsOnly(key) => {
                write!(f, "option `{key}` applies only with backend_tls=on")
            }
            OptionsConflict::ClientCaOnly => {
                f.write_str("option `tls_client_auth` applies only with tls_client_ca")
            }
            OptionsConflict::TlsOnly(key) => {
                write!(f, "option `{key}` applies only with tls_cert and tls_key")
            }
            OptionsConflict::NoProxyHeaderToCheck => f.write_str(
                "option `check_send_proxy` applies only with send_proxy (the tunnel's or a backend's)",
            ),
            OptionsConflict::FanoutProxyVersions => f.write_str(
                "mode=fanout sends every remote the same PROXY header version: \
                 its backends' send_proxy differ",
            ),
            OptionsConflict::RemoteTlsOnly { remote, key } => write!(
                f,
                "remote {remote} has a TLS setting of its own (`{key}`) but porxy does not speak \
                 TLS to it: turn backend_tls on for the tunnel, or tls on for the backend"
            ),
            OptionsConflict::SniRouteRemote { remote } => write!(
                f,
                "sni_routes sends clients to {remote}, which is not one of the tunnel's remotes"
            ),
        }
    }
}

impl std::error::Error for OptionsConflict {}
