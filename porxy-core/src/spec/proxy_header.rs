//! Which PROXY protocol header a listener accepts from its clients (`accept_proxy`), and which
//! one a tunnel sends its upstreams (`send_proxy`).

use std::fmt;
use std::str::FromStr;

use super::error::{Named, UnknownName};

/// The PROXY protocol versions a listener reads ahead of each client's stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AcceptProxy {
    /// The text header: `PROXY TCP4 ...\r\n`.
    V1,
    /// The binary header.
    V2,
    /// Either, told apart by their signatures.
    Any,
}

impl AcceptProxy {
    /// Every value's name, as written in a SPEC or a config file.
    pub const NAMES: &'static [&'static str] = &["v1", "v2", "any"];

    /// The name as written in a SPEC or a config file.
    pub fn as_str(self) -> &'static str {
        match self {
            AcceptProxy::V1 => "v1",
            AcceptProxy::V2 => "v2",
            AcceptProxy::Any => "any",
        }
    }
}

impl FromStr for AcceptProxy {
    type Err = UnknownName;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim().to_ascii_lowercase().as_str() {
            "v1" | "1" => Ok(AcceptProxy::V1),
            "v2" | "2" => Ok(AcceptProxy::V2),
            "any" => Ok(AcceptProxy::Any),
            _ => Err(UnknownName::new(Named::AcceptProxy, text)),
        }
    }
}

impl fmt::Display for AcceptProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The PROXY protocol version a tunnel sends ahead of each client's stream to its upstreams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SendProxy {
    /// The text header.
    V1,
    /// The binary header.
    V2,
}

impl SendProxy {
    /// The name as written in a SPEC or a config file.
    pub fn as_str(self) -> &'static str {
        match self {
            SendProxy::V1 => "v1",
            SendProxy::V2 => "v2",
        }
    }
}

impl FromStr for SendProxy {
    type Err = UnknownName;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim().to_ascii_lowercase().as_str() {
            "v1" | "1" => Ok(SendProxy::V1),
            "v2" | "2" => Ok(SendProxy::V2),
            _ => Err(UnknownName::new(Named::SendProxy, text)),
        }
    }
}

impl fmt::Display for SendProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_a_typo_lists_the_choices() {
        for name in AcceptProxy::NAMES {
            assert_eq!(name.parse::<AcceptProxy>().unwrap().as_str(), *name);
        }
        assert_eq!(
            "v3".parse::<AcceptProxy>().unwrap_err().to_string(),
            "unknown accept_proxy `v3`; use v1, v2 or any"
        );
        assert_eq!("v2".parse::<SendProxy>().unwrap(), SendProxy::V2);
        assert_eq!(
            "any".parse::<SendProxy>().unwrap_err().to_string(),
            "unknown send_proxy `any`; use v1 or v2"
        );
    }
}
