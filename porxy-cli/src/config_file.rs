//! The TOML configuration file, lifted into validated core types.
//!
//! The file is read with bounds ([`read`]: a regular file, of bounded size, in UTF-8). Then two
//! steps, as in sozu: serde reads it into raw shapes ([`raw`]) that refuse unknown keys and keep
//! the byte span of every value porxy checks itself; then [`parse`] lifts them into a
//! [`porxy_core::ProxyConfig`] and one [`NamedTunnel`] per `[listeners.NAME]` (lifted in
//! [`listener`]), in file order. Every error is located: `porxy.toml:12:5:
//! listeners.demo.backends: <what and what was expected>`. The file's shape is documented in
//! `examples/porxy.toml`.

mod access_log;
mod admin;
pub(crate) use admin::AdminTable;
mod backend;
mod listener;
mod locate;
mod raw;
mod read;
#[cfg(test)]
mod tests;

use std::fmt;
use std::io;
use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use porxy_core::units::{parse_duration, parse_size};
use porxy_core::{AcceptMode, AcceptModeError, Endpoint, ProxyConfig, Remote};
use toml::Spanned;

use self::locate::{key_path_at, line_column};
use self::raw::{RawAddress, RawDuration, RawFile, RawProxy, RawSize};
use crate::clients::ListenAddr;
use crate::named_tunnel::NamedTunnel;

/// Where a control address given as a flag was written, for messages.
pub(crate) const CONTROL_FLAG: &str = "--control";

/// A lifted configuration file.
#[derive(Debug)]
pub(crate) struct ConfigFile {
    /// `[proxy]` with the command-line overrides applied, validated.
    pub(crate) proxy: ProxyConfig,
    /// `[proxy] drain_timeout`, if given.
    pub(crate) drain_timeout: Option<Duration>,
    /// One tunnel per `[listeners.NAME]`, in the order the file lists them.
    pub(crate) listeners: Vec<NamedTunnel>,
    /// `[control] listen`, or `--control` which overrides it.
    pub(crate) control: Option<ListenAddr>,
    /// Where the control address was written: `--control`, or `[control] listen`'s place.
    pub(crate) control_origin: String,
    /// `[control] idle_timeout`, or `--control-idle-timeout` which overrides it.
    pub(crate) control_idle_timeout: Option<Duration>,
    /// `[admin]`, if given (the flags override it later).
    pub(crate) admin: Option<AdminTable>,
    /// `[state] file`, if given (`--state-file` overrides it).
    pub(crate) state_file: Option<std::path::PathBuf>,
    /// `[metrics] listen`, if given (`--metrics` overrides it).
    pub(crate) metrics: Option<ListenAddr>,
    /// `access_log` and `access_log_format`, proxy-wide and per listener, with the flags'.
    pub(crate) access_log: crate::access_log::Plan,
}

/// Command-line settings that replace the file's before it is validated.
#[derive(Debug, Default, Clone)]
pub(crate) struct Overrides {
    /// `--reactors N`.
    pub(crate) reactors: Option<usize>,
    /// `--access-log PATH|stderr|off`.
    pub(crate) access_log: Option<crate::access_log::Target>,
    /// `--access-log-format logfmt|json`.
    pub(crate) access_log_format: Option<crate::access_log::Format>,
    /// `--max-connections N`.
    pub(crate) max_connections: Option<usize>,
    /// `--max-accept-rate N`.
    pub(crate) max_accept_rate: Option<u32>,
    /// `--accept MODE`.
    pub(crate) accept: Option<AcceptMode>,
    /// `--control ADDR`.
    pub(crate) control: Option<ListenAddr>,
    /// `--control-idle-timeout DURATION`.
    pub(crate) control_idle_timeout: Option<Duration>,
    /// `--busy-poll DURATION`.
    pub(crate) busy_poll: Option<Duration>,
    /// `--reuse-port`.
    pub(crate) reuse_port: bool,
}

/// A position in the file, with the key path there: `porxy.toml:12:5: listeners.demo.backends`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Location {
    /// The file as it was named on the command line.
    pub(crate) file: String,
    /// 1-based.
    pub(crate) line: usize,
    /// 1-based, in characters.
    pub(crate) column: usize,
    /// Dotted; empty at the top level.
    pub(crate) path: String,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)?;
        if !self.path.is_empty() {
            write!(f, ": {}", self.path)?;
        }
        Ok(())
    }
}

