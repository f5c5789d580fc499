//! Compaction run by the server itself, so that removed subjects' bytes
//! leave the disk within a bound and not only when an operator remembers:
//! when the generation served has removed (or re-enrolled) subjects, the
//! base file and its change log are folded into a new generation written
//! over the gallery file (atomically: a temporary file, fsync'd, renamed,
//! the directory fsync'd), which the reload then serves; the reload deletes
//! the retired change log. Changes committed meanwhile are carried over by
//! the reload, as after an offline `facegate-index compact`.

use std::sync::{Arc, Weak};
use std::time::Duration;

use anyhow::Context;
use facegate_core::live::compact;
use facegate_core::wal::{Change, ChangeLog};

use crate::changes::log_path;
use crate::reload::Reloaded;
use crate::served::ServedGallery;

/// Compacts and reloads when the generation served holds bytes of a
/// subject no longer served: a base subject removed or re-enrolled, or a
/// change log with a removal or a re-enrolment; `None` when there was
/// nothing to fold away.
pub async fn compact_and_reload(state: &Arc<ServedGallery>) -> anyhow::Result<Option<Reloaded>> {
    let generation = state.generation();
    let live = generation.live().clone();
    drop(generation);
    let masked = live.counts().masked_base_subjects > 0;
    let base = live.base().clone();
    let number = base.header().generation;
    let log = log_path(state.data_dir(), number);
    let out = state.gallery_path().to_path_buf();
    let compacted = tokio::task::spawn_blocking(move || {
        let replay = if log.exists() {
            ChangeLog::read(&log, base.dim(), number)
                .with_context(|| format!("reading change log {}", log.display()))?
                .changes
        } else {
            Vec::new()
        };
        if !masked && !drops_anything(&replay) {
            return Ok::<_, anyhow::Error>(false);
        }
        compact(base, &replay, &out, true, &mut |_| {})
            .with_context(|| format!("writing {}", out.display()))?;
        Ok(true)
    })
    .await
    .context("the compaction task failed")??;
    if !compacted {
        return Ok(None);
    }
    let reloaded = state.reload().await.context("reloading after compaction")?;
    Ok(Some(reloaded))
}

/// Whether a change log holds templates or ids a compaction would drop: a
/// removal, or a subject enrolled more than once.
fn drops_anything(changes: &[(u64, Change)]) -> bool {
    let mut enrolled = std::collections::HashSet::new();
    changes.iter().any(|(_, c)| match c {
        Change::Remove { .. } => true,
        Change::Enroll { subject_id, .. } => !enrolled.insert(subject_id.as_str()),
    })
}

/// Every `every`, compacts and reloads when anything was removed: the
/// longest a removed template's bytes stay in the gallery file and change
/// log is about `every` plus one compaction.
pub async fn compact_on_timer(state: Weak<ServedGallery>, every: Duration) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await; // not at start-up: the first after one interval
    loop {
        ticks.tick().await;
        let Some(state) = state.upgrade() else { return };
        let outcome = match compact_and_reload(&state).await {
            Ok(Some(done)) => {
                tracing::info!(
                    previous = format!("{:016x}", done.previous),
                    generation = format!("{:016x}", done.generation),
                    carried_over = done.carried_over,
                    "compacted removed subjects out of the gallery"
                );
                "compacted"
            }
            Ok(None) => "nothing_removed",
            Err(e) => {
                tracing::error!(error = format!("{e:#}"), "scheduled compaction failed");
                "error"
            }
        };
        state
            .metrics()
            .compactions
            .with_label_values(&[outcome])
            .inc();
    }
}
