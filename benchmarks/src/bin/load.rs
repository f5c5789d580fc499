//! `facegate-load`: many border ports calling `facegate.v1.Matcher/Identify`
//! over real gRPC connections, to measure what a port would see: latency of
//! answers, throughput, and how often it is shed or misses its deadline.
//!
//! * `closed --ports N`: N ports, each sending its next capture when the
//!   previous answer arrives (throughput at a fixed concurrency).
//! * `open --rate R`: Poisson arrivals at R/s that do not wait for the server
//!   (what ports do: travellers keep arriving), so queueing shows in latency.
//! * `sweep --rates A,B,...`: open-loop steps one after another, for the
//!   latency-against-offered-load curve (`--svg`).
//! * `scoped --rate R`: Poisson arrivals of scoped requests (one manifest,
//!   from one gate port), alone or beside national load (`--national-ports
//!   N` closed loop, or `--national-rate R`), each class reported apart:
//!   whether 1:few requests wait behind national 1:N batches. With
//!   `--admin-addr` it stages the manifest first (see [`ManifestArgs`]).
//!
//! Prints a markdown table on stdout; `--json`, `--markdown` and `--svg`
//! write files. See docs/benchmarks.md, "Load generator".

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use facegate_benchmarks::load::{
    Bound, Load, ManifestPlan, National, Probes, RunStats, ScopedRequests, Spread, StepOptions,
    Target, TlsFiles, Travellers, markdown, run_scoped_step, run_step, run_sweep, stage_manifest,
    write_svg,
};
use facegate_core::synth::{DEMO_SEED, DEMO_SUBJECTS, SynthConfig};

#[derive(Parser)]
#[command(
    name = "facegate-load",
    about = "Load generator: simulated border ports calling facegate's Identify over gRPC"
)]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand)]
enum Mode {
    /// N concurrent ports, each waiting for its answer before the next request.
    Closed {
        /// Concurrent ports.
        #[arg(long, default_value_t = 8)]
        ports: usize,
        #[command(flatten)]
        common: Common,
    },
    /// Poisson arrivals at a fixed rate, whatever the server's speed.
    Open {
        /// Offered requests per second.
        #[arg(long)]
        rate: f64,
        #[command(flatten)]
        open: OpenArgs,
        #[command(flatten)]
        common: Common,
    },
    /// Open-loop steps at each rate in turn, the same duration each.
    Sweep {
        /// Offered rates, requests per second, comma-separated.
        #[arg(long, value_delimiter = ',', required = true)]
        rates: Vec<f64>,
        #[command(flatten)]
        open: OpenArgs,
        /// Plot latency percentiles and throughput against offered load.
        #[arg(long, value_name = "OUT.svg")]
        svg: Option<PathBuf>,
        #[command(flatten)]
        common: Common,
    },
    /// Scoped (manifest) requests at a fixed rate, alone or beside national
    /// load; each class is reported apart.
    Scoped {
        #[command(flatten)]
        scoped: ScopedArgs,
        #[command(flatten)]
        open: OpenArgs,
        #[command(flatten)]
        common: Common,
    },
    /// Redraws the --svg plot of a sweep from its --json output.
    Plot {
        /// A sweep's JSON results.
        #[arg(long, value_name = "IN.json")]
        json: PathBuf,
        /// The plot to write.
        #[arg(long, value_name = "OUT.svg")]
        svg: PathBuf,
    },
}

/// The scoped requests, and the national load beside them.
#[derive(Args)]
struct ScopedArgs {
    /// Offered scoped requests per second (Poisson arrivals).
    #[arg(long)]
    rate: f64,
    #[command(flatten)]
    manifest: ManifestArgs,
    /// National load beside it: this many ports in closed loop.
    #[arg(long, conflicts_with = "national_rate")]
    national_ports: Option<usize>,
    /// National load beside it: Poisson arrivals at this rate, from --ports
    /// port ids.
    #[arg(long)]
    national_rate: Option<f64>,
}

