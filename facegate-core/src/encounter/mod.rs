//! Encounters: every recorded crossing of a non-citizen, entry or exit, and
//! what the agency derives from them: travel histories, stays against the
//! rule of each admission, overstays, exits with no entry.
//!
//! * [`day`]: UTC calendar days, the unit stay rules count in;
//! * [`model`]: travellers, admissions, encounters, and their checks;
//! * [`store`]: the store interface (this embedded SQLite store, and the
//!   central PostgreSQL one of the `facegate-postgres` crate);
//! * [`sqlite_store`]: the embedded store, with group commit (its WAL
//!   checkpoints run on a thread of their own, `checkpointer`);
//! * [`stay`]: stays built from crossings, and the stay status and days
//!   over as of a day under each admission's rule;
//! * [`reconcile`]: reports over any store (stay of a subject, overstays,
//!   a manifest's reconciliation);
//! * [`synth`]: synthetic travel histories, for tests and benchmarks.

mod checkpointer;
pub mod day;
mod erase;
pub mod model;
pub mod reconcile;
mod rows;
pub mod sqlite_store;
pub mod stay;
pub mod store;
pub mod synth;
mod writes;

pub use day::{BadDay, Day};
pub use model::{
    Admission, CaptureContext, Category, Decision, Encounter, Method, RecordError, StayRule,
    Traveller,
};
pub use reconcile::{
    ManifestReconciliation, OverstayPage, StayReport, overstays, reconcile_manifest, stay_of,
};
pub use sqlite_store::{BulkRecorded, CommitStats, REPORT_QUERIES, SqliteEncounters};
pub use stay::{Anomaly, MAX_DAYS_IN_WINDOW, Stay, StayKind, StayStatus, WINDOW_DAYS, stay_status};
pub use store::{
    Change, Correction, EncounterError, EncounterStore, Erasure, MAX_PAGE, Movement, Oldest,
    PurgeLead, RecordReply, Recorded, StoredEncounter, SubjectPage, answer_unqueued, end_of,
};
