//! What each gRPC listener accepts as proof of who is calling, held so that
//! it can be re-read without a restart: its TLS files (server certificate,
//! key, client CA bundle) and its API keys file; and the shared encounter
//! store's TLS files (its CA bundle, this node's client certificate).
//! [`Credentials::reload`] (SIGHUP, the Reload RPC) reads every file again;
//! a file that fails keeps its old contents, with an error logged and
//! counted, and the others are taken. New connections and calls see the
//! new contents; established connections keep the TLS session they have.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock, RwLock};

use facegate_core::keys::KeyRing;
use facegate_postgres::{PgEncounters, StoreTls};
use tokio_rustls::rustls::ServerConfig;

use crate::metrics::Metrics;
use crate::tls::{self, TlsFiles};

/// One listener's credentials, current.
pub struct ListenerCredentials {
    /// "ports" or "admin": labels metrics and logs.
    listener: &'static str,
    keys_file: Option<PathBuf>,
    keys: RwLock<Option<Arc<KeyRing>>>,
    tls_files: Option<TlsFiles>,
    tls: RwLock<Option<Arc<ServerConfig>>>,
    metrics: Arc<Metrics>,
}

/// A file a reload could not take (the old contents stay in force).
#[derive(Debug, Clone)]
pub struct ReloadFailure {
    /// The listener whose file it is, or `encounter_store` for the
    /// shared store's.
    pub listener: &'static str,
    /// What failed, naming the file.
    pub error: String,
}

impl ListenerCredentials {
    /// Reads the listener's files; any error stops start-up.
    pub fn load(
        listener: &'static str,
        keys_file: Option<PathBuf>,
        tls_files: Option<TlsFiles>,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<ListenerCredentials> {
        let credentials = ListenerCredentials {
            listener,
            keys_file,
            keys: RwLock::new(None),
            tls_files,
            tls: RwLock::new(None),
            metrics,
        };
        if let Some(e) = credentials.reload().into_iter().next() {
            anyhow::bail!("{}", e.error);
        }
        Ok(credentials)
    }

    /// "ports" or "admin".
    pub fn listener(&self) -> &'static str {
        self.listener
    }

    /// The keys the listener takes now, if it takes keys.
    pub fn keys(&self) -> Option<Arc<KeyRing>> {
        read(&self.keys)
    }

    /// The TLS config new connections get, if the listener speaks TLS.
    pub fn tls_config(&self) -> Option<Arc<ServerConfig>> {
        read(&self.tls)
    }

    /// Whether the listener speaks TLS at all.
    pub fn has_tls(&self) -> bool {
        self.tls_files.is_some()
    }

    /// Whether clients are asked for a certificate (a client CA is set).
    pub fn verifies_clients(&self) -> bool {
        self.tls_files
            .as_ref()
            .is_some_and(|f| f.client_ca.is_some())
    }

    /// Reads every file again, keeping the old contents of one that fails;
    /// returns the failures (none: all taken).
    pub fn reload(&self) -> Vec<ReloadFailure> {
        let mut failures = Vec::new();
        if let Some(path) = &self.keys_file {
            match KeyRing::load(path) {
                Ok(ring) => {
                    tracing::info!(listener = self.listener, keys = ring.len(), "keys loaded");
                    write(&self.keys, Some(Arc::new(ring)));
                }
                Err(e) => failures.push(self.failure(e.to_string())),
            }
        }
        if let Some(files) = &self.tls_files {
            match tls::load(files) {
                Ok(loaded) => {
                    if let Some(t) = loaded.not_after_unix {
                        self.metrics
                            .tls_certificate_expiry
                            .with_label_values(&[self.listener])
                            .set(t);
                    }
                    tracing::info!(
                        listener = self.listener,
                        mutual = files.client_ca.is_some(),
                        "TLS certificate loaded"
                    );
                    write(&self.tls, Some(loaded.config));
                }
                Err(e) => failures.push(self.failure(e.to_string())),
            }
        }
        count_reload(&self.metrics, failures.is_empty());
        failures
    }