/// The manifest scoped requests search, and its travellers.
///
/// The travellers are drawn from the synthetic population of the probes
/// (`--synth-subjects`, `--synth-seed`: the served gallery's, as
/// `facegate-index synth` or the demo gallery made it), and the scoped
/// requests send captures of them, so each finds its traveller as at a
/// boarding gate. Because the tool alone knows which captures it sends, it
/// stages the manifest itself (`--admin-addr`) rather than leave that to a
/// script: running it again against the same server reuses the manifest.
#[derive(Args)]
struct ManifestArgs {
    /// The manifest searched (`IdentifyRequest.manifest_id`).
    #[arg(long, default_value = "facegate-load")]
    manifest_id: String,
    /// The gate's port id, sent with every scoped capture: the manifest's port.
    #[arg(long, default_value = "gate-0001")]
    gate_port: String,
    /// Travellers on the manifest (420: NISTIR 8381's boarding gallery).
    #[arg(long, default_value_t = 420)]
    manifest_travellers: usize,
    /// Stage the manifest first on this back-office listener (e.g.
    /// http://127.0.0.1:50052); without it, it must be staged already.
    #[arg(long)]
    admin_addr: Option<String>,
    /// How long a manifest staged here stays searchable, seconds.
    #[arg(long, default_value_t = 3600)]
    valid_s: u64,
    /// Ask for the national search when the manifest gives no match.
    #[arg(long)]
    fallback: bool,
}

#[derive(Args)]
struct OpenArgs {
    /// Distinct port ids the arrivals come from.
    #[arg(long, default_value_t = 64)]
    ports: usize,
    /// In-flight requests beyond which arrivals are dropped (and counted).
    #[arg(long, default_value_t = 10_000)]
    max_outstanding: usize,
    /// How arrivals are given port ids.
    #[arg(long, value_enum, default_value_t = Spread::RoundRobin)]
    spread: Spread,
    /// Seed of the arrival times and of random port choice.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

#[derive(Args)]
struct Common {
    /// Server address.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    addr: String,
    /// Measured seconds per run (the default bound when --requests is absent).
    #[arg(long, conflicts_with = "requests")]
    duration_s: Option<f64>,
    /// Measured requests per run (open loop: arrivals) instead of a duration.
    #[arg(long)]
    requests: Option<u64>,
    /// Seconds of load before each run, not recorded.
    #[arg(long, default_value_t = 2.0)]
    warmup_s: f64,
    /// gRPC deadline of every request, milliseconds.
    #[arg(long, default_value_t = 1000)]
    deadline_ms: u64,
    /// TLS: the CA bundle of the server's certificate (then --addr is https://...).
    #[arg(long, value_name = "CA.pem")]
    tls_ca: Option<PathBuf>,
    /// TLS: the name the server's certificate carries.
    #[arg(long, default_value = "localhost", requires = "tls_ca")]
    tls_domain: String,
    /// Mutual TLS: the port's certificate (with --tls-key).
    #[arg(long, value_name = "CERT.pem", requires_all = ["tls_ca", "tls_key"])]
    tls_cert: Option<PathBuf>,
    /// Mutual TLS: the port's private key.
    #[arg(long, value_name = "KEY.pem", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// gRPC connections (HTTP/2 channels) shared round-robin by the ports.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Candidates asked for per request.
    #[arg(long, default_value_t = 10)]
    top_k: u32,
    /// Probes: float32 [n, d] .npy (as `facegate-index synth` writes); synthesised when absent.
    #[arg(long, value_name = "P.npy")]
    probes: Option<PathBuf>,
    /// Synthetic probes (and `scoped`'s travellers): subjects of the
    /// population (the demo gallery's by default).
    #[arg(long, default_value_t = DEMO_SUBJECTS)]
    synth_subjects: usize,
    /// Synthetic probes (and `scoped`'s travellers): population seed (the
    /// demo gallery's by default).
    #[arg(long, default_value_t = DEMO_SEED)]
    synth_seed: u64,
    /// Synthetic probes: how many distinct probes requests cycle through.
    #[arg(long, default_value_t = 1000)]
    synth_probes: usize,
    /// Synthetic probes: fraction of captures of an enrolled subject.
    #[arg(long, default_value_t = 0.8)]
    synth_mated_fraction: f64,
    /// Name written into the results, to compare runs.
    #[arg(long, default_value = "run")]
    label: String,
    /// Write the results as JSON (one object; an array for a sweep).
    #[arg(long, value_name = "OUT.json")]
    json: Option<PathBuf>,
    /// Write the markdown table (it is printed on stdout in any case).
    #[arg(long, value_name = "OUT.md")]
    markdown: Option<PathBuf>,
    /// No progress lines on stderr.
    #[arg(long)]
    quiet: bool,
    /// Ask the server to record every request as an encounter (an entry,
    /// with an encounter id unique to the run), to measure what recording
    /// costs.
    #[arg(long)]
    record: bool,
}

fn seconds(what: &str, s: f64) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(s)
        .with_context(|| format!("{what} must be a non-negative number of seconds, got {s}"))
}

