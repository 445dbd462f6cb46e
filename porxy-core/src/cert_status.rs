//! A certificate a tunnel holds, as status shows it: what it is for, its file, serial, names
//! and expiry. A leaf: TLS makes these when it reads its files, status reports them.

use std::fmt;
use std::path::PathBuf;
use std::time::SystemTime;

/// A certificate a tunnel holds, and when it expires.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CertificateStatus {
    /// The PEM file it was read from.
    pub path: PathBuf,
    /// What the tunnel uses it for.
    pub role: CertificateRole,
    /// Its serial number, in hex.
    pub serial: String,
    /// The DNS names it is for.
    pub names: Vec<String>,
    /// When it stops being valid.
    pub not_after: SystemTime,
}

/// What a tunnel uses a certificate for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CertificateRole {
    /// Shown to the listener's clients (`tls_cert`).
    Listener,
    /// Shown to backends that ask for a client certificate (`backend_tls_cert`).
    BackendClient,
}

impl CertificateRole {
    /// A stable name, for status output.
    pub fn as_str(self) -> &'static str {
        match self {
            CertificateRole::Listener => "listener",
            CertificateRole::BackendClient => "backend_client",
        }
    }
}

impl fmt::Display for CertificateRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl CertificateStatus {
    /// A certificate read from `path`, used as `role`, valid until `not_after`, with the given
    /// serial and names: for a front end's own tests (snapshots are the proxy's).
    pub fn new(
        path: PathBuf,
        role: CertificateRole,
        serial: String,
        names: Vec<String>,
        not_after: SystemTime,
    ) -> CertificateStatus {
        CertificateStatus {
            path,
            role,
            serial,
            names,
            not_after,
        }
    }

    /// Whole days left before it expires at `now` (negative once it has).
    pub fn days_left(&self, now: SystemTime) -> i64 {
        let secs = match self.not_after.duration_since(now) {
            Ok(left) => i64::try_from(left.as_secs()).unwrap_or(i64::MAX),
            Err(past) => -i64::try_from(past.duration().as_secs()).unwrap_or(i64::MAX),
        };
        secs.div_euclid(86_400)
    }
}