    fn failure(&self, error: String) -> ReloadFailure {
        ReloadFailure {
            listener: self.listener,
            error,
        }
    }
}

/// The files both listeners' credentials are read from, as a server's or
/// a router's settings name them.
#[derive(Debug, Clone, Default)]
pub struct CredentialFiles {
    /// `--tls-cert`: the server's certificate chain (PEM); TLS is on with it.
    pub tls_cert: Option<PathBuf>,
    /// `--tls-key`: its private key (PEM).
    pub tls_key: Option<PathBuf>,
    /// `--port-keys`: the ports' API keys.
    pub port_keys: Option<PathBuf>,
    /// `--admin-keys`: the back office's API keys.
    pub admin_keys: Option<PathBuf>,
    /// `--port-client-ca`: mutual TLS on the ports' listener.
    pub port_client_ca: Option<PathBuf>,
    /// `--admin-client-ca`: mutual TLS on the back office's listener.
    pub admin_client_ca: Option<PathBuf>,
    /// `--client-crl`: revoked client certificates.
    pub client_crl: Option<PathBuf>,
}

impl CredentialFiles {
    /// TLS files come as a pair; a client CA needs them; plain text leaves
    /// the host (any of `listeners` beyond loopback) only when
    /// `allow_plaintext` says a mesh encrypts the traffic.
    pub fn check(
        &self,
        listeners: &[std::net::SocketAddr],
        allow_plaintext: bool,
    ) -> anyhow::Result<()> {
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            anyhow::bail!("tls_cert and tls_key go together: give both or neither");
        }
        let tls = self.tls_cert.is_some();
        if !tls && (self.port_client_ca.is_some() || self.admin_client_ca.is_some()) {
            anyhow::bail!("a client CA (mutual TLS) needs tls_cert and tls_key");
        }
        if self.client_crl.is_some()
            && self.port_client_ca.is_none()
            && self.admin_client_ca.is_none()
        {
            anyhow::bail!("client_crl checks client certificates: it needs a client CA");
        }
        let beyond: Vec<String> = listeners
            .iter()
            .filter(|a| !a.ip().is_loopback())
            .map(|a| a.to_string())
            .collect();
        if !tls && !beyond.is_empty() && !allow_plaintext {
            anyhow::bail!(
                "listening beyond loopback ({}) without TLS: give tls_cert and tls_key, \
                 or allow_plaintext when a mesh encrypts the traffic",
                beyond.join(" / ")
            );
        }
        Ok(())
    }
}

/// Both gRPC listeners' credentials, and the shared store's TLS files.
pub struct Credentials {
    /// The ports' listener (Matcher): `--port-keys`, `--port-client-ca`.
    pub ports: Arc<ListenerCredentials>,
    /// The back office's listener: `--admin-keys`, `--admin-client-ca`.
    pub admin: Arc<ListenerCredentials>,
    /// The shared encounter store's, once it is open over TLS.
    store: OnceLock<StoreCredentials>,
}

/// What the shared store's TLS files are labelled in metrics, logs and
/// the Reload RPC's errors, beside the listeners.
const STORE: &str = "encounter_store";

/// The shared encounter store's TLS files (`--encounter-store-ca`,
/// `_cert`, `_key`), re-read with the listeners' so that a rotated CA
/// bundle or client certificate needs no restart.
struct StoreCredentials {
    store: Arc<PgEncounters>,
    metrics: Arc<Metrics>,
}

impl StoreCredentials {
    /// Re-reads the files into the store's connector; the failure, if
    /// one was refused.
    fn reload(&self) -> Option<ReloadFailure> {
        let refused = self.store.reload_tls().err();
        count_reload(&self.metrics, refused.is_none());
        if refused.is_none() {
            tracing::info!(listener = STORE, "encounter store TLS files loaded");
            self.show_expiry();
        }
        refused.map(|e| ReloadFailure {
            listener: STORE,
            error: e.to_string(),
        })
    }

