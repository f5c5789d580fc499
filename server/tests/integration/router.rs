//! `facegate route` through the real binaries: 3 shards x 2 replicas of
//! `facegate serve --shard K/3` and a router answer every Identify,
//! Verify and manifest search as one server over the whole gallery does;
//! an enrolment through the router lands on its shard's replicas and is
//! found at once; SIGKILL of one replica per shard under load fails no
//! request; a shard with every replica down is named in UNAVAILABLE, or in
//! `missing_shards` when the request accepts a partial answer, and full
//! answers come back when a replica restarts.

use crate::common::prometheus::Prometheus;
use crate::common::*;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use facegate_api::v1::gallery_admin_client::GalleryAdminClient;
use facegate_api::v1::manifests_client::ManifestsClient;
use facegate_api::v1::matcher_client::MatcherClient;
use facegate_api::v1::privacy_client::PrivacyClient;
use facegate_api::v1::{
    Candidate, Direction, EnrollRequest, EraseSubjectRequest, GetGalleryInfoRequest,
    IdentifyResponse, ManifestHeader, ManifestKind, StageManifestRequest, Template, VerifyRequest,
};
use facegate_core::shard::{shard_of, split};
use tonic::Code;
use tonic::transport::Channel;

const SHARDS: u32 = 3;

/// One replica of one shard, on ports chosen up front so that it can be
/// restarted where the router expects it.
pub(crate) struct Replica {
    shard: u32,
    gallery: PathBuf,
    port: u16,
    pub(crate) admin_port: u16,
    data: PathBuf,
    /// Flags beyond the listeners, shard and data directory (TLS).
    extra: Vec<String>,
    /// How the router reaches it: "http" or "https".
    scheme: &'static str,
    server: Option<Server>,
}

impl Replica {
    /// The `--replica` value that names it to a router.
    pub(crate) fn url(&self) -> String {
        format!("{}={}://127.0.0.1:{}", self.shard, self.scheme, self.port)
    }

    fn start(&mut self) {
        let (listen, admin) = (
            format!("127.0.0.1:{}", self.port),
            format!("127.0.0.1:{}", self.admin_port),
        );
        let shard = format!("{}/{SHARDS}", self.shard);
        let data = self.data.to_str().unwrap().to_string();
        let mut args = vec![
            "--listen",
            &listen,
            "--admin-listen",
            &admin,
            "--shard",
            &shard,
            "--engine",
            "cpu",
            "--data-dir",
            &data,
        ];
        args.extend(self.extra.iter().map(String::as_str));
        self.server = Some(Server::start(&self.gallery, &args));
    }

    fn kill(&mut self) {
        self.server = None; // Drop sends SIGKILL and reaps it.
    }
}

/// The router process and its addresses.
pub(crate) struct Routed {
    pub(crate) child: Child,
    pub(crate) addr: String,
    pub(crate) admin_addr: String,
    metrics: String,
    /// The plain-text health listener (`--health-listen`).
    health: String,
}

