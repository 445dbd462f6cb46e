//! [`CertError`]: why a TLS certificate or key file could not be used, with the file. Its own
//! room, below the library's [`Error`](crate::Error) and the TLS code that reads the files.

use std::path::PathBuf;

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
    /// The certificate cannot be read as X.509.
    #[error("{}: not a readable X.509 certificate: {reason}", path.display())]
    X509 {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        reason: String,
    },
    /// The certificate has expired, or is not valid yet.
    #[error("{}: the certificate is {when}", path.display())]
    Validity {
        /// The file.
        path: PathBuf,
        /// "expired" or "not valid yet", with the date.
        when: String,
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
