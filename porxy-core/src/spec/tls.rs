//! The TLS settings that are names: the oldest version a listener takes (`tls_min_version`),
//! and whether its clients must show a certificate (`tls_client_auth`).

use std::fmt;
use std::str::FromStr;

use super::error::{Named, UnknownName};

/// A TLS protocol version.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TlsVersion {
    /// TLS 1.2 (and 1.3): the default.
    #[default]
    V1_2,
    /// TLS 1.3 only.
    V1_3,
}

impl TlsVersion {
    /// The name as written in a SPEC or a config file.
    pub fn as_str(self) -> &'static str {
        match self {
            TlsVersion::V1_2 => "1.2",
            TlsVersion::V1_3 => "1.3",
        }
    }
}

impl FromStr for TlsVersion {
    type Err = UnknownName;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let word = text.trim().to_ascii_lowercase();
        match word.trim_start_matches("tlsv").trim_start_matches("tls") {
            "1.2" | "12" => Ok(TlsVersion::V1_2),
            "1.3" | "13" => Ok(TlsVersion::V1_3),
            _ => Err(UnknownName::new(Named::TlsVersion, text)),
        }
    }
}

impl fmt::Display for TlsVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether a TLS listener's clients must show a certificate its `tls_client_ca` signed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum ClientAuth {
    /// A client without a good certificate fails its handshake: the default once
    /// `tls_client_ca` is given.
    #[default]
    Required,
    /// A client may show none; one it shows must verify.
    Optional,
}

impl ClientAuth {
    /// The name as written in a SPEC or a config file.
    pub fn as_str(self) -> &'static str {
        match self {
            ClientAuth::Required => "required",
            ClientAuth::Optional => "optional",
        }
    }
}

impl FromStr for ClientAuth {
    type Err = UnknownName;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim().to_ascii_lowercase().as_str() {
            "required" | "require" | "on" => Ok(ClientAuth::Required),
            "optional" => Ok(ClientAuth::Optional),
            _ => Err(UnknownName::new(Named::ClientAuth, text)),
        }
    }
}

impl fmt::Display for ClientAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_read_in_the_usual_spellings() {
        for (text, version) in [
            ("1.2", TlsVersion::V1_2),
            ("TLSv1.3", TlsVersion::V1_3),
            ("tls1.3", TlsVersion::V1_3),
        ] {
            assert_eq!(text.parse(), Ok(version), "{text}");
        }
        assert_eq!(
            "1.1".parse::<TlsVersion>().unwrap_err().to_string(),
            "unknown tls_min_version `1.1`; use 1.2 or 1.3"
        );
    }
}