/// Why a configuration file was refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {file}")]
    Read {
        /// The file as named.
        file: String,
        /// What the OS said.
        #[source]
        source: io::Error,
    },
    /// The path names something other than a regular file.
    #[error("{file} is {kind}, not a regular file; give the path of a TOML file")]
    NotAFile {
        /// The file as named.
        file: String,
        /// What it is: `a directory`, `a FIFO (named pipe)`, ...
        kind: &'static str,
    },
    /// The file is larger than any configuration file should be.
    #[error(
        "{file} is larger than {} MiB, the most a configuration file may be; is it the right file?",
        limit / (1024 * 1024)
    )]
    TooLarge {
        /// The file as named.
        file: String,
        /// The limit, in bytes.
        limit: u64,
    },
    /// Something in the file is wrong, here.
    #[error("{at}: {message}")]
    At {
        /// Where.
        at: Location,
        /// What is wrong and what was expected.
        message: String,
    },
    /// A command-line override made the settings invalid.
    #[error("{flag}")]
    Flag {
        /// The flag, like `--reactors`.
        flag: &'static str,
        /// The core's complaint.
        #[source]
        source: porxy_core::Error,
    },
}

/// Reads and lifts the file at `path` (a regular file of at most [`read::MAX_CONFIG_SIZE`]
/// bytes).
pub(crate) fn load(path: &Path, overrides: &Overrides) -> Result<ConfigFile, ConfigError> {
    let file = path.display().to_string();
    let text = read::read_config(path, &file)?;
    parse(&file, &text, overrides)
}

/// Lifts the TOML `text`; `file` names it in errors.
pub(crate) fn parse(
    file: &str,
    text: &str,
    overrides: &Overrides,
) -> Result<ConfigFile, ConfigError> {
    let lift = Lift { file, text };
    let raw: RawFile = toml::from_str(text).map_err(|err| lift.toml_error(&err))?;
    let (proxy, drain_timeout) = lift.proxy(&raw.proxy, overrides)?;
    let access_log = lift.access_log(&raw, overrides)?;
    let backends = lift.backends(&raw.backends)?;
    let mut listeners: Vec<_> = raw.listeners.iter().collect();
    listeners.sort_by_key(|(name, _)| name.span().start);
    let listeners = listeners
        .into_iter()
        .map(|(name, listener)| lift.listener(name, listener, &backends))
        .collect::<Result<_, _>>()?;
    let (mut control, mut control_idle_timeout) = (None, None);
    let mut control_origin = CONTROL_FLAG.to_string();
    if let Some(table) = &raw.control {
        control = Some(lift.control(&table.listen)?);
        if overrides.control.is_none() {
            control_origin = lift
                .at(table.listen.span().start, "control.listen")
                .to_string();
        }
        if let Some(idle) = &table.idle_timeout {
            let duration = lift.duration(idle, "control.idle_timeout")?;
            // Zero would cut every control client before its first line.
            if duration.is_zero() {
                return Err(lift.error(
                    idle.span().start,
                    "control.idle_timeout",
                    "must be more than zero",
                ));
            }
            control_idle_timeout = Some(duration);
        }
    }
    Ok(ConfigFile {
        proxy,
        drain_timeout,
        listeners,
        control: overrides.control.clone().or(control),
        control_origin,
        control_idle_timeout: overrides.control_idle_timeout.or(control_idle_timeout),
        admin: raw
            .admin
            .as_ref()
            .map(|table| lift.admin(table))
            .transpose()?,
        state_file: raw.state.as_ref().map(|s| s.file.get_ref().into()),
        metrics: raw
            .metrics
            .as_ref()
            .map(|m| {
                m.listen
                    .get_ref()
                    .0
                    .parse()
                    .map_err(|message| lift.error(m.listen.span().start, "metrics.listen", message))
            })
            .transpose()?,
        access_log,
    })
}

/// A parsed `[backends.NAME]`: its address and where that was written.
struct Backend {
    remote: Remote,
    at: Location,
}

