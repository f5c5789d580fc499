//! `facegate-index encounters ...` on a small synthetic store, run as the
//! back office runs it, checked against the library's own reports.

mod common;
use common::*;

use std::path::Path;
use std::sync::Arc;

use facegate_core::clock::UnixMillis;
use facegate_core::encounter::store::MAX_PAGE;
use facegate_core::encounter::{
    CaptureContext, Day, Decision, Encounter, EncounterStore, Method, SqliteEncounters, StayRule,
    overstays, stay_of,
};
use facegate_core::manifest::Direction;

/// The span's last day for `--years 3` from the default start.
const END: &str = "2025-12-30";

/// A data dir with 3,000 synthetic travellers, made by the command.
fn synth_store(dir: &Path) {
    let out = ok(&[
        "encounters",
        "synth-encounters",
        p(dir),
        "--travellers",
        "3000",
        "--years",
        "3",
        "--seed",
        "21",
    ]);
    assert!(out.contains("wrote 3000 travellers"), "{out}");
    assert!(out.contains(END), "{out}");
}

fn store(dir: &Path) -> Arc<SqliteEncounters> {
    SqliteEncounters::open(&dir.join("encounters")).unwrap()
}

fn rule_name(r: Option<StayRule>) -> &'static str {
    r.map_or("", |r| r.name())
}

#[test]
fn the_overstay_csv_holds_every_overstayer_the_library_reports() {
    let dir = tempfile::tempdir().unwrap();
    synth_store(dir.path());
    let csv_path = dir.path().join("over.csv");
    ok(&[
        "encounters",
        "overstays",
        p(dir.path()),
        "--as-of",
        END,
        "--csv",
        p(&csv_path),
    ]);
    let mut reader = csv::Reader::from_path(&csv_path).unwrap();
    assert_eq!(
        reader.headers().unwrap(),
        vec![
            "subject_id",
            "category",
            "in_country_since",
            "days_used_in_180",
            "admitted_until",
            "days_over",
            "past_days_over",
            "rule",
            "anomalies"
        ]
    );
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    let store = store(dir.path());
    let want = overstays(store.as_ref(), END.parse().unwrap(), None, MAX_PAGE).unwrap();
    assert!(want.next.is_none());
    assert!(want.overstays.len() > 10, "{}", want.overstays.len());
    assert_eq!(rows.len(), want.overstays.len());
    let day = |d: Option<Day>| d.map(|d| d.to_string()).unwrap_or_default();
    for (row, r) in rows.iter().zip(&want.overstays) {
        let s = &r.status;
        let anomalies: Vec<String> = s.anomalies.iter().map(|a| a.to_string()).collect();
        let expected = [
            r.subject_id.clone(),
            r.category.map_or("", |c| c.name()).to_string(),
            day(s.in_country_since),
            s.days_used_in_180.to_string(),
            day(s.admitted_until),
            s.days_over.to_string(),
            s.days_over_in_past_stays.to_string(),
            rule_name(s.rule).to_string(),
            anomalies.join("; "),
        ];
        assert_eq!(row.iter().collect::<Vec<_>>(), expected, "{}", r.subject_id);
    }
    // The CSV is not replaced without --force; JSON has the same rows.
    drop(store);
    let err = fails(&[
        "encounters",
        "overstays",
        p(dir.path()),
        "--as-of",
        END,
        "--csv",
        p(&csv_path),
    ]);
    assert!(err.contains("--force"), "{err}");
    let json: serde_json::Value = serde_json::from_str(&ok(&[
        "encounters",
        "overstays",
        p(dir.path()),
        "--as-of",
        END,
        "--json",
    ]))
    .unwrap();
    assert_eq!(json.as_array().unwrap().len(), rows.len());
}

#[test]
fn the_scheduled_erasures_csv_is_what_the_purge_will_erase_within_the_notice() {
    use facegate_core::retention::{RetentionPolicy, scheduled_erasures};
    let dir = tempfile::tempdir().unwrap();
    synth_store(dir.path());
    // Five years after the span's overstays, three months' notice.
    let as_of = "2028-06-30";
    let csv_path = dir.path().join("erasures.csv");
    ok(&[
        "encounters",
        "scheduled-erasures",
        p(dir.path()),
        "--as-of",
        as_of,
        "--csv",
        p(&csv_path),
    ]);
    let mut reader = csv::Reader::from_path(&csv_path).unwrap();
    assert_eq!(
        reader.headers().unwrap(),
        vec!["subject_id", "exit_utc", "days_over", "erase_at_utc"]
    );
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    let store = store(dir.path());
    let now = facegate_core::encounter::store::end_of(as_of.parse().unwrap());
    let want =
        scheduled_erasures(store.as_ref(), &RetentionPolicy::default(), now, None, 0).unwrap();
    assert!(!want.erasures.is_empty());
    assert_eq!(rows.len(), want.erasures.len());
    for (row, e) in rows.iter().zip(&want.erasures) {
        assert_eq!(&row[0], e.subject_id);
        assert_eq!(row[2].parse::<u32>().unwrap(), e.stay.days_over);
        assert!(e.stay.days_over > 0 && e.stay.erase_at > now);
    }
}

