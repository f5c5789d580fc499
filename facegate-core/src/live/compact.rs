//! Compaction: a base gallery plus its change log, folded into a new gallery
//! generation offline (`facegate-index compact`).
//!
//! The new gallery holds every live subject: the unmasked base rows in their
//! order, then the delta rows. Base rows are taken from the most exact copy
//! the file has (f16 re-score rows, else the scan rows), so a subject scores
//! the same before and after, to within the rounding of re-normalising an
//! f16 row. Its header records the parent generation and the last log
//! sequence folded in; a server adopting it (Reload, or a restart) carries
//! over only the changes logged after that.

use std::path::Path;
use std::sync::Arc;

use half::f16;

use super::LiveGallery;
use crate::error::GalleryError;
use crate::format::{
    BuildOptions, BuildReport, Gallery, Header, Lineage, RowSource, ScanRows,
    build_gallery_with_lineage,
};
use crate::wal::Change;

/// What a compaction folded in and produced.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CompactReport {
    /// Changes in the log (read up to its last complete frame).
    pub changes: usize,
    /// Changes that no longer applied (skipped, as at server start-up).
    pub skipped: usize,
    /// Last log sequence folded in (0: an empty log).
    pub through_sequence: u64,
    /// Base subjects dropped or replaced.
    pub masked_base_subjects: u64,
    /// Subjects whose templates came from the log.
    pub enrolled_subjects: u64,
    /// Rows and subjects of the parent and of the result.
    pub parent_rows: u64,
    /// Subjects of the parent gallery.
    pub parent_subjects: u64,
    /// Rows written.
    pub rows: u64,
    /// Subjects written.
    pub subjects: u64,
    /// Generation of the parent gallery.
    pub parent_generation: u64,
    /// Generation of the new gallery.
    pub generation: u64,
}

/// One row of the compacted gallery.
enum RowRef {
    Base(u32),
    Delta(Vec<f16>),
}

/// Rows for the writer, in order.
struct CompactRows<'a> {
    base: &'a Gallery,
    rows: Vec<RowRef>,
    next: usize,
}

impl RowSource for CompactRows<'_> {
    fn dim(&self) -> usize {
        self.base.dim()
    }

    fn rows(&self) -> usize {
        self.rows.len()
    }

    fn next_row(&mut self, out: &mut [f32]) -> Result<(), GalleryError> {
        match &self.rows[self.next] {
            RowRef::Delta(v) => {
                for (o, x) in out.iter_mut().zip(v) {
                    *o = x.to_f32();
                }
            }
            RowRef::Base(r) => exact_row(self.base, *r as usize, out),
        }
        self.next += 1;
        Ok(())
    }

    fn describe_row(&self, row: usize) -> String {
        match self.rows.get(row) {
            Some(RowRef::Base(r)) => format!("{} row {r}", self.base.path().display()),
            _ => format!("change-log template (output row {row})"),
        }
    }
}

/// Build options for a gallery of the same element type and model as the
/// one with header `h`: merges, shards and compactions keep both.
fn same_kind(h: &Header, overwrite: bool) -> BuildOptions {
    BuildOptions {
        scan_type: h.scan_type,
        model_tag: h.model_tag.clone(),
        overwrite,
    }
}

/// Row `r` of `base` as f32, from the most exact copy the file has: the
/// f16 re-score rows when present, else the scan rows (int8 dequantised).
fn exact_row(base: &Gallery, r: usize, out: &mut [f32]) {
    let dim = base.dim();
    if let Some((data, stride)) = base.rescore_rows() {
        for (o, x) in out.iter_mut().zip(&data[r * stride..r * stride + dim]) {
            *o = x.to_f32();
        }
        return;
    }
    match base.scan_rows() {
        ScanRows::F16 { data, stride } => {
            for (o, x) in out.iter_mut().zip(&data[r * stride..r * stride + dim]) {
                *o = x.to_f32();
            }
        }
        ScanRows::F32 { data, stride } => {
            out.copy_from_slice(&data[r * stride..r * stride + dim]);
        }
        ScanRows::Int8 {
            data,
            scales,
            stride,
        } => {
            for (o, &q) in out.iter_mut().zip(&data[r * stride..r * stride + dim]) {
                *o = f32::from(q) * scales[r];
            }
        }
    }
}

/// Rows of several galleries, in order, for the writer: a merge.
struct MergedRows<'a> {
    sources: &'a [Arc<Gallery>],
    /// (source, row) of each output row.
    rows: Vec<(u32, u32)>,
    next: usize,
}

impl RowSource for MergedRows<'_> {
    fn dim(&self) -> usize {
        self.sources.first().map_or(0, |g| g.dim())
    }

    fn rows(&self) -> usize {
        self.rows.len()
    }

    fn next_row(&mut self, out: &mut [f32]) -> Result<(), GalleryError> {
        let (g, r) = self.rows[self.next];
        exact_row(&self.sources[g as usize], r as usize, out);
        self.next += 1;
        Ok(())
    }

    fn describe_row(&self, row: usize) -> String {
        match self.rows.get(row) {
            Some(&(g, r)) => format!("{} row {r}", self.sources[g as usize].path().display()),
            None => format!("output row {row}"),
        }
    }
}

