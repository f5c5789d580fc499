//! Every metric against a deliberately naive reference (plain loops over
//! raw candidate lists and over every candidate threshold), on hand-made
//! cases and on random score sets with ties.

mod cases;
mod naive;
mod props;
mod verify;

use super::{Ranked, Search};

/// A search from `(subject, score)` pairs.
fn search(cands: &[(u32, f32)], mate: Option<u32>, group: &str) -> Search {
    Search {
        candidates: cands
            .iter()
            .map(|&(subject, score)| Ranked { subject, score })
            .collect(),
        mate,
        group: group.to_string(),
    }
}
