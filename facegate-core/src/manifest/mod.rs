//! Manifest galleries: the travellers expected on one flight, vessel, land
//! crossing or port-day, staged ahead by the back office, searched 1:few
//! while their window is open, and purged when it closes.
//!
//! - `model.rs`: [`Manifest`] and its checks;
//! - `store.rs`: [`ManifestStore`], the durable SQLite file;
//! - `registry.rs`: [`Manifests`], the manifests in memory in front of the
//!   store, which searches read, with the clock that expires them.
//!
//! A manifest holds subject ids, never templates: the search
//! (`LiveGallery::search_subjects`) resolves them in the live gallery at
//! search time, so a removal or re-enrolment applies to every manifest at
//! once.
//!
//! # The file: `DATA_DIR/manifests.db`
//!
//! One SQLite database (the bundled SQLite, the same on every machine).
//!
//! - **Schema** (version 1):
//!   `manifests(key INTEGER PRIMARY KEY, id TEXT UNIQUE, kind, carrier,
//!   voyage, port, direction, scheduled_ms, valid_from_ms, valid_until_ms)`,
//!   times in Unix milliseconds, kind and direction as their names (checked
//!   by CHECK constraints), `valid_until_ms >= valid_from_ms`; and
//!   `manifest_subjects(manifest REFERENCES manifests(key), subject_id,
//!   PRIMARY KEY (manifest, subject_id)) WITHOUT ROWID`.
//!   Indexes: `id` (the UNIQUE constraint: get, stage, amend), `valid_until_ms`
//!   (expiry), `(port, id)` (a port's listing), `subject_id` (which
//!   manifests name a subject: erasure requests and reconciliation).
//! - **Migrations**: `PRAGMA user_version` is the number of steps of
//!   `MIGRATIONS` (in `store.rs`) applied; each missing step runs with its
//!   version bump in one transaction at open. A file with a higher version
//!   (a newer build wrote it) is refused, not guessed at.
//! - **Durability**: WAL mode with `synchronous=FULL`: each change is one
//!   transaction whose WAL frames are fsync'd before it returns, so a staged
//!   manifest survives a crash once `stage` has returned, and an error
//!   leaves nothing half-applied. The file is locked exclusively
//!   (`locking_mode=EXCLUSIVE`): a second server on the same directory is
//!   refused with [`StoreError::Db`] ([`crate::sqlite::DbError::InUse`]).
//! - **Damage**: open runs `PRAGMA quick_check` (every page and b-tree), and
//!   every row read is checked as a stage would have checked it; either
//!   failing is [`crate::sqlite::DbError::Corrupt`], naming the file. SQLite keeps no
//!   checksums of row contents: a flipped byte that still makes a valid id
//!   is not detected.
//! - **Retention**: a manifest is kept until its window ends
//!   (`valid_until`, or when it is closed early), then purged: its rows are
//!   deleted with `secure_delete=ON` (freed bytes zeroed) and the WAL is
//!   checkpointed and truncated, so the purged travellers' ids leave both
//!   files. Nothing about a purged manifest is kept on disk; the registry
//!   remembers only its id and end, in memory, to answer "expired" rather
//!   than "unknown" for a while.

mod model;
mod registry;
mod store;

pub use model::{
    Amendment, Direction, MAX_FIELD_LEN, MAX_MANIFEST_ID_LEN, MAX_TRAVELLERS, Manifest,
    ManifestError, ManifestHeader, ManifestKind, validate_manifest_id,
};
pub use registry::{Manifests, REMEMBER_PURGED, ScopeError};
pub use store::{
    FILE_NAME, ListQuery, MAX_PAGE, ManifestPage, ManifestStore, ManifestSummary, Staged,
    StoreError,
};
