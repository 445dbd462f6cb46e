//! `sni_routes`: which of a tunnel's remotes serve which server names, for a listener that
//! routes TLS clients by the name in their ClientHello (SNI) without terminating their TLS.
//!
//! In a SPEC: `NAME>REMOTE|REMOTE;NAME>REMOTE`, each remote one of the tunnel's own, as written
//! there (`sni_routes=a.example.com>10.0.0.1:443;*.example.com>10.0.0.2:443|10.0.0.3:443`). In
//! the config file, a table of names to backend names. A name is exact (`a.example.com`), a
//! wildcard of one label (`*.example.com`), or `*`: every other name, and no name at all. Names
//! are matched without regard to case, as DNS names are.

use std::fmt;
use std::str::FromStr;

use super::Endpoint;

/// The longest DNS name (RFC 1035), which is also the longest SNI a route can match.
const MAX_NAME: usize = 253;

/// A tunnel's routes by server name, in the order given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SniRoutes(Vec<SniRoute>);

/// The remotes that serve one name.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SniRoute {
    /// The name (lower case): exact, `*.` and a parent name, or `*` for every other.
    pub name: String,
    /// The tunnel's remotes that serve it, balanced over as the tunnel's strategy says.
    pub remotes: Vec<Endpoint>,
}

/// Why routes were refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SniRouteError {
    text: String,
    why: &'static str,
}

impl fmt::Display for SniRouteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` {}", self.text, self.why)
    }
}

impl std::error::Error for SniRouteError {}

impl SniRoutes {
    /// Routes from `(name, remotes)` pairs, in order: each name checked, none twice, each
    /// with at least one remote.
    pub fn new(
        routes: impl IntoIterator<Item = (String, Vec<Endpoint>)>,
    ) -> Result<SniRoutes, SniRouteError> {
        let mut checked: Vec<SniRoute> = Vec::new();
        for (name, remotes) in routes {
            let name = server_name_pattern(&name)?;
            if checked.iter().any(|route| route.name == name) {
                return Err(refused(&name, "is routed twice"));
            }
            if remotes.is_empty() {
                return Err(refused(&name, "has no remote to go to"));
            }
            checked.push(SniRoute { name, remotes });
        }
        if checked.is_empty() {
            return Err(refused("", "names no route"));
        }
        Ok(SniRoutes(checked))
    }

    /// The routes, in the order given.
    pub fn iter(&self) -> impl Iterator<Item = &SniRoute> {
        self.0.iter()
    }
}

fn refused(text: &str, why: &'static str) -> SniRouteError {
    SniRouteError {
        text: text.to_string(),
        why,
    }
}

/// `text` as a route's name, lower case: `*`, or a DNS name whose first label may be `*`.
fn server_name_pattern(text: &str) -> Result<String, SniRouteError> {
    let name = text.trim().trim_end_matches('.').to_ascii_lowercase();
    if name == "*" {
        return Ok(name);
    }
    if name.is_empty() {
        return Err(refused(text, "is not a server name"));
    }
    if name.len() > MAX_NAME {
        return Err(refused(text, "is longer than a DNS name may be (253)"));
    }
    let exact = name.strip_prefix("*.").unwrap_or(&name);
    for label in exact.split('.') {
        let fits = !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !fits {
            return Err(refused(
                text,
                "is not a server name: labels of letters, digits, `-` and `_`, \
                 with a `*.` first for a wildcard",
            ));
        }
    }
    Ok(name)
}

impl FromStr for SniRoutes {
    type Err = SniRouteError;

    /// `NAME>REMOTE|REMOTE;NAME>REMOTE`, as a SPEC writes them.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut routes = Vec::new();
        for route in text.split(';').map(str::trim).filter(|r| !r.is_empty()) {
            let Some((name, remotes)) = route.split_once('>') else {
                return Err(refused(route, "is not NAME>REMOTE|REMOTE"));
            };
            let remotes = remotes
                .split('|')
                .map(|remote| {
                    remote
                        .trim()
                        .parse::<Endpoint>()
                        .map_err(|_| refused(remote.trim(), "is not a remote address"))
                })
                .collect::<Result<Vec<_>, _>>()?;
            routes.push((name.to_string(), remotes));
        }
        SniRoutes::new(routes)
    }
}

impl fmt::Display for SniRoutes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, route) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(";")?;
            }
            write!(f, "{}>", route.name)?;
            for (j, remote) in route.remotes.iter().enumerate() {
                if j > 0 {
                    f.write_str("|")?;
                }
                write!(f, "{remote}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_read_and_show_as_written() {
        let text = "a.example.com>10.0.0.1:443;*.Example.com.>10.0.0.2:443|backend:443;*>[::1]:443";
        let routes: SniRoutes = text.parse().unwrap();
        let names: Vec<&str> = routes.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["a.example.com", "*.example.com", "*"]);
        assert_eq!(routes.iter().nth(1).unwrap().remotes.len(), 2);
        assert_eq!(
            routes.to_string(),
            "a.example.com>10.0.0.1:443;*.example.com>10.0.0.2:443|backend:443;*>[::1]:443"
        );
        assert_eq!(routes.to_string().parse::<SniRoutes>().unwrap(), routes);
    }

    #[test]
    fn bad_routes_say_what_is_wrong() {
        let error = |text: &str| text.parse::<SniRoutes>().unwrap_err().to_string();
        assert_eq!(
            error("a.example.com"),
            "`a.example.com` is not NAME>REMOTE|REMOTE"
        );
        assert_eq!(
            error("a.example.com>nowhere"),
            "`nowhere` is not a remote address"
        );
        assert_eq!(
            error("a.example.com>10.0.0.1:1;A.example.com>10.0.0.2:1"),
            "`a.example.com` is routed twice"
        );
        assert!(error("a..b>10.0.0.1:1").starts_with("`a..b` is not a server name"));
        assert!(error("a.*.b>10.0.0.1:1").starts_with("`a.*.b` is not a server name"));
        assert_eq!(error(""), "`` names no route");
    }
}
