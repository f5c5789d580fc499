//! Hand-made verification and per-group cases.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::super::{AccuracyError, BootstrapConfig, Ratio, Searches, Verification, per_group};
use super::{naive, search};

#[test]
fn eer_by_hand() {
    let v = Verification::new(vec![0.9, 0.8, 0.4], vec![0.1, 0.2, 0.5]).unwrap();
    // At 0.4: FMR 1/3, FNMR 0; at 0.5: both 1/3.
    let e = v.eer();
    assert!((e.eer - 1.0 / 3.0).abs() < 1e-12, "{e:?}");
    assert_eq!(e.at.threshold, 0.5);
    let perfect = Verification::new(vec![0.9], vec![0.1]).unwrap();
    assert_eq!(perfect.eer().eer, 0.0);
    let all_tied = Verification::new(vec![0.5; 4], vec![0.5; 4]).unwrap();
    // At 0.5 every impostor matches; just above it every genuine is lost.
    assert_eq!(all_tied.sweep().len(), 2);
    assert!((all_tied.eer().eer - 0.5).abs() < 1e-12);
}

#[test]
fn det_is_thinned_on_log_counts_and_keeps_its_ends() {
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let genuine: Vec<f32> = (0..3_000).map(|_| rng.random_range(0.2..1.0)).collect();
    let impostor: Vec<f32> = (0..20_000).map(|_| rng.random_range(-0.3..0.5)).collect();
    let v = Verification::new(genuine, impostor).unwrap();
    let full = v.sweep();
    let det = v.det(300).unwrap();
    assert!(det.len() <= 300 && det.len() > 100, "{}", det.len());
    assert_eq!(det[0], full[0]);
    assert_eq!(det.last(), full.last());
    assert!(det.iter().all(|p| full.contains(p)));
    assert!(det.windows(2).all(|w| w[0].threshold < w[1].threshold));
    // The low-FMR tail keeps its resolution: every one of the 10 highest
    // impostor scores still has its point.
    let tail = det.iter().filter(|p| p.fmr.errors <= 10).count();
    assert!(tail >= 10, "{tail}");
    assert!(v.det(2).is_err());
    let small = Verification::new(vec![0.9, 0.8], vec![0.1]).unwrap();
    assert_eq!(small.det(300).unwrap(), small.sweep());
}

#[test]
fn verification_refuses_empty_and_nan() {
    assert_eq!(
        Verification::new(vec![], vec![0.1]).unwrap_err(),
        AccuracyError::Empty("genuine pairs")
    );
    let e = Verification::new(vec![0.1], vec![0.2, f32::NAN]).unwrap_err();
    assert!(e.to_string().contains("impostor pair 1"), "{e}");
}

#[test]
fn ratios_to_a_zero_reference_are_unbounded_and_reproducible() {
    let mut all = Vec::new();
    for i in 0..20 {
        // Group a: no false positive; group b: 5 of 20; group c: none either.
        all.push(search(&[(i, 0.1)], None, "a"));
        all.push(search(&[(i, if i < 5 { 0.9 } else { 0.1 })], None, "b"));
        all.push(search(&[(i, 0.1)], None, "c"));
        all.push(search(&[(i, 0.8)], Some(i), "a"));
        all.push(search(&[(i, if i < 4 { 0.2 } else { 0.8 })], Some(i), "b"));
    }
    let s = Searches::new(&all).unwrap();
    let cfg = BootstrapConfig::default();
    let t = per_group(&s, 0.5, &cfg).unwrap();
    assert_eq!(t.fpir_reference.as_deref(), Some("a"));
    let [a, b, c] = &t.groups[..] else { panic!() };
    assert_eq!(a.fpir.ratio, Some(Ratio::Finite(1.0)));
    assert_eq!(b.fpir.ratio, Some(Ratio::Unbounded));
    assert_eq!(c.fpir.ratio, Some(Ratio::Finite(1.0)));
    assert_eq!(b.fpir.ratio_ci.unwrap().high, Ratio::Unbounded);
    let ci = b.fpir.ci.unwrap();
    assert!(ci.low < 0.25 && ci.high > 0.25 && ci.low > 0.0, "{ci:?}");
    assert_eq!(a.fpir.ci.unwrap().high, 0.0);
    // FNIR: a misses none, b 4 of 20; group c has no mated search.
    assert_eq!(t.fnir_reference.as_deref(), Some("a"));
    assert_eq!(c.fnir.rate.trials, 0);
    assert!(c.fnir.ci.is_none() && c.fnir.ratio.is_none());
    assert_eq!(per_group(&s, 0.5, &cfg).unwrap(), t);
    let json = serde_json::to_value(&t).unwrap();
    assert_eq!(json["groups"][1]["fpir"]["ratio"], "unbounded");
    assert_eq!(json["groups"][1]["fpir"]["rate"]["rate"], 0.25);
    let bad = BootstrapConfig {
        confidence: 1.0,
        ..cfg
    };
    assert!(per_group(&s, 0.5, &bad).is_err());
}

#[test]
fn finite_ratio_intervals_follow_the_naive_bootstrap() {
    let mut all = Vec::new();
    for i in 0..200u32 {
        all.push(search(
            &[(i, if i % 10 == 0 { 0.9 } else { 0.1 })],
            None,
            "a",
        ));
        all.push(search(
            &[(i, if i % 4 == 0 { 0.9 } else { 0.1 })],
            None,
            "b",
        ));
    }
    all.push(search(&[(1, 0.9)], Some(1), "a"));
    let s = Searches::new(&all).unwrap();
    let cfg = BootstrapConfig {
        resamples: 200,
        seed: 9,
        confidence: 0.95,
    };
    let t = per_group(&s, 0.5, &cfg).unwrap();
    let flags = naive::group_flags(&all, 0.5);
    let a = naive::bootstrap(&flags[0].2, &cfg, 1);
    let b = naive::bootstrap(&flags[1].2, &cfg, 3);
    let mut ratios: Vec<f64> = b.iter().zip(&a).map(|(x, y)| x / y).collect();
    ratios.sort_by(f64::total_cmp);
    // 200 resamples at 95 %: the 5th and 195th smallest.
    let ci = t.groups[1].fpir.ratio_ci.unwrap();
    assert_eq!(
        (ci.low, ci.high),
        (Ratio::Finite(ratios[4]), Ratio::Finite(ratios[194]))
    );
    assert_eq!(t.groups[1].fpir.ratio, Some(Ratio::Finite(2.5)));
}
