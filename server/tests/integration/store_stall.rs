//! A shared encounter store that stops answering, through the real
//! server: its connections stay open but nothing comes back (a proxy in
//! front of a real PostgreSQL, paused). A port asking for a record is
//! answered UNAVAILABLE within the record timeout, not held; once the
//! database answers again the write that was under way lands, the port's
//! retry with the same encounter id is answered with that one record, and
//! the traveller's history holds each crossing once.

use crate::common::stall::StallingProxy;
use crate::common::*;

use std::time::{Duration, Instant};

use facegate_api::v1::encounters_client::EncountersClient;
use facegate_api::v1::{CaptureContext, Direction, IdentifyRequest, TravelHistoryRequest};
use facegate_postgres::LocalPostgres;

#[tokio::test(flavor = "multi_thread")]
async fn a_database_that_stops_answering_fails_records_in_time_and_the_retry_finds_the_one_record()
{
    let (pg, url) = tokio::task::spawn_blocking(|| {
        let pg = LocalPostgres::start().expect("starting PostgreSQL");
        let url = pg.create_database("stalls").unwrap();
        (pg, url)
    })
    .await
    .unwrap();
    let proxy = StallingProxy::start(([127, 0, 0, 1], pg.port()).into()).await;
    let through_proxy = url.replace(
        &format!(":{}/", pg.port()),
        &format!(":{}/", proxy.addr.port()),
    );
    let f = fixture();
    let server = Server::start(
        &f.path,
        &[
            "--encounter-store",
            &through_proxy,
            "--encounter-record-timeout-ms",
            "500",
        ],
    );
    let crossing = |id: &str, day: i64| IdentifyRequest {
        capture: Some(CaptureContext {
            port_id: "DOV-E".into(),
            lane: "2".into(),
            direction: Direction::Entry.into(),
            captured_at_unix_ms: 1_790_000_000_000 + day * 86_400_000,
            encounter_id: id.into(),
            record: true,
            ..Default::default()
        }),
        ..identify(f.synth.subject(11).templates[0].clone(), 3, id)
    };
    let mut port = server.client().await;
    let first = port.identify(crossing("stall-1", 0)).await.unwrap();
    let subject = first.get_ref().candidates[0].subject_id.clone();
    assert!(first.into_inner().encounter.is_some(), "recorded");

    proxy.pause();
    let asked = Instant::now();
    // The port's own deadline, so that a server that held the request
    // fails this test rather than hanging it.
    let mut stalled = tonic::Request::new(crossing("stall-2", 1));
    stalled.set_timeout(Duration::from_secs(4));
    let refused = port.identify(stalled).await.unwrap_err();
    let waited = asked.elapsed();
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
    assert!(
        refused
            .message()
            .contains("retry with the same encounter_id"),
        "{refused:?}"
    );
    assert!(
        waited >= Duration::from_millis(500) && waited < Duration::from_secs(4),
        "answered after {waited:?}, the timeout being 500 ms"
    );
    let metrics = http_get(&server.metrics).await;
    assert_eq!(
        sample(&metrics, "facegate_encounter_record_failures_total"),
        1.0
    );

    proxy.resume();
    let retried = port
        .identify(crossing("stall-2", 1))
        .await
        .expect("the database answers again")
        .into_inner()
        .encounter
        .unwrap();
    assert!(
        !retried.first_record,
        "the write under way during the stall landed once it answered"
    );
    let mut office = EncountersClient::connect(format!("http://{}", server.admin_addr))
        .await
        .unwrap();
    let history = office
        .travel_history(TravelHistoryRequest {
            subject_id: subject,
        })
        .await
        .unwrap()
        .into_inner();
    let ids: Vec<_> = history
        .encounters
        .iter()
        .map(|e| e.capture.as_ref().unwrap().encounter_id.as_str())
        .collect();
    assert_eq!(ids, ["stall-1", "stall-2"], "each crossing once");
    assert_eq!(history.encounters[1].record_id, retried.record_id);
}
