//! `facegate route`'s settings: where it listens, the shards and their
//! replicas it routes to, how it watches and retries them, and the
//! credentials of both its listeners (the same flags as `facegate serve`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

use clap::Args;

use crate::credentials::CredentialFiles;

/// One replica of one shard: `K=URL`, as `--replica` takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaAddr {
    /// The shard it serves, `0..shards`.
    pub shard: u32,
    /// Its ports' listener, `http://host:port` or `https://host:port`.
    pub url: String,
}

impl FromStr for ReplicaAddr {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (shard, url) = text.split_once('=').ok_or_else(|| {
            format!("{text:?}: a replica is SHARD=URL, e.g. 0=http://10.0.0.5:50051")
        })?;
        let shard = shard
            .trim()
            .parse()
            .map_err(|_| format!("{text:?}: the shard before '=' must be a number"))?;
        let url = url.trim();
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(format!(
                "{text:?}: the URL must start with http:// or https://"
            ));
        }
        Ok(ReplicaAddr {
            shard,
            url: url.to_string(),
        })
    }
}

/// Everything `facegate route` is told.
#[derive(Debug, Clone, Args)]
pub struct RouteSettings {
    /// Address of the ports' listener (Matcher, health, reflection).
    #[arg(long, env = "FACEGATE_LISTEN", default_value = "127.0.0.1:50061")]
    pub listen: SocketAddr,
    /// Address of the back office's listener (GalleryAdmin, Manifests).
    #[arg(long, env = "FACEGATE_ADMIN_LISTEN", default_value = "127.0.0.1:50062")]
    pub admin_listen: SocketAddr,
    /// Address of the Prometheus metrics listener (`/metrics`).
    #[arg(
        long,
        env = "FACEGATE_METRICS_LISTEN",
        default_value = "127.0.0.1:9101"
    )]
    pub metrics_listen: SocketAddr,
    /// Address of a plain-text listener serving only `grpc.health.v1`, for
    /// probes that cannot speak TLS; none when absent.
    #[arg(long, env = "FACEGATE_HEALTH_LISTEN")]
    pub health_listen: Option<SocketAddr>,
    /// Shards the gallery is split into (`facegate-index shard --shards`).
    #[arg(long, env = "FACEGATE_SHARDS")]
    pub shards: u32,
    /// A replica of a shard, `SHARD=URL` (its ports' listener); repeat, or
    /// separate with commas. Every shard needs at least one.
    #[arg(
        long = "replica",
        env = "FACEGATE_REPLICAS",
        value_delimiter = ',',
        required = true
    )]
    pub replicas: Vec<ReplicaAddr>,
    /// The back-office listener of each replica, `SHARD=URL`, in the same
    /// order as --replica; when absent, each replica's port + 1.
    #[arg(
        long = "replica-admin",
        env = "FACEGATE_REPLICA_ADMINS",
        value_delimiter = ','
    )]
    pub replica_admins: Vec<ReplicaAddr>,
    /// How often each replica's gRPC health is checked.
    #[arg(long, env = "FACEGATE_HEALTH_INTERVAL_MS", default_value_t = 250)]
    pub health_interval_ms: u64,
    /// Send a second copy of a shard's request to another replica when the
    /// first has not answered after this long, and take the first answer
    /// (hedging); off when absent.
    #[arg(long, env = "FACEGATE_HEDGE_AFTER_MS")]
    pub hedge_after_ms: Option<u64>,
    /// A shard's budget when the caller sets no deadline.
    #[arg(long, env = "FACEGATE_SHARD_TIMEOUT_MS", default_value_t = 2_000)]
    pub shard_timeout_ms: u64,
    /// The router's own state: its lock and, unless moved, its audit trail.
    #[arg(long, env = "FACEGATE_DATA_DIR", default_value = ".data-router")]
    pub data_dir: PathBuf,
    /// The audit trail's directory (default DATA_DIR/audit).
    #[arg(long, env = "FACEGATE_AUDIT_DIR")]
    pub audit_dir: Option<PathBuf>,
    /// Audit nothing (the shards still audit what they are asked).
    #[arg(long, env = "FACEGATE_NO_AUDIT", conflicts_with = "audit_dir")]
    pub no_audit: bool,
    /// Ed25519 private key (PKCS#8 PEM, `facegate-index audit-key`) that
    /// signs checkpoints of the router's audit trail.
    #[arg(long, env = "FACEGATE_AUDIT_SIGNING_KEY")]
    pub audit_signing_key: Option<PathBuf>,
    /// A signed checkpoint once this many records are unsealed.
    #[arg(long, env = "FACEGATE_AUDIT_SEAL_RECORDS", default_value_t = 10_000)]
    pub audit_seal_records: u64,
    /// A signed checkpoint once the oldest unsealed record is this old.
    #[arg(
        long,
        env = "FACEGATE_AUDIT_SEAL_INTERVAL_MS",
        default_value_t = 60_000
    )]
    pub audit_seal_interval_ms: u64,
    /// The router's own certificate chain (PEM): TLS on both listeners.
    #[arg(long, env = "FACEGATE_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// Its private key (PEM).
    #[arg(long, env = "FACEGATE_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// API keys of the ports.
    #[arg(long, env = "FACEGATE_PORT_KEYS")]
    pub port_keys: Option<PathBuf>,
    /// API keys of the back office.
    #[arg(long, env = "FACEGATE_ADMIN_KEYS")]
    pub admin_keys: Option<PathBuf>,
    /// CA bundle of the ports' client certificates (mutual TLS).
    #[arg(long, env = "FACEGATE_PORT_CLIENT_CA")]
    pub port_client_ca: Option<PathBuf>,
    /// CA bundle of the back office's client certificates (mutual TLS).
    #[arg(long, env = "FACEGATE_ADMIN_CLIENT_CA")]
    pub admin_client_ca: Option<PathBuf>,
    /// Revoked client certificates (PEM CRLs).
    #[arg(long, env = "FACEGATE_CLIENT_CRL")]
    pub client_crl: Option<PathBuf>,
    /// Listen beyond loopback without TLS (a mesh encrypts the traffic).
    #[arg(long, env = "FACEGATE_ALLOW_PLAINTEXT")]
    pub allow_plaintext: bool,
    /// CA bundle that signs the shards' certificates (https:// replicas).
    #[arg(long, env = "FACEGATE_SHARD_CA")]
    pub shard_ca: Option<PathBuf>,
    /// The router's client certificate for the shards (role `router`).
    #[arg(long, env = "FACEGATE_SHARD_CERT", requires = "shard_key")]
    pub shard_cert: Option<PathBuf>,
    /// Its private key.
    #[arg(long, env = "FACEGATE_SHARD_KEY", requires = "shard_cert")]
    pub shard_key: Option<PathBuf>,
    /// Largest request message accepted from ports, bytes.
    #[arg(long, env = "FACEGATE_MAX_MESSAGE_BYTES", default_value_t = 64 * 1024)]
    pub max_message_bytes: usize,
    /// Seconds to let requests in flight finish after SIGTERM.
    #[arg(long, env = "FACEGATE_DRAIN_SECONDS", default_value_t = 30)]
    pub drain_seconds: u64,
    /// The shared encounter store, PostgreSQL (`postgres://user@host:port/db`):
    /// the router records the encounters ports ask for (it alone sees the
    /// whole answer) and serves the Encounters back office from it. Without
    /// it, `capture.record` is refused. Best given in the environment,
    /// since the URL may hold a password.
    #[arg(long, env = "FACEGATE_ENCOUNTER_STORE")]
    pub encounter_store: Option<String>,
    /// The CA bundle (PEM) the shared encounter store's certificate must
    /// chain to: with it every connection to the database is TLS, its
    /// certificate verified for the URL's host, never plain text; without
    /// it, connections are plain text (docs/operations.md).
    #[arg(long, env = "FACEGATE_ENCOUNTER_STORE_CA")]
    pub encounter_store_ca: Option<PathBuf>,
    /// This node's certificate chain (PEM) for a database that
    /// authenticates its clients by certificate; with its key and the CA.
    #[arg(long, env = "FACEGATE_ENCOUNTER_STORE_CERT")]
    pub encounter_store_cert: Option<PathBuf>,
    /// The private key (PEM) of `encounter_store_cert`.
    #[arg(long, env = "FACEGATE_ENCOUNTER_STORE_KEY")]
    pub encounter_store_key: Option<PathBuf>,
    /// Milliseconds a request that asked for its encounter to be recorded
    /// waits for the store to confirm it; past that it is answered
    /// UNAVAILABLE (the record may still land, so the port retries with
    /// the same encounter id) rather than held while a disk or database
    /// hangs.
    #[arg(
        long,
        env = "FACEGATE_ENCOUNTER_RECORD_TIMEOUT_MS",
        default_value_t = crate::served_encounters::DEFAULT_RECORD_TIMEOUT.as_millis() as u64
    )]
    pub encounter_record_timeout_ms: u64,
    /// The retention policy (TOML, the server's format): the router's audit
    /// trail, which names the subjects its answers disclosed, keeps its
    /// files for the longest encounter period plus the audit period, as
    /// the shards' do; the documented defaults when not given
    /// (docs/privacy.md). The shared store's records are purged by the
    /// shards given it.
    #[arg(long, env = "FACEGATE_RETENTION_POLICY")]
    pub retention_policy: Option<PathBuf>,
    /// Milliseconds between expiries of the router's old audit files.
    #[arg(
        long,
        env = "FACEGATE_RETENTION_INTERVAL_MS",
        default_value_t = 600_000
    )]
    pub retention_interval_ms: u64,
}

