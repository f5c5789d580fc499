//! Why an accuracy figure could not be computed.

/// Bad input to an accuracy computation. Each variant names what was wrong
/// (which probe, which rank, which group) so that the evaluation that fed it
/// can point at the line of its truth file or results.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AccuracyError {
    /// A set a figure is a share of is empty (no searches, no mated
    /// searches, no impostor pairs): the figure would be 0/0.
    #[error("no {0} to measure")]
    Empty(&'static str),
    /// A score is NaN or infinite. Comparisons with NaN are all false, so
    /// one would silently count as neither a match nor a non-match.
    #[error("{what}: score {score} is not a finite number")]
    NonFinite {
        /// Which score (probe and rank, or pair).
        what: String,
        /// The score given.
        score: f32,
    },
    /// A group label that none of the searches carries.
    #[error("unknown group {0:?}")]
    UnknownGroup(String),
    /// A target FPIR outside (0, 1): 0 can never be shown by a finite
    /// sample, and 1 or more asks for no threshold at all.
    #[error("target FPIR {0} is not within (0, 1)")]
    BadTarget(f64),
    /// A parameter outside its range (a rank of 0, too few DET points, a
    /// confidence level outside (0, 1)).
    #[error("{0}")]
    BadParameter(String),
}

/// Checks that `score` is finite; `what` names it in the error.
pub(crate) fn finite(score: f32, what: impl FnOnce() -> String) -> Result<f32, AccuracyError> {
    if score.is_finite() {
        Ok(score)
    } else {
        Err(AccuracyError::NonFinite {
            what: what(),
            score,
        })
    }
}
