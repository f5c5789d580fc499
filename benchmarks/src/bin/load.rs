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
//!
//! Prints a markdown table on stdout; `--json`, `--markdown` and `--svg`
//! write files. See docs/benchmarks.md, "Load generator".

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use facegate_benchmarks::load::{
    Bound, Load, Probes, RunStats, Spread, StepOptions, Target, markdown, run_step, run_sweep,
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
    /// gRPC connections (HTTP/2 channels) shared round-robin by the ports.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Candidates asked for per request.
    #[arg(long, default_value_t = 10)]
    top_k: u32,
    /// Probes: float32 [n, d] .npy (as `facegate-index synth` writes); synthesised when absent.
    #[arg(long, value_name = "P.npy")]
    probes: Option<PathBuf>,
    /// Synthetic probes: subjects of the population (the demo gallery's by default).
    #[arg(long, default_value_t = DEMO_SUBJECTS)]
    synth_subjects: usize,
    /// Synthetic probes: population seed (the demo gallery's by default).
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
}

fn seconds(what: &str, s: f64) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(s)
        .with_context(|| format!("{what} must be a non-negative number of seconds, got {s}"))
}

impl Common {
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
        })
    }

    fn probes(&self, dim: usize) -> anyhow::Result<Probes> {
        match &self.probes {
            Some(p) => Probes::from_npy(p),
            None => Probes::synthesise(SynthConfig {
                subjects: self.synth_subjects,
                probes: self.synth_probes,
                dim,
                mated_fraction: self.synth_mated_fraction,
                seed: self.synth_seed,
            }),
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
        Mode::Closed { common, .. } | Mode::Open { common, .. } | Mode::Sweep { common, .. } => {
            common
        }
        Mode::Plot { .. } => anyhow::bail!("plot generates no load"),
    };
    let target = Target::connect(&common.addr, common.connections).await?;
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
        Mode::Plot { .. } => anyhow::bail!("plot generates no load"),
    };

    let table = markdown(&runs);
    print!("{table}");
    if let Some(p) = &common.markdown {
        write(p, &table)?;
    }
    if let Some(p) = &common.json {
        let text = match mode {
            Mode::Sweep { .. } => serde_json::to_string_pretty(&runs),
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
