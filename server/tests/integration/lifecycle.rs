//! Online gallery changes through the real server: GalleryAdmin Enroll and
//! Remove, what Identify and Verify see afterwards, durability across
//! restarts and SIGKILL, and a change log on a full disk.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::*;
use facegate_api::v1::gallery_admin_client::GalleryAdminClient;
use facegate_api::v1::matcher_client::MatcherClient;
use facegate_api::v1::{
    EnrollRequest, GetGalleryInfoRequest, ReloadRequest, RemoveRequest, Template, VerifyRequest,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tonic::Code;
use tonic::transport::Channel;

/// A random template, the same for the same seed.
fn template(seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..DIM).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

fn enroll(id: &str, templates: Vec<Vec<f32>>) -> EnrollRequest {
    EnrollRequest {
        subject_id: id.into(),
        templates: templates
            .into_iter()
            .map(|values| Template { values })
            .collect(),
        model_tag: TAG.into(),
        request_id: format!("enroll-{id}"),
    }
}

fn remove(id: &str) -> RemoveRequest {
    RemoveRequest {
        subject_id: id.into(),
        request_id: format!("remove-{id}"),
    }
}

/// Best score of `probe` over `id`'s templates and how many it has.
async fn verify(
    c: &mut MatcherClient<Channel>,
    id: &str,
    probe: &[f32],
) -> Result<(f32, u32), Code> {
    c.verify(VerifyRequest {
        probe: probe.to_vec(),
        subject_id: id.into(),
        model_tag: TAG.into(),
        ..Default::default()
    })
    .await
    .map(|r| {
        let r = r.into_inner();
        (r.score, r.templates_compared)
    })
    .map_err(|s| s.code())
}

async fn top_ids(c: &mut MatcherClient<Channel>, probe: &[f32], k: u32) -> Vec<(String, f32)> {
    c.identify(identify(probe.to_vec(), k, "q"))
        .await
        .unwrap()
        .into_inner()
        .candidates
        .into_iter()
        .map(|c| (c.subject_id, c.score))
        .collect()
}

async fn subjects(c: &mut MatcherClient<Channel>) -> u64 {
    c.get_gallery_info(GetGalleryInfoRequest {})
        .await
        .unwrap()
        .into_inner()
        .subjects
}

#[tokio::test(flavor = "multi_thread")]
async fn enrolments_and_removals_are_searchable_at_once_and_survive_a_restart() {
    let f = fixture();
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().to_str().unwrap();
    let base_subjects = f.engine.gallery().subjects() as u64;
    let ids = f.synth.gallery_ids();
    let (new_a, new_b, fresh) = (template(1), template(2), template(3));
    let probe = f.synth.probe(0).vector;

    let mut server = Server::start(&f.path, &["--data-dir", data_dir]);
    let (mut admin, mut c) = (server.admin().await, server.client().await);
    // A new subject with two templates: found by either, at once.
    let r = admin
        .enroll(enroll("new-subject", vec![new_a.clone(), new_b.clone()]))
        .await
        .unwrap()
        .into_inner();
    assert!(!r.replaced && r.templates == 2 && r.sequence >= 1);
    assert_eq!(r.gallery_generation, f.engine.gallery().header().generation);
    for t in [&new_a, &new_b] {
        let top = top_ids(&mut c, t, 3).await;
        assert_eq!(top[0].0, "new-subject");
        assert!(top[0].1 > 0.999, "{top:?}");
    }
    assert_eq!(verify(&mut c, "new-subject", &new_b).await.unwrap().1, 2);
    // Re-enrolling a base subject replaces its record.
    let old = &ids[5];
    let r = admin
        .enroll(enroll(old, vec![fresh.clone()]))
        .await
        .unwrap()
        .into_inner();
    assert!(r.replaced);
    assert_eq!(top_ids(&mut c, &fresh, 1).await[0].0, *old);
    let (score, n) = verify(&mut c, old, &fresh).await.unwrap();
    assert!(score > 0.999 && n == 1, "{score} {n}");
    // Removing the best match of a probe: never returned again.
    let victim = top_ids(&mut c, &probe, 1).await[0].0.clone();
    admin.remove(remove(&victim)).await.unwrap();
    assert!(
        top_ids(&mut c, &probe, 100)
            .await
            .iter()
            .all(|(id, _)| *id != victim)
    );
    assert_eq!(verify(&mut c, &victim, &probe).await, Err(Code::NotFound));
    let err = admin.remove(remove(&victim)).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    assert_eq!(subjects(&mut c).await, base_subjects);

    // Bad changes: their documented codes, and nothing changes.
    let bad = [
        (
            enroll("x", vec![vec![0.5; DIM - 1]]),
            Code::InvalidArgument,
            "template 0: expected dimension 64",
        ),
        (
            enroll("x", vec![vec![f32::NAN; DIM]]),
            Code::InvalidArgument,
            "not finite",
        ),
        (
            enroll("x", vec![vec![0.0; DIM]]),
            Code::InvalidArgument,
            "zero norm",
        ),
        (
            enroll("x", vec![]),
            Code::InvalidArgument,
            "at least one template",
        ),
        (
            enroll("x", vec![new_a.clone(); 65]),
            Code::InvalidArgument,
            "at most 64",
        ),
        (
            enroll("", vec![new_a.clone()]),
            Code::InvalidArgument,
            "subject_id",
        ),
        (
            EnrollRequest {
                model_tag: "other@2".into(),
                ..enroll("x", vec![new_a.clone()])
            },
            Code::FailedPrecondition,
            "other@2",
        ),
        (
            EnrollRequest {
                model_tag: String::new(),
                ..enroll("x", vec![new_a.clone()])
            },
            Code::InvalidArgument,
            "model_tag is required",
        ),
    ];
    for (req, code, text) in bad {
        let err = admin.enroll(req).await.unwrap_err();
        assert_eq!(err.code(), code, "{err:?}");
        assert!(err.message().contains(text), "{text:?} not in {err:?}");
    }
    let err = admin.remove(remove("nobody")).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert_eq!(verify(&mut c, "x", &new_a).await, Err(Code::NotFound));
    assert_eq!(subjects(&mut c).await, base_subjects);
    let text = http_get(&server.metrics).await;
    assert_eq!(
        sample(
            &text,
            r#"facegate_gallery_changes_total{kind="enroll",outcome="ok"}"#
        ),
        2.0
    );
    assert_eq!(
        sample(
            &text,
            r#"facegate_gallery_changes_total{kind="remove",outcome="not_found"}"#
        ),
        2.0
    );
    assert_eq!(sample(&text, "facegate_gallery_delta_rows"), 3.0);
    assert_eq!(sample(&text, "facegate_gallery_masked_subjects"), 2.0);

    // A restart replays the log: the same answers.
    let before = top_ids(&mut c, &probe, 20).await;
    drop((admin, c));
    assert!(server.alive());
    drop(server);
    server = Server::start(&f.path, &["--data-dir", data_dir]);
    let mut c = server.client().await;
    assert_eq!(top_ids(&mut c, &probe, 20).await, before);
    assert_eq!(top_ids(&mut c, &new_b, 1).await[0].0, "new-subject");
    assert_eq!(verify(&mut c, &victim, &probe).await, Err(Code::NotFound));
    assert_eq!(subjects(&mut c).await, base_subjects);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_log_on_a_full_disk_refuses_the_change_and_loses_nothing() {
    let f = fixture();
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().to_str().unwrap();
    // 64 blocks: 32 KiB (dash) or 64 KiB (bash) of log. The limit holds for
    // every file, so the audit trail is off here: its own full disk is
    // tested in tests/audit.rs.
    let server = Server::start_with_limit(
        &f.path,
        &[],
        &["--data-dir", data_dir, "--no-audit"],
        Some(64),
    );
    let (mut admin, mut c) = (server.admin().await, server.client().await);
    let mut acked = Vec::new();
    let failed = loop {
        let i = acked.len() as u64;
        let id = format!("s{i}");
        match admin.enroll(enroll(&id, vec![template(100 + i)])).await {
            Ok(_) => acked.push(id),
            Err(e) => {
                assert_eq!(e.code(), Code::Unavailable, "{e:?}");
                assert!(e.message().contains("not applied"), "{e:?}");
                break id;
            }
        }
        assert!(acked.len() < 2000, "the file size limit never hit");
    };
    assert!(acked.len() > 10, "{} changes before the limit", acked.len());
    let check = |c: &mut MatcherClient<Channel>, acked: Vec<String>, failed: String| {
        let mut c = c.clone();
        async move {
            for (i, id) in acked.iter().enumerate() {
                let (score, _) = verify(&mut c, id, &template(100 + i as u64)).await.unwrap();
                assert!(score > 0.999);
            }
            assert_eq!(
                verify(&mut c, &failed, &template(100 + acked.len() as u64)).await,
                Err(Code::NotFound)
            );
        }
    };
    check(&mut c, acked.clone(), failed.clone()).await;
    let text = http_get(&server.metrics).await;
    assert!(
        sample(
            &text,
            r#"facegate_gallery_changes_total{kind="enroll",outcome="log_error"}"#
        ) >= 1.0
    );
    drop((admin, c, server));
    // Restarted with room: every acknowledged change, not the refused one,
    // and changes are taken again.
    let server = Server::start(&f.path, &["--data-dir", data_dir]);
    let (mut admin, mut c) = (server.admin().await, server.client().await);
    check(&mut c, acked.clone(), failed.clone()).await;
    admin
        .enroll(enroll(&failed, vec![template(7)]))
        .await
        .unwrap();
    assert!(verify(&mut c, &failed, &template(7)).await.unwrap().0 > 0.999);
}

/// What a subject holds: nothing, or the templates of one version.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Held {
    Absent,
    Version(u64),
}

/// Templates of version `v` of subject `s`: 1 to 3, all distinct.
fn version_templates(s: usize, v: u64) -> Vec<Vec<f32>> {
    (0..1 + v % 3)
        .map(|t| template(1_000_000 + s as u64 * 10_000 + v * 10 + t))
        .collect()
}

#[derive(Debug, Clone, Copy)]
struct Subject {
    acked: Held,
    /// A change sent whose answer never came (the server was killed).
    pending: Option<Held>,
}

/// What the server holds for subject `s`, among the candidate states.
async fn observe(c: &mut MatcherClient<Channel>, s: usize, candidates: &[Held]) -> Held {
    let id = format!("crash-{s}");
    for h in candidates {
        let Held::Version(v) = *h else { continue };
        let ts = version_templates(s, v);
        if let Ok((score, n)) = verify(c, &id, &ts[0]).await
            && score > 0.999
        {
            assert_eq!(n as usize, ts.len(), "subject {s} version {v} half applied");
            return *h;
        }
    }
    assert_eq!(
        verify(c, &id, &template(5)).await,
        Err(Code::NotFound),
        "subject {s}: none of {candidates:?}"
    );
    Held::Absent
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_during_concurrent_changes_loses_no_acknowledged_change_50_times() {
    const WRITERS: usize = 4;
    const PER_WRITER: usize = 6;
    let f = fixture();
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().to_str().unwrap();
    let subjects_n = WRITERS * PER_WRITER;
    let state = Arc::new(Mutex::new(vec![
        Subject {
            acked: Held::Absent,
            pending: None
        };
        subjects_n
    ]));
    let mut rng = ChaCha8Rng::seed_from_u64(77);
    let mut version = 0u64;
    let mut acked_total = 0usize;
    let (mut unanswered, mut unanswered_applied) = (0usize, 0usize);
    for round in 0..50 {
        let mut server = Server::start(&f.path, &["--data-dir", data_dir]);
        let mut c = server.client().await;
        // After the restart: each subject holds its acknowledged state, or
        // the one its unanswered change would have made; nothing else.
        {
            let snapshot = state.lock().unwrap().clone();
            for (s, subj) in snapshot.iter().enumerate() {
                let mut cands = vec![subj.acked];
                cands.extend(subj.pending);
                let seen = observe(&mut c, s, &cands).await;
                if let Some(p) = subj.pending {
                    unanswered += 1;
                    unanswered_applied += usize::from(seen == p && p != subj.acked);
                }
                state.lock().unwrap()[s] = Subject {
                    acked: seen,
                    pending: None,
                };
            }
            let live = state
                .lock()
                .unwrap()
                .iter()
                .filter(|s| s.acked != Held::Absent)
                .count();
            assert_eq!(
                subjects(&mut c).await,
                f.engine.gallery().subjects() as u64 + live as u64,
                "round {round}"
            );
        }
        // Concurrent writers, each owning its subjects, until the kill.
        let mut tasks = Vec::new();
        for w in 0..WRITERS {
            let admin: GalleryAdminClient<Channel> = server.admin().await;
            let state = state.clone();
            version += 1_000;
            let (first_version, seed) = (version, rng.random::<u64>());
            tasks.push(tokio::spawn(async move {
                let mut admin = admin;
                let mut rng = ChaCha8Rng::seed_from_u64(seed);
                let mut acked = 0usize;
                for i in 0u64.. {
                    let s = w * PER_WRITER + rng.random_range(0..PER_WRITER);
                    let id = format!("crash-{s}");
                    let current = state.lock().unwrap()[s].acked;
                    let next = if current != Held::Absent && rng.random_bool(0.3) {
                        Held::Absent
                    } else {
                        Held::Version(first_version + i)
                    };
                    state.lock().unwrap()[s].pending = Some(next);
                    let result = match next {
                        Held::Absent => admin.remove(remove(&id)).await.map(|_| ()),
                        Held::Version(v) => admin
                            .enroll(enroll(&id, version_templates(s, v)))
                            .await
                            .map(|_| ()),
                    };
                    match result {
                        Ok(()) => {
                            state.lock().unwrap()[s] = Subject {
                                acked: next,
                                pending: None,
                            };
                            acked += 1;
                        }
                        // Killed: the outcome of this change is unknown.
                        Err(_) => return acked,
                    }
                }
                acked
            }));
        }
        tokio::time::sleep(Duration::from_millis(rng.random_range(5..150))).await;
        server.child.kill().unwrap();
        server.child.wait().unwrap();
        for t in tasks {
            acked_total += t.await.unwrap();
        }
        drop(server);
    }
    eprintln!(
        "{acked_total} changes acknowledged; of {unanswered} unanswered at a kill, {unanswered_applied} had become durable"
    );
    assert!(
        acked_total > 200,
        "only {acked_total} changes acknowledged in 50 rounds"
    );
    // The last round's outcome, checked once more.
    let server = Server::start(&f.path, &["--data-dir", data_dir]);
    let mut c = server.client().await;
    let snapshot = state.lock().unwrap().clone();
    for (s, subj) in snapshot.iter().enumerate() {
        let mut cands = vec![subj.acked];
        cands.extend(subj.pending);
        observe(&mut c, s, &cands).await;
    }
}

/// Folds the server's change log into a new generation written over the
/// served gallery file, as `facegate-index compact --force` does.
fn compact_in_place(gallery: &std::path::Path, data_dir: &std::path::Path) -> u64 {
    use facegate_core::wal::ChangeLog;
    let base = std::sync::Arc::new(facegate_core::Gallery::open(gallery).unwrap());
    let log = facegate_server::changes::log_path(data_dir, base.header().generation);
    let replay = ChangeLog::read(&log, base.dim(), base.header().generation).unwrap();
    facegate_core::live::compact(base, &replay.changes, gallery, true, &mut |_| {})
        .unwrap()
        .generation
}

async fn info_generation(c: &mut MatcherClient<Channel>) -> u64 {
    c.get_gallery_info(GetGalleryInfoRequest {})
        .await
        .unwrap()
        .into_inner()
        .generation
}

async fn assert_present(
    c: &mut MatcherClient<Channel>,
    present: &[(String, u64)],
    gone: &[String],
) {
    for (id, seed) in present {
        let (score, _) = verify(c, id, &template(*seed))
            .await
            .unwrap_or_else(|e| panic!("{id}: {e:?}"));
        assert!(score > 0.999, "{id}: {score}");
        assert_eq!(top_ids(c, &template(*seed), 1).await[0].0, *id);
    }
    for id in gone {
        assert_eq!(
            verify(c, id, &template(1)).await,
            Err(Code::NotFound),
            "{id}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn reload_swaps_generations_under_load_and_no_request_fails() {
    let f = fixture();
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().to_str().unwrap();
    let mut ids = f.synth.gallery_ids();
    ids.sort();
    ids.dedup();
    let original = f.path.with_extension("orig");
    std::fs::copy(&f.path, &original).unwrap();
    let mut server = Server::start(&f.path, &["--data-dir", data_dir]);
    let (mut admin, mut c) = (server.admin().await, server.client().await);
    let gen0 = info_generation(&mut c).await;
    let mut present: Vec<(String, u64)> = Vec::new();
    let mut gone: Vec<String> = Vec::new();
    for i in 0..10u64 {
        admin
            .enroll(enroll(&format!("a{i}"), vec![template(200 + i)]))
            .await
            .unwrap();
        present.push((format!("a{i}"), 200 + i));
    }
    for id in &ids[..3] {
        admin.remove(remove(id)).await.unwrap();
        gone.push(id.clone());
    }

    // Steady Identify load from four ports until told to stop.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut load = Vec::new();
    for port in 0..4 {
        let (mut c, stop) = (server.client().await, stop.clone());
        let probes: Vec<Vec<f32>> = (0..20)
            .map(|j| f.synth.probe(port * 20 + j).vector)
            .collect();
        load.push(tokio::spawn(async move {
            let (mut ok, mut failed) = (0u64, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let p = probes[ok as usize % probes.len()].clone();
                match c.identify(identify(p, 5, "load")).await {
                    Ok(_) => ok += 1,
                    Err(e) => failed.push(e),
                }
            }
            (ok, failed)
        }));
    }

    // Compact while changes keep coming: the ones after the compaction
    // point are carried over by the reload.
    let gen1 = compact_in_place(&f.path, data.path());
    for i in 0..5u64 {
        admin
            .enroll(enroll(&format!("b{i}"), vec![template(300 + i)]))
            .await
            .unwrap();
        present.push((format!("b{i}"), 300 + i));
    }
    admin.remove(remove("a0")).await.unwrap();
    present.retain(|(id, _)| id != "a0");
    gone.push("a0".into());
    let r = admin
        .reload(ReloadRequest {
            request_id: "r1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (r.previous_generation, r.generation, r.carried_over_changes),
        (gen0, gen1, 6)
    );
    assert_eq!(info_generation(&mut c).await, gen1);
    assert_present(&mut c, &present, &gone).await;
    let log_of = |g: u64| facegate_server::changes::log_path(data.path(), g);
    assert!(!log_of(gen0).exists(), "the retired log is deleted");
    assert!(log_of(gen1).exists());
    // Reloading the same file again changes nothing.
    let again = admin
        .reload(ReloadRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!((again.generation, again.carried_over_changes), (gen1, 0));

    // SIGHUP does the same.
    admin
        .enroll(enroll("c0", vec![template(400)]))
        .await
        .unwrap();
    present.push(("c0".into(), 400));
    let gen2 = compact_in_place(&f.path, data.path());
    let pid = server.child.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap()
            .success()
    );
    let t0 = std::time::Instant::now();
    while info_generation(&mut c).await != gen2 {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "SIGHUP did not reload"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_present(&mut c, &present, &gone).await;

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut answered = 0;
    for t in load {
        let (ok, failed) = t.await.unwrap();
        assert!(
            failed.is_empty(),
            "{} failed during the swaps: {:?}",
            failed.len(),
            &failed[..1]
        );
        answered += ok;
    }
    eprintln!("{answered} Identify requests answered across the swaps, none failed");
    assert!(
        answered > 20,
        "only {answered} requests ran across the swaps"
    );
    let text = http_get(&server.metrics).await;
    assert_eq!(sample(&text, "facegate_gallery_reloads_total"), 2.0);

    // A gallery not compacted from this one would lose the logged changes:
    // refused, and the served generation stays.
    admin
        .enroll(enroll("d0", vec![template(500)]))
        .await
        .unwrap();
    present.push(("d0".into(), 500));
    let current = f.path.with_extension("current");
    std::fs::rename(&f.path, &current).unwrap();
    std::fs::rename(&original, &f.path).unwrap();
    let err = admin.reload(ReloadRequest::default()).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("would be lost"), "{err:?}");
    std::fs::rename(&current, &f.path).unwrap();
    assert_eq!(info_generation(&mut c).await, gen2);

    // A crash between a compaction and the reload: the restart adopts the
    // new file and carries the later changes over.
    let gen3 = compact_in_place(&f.path, data.path());
    admin
        .enroll(enroll("d1", vec![template(501)]))
        .await
        .unwrap();
    present.push(("d1".into(), 501));
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    drop((admin, c, server));
    let server = Server::start(&f.path, &["--data-dir", data_dir]);
    let mut c = server.client().await;
    assert_eq!(info_generation(&mut c).await, gen3);
    assert_present(&mut c, &present, &gone).await;
    assert!(!log_of(gen2).exists());
}

#[test]
fn a_second_server_on_the_same_data_directory_is_refused_naming_the_first() {
    let f = fixture();
    let first = Server::start(&f.path, &[]);
    let data = first.data_dir.as_ref().unwrap().path();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_facegate"))
        .args(serve_args(&f.path))
        .arg("--data-dir")
        .arg(data)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let pid = format!("pid {}", first.child.id());
    assert!(
        err.contains("in use by another facegate process") && err.contains(&pid),
        "{err}"
    );
    // Nothing of the first server's was touched: it still answers.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut c = first.client().await;
        c.identify(identify(f.synth.probe(0).vector.clone(), 1, "after"))
            .await
            .unwrap();
    });
}
