//! Search engines over an open gallery.
//!
//! Every engine answers the same question the same way: for each probe, the
//! `k` best distinct subjects by cosine similarity, ties broken by row order.
//! [`CpuEngine`] is the reference that every faster engine is tested against.
//!
//! The layers, bottom up: a [`ScanTarget`] is the mapped base gallery with
//! its [`Tombstones`] (the subjects that must not be returned); engines are
//! built from a target, scan it, and finish their candidates through one
//! shared [`Refiner`] (distinct subjects, mask, exact re-score). The live
//! gallery (`crate::live`), above this module, merges online enrolments into
//! an engine's answer.

mod cpu;
mod probe;
mod refine;
mod target;
mod tombstones;
mod topk;
mod yielding;

pub use cpu::CpuEngine;
pub use probe::ProbeBatch;
pub use refine::{Refiner, rescore_pool};
pub use target::ScanTarget;
pub use tombstones::Tombstones;
pub use topk::{Candidate, SubjectTopK, sort_ranked};

use crate::error::{GalleryError, InputError};

/// Why a search failed.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    /// The request was malformed (dimension, values, k).
    #[error(transparent)]
    Input(#[from] InputError),
    /// The gallery is damaged where the search looked.
    #[error(transparent)]
    Gallery(#[from] GalleryError),
    /// The engine could not run the search (a GPU error or a lost device);
    /// another engine may still answer.
    #[error("search engine unavailable: {0}")]
    Unavailable(String),
}

/// A 1:N search engine: the interface the server and tools program against.
pub trait SearchEngine: Send + Sync {
    /// Names the engine and its kernels (e.g. "cpu/avx2"), for logs and `GalleryInfo`.
    fn describe(&self) -> String;

    /// The `top_k` best distinct subjects for each probe, best first.
    fn search(&self, probes: &ProbeBatch, top_k: usize)
    -> Result<Vec<Vec<Candidate>>, SearchError>;

    /// Whether the engine can never answer again (a lost GPU device), so
    /// that callers stop trying it rather than retrying.
    fn is_lost(&self) -> bool {
        false
    }
}