/// The lifting step, with the text at hand to locate errors.
struct Lift<'a> {
    file: &'a str,
    text: &'a str,
}

impl Lift<'_> {
    fn proxy(
        &self,
        raw: &RawProxy,
        overrides: &Overrides,
    ) -> Result<(ProxyConfig, Option<Duration>), ConfigError> {
        let mut config = ProxyConfig::default();
        if let Some(reactors) = &raw.reactors {
            config.reactors = *reactors.get_ref();
        }
        if let Some(size) = &raw.buffer_size {
            config.buffer_size = self.size(size, "proxy.buffer_size")?;
        }
        if let Some(size) = &raw.pipe_size {
            config.pipe_size = self.size(size, "proxy.pipe_size")?;
        }
        if let Some(backlog) = &raw.backlog {
            config.backlog = *backlog.get_ref();
        }
        for (slot, value, path) in [
            (
                &mut config.connect_timeout,
                &raw.connect_timeout,
                "proxy.connect_timeout",
            ),
            (
                &mut config.idle_timeout,
                &raw.idle_timeout,
                "proxy.idle_timeout",
            ),
            (
                &mut config.half_closed_timeout,
                &raw.half_closed_timeout,
                "proxy.half_closed_timeout",
            ),
        ] {
            if let Some(value) = value {
                *slot = self.duration(value, path)?;
            }
        }
        for (slot, value, path) in [
            (
                &mut config.client_fin_timeout,
                &raw.client_fin_timeout,
                "proxy.client_fin_timeout",
            ),
            (
                &mut config.server_fin_timeout,
                &raw.server_fin_timeout,
                "proxy.server_fin_timeout",
            ),
        ] {
            if let Some(value) = value {
                *slot = Some(self.duration(value, path)?);
            }
        }
        let drain_timeout = match &raw.drain_timeout {
            Some(value) => Some(self.duration(value, "proxy.drain_timeout")?),
            None => None,
        };
        if let Some(max) = &raw.max_connections {
            config.max_connections = Some(*max.get_ref());
        }
        if let Some(rate) = &raw.max_accept_rate {
            config.max_accept_rate = Some(*rate.get_ref());
        }
        if let Some(splice) = &raw.splice {
            config.splice = *splice.get_ref();
        }
        if let Some(accept) = &raw.accept {
            config.accept = accept.get_ref().parse().map_err(|e: AcceptModeError| {
                self.error(accept.span().start, "proxy.accept", e.to_string())
            })?;
        }
        if let Some(busy_poll) = &raw.busy_poll {
            config.busy_poll = self.duration(busy_poll, "proxy.busy_poll")?;
        }
        if let Some(reuse_port) = &raw.reuse_port {
            config.reuse_port = *reuse_port.get_ref();
        }
        for (list, path, slot) in [
            (&raw.allow, "proxy.allow", &mut config.allow),
            (&raw.deny, "proxy.deny", &mut config.deny),
        ] {
            if let Some(list) = list {
                let items: Vec<&str> = list.get_ref().iter().map(String::as_str).collect();
                let networks = porxy_core::Networks::try_from(items.as_slice())
                    .map_err(|e| self.error(list.span().start, path, e.to_string()))?;
                *slot = Some(networks);
            }
        }
        if let Some(reactors) = overrides.reactors {
            config.reactors = reactors;
        }
        if let Some(accept) = overrides.accept {
            config.accept = accept;
        }
        if let Some(max) = overrides.max_connections {
            config.max_connections = Some(max);
        }
        if let Some(rate) = overrides.max_accept_rate {
            config.max_accept_rate = Some(rate);
        }
        if let Some(busy_poll) = overrides.busy_poll {
            config.busy_poll = busy_poll;
        }
        config.reuse_port |= overrides.reuse_port;
        if let Err(err) = config.validate() {
            return Err(match err {
                porxy_core::Error::InvalidSetting {
                    name: "reactors", ..
                } if overrides.reactors.is_some() => ConfigError::Flag {
                    flag: "--reactors",
                    source: err,
                },
                porxy_core::Error::InvalidSetting {
                    name: "max_connections",
                    ..
                } if overrides.max_connections.is_some() => ConfigError::Flag {
                    flag: "--max-connections",
                    source: err,
                },
                porxy_core::Error::InvalidSetting {
                    name: "max_accept_rate",
                    ..
                } if overrides.max_accept_rate.is_some() => ConfigError::Flag {
                    flag: "--max-accept-rate",
                    source: err,
                },
                porxy_core::Error::InvalidSetting {
                    name: "busy_poll", ..
                } if overrides.busy_poll.is_some() => ConfigError::Flag {
                    flag: "--busy-poll",
                    source: err,
                },
                porxy_core::Error::InvalidSetting { name, reason } => {
                    let at = raw.span_of(name).map_or(0, |span| span.start);
                    self.error(at, format!("proxy.{name}"), reason)
                }
                other => self.error(0, "proxy", other.to_string()),
            });
        }
        Ok((config, drain_timeout))
    }

    fn count(
        &self,
        raw: &Spanned<i64>,
        min: i64,
        max: i64,
        path: &str,
    ) -> Result<i64, ConfigError> {
        let n = *raw.get_ref();
        if (min..=max).contains(&n) {
            Ok(n)
        } else {
            Err(self.error(
                raw.span().start,
                path,
                format!("{n} is not from {min} to {max}"),
            ))
        }
    }

    fn endpoint(
        &self,
        raw: &Spanned<RawAddress>,
        path: String,
    ) -> Result<(Endpoint, Location), ConfigError> {
        let RawAddress(text) = raw.get_ref();
        match text.parse::<Endpoint>() {
            Ok(endpoint) => Ok((endpoint, self.at(raw.span().start, path))),
            Err(err) => {
                let at = self.inside_string(raw.span(), text, err.column());
                Err(self.error(at, path, format!("bad address {text:?}: {}", err.message())))
            }
        }
    }

    fn control(&self, raw: &Spanned<RawAddress>) -> Result<ListenAddr, ConfigError> {
        raw.get_ref()
            .0
            .parse()
            .map_err(|message| self.error(raw.span().start, "control.listen", message))
    }

    fn duration(&self, raw: &Spanned<RawDuration>, path: &str) -> Result<Duration, ConfigError> {
        parse_duration(&raw.get_ref().0)
            .map_err(|e| self.error(raw.span().start, path, e.to_string()))
    }

    fn size(&self, raw: &Spanned<RawSize>, path: &str) -> Result<usize, ConfigError> {
        let parsed = match raw.get_ref() {
            RawSize::Bytes(n) => usize::try_from(*n).map_err(|_| format!("{n} bytes is too large")),
            RawSize::Text(text) => parse_size(text).map_err(|e| e.to_string()),
        };
        parsed.map_err(|message| self.error(raw.span().start, path, message))
    }

    /// The offset of character `column` (1-based) of a string value, when the value is written
    /// plainly between quotes; else the value's start.
    fn inside_string(&self, span: Range<usize>, value: &str, column: usize) -> usize {
        let written = self.text.get(span.clone()).unwrap_or_default();
        let plain = [format!("\"{value}\""), format!("'{value}'")];
        if !plain.iter().any(|p| p == written) {
            return span.start;
        }
        let byte = value
            .char_indices()
            .nth(column.saturating_sub(1))
            .map_or(value.len(), |(i, _)| i);
        span.start + 1 + byte
    }

    /// A toml syntax or shape error, with the key path found from its span.
    fn toml_error(&self, err: &toml::de::Error) -> ConfigError {
        let offset = err.span().map_or(0, |span| span.start);
        let syntax = !toml::de::DeTable::parse_recoverable(self.text).1.is_empty();
        let message = err.message().trim().replace('\n', "; ");
        let message = if syntax {
            format!("syntax error: {message}")
        } else {
            message
        };
        self.error(offset, key_path_at(self.text, offset), message)
    }

    fn at(&self, offset: usize, path: impl Into<String>) -> Location {
        let (line, column) = line_column(self.text, offset);
        Location {
            file: self.file.to_string(),
            line,
            column,
            path: path.into(),
        }
    }

    fn error(
        &self,
        offset: usize,
        path: impl Into<String>,
        message: impl Into<String>,
    ) -> ConfigError {
        ConfigError::At {
            at: self.at(offset, path),
            message: message.into(),
        }
    }
}
