//! Certificates and keys read from PEM files: a chain and its private key become one
//! [`CertifiedKey`], checked once where it enters (parse, don't validate): the files exist and
//! read, hold PEM of the right kind, and the key is the certificate's.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Why a certificate or key could not be used: each names its file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CertError {
    /// The file could not be read.
    #[error("{}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The file holds no PEM block of the kind wanted, or a malformed one.
    #[error("{}: {what}", path.display())]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        what: String,
    },
    /// The key cannot sign with this crypto provider, or is not the certificate's.
    #[error("{} does not go with {}: {reason}", key.display(), cert.display())]
    Mismatch {
        /// The certificate chain's file.
        cert: PathBuf,
        /// The key's file.
        key: PathBuf,
        /// What rustls said.
        reason: String,
    },
}

/// The chain in `cert` (the server's certificate first) with the private key in `key`.
pub(crate) fn certified_key(
    cert: &Path,
    key: &Path,
    provider: &CryptoProvider,
) -> Result<Arc<CertifiedKey>, CertError> {
    let chain = chain(cert)?;
    let private = private_key(key)?;
    CertifiedKey::from_der(chain, private, provider)
        .map(Arc::new)
        .map_err(|e| CertError::Mismatch {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            reason: e.to_string(),
        })
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
fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, CertError> {
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

        let loaded = certified_key(&cert, &key, &provider).expect("a good pair");
        assert_eq!(loaded.cert.len(), 1);

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
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
