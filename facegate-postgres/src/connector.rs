//! The TLS connector that new connections to the database are made with,
//! replaceable while the store runs: a rotated CA bundle or client
//! certificate is read again on reload ([`Connector::reload`]) and used by
//! every connection made afterwards, the writer's and the read pool's.
//! A connection already open stays as it is: it was verified when made.

use std::sync::{Arc, RwLock};

use rustls::pki_types::CertificateDer;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::tls::{Loaded, StoreTls, StoreTlsError};

/// The TLS files and the connector last read from them, shared by the
/// writer thread and the read pool.
#[derive(Clone)]
pub(crate) struct Connector {
    files: StoreTls,
    current: Arc<RwLock<Loaded>>,
}

impl Connector {
    /// Sets `config`'s `sslmode` by the files' rule ([`crate::tls`]) and
    /// reads them.
    pub(crate) fn open(
        files: &StoreTls,
        config: &mut postgres::Config,
    ) -> Result<Connector, StoreTlsError> {
        files.set_mode(config)?;
        Ok(Connector {
            files: files.clone(),
            current: Arc::new(RwLock::new(files.read()?)),
        })
    }

    /// What the next connection is made with.
    pub(crate) fn current(&self) -> MakeRustlsConnect {
        self.loaded().connector
    }

    /// The client certificate in force, if there is one.
    pub(crate) fn client_certificate(&self) -> Option<CertificateDer<'static>> {
        self.loaded().client_leaf
    }

    fn loaded(&self) -> Loaded {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Reads the files again: on success the next connections use them;
    /// a file that cannot be used is refused, naming it, and the
    /// connector in force stays.
    pub(crate) fn reload(&self) -> Result<(), StoreTlsError> {
        let fresh = self.files.read()?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = fresh;
        Ok(())
    }
}
