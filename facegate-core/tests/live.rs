//! The live gallery (base + delta + tombstones) against brute force over the
//! same logical gallery, and the change log replaying to the same state.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::*;
use facegate_core::live::{ChangeError, CommitError, LiveGallery};
use facegate_core::wal::{Change, ChangeLog, CommitMode};
use facegate_core::{CpuEngine, ElementType, ProbeBatch};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Subject id -> its templates: what the gallery should hold.
type Model = BTreeMap<String, Vec<Vec<f32>>>;

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum();
    let n = |v: &[f32]| v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    dot / (n(a) * n(b))
}

fn best_of(model: &Model, id: &str, probe: &[f32]) -> f64 {
    model[id]
        .iter()
        .map(|t| cosine(t, probe))
        .fold(f64::NEG_INFINITY, f64::max)
}

fn brute_force(model: &Model, probe: &[f32], k: usize) -> Vec<f64> {
    let mut s: Vec<f64> = model.keys().map(|id| best_of(model, id, probe)).collect();
    s.sort_by(|a, b| b.total_cmp(a));
    s.truncate(k);
    s
}

struct Live {
    live: LiveGallery,
    cpu: CpuEngine,
}

impl Live {
    fn new(g: Arc<facegate_core::Gallery>) -> Live {
        let live = LiveGallery::new(g.clone());
        let cpu = CpuEngine::new(live.scan_target().clone());
        Live { live, cpu }
    }

    fn search(&self, probes: &ProbeBatch, k: usize) -> Vec<Vec<(String, f32)>> {
        self.live
            .search(&self.cpu, probes, k)
            .unwrap()
            .into_iter()
            .map(|list| {
                list.iter()
                    .map(|c| (self.live.subject_id(c.subject).unwrap(), c.score))
                    .collect()
            })
            .collect()
    }
}

/// Ranked scores match brute force rank by rank, and each returned subject
/// really has the score reported (so ids are right even among near-ties).
fn assert_matches(model: &Model, got: &[(String, f32)], probe: &[f32], k: usize, what: &str) {
    let want = brute_force(model, probe, k);
    assert_eq!(got.len(), want.len(), "{what}: result count");
    let mut seen = std::collections::HashSet::new();
    for (i, ((id, score), w)) in got.iter().zip(&want).enumerate() {
        assert!(seen.insert(id.clone()), "{what}: {id} twice");
        assert!(
            model.contains_key(id),
            "{what}: rank {i}: {id} is not in the gallery"
        );
        assert!(
            (f64::from(*score) - w).abs() < 3e-3,
            "{what}: rank {i}: {score} vs {w}"
        );
        let own = best_of(model, id, probe);
        assert!(
            (f64::from(*score) - own).abs() < 3e-3,
            "{what}: {id}: {score} vs its own {own}"
        );
    }
}

fn random_templates(
    rng: &mut ChaCha8Rng,
    n: usize,
    dim: usize,
    near: Option<&[f32]>,
) -> Vec<Vec<f32>> {
    (0..n)
        .map(|_| {
            (0..dim)
                .map(|d| rng.random_range(-1.0f32..1.0) + near.map_or(0.0, |p| 4.0 * p[d]))
                .collect()
        })
        .collect()
}

