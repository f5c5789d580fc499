//! `speed`: manifest (1:few) search against the national 1:N search, on
//! the same gallery and probes, in one run: what a port gains by searching
//! a flight's manifest instead of the nation.
//!
//! The scoped search scores every template of each listed traveller exactly
//! (`LiveGallery::search_subjects`); the national search is the CPU engine's
//! full scan with its exact re-score (`LiveGallery::search`). Both run one
//! probe at a time, as a port's capture arrives; the national one is what
//! the dispatcher would run for a batch of one.

use std::time::Instant;

use anyhow::Context;
use facegate_benchmarks::{NoiseRows, noise_gallery};
use facegate_core::format::RowSource;
use facegate_core::live::LiveGallery;
use facegate_core::{CpuEngine, ElementType, ProbeBatch, SearchEngine};

/// Arguments of `speed`.
#[derive(clap::Args)]
pub struct Args {
    /// Gallery rows (two templates per subject).
    #[arg(long, default_value_t = 1_000_000)]
    rows: usize,
    /// Template dimension.
    #[arg(long, default_value_t = 512)]
    dim: usize,
    /// Travellers on the manifest (NISTIR 8381's boarding gallery: 420).
    #[arg(long, value_delimiter = ',', default_value = "420,5000")]
    travellers: Vec<usize>,
    /// Probes timed (each searched both ways; medians reported).
    #[arg(long, default_value_t = 21)]
    probes: usize,
    /// Candidates per probe.
    #[arg(long, default_value_t = 10)]
    top_k: usize,
    /// Directory for the temporary gallery (default: the system temp dir).
    #[arg(long)]
    dir: Option<std::path::PathBuf>,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Times both searches and prints the table.
pub fn run(a: Args) -> anyhow::Result<()> {
    anyhow::ensure!(
        a.probes >= 1 && a.top_k >= 1,
        "probes and top-k must be at least 1"
    );
    let dir = match &a.dir {
        Some(d) => tempfile::tempdir_in(d)?,
        None => tempfile::tempdir()?,
    };
    eprintln!("building a {} x {} int8 noise gallery", a.rows, a.dim);
    let gallery = noise_gallery(
        &dir.path().join("manifest-bench.fgal"),
        a.rows,
        a.dim,
        ElementType::Int8,
    )?;
    let live = LiveGallery::new(gallery.clone());
    let engine = CpuEngine::new(live.scan_target().clone());
    let mut noise = NoiseRows::with_seed(a.probes, a.dim, 7);
    let mut probes = Vec::with_capacity(a.probes);
    for _ in 0..a.probes {
        let mut p = vec![0f32; a.dim];
        noise.next_row(&mut p)?;
        probes.push(ProbeBatch::new(a.dim, &p)?);
    }
    live.search(&engine, &probes[0], a.top_k)?; // warm-up: pages the rows in
    let national = time_each(&probes, |p| live.search(&engine, p, a.top_k).map(|_| ()))?;
    println!(
        "\n{} rows x {} ({} subjects), top-{}, {}, one probe at a time, median of {}\n",
        a.rows,
        a.dim,
        gallery.subjects(),
        a.top_k,
        engine.describe(),
        a.probes
    );
    println!("| search | subjects searched | median ms | national / this |");
    println!("|---|---:|---:|---:|");
    println!(
        "| national 1:N | {} | {:.2} | 1.0x |",
        gallery.subjects(),
        national * 1e3
    );
    for &n in &a.travellers {
        anyhow::ensure!(
            n >= 1 && n <= gallery.subjects(),
            "--travellers {n}: 1..={}",
            gallery.subjects()
        );
        // Spread over the gallery, as a flight's passengers are.
        let step = gallery.subjects() / n;
        let ids: Vec<String> = (0..n)
            .map(|i| gallery.subject_id((i * step) as u32).map(str::to_owned))
            .collect::<Result<_, _>>()
            .context("reading subject ids")?;
        let scoped = time_each(&probes, |p| {
            live.search_subjects(p, 0, &ids, a.top_k).map(|_| ())
        })?;
        println!(
            "| manifest of {n} | {n} | {:.3} | {:.0}x |",
            scoped * 1e3,
            national / scoped
        );
    }
    Ok(())
}

/// The median time of `search` over the probes.
fn time_each<E: std::error::Error + Send + Sync + 'static>(
    probes: &[ProbeBatch],
    mut search: impl FnMut(&ProbeBatch) -> Result<(), E>,
) -> anyhow::Result<f64> {
    let mut times = Vec::with_capacity(probes.len());
    for p in probes {
        let t = Instant::now();
        search(p)?;
        times.push(t.elapsed().as_secs_f64());
    }
    Ok(median(times))
}
