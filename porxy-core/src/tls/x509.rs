//! What porxy reads from a certificate itself: the names it is for (to pick it by SNI) and
//! when it is valid (to refuse an expired one and warn of one about to be).

use std::time::{SystemTime, UNIX_EPOCH};

use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// A certificate's names and validity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CertFacts {
    /// Its DNS names, lowercase (its subject alternative names; its common name if it has
    /// none), wildcards as written (`*.example.com`).
    pub(crate) names: Vec<String>,
    /// Valid from and until, in seconds since the Unix epoch.
    pub(crate) not_before: i64,
    pub(crate) not_after: i64,
    /// Its serial number, in hex, for the logs.
    pub(crate) serial: String,
}

impl CertFacts {
    /// Reads them from a DER certificate.
    pub(crate) fn of(der: &[u8]) -> Result<CertFacts, String> {
        let (_, cert) = X509Certificate::from_der(der).map_err(|e| e.to_string())?;
        let mut names: Vec<String> = match cert.subject_alternative_name() {
            Ok(Some(san)) => san
                .value
                .general_names
                .iter()
                .filter_map(|name| match name {
                    GeneralName::DNSName(dns) => Some(dns.to_ascii_lowercase()),
                    _ => None,
                })
                .collect(),
            Ok(None) => Vec::new(),
            Err(e) => return Err(format!("its subject alternative names: {e}")),
        };
        if names.is_empty() {
            names = cert
                .subject()
                .iter_common_name()
                .filter_map(|cn| cn.as_str().ok())
                .map(str::to_ascii_lowercase)
                .collect();
        }
        let validity = cert.validity();
        Ok(CertFacts {
            names,
            not_before: validity.not_before.timestamp(),
            not_after: validity.not_after.timestamp(),
            serial: cert.raw_serial_as_string().replace(':', ""),
        })
    }

    /// When it stops being valid.
    pub(crate) fn not_after_time(&self) -> SystemTime {
        let span = std::time::Duration::from_secs(self.not_after.unsigned_abs());
        let time = if self.not_after >= 0 {
            UNIX_EPOCH.checked_add(span)
        } else {
            UNIX_EPOCH.checked_sub(span)
        };
        // Beyond what the clock can hold: the far end it can.
        time.unwrap_or(UNIX_EPOCH)
    }

    /// Seconds left before it expires at `now` (negative once expired).
    pub(crate) fn seconds_left(&self, now: SystemTime) -> i64 {
        self.not_after.saturating_sub(unix(now))
    }

    /// Whether it is not valid yet at `now`.
    pub(crate) fn not_yet_valid(&self, now: SystemTime) -> bool {
        unix(now) < self.not_before
    }
}

fn unix(at: SystemTime) -> i64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn names_and_validity_are_read() {
        let mut params =
            rcgen::CertificateParams::new(vec!["A.test".into(), "*.b.test".into()]).unwrap();
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2030, 1, 1);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let facts = CertFacts::of(cert.der()).unwrap();
        assert_eq!(facts.names, ["a.test", "*.b.test"]);
        let jan_2025 = UNIX_EPOCH + Duration::from_secs(1_735_689_600);
        assert!(!facts.not_yet_valid(jan_2025));
        assert_eq!(facts.seconds_left(jan_2025), 1_893_456_000 - 1_735_689_600);
        assert!(facts.not_yet_valid(UNIX_EPOCH));
        assert!(CertFacts::of(b"not a certificate").is_err());
    }
}
