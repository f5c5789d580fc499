//! What the PyTorch peer (benchmarks/gpu-run/torch_peer.py) reads: where
//! the bench gallery keeps its sections, the largest batch's probes and the
//! second design's answers.

use std::path::Path;

use facegate_core::format::{SectionKind, row_stride};
use facegate_core::{ElementType, Gallery, SearchEngine};
use facegate_gpu::GpuEngine;
use npyz::WriterBuilder;

use crate::{Args, probes};

/// Writes `items` as a C-order .npy of `shape`.
pub fn write_npy<T: npyz::AutoSerialize>(
    path: &Path,
    shape: &[u64],
    items: impl IntoIterator<Item = T>,
) -> anyhow::Result<()> {
    let file = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut w = npyz::WriteOptions::new()
        .default_dtype()
        .shape(shape)
        .writer(file)
        .begin_nd()?;
    w.extend(items)?;
    w.finish()?;
    Ok(())
}

/// Writes gallery.json (where bench.fgal, built beside it, keeps its int8
/// rows, their scales and each row's subject number: the peer maps these
/// sections as docs/gallery-format.md lays them out, so 5 GB of rows are not
/// written twice), probes.npy (the largest batch, f32, unit length) and
/// answers.npy (each probe's top-k subject numbers by the second design,
/// u32; u32::MAX pads) for the PyTorch peer.
pub fn dump(out: &Path, gallery: &Gallery, gpu: &GpuEngine, a: &Args) -> anyhow::Result<()> {
    let (rows, dim) = (a.rows, a.dim);
    let section = |kind| {
        gallery
            .header()
            .section(kind)
            .map(|s| s.offset)
            .ok_or_else(|| anyhow::anyhow!("the benchmark gallery has no {kind:?} section"))
    };
    let layout = serde_json::json!({
        "file": "bench.fgal",
        "rows": rows,
        "dim": dim,
        "scan_rows": {"offset": section(SectionKind::ScanRows)?, "stride": row_stride(ElementType::Int8, dim)},
        "row_scales": {"offset": section(SectionKind::RowScales)?},
        "row_subjects": {"offset": section(SectionKind::RowSubjects)?},
    });
    std::fs::write(
        out.join("gallery.json"),
        serde_json::to_vec_pretty(&layout)?,
    )?;
    let b = a.batches.iter().copied().max().unwrap_or(1);
    let p = probes(b, dim)?;
    let unit = (0..b).flat_map(|i| p.unit(i).to_vec());
    write_npy(&out.join("probes.npy"), &[b as u64, dim as u64], unit)?;
    let answers = gpu.search(&p, a.top_k)?;
    let subjects = answers.iter().flat_map(|list| {
        let mut s: Vec<u32> = list.iter().map(|c| c.subject).collect();
        s.resize(a.top_k, u32::MAX);
        s
    });
    write_npy(
        &out.join("answers.npy"),
        &[b as u64, a.top_k as u64],
        subjects,
    )
}
