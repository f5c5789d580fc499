//! Server settings: command-line flags, then environment variables, then an
//! optional TOML file, then defaults (earlier wins).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;

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

/// `facegate serve` flags; each can also come from the environment.
#[derive(Debug, Default, clap::Args)]
pub struct ServeArgs {
    /// Gallery file to serve; a built-in demo gallery when absent.
    #[arg(long, env = "FACEGATE_GALLERY")]
    pub gallery: Option<PathBuf>,
    /// Address to listen on (port 0 picks a free one).
    #[arg(long, env = "FACEGATE_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Address of the Prometheus `/metrics` listener (port 0 picks a free one).
    #[arg(long, env = "FACEGATE_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// Address of the GalleryAdmin service (enrolment back office), kept
    /// apart from the ports' listener (port 0 picks a free one).
    #[arg(long, env = "FACEGATE_ADMIN_LISTEN")]
    pub admin_listen: Option<SocketAddr>,
    /// Engine: auto, cpu or gpu.
    #[arg(long, env = "FACEGATE_ENGINE")]
    pub engine: Option<EngineChoice>,
    /// Accept a software GPU adapter (e.g. Mesa's lavapipe) for --engine gpu/auto.
    #[arg(long, env = "FACEGATE_ALLOW_SOFTWARE_GPU")]
    pub allow_software_gpu: bool,
    /// GPU memory the gallery rows may take; beyond it rows are streamed from host memory.
    #[arg(long, env = "FACEGATE_GPU_MEMORY_BUDGET_BYTES")]
    pub gpu_memory_budget_bytes: Option<u64>,
    /// Directory for server data (the demo gallery).
    #[arg(long, env = "FACEGATE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Largest top_k a request may ask for.
    #[arg(long, env = "FACEGATE_MAX_TOP_K")]
    pub max_top_k: Option<u32>,
    /// Threshold applied when a request gives none.
    #[arg(long, env = "FACEGATE_DEFAULT_THRESHOLD")]
    pub default_threshold: Option<f32>,
    /// Largest request message accepted, in bytes.
    #[arg(long, env = "FACEGATE_MAX_MESSAGE_BYTES")]
    pub max_message_bytes: Option<usize>,
    /// Seconds to let in-flight requests finish after SIGTERM.
    #[arg(long, env = "FACEGATE_DRAIN_SECONDS")]
    pub drain_seconds: Option<u64>,
    /// Most probes searched in one engine call (1 turns batching off).
    #[arg(long, env = "FACEGATE_BATCH_MAX_SIZE")]
    pub batch_max_size: Option<usize>,
    /// Microseconds the oldest queued search waits for its batch to fill
    /// while the engine is idle.
    #[arg(long, env = "FACEGATE_BATCH_MAX_WAIT_US")]
    pub batch_max_wait_us: Option<u64>,
    /// Milliseconds a batch is predicted to run on the engine at most: batches
    /// take only as many probes as fit (at least one); 0 lifts the limit.
    #[arg(long, env = "FACEGATE_BATCH_TIME_TARGET_MS")]
    pub batch_time_target_ms: Option<u64>,
    /// Most searches queued at once; beyond it requests are shed.
    #[arg(long, env = "FACEGATE_QUEUE_CAPACITY")]
    pub queue_capacity: Option<usize>,
    /// Searches expected to wait longer than this in the queue are shed on
    /// arrival (RESOURCE_EXHAUSTED) instead of waiting for their deadline.
    #[arg(long, env = "FACEGATE_MAX_QUEUE_WAIT_MS")]
    pub max_queue_wait_ms: Option<u64>,
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
    /// Serve without an audit trail (tests, benchmarks); never in service.
    #[arg(long, env = "FACEGATE_NO_AUDIT")]
    pub no_audit: bool,
    /// TOML file with any of the settings above (snake_case keys).
    #[arg(long, env = "FACEGATE_CONFIG")]
    pub config: Option<PathBuf>,
}

/// The same settings as read from a TOML file.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    gallery: Option<PathBuf>,
    listen: Option<SocketAddr>,
    metrics_listen: Option<SocketAddr>,
    admin_listen: Option<SocketAddr>,
    engine: Option<EngineChoice>,
    allow_software_gpu: Option<bool>,
    gpu_memory_budget_bytes: Option<u64>,
    data_dir: Option<PathBuf>,
    max_top_k: Option<u32>,
    default_threshold: Option<f32>,
    max_message_bytes: Option<usize>,
    drain_seconds: Option<u64>,
    batch_max_size: Option<usize>,
    batch_max_wait_us: Option<u64>,
    batch_time_target_ms: Option<u64>,
    queue_capacity: Option<usize>,
    max_queue_wait_ms: Option<u64>,
    audit_dir: Option<PathBuf>,
    no_audit: Option<bool>,
    port_keys: Option<PathBuf>,
    admin_keys: Option<PathBuf>,
}