#[test]
fn enrolments_and_removals_search_like_brute_force_for_every_scan_type() {
    let dir = tempfile::tempdir().unwrap();
    let dim = 45;
    let s = synth(150, 12, dim, 3);
    let (data, ids) = population(&s);
    let probes: Vec<Vec<f32>> = (0..12).map(|j| s.probe(j).vector).collect();
    let batch = ProbeBatch::new(dim, &probes.concat()).unwrap();
    for ty in [ElementType::Int8, ElementType::F16, ElementType::F32] {
        let g = open(&build(
            dir.path(),
            &format!("{ty}.fgal"),
            &data,
            dim,
            &ids,
            ty,
        ));
        let live = Live::new(g.clone());
        let mut model = Model::new();
        for (row, id) in data.chunks_exact(dim).zip(&ids) {
            model.entry(id.clone()).or_default().push(row.to_vec());
        }
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        for round in 0..6 {
            for _ in 0..25 {
                let known: Vec<String> = model.keys().cloned().collect();
                let change = match rng.random_range(0..4) {
                    // A new subject close to one of the probes, so it ranks.
                    0 => {
                        let p = &probes[rng.random_range(0..probes.len())];
                        let n = rng.random_range(1..4);
                        Change::Enroll {
                            subject_id: format!("new-{round}-{}", rng.random::<u32>()),
                            templates: random_templates(&mut rng, n, dim, Some(p)).concat(),
                        }
                    }
                    // Re-enrol an existing subject (base or new) elsewhere.
                    1 => Change::Enroll {
                        subject_id: known[rng.random_range(0..known.len())].clone(),
                        templates: random_templates(&mut rng, 2, dim, None).concat(),
                    },
                    _ => Change::Remove {
                        subject_id: known[rng.random_range(0..known.len())].clone(),
                    },
                };
                live.live.apply(&change).unwrap();
                match &change {
                    Change::Enroll {
                        subject_id,
                        templates,
                    } => {
                        model.insert(
                            subject_id.clone(),
                            templates.chunks_exact(dim).map(<[f32]>::to_vec).collect(),
                        );
                    }
                    Change::Remove { subject_id } => {
                        model.remove(subject_id);
                    }
                }
            }
            let counts = live.live.counts();
            assert_eq!(counts.subjects as usize, model.len(), "{ty} round {round}");
            for k in [1, 10, 40] {
                let got = live.search(&batch, k);
                for (b, list) in got.iter().enumerate() {
                    assert_matches(
                        &model,
                        list,
                        &probes[b],
                        k,
                        &format!("{ty} round {round} k {k} probe {b}"),
                    );
                }
            }
            // Verify agrees with the model for live and removed subjects.
            for id in ids.iter().take(40) {
                let v = live.live.verify(&batch, 0, id).unwrap();
                match model.get(id) {
                    Some(ts) => {
                        let (c, n) = v.expect("live subject verifies");
                        assert_eq!(n, ts.len());
                        assert!(
                            (f64::from(c.score) - best_of(&model, id, &probes[0])).abs() < 3e-3
                        );
                    }
                    None => assert!(v.is_none(), "{ty}: removed {id} still verifies"),
                }
            }
        }
    }
}

#[test]
fn bad_changes_are_refused_and_leave_the_log_and_gallery_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let dim = 8;
    let s = synth(20, 1, dim, 5);
    let (data, ids) = population(&s);
    let g = open(&build(
        dir.path(),
        "g.fgal",
        &data,
        dim,
        &ids,
        ElementType::Int8,
    ));
    let live = LiveGallery::new(g.clone());
    let (log, _) = ChangeLog::open(
        &dir.path().join("changes.wal"),
        dim,
        g.header().generation,
        CommitMode::Group,
    )
    .unwrap();
    let before = (log.durable_len(), live.counts());
    let enroll = |id: &str, t: Vec<f32>| Change::Enroll {
        subject_id: id.into(),
        templates: t,
    };
    let cases: Vec<(Change, &str)> = vec![
        (enroll("x", vec![]), "at least one template"),
        (enroll("x", vec![1.0; dim + 1]), "expected dimension 8"),
        (enroll("x", vec![f32::NAN; dim]), "not finite"),
        (enroll("x", vec![0.0; dim]), "zero norm"),
        (enroll("x", vec![1.0; dim * 65]), "at most 64"),
        (enroll("", vec![1.0; dim]), "empty"),
        (enroll(" x", vec![1.0; dim]), "whitespace"),
        (
            Change::Remove {
                subject_id: "nobody".into(),
            },
            "no such subject",
        ),
    ];
    for (change, expect) in cases {
        let err = live.commit(&log, &change).unwrap_err();
        assert!(matches!(err, CommitError::Change(_)), "{err:?}");
        assert!(err.to_string().contains(expect), "{expect:?} not in {err}");
    }
    assert_eq!((log.durable_len(), live.counts()), before);
    // Removing twice: the second is refused as unknown.
    let first = ids[0].clone();
    live.commit(
        &log,
        &Change::Remove {
            subject_id: first.clone(),
        },
    )
    .unwrap();
    let again = live
        .commit(&log, &Change::Remove { subject_id: first })
        .unwrap_err();
    assert!(matches!(
        again,
        CommitError::Change(ChangeError::UnknownSubject)
    ));
}