impl RouteSettings {
    /// Checks what clap cannot: every replica names a shard below
    /// `--shards`, every shard has one, the admin list matches, and the
    /// listeners' TLS rules (as the server's).
    pub fn check(&self) -> anyhow::Result<()> {
        if self.shards == 0 || self.shards > 4096 {
            anyhow::bail!("--shards must be within 1..=4096, got {}", self.shards);
        }
        if let Some(r) = self.replicas.iter().find(|r| r.shard >= self.shards) {
            anyhow::bail!(
                "--replica {}={}: shard {} is not below --shards {}",
                r.shard,
                r.url,
                r.shard,
                self.shards
            );
        }
        if let Some(k) = (0..self.shards).find(|k| self.replicas.iter().all(|r| r.shard != *k)) {
            anyhow::bail!("shard {k} has no --replica: every shard needs at least one");
        }
        if !self.replica_admins.is_empty() {
            let pairs = self.replicas.iter().zip(&self.replica_admins);
            if self.replica_admins.len() != self.replicas.len()
                || pairs.clone().any(|(r, a)| r.shard != a.shard)
            {
                anyhow::bail!(
                    "--replica-admin must list each --replica's shard, in the same order"
                );
            }
        }
        if !(100..=600_000).contains(&self.encounter_record_timeout_ms) {
            anyhow::bail!(
                "--encounter-record-timeout-ms must be within 100..=600000 (0.1 s to ten minutes), got {}",
                self.encounter_record_timeout_ms
            );
        }
        if !(10..=3_600_000).contains(&self.retention_interval_ms) {
            anyhow::bail!(
                "--retention-interval-ms must be within 10..=3600000 (one hour), got {}",
                self.retention_interval_ms
            );
        }
        if self.hedge_after_ms == Some(0) {
            anyhow::bail!("--hedge-after-ms must be at least 1 (leave it out to turn hedging off)");
        }
        let listeners = [self.listen, self.admin_listen];
        self.credential_files()
            .check(&listeners, self.allow_plaintext)?;
        crate::served_encounters::check_store_tls(
            self.encounter_store.as_deref(),
            &self.store_tls(),
        )
    }

