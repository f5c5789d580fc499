use std::collections::HashSet;

use super::*;
use crate::encounter::model::Category;
use crate::encounter::stay::{Anomaly, stay_status};
use crate::encounter::store::{EncounterStore, Movement};
use crate::encounter::{SqliteEncounters, overstays};

fn synth(travellers: usize, seed: u64) -> EncounterSynth {
    EncounterSynth::new(SynthConfig {
        travellers,
        seed,
        ..SynthConfig::default()
    })
    .unwrap()
}

fn movements(h: &History) -> Vec<Movement> {
    h.encounters
        .iter()
        .filter(|e| e.subject_id.is_some())
        .map(|e| Movement {
            captured_at: e.context.captured_at,
            direction: e.context.direction,
        })
        .collect()
}

#[test]
fn the_same_seed_gives_the_same_histories_and_another_seed_others() {
    let (a, b, c) = (synth(300, 7), synth(300, 7), synth(300, 8));
    let (ha, hb, hc): (Vec<_>, Vec<_>, Vec<_>) = (
        a.histories().collect(),
        b.histories().collect(),
        c.histories().collect(),
    );
    assert_eq!(ha, hb);
    assert_ne!(ha, hc);
    // A traveller regenerated alone is the same as in the population.
    assert_eq!(a.history(123), ha[123]);
}

#[test]
fn every_record_is_valid_ordered_and_uniquely_identified() {
    let s = synth(3_000, 1);
    let mut ids = HashSet::new();
    for h in s.histories() {
        for a in &h.traveller.admissions {
            a.validate().unwrap();
        }
        let days: Vec<Day> = h.traveller.admissions.iter().map(|a| a.day).collect();
        assert!(days.windows(2).all(|w| w[0] < w[1]), "{days:?}");
        assert!(!h.encounters.is_empty() || h.injected != Injected::Nothing);
        for w in h.encounters.windows(2) {
            assert!(w[0].context.captured_at < w[1].context.captured_at, "{w:?}");
        }
        for e in &h.encounters {
            e.validate().unwrap();
            let day = Day::of(e.context.captured_at);
            assert!(day >= s.config().start && day <= s.end(), "{day}");
            let key = (e.context.port.clone(), e.context.encounter_id.clone());
            assert!(ids.insert(key), "duplicate id {}", e.context.encounter_id);
        }
    }
}

#[test]
fn categories_and_injections_come_in_their_configured_shares() {
    let s = synth(20_000, 3);
    let (mut by_category, mut injected) = (std::collections::HashMap::new(), [0usize; 3]);
    let mut records = 0;
    for h in s.histories() {
        *by_category.entry(h.traveller.category).or_insert(0usize) += 1;
        records += h.encounters.len();
        match h.injected {
            Injected::Nothing => {}
            Injected::Overstay { .. } => injected[0] += 1,
            Injected::MissedExit { .. } => injected[1] += 1,
            Injected::ExitWithoutEntry { .. } => injected[2] += 1,
        }
    }
    let share = |n: usize| n as f64 / 20_000.0;
    let cfg = s.config();
    for (c, want) in [
        (Category::VisaExempt, cfg.shares.visa_exempt),
        (Category::NonImmigrantVisa, cfg.shares.visa_holder),
        (
            Category::LawfulPermanentResident,
            cfg.shares.permanent_resident,
        ),
        (Category::Citizen, cfg.shares.citizen),
        (Category::Other, cfg.shares.other),
    ] {
        let got = share(by_category.get(&c).copied().unwrap_or(0));
        assert!(
            (got - want).abs() < 0.01 + want * 0.1,
            "{c:?}: {got} vs {want}"
        );
    }
    // Overstays only for visitors with a dated rule (about 4 in 5), and
    // only where a stay could be made to; the others nearly as configured.
    let over = share(injected[0]);
    assert!(over > cfg.overstay * 0.6 && over < cfg.overstay, "{over}");
    for (got, want) in [
        (injected[1], cfg.missed_exit),
        (injected[2], cfg.exit_without_entry),
    ] {
        let got = share(got);
        assert!(got > want * 0.7 && got < want * 1.3, "{got} vs {want}");
    }
    // A realistic volume: several crossings per traveller over 3 years.
    let per = records as f64 / 20_000.0;
    assert!((4.0..16.0).contains(&per), "{per} records per traveller");
}

