//! Which certificate a TLS listener shows a client: the one whose names match the server name
//! the client asked for (SNI), exactly or by a wildcard, else the default. rustls's own SNI
//! resolver matches exact names only and has no default, hence this one.
//!
//! Names come from the certificates themselves (their DNS subject alternative names). An exact
//! name wins over a wildcard; between two certificates with the same name, the first listed
//! wins. A wildcard `*.example.com` matches one label (`a.example.com`, not
//! `a.b.example.com` nor `example.com`), as RFC 6125 says. The default, for a client that
//! names nothing or a name no certificate has, is the first certificate listed.

use std::collections::HashMap;
use std::sync::Arc;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::certs::Identity;

/// A listener's certificates, by the names they are for.
#[derive(Debug)]
pub(crate) struct SniResolver {
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// By the part after `*.`.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    default: Arc<CertifiedKey>,
}

impl SniResolver {
    /// The resolver of `identities`, in order (the first is the default); `None` if empty.
    pub(crate) fn new(identities: &[Identity]) -> Option<SniResolver> {
        let default = identities.first()?.key.clone();
        let mut exact = HashMap::new();
        let mut wildcard = HashMap::new();
        for identity in identities {
            for name in &identity.facts.names {
                let map = match name.strip_prefix("*.") {
                    Some(parent) => wildcard.entry(parent.to_string()),
                    None => exact.entry(name.clone()),
                };
                map.or_insert_with(|| identity.key.clone());
            }
        }
        Some(SniResolver {
            exact,
            wildcard,
            default,
        })
    }

    /// The certificate for a client that asked for `server_name` (or for none).
    pub(crate) fn pick(&self, server_name: Option<&str>) -> &Arc<CertifiedKey> {
        let Some(name) = server_name.map(|n| n.trim_end_matches('.').to_ascii_lowercase()) else {
            return &self.default;
        };
        if let Some(key) = self.exact.get(&name) {
            return key;
        }
        name.split_once('.')
            .and_then(|(_, parent)| self.wildcard.get(parent))
            .unwrap_or(&self.default)
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.pick(client_hello.server_name()).clone())
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::SystemTime;

    use super::*;
    use crate::tls::x509::CertFacts;

    fn identity(names: &[&str]) -> Identity {
        let key = rcgen::KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let cert = rcgen::CertificateParams::new(names)
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let der = rustls_pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap();
        let provider = crate::tls::provider();
        let certified = CertifiedKey::from_der(vec![cert.der().clone()], der, &provider).unwrap();
        let _ = SystemTime::now();
        Identity {
            facts: CertFacts::of(cert.der()).unwrap(),
            key: Arc::new(certified),
            path: PathBuf::from("test.pem"),
        }
    }

    #[test]
    fn exact_then_wildcard_then_default() {
        let default = identity(&["default.test"]);
        let wild = identity(&["*.example.test"]);
        let exact = identity(&["www.example.test", "other.test"]);
        let resolver = SniResolver::new(&[default.clone(), wild.clone(), exact.clone()]).unwrap();
        let is = |picked: &Arc<CertifiedKey>, want: &Identity| Arc::ptr_eq(picked, &want.key);
        assert!(
            is(resolver.pick(Some("www.example.test")), &exact),
            "exact wins"
        );
        assert!(
            is(resolver.pick(Some("WWW.Example.Test.")), &exact),
            "case and root dot"
        );
        assert!(is(resolver.pick(Some("api.example.test")), &wild));
        assert!(
            is(resolver.pick(Some("a.b.example.test")), &default),
            "one label only"
        );
        assert!(is(resolver.pick(Some("example.test")), &default));
        assert!(is(resolver.pick(Some("other.test")), &exact));
        assert!(is(resolver.pick(None), &default));
        assert!(is(resolver.pick(Some("unknown.test")), &default));
        assert!(SniResolver::new(&[]).is_none());
    }
}
