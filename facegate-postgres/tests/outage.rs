//! The shared store when its server fails: PostgreSQL killed at once (no
//! checkpoint, as a crash or a pulled plug) while nodes are recording.
//! Every record acknowledged before the crash is there after recovery;
//! writes during the outage fail with a transient error, never a panic or
//! a false acknowledgement; and the same store object works again once the
//! server is back, without a restart of the node. Its own test binary,
//! with its own server, since it kills it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use facegate_core::clock::UnixMillis;
use facegate_core::encounter::{
    CaptureContext, Decision, Encounter, EncounterError, EncounterStore, Method,
};
use facegate_core::manifest::Direction;
use facegate_postgres::{LocalPostgres, PgEncounters};

fn crossing(port: usize, n: usize) -> Encounter {
    Encounter {
        context: CaptureContext {
            encounter_id: format!("e{n}"),
            direction: if n.is_multiple_of(2) {
                Direction::Entry
            } else {
                Direction::Exit
            },
            port: format!("P{port}"),
            lane: "1".into(),
            carrier: "XA".into(),
            voyage: "XA1".into(),
            captured_at: UnixMillis(n as i64 * 1_000),
        },
        manifest_id: None,
        method: Method::Identify,
        decision: Decision::Match,
        subject_id: Some(format!("S{port}")),
        score: Some(0.8),
        threshold: 0.35,
        principal: "kiosk".into(),
        generation: 1,
        recorded_at: UnixMillis(n as i64 * 1_000),
    }
}

#[test]
fn a_crash_loses_no_acknowledged_record_and_the_store_recovers() {
    let server = LocalPostgres::start().unwrap();
    let url = server.create_database("outage").unwrap();
    let store = PgEncounters::open(&url).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    // Four ports record as fast as they are answered, until told to stop.
    let ports: Vec<_> = (0..4)
        .map(|p| {
            let (store, stop) = (Arc::clone(&store), Arc::clone(&stop));
            std::thread::spawn(move || {
                let (mut acked, mut refused) = (Vec::new(), 0);
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    match store.record(crossing(p, n)) {
                        Ok(r) => acked.push(r.stored),
                        Err(EncounterError::Remote {
                            transient: true, ..
                        }) => refused += 1,
                        Err(e) => panic!("a failure that is not transient: {e}"),
                    }
                    n += 1;
                }
                (acked, refused)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(700));
    server.crash().unwrap();
    // While it is down, writes are refused as transient.
    std::thread::sleep(Duration::from_millis(300));
    let during = store.record(crossing(9, 0)).unwrap_err();
    assert!(
        matches!(
            during,
            EncounterError::Remote {
                transient: true,
                ..
            }
        ),
        "{during}"
    );
    server.restart().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let mut acked = Vec::new();
    let mut refused = 0;
    for p in ports {
        let (a, r) = p.join().unwrap();
        acked.extend(a);
        refused += r;
    }
    assert!(refused > 0, "the outage was seen by the ports");
    assert!(
        acked.len() > 100,
        "only {} records acknowledged",
        acked.len()
    );
    // Every acknowledged record is there, as acknowledged, and the same
    // store (reconnected) serves the reads and the next write.
    for a in &acked {
        assert_eq!(store.get(a.record_id).unwrap().as_ref(), Some(a));
    }
    let after = store.record(crossing(9, 1)).unwrap();
    assert!(after.newly_recorded);
    println!(
        "{} acknowledged, {refused} refused during the outage",
        acked.len()
    );
}