impl Drop for Routed {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn start_router(replicas: &[Replica], data: &Path, extra: &[&str]) -> Routed {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_facegate"));
    cmd.args([
        "route",
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
    ])
    .args([
        "--metrics-listen",
        "127.0.0.1:0",
        "--shards",
        &SHARDS.to_string(),
    ])
    .args([
        "--health-interval-ms",
        "100",
        "--data-dir",
        data.to_str().unwrap(),
        "--health-listen",
        "127.0.0.1:0",
    ]);
    for r in replicas {
        let (k, scheme) = (r.shard, r.scheme);
        cmd.arg("--replica").arg(r.url());
        cmd.arg("--replica-admin")
            .arg(format!("{k}={scheme}://127.0.0.1:{}", r.admin_port));
    }
    let mut child = cmd
        .args(extra)
        .env(
            "RUST_LOG",
            std::env::var("FACEGATE_TEST_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let (mut addr, mut admin_addr, mut metrics) = (String::new(), String::new(), String::new());
    let mut health = String::new();
    while addr.is_empty() {
        let mut line = String::new();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "the router exited before listening"
        );
        let line = line.trim();
        if let Some(h) = line.strip_prefix("facegate health on ") {
            health = h.into();
        } else if let Some(m) = line.strip_prefix("facegate metrics on ") {
            metrics = m.into();
        } else if let Some(a) = line.strip_prefix("facegate route admin listening on ") {
            admin_addr = a.into();
        } else if let Some(a) = line.strip_prefix("facegate route listening on ") {
            addr = a.into();
        }
    }
    Routed {
        child,
        addr,
        admin_addr,
        metrics,
        health,
    }
}

pub(crate) async fn channel(addr: &str) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// A gallery split into 3 shards, 2 replicas each (their own copy of the
/// shard's file and their own data directory), all started.
fn shard_fleet(f: &Fixture, dir: &Path) -> Vec<Replica> {
    shard_fleet_with(f, dir, 2, &[], "http")
}

/// As [`shard_fleet`], with `copies` replicas per shard, each started with
/// `extra` flags and reached by the router over `scheme`.
pub(crate) fn shard_fleet_with(
    f: &Fixture,
    dir: &Path,
    copies: u32,
    extra: &[String],
    scheme: &'static str,
) -> Vec<Replica> {
    let source = std::sync::Arc::new(facegate_core::Gallery::open(&f.path).unwrap());
    std::fs::create_dir_all(dir.join("shards")).unwrap();
    let map = split(source, SHARDS, &dir.join("shards"), "g", false, &mut |_| {}).unwrap();
    let mut replicas = Vec::new();
    for shard in 0..SHARDS {
        for copy in 0..copies {
            let gallery = dir.join(format!("s{shard}r{copy}.fgal"));
            std::fs::copy(
                dir.join("shards").join(&map.shards[shard as usize].file),
                &gallery,
            )
            .unwrap();
            let mut r = Replica {
                shard,
                gallery,
                port: free_port(),
                admin_port: free_port(),
                data: dir.join(format!("data-s{shard}r{copy}")),
                extra: extra.to_vec(),
                scheme,
                server: None,
            };
            r.start();
            replicas.push(r);
        }
    }
    replicas
}

/// Whether `routed`'s candidates are a best-k of the whole gallery that
/// `single` (asked for more) lists: the same scores, bit for bit, in the
/// same order, and each subject one that scores so. (Subjects of exactly
/// equal score are ordered by row in one server; the router cannot know
/// rows across shards, so among equals either order is right.)
fn same_best(routed: &[Candidate], single: &[Candidate]) -> Result<(), String> {
    let k = routed.len();
    let scores = |cs: &[Candidate]| cs.iter().map(|c| c.score.to_bits()).collect::<Vec<_>>();
    if single.len() < k || scores(routed) != scores(&single[..k]) {
        return Err(format!("scores differ:\n{routed:?}\n{single:?}"));
    }
    for c in routed {
        let tied = single
            .iter()
            .any(|s| s.subject_id == c.subject_id && s.score == c.score);
        if !tied {
            return Err(format!(
                "{} at {} is not the single server's",
                c.subject_id, c.score
            ));
        }
    }
    Ok(())
}

fn assert_same_answer(routed: &IdentifyResponse, single: &IdentifyResponse, k: usize) {
    assert_eq!(routed.candidates.len(), k.min(single.candidates.len()));
    same_best(&routed.candidates, &single.candidates).unwrap();
    assert_eq!(routed.r#match, single.r#match);
    assert_eq!(routed.threshold, single.threshold);
    assert_eq!(routed.answered_by, single.answered_by);
    assert!(routed.missing_shards.is_empty());
}

fn manifest(id: &str, subjects: Vec<String>) -> StageManifestRequest {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    StageManifestRequest {
        header: Some(ManifestHeader {
            manifest_id: id.into(),
            kind: ManifestKind::Flight.into(),
            port_id: "JFK-T4".into(),
            direction: Direction::Entry.into(),
            scheduled_unix_ms: now,
            valid_from_unix_ms: now - 3_600_000,
            valid_until_unix_ms: now + 3_600_000,
            ..Default::default()
        }),
        subject_ids: subjects,
        request_id: format!("stage-{id}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_router_over_three_shards_of_two_replicas_answers_as_one_server_does() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let replicas = shard_fleet(&f, dir.path());
    let single = Server::start(&f.path, &["--engine", "cpu"]);
    let router = start_router(&replicas, &dir.path().join("router"), &[]);
    let mut via_router = MatcherClient::new(channel(&router.addr).await);
    let mut direct = single.client().await;

    // The plain-text health listener answers for the router's Matcher.
    use tonic_health::pb::health_client::HealthClient;
    let mut probe = HealthClient::new(channel(&router.health).await);
    let ask = tonic_health::pb::HealthCheckRequest {
        service: "facegate.v1.Matcher".into(),
    };
    let status = probe.check(ask).await.unwrap().into_inner().status;
    assert_eq!(
        status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );

    let whole = direct
        .get_gallery_info(GetGalleryInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    let routed = via_router
        .get_gallery_info(GetGalleryInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!((routed.rows, routed.subjects), (whole.rows, whole.subjects));
    assert_eq!(
        (routed.dimension, &routed.model_tag),
        (whole.dimension, &whole.model_tag)
    );
    assert_eq!(routed.default_threshold, whole.default_threshold);

    // Identify: k = 1, 10 and 100 over many probes.
    let probes = probes(&f);
    for (i, probe) in probes.iter().take(40).enumerate() {
        let k = [1u32, 10, 100][i % 3];
        let r = via_router
            .identify(identify(probe.clone(), k, "r"))
            .await
            .unwrap();
        let s = direct
            .identify(identify(probe.clone(), (k + 20).min(100), "s"))
            .await;
        let (r, s) = (r.into_inner(), s.unwrap().into_inner());
        assert_same_answer(&r, &s, k as usize);
    }

    // IdentifyStream through the router answers each request as the
    // unary call does.
    let asked: Vec<_> = (0..5)
        .map(|i| identify(probes[i].clone(), 10, &format!("st-{i}")))
        .collect();
    let mut stream = via_router
        .identify_stream(tokio_stream::iter(asked.clone()))
        .await
        .unwrap()
        .into_inner();
    let mut streamed = 0;
    while let Some(answer) = stream.message().await.unwrap() {
        let i: usize = answer.request_id["st-".len()..].parse().unwrap();
        let unary = via_router.identify(asked[i].clone()).await.unwrap();
        assert_eq!(answer.candidates, unary.into_inner().candidates);
        streamed += 1;
    }
    assert_eq!(streamed, 5);

    // Verify goes to the owner's shard: the same score as one server's.
    let ids = subject_ids();
    for (probe, id) in probes.iter().zip(ids.iter()).take(12) {
        let ask = VerifyRequest {
            probe: probe.clone(),
            subject_id: id.clone(),
            model_tag: TAG.into(),
            ..Default::default()
        };
        let r = via_router.verify(ask.clone()).await.unwrap().into_inner();
        let s = direct.verify(ask).await.unwrap().into_inner();
        assert_eq!(
            (r.score.to_bits(), r.r#match),
            (s.score.to_bits(), s.r#match),
            "{id}"
        );
    }
    let unknown = VerifyRequest {
        probe: probes[0].clone(),
        subject_id: "NOBODY-0".into(),
        model_tag: TAG.into(),
        ..Default::default()
    };
    let refused = via_router.verify(unknown).await.unwrap_err();
    assert_eq!(refused.code(), Code::NotFound, "{refused:?}");

    // A manifest staged through the router is split by shard; its
    // searches equal one server's over the whole manifest.
    let travellers: Vec<String> = ids.iter().step_by(5).take(60).cloned().collect();
    let mut admin = ManifestsClient::new(channel(&router.admin_addr).await);
    let staged = admin
        .stage(manifest("BA117", travellers.clone()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(staged.travellers, 60);
    let mut single_manifests = ManifestsClient::new(channel(&single.admin_addr).await);
    single_manifests
        .stage(manifest("BA117", travellers.clone()))
        .await
        .unwrap();
    let held = admin
        .get(facegate_api::v1::GetManifestRequest {
            manifest_id: "BA117".into(),
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut sorted = travellers.clone();
    sorted.sort();
    assert_eq!(held.subject_ids, sorted);
    for (i, probe) in probes.iter().take(20).enumerate() {
        let mut ask = identify(probe.clone(), 5, "m");
        ask.manifest_id = "BA117".into();
        ask.fallback = i % 2 == 0;
        let r = via_router.identify(ask.clone()).await.unwrap().into_inner();
        ask.top_k = 25;
        let s = direct.identify(ask).await.unwrap().into_inner();
        assert_eq!(r.manifest_travellers, 60);
        assert_eq!(s.manifest_travellers, 60);
        assert_same_answer(&r, &s, 5);
    }

    // An enrolment through the router reaches both replicas of its shard
    // and is found at once.
    let newcomer = (0..)
        .map(|i| format!("NEW-{i}"))
        .find(|id| shard_of(id, SHARDS) == 2)
        .unwrap();
    let face = probes[99].clone();
    let before = shard_subjects(&replicas, 2).await;
    let mut enrol = GalleryAdminClient::new(channel(&router.admin_addr).await);
    enrol
        .enroll(EnrollRequest {
            subject_id: newcomer.clone(),
            templates: vec![Template {
                values: face.clone(),
            }],
            model_tag: TAG.into(),
            request_id: "enrol-1".into(),
        })
        .await
        .unwrap();
    let after = shard_subjects(&replicas, 2).await;
    assert_eq!(after, before.iter().map(|n| n + 1).collect::<Vec<_>>());
    let found = via_router
        .identify(identify(face, 1, "new"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(found.candidates[0].subject_id, newcomer);

    // Erasure through the router reaches the owner's replicas: the subject
    // leaves the gallery and the manifests that list it.
    let listed = travellers[0].clone();
    let mut privacy = PrivacyClient::new(channel(&router.admin_addr).await);
    for subject in [&newcomer, &listed] {
        let erased = privacy
            .erase_subject(EraseSubjectRequest {
                subject_id: subject.clone(),
                reason: "case 1".into(),
                request_id: "erase".into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert!(erased.removed_from_gallery, "{subject}");
        if *subject == listed {
            assert_eq!(erased.manifests, vec!["BA117".to_string()]);
        }
        let verify = VerifyRequest {
            probe: probes[0].clone(),
            subject_id: subject.clone(),
            model_tag: TAG.into(),
            ..Default::default()
        };
        let gone = via_router.verify(verify).await.unwrap_err();
        assert_eq!(gone.code(), Code::NotFound, "{subject}: {gone:?}");
    }

    // Recording needs an encounter store this router was not given: refused, saying so.
    let mut ask = identify(probes[0].clone(), 1, "rec");
    ask.capture = Some(facegate_api::v1::CaptureContext {
        port_id: "JFK-T4".into(),
        direction: Direction::Entry.into(),
        encounter_id: "e-1".into(),
        record: true,
        ..Default::default()
    });
    let refused = via_router.identify(ask).await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(
        refused.message().contains("has no encounter store"),
        "{refused:?}"
    );
}

/// Subjects each replica of `shard` holds, by replica.
pub(crate) async fn shard_subjects(replicas: &[Replica], shard: u32) -> Vec<u64> {
    let mut held = Vec::new();
    for r in replicas.iter().filter(|r| r.shard == shard) {
        let mut c = r.server.as_ref().unwrap().client().await;
        let info = c.get_gallery_info(GetGalleryInfoRequest {}).await.unwrap();
        held.push(info.into_inner().subjects);
    }
    held
}

/// The fixture's 100 probes.
pub(crate) fn probes(f: &Fixture) -> Vec<Vec<f32>> {
    (0..100).map(|j| f.synth.probe(j).vector.clone()).collect()
}

/// The fixture's 400 subject ids.
fn subject_ids() -> Vec<String> {
    (0..400)
        .map(facegate_core::synth::Synth::subject_id)
        .collect()
}

/// Identify through the router until `stop`: searches served, and every
/// failure's status.
async fn steady_load(addr: String, probes: Vec<Vec<f32>>, stop: Instant) -> (u64, Vec<String>) {
    let mut client = MatcherClient::new(channel(&addr).await);
    let (mut served, mut failures) = (0, Vec::new());
    let mut i = 0;
    while Instant::now() < stop {
        let probe = probes[i % probes.len()].clone();
        i += 1;
        match client.identify(identify(probe, 10, "load")).await {
            Ok(_) => served += 1,
            Err(s) => failures.push(format!("{:?}: {}", s.code(), s.message())),
        }
    }
    (served, failures)
}

#[tokio::test(flavor = "multi_thread")]
async fn killing_replicas_fails_no_request_and_a_dead_shard_is_named() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let mut replicas = shard_fleet(&f, dir.path());
    let router = start_router(&replicas, &dir.path().join("router"), &[]);
    let probes: Vec<Vec<f32>> = probes(&f).into_iter().take(30).collect();

    // SIGKILL one replica of each shard while 4 clients keep searching.
    let stop = Instant::now() + Duration::from_secs(3);
    let load: Vec<_> = (0..4)
        .map(|_| tokio::spawn(steady_load(router.addr.clone(), probes.clone(), stop)))
        .collect();
    tokio::time::sleep(Duration::from_millis(800)).await;
    for shard in 0..SHARDS {
        replicas
            .iter_mut()
            .find(|r| r.shard == shard)
            .unwrap()
            .kill();
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let mut served = 0;
    for task in load {
        let (n, failures) = task.await.unwrap();
        assert!(
            failures.is_empty(),
            "failed while replicas died: {failures:?}"
        );
        served += n;
    }
    assert!(served > 20, "only {served} searches were served");
    // The killed replicas are out of rotation, the others in.
    let metrics = http_get(&router.metrics).await;
    let up: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("facegate_router_replica_up{"))
        .map(|l| l.rsplit(' ').next().unwrap())
        .collect();
    assert_eq!(
        (up.iter().filter(|v| **v == "0").count(), up.len()),
        (3, 6),
        "{up:?}"
    );

    // Now every replica of shard 1 goes: UNAVAILABLE naming it, or a
    // partial answer that names it.
    let last = replicas
        .iter_mut()
        .find(|r| r.shard == 1 && r.server.is_some())
        .unwrap();
    last.kill();
    let mut client = MatcherClient::new(channel(&router.addr).await);
    let refused = client
        .identify(identify(probes[0].clone(), 10, "x"))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    assert!(
        refused.message().contains("shard 1 of 3"),
        "{}",
        refused.message()
    );
    let mut partial = identify(probes[0].clone(), 10, "p");
    partial.accept_partial = true;
    let answer = client.identify(partial.clone()).await.unwrap().into_inner();
    assert_eq!(answer.missing_shards, vec![1]);
    assert!(
        answer
            .candidates
            .iter()
            .all(|c| shard_of(&c.subject_id, SHARDS) != 1)
    );
    assert!(!answer.candidates.is_empty());
    let id_of_shard_1 = subject_ids()
        .into_iter()
        .find(|id| shard_of(id, SHARDS) == 1);
    let verify = VerifyRequest {
        probe: probes[0].clone(),
        subject_id: id_of_shard_1.unwrap(),
        model_tag: TAG.into(),
        ..Default::default()
    };
    let refused = client.verify(verify).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable);
    assert!(
        refused.message().contains("shard 1 of 3"),
        "{}",
        refused.message()
    );

    // A replica of shard 1 restarts where the router expects it: full
    // answers again once its health check passes.
    last_of(&mut replicas, 1).start();
    let back_by = Instant::now() + Duration::from_secs(10);
    loop {
        let answer = client.identify(partial.clone()).await.unwrap().into_inner();
        if answer.missing_shards.is_empty() {
            break;
        }
        assert!(Instant::now() < back_by, "shard 1 did not come back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    client
        .identify(identify(probes[0].clone(), 10, "full"))
        .await
        .unwrap();
    let metrics = http_get(&router.metrics).await;
    assert!(
        sample(
            &metrics,
            "facegate_router_shard_missing_total{action=\"refused\",shard=\"1\"}"
        ) >= 1.0
    );
    assert!(
        sample(
            &metrics,
            "facegate_router_shard_missing_total{action=\"partial\",shard=\"1\"}"
        ) >= 1.0
    );

    // A real Prometheus scraping the router: every panel of the router's
    // dashboard has its series, and its alert rules load and evaluate.
    let prometheus = Prometheus::start(
        dir.path(),
        router
            .metrics
            .trim_start_matches("http://")
            .trim_end_matches("/metrics"),
        &alerts_dir().join("facegate-router.rules.yml"),
    );
    prometheus.wait_for_scrapes(3).await;
    let panels = prometheus
        .check_dashboard(
            &Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../grafana/dashboards/facegate-router.json"),
        )
        .await;
    assert!(panels >= 6, "{panels} panel expressions");
    let rules = prometheus.rules().await;
    assert_eq!(rules.len(), 2);
    assert!(rules.iter().all(|r| r["health"] == "ok"), "{rules:?}");
    // The router's alert rules are valid, their promtool tests pass, and
    // every series they read is one this router exports.
    let alerts = alerts_dir();
    crate::common::prometheus::promtool(
        &alerts,
        "facegate-router.rules.yml",
        "facegate-router.rules.test.yml",
    );
    let rules = std::fs::read_to_string(alerts.join("facegate-router.rules.yml")).unwrap();
    for name in rules
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("facegate_router_"))
    {
        assert!(
            metrics.contains(&format!("{name}{{")),
            "the router exports no {name}"
        );
    }
}

/// The repository's alert rules.
fn alerts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../grafana/alerts")
}

fn last_of(replicas: &mut [Replica], shard: u32) -> &mut Replica {
    replicas
        .iter_mut()
        .rev()
        .find(|r| r.shard == shard)
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn over_mutual_tls_the_router_speaks_for_the_port_it_authenticated() {
    use crate::common::pki::{TestCa, tls_channel};
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "fleet");
    let server = ca.server("server");
    let router_cert = ca.client("router", "router-1");
    let jfk = ca.client("port", "JFK-T4");
    let path = |p: &Path| p.to_str().unwrap().to_string();
    let tls: Vec<String> = [
        "--tls-cert",
        &path(&server.cert_path),
        "--tls-key",
        &path(&server.key_path),
        "--port-client-ca",
        &path(&ca.pem_path),
        "--admin-client-ca",
        &path(&ca.pem_path),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let replicas = shard_fleet_with(&f, dir.path(), 1, &tls, "https");
    let keys = dir.path().join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    let (_, private, public) = facegate_core::audit::signing::write_new_pair(&keys).unwrap();
    // The router's own copy of the ports' CA bundle, broken below.
    let router_port_ca = dir.path().join("router-port-ca.pem");
    std::fs::copy(&ca.pem_path, &router_port_ca).unwrap();
    let mut router_flags: Vec<String> = tls.clone();
    let ca_at = 1 + router_flags
        .iter()
        .position(|f| f == "--port-client-ca")
        .unwrap();
    router_flags[ca_at] = path(&router_port_ca);
    router_flags.extend([
        "--audit-signing-key".into(),
        path(&private),
        "--audit-seal-records".into(),
        "1".into(),
        "--shard-ca".into(),
        path(&ca.pem_path),
        "--shard-cert".into(),
        path(&router_cert.cert_path),
        "--shard-key".into(),
        path(&router_cert.key_path),
    ]);
    let flags: Vec<&str> = router_flags.iter().map(String::as_str).collect();
    let router = start_router(&replicas, &dir.path().join("router"), &flags);
    let ca_pem = [ca.pem()];
    let port_channel = tls_channel(&router.addr, &ca_pem, Some(&jfk))
        .await
        .unwrap();
    let mut port = MatcherClient::new(port_channel);
    let probe = f.synth.probe(3).vector.clone();

    // The port's own name: answered, and each shard audits the port, not
    // the router.
    let mut ask = identify(probe.clone(), 5, "tls-ok");
    ask.capture = Some(facegate_api::v1::CaptureContext {
        port_id: "JFK-T4".into(),
        ..Default::default()
    });
    let answer = port.identify(ask.clone()).await.unwrap().into_inner();
    assert_eq!(answer.candidates.len(), 5);
    for r in &replicas {
        let trail = audit_text(&r.data.join("audit"));
        let line = trail
            .lines()
            .find(|l| l.contains("tls-ok"))
            .expect("the shard audited it");
        assert!(line.contains("\"principal\":\"JFK-T4\""), "{line}");
    }

    // Another port's name: refused by the router's own check.
    ask.capture.as_mut().unwrap().port_id = "LHR-T5".into();
    let refused = port.identify(ask.clone()).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);

    // A port calling a shard directly cannot borrow the router's header:
    // from a port's certificate it is ignored, so claiming LHR-T5 is
    // still refused.
    let shard_addr = format!("127.0.0.1:{}", replicas[0].port);
    let direct = tls_channel(&shard_addr, &ca_pem, Some(&jfk)).await.unwrap();
    let mut req = tonic::Request::new(ask);
    req.metadata_mut()
        .insert("facegate-on-behalf-of", "LHR-T5".parse().unwrap());
    let refused = MatcherClient::new(direct).identify(req).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    reload_names_the_routers_own_refused_file(&router, &ca, &router_port_ca).await;

    // The router's own trail, signed with its key, verifies with the public
    // key after a clean shutdown: the answer and the refusal, both sealed.
    let mut router = router;
    let stopped = Command::new("kill")
        .args(["-TERM", &router.child.id().to_string()])
        .status()
        .unwrap();
    assert!(stopped.success() && router.child.wait().unwrap().success());
    let public = facegate_core::audit::AuditVerifyingKey::load(&public).unwrap();
    let trail = dir.path().join("router").join("audit");
    let report = facegate_core::audit::verify_seals(&trail, &[public]).unwrap();
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert_eq!((report.records_verified, report.unsealed_after), (2, None));
}

/// Reload through the router re-reads the router's own files too: none
/// refused at first; then its ports' CA bundle, broken, is named (as the
/// router's) while the replicas reload without error.
async fn reload_names_the_routers_own_refused_file(
    router: &Routed,
    ca: &crate::common::pki::TestCa,
    router_port_ca: &Path,
) {
    use crate::common::pki::tls_channel;
    use facegate_api::v1::ReloadRequest;
    use facegate_api::v1::gallery_admin_client::GalleryAdminClient;
    let operator = ca.client("operator", "ops");
    let channel = tls_channel(&router.admin_addr, &[ca.pem()], Some(&operator))
        .await
        .unwrap();
    let mut admin = GalleryAdminClient::new(channel);
    let clean = admin.reload(ReloadRequest::default()).await.unwrap();
    assert!(clean.get_ref().credential_errors.is_empty(), "{clean:?}");
    std::fs::write(router_port_ca, "not a certificate").unwrap();
    let refused = admin.reload(ReloadRequest::default()).await.unwrap();
    let errors = &refused.get_ref().credential_errors;
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].starts_with("router: ") && errors[0].contains("router-port-ca.pem"),
        "{errors:?}"
    );
}

/// Every audit file under `dir`, concatenated.
fn audit_text(dir: &Path) -> String {
    let mut text = String::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().is_some_and(|e| e == "jsonl") {
            text += &std::fs::read_to_string(p).unwrap();
        }
    }
    text
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_replica_is_hedged_on_another() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let mut replicas = shard_fleet(&f, dir.path());
    // The first replica of every shard holds each search for a second
    // (it waits that long for a batch to fill).
    for shard in 0..SHARDS {
        let slow = replicas.iter_mut().find(|r| r.shard == shard).unwrap();
        slow.kill();
        slow.extra = vec!["--batch-max-wait-us".into(), "1000000".into()];
        slow.start();
    }
    let router = start_router(
        &replicas,
        &dir.path().join("router"),
        &["--hedge-after-ms", "50"],
    );
    let mut client = MatcherClient::new(channel(&router.addr).await);
    for i in 0..12 {
        let started = Instant::now();
        let ask = identify(f.synth.probe(i).vector.clone(), 5, "hedged");
        client.identify(ask).await.unwrap();
        // Unhedged, every search that went to a slow replica first would
        // take a second or more.
        let took = started.elapsed();
        assert!(
            took < Duration::from_millis(900),
            "search {i} took {took:?}"
        );
    }
    let metrics = http_get(&router.metrics).await;
    let hedges: f64 = (0..SHARDS)
        .map(|k| {
            sample(
                &metrics,
                &format!("facegate_router_hedges_total{{shard=\"{k}\"}}"),
            )
        })
        .sum();
    assert!(hedges >= 3.0, "{hedges} hedges:\n{metrics}");
}
