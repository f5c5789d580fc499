//! Investigative mode: the cumulative match characteristic (CMC).
//!
//! An investigator reviews a ranked list whatever its scores, so what
//! matters is how far down the list the mate is. FNIR at rank r, without a
//! threshold, is the share of mated searches whose mate is not within the
//! top r candidates; 1 − FNIR(r) is the classic CMC "identification rate".

use serde::Serialize;

use super::error::AccuracyError;
use super::identification::count;
use super::input::Searches;
use super::rate::Rate;

/// The deepest rank reported by default (FRTE's investigative lists hold 50).
pub const DEFAULT_CMC_RANKS: usize = 50;

/// One point of the CMC.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CmcPoint {
    /// The rank r (1-based).
    pub rank: usize,
    /// Mated searches whose mate is not within the top r candidates.
    pub fnir: Rate,
}

impl Searches {
    /// FNIR at ranks `1..=max_rank`. Candidate lists shorter than
    /// `max_rank` count the mate as absent beyond their end, so search
    /// with at least `max_rank` candidates for a true CMC that deep.
    pub fn cmc(&self, max_rank: usize) -> Result<Vec<CmcPoint>, AccuracyError> {
        if max_rank == 0 {
            return Err(AccuracyError::BadParameter(
                "the CMC needs a rank of at least 1".into(),
            ));
        }
        if self.mated().next().is_none() {
            return Err(AccuracyError::Empty("mated searches"));
        }
        Ok((1..=max_rank)
            .map(|rank| CmcPoint {
                rank,
                fnir: count(self.mated(), |o| o.mate_rank.is_none_or(|m| m > rank)),
            })
            .collect())
    }
}
