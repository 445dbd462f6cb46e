//! Which certificate a TLS listener shows a client: the one whose names match the server name
//! the client asked for (SNI), exactly or by a wildcard, else the default. rustls's own SNI
//! resolver matches exact names only and has no default, hence this one.
//!
//! Names come from the certificates themselves (their DNS subject alternative names), matched
//! as [`ServerNames`] says; between two certificates with the same name, the first listed
//! wins. The default, for a client that names nothing or a name no certificate has, is the
//! first certificate listed.

use std::sync::Arc;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::certs::Identity;
use super::server_names::ServerNames;

/// A listener's certificates, by the names they are for.
#[derive(Debug)]
pub(crate) struct SniResolver {
    names: ServerNames<Arc<CertifiedKey>>,
    default: Arc<CertifiedKey>,
}

impl SniResolver {
    /// The resolver of `identities`, in order (the first is the default); `None` if empty.
    pub(crate) fn new(identities: &[Identity]) -> Option<SniResolver> {
        let default = identities.first()?.key.clone();
        let mut names = ServerNames::default();
        for identity in identities {
            for name in &identity.facts.names {
                names.insert(name, identity.key.clone());
            }
        }
        Some(SniResolver { names, default })
    }

    /// The certificate for a client that asked for `server_name` (or for none).
    pub(crate) fn pick(&self, server_name: Option<&str>) -> &Arc<CertifiedKey> {
        self.names.get(server_name).unwrap_or(&self.default)
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
