//! `facegate-index audit --public-key`: the signed checkpoints' part of the
//! check, and its report on stderr: what signatures cover, what is not yet
//! sealed (the exposure window), and each checkpoint that fails.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use facegate_core::audit::{AuditVerifyingKey, SEALS_FILE, SealReport, verify_seals};

/// Verifies the signed checkpoints of the trail in `dir` against the public
/// keys in `key_files`, prints the report, and fails on any failure.
pub fn check(dir: &Path, key_files: &[PathBuf]) -> anyhow::Result<()> {
    let keys = key_files
        .iter()
        .map(|p| AuditVerifyingKey::load(p))
        .collect::<Result<Vec<_>, _>>()
        .context("reading --public-key")?;
    let report = verify_seals(dir, &keys)
        .with_context(|| format!("checking the signed checkpoints in {}", dir.display()))?;
    if !report.file_present {
        bail!(
            "{}: no {SEALS_FILE}: nothing in this trail is signed (was the server given \
             --audit-signing-key?)",
            dir.display()
        );
    }
    print(dir, &report);
    for f in &report.failures {
        eprintln!("{}: FAILED: {f}", dir.join(SEALS_FILE).display());
    }
    if !report.failures.is_empty() {
        bail!(
            "{}: {} of {} signed checkpoints failed",
            dir.display(),
            report.failures.len(),
            report.seals
        );
    }
    Ok(())
}

/// What the signatures cover and what they do not.
fn print(dir: &Path, r: &SealReport) {
    let d = dir.display();
    if r.incomplete_tail > 0 {
        eprintln!(
            "{d}: {SEALS_FILE} ends in an incomplete checkpoint of {} bytes (a crash while one \
             was written; the server cuts it off and seals those records again)",
            r.incomplete_tail
        );
    }
    for (a, b) in &r.expired {
        eprintln!("{d}: signed checkpoint of records {a}..={b}: signature valid, records expired");
    }
    for (a, b) in &r.partial {
        eprintln!(
            "{d}: signed checkpoint of records {a}..={b}: signature valid, its first records \
             expired (its hash cannot be recomputed)"
        );
    }
    if let Some((a, b)) = r.unsealed_before {
        eprintln!("{d}: records {a}..={b} precede the first signed checkpoint: not signed");
    }
    eprintln!(
        "{d}: signatures: {} checkpoints, {} records recomputed and covered by a valid signature",
        r.seals, r.records_verified
    );
    match (r.unsealed_after, r.last_seal_unix_ms) {
        (Some((a, b)), Some(t)) => eprintln!(
            "{d}: records {a}..={b} come after the last signed checkpoint (unix ms {t}): not yet \
             sealed, the exposure window"
        ),
        (Some((a, b)), None) => eprintln!("{d}: records {a}..={b}: no checkpoint signed yet"),
        (None, _) => eprintln!("{d}: every remaining record is sealed"),
    }
}