/// Resolved settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Gallery file, or `None` for the demo gallery.
    pub gallery: Option<PathBuf>,
    /// Listen address.
    pub listen: SocketAddr,
    /// Metrics listen address.
    pub metrics_listen: SocketAddr,
    /// GalleryAdmin listen address.
    pub admin_listen: SocketAddr,
    /// Engine choice.
    pub engine: EngineChoice,
    /// Whether a software GPU adapter may be used.
    pub allow_software_gpu: bool,
    /// GPU memory budget for the gallery rows (none: the device's).
    pub gpu_memory_budget_bytes: Option<u64>,
    /// Data directory.
    pub data_dir: PathBuf,
    /// Largest top_k.
    pub max_top_k: u32,
    /// Default decision threshold.
    pub default_threshold: f32,
    /// Largest request message, bytes.
    pub max_message_bytes: usize,
    /// Grace period for draining on SIGTERM.
    pub drain_seconds: u64,
    /// Most probes per engine call.
    pub batch_max_size: usize,
    /// Longest wait for a batch to fill, microseconds.
    pub batch_max_wait_us: u64,
    /// Longest predicted engine time of a batch, milliseconds (0: no limit).
    pub batch_time_target_ms: u64,
    /// Most searches queued.
    pub queue_capacity: usize,
    /// Longest expected queue wait admitted, milliseconds.
    pub max_queue_wait_ms: u64,
    /// Audit trail directory (none only when turned off with `--no-audit`).
    pub audit_dir: Option<PathBuf>,
    /// Keys file of the ports (none: ports are not authenticated).
    pub port_keys: Option<PathBuf>,
    /// Keys file of the back office (none: admin calls are not authenticated).
    pub admin_keys: Option<PathBuf>,
}

impl Settings {
    /// Merges flags/environment over the TOML file over defaults, and checks ranges.
    pub fn resolve(args: ServeArgs) -> anyhow::Result<Settings> {
        let file = match &args.config {
            Some(p) => read_file(p)?,
            None => FileSettings::default(),
        };
        let s = Settings {
            gallery: args.gallery.or(file.gallery),
            listen: args
                .listen
                .or(file.listen)
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 50051))),
            metrics_listen: args
                .metrics_listen
                .or(file.metrics_listen)
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 9464))),
            admin_listen: args
                .admin_listen
                .or(file.admin_listen)
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 50052))),
            engine: args.engine.or(file.engine).unwrap_or(EngineChoice::Auto),
            allow_software_gpu: args.allow_software_gpu || file.allow_software_gpu.unwrap_or(false),
            gpu_memory_budget_bytes: args
                .gpu_memory_budget_bytes
                .or(file.gpu_memory_budget_bytes),
            data_dir: args
                .data_dir
                .or(file.data_dir)
                .unwrap_or_else(|| PathBuf::from(".data")),
            max_top_k: args.max_top_k.or(file.max_top_k).unwrap_or(100),
            default_threshold: args
                .default_threshold
                .or(file.default_threshold)
                .unwrap_or(0.35),
            max_message_bytes: args
                .max_message_bytes
                .or(file.max_message_bytes)
                .unwrap_or(64 * 1024),
            drain_seconds: args.drain_seconds.or(file.drain_seconds).unwrap_or(30),
            batch_max_size: args
                .batch_max_size
                .or(file.batch_max_size)
                .unwrap_or(DEFAULT_BATCH_MAX_SIZE),
            batch_max_wait_us: args
                .batch_max_wait_us
                .or(file.batch_max_wait_us)
                .unwrap_or(2_000),
            batch_time_target_ms: args
                .batch_time_target_ms
                .or(file.batch_time_target_ms)
                .unwrap_or(DEFAULT_BATCH_TIME_TARGET_MS),
            queue_capacity: args.queue_capacity.or(file.queue_capacity).unwrap_or(1024),
            max_queue_wait_ms: args
                .max_queue_wait_ms
                .or(file.max_queue_wait_ms)
                .unwrap_or(250),
            audit_dir: None,
            port_keys: args.port_keys.or(file.port_keys),
            admin_keys: args.admin_keys.or(file.admin_keys),
        };
        let no_audit = args.no_audit || file.no_audit.unwrap_or(false);
        let audit_dir = args.audit_dir.or(file.audit_dir);
        let s = match (no_audit, audit_dir) {
            (true, Some(dir)) => anyhow::bail!(
                "no_audit and audit_dir ({}) contradict each other: give one",
                dir.display()
            ),
            (true, None) => s,
            (false, dir) => Settings {
                audit_dir: Some(dir.unwrap_or_else(|| s.data_dir.join("audit"))),
                ..s
            },
        };
        if s.max_top_k == 0 || s.max_top_k > 10_000 {
            anyhow::bail!("max_top_k must be within 1..=10000, got {}", s.max_top_k);
        }
        if !(-1.0..=1.0).contains(&s.default_threshold) {
            anyhow::bail!(
                "default_threshold must be within -1..=1, got {}",
                s.default_threshold
            );
        }
        if s.max_message_bytes < 1024 {
            anyhow::bail!("max_message_bytes must be at least 1024");
        }
        if !(1..=MAX_BATCH_SIZE).contains(&s.batch_max_size) {
            anyhow::bail!(
                "batch_max_size must be within 1..={MAX_BATCH_SIZE}, got {}",
                s.batch_max_size
            );
        }
        if s.batch_max_wait_us > 1_000_000 {
            anyhow::bail!(
                "batch_max_wait_us must be at most 1000000 (one second), got {}",
                s.batch_max_wait_us
            );
        }
        if s.batch_time_target_ms > 60_000 {
            anyhow::bail!(
                "batch_time_target_ms must be at most 60000 (one minute; 0 lifts the limit), got {}",
                s.batch_time_target_ms
            );
        }
        if s.queue_capacity == 0 {
            anyhow::bail!("queue_capacity must be at least 1");
        }
        Ok(s)
    }
}