#[test]
fn replaying_the_log_rebuilds_the_same_gallery() {
    let dir = tempfile::tempdir().unwrap();
    let dim = 16;
    let s = synth(60, 6, dim, 8);
    let g = int8_gallery(dir.path(), &s);
    let probes = probe_rows(&s, 0..6);
    let batch = ProbeBatch::new(dim, &probes).unwrap();
    let path = dir.path().join("changes.wal");
    let generation = g.header().generation;
    let first = Live::new(g.clone());
    {
        let (log, _) = ChangeLog::open(&path, dim, generation, CommitMode::Group).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        // Concurrent commits from several threads, many to the same subjects,
        // so that per-subject ordering matters.
        std::thread::scope(|sc| {
            for t in 0..4 {
                let (log, live) = (&log, &first.live);
                let seed = rng.random::<u64>();
                sc.spawn(move || {
                    let mut rng = ChaCha8Rng::seed_from_u64(seed);
                    for i in 0..40 {
                        let id = format!("s{}", rng.random_range(0..12));
                        let change = if rng.random_bool(0.3) {
                            Change::Remove { subject_id: id }
                        } else {
                            Change::Enroll {
                                subject_id: id,
                                templates: random_templates(&mut rng, 1 + (i + t) % 3, dim, None)
                                    .concat(),
                            }
                        };
                        match live.commit(log, &change) {
                            Ok(_) | Err(CommitError::Change(ChangeError::UnknownSubject)) => {}
                            Err(e) => panic!("{e}"),
                        }
                    }
                });
            }
        });
    }
    let (_log, replay) = ChangeLog::open(&path, dim, generation, CommitMode::Group).unwrap();
    let second = Live::new(g);
    for (_, change) in &replay.changes {
        second.live.apply(change).unwrap();
    }
    assert_eq!(first.live.counts(), second.live.counts());
    assert_eq!(first.search(&batch, 20), second.search(&batch, 20));
}

#[test]
fn compaction_folds_the_log_into_a_gallery_that_searches_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let dim = 24;
    let s = synth(80, 8, dim, 12);
    let (data, ids) = population(&s);
    let probes = probe_rows(&s, 0..8);
    let batch = ProbeBatch::new(dim, &probes).unwrap();
    for ty in [ElementType::Int8, ElementType::F16, ElementType::F32] {
        let g = open(&build(
            dir.path(),
            &format!("{ty}.fgal"),
            &data,
            dim,
            &ids,
            ty,
        ));
        let live = Live::new(g.clone());
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let mut changes = Vec::new();
        for i in 0..30u64 {
            let change = if i % 3 == 2 {
                Change::Remove {
                    subject_id: ids[rng.random_range(0..ids.len())].clone(),
                }
            } else {
                let p = &probes[(i as usize % 8) * dim..(i as usize % 8 + 1) * dim];
                Change::Enroll {
                    subject_id: if i % 4 == 0 {
                        ids[i as usize].clone()
                    } else {
                        format!("n{i}")
                    },
                    templates: random_templates(&mut rng, 1 + i as usize % 2, dim, Some(p))
                        .concat(),
                }
            };
            if live.live.apply(&change).is_ok() {
                changes.push((i + 1, change));
            }
        }
        let out = dir.path().join(format!("{ty}-compacted.fgal"));
        let report =
            facegate_core::live::compact(g.clone(), &changes, &out, false, &mut |_| {}).unwrap();
        let compacted = open(&out);
        let h = compacted.header();
        assert_eq!(h.lineage.unwrap().parent_generation, g.header().generation);
        assert_eq!(
            h.lineage.unwrap().through_sequence,
            changes.last().unwrap().0
        );
        assert_eq!(report.subjects, live.live.counts().subjects, "{ty}");
        assert_eq!(
            (h.scan_type, h.model_tag.as_str()),
            (ty, g.header().model_tag.as_str())
        );
        let fresh = Live::new(compacted);
        let (before, after) = (live.search(&batch, 15), fresh.search(&batch, 15));
        for (b, (x, y)) in before.iter().zip(&after).enumerate() {
            assert_eq!(x.len(), y.len());
            for (i, ((xi, xs), (yi, ys))) in x.iter().zip(y).enumerate() {
                // Re-normalising f16 rows moves scores by ~1e-4; ids only
                // swap where two scores are that close.
                assert!(
                    (xs - ys).abs() < 2e-3,
                    "{ty} probe {b} rank {i}: {xs} vs {ys}"
                );
                if xi != yi {
                    let near_tie = (i > 0 && (x[i - 1].1 - xs).abs() < 2e-3)
                        || x.get(i + 1).is_some_and(|n| (xs - n.1).abs() < 2e-3);
                    assert!(near_tie, "{ty} probe {b} rank {i}: {xi} vs {yi}");
                }
            }
        }
    }
}

