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
use facegate_core::shard::{merge_map, split};

use crate::progress;

/// Arguments of `shard`.
#[derive(clap::Args)]
pub struct Args {
    /// The gallery to split (compact it first to fold in its change log).
    #[arg(
        long,
        required_unless_present = "from_map",
        conflicts_with = "from_map"
    )]
    pub gallery: Option<PathBuf>,
    /// Reshard from the shards themselves: the map of an earlier split
    /// (its shard files beside it, each compacted first), merged into one
    /// gallery and split again into --shards.
    #[arg(long)]
    pub from_map: Option<PathBuf>,
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
    let input = a
        .gallery
        .as_ref()
        .or(a.from_map.as_ref())
        .context("give --gallery or --from-map")?;
    let stem = match &a.stem {
        Some(s) => s.clone(),
        None => input
            .file_stem()
            .and_then(|s| s.to_str())
            .map(|s| s.trim_end_matches(".shards").to_string())
            .context("the input's file name has no UTF-8 stem: give --stem")?,
    };
    std::fs::create_dir_all(&a.out_dir)
        .with_context(|| format!("creating {}", a.out_dir.display()))?;
    let (source, merged) = match &a.from_map {
        Some(map) => {
            let merged = a.out_dir.join(format!("{stem}.merged.fgal"));
            let pb = progress::spinner("merging the shards");
            merge_map(map, &merged, a.force, &mut |done| pb.set_position(done))
                .with_context(|| format!("merging the shards of {}", map.display()))?;
            pb.finish_and_clear();
            (merged.clone(), Some(merged))
        }
        None => (input.clone(), None),
    };
    let gallery =
        Arc::new(Gallery::open(&source).with_context(|| format!("opening {}", source.display()))?);
    let pb = progress::bar(gallery.rows() as u64, "sharding", false);
    let map = split(gallery, a.shards, &a.out_dir, &stem, a.force, &mut |done| {
        pb.set_position(done)
    })
    .with_context(|| format!("splitting {}", source.display()))?;
    pb.finish_and_clear();
    if let Some(m) = merged {
        // The merge was a step; the new shards and their map are the result.
        std::fs::remove_file(&m).with_context(|| format!("removing {}", m.display()))?;
    }
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
