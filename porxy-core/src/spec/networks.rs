//! Lists of networks (`proxy_from`, `allow`, `deny`): CIDRs such as `10.0.0.0/8` or
//! `2001:db8::/32`, or single addresses. In a SPEC they are separated by `;` (a `,` ends the
//! option); in the config file they are a TOML array.
//!
//! A CIDR with host bits set (`10.1.2.3/8`) is refused, saying which network was meant: it is
//! more often a typo than an intent. Matching takes IPv4-mapped IPv6 addresses (how a
//! dual-stack listener reports IPv4 clients) as the IPv4 addresses they are.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;

/// A list of networks.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Networks(Vec<IpNet>);

/// Why a list of networks was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkError {
    text: String,
    why: &'static str,
    meant: Option<IpNet>,
}

impl fmt::Display for NetworkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` {}", self.text, self.why)?;
        if let Some(meant) = self.meant {
            write!(f, "; did you mean `{meant}`?")?;
        }
        Ok(())
    }
}

impl std::error::Error for NetworkError {}

impl Networks {
    /// The networks, in the order given.
    pub fn iter(&self) -> impl Iterator<Item = &IpNet> {
        self.0.iter()
    }

    /// Whether `addr` is in one of them.
    pub fn contains(&self, addr: IpAddr) -> bool {
        let addr = addr.to_canonical();
        self.0.iter().any(|net| net.contains(&addr))
    }

    /// The longest prefix of the networks that hold `addr`, if one does.
    pub(crate) fn longest_match(&self, addr: IpAddr) -> Option<u8> {
        let addr = addr.to_canonical();
        self.0
            .iter()
            .filter(|net| net.contains(&addr))
            .map(IpNet::prefix_len)
            .max()
    }

    /// Reads one network: a CIDR, or an address (a /32 or /128).
    fn one(text: &str) -> Result<IpNet, NetworkError> {
        let fail = |why, meant| NetworkError {
            text: text.to_string(),
            why,
            meant,
        };
        if let Ok(addr) = text.parse::<IpAddr>() {
            return Ok(IpNet::from(addr.to_canonical()));
        }
        let net: IpNet = text
            .parse()
            .map_err(|_| fail("is not a network (like 10.0.0.0/8) or an address", None))?;
        if net.trunc() != net {
            return Err(fail("has host bits set", Some(net.trunc())));
        }
        Ok(net)
    }
}

impl FromStr for Networks {
    type Err = NetworkError;

    /// `;`-separated networks; spaces around each are allowed. At least one.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let nets = text
            .split(';')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(Networks::one)
            .collect::<Result<Vec<_>, _>>()?;
        if nets.is_empty() {
            return Err(NetworkError {
                text: text.to_string(),
                why: "names no network",
                meant: None,
            });
        }
        Ok(Networks(nets))
    }
}

impl TryFrom<&[&str]> for Networks {
    type Error = NetworkError;

    /// A list as the config file gives it, each entry one network.
    fn try_from(items: &[&str]) -> Result<Self, Self::Error> {
        items.join(";").parse()
    }
}

impl fmt::Display for Networks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, net) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(";")?;
            }
            // A single address is written as one.
            match (net, net.prefix_len()) {
                (IpNet::V4(v4), 32) => write!(f, "{}", v4.addr())?,
                (IpNet::V6(v6), 128) => write!(f, "{}", v6.addr())?,
                _ => write!(f, "{net}")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn lists_parse_match_and_render_back() {
        let nets: Networks = " 10.0.0.0/8 ; 192.0.2.7;2001:db8::/32 ".parse().unwrap();
        assert_eq!(nets.to_string(), "10.0.0.0/8;192.0.2.7;2001:db8::/32");
        assert!(nets.contains(ip("10.1.2.3")));
        assert!(nets.contains(ip("192.0.2.7")));
        assert!(!nets.contains(ip("192.0.2.8")));
        assert!(nets.contains(ip("2001:db8::1")));
        // A dual-stack listener's IPv4 client.
        assert!(nets.contains(ip("::ffff:10.9.9.9")));
        assert_eq!(nets.longest_match(ip("192.0.2.7")), Some(32));
        assert_eq!(nets.longest_match(ip("10.0.0.1")), Some(8));
        assert_eq!(nets.longest_match(ip("127.0.0.1")), None);
    }

    #[test]
    fn bad_networks_say_why() {
        let err = |text: &str| text.parse::<Networks>().unwrap_err().to_string();
        assert_eq!(
            err("10.1.2.3/8"),
            "`10.1.2.3/8` has host bits set; did you mean `10.0.0.0/8`?"
        );
        assert_eq!(
            err("10.0.0.0/33"),
            "`10.0.0.0/33` is not a network (like 10.0.0.0/8) or an address"
        );
        assert_eq!(err(" ; "), "` ; ` names no network");
        assert_eq!(
            Networks::try_from(&["10.0.0.0/8", "bogus"][..])
                .unwrap_err()
                .to_string(),
            "`bogus` is not a network (like 10.0.0.0/8) or an address"
        );
    }
}

#[cfg(test)]
mod properties {
    use std::net::{IpAddr, Ipv4Addr};

    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// A network written back reads the same; an address is in it exactly when its first
        /// `prefix` bits are the network's.
        #[test]
        fn ipv4_networks_round_trip_and_match_by_their_bits(
            net in any::<u32>(),
            prefix in 0u8..=32,
            probe in any::<u32>(),
        ) {
            let mask = if prefix == 0 { 0 } else { u32::MAX << (32 - prefix) };
            let text = format!("{}/{prefix}", Ipv4Addr::from(net & mask));
            let nets: Networks = text.parse().unwrap();
            let again: Networks = nets.to_string().parse().unwrap();
            prop_assert_eq!(&again, &nets);
            let inside = probe & mask == net & mask;
            prop_assert_eq!(nets.contains(IpAddr::V4(Ipv4Addr::from(probe))), inside);
            // With host bits set, it is refused, naming the network meant.
            if net & !mask != 0 {
                let bad = format!("{}/{prefix}", Ipv4Addr::from(net));
                let error = bad.parse::<Networks>().unwrap_err().to_string();
                let meant = format!("did you mean `{}/{prefix}`?", Ipv4Addr::from(net & mask));
                prop_assert!(error.ends_with(&meant), "{}", error);
            }
        }
    }
}
