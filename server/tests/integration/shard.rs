//! A shard server (`--shard K/N`) through the real binary: it serves its
//! shard's gallery and says so in GalleryInfo, refuses to enrol another
//! shard's subject (FAILED_PRECONDITION naming the owner), refuses to start
//! on another shard's gallery, and refuses to reload to one.

use crate::common::*;

use std::process::Command;

use facegate_api::v1::{EnrollRequest, GetGalleryInfoRequest, ReloadRequest, Template};
use facegate_core::shard::{shard_of, split};
use tonic::Code;

fn enroll(id: &str, values: Vec<f32>) -> EnrollRequest {
    EnrollRequest {
        subject_id: id.into(),
        templates: vec![Template { values }],
        model_tag: TAG.into(),
        request_id: format!("enroll-{id}"),
    }
}

/// The first `NEW-i` id that shard `index` of 2 owns.
fn new_id_of(index: u32) -> String {
    (0..)
        .map(|i| format!("NEW-{i}"))
        .find(|id| shard_of(id, 2) == index)
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_shard_server_serves_only_its_own_subjects() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let source = open_gallery(&f.path);
    let map = split(source, 2, dir.path(), "g", false, &mut |_| {}).unwrap();
    let (shard0, shard1) = (
        dir.path().join(&map.shards[0].file),
        dir.path().join(&map.shards[1].file),
    );

    // Another shard's gallery: refused at start-up, saying why.
    let wrong = Command::new(env!("CARGO_BIN_EXE_facegate"))
        .args(serve_args(&shard0))
        .args([
            "--shard",
            "1/2",
            "--data-dir",
            dir.path().join("wrong").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&wrong.stderr);
    assert!(!wrong.status.success());
    assert!(said.contains("subjects of shards other than 1/2"), "{said}");

    let served = dir.path().join("served.fgal");
    std::fs::copy(&shard0, &served).unwrap();
    let server = Server::start(&served, &["--shard", "0/2"]);
    let info = server
        .client()
        .await
        .get_gallery_info(GetGalleryInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!((info.shard_index, info.shard_count), (0, 2));
    assert_eq!(info.subjects, map.shards[0].subjects);

    // Reloading to the other shard's file (put in place by rename, as
    // compaction does, never by writing over the mapped file) is refused;
    // shard 0 stays.
    let aside = dir.path().join("served.fgal.tmp");
    std::fs::copy(&shard1, &aside).unwrap();
    std::fs::rename(&aside, &served).unwrap();
    let mut admin = server.admin().await;
    let refused = admin
        .reload(ReloadRequest {
            request_id: "r".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert!(
        refused.message().contains("shards other than 0/2"),
        "{refused:?}"
    );

    // Enrolments: its own subject is taken, another shard's refused.
    let template = f.synth.probe(0).vector.clone();
    admin
        .enroll(enroll(&new_id_of(0), template.clone()))
        .await
        .unwrap();
    let foreign = admin
        .enroll(enroll(&new_id_of(1), template))
        .await
        .unwrap_err();
    assert_eq!(foreign.code(), Code::FailedPrecondition, "{foreign:?}");
    assert!(
        foreign
            .message()
            .contains("belongs to shard 1/2; this server is shard 0/2"),
        "{foreign:?}"
    );
}

fn open_gallery(path: &std::path::Path) -> std::sync::Arc<facegate_core::Gallery> {
    std::sync::Arc::new(facegate_core::Gallery::open(path).unwrap())
}
