//! Server settings, declared once in [`Settings`]: command-line flags, then
//! `FACEGATE_*` environment variables, then an optional TOML file
//! (`--config FILE`, keys named as the fields), then defaults (earlier wins).
//!
//! clap reads the flags and variables, serde the file, from the same struct;
//! [`Settings::from_matches`] merges them by asking clap where each value
//! came from, so that a setting has one declaration, not one per source.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::parser::ValueSource;
use clap::{ArgMatches, Args, FromArgMatches};

/// Which engine answers searches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineChoice {
    /// A hardware GPU when there is one, else the CPU.
    Auto,
    /// The exact CPU engine.
    Cpu,
    /// The GPU engine; fails at start-up when none can be used.
    Gpu,
}

/// Probes per engine call unless configured: enough to share one pass over
/// the gallery among many ports, few enough that a batch stays short.
pub const DEFAULT_BATCH_MAX_SIZE: usize = 32;
/// Upper bound on `batch_max_size`.
pub const MAX_BATCH_SIZE: usize = 1024;
/// Predicted engine time a batch may grow to unless configured: a full batch
/// of 32 on a large gallery and a slow engine (a 1M x 512 int8 scan on two
/// CPU cores takes about 120 ms for 32 probes) would otherwise hold every
/// port waiting behind it that long; small galleries never reach it.
pub const DEFAULT_BATCH_TIME_TARGET_MS: u64 = 100;

