//! The certificates the TLS kinds terminate TLS with, made at the start of a run in its
//! temporary directory and removed with it.
//!
//! One certificate per [`CertKey`], self-signed for [`SERVER_NAME`], served by porxy, HAProxy
//! and nginx alike (the same files), and trusted by the load generator as its only root. The
//! ECDSA P-256 one is rcgen's default key pair. rcgen cannot generate RSA keys, so the RSA 2048
//! one comes from the `openssl` CLI; a machine without it loses that variant only (the caller
//! notes why). Both are end-entity certificates (no `CA:TRUE`: webpki refuses a CA certificate
//! as a server's), valid long enough that porxy does not warn about their expiry (it warns
//! within 14 days), so its log stays empty in a good run.
//!
//! The SNI section (`-sni` kinds) has a certificate of its own, ECDSA P-256 like the first:
//! its TLS backends serve it, the proxies in front hold none. It names [`OTHER_NAME`] too, so
//! the check before measuring can complete a handshake routed by the default route and see
//! where it arrived.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

use crate::error::{Context, Error, Result};
use crate::setup::CertKey;

/// The name the certificates are for, and the SNI the load generator sends.
pub const SERVER_NAME: &str = "bench.test";

/// A name no route of the SNI section names: its clients take the default route. Only the
/// check before measuring sends it; the load sends [`SERVER_NAME`].
pub const OTHER_NAME: &str = "other.test";

/// The stem of the SNI section's certificate files.
const SNI_STEM: &str = "sni-ecdsa";

/// Days the RSA certificate is valid: past porxy's 14-day expiry warning.
const RSA_DAYS: &str = "30";

/// A certificate and its key, as the proxies want them.
#[derive(Debug, Clone)]
pub struct Certificate {
    /// The certificate, PEM (porxy's `tls_cert`, nginx's `ssl_certificate`).
    pub cert: PathBuf,
    /// Its private key, PEM (porxy's `tls_key`, nginx's `ssl_certificate_key`).
    pub key: PathBuf,
    /// The certificate then the key in one PEM file (HAProxy's `crt`).
    pub combined: PathBuf,
    /// The certificate itself, for the client to trust.
    pub der: CertificateDer<'static>,
}

/// Makes the certificate with a `key_type` key in `dir`.
pub fn make(key_type: CertKey, dir: &Path) -> Result<Certificate> {
    let stem = key_type.file_stem();
    let cert = dir.join(format!("{stem}.pem"));
    let key = dir.join(format!("{stem}.key"));
    let (cert_pem, key_pem) = match key_type {
        CertKey::EcdsaP256 => ecdsa_p256(&[SERVER_NAME])?,
        CertKey::Rsa2048 => rsa_2048(&cert, &key)?,
    };
    write(dir, stem, &cert_pem, &key_pem)
}

/// Makes the SNI section's certificate in `dir`: ECDSA P-256, for [`SERVER_NAME`] and
/// [`OTHER_NAME`].
pub fn make_sni(dir: &Path) -> Result<Certificate> {
    let (cert_pem, key_pem) = ecdsa_p256(&[SERVER_NAME, OTHER_NAME])?;
    write(dir, SNI_STEM, &cert_pem, &key_pem)
}

/// Writes a certificate and its key (PEM) as `stem`'s three files in `dir`.
fn write(dir: &Path, stem: &str, cert_pem: &str, key_pem: &str) -> Result<Certificate> {
    let cert = dir.join(format!("{stem}.pem"));
    let key = dir.join(format!("{stem}.key"));
    let combined = dir.join(format!("{stem}.combined.pem"));
    for (path, text) in [
        (&cert, cert_pem.to_owned()),
        (&key, key_pem.to_owned()),
        (&combined, format!("{cert_pem}{key_pem}")),
    ] {
        fs::write(path, text).context(|| format!("writing {}", path.display()))?;
    }
    let der = CertificateDer::from_pem_slice(cert_pem.as_bytes())
        .context(|| format!("reading back {}", cert.display()))?;
    Ok(Certificate {
        cert,
        key,
        combined,
        der,
    })
}

