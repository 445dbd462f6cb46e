//! What a tunnel does with each client: send it to one remote (balancing), or copy it to every
//! remote (fan-out), and, in fan-out, whose replies reach the client.

use std::fmt;
use std::str::FromStr;

use super::error::{Named, UnknownName};

/// What a tunnel does with each accepted client connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum TunnelMode {
    /// Each client is relayed to one remote, chosen by the tunnel's strategy.
    #[default]
    Balance,
    /// Each client is copied to every remote: one upstream connection per remote, every byte
    /// the client sends goes to all of them, in order.
    Fanout,
}

impl TunnelMode {
    /// Every mode's name, as written in a SPEC or a config file.
    pub const NAMES: &'static [&'static str] = &["balance", "fanout"];

    /// The name as written in a SPEC or a config file.
    pub fn as_str(self) -> &'static str {
        match self {
            TunnelMode::Balance => "balance",
            TunnelMode::Fanout => "fanout",
        }
    }
}

impl FromStr for TunnelMode {
    type Err = UnknownName;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim().to_ascii_lowercase().replace('-', "_").as_str() {
            "balance" => Ok(TunnelMode::Balance),
            "fanout" | "fan_out" => Ok(TunnelMode::Fanout),
            _ => Err(UnknownName::new(Named::Mode, text)),
        }
    }
}

impl fmt::Display for TunnelMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// In fan-out, which destination's replies reach the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Reply {
    /// The first remote answers the client; the others' replies are read and discarded.
    #[default]
    Primary,
    /// A one-way feed: every destination's replies are read and discarded.
    None,
}

impl Reply {
    /// Every value's name, as written in a SPEC or a config file.
    pub const NAMES: &'static [&'static str] = &["primary", "none"];

    /// The name as written in a SPEC or a config file.
    pub fn as_str(self) -> &'static str {
        match self {
            Reply::Primary => "primary",
            Reply::None => "none",
        }
    }
}

impl FromStr for Reply {
    type Err = UnknownName;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim().to_ascii_lowercase().as_str() {
            "primary" => Ok(Reply::Primary),
            "none" => Ok(Reply::None),
            _ => Err(UnknownName::new(Named::Reply, text)),
        }
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_typos_list_the_choices() {
        for name in TunnelMode::NAMES {
            assert_eq!(name.parse::<TunnelMode>().unwrap().as_str(), *name);
        }
        for name in Reply::NAMES {
            assert_eq!(name.parse::<Reply>().unwrap().as_str(), *name);
        }
        assert_eq!(
            "fanuot".parse::<TunnelMode>().unwrap_err().to_string(),
            "unknown mode `fanuot`; known modes: balance, fanout"
        );
        assert_eq!(
            "all".parse::<Reply>().unwrap_err().to_string(),
            "unknown reply `all`; use primary or none"
        );
    }
}