#[test]
fn history_and_stay_are_the_stores() {
    let dir = tempfile::tempdir().unwrap();
    synth_store(dir.path());
    let subjects: Vec<String> = (0..40).map(|i| format!("S{:09}", i * 71)).collect();
    let mut outputs = Vec::new();
    for s in &subjects {
        let h: serde_json::Value =
            serde_json::from_str(&ok(&["encounters", "history", p(dir.path()), s, "--json"]))
                .unwrap();
        let st: serde_json::Value = serde_json::from_str(&ok(&[
            "encounters",
            "stay",
            p(dir.path()),
            s,
            "--as-of",
            "2024-07-01",
            "--json",
        ]))
        .unwrap();
        outputs.push((h, st));
    }
    let store = store(dir.path());
    let mut records = 0;
    for (s, (h, st)) in subjects.iter().zip(&outputs) {
        let want = store.history(s).unwrap();
        let got = h.as_array().unwrap();
        assert_eq!(got.len(), want.len(), "{s}");
        records += want.len();
        for (g, w) in got.iter().zip(&want) {
            let c = &w.encounter.context;
            assert_eq!(g["record_id"], w.record_id);
            assert_eq!(g["encounter_id"], c.encounter_id.as_str());
            assert_eq!(g["captured_at_unix_ms"], c.captured_at.0);
            assert_eq!(g["direction"], c.direction.name());
            assert_eq!(g["port"], c.port.as_str());
            assert_eq!(g["decision"], w.encounter.decision.name());
            assert_eq!(g["subject_id"], s.as_str());
        }
        let stay = stay_of(store.as_ref(), s, "2024-07-01".parse().unwrap())
            .unwrap()
            .status;
        assert_eq!(st["days_used_in_180"], stay.days_used_in_180);
        assert_eq!(st["days_over"], stay.days_over);
        assert_eq!(st["stays"].as_array().unwrap().len(), stay.stays.len());
        assert_eq!(
            st["in_country_since"],
            serde_json::json!(stay.in_country_since.map(|d| d.to_string()))
        );
    }
    assert!(records > 100, "{records}");
}

fn exit_of(subject: usize, ms: i64) -> Encounter {
    Encounter {
        context: CaptureContext {
            encounter_id: format!("x{subject}"),
            direction: Direction::Exit,
            port: "JFK".into(),
            lane: "G1".into(),
            carrier: "XA".into(),
            voyage: "XA1".into(),
            captured_at: UnixMillis(ms),
        },
        manifest_id: None,
        method: Method::Identify,
        decision: Decision::Match,
        subject_id: Some(format!("S{subject}")),
        score: Some(0.7),
        threshold: 0.35,
        principal: "jfk".into(),
        generation: 1,
        recorded_at: UnixMillis(ms),
    }
}

#[test]
fn irregular_movements_are_listed_across_pages_and_shared_instants() {
    let dir = tempfile::tempdir().unwrap();
    let day: Day = "2025-03-01".parse().unwrap();
    // 2,500 exits with no entry, three to an instant, so pages of 1,000
    // end in the middle of one.
    let exits: Vec<Encounter> = (0..2_500)
        .map(|i| exit_of(i, day.start().0 + 3_600_000 + (i / 3) as i64))
        .collect();
    store(dir.path()).record_many(exits).unwrap();
    let csv_path = dir.path().join("x.csv");
    let args = [
        "encounters",
        "irregular",
        p(dir.path()),
        "--kind",
        "exit-without-entry",
        "--from",
        "2025-03-01",
        "--until",
        "2025-03-01",
        "--csv",
        p(&csv_path),
    ];
    let out = run(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ids: std::collections::BTreeSet<String> = csv::Reader::from_path(&csv_path)
        .unwrap()
        .records()
        .map(|r| r.unwrap()[1].to_string())
        .collect();
    assert_eq!(ids.len(), 2_500);
    // The day after holds none; entries without exit, none either.
    let text = ok(&[
        "encounters",
        "irregular",
        p(dir.path()),
        "--kind",
        "entry-without-exit",
        "--from",
        "2025-03-01",
        "--until",
        "2025-03-31",
    ]);
    assert!(text.is_empty(), "{text}");
}

#[test]
fn bad_dates_a_missing_store_and_a_held_one_are_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let err = fails(&["encounters", "overstays", p(d), "--as-of", "2025-02-30"]);
    assert!(
        err.contains("\"2025-02-30\" is not a date of the form YYYY-MM-DD"),
        "{err}"
    );
    let err = fails(&["encounters", "stay", p(d), "S1"]);
    assert!(err.contains("no encounter store here"), "{err}");
    let err = fails(&[
        "encounters",
        "irregular",
        p(d),
        "--kind",
        "exit-without-entry",
        "--from",
        "2025-03-02",
        "--until",
        "2025-03-01",
    ]);
    assert!(
        err.contains("--until 2025-03-01 is before --from 2025-03-02"),
        "{err}"
    );
    // A server holds the store: a second opener is told why.
    let held = store(d);
    let err = fails(&["encounters", "history", p(d), "S1"]);
    assert!(
        err.contains("in use by another process") && err.contains("facegate server"),
        "{err}"
    );
    let err = fails(&[
        "encounters",
        "synth-encounters",
        p(d),
        "--force",
        "--travellers",
        "5",
    ]);
    assert!(err.contains("in use by another process"), "{err}");
    drop(held);
    ok(&["encounters", "history", p(d), "S1"]);
}
