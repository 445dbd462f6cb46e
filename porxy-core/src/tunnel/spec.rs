//! The tunnel expression `LOCAL=REMOTE[,REMOTE...][key=value,...]`.
//!
//! The same text is accepted on the command line (`porxy --tunnel`), by the control socket
//! (`OPEN`) and in the docs, so it is parsed here, once. Parsing is pure (no name resolution) and
//! every rejection names the column and what was expected there.

use std::fmt;
use std::str::FromStr;

use crate::tunnel::endpoint::{Endpoint, RemoteFault};
use crate::tunnel::options::canonical_key;
pub use crate::tunnel::options::{TunnelOptions, OPTION_KEYS};

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
}

/// Largest weight a remote may have.
pub const MAX_WEIGHT: u32 = 1000;

impl From<Endpoint> for Remote {
    fn from(endpoint: Endpoint) -> Self {
        Remote {
            endpoint,
            weight: 1,
            max_conns: None,
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
        let mut parser = Parser { input, pos: 0 };
        parser.skip_spaces();
        let remote = parser.remote()?;
        parser.skip_spaces();
        if let Some(c) = parser.peek() {
            return Err(parser.error(format!("unexpected `{c}` after the remote")));
        }
        Ok(remote)
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

/// A malformed tunnel expression or address, with the column of the fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError {
    input: String,
    /// Byte offset into `input` where the fault is.
    offset: usize,
    message: String,
}

impl SpecError {
    pub(crate) fn new(input: &str, offset: usize, message: impl Into<String>) -> Self {
        SpecError {
            input: input.to_string(),
            offset: offset.min(input.len()),
            message: message.into(),
        }
    }

    /// The 1-based column (in characters) of the fault.
    pub fn column(&self) -> usize {
        self.input[..self.offset].chars().count() + 1
    }

    /// What was wrong, without the position.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Two lines for a terminal: the input, and a caret under the fault.
    pub fn caret(&self) -> String {
        format!("  {}\n  {}^", self.input, " ".repeat(self.column() - 1))
    }
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

impl FromStr for TunnelSpec {
    type Err = SpecError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        Parser { input, pos: 0 }.spec()
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

/// A cursor over the SPEC text; every error carries the byte offset it stopped at.
struct Parser<'a> {
    input: &'a str,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn spec(mut self) -> Result<TunnelSpec, SpecError> {
        self.skip_spaces();
        if self.rest().is_empty() {
            return Err(
                self.error("empty tunnel; expected LOCAL=REMOTE, like `8000=127.0.0.1:9000`")
            );
        }
        let local = self.endpoint("LOCAL")?;
        self.skip_spaces();
        if !self.eat('=') {
            return Err(self.error(format!(
                "expected `=` after LOCAL `{local}`, then the remote address"
            )));
        }
        let mut remotes = Vec::new();
        loop {
            self.skip_spaces();
            remotes.push(self.remote()?);
            self.skip_spaces();
            if !self.eat(',') {
                break;
            }
        }
        let mut options = TunnelOptions::default();
        if self.peek() == Some('[') {
            let at = self.pos;
            self.options(&mut options)?;
            options
                .check(remotes.len())
                .map_err(|message| SpecError::new(self.input, at, message))?;
        }
        self.skip_spaces();
        if let Some(c) = self.peek() {
            return Err(self.error(format!(
                "unexpected `{c}`; options go last, in brackets: `[key=value,...]`"
            )));
        }
        Ok(TunnelSpec {
            local,
            remotes,
            options,
        })
    }

    fn endpoint(&mut self, what: &str) -> Result<Endpoint, SpecError> {
        if self.rest().is_empty() || self.rest().starts_with([',', '=']) {
            return Err(self.error(format!(
                "expected {what} address like `8000`, `127.0.0.1:8000` or `[::1]:8000`"
            )));
        }
        let (endpoint, used) = Endpoint::parse_prefix(self.rest())
            .map_err(|(at, message)| SpecError::new(self.input, self.pos + at, message))?;
        self.pos += used;
        Ok(endpoint)
    }

    /// `REMOTE` or `REMOTE*WEIGHT`. A remote no connect could reach as one server is refused
    /// (see [`RemoteFault`]): at its port for port 0, else at its start.
    fn remote(&mut self) -> Result<Remote, SpecError> {
        let at = self.pos;
        let endpoint = self.endpoint("REMOTE")?;
        if let Some(fault) = endpoint.remote_fault() {
            let written = &self.input[at..self.pos];
            let at = match fault {
                RemoteFault::PortZero => {
                    let digits = written.bytes().rev().take_while(u8::is_ascii_digit);
                    self.pos - digits.count()
                }
                _ => at,
            };
            return Err(SpecError::new(self.input, at, fault.to_string()));
        }
        let mut remote = Remote::from(endpoint);
        if self.eat('*') {
            remote.weight = self.weight()?;
        }
        Ok(remote)
    }

    /// The `WEIGHT` after `REMOTE*`.
    fn weight(&mut self) -> Result<u32, SpecError> {
        let at = self.pos;
        let digits = self.take_while(|c| c.is_ascii_digit());
        match digits.parse::<u32>() {
            Ok(w) if (1..=MAX_WEIGHT).contains(&w) => Ok(w),
            _ => Err(SpecError::new(
                self.input,
                at,
                format!("expected a weight from 1 to {MAX_WEIGHT} after `*`"),
            )),
        }
    }

    /// `[key=value,...]`, with the cursor on `[`. Each option may be given once (as a key may
    /// in the TOML file): a second one is refused where it starts.
    fn options(&mut self, options: &mut TunnelOptions) -> Result<(), SpecError> {
        self.eat('[');
        // Each key given so far (canonical), with where it was.
        let mut given: Vec<(String, usize)> = Vec::new();
        loop {
            self.skip_spaces();
            if self.eat(']') {
                return Ok(());
            }
            let key_at = self.pos;
            let key = self.take_while(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if key.is_empty() {
                return Err(self.error("expected an option `key=value` or `]`"));
            }
            let canonical = canonical_key(key);
            if let Some((_, first)) = given.iter().find(|(k, _)| *k == canonical) {
                let first = SpecError::new(self.input, *first, "").column();
                return Err(SpecError::new(
                    self.input,
                    key_at,
                    format!(
                        "option `{canonical}` is given twice (first at column {first}); \
                         give each option once"
                    ),
                ));
            }
            given.push((canonical, key_at));
            self.skip_spaces();
            if !self.eat('=') {
                return Err(self.error(format!("expected `=` and a value after option `{key}`")));
            }
            self.skip_spaces();
            let value_at = self.pos;
            let value = self.take_while(|c| !matches!(c, ',' | ']')).trim_end();
            if value.is_empty() {
                return Err(self.error(format!("option `{key}` needs a value")));
            }
            options.set(key, value).map_err(|message| {
                let at = if message.starts_with("unknown option") {
                    key_at
                } else {
                    value_at
                };
                SpecError::new(self.input, at, message)
            })?;
            if self.eat(',') {
                continue;
            }
            if self.eat(']') {
                return Ok(());
            }
            return Err(self.error("expected `,` or `]` to end the options"));
        }
    }

    fn rest(&self) -> &'a str {
        &self.input[self.pos..]
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.pos += c.len_utf8();
            true
        } else {
            false
        }
    }

    fn skip_spaces(&mut self) {
        self.take_while(char::is_whitespace);
    }

    fn take_while(&mut self, keep: impl Fn(char) -> bool) -> &'a str {
        let rest = self.rest();
        let len = rest.find(|c| !keep(c)).unwrap_or(rest.len());
        self.pos += len;
        &rest[..len]
    }

    fn error(&self, message: impl Into<String>) -> SpecError {
        SpecError::new(self.input, self.pos, message)
    }
}

#[cfg(test)]
mod tests;
