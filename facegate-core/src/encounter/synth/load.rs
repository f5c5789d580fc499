//! Synthetic histories written into a real SQLite store through its bulk
//! path, generated on one thread while the store's writer commits the
//! previous batch on another.

use std::sync::mpsc::sync_channel;

use super::{EncounterSynth, History};
use crate::encounter::model::{Encounter, Traveller};
use crate::encounter::sqlite_store::SqliteEncounters;
use crate::encounter::store::{EncounterError, end_of};

/// Encounters per transaction of the load.
pub const BATCH: usize = 50_000;

/// What [`load`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LoadReport {
    /// Travellers whose file and records were written.
    pub travellers: usize,
    /// Encounter records written.
    pub encounters: u64,
    /// Records already in the store (the same seed loaded before): skipped.
    pub duplicates: u64,
}

/// One transaction's worth: the travellers' files and their records.
type Batch = (Vec<Traveller>, Vec<Encounter>);

/// Writes the population's files and records into `store`, [`BATCH`]
/// encounters per transaction (each durable); stops once `max_encounters`
/// are written when given (the last traveller's history then cut short).
/// `progress` is called with the counts so far after each batch. Travellers'
/// files are written with the end of the span as their update time.
pub fn load(
    synth: &EncounterSynth,
    store: &SqliteEncounters,
    max_encounters: Option<u64>,
    progress: &mut dyn FnMut(&LoadReport),
) -> Result<LoadReport, EncounterError> {
    let (tx, rx) = sync_channel::<Batch>(2);
    std::thread::scope(|scope| {
        scope.spawn(move || generate(synth, max_encounters, &tx));
        let mut report = LoadReport::default();
        let at = end_of(synth.end());
        for (travellers, encounters) in rx {
            report.travellers += travellers.len();
            store.put_travellers(travellers, at)?;
            let done = store.record_many(encounters)?;
            report.encounters += done.recorded as u64;
            report.duplicates += done.duplicates as u64;
            progress(&report);
        }
        Ok(report)
    })
}

/// Sends batches of histories until the population (or the cap) is done,
/// or the receiver has stopped (a write failed).
fn generate(synth: &EncounterSynth, max: Option<u64>, tx: &std::sync::mpsc::SyncSender<Batch>) {
    let mut batch: Batch = (Vec::new(), Vec::with_capacity(BATCH));
    let mut left = max.unwrap_or(u64::MAX);
    for i in 0..synth.config().travellers {
        if left == 0 {
            break;
        }
        let History {
            traveller,
            mut encounters,
            ..
        } = synth.history(i);
        encounters.truncate(usize::try_from(left).unwrap_or(usize::MAX));
        left -= encounters.len() as u64;
        batch.0.push(traveller);
        batch.1.extend(encounters);
        if batch.1.len() >= BATCH {
            let full = std::mem::replace(&mut batch, (Vec::new(), Vec::with_capacity(BATCH)));
            if tx.send(full).is_err() {
                return;
            }
        }
    }
    if !batch.0.is_empty() {
        // A receiver gone has already failed the load.
        let _ = tx.send(batch);
    }
}
