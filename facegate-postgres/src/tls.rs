//! TLS between this node and the shared database: travel histories cross
//! the cluster's network on every record and report, so the connection is
//! encrypted and the server proven whenever the operator gives the CA that
//! signed its certificate.
//!
//! The rule is libpq's `sslmode=verify-full`, with no weaker mode: given a
//! CA, every connection is TLS (never a plain-text fallback), the server's
//! chain must reach that CA and its certificate must name the host in the
//! URL. Stricter than libpq in two ways (webpki's checks): the host must be
//! in the certificate's subjectAltName (no fallback to its common name), and
//! the certificate must be issued by the CA, not be a self-signed CA itself.
//! Without a CA, connections are plain text, as before, and a URL asking
//! for `sslmode=require` is refused rather than encrypted to a server
//! nobody verified. A client certificate and key, when given, answer a
//! server that authenticates nodes by certificate (`cert` in
//! `pg_hba.conf`, or `clientcert=verify-full`). The files are read when the
//! store opens (at start-up) and again on [`crate::PgEncounters::reload_tls`]
//! (SIGHUP), for the connections made after it; a file refused then leaves
//! the ones in force.

use std::path::PathBuf;
use std::sync::Arc;

use facegate_core::pem::{self, PemError};
use postgres::config::{Host, SslMode};
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
    #[error(transparent)]
    File(#[from] PemError),
    /// The settings contradict each other or the URL.
    #[error("{0}")]
    Settings(&'static str),
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

    /// Sets `config`'s `sslmode` by the rule above, after its refusals:
    /// `require` with a CA (the connector verifies the chain and the host
    /// name), `disable` without.
    pub(crate) fn set_mode(&self, config: &mut postgres::Config) -> Result<(), StoreTlsError> {
        self.check(config)?;
        config.ssl_mode(match self.ca {
            Some(_) => SslMode::Require,
            None => SslMode::Disable,
        });
        Ok(())
    }

    /// Reads the files into a connector for connections whose `sslmode`
    /// [`StoreTls::set_mode`] set.
    pub(crate) fn read(&self) -> Result<Loaded, StoreTlsError> {
        let Some(ca) = &self.ca else {
            // Never used while sslmode is disable; one connector type either way.
            let connector = MakeRustlsConnect::new(client_config(RootCertStore::empty(), None)?);
            return Ok(Loaded {
                connector,
                client_leaf: None,
            });
        };
        let identity = match (&self.client_cert, &self.client_key) {
            (Some(cert), Some(key)) => Some((
                pem::certificates("client certificate", cert)?,
                pem::private_key("client key", key)?,
            )),
            _ => None,
        };
        let client_leaf = identity
            .as_ref()
            .and_then(|(chain, _)| chain.first().cloned());
        Ok(Loaded {
            connector: MakeRustlsConnect::new(client_config(roots(ca)?, identity)?),
            client_leaf,
        })
    }

    /// The rule's refusals: a half-given client identity, a client
    /// identity without a CA, a URL whose `sslmode` says otherwise, and,
    /// with a CA, a host TLS cannot verify (a Unix socket, or an address
    /// without the name its certificate is for).
    fn check(&self, config: &postgres::Config) -> Result<(), StoreTlsError> {
        let refuse = |why| Err(StoreTlsError::Settings(why));
        if self.client_cert.is_some() != self.client_key.is_some() {
            return refuse("the database client certificate and its key go together: give both");
        }
        let hosts = config.get_hosts();
        match (&self.ca, config.get_ssl_mode()) {
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
            (Some(_), _) if hosts.iter().any(|h| matches!(h, Host::Unix(_))) => refuse(
                "a Unix socket is never encrypted: with a CA for the database, give a TCP host",
            ),
            (Some(_), _) if hosts.is_empty() => refuse(
                "with a CA for the database, the URL must name the host its certificate is \
                 for (host=, beside any hostaddr=)",
            ),
            _ => Ok(()),
        }
    }
}

/// What [`StoreTls::read`] made of the files.
#[derive(Clone)]
pub(crate) struct Loaded {
    /// What connections are made with.
    pub(crate) connector: MakeRustlsConnect,
    /// This node's client certificate (its chain's first), if it has one.
    pub(crate) client_leaf: Option<CertificateDer<'static>>,
}

/// The trust anchors of the CA bundle at `path`.
fn roots(path: &std::path::Path) -> Result<RootCertStore, StoreTlsError> {
    const WHAT: &str = "CA bundle";
    let mut roots = RootCertStore::empty();
    for cert in pem::certificates(WHAT, path)? {
        roots.add(cert).map_err(|e| PemError::new(WHAT, path, e))?;
    }
    Ok(roots)
}

/// A client config on the `ring` provider (the one the gRPC listeners
/// use), chosen here rather than from the process default, offering ALPN
/// `postgresql` as libpq does (PostgreSQL 17's direct TLS requires it).
fn client_config(
    roots: RootCertStore,
    identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
) -> Result<ClientConfig, StoreTlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    let mut config = match identity {
        Some((chain, key)) => builder.with_client_auth_cert(chain, key)?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"postgresql".to_vec()];
    Ok(config)
}
