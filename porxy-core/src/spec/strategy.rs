//! [`Strategy`]: how a tunnel spreads connections over its remotes, as a SPEC or a config file
//! names it. What each one does is the balancer's business (`balance`).

use std::fmt;
use std::str::FromStr;

use super::error::{Named, UnknownName};

/// How a tunnel spreads connections over its backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Strategy {
    /// In turn, by weight.
    #[default]
    RoundRobin,
    /// Fewest open connections per unit of weight.
    LeastConn,
    /// Two choices drawn at random by weight, the less loaded wins.
    Random,
    /// Consistent (rendezvous) hashing of the client IP.
    Hash,
    /// The first backend in order that can take it.
    First,
}

impl Strategy {
    /// Every strategy's name, as written in a SPEC or a config file.
    pub const NAMES: &'static [&'static str] =
        &["round_robin", "least_conn", "random", "hash", "first"];

    /// The name as written in a SPEC or a config file.
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::RoundRobin => "round_robin",
            Strategy::LeastConn => "least_conn",
            Strategy::Random => "random",
            Strategy::Hash => "hash",
            Strategy::First => "first",
        }
    }
}

impl FromStr for Strategy {
    type Err = UnknownName;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim().to_ascii_lowercase().replace('-', "_").as_str() {
            "round_robin" | "roundrobin" | "rr" => Ok(Strategy::RoundRobin),
            "least_conn" | "leastconn" => Ok(Strategy::LeastConn),
            "random" => Ok(Strategy::Random),
            "hash" => Ok(Strategy::Hash),
            "first" => Ok(Strategy::First),
            _ => Err(UnknownName::new(Named::Strategy, text)),
        }
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strategies_parse_by_name() {
        for name in Strategy::NAMES {
            assert_eq!(name.parse::<Strategy>().unwrap().as_str(), *name);
        }
        assert!("fastest"
            .parse::<Strategy>()
            .unwrap_err()
            .to_string()
            .contains("round_robin, least_conn"));
    }
}