    /// Sets the expiry metric of the client certificate in force, when
    /// there is one.
    fn show_expiry(&self) {
        let leaf = self.store.client_certificate();
        if let Some(t) = leaf.as_deref().and_then(tls::not_after) {
            self.metrics
                .tls_certificate_expiry
                .with_label_values(&[STORE])
                .set(t);
        }
    }
}

impl Credentials {
    /// Reads both listeners' files as the settings name them; warns of a
    /// listener that speaks plain text or authenticates no one.
    pub fn load(settings: &CredentialFiles, metrics: &Arc<Metrics>) -> anyhow::Result<Credentials> {
        let tls = |client_ca: &Option<PathBuf>| {
            Some(TlsFiles {
                cert: settings.tls_cert.clone()?,
                key: settings.tls_key.clone()?,
                client_ca: client_ca.clone(),
                client_crl: settings.client_crl.clone(),
            })
        };
        let ports = ListenerCredentials::load(
            "ports",
            settings.port_keys.clone(),
            tls(&settings.port_client_ca),
            metrics.clone(),
        )?;
        let admin = ListenerCredentials::load(
            "admin",
            settings.admin_keys.clone(),
            tls(&settings.admin_client_ca),
            metrics.clone(),
        )?;
        for l in [&ports, &admin] {
            warn_if_open(l);
        }
        Ok(Credentials {
            ports: Arc::new(ports),
            admin: Arc::new(admin),
            store: OnceLock::new(),
        })
    }

    /// From now on also re-reads the TLS files of the shared store in
    /// `encounters`, when it has one and `files` secure it (a store read
    /// at start-up; the first one given stays).
    pub fn watch_store(
        &self,
        encounters: &crate::served_encounters::ServedEncounters,
        files: &StoreTls,
        metrics: &Arc<Metrics>,
    ) {
        let Some(store) = encounters.postgres().filter(|_| files.is_on()) else {
            return;
        };
        let watched = StoreCredentials {
            store: Arc::clone(store),
            metrics: Arc::clone(metrics),
        };
        watched.show_expiry();
        let _ = self.store.set(watched);
    }

    /// Re-reads every file of both listeners and of the shared store
    /// (SIGHUP, the Reload RPC); each failure is logged and returned, and
    /// its file's old contents kept.
    pub fn reload(&self) -> Vec<ReloadFailure> {
        let listeners = [&self.ports, &self.admin].into_iter();
        let failures: Vec<_> = listeners
            .flat_map(|l| l.reload())
            .chain(self.store.get().and_then(StoreCredentials::reload))
            .collect();
        for f in &failures {
            tracing::error!(
                listener = f.listener,
                error = %f.error,
                "credential reload refused a file: the old one stays in force"
            );
        }
        failures
    }
}

/// Counts a reload of one set of files, `ok` or `failed`.
fn count_reload(metrics: &Metrics, ok: bool) {
    let result = if ok { "ok" } else { "failed" };
    metrics
        .credential_reloads
        .with_label_values(&[result])
        .inc();
}

fn warn_if_open(l: &ListenerCredentials) {
    if !l.has_tls() {
        tracing::warn!(
            listener = l.listener,
            "plain text: this listener's traffic and API keys are not encrypted"
        );
    }
    if l.keys_file.is_none() && !l.verifies_clients() {
        tracing::warn!(
            listener = l.listener,
            "no API keys and no client CA: this listener's calls are not authenticated"
        );
    }
}

fn read<T: Clone>(lock: &RwLock<T>) -> T {
    // A writer never panics while holding the lock (it only assigns), so
    // poison can only come from elsewhere; the value is still whole.
    lock.read().unwrap_or_else(|p| p.into_inner()).clone()
}

fn write<T>(lock: &RwLock<T>, value: T) {
    *lock.write().unwrap_or_else(|p| p.into_inner()) = value;
}
