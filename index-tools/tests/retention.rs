//! `facegate-index retention-report` on a real data directory: what is
//! past its period shows (exit status 1) until a purge removes it.

use std::process::Command;

use facegate_core::clock::UnixMillis;
use facegate_core::encounter::{
    CaptureContext, Category, Decision, Encounter, EncounterStore, Method, SqliteEncounters,
    Traveller,
};
use facegate_core::manifest::Direction;
use facegate_core::retention::{RetentionPolicy, purge_encounters};

const HOUR: i64 = 3_600_000;

fn report(data: &std::path::Path, as_of: i64) -> (bool, serde_json::Value) {
    let out = Command::new(env!("CARGO_BIN_EXE_facegate-index"))
        .args(["retention-report", data.to_str().unwrap(), "--json"])
        .args(["--as-of-unix-ms", &as_of.to_string()])
        .output()
        .unwrap();
    let json = serde_json::from_slice(&out.stdout).unwrap();
    (out.status.success(), json)
}

fn line<'a>(json: &'a serde_json::Value, store: &str, category: &str) -> &'a serde_json::Value {
    json.as_array()
        .unwrap()
        .iter()
        .find(|l| l["store"] == store && l["category"] == category)
        .unwrap()
}

#[test]
fn overdue_items_show_until_a_purge_removes_them() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = 1_780_000_000_000;
    {
        let store = SqliteEncounters::open(&dir.path().join("encounters")).unwrap();
        let file = Traveller {
            subject_id: "CIT-1".into(),
            category: Category::Citizen,
            admissions: Vec::new(),
        };
        store.put_traveller(&file, UnixMillis(t0)).unwrap();
        store
            .record(Encounter {
                context: CaptureContext {
                    encounter_id: "e1".into(),
                    direction: Direction::Entry,
                    port: "JFK".into(),
                    lane: String::new(),
                    carrier: String::new(),
                    voyage: String::new(),
                    captured_at: UnixMillis(t0),
                },
                manifest_id: None,
                method: Method::Identify,
                decision: Decision::Match,
                subject_id: Some("CIT-1".into()),
                score: Some(0.9),
                threshold: 0.35,
                principal: String::new(),
                generation: 1,
                recorded_at: UnixMillis(t0),
            })
            .unwrap();
    }
    let (ok, json) = report(dir.path(), t0 + HOUR);
    assert!(ok, "{json}");
    let citizen = line(&json, "encounters", "citizen");
    assert_eq!(
        (
            citizen["oldest_unix_ms"].as_i64(),
            citizen["overdue"].as_u64()
        ),
        (Some(t0), Some(0))
    );
    // 13 hours on, nothing purged yet: overdue, and the exit status says so.
    let (ok, json) = report(dir.path(), t0 + 13 * HOUR);
    assert!(!ok);
    assert_eq!(line(&json, "encounters", "citizen")["overdue"], 1);
    {
        let store = SqliteEncounters::open(&dir.path().join("encounters")).unwrap();
        let policy = RetentionPolicy::default();
        purge_encounters(store.as_ref(), &policy, UnixMillis(t0 + 13 * HOUR)).unwrap();
    }
    let (ok, json) = report(dir.path(), t0 + 13 * HOUR);
    assert!(ok, "{json}");
    assert!(line(&json, "encounters", "citizen")["oldest_unix_ms"].is_null());
}

#[test]
fn a_store_held_by_a_server_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let _held = SqliteEncounters::open(&dir.path().join("encounters")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_facegate-index"))
        .args(["retention-report", dir.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("stop it first") && err.contains("in use"),
        "{err}"
    );
}