/// rcgen's default key pair (ECDSA P-256 with SHA-256) and a self-signed certificate for
/// `names` (its common name [`SERVER_NAME`]), as PEM.
fn ecdsa_p256(names: &[&str]) -> Result<(String, String)> {
    let key = rcgen::KeyPair::generate().context(|| "generating an ECDSA P-256 key")?;
    let names: Vec<String> = names.iter().map(|&n| n.to_owned()).collect();
    let mut params =
        rcgen::CertificateParams::new(names).context(|| "the certificate's parameters")?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, SERVER_NAME);
    let cert = params
        .self_signed(&key)
        .context(|| "signing the ECDSA certificate")?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// An RSA 2048 key and a self-signed certificate for [`SERVER_NAME`] from `openssl req`,
/// written to `cert` and `key` and returned as PEM. `openssl req -x509` marks its certificates
/// `CA:TRUE` by default, which webpki refuses for a server: `CA:FALSE` is asked for.
fn rsa_2048(cert: &Path, key: &Path) -> Result<(String, String)> {
    let output = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes"])
        .args(["-subj", &format!("/CN={SERVER_NAME}")])
        .args(["-addext", &format!("subjectAltName=DNS:{SERVER_NAME}")])
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .args(["-days", RSA_DAYS])
        .arg("-keyout")
        .arg(key)
        .arg("-out")
        .arg(cert)
        .output()
        .context(|| "running openssl (for the RSA 2048 certificate)")?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let last = stderr.lines().rev().find(|l| !l.trim().is_empty());
        return Err(Error::new(format!(
            "openssl req for the RSA 2048 certificate: {}: {}",
            output.status,
            last.unwrap_or("(no message)")
        )));
    }
    let read =
        |path: &Path| fs::read_to_string(path).context(|| format!("reading {}", path.display()));
    Ok((read(cert)?, read(key)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A directory of the test's own, removed at the end.
    struct Dir(PathBuf);

    impl Dir {
        fn new(name: &str) -> Dir {
            let path = std::env::temp_dir()
                .join(format!("porxy-bench-certs-{name}-{}", std::process::id()));
            fs::create_dir_all(&path).expect("a temporary directory");
            Dir(path)
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn check(made: &Certificate) {
        let cert = fs::read_to_string(&made.cert).expect("the certificate file");
        let key = fs::read_to_string(&made.key).expect("the key file");
        assert!(cert.starts_with("-----BEGIN CERTIFICATE-----"), "{cert}");
        assert!(key.contains("PRIVATE KEY-----"), "{key}");
        let combined = fs::read_to_string(&made.combined).expect("the combined file");
        assert_eq!(combined, format!("{cert}{key}"));
        assert!(!made.der.is_empty());
    }

    #[test]
    fn the_ecdsa_certificate_is_written_three_ways() {
        let dir = Dir::new("ecdsa");
        let made = make(CertKey::EcdsaP256, &dir.0).expect("an ECDSA certificate");
        check(&made);
        assert!(made.cert.starts_with(&dir.0));
    }

    #[test]
    fn the_sni_certificate_has_files_of_its_own() {
        let dir = Dir::new("sni");
        let made = make_sni(&dir.0).expect("the SNI section's certificate");
        check(&made);
        let plain = make(CertKey::EcdsaP256, &dir.0).expect("the TLS section's");
        assert_ne!(made.cert, plain.cert);
        assert!(made.der.len() > plain.der.len(), "one name more");
    }

    #[test]
    fn the_rsa_certificate_comes_from_openssl_when_there_is_one() {
        let dir = Dir::new("rsa");
        match make(CertKey::Rsa2048, &dir.0) {
            Ok(made) => check(&made),
            // A machine without openssl loses this variant only; the run says why.
            Err(err) => assert!(err.to_string().contains("openssl"), "{err}"),
        }
    }
}
