//! The input model: what an engine returned for each probe, beside the
//! truth about that probe, reduced to the few facts every metric reads.

use std::collections::BTreeSet;

use super::error::{AccuracyError, finite};

/// One candidate of a search answer: a gallery subject and its score.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ranked {
    /// The subject (its number in the gallery's subject table).
    pub subject: u32,
    /// Its score against the probe (higher is more similar).
    pub score: f32,
}

/// One search of a probe whose truth is known.
#[derive(Debug, Clone, PartialEq)]
pub struct Search {
    /// The candidates the engine returned, best first. facegate's engines
    /// already return one entry per subject (its best template); a list
    /// with per-template rows is collapsed to each subject's first (best)
    /// entry, so other engines' output can be measured the same way.
    pub candidates: Vec<Ranked>,
    /// The enrolled subject the probe is of (mated search), or `None` for a
    /// person who is not enrolled (non-mated search).
    pub mate: Option<u32>,
    /// The demographic group label of the person photographed.
    pub group: String,
}

/// What one search's answer says about its truth: all that FPIR, FNIR, CMC
/// and the per-group figures read.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Outcome {
    /// Whether the probe's subject is enrolled.
    pub mated: bool,
    /// Index of the probe's group in [`Searches::groups`].
    pub group: usize,
    /// The rank-1 candidate, if the engine returned any.
    pub best: Option<Ranked>,
    /// The 1-based rank of the mate in the candidate list, if it is there.
    pub mate_rank: Option<usize>,
}

impl Outcome {
    /// The best candidate's score, or negative infinity for an empty answer
    /// (which no threshold accepts).
    pub fn best_score(&self) -> f32 {
        self.best.map_or(f32::NEG_INFINITY, |b| b.score)
    }

    /// For a mated search: an identification miss at `threshold` (the mate
    /// is not the rank-1 candidate with a score of at least `threshold`).
    pub fn misses(&self, threshold: f32) -> bool {
        !(self.mate_rank == Some(1) && self.best_score() >= threshold)
    }

    /// For a non-mated search: a false positive at `threshold` (its best
    /// candidate scores at least `threshold`).
    pub fn false_positive(&self, threshold: f32) -> bool {
        self.best_score() >= threshold
    }
}

/// A checked set of searches: every score finite, each answer reduced to
/// its [`Outcome`]. Groups are numbered in label order, so figures do not
/// depend on the order of the probes.
#[derive(Debug, Clone)]
pub struct Searches {
    outcomes: Vec<Outcome>,
    groups: Vec<String>,
}

impl Searches {
    /// Checks the searches (errors name the probe by its position) and
    /// reduces them to outcomes.
    pub fn new(searches: &[Search]) -> Result<Searches, AccuracyError> {
        if searches.is_empty() {
            return Err(AccuracyError::Empty("searches"));
        }
        let labels: BTreeSet<&str> = searches.iter().map(|s| s.group.as_str()).collect();
        let groups: Vec<String> = labels.into_iter().map(str::to_string).collect();
        let mut outcomes = Vec::with_capacity(searches.len());
        for (i, s) in searches.iter().enumerate() {
            let group = groups
                .binary_search(&s.group)
                .map_err(|_| AccuracyError::UnknownGroup(s.group.clone()))?;
            outcomes.push(outcome(i, s, group)?);
        }
        Ok(Searches { outcomes, groups })
    }

    /// One outcome per search, in the order given.
    pub fn outcomes(&self) -> &[Outcome] {
        &self.outcomes
    }

    /// The group labels, sorted; an outcome's `group` indexes this.
    pub fn groups(&self) -> &[String] {
        &self.groups
    }

    /// The index of group `name`.
    pub fn group_index(&self, name: &str) -> Result<usize, AccuracyError> {
        self.groups
            .iter()
            .position(|g| g == name)
            .ok_or_else(|| AccuracyError::UnknownGroup(name.to_string()))
    }

    /// The mated searches' outcomes.
    pub fn mated(&self) -> impl Iterator<Item = &Outcome> {
        self.outcomes.iter().filter(|o| o.mated)
    }

    /// The non-mated searches' outcomes.
    pub fn non_mated(&self) -> impl Iterator<Item = &Outcome> {
        self.outcomes.iter().filter(|o| !o.mated)
    }
}

/// Checks search `i`, collapses its list to one entry per subject (the
/// first, best, one) and finds its rank-1 candidate and the mate's rank.
fn outcome(i: usize, s: &Search, group: usize) -> Result<Outcome, AccuracyError> {
    for (r, c) in s.candidates.iter().enumerate() {
        finite(c.score, || format!("probe {i}, rank {}", r + 1))?;
    }
    let mut ranked = s.candidates.clone();
    // Stable: equal scores keep the engine's order (its tie-break).
    ranked.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut seen = BTreeSet::new();
    ranked.retain(|c| seen.insert(c.subject));
    let mate_rank = s
        .mate
        .and_then(|m| ranked.iter().position(|c| c.subject == m))
        .map(|p| p + 1);
    Ok(Outcome {
        mated: s.mate.is_some(),
        group,
        best: ranked.first().copied(),
        mate_rank,
    })
}