#[test]
fn stays_show_exactly_what_was_injected() {
    let s = synth(8_000, 5);
    let mut seen = [0usize; 4];
    for h in s.histories() {
        let t = &h.traveller;
        let st = stay_status(&movements(&h), &t.admissions, t.category, s.end());
        let missing_exit = st
            .anomalies
            .iter()
            .any(|a| matches!(a, Anomaly::ExitMissing { .. }));
        let missing_entry = st
            .anomalies
            .iter()
            .any(|a| matches!(a, Anomaly::EntryMissing { .. }));
        let what = format!("{:?} {:?}", h.injected, st);
        match h.injected {
            Injected::Nothing => {
                assert!(!st.is_overstayer() && st.anomalies.is_empty(), "{what}");
                seen[0] += 1;
            }
            Injected::Overstay { left: None, .. } => {
                assert!(st.days_over > 0, "{what}");
                seen[1] += 1;
            }
            Injected::Overstay { left: Some(_), .. } => {
                assert!(st.days_over_in_past_stays > 0, "{what}");
                seen[2] += 1;
            }
            Injected::MissedExit { last: false, .. } => {
                assert!(missing_exit && !st.is_overstayer(), "{what}");
                seen[3] += 1;
            }
            // The only exit missed: the visitor looks still here.
            Injected::MissedExit { last: true, .. } => {
                assert!(
                    !t.category.has_stay_limit() || st.in_country_since.is_some(),
                    "{what}"
                );
            }
            Injected::ExitWithoutEntry { .. } => {
                assert!(missing_entry && !st.is_overstayer(), "{what}");
            }
        }
    }
    assert!(seen.iter().all(|&n| n > 0), "{seen:?}");
}

#[test]
fn a_population_loads_through_the_store_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteEncounters::open(dir.path()).unwrap();
    let s = synth(400, 11);
    let mut calls = 0;
    let report = load(&s, &store, None, &mut |_: &LoadReport| calls += 1).unwrap();
    let want: usize = s.histories().map(|h| h.encounters.len()).sum();
    assert_eq!(report.encounters, want as u64);
    assert_eq!((report.travellers, report.duplicates), (400, 0));
    assert!(calls >= 1);
    let h = s.history(17);
    assert_eq!(
        store.traveller(&h.traveller.subject_id).unwrap(),
        Some(h.traveller.clone())
    );
    let stored = store.history(&h.traveller.subject_id).unwrap();
    let named = h.encounters.iter().filter(|e| e.subject_id.is_some());
    assert!(stored.iter().map(|r| &r.encounter).eq(named));
    // Overstayers as of the span's end: those the generator's stays say.
    let page = overstays(store.as_ref(), s.end(), None, 0).unwrap();
    let reported: Vec<String> = page
        .overstays
        .iter()
        .map(|r| r.subject_id.clone())
        .collect();
    let expected: Vec<String> = s
        .histories()
        .filter(|h| {
            let t = &h.traveller;
            stay_status(&movements(h), &t.admissions, t.category, s.end()).days_over > 0
        })
        .map(|h| h.traveller.subject_id)
        .collect();
    assert_eq!(reported, expected);
    // Again: every record is a duplicate; a cap stops early.
    let again = load(&s, &store, Some(100), &mut |_: &LoadReport| {}).unwrap();
    assert_eq!((again.encounters, again.duplicates), (0, 100));
}

#[test]
fn bad_configurations_are_refused() {
    let bad = |f: fn(&mut SynthConfig)| {
        let mut c = SynthConfig::default();
        f(&mut c);
        EncounterSynth::new(c).unwrap_err()
    };
    assert!(
        bad(|c| c.shares.citizen = 0.5)
            .to_string()
            .contains("sum to 1")
    );
    assert!(
        bad(|c| c.overstay = 1.5)
            .to_string()
            .contains("within 0..=1")
    );
    assert!(bad(|c| c.travellers = 0).to_string().contains("traveller"));
}
