//! A tunnel's routes by server name (`sni_routes`), as its connections use them at the pick:
//! for the name a client asked for, the backends it may not go to. The pick starts with those
//! marked as tried, so the strategy, the limits, health and failover all work within the route
//! as they do over the whole tunnel.

use crate::balance::Tried;
use crate::spec::{Remote, SniRoutes};
use crate::tls::server_names::ServerNames;

/// The route name that takes every name no other route has, and clients that name none.
const ANY: &str = "*";

/// Routes by server name, by backend index.
#[derive(Debug)]
pub(crate) struct SniRouting {
    /// For each route, the backends outside it.
    outside: ServerNames<Tried>,
}

impl SniRouting {
    /// The routes of a tunnel whose backends are `remotes`, in order (the balancer's indexes).
    pub(crate) fn new(routes: &SniRoutes, remotes: &[Remote]) -> SniRouting {
        let mut outside = ServerNames::default();
        for route in routes.iter() {
            let mut others = Tried::default();
            for (index, remote) in remotes.iter().enumerate() {
                if !route.remotes.contains(&remote.endpoint) {
                    others.add(index);
                }
            }
            match route.name.as_str() {
                ANY => outside.set_default(others),
                name => outside.insert(name, others),
            }
        }
        SniRouting { outside }
    }

    /// The backends a client that asked for `server_name` may not go to; `None` if no route
    /// takes it.
    pub(crate) fn outside(&self, server_name: Option<&str>) -> Option<&Tried> {
        self.outside.get(server_name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_name_keeps_to_its_route() {
        let remotes: Vec<Remote> = ["10.0.0.1:1", "10.0.0.2:1", "10.0.0.3:1"]
            .iter()
            .map(|r| r.parse().unwrap())
            .collect();
        let routes = "a.test>10.0.0.1:1;*.b.test>10.0.0.2:1|10.0.0.3:1"
            .parse()
            .unwrap();
        let routing = SniRouting::new(&routes, &remotes);
        let outside = |name| {
            routing
                .outside(name)
                .map(|tried| (0..3).filter(|i| tried.contains(*i)).collect::<Vec<_>>())
        };
        assert_eq!(outside(Some("A.test")), Some(vec![1, 2]));
        assert_eq!(outside(Some("x.b.test")), Some(vec![0]));
        assert_eq!(outside(Some("b.test")), None, "no default route");
        assert_eq!(outside(None), None);
        let routes = "a.test>10.0.0.1:1;*>10.0.0.3:1".parse().unwrap();
        let routing = SniRouting::new(&routes, &remotes);
        assert!(routing
            .outside(None)
            .is_some_and(|t| !t.contains(2) && t.contains(0)));
    }
}
