//! The shared PostgreSQL store against a real server (Debian's packages,
//! started once for this test binary): the store contract every store
//! meets (`facegate-core/tests/store_contract/`), each check on a fresh
//! database, and what only a shared store must do: several nodes on one
//! database, one purge at a time, a server crash, an outage and recovery.

#[path = "../../facegate-core/tests/store_contract/mod.rs"]
mod store_contract;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use facegate_core::encounter::{EncounterError, EncounterStore};
use facegate_core::manifest::Direction;
use facegate_postgres::{LocalPostgres, PgEncounters};
use store_contract::{a_full_queue_refuses_at_once_and_loses_nothing, at, crossing};

/// The test binary's server (stopped by its watchdog when the binary ends).
fn server() -> &'static LocalPostgres {
    static SERVER: OnceLock<LocalPostgres> = OnceLock::new();
    SERVER.get_or_init(|| LocalPostgres::start().expect("starting PostgreSQL"))
}

/// A fresh database on the shared server.
fn database(server: &LocalPostgres) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let name = format!("t{}", NEXT.fetch_add(1, Ordering::Relaxed));
    server.create_database(&name).expect("creating a database")
}

fn fresh() -> ((), impl Fn() -> Arc<dyn EncounterStore>) {
    let url = database(server());
    let open = move || PgEncounters::open(&url).unwrap() as Arc<dyn EncounterStore>;
    ((), open)
}

store_contract_tests!(fresh);

#[test]
fn a_writer_held_by_a_table_lock_fills_its_queue_and_then_refuses_at_once() {
    let url = database(server());
    let store = PgEncounters::open(&url).unwrap();
    a_full_queue_refuses_at_once_and_loses_nothing(store, || {
        // Another session's lock on the table: the writer's first INSERT
        // waits on it while the records queue up.
        let mut other = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        other
            .batch_execute("BEGIN; LOCK TABLE encounters IN ACCESS EXCLUSIVE MODE")
            .unwrap();
        Box::new(move || other.batch_execute("COMMIT").unwrap())
    });
}

#[test]
fn two_nodes_on_one_database_record_each_crossing_once() {
    let url = database(server());
    let nodes = [
        PgEncounters::open(&url).unwrap(),
        PgEncounters::open(&url).unwrap(),
    ];
    // Each of 8 threads per node records 40 crossings; the two nodes send
    // the same encounter ids (a port's retry that reached the other node).
    let threads: Vec<_> = (0..16)
        .map(|t| {
            let node = Arc::clone(&nodes[t % 2]);
            std::thread::spawn(move || {
                (0..40)
                    .map(|i| {
                        let id = format!("{}-{i}", t / 2);
                        let d = if i % 2 == 0 {
                            Direction::Entry
                        } else {
                            Direction::Exit
                        };
                        let s = format!("S{}", t / 2);
                        node.record(crossing(&id, Some(&s), d, at(i, 1))).unwrap()
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let answers: Vec<_> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    let new = answers.iter().filter(|r| r.newly_recorded).count();
    assert_eq!(
        new,
        8 * 40,
        "each crossing recorded once, however many nodes sent it"
    );
    // Both nodes were answered with the same record for each id.
    for a in &answers {
        let first = nodes[0].get(a.stored.record_id).unwrap().unwrap();
        assert_eq!(first, a.stored);
    }
    for s in 0..8 {
        let h = nodes[1].history(&format!("S{s}")).unwrap();
        assert_eq!(h.len(), 40);
    }
}

#[test]
fn one_node_at_a_time_leads_the_purge() {
    let url = database(server());
    let (a, b) = (
        PgEncounters::open(&url).unwrap(),
        PgEncounters::open(&url).unwrap(),
    );
    let lead = a.lead_purge().unwrap();
    assert!(lead.is_some());
    assert!(
        b.lead_purge().unwrap().is_none(),
        "the other node must wait"
    );
    drop(lead);
    let next = b.lead_purge().unwrap();
    assert!(next.is_some(), "released when the lead is dropped");
    drop(a);
    assert!(next.is_some());
}

#[test]
fn a_database_from_a_newer_build_is_refused() {
    let url = database(server());
    drop(PgEncounters::open(&url).unwrap());
    let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    c.execute("UPDATE facegate_schema SET version = version + 1", &[])
        .unwrap();
    let e = PgEncounters::open(&url).unwrap_err();
    assert!(
        matches!(
            e,
            EncounterError::Remote {
                transient: false,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("this build reads at most"), "{e}");
}

#[test]
fn an_unreachable_database_is_a_transient_error_naming_it_without_the_password() {
    // A port nothing listens on (the server's own port, plus one, is not ours).
    let url = "postgres://facegate:secret@127.0.0.1:1/none";
    let e = PgEncounters::open(url).unwrap_err();
    assert!(
        matches!(
            e,
            EncounterError::Remote {
                transient: true,
                ..
            }
        ),
        "{e}"
    );
    let text = e.to_string();
    assert!(text.contains("127.0.0.1:1/none"), "{text}");
    assert!(!text.contains("secret"), "{text}");
    let e = PgEncounters::open("not a url at all ===").unwrap_err();
    assert!(
        e.to_string().contains("not a PostgreSQL connection string"),
        "{e}"
    );
}