    /// The files the listeners' credentials are read from.
    pub fn credential_files(&self) -> CredentialFiles {
        CredentialFiles {
            tls_cert: self.tls_cert.clone(),
            tls_key: self.tls_key.clone(),
            port_keys: self.port_keys.clone(),
            admin_keys: self.admin_keys.clone(),
            port_client_ca: self.port_client_ca.clone(),
            admin_client_ca: self.admin_client_ca.clone(),
            client_crl: self.client_crl.clone(),
        }
    }

    /// The files the shared encounter store's connections are secured with.
    pub fn store_tls(&self) -> facegate_postgres::StoreTls {
        facegate_postgres::StoreTls {
            ca: self.encounter_store_ca.clone(),
            client_cert: self.encounter_store_cert.clone(),
            client_key: self.encounter_store_key.clone(),
        }
    }

    /// The audit trail's directory, or `None` when auditing is off.
    pub fn audit_dir(&self) -> Option<PathBuf> {
        match self.no_audit {
            true => None,
            false => Some(
                self.audit_dir
                    .clone()
                    .unwrap_or_else(|| self.data_dir.join("audit")),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::FromArgMatches;

    /// `facegate route ARGS`'s settings, checked.
    fn route(args: &[&str]) -> anyhow::Result<RouteSettings> {
        let command = RouteSettings::augment_args(clap::Command::new("route").no_binary_name(true))
            .mut_args(|arg| arg.env(None::<&'static str>));
        let settings = RouteSettings::from_arg_matches(&command.try_get_matches_from(args)?)?;
        settings.check().map(|()| settings)
    }

    #[test]
    fn the_shared_stores_ca_comes_with_the_store() {
        let fleet = ["--shards", "1", "--replica", "0=http://127.0.0.1:50051"];
        assert!(route(&fleet).is_ok());
        let ca = [&fleet[..], &["--encounter-store-ca", "ca.pem"]].concat();
        let err = format!("{:#}", route(&ca).unwrap_err());
        assert!(err.contains("give encounter_store too"), "{err}");
        let store = [&ca[..], &["--encounter-store", "postgres://u@db/f"]].concat();
        assert!(route(&store).unwrap().store_tls().is_on());
    }

    #[test]
    fn a_replica_is_a_shard_and_a_url() {
        let r: ReplicaAddr = "2=http://10.0.0.7:50051".parse().unwrap();
        assert_eq!((r.shard, r.url.as_str()), (2, "http://10.0.0.7:50051"));
        assert!(
            "http://x:1"
                .parse::<ReplicaAddr>()
                .unwrap_err()
                .contains("SHARD=URL")
        );
        assert!(
            "a=http://x:1"
                .parse::<ReplicaAddr>()
                .unwrap_err()
                .contains("number")
        );
        assert!(
            "0=x:1"
                .parse::<ReplicaAddr>()
                .unwrap_err()
                .contains("http://")
        );
    }
}
