//! `facegate-load`'s library against a real facegate server on a small
//! synthetic gallery: every request is answered and counted, the figures are
//! ordered, and the outputs (JSON, markdown, SVG) are written; a manifest is
//! staged and searched by scoped requests, alone and beside national load,
//! each class counted apart.
//!
//! The server runs in this test process: `facegate_server::serve::run`, the
//! function `facegate serve` itself runs (Matcher, health, reflection,
//! metrics listener), on a free port. Spawning the `facegate` binary is not
//! robust from this package: `CARGO_BIN_EXE_*` only names binaries of the
//! test's own package, and a `target/<profile>/facegate` found next to the
//! test executable may be missing or older than the server source (cargo
//! does not build it for this crate's tests). In process, the server is
//! always built from the current source; and calling the entry point rather
//! than assembling the service from its parts keeps this test independent of
//! the server's internals.

use std::path::Path;
use std::time::{Duration, Instant};

use facegate_benchmarks::load::{
    Bound, Class, Load, ManifestPlan, National, Probes, RunStats, ScopedRequests, Spread,
    StepOptions, Target, Travellers, markdown, run_scoped_step, run_step, stage_manifest,
    write_svg,
};
use facegate_core::ElementType;
use facegate_core::format::{BuildOptions, build_gallery};
use facegate_core::synth::{Synth, SynthConfig};
use facegate_server::config::{EngineChoice, Settings};

const DIM: usize = 64;
const SUBJECTS: usize = 300;
const SEED: u64 = 5;

fn population(probes: usize) -> SynthConfig {
    SynthConfig {
        subjects: SUBJECTS,
        probes,
        dim: DIM,
        mated_fraction: 0.8,
        seed: SEED,
    }
}

fn build_small_gallery(path: &Path) {
    let synth = Synth::new(population(1)).unwrap();
    let ids = synth.gallery_ids();
    build_gallery(
        path,
        &mut synth.gallery_rows(),
        &ids,
        "synthetic ids",
        &BuildOptions {
            scan_type: ElementType::Int8,
            model_tag: "load-test@1".into(),
            overwrite: false,
        },
        &mut |_| {},
    )
    .unwrap();
}