/// `facegate serve`'s settings. Each field is a flag (its doc comment is the
/// flag's help), a `FACEGATE_*` variable, and a key of the TOML file; its
/// default is the flag's. Built by [`Settings::from_matches`] (the command
/// line), [`Settings::from_args`], or [`Settings::defaults`] and
/// [`Settings::resolve`] (code), which derives the audit directory and
/// checks the bounds.
#[derive(Debug, Clone, clap::Args, serde::Deserialize)]
#[serde(deny_unknown_fields, default = "Settings::defaults")]
pub struct Settings {
    /// Gallery file to serve; a built-in demo gallery when absent.
    #[arg(long, env = "FACEGATE_GALLERY")]
    pub gallery: Option<PathBuf>,
    /// Address to listen on (port 0 picks a free one).
    #[arg(long, env = "FACEGATE_LISTEN", default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,
    /// Address of the Prometheus `/metrics` listener (port 0 picks a free one).
    #[arg(
        long,
        env = "FACEGATE_METRICS_LISTEN",
        default_value = "127.0.0.1:9464"
    )]
    pub metrics_listen: SocketAddr,
    /// Address of a plain-text listener serving only `grpc.health.v1`, for
    /// probes that cannot speak TLS (Kubernetes' gRPC probes); none when
    /// absent. It tells whether the server is serving, nothing else.
    #[arg(long, env = "FACEGATE_HEALTH_LISTEN")]
    pub health_listen: Option<SocketAddr>,
    /// Address of the GalleryAdmin service (enrolment back office), kept
    /// apart from the ports' listener (port 0 picks a free one).
    #[arg(long, env = "FACEGATE_ADMIN_LISTEN", default_value = "127.0.0.1:50052")]
    pub admin_listen: SocketAddr,
    /// Engine: auto, cpu or gpu.
    #[arg(long, env = "FACEGATE_ENGINE", value_enum, default_value_t = EngineChoice::Auto)]
    pub engine: EngineChoice,
    /// Accept a software GPU adapter (e.g. Mesa's lavapipe) for --engine gpu/auto.
    #[arg(long, env = "FACEGATE_ALLOW_SOFTWARE_GPU")]
    pub allow_software_gpu: bool,
    /// GPU memory the gallery rows may take; beyond it rows are streamed from host memory.
    #[arg(long, env = "FACEGATE_GPU_MEMORY_BUDGET_BYTES")]
    pub gpu_memory_budget_bytes: Option<u64>,
    /// Directory for server data (the demo gallery).
    #[arg(long, env = "FACEGATE_DATA_DIR", default_value = ".data")]
    pub data_dir: PathBuf,
    /// Largest top_k a request may ask for.
    #[arg(long, env = "FACEGATE_MAX_TOP_K", default_value_t = 100)]
    pub max_top_k: u32,
    /// Threshold applied when a request gives none. Given, it wins over the
    /// gallery's calibration sidecar; not given, the sidecar's threshold
    /// (GALLERY.calibration.json) is used, else the built-in 0.35.
    #[arg(long, env = "FACEGATE_DEFAULT_THRESHOLD")]
    pub default_threshold: Option<f32>,
    /// Largest request message accepted, in bytes.
    #[arg(long, env = "FACEGATE_MAX_MESSAGE_BYTES", default_value_t = 64 * 1024)]
    pub max_message_bytes: usize,
    /// Seconds to let in-flight requests finish after SIGTERM.
    #[arg(long, env = "FACEGATE_DRAIN_SECONDS", default_value_t = 30)]
    pub drain_seconds: u64,
    /// Most probes searched in one engine call (1 turns batching off).
    #[arg(long, env = "FACEGATE_BATCH_MAX_SIZE", default_value_t = DEFAULT_BATCH_MAX_SIZE)]
    pub batch_max_size: usize,
    /// Microseconds the oldest queued search waits for its batch to fill
    /// while the engine is idle.
    #[arg(long, env = "FACEGATE_BATCH_MAX_WAIT_US", default_value_t = 2_000)]
    pub batch_max_wait_us: u64,
    /// Milliseconds a batch is predicted to run on the engine at most: batches
    /// take only as many probes as fit (at least one); 0 lifts the limit.
    #[arg(long, env = "FACEGATE_BATCH_TIME_TARGET_MS", default_value_t = DEFAULT_BATCH_TIME_TARGET_MS)]
    pub batch_time_target_ms: u64,
    /// Most searches queued at once; beyond it requests are shed.
    #[arg(long, env = "FACEGATE_QUEUE_CAPACITY", default_value_t = 1024)]
    pub queue_capacity: usize,
    /// Searches expected to wait longer than this in the queue are shed on
    /// arrival (RESOURCE_EXHAUSTED) instead of waiting for their deadline.
    #[arg(long, env = "FACEGATE_MAX_QUEUE_WAIT_MS", default_value_t = 250)]
    pub max_queue_wait_ms: u64,
    /// Directory of the audit trail: one durable record per search and
    /// gallery change, written before the answer (default: DATA_DIR/audit).
    #[arg(long, env = "FACEGATE_AUDIT_DIR")]
    pub audit_dir: Option<PathBuf>,
    /// Keys file of the ports (`NAME SHA256` lines, from `facegate keygen`):
    /// Matcher calls then need `authorization: Bearer TOKEN`, and the key
    /// names the port.
    #[arg(long, env = "FACEGATE_PORT_KEYS")]
    pub port_keys: Option<PathBuf>,
    /// Keys file of the back office: GalleryAdmin calls then need a key.
    #[arg(long, env = "FACEGATE_ADMIN_KEYS")]
    pub admin_keys: Option<PathBuf>,
    /// The server's TLS certificate chain (PEM, leaf first), for the ports'
    /// and the back office's listeners: with `tls_key`, both speak TLS.
    #[arg(long, env = "FACEGATE_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of `tls_cert` (PEM).
    #[arg(long, env = "FACEGATE_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// CA bundle (PEM) the ports' client certificates must chain to: mutual
    /// TLS, each certificate naming its port (docs/security.md).
    #[arg(long, env = "FACEGATE_PORT_CLIENT_CA")]
    pub port_client_ca: Option<PathBuf>,
    /// CA bundle (PEM) the back office's client certificates must chain to.
    #[arg(long, env = "FACEGATE_ADMIN_CLIENT_CA")]
    pub admin_client_ca: Option<PathBuf>,
    /// Certificate revocation lists (PEM) both listeners check client
    /// certificates against; re-read on SIGHUP, like the CA bundles.
    #[arg(long, env = "FACEGATE_CLIENT_CRL")]
    pub client_crl: Option<PathBuf>,
    /// This server's shard of a gallery split by `facegate-index shard`,
    /// `K/N` (K from 0): it refuses to start on, or reload to, a gallery
    /// holding other shards' subjects, and refuses enrolments of them.
    #[arg(long, env = "FACEGATE_SHARD")]
    pub shard: Option<facegate_core::shard::ShardSpec>,
    /// Serve plain text on an address other than loopback (behind a mesh
    /// that encrypts it); without TLS files the server otherwise refuses to.
    #[arg(long, env = "FACEGATE_ALLOW_PLAINTEXT")]
    pub allow_plaintext: bool,
    /// Milliseconds between purges of manifests whose window has ended
    /// (they are refused from the end of their window on; the purge
    /// deletes them from memory and disk).
    #[arg(
        long,
        env = "FACEGATE_MANIFEST_PURGE_INTERVAL_MS",
        default_value_t = 60_000
    )]
    pub manifest_purge_interval_ms: u64,
    /// A shared encounter store, PostgreSQL (`postgres://user@host:port/db`),
    /// instead of the embedded one under the data directory: for shard
    /// servers behind routers that record into the same database
    /// (docs/scale.md). Best given in the environment, since the URL may
    /// hold a password; logs name only its host, port and database.
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
    /// The retention policy (TOML: how long each category's encounters may
    /// live, from the record or the exit); the documented defaults when
    /// not given (docs/privacy.md).
    #[arg(long, env = "FACEGATE_RETENTION_POLICY")]
    pub retention_policy: Option<PathBuf>,
    /// Milliseconds between retention purges. A record is gone at most
    /// this long after its period ends, so it must stay well inside the
    /// shortest period (a citizen's 12 hours).
    #[arg(
        long,
        env = "FACEGATE_RETENTION_INTERVAL_MS",
        default_value_t = 600_000
    )]
    pub retention_interval_ms: u64,
    /// Milliseconds between checks for removed subjects to compact out of
    /// the gallery file and change log (then reloaded): removed templates'
    /// bytes stay on disk at most about this long plus one compaction.
    #[arg(
        long,
        env = "FACEGATE_COMPACTION_INTERVAL_MS",
        default_value_t = 21_600_000
    )]
    pub compaction_interval_ms: u64,
    /// Serve without an audit trail (tests, benchmarks); never in service.
    #[arg(long, env = "FACEGATE_NO_AUDIT")]
    pub no_audit: bool,
    /// Ed25519 private key (PKCS#8 PEM, from `facegate-index audit-key`)
    /// that signs checkpoints of the audit trail, so that a forger without
    /// it is found; unsigned (with a warning) when not given.
    #[arg(long, env = "FACEGATE_AUDIT_SIGNING_KEY")]
    pub audit_signing_key: Option<PathBuf>,
    /// Records after which a signed checkpoint is written (or sooner, by
    /// --audit-seal-interval-ms): a forger without the key can change at
    /// most this many unsealed records.
    #[arg(long, env = "FACEGATE_AUDIT_SEAL_RECORDS", default_value_t = 10_000)]
    pub audit_seal_records: u64,
    /// Milliseconds after which pending records get a signed checkpoint
    /// (or sooner, by --audit-seal-records): bounds how long a record
    /// stays unsigned.
    #[arg(
        long,
        env = "FACEGATE_AUDIT_SEAL_INTERVAL_MS",
        default_value_t = 60_000
    )]
    pub audit_seal_interval_ms: u64,
    /// TOML file with any of the settings above (snake_case keys).
    #[arg(long, env = "FACEGATE_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
}

