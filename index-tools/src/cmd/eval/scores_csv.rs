//! scores.csv: one row per probe, enough for an outside tool (numpy) to
//! recompute FPIR, FNIR and the CMC from counts:
//! `probe,mated,group,mate_rank,mate_score,best_subject,best_score`.
//!
//! `mate_rank` is the mate's 1-based rank among the candidates (0 when it
//! is not among them, and for non-mated probes); `mate_score` the probe's
//! genuine (1:1) score against its mate (empty for non-mated probes);
//! `best_subject` and `best_score` the rank-1 candidate (empty when none).
//! Scores are printed as the shortest decimals that read back as the same
//! f32, so that comparisons with report.json's thresholds are exact.

use std::path::Path;

use anyhow::Context;
use facegate_core::Gallery;
use facegate_core::accuracy::Searches;

use super::search::Searched;

/// Writes scores.csv.
pub fn write(
    path: &Path,
    gallery: &Gallery,
    searches: &Searches,
    searched: &Searched,
) -> anyhow::Result<()> {
    let mut w =
        csv::Writer::from_path(path).with_context(|| format!("creating {}", path.display()))?;
    w.write_record([
        "probe",
        "mated",
        "group",
        "mate_rank",
        "mate_score",
        "best_subject",
        "best_score",
    ])?;
    let opt = |s: Option<f32>| s.map(|s| s.to_string()).unwrap_or_default();
    for (i, (o, genuine)) in searches
        .outcomes()
        .iter()
        .zip(&searched.genuine)
        .enumerate()
    {
        let best_subject = match o.best {
            Some(b) => gallery.subject_id(b.subject)?.to_string(),
            None => String::new(),
        };
        w.write_record([
            i.to_string(),
            o.mated.to_string(),
            searches.groups()[o.group].clone(),
            o.mate_rank.unwrap_or(0).to_string(),
            opt(*genuine),
            best_subject,
            opt(o.best.map(|b| b.score)),
        ])?;
    }
    w.flush()
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
