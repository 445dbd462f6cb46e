//! The SPEC parser: a cursor over the text, one method per part of the grammar.

use super::endpoint::{Endpoint, RemoteFault};
use super::error::column_at;
use super::{OptionKey, Remote, SpecError, SpecErrorKind, TunnelOptions, TunnelSpec, MAX_WEIGHT};

/// A cursor over the SPEC text; every error carries the byte offset it stopped at.
pub(super) struct Parser<'a> {
    input: &'a str,
    pos: usize,
}

impl<'a> Parser<'a> {
    pub(super) fn new(input: &'a str) -> Self {
        Parser { input, pos: 0 }
    }

    /// A whole SPEC.
    pub(super) fn spec(mut self) -> Result<TunnelSpec, SpecError> {
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
            options.check(remotes.len()).map_err(|conflict| {
                SpecError::of(self.input, at, SpecErrorKind::Conflict(conflict))
            })?;
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

    /// A remote and nothing else, as [`Remote`]'s `FromStr` reads it.
    pub(super) fn remote_alone(mut self) -> Result<Remote, SpecError> {
        self.skip_spaces();
        let remote = self.remote()?;
        self.skip_spaces();
        if let Some(c) = self.peek() {
            return Err(self.error(format!("unexpected `{c}` after the remote")));
        }
        Ok(remote)
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
            return Err(SpecError::of(self.input, at, SpecErrorKind::Remote(fault)));
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
        // Each option given so far, with where it was.
        let mut given: Vec<(OptionKey, usize)> = Vec::new();
        loop {
            self.skip_spaces();
            if self.eat(']') {
                return Ok(());
            }
            let key_at = self.pos;
            let written = self.take_while(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if written.is_empty() {
                return Err(self.error("expected an option `key=value` or `]`"));
            }
            // An unknown key is refused once its value is read, where a bad value would be.
            let key = written.parse::<OptionKey>();
            if let Ok(key) = key {
                if let Some((_, first)) = given.iter().find(|(k, _)| *k == key) {
                    let first_column = column_at(self.input, *first);
                    let kind = SpecErrorKind::Repeated { key, first_column };
                    return Err(SpecError::of(self.input, key_at, kind));
                }
                given.push((key, key_at));
            }
            self.skip_spaces();
            if !self.eat('=') {
                return Err(
                    self.error(format!("expected `=` and a value after option `{written}`"))
                );
            }
            self.skip_spaces();
            let value_at = self.pos;
            // A `]` closes the options unless a `[` in the value opened it (an IPv6 address
            // in `sni_routes`); a backslash keeps the next character in the value (`\,`, `\]`
            // in a text value).
            let depth = std::cell::Cell::new(0u32);
            let escaped = std::cell::Cell::new(false);
            let value = self
                .take_while(|c| match c {
                    _ if escaped.get() => {
                        escaped.set(false);
                        true
                    }
                    '\\' => {
                        escaped.set(true);
                        true
                    }
                    '[' => {
                        depth.set(depth.get() + 1);
                        true
                    }
                    ']' if depth.get() > 0 => {
                        depth.set(depth.get() - 1);
                        true
                    }
                    ',' | ']' => false,
                    _ => true,
                })
                .trim_end();
            if value.is_empty() {
                return Err(self.error(format!("option `{written}` needs a value")));
            }
            let key = key.map_err(|unknown| {
                SpecError::of(self.input, key_at, SpecErrorKind::UnknownOption(unknown))
            })?;
            options.set(key, value).map_err(|error| {
                SpecError::of(self.input, value_at, SpecErrorKind::Option(error))
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
