//! Hand-made identification cases: ties, one-candidate lists, targets below
//! resolution, collapse of per-template rows, bad input.

use super::super::{AccuracyError, Searches};
use super::search;

#[test]
fn all_ties_give_a_threshold_just_above_the_tied_score() {
    let mut all: Vec<_> = (0..4).map(|i| search(&[(i, 0.5)], None, "a")).collect();
    all.push(search(&[(7, 0.5)], Some(7), "a"));
    let s = Searches::new(&all).unwrap();
    // 4 non-mated at 0.5: a target of 0.5 allows 2, but any T ≤ 0.5 gives 4.
    let p = &s.fnir_at_fpir(&[0.5]).unwrap()[0];
    let at = p.at.unwrap();
    assert_eq!(at.threshold, 0.5f32.next_up());
    assert_eq!((at.fpir.errors, at.fpir.trials), (0, 4));
    // The mate tied with everyone at 0.5 is lost above it.
    assert_eq!((at.fnir.errors, at.fnir.trials), (1, 1));
    // At exactly 0.5 a tie is a match.
    assert_eq!(s.fpir(0.5).errors, 4);
    assert_eq!(s.fnir(0.5).errors, 0);
}

#[test]
fn one_candidate_lists() {
    let all = vec![
        search(&[(1, 0.9)], Some(1), "a"),
        search(&[(2, 0.7)], Some(1), "a"),
        search(&[(3, 0.3)], None, "a"),
        search(&[(4, 0.2)], None, "a"),
    ];
    let s = Searches::new(&all).unwrap();
    let p = &s.fnir_at_fpir(&[0.5]).unwrap()[0];
    let at = p.at.unwrap();
    assert_eq!(at.threshold, 0.2f32.next_up());
    assert_eq!((at.fpir.errors, at.fnir.errors), (1, 1));
    let cmc = s.cmc(3).unwrap();
    assert!(cmc.iter().all(|c| c.fnir.errors == 1 && c.fnir.trials == 2));
}

#[test]
fn a_target_below_resolution_is_not_estimable() {
    let mut all: Vec<_> = (0..10)
        .map(|i| search(&[(i, i as f32 / 10.0)], None, "a"))
        .collect();
    all.push(search(&[(3, 0.95)], Some(3), "a"));
    let s = Searches::new(&all).unwrap();
    let points = s.fnir_at_fpir(&[0.05, 0.1, 0.3]).unwrap();
    assert_eq!(points[0].resolution, 0.1);
    assert!(points[0].at.is_none());
    let at = points[1].at.unwrap();
    assert_eq!(at.threshold, 0.8f32.next_up());
    assert_eq!((at.fpir.errors, at.fpir.trials), (1, 10));
    assert_eq!(points[2].at.unwrap().fpir.errors, 3);
    assert_eq!(points[2].at.unwrap().fnir.errors, 0);
}

#[test]
fn per_template_rows_are_collapsed_and_sorted() {
    let all = vec![
        search(&[(5, 0.2), (1, 0.6), (5, 0.8), (1, 0.1)], Some(1), "a"),
        search(&[], None, "b"),
    ];
    let s = Searches::new(&all).unwrap();
    let o = s.outcomes()[0];
    assert_eq!(o.best.unwrap().subject, 5);
    assert_eq!(o.mate_rank, Some(2));
    assert_eq!(s.outcomes()[1].best, None);
    assert_eq!(s.outcomes()[1].best_score(), f32::NEG_INFINITY);
    assert_eq!(s.groups(), ["a", "b"]);
}

#[test]
fn empty_answers_of_non_mated_searches_give_the_lowest_threshold() {
    let all = vec![
        search(&[], None, "a"),
        search(&[], None, "a"),
        search(&[(1, 0.4)], Some(1), "a"),
    ];
    let s = Searches::new(&all).unwrap();
    let at = s.fnir_at_fpir(&[0.5]).unwrap()[0].at.unwrap();
    assert_eq!(at.threshold, f32::MIN);
    assert_eq!((at.fpir.errors, at.fnir.errors), (0, 0));
}

#[test]
fn bad_input_is_refused() {
    assert_eq!(
        Searches::new(&[]).unwrap_err(),
        AccuracyError::Empty("searches")
    );
    let nan = Searches::new(&[search(&[(1, 0.3), (2, f32::NAN)], None, "a")]).unwrap_err();
    assert!(nan.to_string().contains("probe 0, rank 2"), "{nan}");
    let only_mated = Searches::new(&[search(&[(1, 0.3)], Some(1), "a")]).unwrap();
    assert_eq!(
        only_mated.fnir_at_fpir(&[0.1]).unwrap_err(),
        AccuracyError::Empty("non-mated searches")
    );
    assert!(only_mated.cmc(0).is_err());
    assert_eq!(
        only_mated.group_index("zz").unwrap_err(),
        AccuracyError::UnknownGroup("zz".into())
    );
    let both = Searches::new(&[
        search(&[(1, 0.3)], Some(1), "a"),
        search(&[(1, 0.3)], None, "a"),
    ])
    .unwrap();
    for t in [0.0, 1.0, -0.1, f64::NAN] {
        assert!(matches!(
            both.fnir_at_fpir(&[t]),
            Err(AccuracyError::BadTarget(_))
        ));
    }
}

#[test]
fn fpir_threshold_applies_the_rule_to_bare_best_scores() {
    use crate::accuracy::fpir_threshold;
    let best: Vec<f32> = (0..10).map(|i| i as f32 / 10.0).collect();
    let (t, fpir) = fpir_threshold(&best, 0.1).unwrap().unwrap();
    assert_eq!(t, 0.8f32.next_up());
    assert_eq!((fpir.errors, fpir.trials), (1, 10));
    assert_eq!(fpir_threshold(&best, 0.05).unwrap(), None);
    assert!(fpir_threshold(&[f32::NAN], 0.5).is_err());
    assert!(fpir_threshold(&[], 0.5).is_err());
    assert!(fpir_threshold(&best, 0.0).is_err());
}
