//! Certificates and keys read from PEM files: a chain and its private key become one
//! [`Identity`], checked once where it enters (parse, don't validate): the files exist and
//! read, hold PEM of the right kind, the key is the certificate's, and the certificate is valid
//! now.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::x509::CertFacts;
pub(crate) use crate::cert_error::CertError;
use crate::cert_status::{CertificateRole, CertificateStatus};

/// A certificate chain with its key, ready to sign, and what its certificate says.
#[derive(Debug, Clone)]
pub(crate) struct Identity {
    pub(crate) key: Arc<CertifiedKey>,
    pub(crate) facts: CertFacts,
    /// The chain's file, for the logs.
    pub(crate) path: PathBuf,
}

impl Identity {
    /// What status shows of it, used as `role`.
    pub(crate) fn status(&self, role: CertificateRole) -> CertificateStatus {
        CertificateStatus {
            path: self.path.clone(),
            role,
            serial: self.facts.serial.clone(),
            names: self.facts.names.clone(),
            not_after: self.facts.not_after_time(),
        }
    }
}

/// The chain in `cert` (the server's certificate first) with the private key in `key`, valid
/// at `now`.
pub(crate) fn identity(
    cert: &Path,
    key: &Path,
    provider: &CryptoProvider,
    now: SystemTime,
) -> Result<Identity, CertError> {
    let chain = chain(cert)?;
    let facts = CertFacts::of(&chain[0]).map_err(|reason| CertError::X509 {
        path: cert.to_path_buf(),
        reason,
    })?;
    let date = |secs: i64| humantime::format_rfc3339_seconds(unix_time(secs)).to_string();
    if facts.seconds_left(now) < 0 {
        let when = format!("expired since {}", date(facts.not_after));
        return Err(validity(cert, when));
    }
    if facts.not_yet_valid(now) {
        let when = format!("not valid before {}", date(facts.not_before));
        return Err(validity(cert, when));
    }
    let private = private_key(key)?;
    let key = CertifiedKey::from_der(chain, private, provider)
        .map(Arc::new)
        .map_err(|e| CertError::Mismatch {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            reason: e.to_string(),
        })?;
    Ok(Identity {
        key,
        facts,
        path: cert.to_path_buf(),
    })
}

fn validity(path: &Path, when: String) -> CertError {
    CertError::Validity {
        path: path.to_path_buf(),
        when,
    }
}

fn unix_time(secs: i64) -> SystemTime {
    UNIX_EPOCH + std::time::Duration::from_secs(u64::try_from(secs).unwrap_or(0))
}

/// Every certificate in `path`, in order; at least one.
pub(crate) fn chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, CertError> {
    let text = read(path)?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&text)
        .collect::<Result<_, _>>()
        .map_err(|e| pem_error(path, format!("not a PEM certificate chain ({e})")))?;
    if chain.is_empty() {
        return Err(pem_error(path, "holds no CERTIFICATE block".into()));
    }
    Ok(chain)
}

/// The private key in `path` (PKCS#8, PKCS#1 RSA or SEC1 EC).
pub(crate) fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, CertError> {
    let text = read(path)?;
    PrivateKeyDer::from_pem_slice(&text)
        .map_err(|e| pem_error(path, format!("holds no usable PRIVATE KEY block ({e})")))
}

fn read(path: &Path) -> Result<Vec<u8>, CertError> {
    std::fs::read(path).map_err(|source| CertError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn pem_error(path: &Path, what: String) -> CertError {
    CertError::Pem {
        path: path.to_path_buf(),
        what,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("porxy-certs-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_chain_and_its_key_load_and_every_fault_names_its_file() {
        let dir = temp_dir("faults");
        let provider = crate::tls::provider();
        let one = rcgen::generate_simple_self_signed(vec!["a.test".into()]).unwrap();
        let other = rcgen::generate_simple_self_signed(vec!["b.test".into()]).unwrap();
        let cert = write(&dir, "a.pem", &one.cert.pem());
        let key = write(&dir, "a.key", &one.signing_key.serialize_pem());
        let wrong_key = write(&dir, "b.key", &other.signing_key.serialize_pem());
        let garbage = write(&dir, "garbage.pem", "hello\n");

        let now = SystemTime::now();
        let certified_key = |cert: &Path, key: &Path, provider| identity(cert, key, provider, now);
        let loaded = certified_key(&cert, &key, &provider).expect("a good pair");
        assert_eq!(loaded.key.cert.len(), 1);
        assert_eq!(loaded.facts.names, ["a.test"]);

        let missing = dir.join("missing.pem");
        let err = certified_key(&missing, &key, &provider).unwrap_err();
        assert!(matches!(err, CertError::Read { .. }), "{err}");
        assert!(err.to_string().starts_with(&missing.display().to_string()));

        let err = certified_key(&garbage, &key, &provider).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("{}: holds no CERTIFICATE block", garbage.display())
        );
        let err = certified_key(&cert, &garbage, &provider).unwrap_err();
        assert!(matches!(err, CertError::Pem { .. }), "{err}");
        assert!(err.to_string().contains("PRIVATE KEY"), "{err}");

        let err = certified_key(&cert, &wrong_key, &provider).unwrap_err();
        assert!(matches!(err, CertError::Mismatch { .. }), "{err}");
        assert!(
            err.to_string().starts_with(&format!(
                "{} does not go with {}",
                wrong_key.display(),
                cert.display()
            )),
            "{err}"
        );
        // Valid only in the past, or only in the future: refused with the date.
        for (years, said) in [
            ((2000, 2001), "expired since 2001-01-01"),
            ((2999, 3000), "not valid before 2999-01-01"),
        ] {
            let mut params = rcgen::CertificateParams::new(vec!["old.test".into()]).unwrap();
            params.not_before = rcgen::date_time_ymd(years.0, 1, 1);
            params.not_after = rcgen::date_time_ymd(years.1, 1, 1);
            let key_pair = rcgen::KeyPair::generate().unwrap();
            let dated = params.self_signed(&key_pair).unwrap();
            let path = write(&dir, "dated.pem", &dated.pem());
            let key_path = write(&dir, "dated.key", &key_pair.serialize_pem());
            let err = certified_key(&path, &key_path, &provider).unwrap_err();
            assert!(matches!(err, CertError::Validity { .. }), "{err}");
            assert!(err.to_string().contains(said), "{err}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