impl Common {
    /// The TLS files the flags name, when the server speaks TLS.
    fn tls(&self) -> Option<TlsFiles> {
        Some(TlsFiles {
            ca: self.tls_ca.clone()?,
            domain: self.tls_domain.clone(),
            identity: self.tls_cert.clone().zip(self.tls_key.clone()),
        })
    }

    fn step(&self, load: Load, seed: u64) -> anyhow::Result<StepOptions> {
        let bound = match (self.requests, self.duration_s) {
            (Some(n), _) => Bound::Requests(n),
            (None, d) => Bound::Duration(seconds("--duration-s", d.unwrap_or(10.0))?),
        };
        Ok(StepOptions {
            load,
            bound,
            warmup: seconds("--warmup-s", self.warmup_s)?,
            deadline: Duration::from_millis(self.deadline_ms),
            top_k: self.top_k,
            label: self.label.clone(),
            seed,
            progress: !self.quiet,
            record_encounters: self.record,
        })
    }

    fn probes(&self, dim: usize) -> anyhow::Result<Probes> {
        match &self.probes {
            Some(p) => Probes::from_npy(p),
            None => Probes::synthesise(self.population(dim)),
        }
    }

    /// The synthetic population `--synth-*` describe.
    fn population(&self, dim: usize) -> SynthConfig {
        SynthConfig {
            subjects: self.synth_subjects,
            probes: self.synth_probes,
            dim,
            mated_fraction: self.synth_mated_fraction,
            seed: self.synth_seed,
        }
    }
}

fn open_load(rate: f64, a: &OpenArgs) -> Load {
    Load::Open {
        rate,
        ports: a.ports,
        max_outstanding: a.max_outstanding,
        spread: a.spread,
    }
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match &cli.mode {
        Mode::Plot { json, svg } => replot(json, svg),
        mode => load(mode).await,
    }
}

