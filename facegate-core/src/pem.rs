//! Certificates, private keys and revocation lists read from PEM files,
//! alike wherever facegate speaks TLS (the gRPC listeners, the shared
//! store's client): a file that cannot be read, or holds none of what it
//! was meant to, is an error naming the file and what it was meant to be.

use std::path::{Path, PathBuf};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};

/// A PEM file that could not be used.
#[derive(Debug, thiserror::Error)]
#[error("{what} {path}: {reason}")]
pub struct PemError {
    /// What the file was meant to be ("certificate", "client CA bundle").
    pub what: &'static str,
    /// The file.
    pub path: PathBuf,
    /// What is wrong with it.
    pub reason: String,
}

impl PemError {
    /// The error for `path`, meant to be `what`, because of `reason`.
    pub fn new(what: &'static str, path: &Path, reason: impl ToString) -> PemError {
        PemError {
            what,
            path: path.to_path_buf(),
            reason: reason.to_string(),
        }
    }
}

/// Every certificate in the file (a chain, or a CA bundle); an error when
/// it holds none.
pub fn certificates(
    what: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, PemError> {
    every(what, path, "CERTIFICATE")
}

/// The file's private key (PKCS#8, PKCS#1 or SEC1).
pub fn private_key(what: &'static str, path: &Path) -> Result<PrivateKeyDer<'static>, PemError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| PemError::new(what, path, e))
}

/// Every revocation list in the file; an error when it holds none.
pub fn revocation_lists(
    what: &'static str,
    path: &Path,
) -> Result<Vec<CertificateRevocationListDer<'static>>, PemError> {
    every(what, path, "X509 CRL")
}

/// Every `label` block of the file, at least one.
fn every<T: PemObject>(what: &'static str, path: &Path, label: &str) -> Result<Vec<T>, PemError> {
    let items = T::pem_file_iter(path)
        .and_then(|items| items.collect::<Result<Vec<_>, _>>())
        .map_err(|e| PemError::new(what, path, e))?;
    if items.is_empty() {
        return Err(PemError::new(what, path, format!("no {label} block")));
    }
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_without_the_block_it_should_hold_is_named_with_what_it_lacks() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("k.pem");
        std::fs::write(
            &key,
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        let e = certificates("CA bundle", &key).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("CA bundle {}: no CERTIFICATE block", key.display())
        );
        let missing = dir.path().join("absent.pem");
        let e = revocation_lists("revocation list", &missing).unwrap_err();
        assert!(
            e.to_string()
                .starts_with(&format!("revocation list {}:", missing.display()))
        );
        assert!(private_key("client key", &missing).is_err());
    }
}
