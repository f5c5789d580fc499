//! TLS between this node and the shared database: travel histories cross
//! the cluster's network on every record and report, so the connection is
//! encrypted and the server proven whenever the operator gives the CA that
//! signed its certificate.
//!
//! The rule is libpq's `sslmode=verify-full`, with no weaker mode: given a
//! CA, every connection is TLS (never a plain-text fallback), the server's
//! chain must reach that CA and its certificate must name the host in the
//! URL. Without a CA, connections are plain text, as before, and a URL
//! asking for `sslmode=require` is refused rather than encrypted to a
//! server nobody verified. A client certificate and key, when given,
//! answer a server that authenticates nodes by certificate (`cert` in
//! `pg_hba.conf`, or `clientcert=verify-full`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use postgres::config::SslMode;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};
use tokio_postgres_rustls::MakeRustlsConnect;

/// The files this node's connections to the database are secured with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreTls {
    /// The CA bundle (PEM) the database's certificate must chain to; with
    /// it every connection is TLS, without it none is.
    pub ca: Option<PathBuf>,
    /// This node's certificate chain (PEM, leaf first), for a database
    /// that authenticates clients by certificate; given with `client_key`.
    pub client_cert: Option<PathBuf>,
    /// Its private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub client_key: Option<PathBuf>,
}

/// Why the TLS settings cannot be used; each names its file or setting.
#[derive(Debug, thiserror::Error)]
pub enum StoreTlsError {
    /// A file could not be read or holds no PEM of the expected kind.
    #[error("{what} {path}: {reason}")]
    File {
        /// Which file ("CA bundle", "client certificate", "client key").
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The settings contradict each other or the URL.
    #[error("{0}")]
    Settings(String),
    /// rustls refused the combination (e.g. a key that does not match its
    /// certificate).
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

impl StoreTls {
    /// Whether connections are TLS.
    pub fn is_on(&self) -> bool {
        self.ca.is_some()
    }

    /// The connector for `config`'s connections, after setting its
    /// `sslmode` by the rule above: `require` with a CA (the connector
    /// verifies the chain and the host name), `disable` without.
    pub(crate) fn connector(
        &self,
        config: &mut postgres::Config,
    ) -> Result<MakeRustlsConnect, StoreTlsError> {
        self.check(config.get_ssl_mode())?;
        let Some(ca) = &self.ca else {
            config.ssl_mode(SslMode::Disable);
            // Never used while sslmode is disable; one connector type either way.
            return Ok(MakeRustlsConnect::new(client_config(
                RootCertStore::empty(),
                None,
            )?));
        };
        config.ssl_mode(SslMode::Require);
        let identity = match (&self.client_cert, &self.client_key) {
            (Some(cert), Some(key)) => {
                Some((certificates(cert, "client certificate")?, key_of(key)?))
            }
            _ => None,
        };
        Ok(MakeRustlsConnect::new(client_config(roots(ca)?, identity)?))
    }

    /// The rule's refusals: a half-given client identity, a client
    /// identity without a CA, and a URL whose `sslmode` says otherwise.
    fn check(&self, url_mode: SslMode) -> Result<(), StoreTlsError> {
        let refuse = |why: &str| Err(StoreTlsError::Settings(why.to_string()));
        if self.client_cert.is_some() != self.client_key.is_some() {
            return refuse("the database client certificate and its key go together: give both");
        }
        match (&self.ca, url_mode) {
            (None, _) if self.client_cert.is_some() => refuse(
                "a database client certificate needs the CA that signed the database's \
                 certificate: certificates are only sent over TLS",
            ),
            (None, SslMode::Require) => refuse(
                "the URL asks for sslmode=require: give the CA that signed the database's \
                 certificate, so that the server is verified, not only encrypted to",
            ),
            (Some(_), SslMode::Disable) => refuse(
                "the URL asks for sslmode=disable, but a CA for the database is given: \
                 with a CA every connection is TLS",
            ),
            _ => Ok(()),
        }
    }
}

fn file_error(what: &'static str, path: &Path, reason: impl ToString) -> StoreTlsError {
    StoreTlsError::File {
        what,
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// Every certificate in the PEM file at `path` (at least one).
fn certificates(
    path: &Path,
    what: &'static str,
) -> Result<Vec<CertificateDer<'static>>, StoreTlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| file_error(what, path, e))?;
    if certs.is_empty() {
        return Err(file_error(what, path, "no PEM certificate in it"));
    }
    Ok(certs)
}

fn key_of(path: &Path) -> Result<PrivateKeyDer<'static>, StoreTlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| file_error("client key", path, e))
}

/// The trust anchors of the CA bundle at `path`.
fn roots(path: &Path) -> Result<RootCertStore, StoreTlsError> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(path, "CA bundle")? {
        roots
            .add(cert)
            .map_err(|e| file_error("CA bundle", path, e))?;
    }
    Ok(roots)
}

/// A client config on the `ring` provider (the one the gRPC listeners
/// use), chosen here rather than from the process default.
fn client_config(
    roots: RootCertStore,
    identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
) -> Result<ClientConfig, StoreTlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    let config = match identity {
        Some((chain, key)) => builder.with_client_auth_cert(chain, key)?,
        None => builder.with_no_client_auth(),
    };
    Ok(config)
}
