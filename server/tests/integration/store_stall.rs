//! A shared encounter store that stops answering, through the real
//! server: its connections stay open but nothing comes back (a proxy in
//! front of a real PostgreSQL, paused). A port asking for a record is
//! answered UNAVAILABLE within the record timeout, not held; once the
//! database answers again the write that was under way lands (and is
//! counted), the port's retry with the same encounter id is answered with
//! that one record, and the traveller's history holds each crossing once.

use crate::common::stall::StallingProxy;
use crate::common::*;

use std::time::{Duration, Instant};

use facegate_api::v1::matcher_client::MatcherClient;
use facegate_api::v1::{CaptureContext, Direction, EncounterRecord, IdentifyRequest};
use facegate_postgres::LocalPostgres;
use tonic::transport::Channel;

/// The server's record timeout in this test: far above a commit here,
/// even on a loaded machine.
const RECORD_TIMEOUT: Duration = Duration::from_secs(2);

/// A port's Identify of subject 11 that asks for its crossing to be recorded.
fn crossing(f: &Fixture, id: &str, day: i64) -> IdentifyRequest {
    IdentifyRequest {
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
    }
}

/// Records `request`, retrying (same encounter id) while the answer is
/// UNAVAILABLE, as a port does, for up to 20 s.
async fn recorded(port: &mut MatcherClient<Channel>, request: IdentifyRequest) -> EncounterRecord {
    let started = Instant::now();
    loop {
        match port.identify(request.clone()).await {
            Ok(answer) => return answer.into_inner().encounter.expect("recorded"),
            Err(s) if s.code() == tonic::Code::Unavailable && started.elapsed().as_secs() < 20 => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(s) => panic!("recording failed: {s:?}"),
        }
    }
}

/// The sum of a counter's series in the server's metrics.
async fn total(server: &Server, counter: &str) -> f64 {
    let text = http_get(&server.metrics).await;
    let series = text.lines().filter(|l| l.starts_with(counter));
    series
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

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
    let (direct, proxied) = (
        format!(":{}/", pg.port()),
        format!(":{}/", proxy.addr.port()),
    );
    let f = fixture();
    let timeout_ms = RECORD_TIMEOUT.as_millis().to_string();
    let server = Server::start(
        &f.path,
        &[
            "--encounter-store",
            &url.replace(&direct, &proxied),
            "--encounter-record-timeout-ms",
            &timeout_ms,
        ],
    );
    let mut port = server.client().await;
    recorded(&mut port, crossing(&f, "stall-1", 0)).await;

    proxy.pause();
    // The port's own deadline, so that a server that held the request
    // fails this test rather than hanging it.
    let mut stalled = tonic::Request::new(crossing(&f, "stall-2", 1));
    stalled.set_timeout(Duration::from_secs(15));
    let asked = Instant::now();
    let refused = port.identify(stalled).await.unwrap_err();
    let waited = asked.elapsed();
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
    assert!(
        refused
            .message()
            .contains("retry with the same encounter_id")
    );
    assert!(
        waited >= RECORD_TIMEOUT && waited < Duration::from_secs(12),
        "answered after {waited:?}, the timeout being {RECORD_TIMEOUT:?}"
    );
    let failures = total(&server, "facegate_encounter_record_failures_total").await;
    assert_eq!(failures, 1.0);

    proxy.resume();
    let retried = recorded(&mut port, crossing(&f, "stall-2", 1)).await;
    assert!(
        !retried.first_record,
        "the write under way during the stall landed once it answered"
    );
    one_record_each(&server, &f, retried.record_id).await;
    // Both crossings counted: the late one when it landed.
    assert_eq!(total(&server, "facegate_encounters_total{").await, 2.0);
}

/// The traveller's history holds each crossing once, the second being the
/// record the retry was answered with.
async fn one_record_each(server: &Server, f: &Fixture, second: u64) {
    let history = travel_history(&server.admin_addr, &f.synth.subject(11).id).await;
    let ids: Vec<_> = history.iter().map(|(_, id)| id.as_str()).collect();
    assert_eq!(ids, ["stall-1", "stall-2"], "each crossing once");
    assert_eq!(history[1].0, second);
}
