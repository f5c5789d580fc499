//! `facegate-index build`: embeddings + ids to a gallery file.

use std::path::PathBuf;

use anyhow::Context;
use facegate_core::ElementType;
use facegate_core::format::{BuildOptions, RowSource, build_gallery};
use facegate_core::ids::read_ids;
use facegate_core::npy::NpyRows;

use crate::progress;

/// Arguments of `build`.
#[derive(clap::Args)]
pub struct Args {
    /// Embeddings, .npy float32 [N, d] in C order.
    #[arg(long)]
    pub embeddings: PathBuf,
    /// Subject ids, one per line, one line per embedding row (repeats allowed).
    #[arg(long)]
    pub ids: PathBuf,
    /// Gallery file to write.
    #[arg(long)]
    pub out: PathBuf,
    /// Element type of the scan rows (int8 also stores f16 rows for exact re-scoring).
    #[arg(long, default_value = "int8")]
    pub dtype: ElementType,
    /// Name and version of the embedding model that made the templates.
    #[arg(long, default_value = "unspecified")]
    pub model_tag: String,
    /// Replace the output if it exists.
    #[arg(long)]
    pub force: bool,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    super::refuse_existing(&a.out, a.force)?;
    let mut rows = NpyRows::open(&a.embeddings)?;
    let ids = read_ids(&a.ids)?;
    let pb = progress::bar(rows.rows() as u64, "building", false);
    let report = build_gallery(
        &a.out,
        &mut rows,
        &ids,
        &a.ids.display().to_string(),
        &BuildOptions {
            scan_type: a.dtype,
            model_tag: a.model_tag.clone(),
            overwrite: a.force,
        },
        &mut |done| pb.set_position(done),
    )
    .with_context(|| format!("building {}", a.out.display()))?;
    pb.finish_and_clear();
    let h = &report.header;
    println!(
        "wrote {}: {} rows, {} subjects, dim {}, {} (model {}), {} bytes, generation {:016x}",
        a.out.display(),
        h.rows,
        h.subjects,
        h.dim,
        h.scan_type,
        h.model_tag,
        report.file_bytes,
        h.generation
    );
    Ok(())
}
