//! The ground-truth CSV: one row per probe, with a header naming at least
//! `probe` (the row of the probe in the .npy), `mated` (`true`/`false`),
//! `subject_id` (the mate's id when mated, else empty) and `group`; other
//! columns (`synth` adds `capture_noise`) are ignored. Rows may come in
//! any order but must name every probe of the .npy exactly once.

use std::path::Path;

use anyhow::{Context, bail};
use facegate_core::Gallery;

/// The truth about one probe.
pub struct ProbeTruth {
    /// The mate's subject number in the gallery, for a mated probe.
    pub mate: Option<u32>,
    /// The demographic group label.
    pub group: String,
}

/// Column positions of the fields read.
struct Columns {
    probe: usize,
    mated: usize,
    subject_id: usize,
    group: usize,
}

/// Reads and checks the truth of `probes` probes of `probes_path`; errors
/// name the file and line.
pub fn read(
    path: &Path,
    probes: usize,
    gallery: &Gallery,
    probes_path: &Path,
) -> anyhow::Result<Vec<ProbeTruth>> {
    let mut r =
        csv::Reader::from_path(path).with_context(|| format!("opening {}", path.display()))?;
    let cols = columns(r.headers().with_context(|| path.display().to_string())?)
        .with_context(|| format!("{}: header", path.display()))?;
    let mut out: Vec<Option<ProbeTruth>> = (0..probes).map(|_| None).collect();
    let mut rows = 0usize;
    for rec in r.records() {
        let rec = rec.with_context(|| path.display().to_string())?;
        let line = rec.position().map_or(0, |p| p.line());
        let at = || format!("{}:{line}", path.display());
        let (index, t) = parse(&rec, &cols, probes, gallery).with_context(at)?;
        if out[index].replace(t).is_some() {
            bail!("{}: probe {index} appears twice", at());
        }
        rows += 1;
    }
    if rows != probes {
        bail!(
            "{}: {rows} rows, but {} has {probes} probes",
            path.display(),
            probes_path.display()
        );
    }
    // Each of `probes` distinct indices below `probes` appeared: all are set.
    out.into_iter()
        .enumerate()
        .map(|(i, t)| t.with_context(|| format!("{}: no row for probe {i}", path.display())))
        .collect()
}

fn columns(h: &csv::StringRecord) -> anyhow::Result<Columns> {
    let find = |name: &str| {
        h.iter().position(|c| c.trim() == name).with_context(|| {
            format!(
                "no column {name:?} (has: {})",
                h.iter().collect::<Vec<_>>().join(", ")
            )
        })
    };
    Ok(Columns {
        probe: find("probe")?,
        mated: find("mated")?,
        subject_id: find("subject_id")?,
        group: find("group")?,
    })
}

/// One row: the probe's index and its truth.
fn parse(
    rec: &csv::StringRecord,
    cols: &Columns,
    probes: usize,
    gallery: &Gallery,
) -> anyhow::Result<(usize, ProbeTruth)> {
    let field = |i: usize| rec.get(i).map(str::trim).unwrap_or_default();
    let index: usize = field(cols.probe)
        .parse()
        .with_context(|| format!("probe {:?} is not a row number", field(cols.probe)))?;
    if index >= probes {
        bail!("unknown probe index {index}: the probes file has {probes} rows");
    }
    let mated = match field(cols.mated) {
        "true" => true,
        "false" => false,
        other => bail!("mated must be true or false, got {other:?}"),
    };
    let group = field(cols.group);
    if group.is_empty() {
        bail!("probe {index} has no group");
    }
    let id = field(cols.subject_id);
    let mate = if mated {
        let s = gallery.find_subject(id)?.with_context(|| {
            format!("probe {index} is mated with subject {id:?}, which is not in the gallery")
        })?;
        Some(s)
    } else {
        None
    };
    Ok((
        index,
        ProbeTruth {
            mate,
            group: group.to_string(),
        },
    ))
}
