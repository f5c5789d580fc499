//! The real `facegate` binary on an ephemeral port, called through the
//! generated tonic client, checked against the exact engine in-process.

use crate::common::prometheus::Prometheus;
use crate::common::*;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use facegate_api::v1::gallery_admin_client::GalleryAdminClient;
use facegate_api::v1::{GetGalleryInfoRequest, IdentifyRequest, VerifyRequest};
use facegate_core::format::{BuildOptions, SliceRows, build_gallery};
use facegate_core::{ElementType, ProbeBatch, SearchEngine};
use rand::{Rng, SeedableRng};
use tonic::Code;
use tonic::transport::Channel;

#[tokio::test(flavor = "multi_thread")]
async fn identify_verify_and_info_equal_the_exact_engine() {
    let f = fixture();
    let server = Server::start(&f.path, &["--default-threshold", "0.4"]);
    let mut c = server.client().await;
    let g = f.engine.gallery();

    let info = c
        .get_gallery_info(GetGalleryInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (info.rows, info.subjects, info.dimension),
        (g.rows() as u64, g.subjects() as u64, DIM as u32)
    );
    assert_eq!(
        (info.element_type.as_str(), info.model_tag.as_str()),
        ("int8", TAG)
    );
    assert_eq!(info.generation, g.header().generation);
    assert!(info.engine.starts_with("cpu/") && info.exact_rescore);
    assert_eq!(info.default_threshold, 0.4);

    for j in 0..30 {
        let p = f.synth.probe(j);
        let resp = c
            .identify(identify(p.vector.clone(), 5, &format!("r{j}")))
            .await
            .unwrap()
            .into_inner();
        let want = &f
            .engine
            .search(&ProbeBatch::single(DIM, &p.vector).unwrap(), 5)
            .unwrap()[0];
        assert_eq!(resp.request_id, format!("r{j}"));
        assert_eq!(resp.candidates.len(), want.len());
        for (i, (got, w)) in resp.candidates.iter().zip(want).enumerate() {
            assert_eq!(got.subject_id, g.subject_id(w.subject).unwrap());
            assert_eq!(got.score, w.score);
            assert_eq!(got.rank, i as u32 + 1);
        }
        assert_eq!(resp.r#match, want[0].score >= 0.4);
        assert_eq!(resp.threshold, 0.4);
        assert_eq!(resp.gallery_generation, g.header().generation);

        // Verify against the top candidate and against the true mate.
        let claimed = resp.candidates[0].subject_id.clone();
        let v = c
            .verify(VerifyRequest {
                probe: p.vector.clone(),
                subject_id: claimed.clone(),
                threshold: Some(0.5),
                model_tag: TAG.into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let subject = g.find_subject(&claimed).unwrap().unwrap();
        let exact = f
            .engine
            .refiner()
            .score_subject(&ProbeBatch::single(DIM, &p.vector).unwrap(), 0, subject)
            .unwrap();
        assert_eq!(v.score, exact.score);
        assert_eq!(v.r#match, exact.score >= 0.5);
        assert_eq!(
            v.templates_compared as usize,
            g.subject_rows(subject).unwrap().len()
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_get_their_documented_codes() {
    let f = fixture();
    let server = Server::start(&f.path, &["--max-top-k", "50"]);
    let mut c = server.client().await;
    let good = f.synth.probe(0).vector;
    let code = |r: Result<tonic::Response<_>, tonic::Status>| -> (Code, String) {
        let s = r
            .map(|_: tonic::Response<facegate_api::v1::IdentifyResponse>| ())
            .unwrap_err();
        (s.code(), s.message().to_string())
    };
    let cases: Vec<(IdentifyRequest, Code, &str)> = vec![
        (
            identify(good[..10].to_vec(), 5, ""),
            Code::InvalidArgument,
            "expected dimension 64, got 10",
        ),
        (
            identify(vec![], 5, ""),
            Code::InvalidArgument,
            "expected dimension 64, got 0",
        ),
        (
            identify(
                {
                    let mut v = good.clone();
                    v[3] = f32::NAN;
                    v
                },
                5,
                "",
            ),
            Code::InvalidArgument,
            "element 3 is not finite",
        ),
        (
            identify(
                {
                    let mut v = good.clone();
                    v[1] = f32::INFINITY;
                    v
                },
                5,
                "",
            ),
            Code::InvalidArgument,
            "element 1 is not finite",
        ),
        (
            identify(vec![0.0; DIM], 5, ""),
            Code::InvalidArgument,
            "zero norm",
        ),
        (
            identify(good.clone(), 0, ""),
            Code::InvalidArgument,
            "top_k must be within 1..=50, got 0",
        ),
        (
            identify(good.clone(), 51, ""),
            Code::InvalidArgument,
            "top_k must be within 1..=50, got 51",
        ),
        (
            IdentifyRequest {
                threshold: Some(1.5),
                ..identify(good.clone(), 5, "")
            },
            Code::InvalidArgument,
            "threshold must be within -1..=1",
        ),
        (
            IdentifyRequest {
                model_tag: "other-model@3".into(),
                ..identify(good.clone(), 5, "")
            },
            Code::FailedPrecondition,
            "other-model@3",
        ),
        (
            IdentifyRequest {
                model_tag: String::new(),
                ..identify(good.clone(), 5, "")
            },
            Code::InvalidArgument,
            "model_tag is required",
        ),
    ];
    for (req, want_code, want_msg) in cases {
        let (got, msg) = code(c.identify(req).await);
        assert_eq!(got, want_code, "{msg}");
        assert!(msg.contains(want_msg), "{msg:?} lacks {want_msg:?}");
    }
    let verify = |subject: &str| VerifyRequest {
        probe: good.clone(),
        subject_id: subject.into(),
        model_tag: TAG.into(),
        ..Default::default()
    };
    assert_eq!(
        c.verify(verify("nobody")).await.unwrap_err().code(),
        Code::NotFound
    );
    assert_eq!(
        c.verify(verify("")).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    // A message over the size limit is refused by the transport, not decoded.
    let huge = identify(vec![0.5; 100_000], 5, "");
    let err = c.identify(huge).await.unwrap_err();
    assert_eq!(err.code(), Code::OutOfRange, "{}", err.message());
    assert!(
        err.message().contains("message length too large"),
        "{}",
        err.message()
    );
    // And the server still answers.
    assert!(c.identify(identify(good, 5, "ok")).await.is_ok());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stream_of_1000_probes_gets_1000_answers() {
    let f = fixture();
    let server = Server::start(&f.path, &[]);
    let mut c = server.client().await;
    let requests: Vec<IdentifyRequest> = (0..1000)
        .map(|j| {
            let mut r = identify(f.synth.probe(j % 100).vector, 3, &format!("s{j}"));
            if j % 97 == 0 {
                r.top_k = 0; // some bad ones: answered with an error, stream stays open
            }
            r
        })
        .collect();
    let mut inbound = c
        .identify_stream(tokio_stream::iter(requests))
        .await
        .unwrap()
        .into_inner();
    let mut seen = std::collections::HashSet::new();
    let mut errors = 0;
    while let Some(resp) = inbound.message().await.unwrap() {
        let j: usize = resp.request_id[1..].parse().unwrap();
        assert!(seen.insert(j), "duplicate answer for {j}");
        if let Some(e) = resp.error {
            assert_eq!(j % 97, 0);
            assert_eq!(e.code, Code::InvalidArgument as i32);
            errors += 1;
        } else {
            assert_eq!(resp.candidates.len(), 3);
        }
    }
    assert_eq!(seen.len(), 1000);
    assert_eq!(errors, (0..1000).filter(|j| j % 97 == 0).count());
}

#[tokio::test(flavor = "multi_thread")]
async fn ten_thousand_malformed_requests_never_break_the_server() {
    let f = fixture();
    let mut server = Server::start(&f.path, &[]);
    let mut c = server.client().await;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(99);
    let specials = [
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        0.0,
        -0.0,
        f32::MAX,
        f32::MIN_POSITIVE,
        1e-45,
    ];
    for i in 0..10_000 {
        let len = match rng.random_range(0..4) {
            0 => DIM,
            1 => rng.random_range(0..3 * DIM),
            2 => 0,
            _ => DIM + 1,
        };
        let probe: Vec<f32> = (0..len)
            .map(|_| {
                if rng.random_bool(0.05) {
                    specials[rng.random_range(0..specials.len())]
                } else {
                    rng.random_range(-1e3..1e3)
                }
            })
            .collect();
        let tag = if rng.random_bool(0.7) {
            TAG.to_string()
        } else {
            format!("m{}", rng.random::<u16>())
        };
        let threshold = rng
            .random_bool(0.3)
            .then(|| [f32::NAN, 2.0, -5.0, 0.3][rng.random_range(0..4)]);
        if i % 2 == 0 {
            let _ = c
                .identify(IdentifyRequest {
                    probe,
                    top_k: [0, 1, 5, 100, 101, u32::MAX][rng.random_range(0..6)],
                    threshold,
                    request_id: "x".repeat(rng.random_range(0..300)),
                    model_tag: tag,
                    manifest_id: String::new(),
                    fallback: false,
                    accept_partial: rng.random_bool(0.5),
                    capture: None,
                })
                .await;
        } else {
            let subject: String = (0..rng.random_range(0..40))
                .map(|_| rng.random::<char>())
                .collect();
            let _ = c
                .verify(VerifyRequest {
                    probe,
                    subject_id: subject,
                    threshold,
                    model_tag: tag,
                    ..Default::default()
                })
                .await;
        }
    }
    assert!(server.alive(), "server died");
    let ok = c
        .identify(identify(f.synth.probe(1).vector, 5, "after"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ok.candidates.len(), 5);
}

#[tokio::test(flavor = "multi_thread")]
async fn health_reports_serving_and_sigterm_stops_cleanly() {
    let f = fixture();
    let mut server = Server::start(&f.path, &[]);
    let serving = tonic_health::pb::health_check_response::ServingStatus::Serving as i32;
    assert_eq!(
        health_of(&server.addr, "facegate.v1.Matcher").await,
        serving
    );
    // The back office's listener reports its own service.
    assert_eq!(
        health_of(&server.admin_addr, "facegate.v1.GalleryAdmin").await,
        serving
    );
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(server.child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    let exit = server.child.wait().unwrap();
    assert!(exit.success(), "exit after SIGTERM: {exit:?}");
}

/// A gallery big enough that a burst of searches queues behind the 2-core scan.
fn large_gallery(dir: &Path, rows: usize, dim: usize) -> PathBuf {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let data: Vec<f32> = (0..rows * dim)
        .map(|_| rng.random_range(-1.0..1.0))
        .collect();
    let ids: Vec<String> = (0..rows).map(|i| format!("s{i}")).collect();
    let path = dir.join("large.fgal");
    let opts = BuildOptions {
        scan_type: ElementType::Int8,
        model_tag: TAG.into(),
        overwrite: false,
    };
    build_gallery(
        &path,
        &mut SliceRows::new(&data, dim, "t").unwrap(),
        &ids,
        "ids",
        &opts,
        &mut |_| {},
    )
    .unwrap();
    path
}

#[tokio::test(flavor = "multi_thread")]
async fn deadlines_give_deadline_exceeded_never_a_late_answer() {
    let dir = tempfile::tempdir().unwrap();
    let dim = 512;
    // The portable kernels keep the scans slow on every machine: the test
    // needs batches that outlast the deadline, and SIMD speed differs between
    // machines (with AVX-512 VNNI, all 96 probes over 200k rows are answered
    // within 100 ms, and no deadline is ever reached).
    let server = Server::start_with_env(
        &large_gallery(dir.path(), 200_000, dim),
        &[("FACEGATE_KERNELS", "portable")],
        &[],
    );
    let c = server.client().await;
    // On a machine busy with other tests the client's own timer can win
    // every race of a burst; up to three bursts, until the server's own
    // refusal is seen. Every answer of every burst is checked for lateness.
    let mut exceeded = 0;
    for burst in 0..3 {
        exceeded += deadline_burst(&c, dim, burst * 96).await;
        if exceeded > 0 {
            break;
        }
    }
    assert!(exceeded > 0, "the server never answered DEADLINE_EXCEEDED");
}

/// 96 concurrent Identify requests with a 100 ms deadline (ids from
/// `first`): none is answered late; how many the server refused itself.
async fn deadline_burst(
    c: &facegate_api::v1::matcher_client::MatcherClient<tonic::transport::Channel>,
    dim: usize,
    first: usize,
) -> usize {
    let timeout = std::time::Duration::from_millis(100);
    let mut tasks = Vec::new();
    for j in first..first + 96 {
        let mut c = c.clone();
        tasks.push(tokio::spawn(async move {
            let probe: Vec<f32> = (0..dim).map(|i| ((i * 31 + j) % 17) as f32 - 8.0).collect();
            let mut req = tonic::Request::new(identify(probe, 10, &format!("d{j}")));
            // The header alone, so that only the server enforces the deadline.
            req.metadata_mut()
                .insert("grpc-timeout", "100m".parse().unwrap());
            let t = std::time::Instant::now();
            let r = c.identify(req).await;
            (
                r.map(|_| ())
                    .map_err(|s| (s.code(), s.message().to_string())),
                t.elapsed(),
            )
        }));
    }
    let (mut ok, mut exceeded, mut client_timer) = (0, 0, 0);
    for t in tasks {
        let (r, elapsed) = t.await.unwrap();
        match r {
            // No answer arrives after the deadline: a late one would have been
            // cut off by the client's own timer below, so check the server
            // never sent one that the client still accepted late.
            Ok(()) => {
                ok += 1;
                assert!(
                    elapsed <= timeout + std::time::Duration::from_millis(5),
                    "late answer after {elapsed:?}"
                );
            }
            Err((Code::DeadlineExceeded, _)) => exceeded += 1,
            // Refused on arrival because it could not finish in time: also
            // never a late answer.
            Err((Code::ResourceExhausted, _)) => exceeded += 1,
            // tonic's client enforces the same header; on a saturated machine
            // its timer may fire before the server's refusal is read. That is
            // the client's deadline, never earlier than the timeout.
            Err((Code::Cancelled, m)) if m == "Timeout expired" && elapsed >= timeout => {
                client_timer += 1
            }
            Err(other) => panic!("expected DEADLINE_EXCEEDED, got {other:?} after {elapsed:?}"),
        }
    }
    println!(
        "{ok} answered in time, {exceeded} DEADLINE_EXCEEDED from the server, {client_timer} client-side timeouts"
    );
    exceeded
}

#[tokio::test(flavor = "multi_thread")]
async fn a_burst_from_many_ports_is_batched_and_the_excess_is_shed() {
    let dir = tempfile::tempdir().unwrap();
    let dim = 512;
    let server = Server::start(
        &large_gallery(dir.path(), 200_000, dim),
        &["--max-queue-wait-ms", "30", "--batch-max-size", "16"],
    );
    let c = server.client().await;
    let probe =
        |j: usize| -> Vec<f32> { (0..dim).map(|i| ((i * 31 + j) % 17) as f32 - 8.0).collect() };
    // One search first, so the dispatcher knows how long a batch takes.
    c.clone()
        .identify(identify(probe(0), 5, "warm"))
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for j in 0..240 {
        let mut c = c.clone();
        let p = probe(j);
        tasks.push(tokio::spawn(async move {
            let mut req = identify(p, 5, &format!("b{j}"));
            req.capture = Some(facegate_api::v1::CaptureContext {
                port_id: format!("port-{}", j % 8),
                ..Default::default()
            });
            let t = std::time::Instant::now();
            let r = c.identify(req).await;
            let r = r.map(|_| ()).map_err(|s| {
                // Every refusal for load tells the port how long to pause.
                if s.code() == Code::ResourceExhausted {
                    let pause = facegate_api::pushback::of(&s);
                    assert!(pause.is_some_and(|p| p.as_millis() >= 1), "{s:?}");
                }
                s.code()
            });
            (r, t.elapsed())
        }));
    }
    let (mut ok, mut shed) = (0, 0);
    for t in tasks {
        match t.await.unwrap() {
            (Ok(()), _) => ok += 1,
            (Err(Code::ResourceExhausted), _) => shed += 1,
            (Err(other), elapsed) => panic!("unexpected {other:?} after {elapsed:?}"),
        }
    }
    println!("{ok} answered, {shed} shed");
    assert!(ok > 0 && shed > 0, "{ok} answered, {shed} shed");
    let text = http_get(&server.metrics).await;
    assert_eq!(sample(&text, "facegate_shed_requests_total"), shed as f64);
    let batches = sample(&text, "facegate_batch_size_count");
    let probes = sample(&text, "facegate_batch_size_sum");
    assert_eq!(
        probes,
        (ok + 1) as f64,
        "every answered probe ran in a batch"
    );
    assert!(
        probes / batches > 2.0,
        "{probes} probes in {batches} batches: requests were not batched"
    );
    assert!(
        sample(&text, "facegate_batch_size_bucket{le=\"16\"}") == batches,
        "a batch exceeded --batch-max-size 16"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn reflection_lists_the_services_and_environment_sets_limits() {
    let f = fixture();
    let mut cmd_env = Server::start_with_env(&f.path, &[("FACEGATE_MAX_TOP_K", "7")], &[]);
    // Each listener advertises what it serves, and only that.
    let ports = services(&cmd_env.addr).await;
    let back_office = services(&cmd_env.admin_addr).await;
    for (names, want, not) in [
        (&ports, "facegate.v1.Matcher", "facegate.v1.GalleryAdmin"),
        (
            &back_office,
            "facegate.v1.GalleryAdmin",
            "facegate.v1.Matcher",
        ),
    ] {
        assert!(names.iter().any(|n| n == want), "{want} missing: {names:?}");
        assert!(
            names.iter().any(|n| n == "grpc.health.v1.Health"),
            "{names:?}"
        );
        assert!(
            !names.iter().any(|n| n == not),
            "{not} advertised: {names:?}"
        );
    }
    // The RPCs that change the gallery cannot be reached through the ports'
    // listener.
    let mut wrong = GalleryAdminClient::connect(format!("http://{}", cmd_env.addr))
        .await
        .unwrap();
    let err = wrong
        .remove(facegate_api::v1::RemoveRequest {
            subject_id: "s0".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unimplemented, "{err:?}");
    let mut c = cmd_env.client().await;
    let err = c
        .identify(identify(f.synth.probe(0).vector, 8, ""))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("1..=7"), "{}", err.message());
    assert!(
        c.identify(identify(f.synth.probe(0).vector, 7, ""))
            .await
            .is_ok()
    );
    // A flag beats the environment.
    drop(c);
    assert!(cmd_env.alive());
    let flagged = Server::start_with_env(
        &f.path,
        &[("FACEGATE_MAX_TOP_K", "7")],
        &["--max-top-k", "9"],
    );
    let mut c = flagged.client().await;
    assert!(
        c.identify(identify(f.synth.probe(0).vector, 9, ""))
            .await
            .is_ok()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_lets_in_flight_requests_finish() {
    let dir = tempfile::tempdir().unwrap();
    let dim = 512;
    let mut server = Server::start(&large_gallery(dir.path(), 200_000, dim), &[]);
    let c = server.client().await;
    let mut tasks = Vec::new();
    for j in 0..32 {
        let mut c = c.clone();
        tasks.push(tokio::spawn(async move {
            let probe: Vec<f32> = (0..dim).map(|i| ((i * 7 + j) % 13) as f32 - 6.0).collect();
            c.identify(identify(probe, 5, &format!("t{j}"))).await
        }));
    }
    // Let the burst reach the server, then ask it to stop.
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(server.child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    for t in tasks {
        let r = t.await.unwrap();
        let resp = r
            .expect("an in-flight request failed during the drain")
            .into_inner();
        assert_eq!(resp.candidates.len(), 5);
    }
    let exit = server.child.wait().unwrap();
    assert!(exit.success(), "exit after SIGTERM: {exit:?}");
}

fn skip_gpu() -> bool {
    std::env::var("FACEGATE_SKIP_GPU_TESTS").is_ok_and(|v| v == "1")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_gpu_engine_serves_the_same_answers() {
    if skip_gpu() {
        return;
    }
    let f = fixture();
    let server = Server::start(&f.path, &["--engine", "gpu", "--allow-software-gpu"]);
    let mut c = server.client().await;
    let info = c
        .get_gallery_info(GetGalleryInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(info.engine.starts_with("gpu/"), "{}", info.engine);
    assert!(info.gpu_memory_bytes > 0);
    let g = f.engine.gallery();
    for j in 0..20 {
        let p = f.synth.probe(j);
        let resp = c
            .identify(identify(p.vector.clone(), 10, "g"))
            .await
            .unwrap()
            .into_inner();
        let want = &f
            .engine
            .search(&ProbeBatch::single(DIM, &p.vector).unwrap(), 10)
            .unwrap()[0];
        let got: Vec<(&str, f32)> = resp
            .candidates
            .iter()
            .map(|c| (c.subject_id.as_str(), c.score))
            .collect();
        assert_eq!(got.len(), want.len());
        for ((id, score), w) in got.iter().zip(want) {
            assert_eq!(*id, g.subject_id(w.subject).unwrap());
            assert!((score - w.score).abs() <= 1e-4);
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn engine_selection_refuses_software_gpus_unless_allowed() {
    if skip_gpu() {
        return;
    }
    let f = fixture();
    // auto without permission: a software-only machine serves from the CPU.
    let server = Server::start(&f.path, &["--engine", "auto"]);
    let info = server
        .client()
        .await
        .get_gallery_info(GetGalleryInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    if info.engine.starts_with("cpu/") {
        // No hardware GPU here: --engine gpu must fail at start-up, saying why.
        let out = Command::new(env!("CARGO_BIN_EXE_facegate"))
            .args(serve_args(&f.path))
            .args(["--engine", "gpu"])
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("--engine gpu") && err.contains("allow them explicitly"),
            "{err}"
        );
        assert_eq!(info.gpu_memory_bytes, 0);
    } else {
        assert!(info.engine.starts_with("gpu/"));
    }
}

/// GETs a URL of the form http://HOST:PORT/PATH with a plain HTTP/1.1 request.
#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_requests_by_rpc_port_and_code() {
    let f = fixture();
    let server = Server::start(&f.path, &[]);
    let mut c = server.client().await;
    let capture = Some(facegate_api::v1::CaptureContext {
        port_id: "JFK-T4".into(),
        ..Default::default()
    });
    for j in 0..3 {
        let req = IdentifyRequest {
            capture: capture.clone(),
            ..identify(f.synth.probe(j).vector, 5, "m")
        };
        c.identify(req).await.unwrap();
    }
    let bad = IdentifyRequest {
        capture: capture.clone(),
        ..identify(vec![1.0; 3], 5, "m")
    };
    assert!(c.identify(bad).await.is_err());
    let v = VerifyRequest {
        probe: f.synth.probe(0).vector,
        subject_id: "nobody".into(),
        model_tag: TAG.into(),
        ..Default::default()
    };
    assert!(c.verify(v).await.is_err());

    let text = http_get(&server.metrics).await;
    let ok = r#"facegate_requests_total{code="OK",port="JFK-T4",rpc="Identify"}"#;
    assert_eq!(sample(&text, ok), 3.0, "{text}");
    let invalid =
        r#"facegate_requests_total{code="INVALID_ARGUMENT",port="JFK-T4",rpc="Identify"}"#;
    assert_eq!(sample(&text, invalid), 1.0);
    let not_found = r#"facegate_requests_total{code="NOT_FOUND",port="unknown",rpc="Verify"}"#;
    assert_eq!(sample(&text, not_found), 1.0);
    assert_eq!(
        sample(
            &text,
            r#"facegate_request_duration_seconds_count{rpc="Identify"}"#
        ),
        4.0
    );
    let decided = sample(
        &text,
        r#"facegate_decisions_total{decision="match",rpc="Identify"}"#,
    ) + sample(
        &text,
        r#"facegate_decisions_total{decision="no_match",rpc="Identify"}"#,
    );
    assert_eq!(decided, 3.0);
    assert_eq!(
        sample(&text, "facegate_gallery_rows "),
        f.engine.gallery().rows() as f64
    );
    assert_eq!(
        sample(
            &text,
            r#"facegate_engine_duration_seconds_count{kind="cpu"}"#
        ),
        3.0
    );
    assert_eq!(sample(&text, "facegate_batch_size_count "), 3.0);
    assert_eq!(sample(&text, "facegate_in_flight_requests "), 0.0);
    assert!(text.contains("facegate_in_flight_requests 0"));
    assert!(text.contains(r#"facegate_engine_info{engine="cpu/"#));
    // No subject id, request id or template in the metrics.
    assert!(!text.contains("S000") && !text.contains("nobody") && !text.contains("request_id"));

    // The exposition passes Prometheus's own linter.
    let mut lint = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus; scripts/test.sh installs it)");
    use std::io::Write;
    lint.stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = lint.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool: {said}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_real_prometheus_finds_every_dashboard_and_alert_series() {
    let f = fixture();
    // The audit trail is on by default (under the server's data directory);
    // the retention purge runs every second, so its gauges have values.
    // With TLS, so that the certificate panel and alert have their series.
    let dir = tempfile::tempdir().unwrap();
    let ca = crate::common::pki::TestCa::new(dir.path(), "agency");
    let cert = ca.server("server");
    let server = Server::start(
        &f.path,
        &[
            "--retention-interval-ms",
            "1000",
            "--tls-cert",
            cert.cert_path.to_str().unwrap(),
            "--tls-key",
            cert.key_path.to_str().unwrap(),
        ],
    );
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let target = server
        .metrics
        .trim_start_matches("http://")
        .trim_end_matches("/metrics")
        .to_string();
    let prometheus = Prometheus::start(
        dir.path(),
        &target,
        &repo.join("grafana/alerts/facegate.rules.yml"),
    );
    let prom = prometheus.url.clone();

    // The rule file is valid, and its unit tests (each alert fires when it
    // should and only then) pass.
    crate::common::prometheus::promtool(
        &repo.join("grafana/alerts"),
        "facegate.rules.yml",
        "facegate.rules.test.yml",
    );

    // Traffic from two ports, with matches, misses and client errors, for a
    // few scrape intervals.
    let channel = crate::common::pki::tls_channel(&server.addr, &[ca.pem()], None).await;
    let mut c = facegate_api::v1::matcher_client::MatcherClient::new(channel.unwrap());
    let started = std::time::Instant::now();
    let mut j = 0;
    while started.elapsed() < std::time::Duration::from_secs(8) {
        for port in ["JFK-T4", "CHAMPLAIN"] {
            // Ports record their crossings (the encounters panel).
            let capture = Some(facegate_api::v1::CaptureContext {
                port_id: port.into(),
                direction: facegate_api::v1::Direction::Entry.into(),
                encounter_id: format!("{port}-{j}"),
                captured_at_unix_ms: 1_780_000_000_000,
                record: true,
                ..Default::default()
            });
            let req = IdentifyRequest {
                capture: capture.clone(),
                ..identify(f.synth.probe(j % 100).vector, 5, "o")
            };
            c.identify(req).await.unwrap();
            let bad = IdentifyRequest {
                capture,
                ..identify(vec![1.0; 3], 5, "o")
            };
            let _ = c.identify(bad).await;
            j += 1;
        }
        let v = VerifyRequest {
            probe: f.synth.probe(j % 100).vector,
            subject_id: facegate_core::synth::Synth::subject_id(j % 400),
            model_tag: TAG.into(),
            ..Default::default()
        };
        c.verify(v).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(40)).await;
    }
    // Enough samples for the 1m rates.
    prometheus.wait_for_scrapes(5).await;

    // Every dashboard expression returns at least one series.
    let checked = prometheus
        .check_dashboard(&repo.join("grafana/dashboards/facegate.json"))
        .await;
    assert!(checked >= 15, "only {checked} dashboard expressions");

    // Every alert rule loaded and evaluates cleanly, every metric it names
    // exists, and nothing fires on a healthy server.
    let rules = prometheus.rules().await;
    assert_eq!(rules.len(), 12);
    for r in &rules {
        assert_eq!(r["health"], "ok", "{r}");
        let query = r["query"].as_str().unwrap();
        // The quantity each alert compares (its expression less the final
        // threshold) must exist on a live server, or the alert can never fire.
        let quantity = query
            .trim_end()
            .trim_end_matches(|c: char| c.is_ascii_digit() || c == '.')
            .trim_end()
            .trim_end_matches(['>', '<', '=', '!'])
            .trim_end();
        assert_ne!(
            quantity,
            query.trim_end(),
            "rule {} has no final threshold",
            r["name"]
        );
        assert!(
            !crate::common::prometheus::query(&prom, quantity)
                .await
                .is_empty(),
            "rule {}: {quantity} returned no series",
            r["name"]
        );
        for name in query
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|w| w.starts_with("facegate_"))
        {
            assert!(
                !crate::common::prometheus::query(&prom, name)
                    .await
                    .is_empty(),
                "rule {}: no series {name}",
                r["name"]
            );
        }
        assert_ne!(
            r["state"], "firing",
            "{} fires on a healthy server",
            r["name"]
        );
    }
}

/// The services a listener advertises through reflection.
async fn services(addr: &str) -> Vec<String> {
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut refl = ServerReflectionClient::new(channel);
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut resp = refl
        .server_reflection_info(tokio_stream::iter([req]))
        .await
        .unwrap()
        .into_inner();
    let Some(MessageResponse::ListServicesResponse(list)) =
        resp.message().await.unwrap().unwrap().message_response
    else {
        panic!("no service list")
    };
    list.service.into_iter().map(|s| s.name).collect()
}

/// What the health check of `service` answers on the listener at `addr`.
async fn health_of(addr: &str, service: &str) -> i32 {
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    tonic_health::pb::health_client::HealthClient::new(channel)
        .check(tonic_health::pb::HealthCheckRequest {
            service: service.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status
}