/// What a scoped search should answer: the listed ids live in the model,
/// each once, by best template, best first, cut to `k`.
fn brute_force_scoped(
    model: &Model,
    listed: &[String],
    probe: &[f32],
    k: usize,
) -> Vec<(String, f64)> {
    let distinct: std::collections::BTreeSet<&String> =
        listed.iter().filter(|id| model.contains_key(*id)).collect();
    let mut s: Vec<(String, f64)> = distinct
        .into_iter()
        .map(|id| (id.clone(), best_of(model, id, probe)))
        .collect();
    s.sort_by(|a, b| b.1.total_cmp(&a.1));
    s.truncate(k);
    s
}

#[test]
fn scoped_search_matches_brute_force_over_the_listed_subjects() {
    let dir = tempfile::tempdir().unwrap();
    let dim = 32;
    let s = synth(120, 6, dim, 21);
    let (data, ids) = population(&s);
    let probes: Vec<Vec<f32>> = (0..6).map(|j| s.probe(j).vector).collect();
    let batch = ProbeBatch::new(dim, &probes.concat()).unwrap();
    for ty in [ElementType::Int8, ElementType::F16, ElementType::F32] {
        let g = open(&build(
            dir.path(),
            &format!("s-{ty}.fgal"),
            &data,
            dim,
            &ids,
            ty,
        ));
        let live = Live::new(g);
        let mut model = Model::new();
        for (row, id) in data.chunks_exact(dim).zip(&ids) {
            model.entry(id.clone()).or_default().push(row.to_vec());
        }
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        // New subjects near the probes (in the delta), re-enrolments of
        // base subjects (delta, base masked) and removals.
        let mut changes = Vec::new();
        for i in 0..12 {
            let p = &probes[i % probes.len()];
            changes.push(Change::Enroll {
                subject_id: format!("new-{i}"),
                templates: random_templates(&mut rng, 1 + i % 3, dim, Some(p)).concat(),
            });
        }
        for i in 0..10 {
            changes.push(Change::Enroll {
                subject_id: ids[i * 7].clone(),
                templates: random_templates(&mut rng, 2, dim, Some(&probes[i % 6])).concat(),
            });
        }
        for i in 0..10 {
            changes.push(Change::Remove {
                subject_id: ids[i * 11 + 3].clone(),
            });
        }
        for change in &changes {
            if live.live.apply(change).is_err() {
                continue; // removing a subject already removed
            }
            match change {
                Change::Enroll {
                    subject_id,
                    templates,
                } => {
                    model.insert(
                        subject_id.clone(),
                        templates.chunks_exact(dim).map(<[f32]>::to_vec).collect(),
                    );
                }
                Change::Remove { subject_id } => {
                    model.remove(subject_id);
                }
            }
        }
        // A manifest: base subjects (some removed, some re-enrolled), new
        // ones, ids never enrolled, and duplicates.
        let mut listed: Vec<String> = ids.iter().step_by(3).cloned().collect();
        listed.extend((0..12).step_by(2).map(|i| format!("new-{i}")));
        listed.extend(["ghost-1".to_string(), "ghost-2".to_string()]);
        listed.extend(listed.clone().into_iter().take(9));
        let distinct: std::collections::BTreeSet<&String> = listed.iter().collect();
        let live_listed = distinct
            .iter()
            .filter(|id| model.contains_key(**id))
            .count();
        let manifest_size = distinct.len();
        for k in [1, 5, manifest_size + 10] {
            for (b, probe) in probes.iter().enumerate() {
                let what = format!("{ty} k {k} probe {b}");
                let got = live.live.search_subjects(&batch, b, &listed, k).unwrap();
                assert_eq!(got.searched, live_listed, "{what}");
                assert_eq!(got.not_found, manifest_size - live_listed, "{what}");
                let want = brute_force_scoped(&model, &listed, probe, k);
                assert_eq!(got.candidates.len(), want.len(), "{what}");
                let named: Vec<(String, f32)> = got
                    .candidates
                    .iter()
                    .map(|c| (live.live.subject_id(c.subject).unwrap(), c.score))
                    .collect();
                for (i, ((id, score), (_, w))) in named.iter().zip(&want).enumerate() {
                    assert!(listed.contains(id), "{what}: {id} is not listed");
                    assert!(
                        (f64::from(*score) - w).abs() < 3e-3,
                        "{what}: rank {i}: {score} vs {w}"
                    );
                    // Each score is exactly Verify's for that subject.
                    let (v, _) = live.live.verify(&batch, b, id).unwrap().unwrap();
                    assert_eq!(v, got.candidates[i], "{what}: {id}");
                }
                let mut ranked = got.candidates.clone();
                facegate_core::search::sort_ranked(&mut ranked);
                assert_eq!(ranked, got.candidates, "{what}: ranked as 1:N ranks");
            }
        }
        // Every live subject listed: the same answer as the exact 1:N.
        if ty == ElementType::F32 {
            let everyone: Vec<String> = model.keys().cloned().collect();
            let national = live.live.search(&live.cpu, &batch, 10).unwrap();
            for (b, want) in national.iter().enumerate() {
                let got = live.live.search_subjects(&batch, b, &everyone, 10).unwrap();
                assert_eq!(&got.candidates, want, "{ty} probe {b}: scoped vs 1:N");
            }
        }
        // An empty manifest, and bad arguments.
        let empty = live.live.search_subjects(&batch, 0, &[], 3).unwrap();
        assert_eq!(
            (empty.candidates.len(), empty.searched, empty.not_found),
            (0, 0, 0)
        );
        assert!(live.live.search_subjects(&batch, 0, &listed, 0).is_err());
        assert!(live.live.search_subjects(&batch, 6, &listed, 1).is_err());
        let wrong_dim = ProbeBatch::single(dim + 1, &vec![1.0; dim + 1]).unwrap();
        assert!(
            live.live
                .search_subjects(&wrong_dim, 0, &listed, 1)
                .is_err()
        );
        // A removal is reflected at once: the best subject goes, and is
        // counted as not found.
        let before = live.live.search_subjects(&batch, 0, &listed, 1).unwrap();
        let top = live.live.subject_id(before.candidates[0].subject).unwrap();
        live.live
            .apply(&Change::Remove {
                subject_id: top.clone(),
            })
            .unwrap();
        let after = live.live.search_subjects(&batch, 0, &listed, 3).unwrap();
        assert!(
            after
                .candidates
                .iter()
                .all(|c| c.subject != before.candidates[0].subject)
        );
        assert_eq!(after.not_found, before.not_found + 1, "{ty}");
        let missing = live.live.missing_subjects(&listed).unwrap();
        assert!(missing.contains(&top.as_str()) && missing.contains(&"ghost-1"));
    }
}
