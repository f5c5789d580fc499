//! Random score sets, with many ties (scores from a handful of values),
//! against the naive references.

use proptest::prelude::*;

use super::super::{BootstrapConfig, Searches, Verification, per_group};
use super::naive;
use super::search;

fn score() -> impl Strategy<Value = f32> {
    (0..8u8).prop_map(|i| f32::from(i) * 0.125 - 0.25)
}

fn one_search() -> impl Strategy<Value = super::Search> {
    (
        prop::collection::vec((0..6u32, score()), 0..5),
        prop::option::of(0..6u32),
        prop::sample::select(vec!["a", "b", "c"]),
    )
        .prop_map(|(c, mate, g)| search(&c, mate, g))
}

fn searches() -> impl Strategy<Value = Vec<super::Search>> {
    prop::collection::vec(one_search(), 1..40)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn identification_matches_naive(all in searches(), t in score()) {
        let s = Searches::new(&all).unwrap();
        let f = s.fpir(t);
        prop_assert_eq!((f.errors, f.trials), naive::fpir(&all, t));
        let f = s.fnir(t);
        prop_assert_eq!((f.errors, f.trials), naive::fnir(&all, t));
    }

    #[test]
    fn thresholds_match_naive(all in searches(), target in prop::sample::select(vec![0.01, 0.05, 0.1, 0.25, 0.5, 0.9])) {
        let s = Searches::new(&all).unwrap();
        let has_both = all.iter().any(|x| x.mate.is_some()) && all.iter().any(|x| x.mate.is_none());
        let Ok(points) = s.fnir_at_fpir(&[target]) else {
            prop_assert!(!has_both);
            return Ok(());
        };
        let p = &points[0];
        let want = naive::threshold(&all, target);
        prop_assert_eq!(p.at.map(|a| a.threshold), want);
        if let Some(a) = p.at {
            prop_assert_eq!((a.fpir.errors, a.fpir.trials), naive::fpir(&all, a.threshold));
            prop_assert_eq!((a.fnir.errors, a.fnir.trials), naive::fnir(&all, a.threshold));
            prop_assert!(a.fpir.value().unwrap() <= target);
        }
    }

    #[test]
    fn cmc_matches_naive(all in searches(), max in 1..7usize) {
        let s = Searches::new(&all).unwrap();
        match s.cmc(max) {
            Ok(points) => {
                let got: Vec<_> = points.iter().map(|p| (p.fnir.errors, p.fnir.trials)).collect();
                prop_assert_eq!(got, naive::cmc(&all, max));
            }
            Err(_) => prop_assert!(all.iter().all(|x| x.mate.is_none())),
        }
    }

    #[test]
    fn groups_match_naive(all in searches(), t in score(), seed in 0..1000u64) {
        let s = Searches::new(&all).unwrap();
        let cfg = BootstrapConfig { resamples: 50, seed, confidence: 0.9 };
        let table = per_group(&s, t, &cfg).unwrap();
        let want = naive::group_flags(&all, t);
        prop_assert_eq!(table.groups.len(), want.len());
        for (g, (row, (name, mated, non))) in table.groups.iter().zip(&want).enumerate() {
            prop_assert_eq!(&row.group, name);
            prop_assert_eq!(row.fnir.rate.errors, mated.iter().filter(|&&e| e).count());
            prop_assert_eq!(row.fnir.rate.trials, mated.len());
            prop_assert_eq!(row.fpir.rate.errors, non.iter().filter(|&&e| e).count());
            prop_assert_eq!(row.fpir.rate.trials, non.len());
            if !mated.is_empty() {
                let mut b = naive::bootstrap(mated, &cfg, 2 * g as u64);
                b.sort_by(f64::total_cmp);
                // 50 resamples at 90 %: the 3rd and 48th smallest.
                let ci = row.fnir.ci.unwrap();
                prop_assert_eq!((ci.low, ci.high), (b[2], b[47]));
            }
        }
    }

    #[test]
    fn verification_matches_naive(
        genuine in prop::collection::vec(score(), 1..30),
        impostor in prop::collection::vec(score(), 1..30),
        t in score(),
    ) {
        let v = Verification::new(genuine.clone(), impostor.clone()).unwrap();
        let sweep: Vec<_> = v.sweep().iter().map(|p| (p.threshold, p.fmr.errors, p.fnmr.errors)).collect();
        prop_assert_eq!(&sweep, &naive::sweep(&genuine, &impostor));
        let at = v.at(t);
        prop_assert_eq!(at.fmr.errors, impostor.iter().filter(|&&s| s >= t).count());
        prop_assert_eq!(at.fnmr.errors, genuine.iter().filter(|&&s| s < t).count());
        let (got, want) = (v.eer().eer, naive::eer(&genuine, &impostor));
        prop_assert!((got - want).abs() < 1e-12, "{} vs {}", got, want);
    }
}
