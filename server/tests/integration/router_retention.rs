//! The router's own audit trail under the retention policy: it names the
//! subjects every routed answer disclosed, so its old files expire as the
//! shards' do. A router in this process, on a clock the test moves, over
//! three real shard servers.

use crate::common::*;
use crate::router::{channel, probes, shard_fleet_with};

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use facegate_api::v1::matcher_client::MatcherClient;
use facegate_core::clock::{ManualClock, UnixMillis};
use facegate_server::router::settings::RouteSettings;

#[derive(Parser)]
struct RouteCommand {
    #[command(flatten)]
    settings: RouteSettings,
}

const DAY_MS: i64 = 24 * 3_600_000;

fn trail_files(audit: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(audit)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".jsonl"))
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread")]
async fn the_routers_day_old_audit_files_expire_once_past_the_policy() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let replicas = shard_fleet_with(&f, dir.path(), 1, &[], "http");
    let data = dir.path().join("router");
    let (port, admin) = (free_port(), free_port());
    let mut args: Vec<String> = [
        "facegate-route",
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--admin-listen",
        &format!("127.0.0.1:{admin}"),
        "--metrics-listen",
        "127.0.0.1:0",
        "--health-listen",
        "127.0.0.1:0",
        "--shards",
        "3",
        "--data-dir",
        data.to_str().unwrap(),
        "--retention-interval-ms",
        "20",
    ]
    .map(String::from)
    .to_vec();
    for r in &replicas {
        args.push("--replica".into());
        args.push(r.url());
    }
    let settings = RouteCommand::try_parse_from(args).unwrap().settings;
    let start = UnixMillis(1_800_000_000_000);
    let clock = Arc::new(ManualClock::new(start));
    let task = tokio::spawn(facegate_server::router::run(settings, clock.clone()));
    let addr = format!("127.0.0.1:{port}");
    let ready_by = Instant::now() + Duration::from_secs(15);
    while tokio::net::TcpStream::connect(&addr).await.is_err() {
        assert!(!task.is_finished(), "the router stopped");
        assert!(Instant::now() < ready_by, "the router never listened");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut matcher = MatcherClient::new(channel(&addr).await);
    let probe = probes(&f).remove(0);
    let audit = data.join("audit");

    matcher
        .identify(identify(probe.clone(), 5, "day-1"))
        .await
        .unwrap();
    assert_eq!(trail_files(&audit).len(), 1);
    // A day on, the next answer's record opens a new file.
    clock.set(UnixMillis(start.0 + DAY_MS + 1));
    matcher.identify(identify(probe, 5, "day-2")).await.unwrap();
    let before = trail_files(&audit);
    assert_eq!(before.len(), 2, "{before:?}");

    // Ten years on, past any default period plus the audit period: the
    // first day's file goes at the next expiry; the newest record's stays.
    clock.set(UnixMillis(start.0 + 3_653 * DAY_MS));
    let gone_by = Instant::now() + Duration::from_secs(10);
    while trail_files(&audit).len() > 1 {
        assert!(!task.is_finished(), "the router stopped");
        assert!(Instant::now() < gone_by, "the old file stayed: {before:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(trail_files(&audit), before[1..]);
    let summary = facegate_core::audit::verify_dir(&audit).unwrap();
    assert_eq!((summary.records, summary.last_seq), (1, 2));
    task.abort();
}
