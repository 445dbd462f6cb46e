//! Values chosen by the server name a TLS client asks for (SNI): a listener's certificates, a
//! tunnel's routes. An exact name wins over a wildcard, and the first value given for a name
//! wins over later ones. A wildcard `*.example.com` matches one label (`a.example.com`, not
//! `a.b.example.com` nor `example.com`), as RFC 6125 says. The default, if there is one, is
//! for a client that names nothing or a name nothing matches. Names match without regard to
//! case or a final root dot.

use std::collections::HashMap;

/// Values by server name.
#[derive(Debug)]
pub(crate) struct ServerNames<T> {
    exact: HashMap<String, T>,
    /// By the part after `*.`.
    wildcard: HashMap<String, T>,
    default: Option<T>,
}

impl<T> Default for ServerNames<T> {
    fn default() -> Self {
        ServerNames {
            exact: HashMap::new(),
            wildcard: HashMap::new(),
            default: None,
        }
    }
}

impl<T> ServerNames<T> {
    /// Gives `value` for `pattern` (exact, or `*.` and a parent name), unless the pattern has
    /// one already.
    pub(crate) fn insert(&mut self, pattern: &str, value: T) {
        let pattern = normal(pattern);
        let entry = match pattern.strip_prefix("*.") {
            Some(parent) => self.wildcard.entry(parent.to_string()),
            None => self.exact.entry(pattern),
        };
        entry.or_insert(value);
    }

    /// Gives `value` to clients that match nothing, unless a default is set already.
    pub(crate) fn set_default(&mut self, value: T) {
        self.default.get_or_insert(value);
    }

    /// The value for a client that asked for `server_name` (or for none).
    pub(crate) fn get(&self, server_name: Option<&str>) -> Option<&T> {
        let Some(name) = server_name.map(normal) else {
            return self.default.as_ref();
        };
        self.exact
            .get(&name)
            .or_else(|| {
                name.split_once('.')
                    .and_then(|(_, parent)| self.wildcard.get(parent))
            })
            .or(self.default.as_ref())
    }
}

fn normal(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_then_wildcard_then_default() {
        let mut names = ServerNames::default();
        names.insert("*.example.test", "wild");
        names.insert("www.example.test", "exact");
        names.insert("WWW.example.test", "later");
        names.insert("other.test", "other");
        assert_eq!(names.get(Some("x.test")), None, "no default yet");
        names.set_default("default");
        names.set_default("second default");
        assert_eq!(names.get(Some("www.example.test")), Some(&"exact"));
        assert_eq!(names.get(Some("WWW.Example.Test.")), Some(&"exact"));
        assert_eq!(names.get(Some("api.example.test")), Some(&"wild"));
        assert_eq!(names.get(Some("a.b.example.test")), Some(&"default"));
        assert_eq!(names.get(Some("example.test")), Some(&"default"));
        assert_eq!(names.get(Some("other.test")), Some(&"other"));
        assert_eq!(names.get(None), Some(&"default"));
    }
}
