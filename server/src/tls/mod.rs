//! TLS for the gRPC listeners (rustls, with the `ring` provider: no C
//! toolchain beyond cc, no OpenSSL): the server's certificate and key, and
//! for mutual TLS the CA bundle that client certificates must chain to.
//!
//! Loaded from PEM files into a rustls [`ServerConfig`] by [`load`]; the
//! accept loop ([`incoming`]) takes the current config for each new
//! connection, so a reload (by the credentials module) changes what new
//! connections get while existing ones keep theirs.

pub mod incoming;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use facegate_core::pem::{self, PemError};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{self, RootCertStore, ServerConfig};
use x509_parser::prelude::{FromDer, X509Certificate};

/// The files one listener's TLS is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The server's certificate chain (PEM, leaf first).
    pub cert: PathBuf,
    /// The server's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// The CA bundle (PEM) client certificates must chain to: mutual TLS.
    /// Without it, clients are not asked for a certificate.
    pub client_ca: Option<PathBuf>,
    /// Certificate revocation lists (PEM) client certificates are checked
    /// against: how a lost port device's certificate is revoked before it
    /// expires.
    pub client_crl: Option<PathBuf>,
}

/// Why a listener's TLS files were refused; each names its file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or holds no PEM of the expected kind
    /// ("certificate", "private key", "client CA bundle", "revocation list").
    #[error(transparent)]
    File(#[from] PemError),
    /// rustls refused the combination (e.g. the key does not match the
    /// certificate).
    #[error("TLS configuration from {cert} and {key}: {source}")]
    Config {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// What rustls said.
        source: rustls::Error,
    },
}

/// A listener's TLS, loaded: the config new connections use and when the
/// server's certificate expires.
#[derive(Debug, Clone)]
pub struct LoadedTls {
    /// What the acceptor hands each new connection.
    pub config: Arc<ServerConfig>,
    /// The leaf certificate's expiry, Unix seconds (for the metric).
    pub not_after_unix: Option<i64>,
}

fn file_error(what: &'static str, path: &Path, reason: impl ToString) -> TlsError {
    TlsError::File(PemError::new(what, path, reason))
}

/// The client verifier of a mutual-TLS listener: chains to `ca`, and is
/// not revoked by a list in `crl` (the end entity's issuer's list; a
/// certificate whose issuer has no list there passes, so that one list can
/// serve a bundle of several CAs). A client that sends no certificate is
/// let through TLS so that the call can be answered UNAUTHENTICATED, or
/// take an API key where the listener has keys (the auth gate),
/// rather than fail as a bare handshake error.
fn client_verifier(
    ca: &Path,
    crl: Option<&Path>,
    provider: &Arc<rustls::crypto::CryptoProvider>,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, TlsError> {
    const WHAT: &str = "client CA bundle";
    let mut roots = RootCertStore::empty();
    for cert in pem::certificates(WHAT, ca)? {
        roots.add(cert).map_err(|e| file_error(WHAT, ca, e))?;
    }
    let mut builder =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .allow_unauthenticated();
    if let Some(crl) = crl {
        builder = builder
            .with_crls(pem::revocation_lists("revocation list", crl)?)
            .only_check_end_entity_revocation()
            .allow_unknown_revocation_status();
    }
    builder.build().map_err(|e| file_error(WHAT, ca, e))
}

/// Reads a listener's TLS files into a rustls config offering HTTP/2 (gRPC
/// clients insist on ALPN `h2`).
pub fn load(files: &TlsFiles) -> Result<LoadedTls, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = pem::certificates("certificate", &files.cert)?;
    let key = pem::private_key("private key", &files.key)?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|source| config_error(files, source))?;
    let builder = match &files.client_ca {
        Some(ca) => builder.with_client_cert_verifier(client_verifier(
            ca,
            files.client_crl.as_deref(),
            &provider,
        )?),
        None => builder.with_no_client_auth(),
    };
    let not_after_unix = not_after(&chain[0]);
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|source| config_error(files, source))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(LoadedTls {
        config: Arc::new(config),
        not_after_unix,
    })
}

/// When a certificate (DER) expires, Unix seconds, for the expiry
/// metric; `None` when it cannot be parsed (rustls judges it, not this).
pub fn not_after(der: &[u8]) -> Option<i64> {
    X509Certificate::from_der(der)
        .ok()
        .map(|(_, c)| c.validity().not_after.timestamp())
}

fn config_error(files: &TlsFiles, source: rustls::Error) -> TlsError {
    TlsError::Config {
        cert: files.cert.clone(),
        key: files.key.clone(),
        source,
    }
}
