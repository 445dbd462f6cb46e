//! A tunnel's access rules (`allow`, `deny`): the [`Admission`] verdict on a client's real
//! address, before its backend is picked.
//!
//! The most specific network that holds the client decides: `allow = 10.0.0.0/8` with
//! `deny = 10.6.0.0/16` takes 10.1.2.3 and refuses 10.6.7.8; add `allow = 10.6.6.6` and that
//! one host is taken again. A tie (the same network in both lists) refuses. A client in neither
//! list is refused when there is an `allow` list (a whitelist), else taken.

use std::net::SocketAddr;

use super::admission::{Admission, Verdict};
use super::close::CloseReason;
use crate::spec::Networks;

/// Who may connect to a tunnel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AccessRules {
    allow: Option<Networks>,
    deny: Option<Networks>,
}

impl AccessRules {
    /// The rules `allow` and `deny` make; `None` when there are none (everyone is taken).
    pub(crate) fn new(allow: Option<Networks>, deny: Option<Networks>) -> Option<AccessRules> {
        (allow.is_some() || deny.is_some()).then_some(AccessRules { allow, deny })
    }
}

impl Admission for AccessRules {
    fn admit(&self, client: SocketAddr) -> Verdict {
        let ip = client.ip();
        let allowed = self.allow.as_ref().and_then(|n| n.longest_match(ip));
        let denied = self.deny.as_ref().and_then(|n| n.longest_match(ip));
        let admit = match (allowed, denied) {
            (Some(allow), Some(deny)) => allow > deny,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => self.allow.is_none(),
        };
        if admit {
            Verdict::Admit
        } else {
            Verdict::Refuse(CloseReason::Denied)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(allow: Option<&str>, deny: Option<&str>) -> AccessRules {
        let nets = |t: Option<&str>| t.map(|t| t.parse().unwrap());
        AccessRules::new(nets(allow), nets(deny)).unwrap()
    }

    fn admits(rules: &AccessRules, ip: &str) -> bool {
        let client = SocketAddr::new(ip.parse().unwrap(), 40000);
        rules.admit(client) == Verdict::Admit
    }

    #[test]
    fn the_most_specific_network_decides() {
        let r = rules(Some("10.0.0.0/8;10.6.6.6"), Some("10.6.0.0/16"));
        assert!(admits(&r, "10.1.2.3"));
        assert!(!admits(&r, "10.6.7.8"));
        assert!(
            admits(&r, "10.6.6.6"),
            "a host is more specific than its /16"
        );
        assert!(!admits(&r, "192.0.2.1"), "outside an allow list");
        assert_eq!(
            r.admit("10.6.7.8:1".parse().unwrap()),
            Verdict::Refuse(CloseReason::Denied)
        );
    }

    #[test]
    fn a_deny_list_alone_takes_the_rest_and_a_tie_refuses() {
        let r = rules(None, Some("192.0.2.0/24"));
        assert!(!admits(&r, "192.0.2.9"));
        assert!(admits(&r, "198.51.100.1"));
        let tie = rules(Some("192.0.2.0/24"), Some("192.0.2.0/24"));
        assert!(!admits(&tie, "192.0.2.9"));
        assert!(
            AccessRules::new(None, None).is_none(),
            "no rules: no verdict to ask"
        );
    }

    #[test]
    fn ipv6_and_ipv4_mapped_clients_are_judged_as_themselves() {
        let r = rules(Some("2001:db8::/32;127.0.0.0/8"), None);
        assert!(admits(&r, "2001:db8::5"));
        assert!(!admits(&r, "2001:db9::5"));
        assert!(
            admits(&r, "::ffff:127.0.0.2"),
            "a dual-stack listener's IPv4 client"
        );
    }
}
