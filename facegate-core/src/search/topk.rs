//! Top-k selection over distinct subjects.
//!
//! A subject may own several templates; a search returns subjects, each
//! scored by its best template. [`SubjectTopK`] keeps at most `k` entries,
//! one per subject, and is exact: a subject evicted while k others ranked
//! above it can never belong to the final top-k unless a better template of
//! it arrives later, which is then inserted afresh. Ranking is by score,
//! descending, ties broken by row order (earlier row first), so results are
//! deterministic whatever the scan order or thread count.

/// One ranked result: a subject and the template row that gave its score.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    /// Index of the subject in the gallery's subject table.
    pub subject: u32,
    /// The row (template) that scored best for this subject.
    pub row: u32,
    /// Cosine similarity of the probe and that template.
    pub score: f32,
}

impl Candidate {
    /// Whether `self` ranks ahead of `other`.
    #[inline]
    pub fn ranks_before(&self, other: &Candidate) -> bool {
        self.score > other.score || (self.score == other.score && self.row < other.row)
    }
}

/// Sorts candidates best first.
pub fn sort_ranked(c: &mut [Candidate]) {
    c.sort_unstable_by(|a, b| b.score.total_cmp(&a.score).then(a.row.cmp(&b.row)));
}

/// The best `k` distinct subjects seen so far.
#[derive(Debug, Clone)]
pub struct SubjectTopK {
    k: usize,
    items: Vec<Candidate>,
    /// Index in `items` of the entry that ranks last, when full.
    worst: usize,
}

/// Most entries a [`SubjectTopK`] allocates before any enters.
const PREALLOCATED_MAX: usize = 4096;

impl SubjectTopK {
    /// An empty selection of at most `k` subjects (`k >= 1`).
    pub fn new(k: usize) -> Self {
        assert!(k >= 1, "top-k needs k >= 1");
        SubjectTopK {
            k,
            // A hint only (the list grows as subjects enter): a huge k from
            // a library caller must not allocate, or abort, up front.
            items: Vec::with_capacity(k.min(PREALLOCATED_MAX)),
            worst: 0,
        }
    }

    /// Cheap pre-check on the hot path: could a template with this score and
    /// row enter? Only if so does the caller look up its subject.
    #[inline]
    pub fn admits(&self, score: f32, row: u32) -> bool {
        if self.items.len() < self.k {
            return true;
        }
        let w = &self.items[self.worst];
        score > w.score || (score == w.score && row < w.row)
    }

    /// Offers a candidate; NaN scores (only possible from a damaged file) are ignored.
    pub fn insert(&mut self, c: Candidate) {
        if c.score.is_nan() {
            return;
        }
        if let Some(i) = self.items.iter().position(|e| e.subject == c.subject) {
            if c.ranks_before(&self.items[i]) {
                self.items[i] = c;
                self.refresh_worst();
            }
        } else if self.items.len() < self.k {
            self.items.push(c);
            self.refresh_worst();
        } else if c.ranks_before(&self.items[self.worst]) {
            self.items[self.worst] = c;
            self.refresh_worst();
        }
    }

    /// Merges another selection (e.g. from another chunk of rows).
    pub fn merge(&mut self, other: SubjectTopK) {
        for c in other.items {
            if self.admits(c.score, c.row) {
                self.insert(c);
            }
        }
    }

    fn refresh_worst(&mut self) {
        if self.items.len() < self.k {
            return;
        }
        let mut w = 0;
        for i in 1..self.items.len() {
            if self.items[w].ranks_before(&self.items[i]) {
                w = i;
            }
        }
        self.worst = w;
    }

    /// The selection, best first.
    pub fn into_sorted(mut self) -> Vec<Candidate> {
        sort_ranked(&mut self.items);
        self.items
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    /// The obvious answer: best template per subject, sorted, first k.
    fn naive(scores: &[(f32, u32)], k: usize) -> Vec<Candidate> {
        let mut best: HashMap<u32, Candidate> = HashMap::new();
        for (row, &(score, subject)) in scores.iter().enumerate() {
            let c = Candidate {
                subject,
                row: row as u32,
                score,
            };
            best.entry(subject)
                .and_modify(|e| {
                    if c.ranks_before(e) {
                        *e = c
                    }
                })
                .or_insert(c);
        }
        let mut v: Vec<_> = best.into_values().collect();
        sort_ranked(&mut v);
        v.truncate(k);
        v
    }

    fn select(scores: &[(f32, u32)], k: usize, chunk: usize) -> Vec<Candidate> {
        let mut total = SubjectTopK::new(k);
        for (ci, part) in scores.chunks(chunk.max(1)).enumerate() {
            let mut t = SubjectTopK::new(k);
            for (j, &(score, subject)) in part.iter().enumerate() {
                let row = (ci * chunk.max(1) + j) as u32;
                if t.admits(score, row) {
                    t.insert(Candidate {
                        subject,
                        row,
                        score,
                    });
                }
            }
            total.merge(t);
        }
        total.into_sorted()
    }

    proptest! {
        // Scores from a small set so that ties are frequent; few subjects so
        // that subjects repeat often.
        #[test]
        fn matches_naive_sort(
            raw in proptest::collection::vec((0u8..20, 0u32..12), 1..300),
            k in 1usize..15,
            chunk in 1usize..64,
        ) {
            let scores: Vec<(f32, u32)> = raw.iter().map(|&(s, subj)| (f32::from(s) / 20.0, subj)).collect();
            prop_assert_eq!(select(&scores, k, chunk), naive(&scores, k));
        }
    }

    #[test]
    fn nan_never_ranks() {
        let mut t = SubjectTopK::new(2);
        t.insert(Candidate {
            subject: 0,
            row: 0,
            score: f32::NAN,
        });
        t.insert(Candidate {
            subject: 1,
            row: 1,
            score: 0.1,
        });
        assert_eq!(t.into_sorted().len(), 1);
    }
}
