//! Encounters recorded behind routers, in one shared PostgreSQL (a real
//! server from Debian's packages, started by the test): two routers over
//! 3 shards record ports' crossings; a port's retry through the other
//! router is answered with the first record; either router's back office,
//! and a shard's, read the same travel history; a recording that would
//! rest on a partial answer is refused; and SIGKILL of a router under load
//! loses no acknowledged record.

use crate::common::*;
use crate::router::{Routed, channel, probes, shard_fleet_with, start_router};

use std::sync::Arc;
use std::time::{Duration, Instant};

use facegate_api::v1::matcher_client::MatcherClient;
use facegate_api::v1::{CaptureContext, Direction, IdentifyRequest};
use facegate_core::encounter::EncounterStore;
use facegate_postgres::{LocalPostgres, PgEncounters};
use tonic::Code;

/// A port's capture at `port`, to record.
fn capture(port: &str, id: &str, direction: Direction) -> CaptureContext {
    CaptureContext {
        port_id: port.into(),
        lane: "3".into(),
        direction: direction.into(),
        captured_at_unix_ms: 1_790_000_000_000,
        encounter_id: id.into(),
        record: true,
        ..Default::default()
    }
}

fn recorded(probe: Vec<f32>, capture: CaptureContext) -> IdentifyRequest {
    IdentifyRequest {
        capture: Some(capture),
        ..identify(probe, 5, "rec")
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn two_routers_record_into_one_postgresql_and_a_killed_router_loses_nothing_acknowledged() {
    let (_pg, url) = tokio::task::spawn_blocking(|| {
        let pg = LocalPostgres::start().expect("starting PostgreSQL");
        let url = pg.create_database("routed").unwrap();
        (pg, url)
    })
    .await
    .unwrap();
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let store = vec!["--encounter-store".to_string(), url.clone()];
    let replicas = shard_fleet_with(&f, dir.path(), 1, &store, "http");
    let with_store = ["--encounter-store", url.as_str()];
    let a = start_router(&replicas, &dir.path().join("a"), &with_store);
    let b = start_router(&replicas, &dir.path().join("b"), &with_store);
    let (mut via_a, mut via_b) = (
        MatcherClient::new(channel(&a.addr).await),
        MatcherClient::new(channel(&b.addr).await),
    );
    let (j, probes) = (0, probes(&f));
    let mate = f.synth.probe(j).mate.expect("a mated probe");
    let subject = facegate_core::synth::Synth::subject_id(mate);

    // An entry through A; the port's retry reaches B: one record.
    let entry = capture("JFK-T4", "jfk-1", Direction::Entry);
    let first = via_a
        .identify(recorded(probes[j].clone(), entry.clone()))
        .await
        .unwrap()
        .into_inner();
    assert!(first.r#match, "the mated probe matches");
    let rec = first.encounter.unwrap();
    assert!(rec.first_record);
    let retry = via_b
        .identify(recorded(probes[j].clone(), entry))
        .await
        .unwrap()
        .into_inner();
    let again = retry.encounter.unwrap();
    assert_eq!(
        (again.record_id, again.first_record),
        (rec.record_id, false)
    );

    // The exit through B; both routers' back offices, and a shard's, read
    // the same history.
    let exit = capture("JFK-T4", "jfk-2", Direction::Exit);
    let out = via_b
        .identify(recorded(probes[j].clone(), exit))
        .await
        .unwrap()
        .into_inner();
    let want = vec![
        (rec.record_id, "jfk-1".to_string()),
        (out.encounter.unwrap().record_id, "jfk-2".to_string()),
    ];
    assert_eq!(travel_history(&a.admin_addr, &subject).await, want);
    assert_eq!(travel_history(&b.admin_addr, &subject).await, want);
    let shard_admin = format!("127.0.0.1:{}", replicas[0].admin_port);
    assert_eq!(travel_history(&shard_admin, &subject).await, want);

    // A partial answer cannot be recorded as the decision.
    let mut partial = recorded(
        probes[j].clone(),
        capture("JFK-T4", "jfk-3", Direction::Exit),
    );
    partial.accept_partial = true;
    let refused = via_a.identify(partial).await.unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");

    killed_router_loses_nothing_acknowledged(a, &probes, &url).await;
    drop(b);
}

/// Four ports record through `router` until it is killed; every record
/// they were answered with is in the database.
async fn killed_router_loses_nothing_acknowledged(
    mut router: Routed,
    probes: &[Vec<f32>],
    url: &str,
) {
    let stop = Instant::now() + Duration::from_secs(10);
    let ports: Vec<_> = (0..4)
        .map(|p| {
            let (addr, probes) = (router.addr.clone(), probes.to_vec());
            tokio::spawn(async move {
                let mut client = MatcherClient::new(channel(&addr).await);
                let mut acked = Vec::new();
                for n in 0.. {
                    let id = format!("load-{n}");
                    let c = capture(&format!("PORT-{p}"), &id, Direction::Entry);
                    let ask = recorded(probes[n % probes.len()].clone(), c);
                    match client.identify(ask).await {
                        Ok(r) => acked.push(r.into_inner().encounter.unwrap().record_id),
                        Err(_) => break, // the router is gone
                    }
                    assert!(Instant::now() < stop, "the router was never killed");
                }
                acked
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    router.child.kill().unwrap(); // SIGKILL
    router.child.wait().unwrap();
    let mut acked = Vec::new();
    for p in ports {
        acked.extend(p.await.unwrap());
    }
    assert!(acked.len() > 20, "only {} acknowledged", acked.len());
    let url = url.to_string();
    let missing = tokio::task::spawn_blocking(move || {
        let store: Arc<dyn EncounterStore> = PgEncounters::open(&url).unwrap();
        acked
            .iter()
            .filter(|id| store.get(**id).unwrap().is_none())
            .count()
    })
    .await
    .unwrap();
    assert_eq!(missing, 0, "acknowledged records lost");
}