/// `closed`, `open` and `sweep`: runs the load and writes the results.
async fn load(mode: &Mode) -> anyhow::Result<()> {
    let common = match mode {
        Mode::Closed { common, .. }
        | Mode::Open { common, .. }
        | Mode::Sweep { common, .. }
        | Mode::Scoped { common, .. } => common,
        Mode::Plot { .. } => anyhow::bail!("plot generates no load"),
    };
    let target = Target::connect(&common.addr, common.connections, common.tls().as_ref()).await?;
    let info = target.info();
    eprintln!(
        "server {}: {} subjects, {} templates, d={}, model {}, engine {}",
        common.addr, info.subjects, info.rows, info.dimension, info.model_tag, info.engine
    );
    let probes = common.probes(info.dimension as usize)?;

    let runs: Vec<RunStats> = match mode {
        Mode::Closed { ports, common } => {
            let opts = common.step(Load::Closed { ports: *ports }, 1)?;
            vec![run_step(&target, &probes, &opts).await?]
        }
        Mode::Open { rate, open, common } => {
            let opts = common.step(open_load(*rate, open), open.seed)?;
            vec![run_step(&target, &probes, &opts).await?]
        }
        Mode::Sweep {
            rates,
            open,
            common,
            ..
        } => {
            let first = *rates.first().context("--rates is empty")?;
            let opts = common.step(open_load(first, open), open.seed)?;
            run_sweep(&target, &probes, rates, &opts).await?
        }
        Mode::Scoped {
            scoped,
            open,
            common,
        } => scoped_step(scoped, open, common, &target, &probes).await?,
        Mode::Plot { .. } => anyhow::bail!("plot generates no load"),
    };

    let table = markdown(&runs);
    print!("{table}");
    if let Some(p) = &common.markdown {
        write(p, &table)?;
    }
    if let Some(p) = &common.json {
        let text = match mode {
            Mode::Sweep { .. } | Mode::Scoped { .. } => serde_json::to_string_pretty(&runs),
            _ => serde_json::to_string_pretty(&runs[0]),
        }
        .context("encoding the results as JSON")?;
        write(p, &text)?;
    }
    if let Mode::Sweep { svg: Some(p), .. } = mode {
        write_svg(p, &runs, &title(&runs))?;
    }
    Ok(())
}

/// `scoped`: the manifest chosen (and staged, with `--admin-addr`), then one
/// step of scoped requests, beside national load when asked; the runs are
/// national (if any) then scoped.
async fn scoped_step(
    a: &ScopedArgs,
    open: &OpenArgs,
    common: &Common,
    target: &Target,
    probes: &Probes,
) -> anyhow::Result<Vec<RunStats>> {
    let m = &a.manifest;
    let population = common.population(probes.dim());
    let travellers = Travellers::synthesise(&population, m.manifest_travellers)?;
    if let Some(admin) = &m.admin_addr {
        let plan = ManifestPlan {
            id: m.manifest_id.clone(),
            port_id: m.gate_port.clone(),
            valid_for: Duration::from_secs(m.valid_s),
            subject_ids: travellers.subject_ids.clone(),
        };
        let staged = stage_manifest(admin, &plan).await?;
        eprintln!(
            "manifest {:?}: {} travellers, {}",
            m.manifest_id,
            staged.travellers,
            if staged.newly_staged {
                "staged"
            } else {
                "already staged"
            }
        );
    }
    // The gate's requests go on a connection of their own, as a gate's
    // link would, so they never wait behind national requests' frames.
    let gate = Target::connect(&common.addr, 1, common.tls().as_ref()).await?;
    let requests = ScopedRequests {
        manifest_id: m.manifest_id.clone(),
        port_id: m.gate_port.clone(),
        fallback: m.fallback,
        probes: travellers.captures,
    };
    let scoped_load = Load::Open {
        rate: a.rate,
        ports: 1,
        max_outstanding: open.max_outstanding,
        spread: Spread::RoundRobin,
    };
    let opts = common.step(scoped_load, open.seed)?;
    let national_load = match (a.national_ports, a.national_rate) {
        (Some(ports), _) => Some(Load::Closed { ports }),
        (None, Some(rate)) => Some(open_load(rate, open)),
        (None, None) => None,
    };
    let national = national_load.map(|load| National {
        target,
        probes,
        load,
    });
    let stats = run_scoped_step(&gate, &requests, &opts, national).await?;
    Ok(stats.into_runs())
}

fn title(runs: &[RunStats]) -> String {
    match runs.first() {
        Some(r) => format!("facegate Identify: {} ({})", r.label, r.engine),
        None => "facegate Identify".into(),
    }
}

/// `plot`: the sweep's figure again, from its JSON (an array or one object).
fn replot(json: &Path, svg: &Path) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(json).with_context(|| format!("reading {}", json.display()))?;
    let runs: Vec<RunStats> = serde_json::from_str(&text)
        .or_else(|_| serde_json::from_str::<RunStats>(&text).map(|r| vec![r]))
        .with_context(|| format!("{} holds no facegate-load results", json.display()))?;
    write_svg(svg, &runs, &title(&runs))
}