/// One gallery of every row of `sources`, in their order, each from the
/// most exact copy its file has (as compaction takes them): how shard
/// galleries become one again, to split them anew (resharding). The
/// sources must agree on dimension, element type and model; the caller
/// checks that they hold disjoint subjects (`shard::merge_map` does).
pub fn write_merged(
    sources: &[Arc<Gallery>],
    out: &Path,
    overwrite: bool,
    progress: &mut dyn FnMut(u64),
) -> Result<BuildReport, GalleryError> {
    let first = sources.first().ok_or_else(|| {
        GalleryError::Input(crate::error::InputError::BadParameter(
            "no gallery to merge".into(),
        ))
    })?;
    let h = first.header();
    let mut rows = Vec::new();
    let mut ids = Vec::new();
    for (g, source) in sources.iter().enumerate() {
        let sh = source.header();
        if source.dim() != first.dim() || sh.scan_type != h.scan_type || sh.model_tag != h.model_tag
        {
            return Err(GalleryError::Input(crate::error::InputError::BadParameter(
                format!(
                    "{}: dimension {}, {} rows, model {:?}; {} has {}, {}, {:?}: not shards of one gallery",
                    source.path().display(),
                    source.dim(),
                    sh.scan_type,
                    sh.model_tag,
                    first.path().display(),
                    first.dim(),
                    h.scan_type,
                    h.model_tag
                ),
            )));
        }
        for r in 0..source.rows() {
            ids.push(source.subject_id(source.row_subject(r)?)?.to_owned());
            rows.push((g as u32, r as u32));
        }
    }
    build_gallery_with_lineage(
        out,
        &mut MergedRows {
            sources,
            rows,
            next: 0,
        },
        &ids,
        "merged ids",
        &same_kind(h, overwrite),
        None,
        progress,
    )
}

/// A gallery of the base rows whose subject `keep` accepts, in their order,
/// each from the most exact copy the file has (as compaction takes them),
/// so that the subset scores as the whole did: how `facegate-index shard`
/// writes one shard. Same element type and model; a new generation.
pub fn write_subset(
    base: &Gallery,
    keep: &dyn Fn(&str) -> bool,
    out: &Path,
    overwrite: bool,
    progress: &mut dyn FnMut(u64),
) -> Result<BuildReport, GalleryError> {
    let mut rows = Vec::new();
    let mut ids = Vec::new();
    for r in 0..base.rows() {
        let id = base.subject_id(base.row_subject(r)?)?;
        if keep(id) {
            rows.push(RowRef::Base(r as u32));
            ids.push(id.to_owned());
        }
    }
    let h = base.header();
    build_gallery_with_lineage(
        out,
        &mut CompactRows {
            base,
            rows,
            next: 0,
        },
        &ids,
        "shard ids",
        &same_kind(h, overwrite),
        None,
        progress,
    )
}

/// Folds `changes` (a log of `base`'s generation, in order) into a new
/// gallery at `out`, of the same element type and model.
pub fn compact(
    base: Arc<Gallery>,
    changes: &[(u64, Change)],
    out: &Path,
    overwrite: bool,
    progress: &mut dyn FnMut(u64),
) -> Result<CompactReport, GalleryError> {
    let live = LiveGallery::new(base.clone());
    let mut skipped = 0;
    for (_, change) in changes {
        if live.apply(change).is_err() {
            skipped += 1;
        }
    }
    let mut rows = Vec::with_capacity(base.rows());
    let mut ids = Vec::with_capacity(base.rows());
    for r in 0..base.rows() {
        let s = base.row_subject(r)?;
        if !live.tombstones().is_removed(s) {
            rows.push(RowRef::Base(r as u32));
            ids.push(base.subject_id(s)?.to_owned());
        }
    }
    let (masked, enrolled) = {
        let o = live.read();
        let mut subjects: Vec<u32> = o.delta.subject_numbers().collect();
        subjects.sort_unstable();
        for &s in &subjects {
            let id = live.subject_id_in(&o, s)?;
            for &r in o.delta.rows_of(s).unwrap_or_default() {
                rows.push(RowRef::Delta(o.delta.row(r).to_vec()));
                ids.push(id.clone());
            }
        }
        (live.tombstones().count(), subjects.len() as u64)
    };
    let h = base.header();
    let through_sequence = changes.last().map_or(0, |(seq, _)| *seq);
    let lineage = Lineage {
        parent_generation: h.generation,
        through_sequence,
    };
    let report = build_gallery_with_lineage(
        out,
        &mut CompactRows {
            base: &base,
            rows,
            next: 0,
        },
        &ids,
        "compacted ids",
        &same_kind(h, overwrite),
        Some(lineage),
        progress,
    )?;
    Ok(CompactReport {
        changes: changes.len(),
        skipped,
        through_sequence,
        masked_base_subjects: masked,
        enrolled_subjects: enrolled,
        parent_rows: h.rows,
        parent_subjects: h.subjects,
        rows: report.header.rows,
        subjects: report.header.subjects,
        parent_generation: h.generation,
        generation: report.header.generation,
    })
}