impl Settings {
    /// The built-in defaults: what `facegate serve` gets from no flag, no
    /// variable and no file, taken from the flags' declarations so that
    /// they are stated once. Not yet [resolved](Settings::resolve): callers
    /// that build settings in code start here, change fields, then resolve.
    pub fn defaults() -> Settings {
        // No argument given and no variable read: only declared defaults,
        // which always parse (the tests parse them on every run).
        let matches = Self::command()
            .mut_args(|arg| arg.env(None::<&'static str>))
            .try_get_matches_from(std::iter::empty::<OsString>())
            .expect("the declared defaults parse");
        Settings::from_arg_matches(&matches).expect("the declared defaults parse")
    }

    /// Settings from `facegate serve`'s arguments (`args`, without `serve`),
    /// the environment, the file given with `--config`, and the defaults;
    /// for tests and embedders, which have no [`ArgMatches`] of their own.
    pub fn from_args<I, T>(args: I) -> anyhow::Result<Settings>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        Settings::from_matches(&Self::command().try_get_matches_from(args)?)
    }

    /// Settings from what clap parsed for `facegate serve` (`matches`:
    /// flags, then variables, then the declared defaults), with the TOML
    /// file named by `--config` taking the place of the defaults; resolved.
    pub fn from_matches(matches: &ArgMatches) -> anyhow::Result<Settings> {
        let given = Settings::from_arg_matches(matches)?;
        let Some(path) = given.config.clone() else {
            return given.resolve();
        };
        let mut settings = read_file(&path)?;
        settings.update_from_arg_matches(&only_given(matches)?)?;
        settings.resolve()
    }

    /// Derives the audit directory (`DATA_DIR/audit` unless given or turned
    /// off) and checks every bound; settings that pass it twice do not
    /// change, so [`crate::serve::run`] resolves what it is given again.
    pub fn resolve(mut self) -> anyhow::Result<Settings> {
        match (self.no_audit, &self.audit_dir) {
            (true, Some(dir)) => anyhow::bail!(
                "no_audit and audit_dir ({}) contradict each other: give one",
                dir.display()
            ),
            (true, None) => {}
            (false, dir) => {
                self.audit_dir = Some(dir.clone().unwrap_or_else(|| self.data_dir.join("audit")))
            }
        }
        self.check_bounds()?;
        self.check_tls()?;
        Ok(self)
    }

    /// TLS files come as a pair; a client CA needs them; plain text leaves
    /// the host only when allowed; the shared store's TLS files need the
    /// shared store.
    fn check_tls(&self) -> anyhow::Result<()> {
        let listeners = [self.listen, self.admin_listen];
        self.credential_files()
            .check(&listeners, self.allow_plaintext)?;
        crate::served_encounters::check_store_tls(
            self.encounter_store.as_deref(),
            &self.store_tls(),
        )
    }

    /// The files the listeners' credentials are read from.
    pub fn credential_files(&self) -> crate::credentials::CredentialFiles {
        crate::credentials::CredentialFiles {
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

    fn check_bounds(&self) -> anyhow::Result<()> {
        if self.max_top_k == 0 || self.max_top_k > 10_000 {
            anyhow::bail!("max_top_k must be within 1..=10000, got {}", self.max_top_k);
        }
        if let Some(t) = self.default_threshold
            && !(-1.0..=1.0).contains(&t)
        {
            anyhow::bail!("default_threshold must be within -1..=1, got {t}");
        }
        if self.max_message_bytes < 1024 {
            anyhow::bail!("max_message_bytes must be at least 1024");
        }
        if !(1..=MAX_BATCH_SIZE).contains(&self.batch_max_size) {
            anyhow::bail!(
                "batch_max_size must be within 1..={MAX_BATCH_SIZE}, got {}",
                self.batch_max_size
            );
        }
        if self.batch_max_wait_us > 1_000_000 {
            anyhow::bail!(
                "batch_max_wait_us must be at most 1000000 (one second), got {}",
                self.batch_max_wait_us
            );
        }
        if self.batch_time_target_ms > 60_000 {
            anyhow::bail!(
                "batch_time_target_ms must be at most 60000 (one minute; 0 lifts the limit), got {}",
                self.batch_time_target_ms
            );
        }
        if self.queue_capacity == 0 {
            anyhow::bail!("queue_capacity must be at least 1");
        }
        if !(10..=43_200_000).contains(&self.compaction_interval_ms) {
            anyhow::bail!(
                "compaction_interval_ms must be within 10..=43200000 (12 hours, a citizen's bound), got {}",
                self.compaction_interval_ms
            );
        }
        if !(100..=600_000).contains(&self.encounter_record_timeout_ms) {
            anyhow::bail!(
                "encounter_record_timeout_ms must be within 100..=600000 (0.1 s to ten minutes), got {}",
                self.encounter_record_timeout_ms
            );
        }
        if !(10..=3_600_000).contains(&self.retention_interval_ms) {
            anyhow::bail!(
                "retention_interval_ms must be within 10..=3600000 (one hour), got {}",
                self.retention_interval_ms
            );
        }
        if !(10..=3_600_000).contains(&self.manifest_purge_interval_ms) {
            anyhow::bail!(
                "manifest_purge_interval_ms must be within 10..=3600000 (one hour), got {}",
                self.manifest_purge_interval_ms
            );
        }
        if self.audit_seal_records == 0 {
            anyhow::bail!("audit_seal_records must be at least 1");
        }
        if !(10..=3_600_000).contains(&self.audit_seal_interval_ms) {
            anyhow::bail!(
                "audit_seal_interval_ms must be within 10..=3600000 (one hour), got {}",
                self.audit_seal_interval_ms
            );
        }
        Ok(())
    }

    /// The settings as a clap command of their own (`serve`'s arguments
    /// without the program or subcommand name).
    fn command() -> clap::Command {
        Settings::augment_args(clap::Command::new("serve").no_binary_name(true))
    }
}

/// `matches` less the values that neither a flag nor a variable gave, so
/// that updating the file's settings from them keeps the file's values (or
/// the defaults) for the rest. A switch that is off (absent, or `false` in
/// its variable) is also left out: a switch can turn a setting on over the
/// file, never off, as `--no-audit` and `--allow-software-gpu` always have.
fn only_given(matches: &ArgMatches) -> anyhow::Result<ArgMatches> {
    let mut given = matches.clone();
    let ids: Vec<String> = matches.ids().map(|id| id.as_str().to_owned()).collect();
    for id in ids {
        let from_user = matches!(
            matches.value_source(&id),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        );
        let switch_off = matches.try_get_one::<bool>(&id).ok().flatten() == Some(&false);
        if !from_user || switch_off {
            given.try_clear_id(&id)?;
        }
    }
    Ok(given)
}

/// The TOML file's settings, the defaults for the keys it leaves out; an
/// unknown key or a value of the wrong type is an error naming the file.
fn read_file(p: &Path) -> anyhow::Result<Settings> {
    let text =
        std::fs::read_to_string(p).with_context(|| format!("reading config {}", p.display()))?;
    toml::from_str(&text).with_context(|| format!("parsing config {}", p.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `facegate serve ARGS` as the command line would give them.
    fn flags(args: &[&str]) -> anyhow::Result<Settings> {
        Settings::from_args(args)
    }

    #[test]
    fn flags_override_file_and_file_overrides_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        let config = f.to_str().unwrap();
        std::fs::write(
            &f,
            "listen = \"127.0.0.1:7000\"\nmax_top_k = 50\nengine = \"cpu\"\n",
        )
        .unwrap();
        let s = flags(&["--config", config, "--max-top-k", "20"]).unwrap();
        assert_eq!(s.listen.port(), 7000);
        assert_eq!(s.max_top_k, 20);
        assert_eq!(s.engine, EngineChoice::Cpu);
        assert_eq!(s.default_threshold, None);
        std::fs::write(&f, "listn = \"x\"\n").unwrap();
        let err = flags(&["--config", config]).unwrap_err();
        assert!(format!("{err:#}").contains("unknown field"), "{err:#}");
    }

    #[test]
    fn the_shard_comes_from_a_flag_or_the_file_as_k_of_n() {
        use facegate_core::shard::ShardSpec;
        let s = flags(&["--shard", "1/3"]).unwrap();
        assert_eq!(s.shard, Some(ShardSpec { index: 1, count: 3 }));
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(&f, "shard = \"2/4\"\n").unwrap();
        let s = flags(&["--config", f.to_str().unwrap()]).unwrap();
        assert_eq!(s.shard, Some(ShardSpec { index: 2, count: 4 }));
        std::fs::write(&f, "shard = \"4/4\"\n").unwrap();
        let err = format!(
            "{:#}",
            flags(&["--config", f.to_str().unwrap()]).unwrap_err()
        );
        assert!(err.contains("below N"), "{err}");
        assert!(flags(&["--shard", "x"]).is_err());
    }

    #[test]
    fn plain_text_stays_on_loopback_unless_allowed_and_tls_files_go_together() {
        let err = |args: &[&str]| format!("{:#}", flags(args).unwrap_err());
        assert!(flags(&[]).is_ok(), "the loopback defaults need no TLS");
        let wide = ["--listen", "0.0.0.0:50051"];
        assert!(err(&wide).contains("without TLS"), "{}", err(&wide));
        assert!(flags(&[&wide[..], &["--allow-plaintext"]].concat()).is_ok());
        assert!(
            flags(&[&wide[..], &["--tls-cert", "c.pem", "--tls-key", "k.pem"]].concat()).is_ok()
        );
        assert!(err(&["--tls-cert", "c.pem"]).contains("tls-key"));
        assert!(err(&["--port-client-ca", "ca.pem"]).contains("needs tls_cert"));
        let crl = ["--tls-cert", "c", "--tls-key", "k", "--client-crl", "r.pem"];
        assert!(err(&crl).contains("needs a client CA"));
    }

    #[test]
    fn the_shared_stores_tls_files_come_with_the_store() {
        let err = |args: &[&str]| format!("{:#}", flags(args).unwrap_err());
        assert!(err(&["--encounter-store-ca", "ca.pem"]).contains("give encounter_store too"));
        assert!(err(&["--encounter-store-key", "k.pem"]).contains("give encounter_store too"));
        let store = ["--encounter-store", "postgres://u@db:5432/f"];
        let s = flags(&[&store[..], &["--encounter-store-ca", "ca.pem"]].concat()).unwrap();
        assert_eq!(s.store_tls().ca, Some(PathBuf::from("ca.pem")));
        assert!(s.store_tls().is_on());
    }

    #[test]
    fn batch_time_target_has_a_default_is_read_from_the_file_and_is_bounded() {
        let s = Settings::defaults().resolve().unwrap();
        assert_eq!(s.batch_time_target_ms, DEFAULT_BATCH_TIME_TARGET_MS);
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(&f, "batch_time_target_ms = 0\n").unwrap();
        let from_file = |batch_time_target_ms: Option<&str>| {
            let mut args = vec!["--config", f.to_str().unwrap()];
            args.extend(
                batch_time_target_ms
                    .map(|ms| ["--batch-time-target-ms", ms])
                    .into_iter()
                    .flatten(),
            );
            flags(&args)
        };
        assert_eq!(from_file(None).unwrap().batch_time_target_ms, 0);
        assert_eq!(from_file(Some("25")).unwrap().batch_time_target_ms, 25);
        let err = from_file(Some("60001")).unwrap_err();
        assert!(
            format!("{err:#}").contains("batch_time_target_ms must be at most 60000"),
            "{err:#}"
        );
    }

    #[test]
    fn audit_is_on_by_default_under_the_data_dir_and_off_only_when_asked() {
        let s = flags(&["--data-dir", "/srv/fg"]).unwrap();
        assert_eq!(s.audit_dir, Some(PathBuf::from("/srv/fg/audit")));
        let s = flags(&["--audit-dir", "/audit"]).unwrap();
        assert_eq!(s.audit_dir, Some(PathBuf::from("/audit")));
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        let config = f.to_str().unwrap();
        std::fs::write(&f, "no_audit = true\n").unwrap();
        let s = flags(&["--config", config]).unwrap();
        assert_eq!(s.audit_dir, None);
        let err = flags(&["--config", config, "--audit-dir", "/audit"]).unwrap_err();
        assert!(format!("{err:#}").contains("contradict"), "{err:#}");
    }

    #[test]
    fn audit_sealing_settings_have_defaults_come_from_any_source_and_are_bounded() {
        let s = Settings::defaults().resolve().unwrap();
        assert_eq!(
            (
                s.audit_signing_key,
                s.audit_seal_records,
                s.audit_seal_interval_ms
            ),
            (None, 10_000, 60_000)
        );
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        let config = f.to_str().unwrap();
        std::fs::write(
            &f,
            "audit_signing_key = \"/k.pem\"\naudit_seal_records = 5\n",
        )
        .unwrap();
        let s = flags(&["--config", config, "--audit-seal-interval-ms", "1000"]).unwrap();
        assert_eq!(s.audit_signing_key, Some(PathBuf::from("/k.pem")));
        assert_eq!((s.audit_seal_records, s.audit_seal_interval_ms), (5, 1000));
        let err = flags(&["--audit-seal-records", "0"]).unwrap_err();
        assert!(format!("{err:#}").contains("audit_seal_records"), "{err:#}");
        let err = flags(&["--audit-seal-interval-ms", "5"]).unwrap_err();
        assert!(
            format!("{err:#}").contains("audit_seal_interval_ms"),
            "{err:#}"
        );
    }

    #[test]
    fn the_record_timeout_defaults_to_the_stores_and_is_bounded() {
        let s = Settings::defaults().resolve().unwrap();
        let default = crate::served_encounters::DEFAULT_RECORD_TIMEOUT;
        assert_eq!(s.encounter_record_timeout_ms as u128, default.as_millis());
        let s = flags(&["--encounter-record-timeout-ms", "250"]).unwrap();
        assert_eq!(s.encounter_record_timeout_ms, 250);
        for bad in ["0", "99", "600001"] {
            let err = flags(&["--encounter-record-timeout-ms", bad]).unwrap_err();
            let err = format!("{err:#}");
            assert!(err.contains("encounter_record_timeout_ms"), "{err}");
        }
    }

    #[test]
    fn the_defaults_are_the_flags_defaults_and_pass_the_checks() {
        let s = Settings::defaults();
        assert_eq!(s.listen, SocketAddr::from(([127, 0, 0, 1], 50051)));
        assert_eq!(s.metrics_listen, SocketAddr::from(([127, 0, 0, 1], 9464)));
        assert_eq!(s.admin_listen, SocketAddr::from(([127, 0, 0, 1], 50052)));
        assert_eq!(s.engine, EngineChoice::Auto);
        assert_eq!(s.data_dir, PathBuf::from(".data"));
        assert_eq!(
            (s.max_top_k, s.default_threshold, s.max_message_bytes),
            (100, None, 64 * 1024)
        );
        assert_eq!(
            (s.drain_seconds, s.batch_max_size, s.batch_max_wait_us),
            (30, DEFAULT_BATCH_MAX_SIZE, 2_000)
        );
        assert_eq!((s.queue_capacity, s.max_queue_wait_ms), (1024, 250));
        assert!(!s.allow_software_gpu && !s.no_audit);
        assert!(s.gallery.is_none() && s.gpu_memory_budget_bytes.is_none());
        assert!(s.audit_dir.is_none() && s.port_keys.is_none() && s.config.is_none());
        let s = s.resolve().unwrap();
        assert_eq!(s.audit_dir, Some(PathBuf::from(".data/audit")));
        let again = s.clone().resolve().unwrap();
        assert_eq!(
            again.audit_dir, s.audit_dir,
            "resolving twice changes nothing"
        );
    }

    #[test]
    fn the_file_fills_what_no_flag_gives_with_its_own_types_and_keys() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        let config = f.to_str().unwrap();
        std::fs::write(
            &f,
            "gallery = \"/g.fgal\"\nallow_software_gpu = true\ndefault_threshold = 0.5\n\
             gpu_memory_budget_bytes = 1000\nport_keys = \"/p.keys\"\n",
        )
        .unwrap();
        let s = flags(&["--config", config, "--gallery", "/other.fgal"]).unwrap();
        assert_eq!(s.gallery, Some(PathBuf::from("/other.fgal")));
        assert!(s.allow_software_gpu);
        assert_eq!(s.default_threshold, Some(0.5));
        assert_eq!(s.gpu_memory_budget_bytes, Some(1000));
        assert_eq!(s.port_keys, Some(PathBuf::from("/p.keys")));
        assert_eq!(s.config, Some(f.clone()));
        // The file cannot name another file, nor give a value of the wrong type.
        std::fs::write(&f, "config = \"/other.toml\"\n").unwrap();
        let err = flags(&["--config", config]).unwrap_err();
        assert!(format!("{err:#}").contains("unknown field"), "{err:#}");
        std::fs::write(&f, "max_top_k = \"many\"\n").unwrap();
        let err = flags(&["--config", config]).unwrap_err();
        assert!(format!("{err:#}").contains("parsing config"), "{err:#}");
    }

    #[cfg(unix)]
    #[test]
    fn a_path_flag_need_not_be_utf8_beside_a_file() {
        use std::os::unix::ffi::OsStringExt;
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(&f, "max_top_k = 50\n").unwrap();
        let odd = OsString::from_vec(b"/g\xff.fgal".to_vec());
        let s = Settings::from_args([
            OsString::from("--config"),
            f.into_os_string(),
            OsString::from("--gallery"),
            odd.clone(),
        ])
        .unwrap();
        assert_eq!(s.gallery, Some(PathBuf::from(odd)));
        assert_eq!(s.max_top_k, 50);
    }
}
