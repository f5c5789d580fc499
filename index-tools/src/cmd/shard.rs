//! `facegate-index shard`: a gallery split into N shard galleries by
//! subject (`facegate_core::shard`), for a gallery that outgrows one
//! server: every template of a subject in one shard, the shard named by a
//! stable hash of its id, and a shard map naming each file and generation.
//!
//! Each shard is written from the most exact rows the source holds (as
//! compaction writes), so a subject scores in its shard as it did in the
//! whole, and the top-k merged over the shards equals the whole's.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use facegate_core::Gallery;
use facegate_core::shard::split;

use crate::progress;

/// Arguments of `shard`.
#[derive(clap::Args)]
pub struct Args {
    /// The gallery to split (compact it first to fold in its change log).
    #[arg(long)]
    pub gallery: PathBuf,
    /// Shards to split it into.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub shards: u32,
    /// Directory for the shard galleries (STEM-K-of-N.fgal) and the map
    /// (STEM.shards.json).
    #[arg(long)]
    pub out_dir: PathBuf,
    /// File name stem (default: the gallery's).
    #[arg(long)]
    pub stem: Option<String>,
    /// Replace existing shard files.
    #[arg(long)]
    pub force: bool,
    /// Print the map as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let source = Arc::new(
        Gallery::open(&a.gallery).with_context(|| format!("opening {}", a.gallery.display()))?,
    );
    let stem = match &a.stem {
        Some(s) => s.clone(),
        None => a
            .gallery
            .file_stem()
            .and_then(|s| s.to_str())
            .context("the gallery's file name has no UTF-8 stem: give --stem")?
            .to_string(),
    };
    std::fs::create_dir_all(&a.out_dir)
        .with_context(|| format!("creating {}", a.out_dir.display()))?;
    let pb = progress::bar(source.rows() as u64, "sharding", false);
    let map = split(source, a.shards, &a.out_dir, &stem, a.force, &mut |done| {
        pb.set_position(done)
    })
    .with_context(|| format!("splitting {}", a.gallery.display()))?;
    pb.finish_and_clear();
    if a.json {
        println!("{}", serde_json::to_string_pretty(&map)?);
        return Ok(());
    }
    for s in &map.shards {
        println!(
            "shard {}/{}: {} ({} templates, {} subjects, generation {})",
            s.index,
            map.count,
            a.out_dir.join(&s.file).display(),
            s.rows,
            s.subjects,
            s.generation
        );
    }
    println!(
        "map: {}",
        a.out_dir.join(format!("{stem}.shards.json")).display()
    );
    Ok(())
}