fn read_file(p: &Path) -> anyhow::Result<FileSettings> {
    let text =
        std::fs::read_to_string(p).with_context(|| format!("reading config {}", p.display()))?;
    toml::from_str(&text).with_context(|| format!("parsing config {}", p.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_file_and_file_overrides_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(
            &f,
            "listen = \"127.0.0.1:7000\"\nmax_top_k = 50\nengine = \"cpu\"\n",
        )
        .unwrap();
        let s = Settings::resolve(ServeArgs {
            config: Some(f.clone()),
            max_top_k: Some(20),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(s.listen.port(), 7000);
        assert_eq!(s.max_top_k, 20);
        assert_eq!(s.engine, EngineChoice::Cpu);
        assert_eq!(s.default_threshold, 0.35);
        std::fs::write(&f, "listn = \"x\"\n").unwrap();
        let err = Settings::resolve(ServeArgs {
            config: Some(f),
            ..Default::default()
        })
        .unwrap_err();
        assert!(format!("{err:#}").contains("unknown field"), "{err:#}");
    }

    #[test]
    fn batch_time_target_has_a_default_is_read_from_the_file_and_is_bounded() {
        let s = Settings::resolve(ServeArgs::default()).unwrap();
        assert_eq!(s.batch_time_target_ms, DEFAULT_BATCH_TIME_TARGET_MS);
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(&f, "batch_time_target_ms = 0\n").unwrap();
        let from_file = |batch_time_target_ms| {
            Settings::resolve(ServeArgs {
                config: Some(f.clone()),
                batch_time_target_ms,
                ..Default::default()
            })
        };
        assert_eq!(from_file(None).unwrap().batch_time_target_ms, 0);
        assert_eq!(from_file(Some(25)).unwrap().batch_time_target_ms, 25);
        let err = from_file(Some(60_001)).unwrap_err();
        assert!(
            format!("{err:#}").contains("batch_time_target_ms must be at most 60000"),
            "{err:#}"
        );
    }

    #[test]
    fn audit_is_on_by_default_under_the_data_dir_and_off_only_when_asked() {
        let s = Settings::resolve(ServeArgs {
            data_dir: Some("/srv/fg".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(s.audit_dir, Some(PathBuf::from("/srv/fg/audit")));
        let s = Settings::resolve(ServeArgs {
            audit_dir: Some("/audit".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(s.audit_dir, Some(PathBuf::from("/audit")));
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(&f, "no_audit = true\n").unwrap();
        let s = Settings::resolve(ServeArgs {
            config: Some(f.clone()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(s.audit_dir, None);
        let err = Settings::resolve(ServeArgs {
            config: Some(f),
            audit_dir: Some("/audit".into()),
            ..Default::default()
        })
        .unwrap_err();
        assert!(format!("{err:#}").contains("contradict"), "{err:#}");
    }
}
