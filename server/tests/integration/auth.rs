//! API keys through the real server: keys made by `facegate keygen`, a
//! Matcher call without a valid key refused, a key used for another port
//! refused, the back office's own keys, and the authenticated caller in
//! every audit record.

use crate::common::*;

use std::path::Path;
use std::process::Command;

use facegate_api::v1::{CaptureContext, GetGalleryInfoRequest, RemoveRequest};
use facegate_core::audit::read_dir;
use tonic::Code;

fn at(port: &str, mut r: facegate_api::v1::IdentifyRequest) -> facegate_api::v1::IdentifyRequest {
    r.capture = Some(CaptureContext {
        port_id: port.into(),
        ..Default::default()
    });
    r
}

fn write(path: &Path, lines: &[&str]) {
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn only_keyed_callers_are_served_and_a_key_speaks_for_its_own_port() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let (jfk, jfk_line) = keygen("JFK-T4");
    let (sea, sea_line) = keygen("SEA-1");
    let (officer, officer_line) = keygen("enrolment-office-2");
    assert_ne!(jfk, sea);
    let (ports, admins) = (dir.path().join("ports.keys"), dir.path().join("admin.keys"));
    write(&ports, &["# ports of entry", &jfk_line, &sea_line]);
    write(&admins, &[&officer_line]);
    let data = dir.path().join("data");
    let server = Server::start(
        &f.path,
        &[
            "--port-keys",
            ports.to_str().unwrap(),
            "--admin-keys",
            admins.to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
        ],
    );
    let mut c = server.client().await;
    let probe = || f.synth.probe(0).vector.clone();

    // No key, an unknown key, or a port's key on the back office: refused.
    let none = c.identify(identify(probe(), 3, "none")).await.unwrap_err();
    assert_eq!(none.code(), Code::Unauthenticated, "{none:?}");
    let info = c
        .get_gallery_info(GetGalleryInfoRequest {})
        .await
        .unwrap_err();
    assert_eq!(info.code(), Code::Unauthenticated);
    let wrong = c
        .identify(with_key(identify(probe(), 3, "wrong"), "0123abcd"))
        .await
        .unwrap_err();
    assert_eq!(
        (wrong.code(), wrong.message()),
        (Code::Unauthenticated, "unknown API key")
    );
    // A key searches for its own port, or for no named port, not another's.
    c.identify(with_key(at("JFK-T4", identify(probe(), 3, "own")), &jfk))
        .await
        .unwrap();
    c.identify(with_key(identify(probe(), 3, "unnamed"), &sea))
        .await
        .unwrap();
    let other = c
        .identify(with_key(at("SEA-1", identify(probe(), 3, "other")), &jfk))
        .await
        .unwrap_err();
    assert_eq!(other.code(), Code::PermissionDenied, "{other:?}");
    c.get_gallery_info(with_key(GetGalleryInfoRequest {}, &sea))
        .await
        .unwrap();

    let mut admin = server.admin().await;
    let subject = f.engine.gallery().subject_id(3).unwrap().to_string();
    let remove = |token: Option<&str>| {
        let msg = RemoveRequest {
            subject_id: subject.clone(),
            request_id: "rm".into(),
        };
        match token {
            Some(t) => with_key(msg, t),
            None => tonic::Request::new(msg),
        }
    };
    assert_eq!(
        admin.remove(remove(None)).await.unwrap_err().code(),
        Code::Unauthenticated
    );
    assert_eq!(
        admin.remove(remove(Some(&jfk))).await.unwrap_err().code(),
        Code::Unauthenticated
    );
    admin.remove(remove(Some(&officer))).await.unwrap();

    // Refusals by key never reach a handler; the rest are audited with the
    // caller the key names.
    let mut records = Vec::new();
    read_dir(&data.join("audit"), &mut |r| records.push(r.event.clone())).unwrap();
    let seen: Vec<(&str, &str, &str, &str)> = records
        .iter()
        .map(|e| {
            (
                e.request_id.as_str(),
                e.principal.as_str(),
                e.port_id.as_str(),
                e.code.as_str(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("own", "JFK-T4", "JFK-T4", "OK"),
            ("unnamed", "SEA-1", "", "OK"),
            ("other", "JFK-T4", "SEA-1", "PERMISSION_DENIED"),
            ("rm", "enrolment-office-2", "", "OK"),
        ]
    );
    // Metrics count a keyed request under the port its key names.
    let metrics = http_get(&server.metrics).await;
    assert_eq!(
        sample(
            &metrics,
            r#"facegate_auth_failures_total{listener="ports"}"#
        ),
        3.0
    );
    assert_eq!(
        sample(
            &metrics,
            r#"facegate_auth_failures_total{listener="admin"}"#
        ),
        2.0
    );
    assert_eq!(
        sample(
            &metrics,
            r#"facegate_requests_total{code="OK",port="SEA-1",rpc="Identify"}"#
        ),
        1.0
    );
}

#[test]
fn a_bad_keys_file_stops_the_server_naming_the_line() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("ports.keys");
    let (_, line) = keygen("JFK-T4");
    write(&keys, &[&line, "SEA-1 not-a-hash"]);
    let out = Command::new(env!("CARGO_BIN_EXE_facegate"))
        .args(serve_args(&f.path))
        .args(["--no-audit", "--port-keys", keys.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("ports.keys") && err.contains("line 2"),
        "{err}"
    );
}
