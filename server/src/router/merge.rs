//! Shards' answers made into one, exactly: the best `k` of the shards'
//! candidates (each shard's are its best distinct subjects, and a subject
//! lives in one shard only, so these are the best `k` distinct subjects of
//! the whole gallery), one generation naming the shards' generations, and
//! the thresholds the whole gallery's answer applies.

use facegate_core::shard::combined_generation;

use crate::proto::{Candidate, GalleryInfo};

/// The best `k` of every shard's candidates (`by_shard[i]` from shard
/// `i`, best first), ranked from 1. Equal scores are ordered by shard,
/// then by the shard's own order; within a shard that is the single
/// server's row order, across shards a single server would order them by
/// their rows in the unsplit gallery, which the router does not know.
pub fn top_k(by_shard: &[(u32, &[Candidate])], k: usize) -> Vec<Candidate> {
    let mut all: Vec<(u32, usize, &Candidate)> = by_shard
        .iter()
        .flat_map(|(shard, cs)| cs.iter().enumerate().map(move |(i, c)| (*shard, i, c)))
        .collect();
    all.sort_by(|a, b| {
        b.2.score
            .total_cmp(&a.2.score)
            .then(a.0.cmp(&b.0))
            .then(a.1.cmp(&b.1))
    });
    all.into_iter()
        .take(k)
        .enumerate()
        .map(|(i, (_, _, c))| Candidate {
            subject_id: c.subject_id.clone(),
            score: c.score,
            rank: i as u32 + 1,
        })
        .collect()
}

/// The default threshold of a manifest search of `people` travellers in
/// all, as a single server with the whole manifest picks it: the
/// calibrated threshold of the smallest size at least `people`, beyond
/// the last (or uncalibrated) the gallery's default.
pub fn manifest_threshold(info: &GalleryInfo, people: u64) -> f32 {
    info.manifest_thresholds
        .iter()
        .find(|m| m.people >= people)
        .map_or(info.default_threshold, |m| m.threshold)
}

/// The whole gallery's GalleryInfo from every shard's: rows, subjects and
/// GPU memory summed; the rest from shard 0 (a router's shards are built
/// together and configured alike; [`disagreement`] says when not).
pub fn gallery_info(shards: &[GalleryInfo]) -> GalleryInfo {
    let Some(first) = shards.first() else {
        return GalleryInfo::default();
    };
    let generations: Vec<(u32, u64)> = shards
        .iter()
        .enumerate()
        .map(|(i, s)| (i as u32, s.generation))
        .collect();
    GalleryInfo {
        rows: shards.iter().map(|s| s.rows).sum(),
        subjects: shards.iter().map(|s| s.subjects).sum(),
        gpu_memory_bytes: shards.iter().map(|s| s.gpu_memory_bytes).sum(),
        generation: combined_generation(&generations),
        engine: format!("router/{} shards/{}", shards.len(), first.engine),
        calibration_stale: shards.iter().any(|s| s.calibration_stale),
        // The ports see one gallery, not a shard of one.
        shard_index: 0,
        shard_count: 0,
        ..first.clone()
    }
}

/// What the shards disagree on that a single gallery could not (model,
/// dimension, element type, default threshold, top-k limit), if anything.
pub fn disagreement(shards: &[GalleryInfo]) -> Option<String> {
    let first = shards.first()?;
    shards.iter().enumerate().skip(1).find_map(|(i, s)| {
        let differs = |what: &str| Some(format!("shard {i}'s {what} differs from shard 0's"));
        if s.model_tag != first.model_tag {
            differs("model_tag")
        } else if s.dimension != first.dimension {
            differs("dimension")
        } else if s.element_type != first.element_type {
            differs("element_type")
        } else if s.default_threshold != first.default_threshold {
            differs("default_threshold")
        } else if s.max_top_k != first.max_top_k {
            differs("max_top_k")
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn borrowed(by_shard: &[(u32, Vec<Candidate>)]) -> Vec<(u32, &[Candidate])> {
        by_shard.iter().map(|(s, cs)| (*s, cs.as_slice())).collect()
    }

    fn c(id: &str, score: f32) -> Candidate {
        Candidate {
            subject_id: id.into(),
            score,
            rank: 0,
        }
    }

    #[test]
    fn the_best_k_across_shards_ranked_from_one() {
        let by_shard = vec![
            (0, vec![c("a", 0.9), c("b", 0.5)]),
            (1, vec![c("c", 0.7), c("d", 0.6)]),
            (2, vec![]),
        ];
        let by_shard = borrowed(&by_shard);
        let merged = top_k(&by_shard, 3);
        let got: Vec<_> = merged
            .iter()
            .map(|c| (c.subject_id.as_str(), c.rank))
            .collect();
        assert_eq!(got, vec![("a", 1), ("c", 2), ("d", 3)]);
        assert_eq!(top_k(&by_shard, 1).len(), 1);
        assert_eq!(top_k(&by_shard, 10).len(), 4);
    }

    #[test]
    fn equal_scores_go_by_shard_then_by_the_shards_order() {
        let by_shard = vec![(1, vec![c("x", 0.5), c("y", 0.5)]), (0, vec![c("z", 0.5)])];
        let by_shard = borrowed(&by_shard);
        let ids: Vec<_> = top_k(&by_shard, 3)
            .into_iter()
            .map(|c| c.subject_id)
            .collect();
        assert_eq!(ids, vec!["z", "x", "y"]);
    }

    #[test]
    fn a_manifest_threshold_is_the_first_size_that_holds_it() {
        let info = GalleryInfo {
            default_threshold: 0.4,
            manifest_thresholds: vec![
                crate::proto::ManifestThreshold {
                    people: 100,
                    threshold: 0.3,
                },
                crate::proto::ManifestThreshold {
                    people: 1000,
                    threshold: 0.33,
                },
            ],
            ..Default::default()
        };
        assert_eq!(manifest_threshold(&info, 1), 0.3);
        assert_eq!(manifest_threshold(&info, 100), 0.3);
        assert_eq!(manifest_threshold(&info, 101), 0.33);
        assert_eq!(manifest_threshold(&info, 1001), 0.4);
    }

    proptest! {
        /// Splitting a scored gallery by any assignment of subjects to
        /// shards and merging each shard's top k gives the top k scores of
        /// the whole.
        #[test]
        fn merging_shards_top_k_is_the_top_k_of_the_union(
            scores in proptest::collection::vec((0u32..4, -100i32..100), 0..60),
            k in 1usize..20,
        ) {
            let scored: Vec<(u32, Candidate)> = scores
                .iter()
                .enumerate()
                .map(|(i, (shard, s))| (*shard, c(&format!("s{i}"), *s as f32 / 100.0)))
                .collect();
            let by_shard: Vec<(u32, Vec<Candidate>)> = (0..4)
                .map(|shard| {
                    let mut mine: Vec<Candidate> = scored
                        .iter()
                        .filter(|(s, _)| *s == shard)
                        .map(|(_, c)| c.clone())
                        .collect();
                    mine.sort_by(|a, b| b.score.total_cmp(&a.score));
                    mine.truncate(k);
                    (shard, mine)
                })
                .collect();
            let mut whole: Vec<f32> = scored.iter().map(|(_, c)| c.score).collect();
            whole.sort_by(|a, b| b.total_cmp(a));
            whole.truncate(k);
            let merged: Vec<f32> = top_k(&borrowed(&by_shard), k).iter().map(|c| c.score).collect();
            prop_assert_eq!(merged, whole);
        }
    }
}