/// The facegate server, as `facegate serve` runs it, on 127.0.0.1; stops
/// when dropped.
struct InProcessServer {
    addr: String,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Drop for InProcessServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A port free a moment ago (`serve::run` binds the address it is given).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts the server as [`serve_with_admin`] does, for tests that do not
/// use the back office.
async fn serve(gallery: &Path, data_dir: &Path) -> (InProcessServer, Target) {
    let (server, target, _admin) = serve_with_admin(gallery, data_dir).await;
    (server, target)
}

fn options(load: Load, bound: Bound, label: &str) -> StepOptions {
    StepOptions {
        load,
        bound,
        warmup: Duration::ZERO,
        deadline: Duration::from_secs(5),
        top_k: 5,
        label: label.into(),
        seed: 3,
        progress: false,
        record_encounters: false,
    }
}

fn check_consistent(s: &RunStats) {
    assert_eq!(s.ok, s.sent, "every request answered: {s:?}");
    assert_eq!(
        (s.shed, s.deadline, s.error_count(), s.dropped),
        (0, 0, 0, 0)
    );
    let l = s.latency_ms.expect("OK latencies");
    assert!(
        0.0 < l.p50 && l.p50 <= l.p90 && l.p90 <= l.p99 && l.p99 <= l.p999 && l.p999 <= l.max,
        "{l:?}"
    );
    assert!(s.throughput > 0.0 && s.measured_s > 0.0, "{s:?}");
    let json = serde_json::to_string(s).unwrap();
    assert_eq!(&serde_json::from_str::<RunStats>(&json).unwrap(), s);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_and_open_loops_count_every_answer_and_write_reports() {
    let dir = tempfile::tempdir().unwrap();
    let gallery = dir.path().join("g.fgal");
    build_small_gallery(&gallery);
    let data = tempfile::tempdir().unwrap();
    let (_server, target) = serve(&gallery, data.path()).await;
    assert_eq!(target.info().model_tag, "load-test@1");
    let probes = Probes::synthesise(population(40)).unwrap();

    let closed = run_step(
        &target,
        &probes,
        &options(Load::Closed { ports: 2 }, Bound::Requests(50), "closed"),
    )
    .await
    .unwrap();
    assert_eq!(closed.sent, 50);
    assert_eq!((closed.mode.as_str(), closed.ports), ("closed", 2));
    check_consistent(&closed);

    let open_load = Load::Open {
        rate: 50.0,
        ports: 5,
        max_outstanding: 1000,
        spread: Spread::Random,
    };
    let open = run_step(
        &target,
        &probes,
        &options(open_load, Bound::Duration(Duration::from_secs(1)), "open"),
    )
    .await
    .unwrap();
    // Poisson arrivals at 50/s for 1 s: 50 expected, all but never outside 20..=90.
    assert!((20..=90).contains(&open.sent), "{open:?}");
    assert_eq!(open.offered_rate, Some(50.0));
    assert_eq!(open.measured_s, 1.0);
    check_consistent(&open);

    let runs = vec![closed, open];
    let json = serde_json::to_string_pretty(&runs).unwrap();
    assert_eq!(serde_json::from_str::<Vec<RunStats>>(&json).unwrap(), runs);
    let table = markdown(&runs);
    assert_eq!(table.lines().count(), 4, "{table}");
    assert!(
        table.contains("| closed | national | closed | 2 | closed |"),
        "{table}"
    );

    let svg = dir.path().join("sweep.svg");
    write_svg(&svg, &runs, "load test").unwrap();
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(text.contains("<svg"), "{text}");
    assert!(text.contains("offered load"), "axis labels are rendered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadline_shorter_than_any_search_is_counted_as_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let gallery = dir.path().join("g.fgal");
    build_small_gallery(&gallery);
    let data = tempfile::tempdir().unwrap();
    let (_server, target) = serve(&gallery, data.path()).await;
    let probes = Probes::synthesise(population(4)).unwrap();
    let mut opts = options(Load::Closed { ports: 1 }, Bound::Requests(20), "tight");
    opts.deadline = Duration::from_micros(1);
    let s = run_step(&target, &probes, &opts).await.unwrap();
    assert_eq!(s.sent, 20);
    assert_eq!(s.deadline, 20, "{s:?}");
    assert_eq!((s.ok, s.latency_ms), (0, None));
    assert_eq!(s.deadline_fraction, 1.0);
}

/// Starts `serve::run` (what `facegate serve` runs) on `gallery` with the CPU
/// engine and waits until it answers; returns the back office's URL (for
/// staging manifests) beside the server and a target. Should another process take the free
/// ports between the probe and the bind, the start is retried on another.
async fn serve_with_admin(gallery: &Path, data_dir: &Path) -> (InProcessServer, Target, String) {
    for _attempt in 0..5 {
        let (port, admin) = (free_port(), free_port());
        let settings = Settings {
            gallery: Some(gallery.to_path_buf()),
            listen: ([127, 0, 0, 1], port).into(),
            metrics_listen: ([127, 0, 0, 1], 0).into(),
            admin_listen: ([127, 0, 0, 1], admin).into(),
            engine: EngineChoice::Cpu,
            data_dir: data_dir.to_path_buf(),
            ..Settings::defaults()
        }
        .resolve()
        .unwrap();
        let server = InProcessServer {
            addr: format!("http://127.0.0.1:{port}"),
            task: tokio::spawn(facegate_server::serve::run(
                settings,
                std::sync::Arc::new(facegate_core::clock::SystemClock),
            )),
        };
        let ready_by = Instant::now() + Duration::from_secs(15);
        while !server.task.is_finished() && Instant::now() < ready_by {
            if let Ok(t) = Target::connect(&server.addr, 2, None).await {
                return (server, t, format!("http://127.0.0.1:{admin}"));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(
            server.task.is_finished(),
            "the server did not answer within 15 s"
        );
        let mut server = server;
        eprintln!(
            "server start failed, retrying: {:?}",
            (&mut server.task).await
        );
    }
    panic!("the server could not start");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scoped_requests_are_staged_sent_and_counted_apart_from_national_load() {
    let dir = tempfile::tempdir().unwrap();
    let gallery = dir.path().join("g.fgal");
    build_small_gallery(&gallery);
    let data = tempfile::tempdir().unwrap();
    let (_server, target, admin) = serve_with_admin(&gallery, data.path()).await;

    let travellers = Travellers::synthesise(&population(1), 20).unwrap();
    let plan = ManifestPlan {
        id: "load-test".into(),
        port_id: "gate-7".into(),
        valid_for: Duration::from_secs(600),
        subject_ids: travellers.subject_ids.clone(),
    };
    let staged = stage_manifest(&admin, &plan).await.unwrap();
    assert_eq!((staged.travellers, staged.newly_staged), (20, true));
    // A second run against the same server finds it staged, and uses it.
    let again = stage_manifest(&admin, &plan).await.unwrap();
    assert_eq!((again.travellers, again.newly_staged), (20, false));
    let other = ManifestPlan {
        subject_ids: travellers.subject_ids[..10].to_vec(),
        ..plan.clone()
    };
    assert!(stage_manifest(&admin, &other).await.is_err());

    let scoped = ScopedRequests {
        manifest_id: plan.id.clone(),
        port_id: plan.port_id.clone(),
        fallback: false,
        probes: travellers.captures.clone(),
    };
    let scoped_load = Load::Open {
        rate: 40.0,
        ports: 1,
        max_outstanding: 1000,
        spread: Spread::RoundRobin,
    };
    let opts = options(
        scoped_load,
        Bound::Duration(Duration::from_secs(1)),
        "scoped",
    );
    let alone = run_scoped_step(&target, &scoped, &opts, None)
        .await
        .unwrap();
    assert_eq!(alone.national, None);
    assert_eq!(alone.scoped.class, Class::Scoped);
    check_consistent(&alone.scoped);

    let national_probes = Probes::synthesise(population(40)).unwrap();
    let national = National {
        target: &target,
        probes: &national_probes,
        load: Load::Closed { ports: 3 },
    };
    let beside = run_scoped_step(&target, &scoped, &opts, Some(national))
        .await
        .unwrap();
    let runs = beside.into_runs();
    assert_eq!(runs.len(), 2);
    assert_eq!(
        (runs[0].class, runs[0].mode.as_str()),
        (Class::National, "closed")
    );
    assert_eq!(
        (runs[1].class, runs[1].offered_rate),
        (Class::Scoped, Some(40.0))
    );
    runs.iter().for_each(check_consistent);
    let table = markdown(&runs);
    assert!(
        table.contains("| scoped | scoped | open | 1 | 40 |"),
        "{table}"
    );

    // A manifest the server does not know: every scoped request fails, and
    // none is counted as answered.
    let unknown = ScopedRequests {
        manifest_id: "never-staged".into(),
        ..scoped
    };
    let s = run_scoped_step(&target, &unknown, &opts, None)
        .await
        .unwrap();
    assert_eq!(s.scoped.ok, 0);
    assert_eq!(s.scoped.errors.get("NOT_FOUND"), Some(&s.scoped.sent));
}
