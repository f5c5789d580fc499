//! TLS and mutual TLS through the real server and real tonic clients, with
//! a PKI made in the test: a port's certificate names its port; no
//! certificate, another CA's, an expired one, or a port's on the back
//! office is refused with its code; a certificate used for another port is
//! refused and audited; certificates and CA bundles rotate on SIGHUP under
//! load without a failed request, and a bad new file keeps the old one.

use crate::common::pki::{Issued, TestCa, tls_channel};
use crate::common::*;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use facegate_api::v1::gallery_admin_client::GalleryAdminClient;
use facegate_api::v1::manifests_client::ManifestsClient;
use facegate_api::v1::matcher_client::MatcherClient;
use facegate_api::v1::{
    CaptureContext, GetManifestRequest, IdentifyRequest, ReloadRequest, RemoveRequest,
};
use facegate_core::audit::read_dir;
use tonic::Code;

fn at(port: &str, mut r: IdentifyRequest) -> IdentifyRequest {
    r.capture = Some(CaptureContext {
        port_id: port.into(),
        ..Default::default()
    });
    r
}

/// A server whose listeners speak TLS with `cert`, each verifying clients
/// against `client_ca`, with `extra` arguments.
fn start_tls(f: &Fixture, data: &Path, cert: &Issued, client_ca: &Path, extra: &[&Path]) -> Server {
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let mut args = vec![
        "--tls-cert".to_string(),
        s(&cert.cert_path),
        "--tls-key".into(),
        s(&cert.key_path),
        "--port-client-ca".into(),
        s(client_ca),
        "--admin-client-ca".into(),
        s(client_ca),
        "--data-dir".into(),
        s(data),
    ];
    for e in extra.chunks(2) {
        args.push(e[0].to_str().unwrap().to_string());
        args.push(s(e[1]));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Server::start(&f.path, &args)
}

async fn matcher(
    server: &Server,
    cas: &[String],
    id: Option<&Issued>,
) -> MatcherClient<tonic::transport::Channel> {
    MatcherClient::new(tls_channel(&server.addr, cas, id).await.unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_port_certificate_names_its_port_and_wrong_credentials_are_refused() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let agency = TestCa::new(dir.path(), "agency");
    let stranger = TestCa::new(dir.path(), "stranger");
    let data = dir.path().join("data");
    let server = start_tls(&f, &data, &agency.server("server"), &agency.pem_path, &[]);
    let cas = [agency.pem()];
    let probe = || f.synth.probe(0).vector.clone();

    // The right certificate answers, for its own port or none named.
    let jfk = agency.client("port", "JFK-T4");
    let mut c = matcher(&server, &cas, Some(&jfk)).await;
    c.identify(at("JFK-T4", identify(probe(), 3, "own")))
        .await
        .unwrap();
    c.identify(identify(probe(), 3, "unnamed")).await.unwrap();
    // ... and not for another port's: refused and audited.
    let other = c
        .identify(at("SEA-1", identify(probe(), 3, "other")))
        .await
        .unwrap_err();
    assert_eq!(other.code(), Code::PermissionDenied, "{other:?}");

    // No certificate: the handshake passes, the call is unauthenticated.
    let mut bare = matcher(&server, &cas, None).await;
    let none = bare
        .identify(identify(probe(), 3, "none"))
        .await
        .unwrap_err();
    assert_eq!(none.code(), Code::Unauthenticated, "{none:?}");
    assert!(none.message().contains("client certificate"), "{none:?}");

    // Another CA's certificate, or an expired one: the handshake is refused.
    for (who, reason) in [
        (stranger.client("port", "JFK-T4"), "unknown_issuer"),
        (agency.client_valid("port", "JFK-T4", -1), "expired"),
    ] {
        let refused = match tls_channel(&server.addr, &cas, Some(&who)).await {
            Err(e) => format!("connect: {e}"),
            Ok(ch) => {
                let e = MatcherClient::new(ch)
                    .identify(identify(probe(), 3, reason))
                    .await
                    .unwrap_err();
                // The TLS alert ends the connection: tonic reports it as
                // UNKNOWN, CANCELLED or UNAVAILABLE depending on when it
                // reads the alert (gRPC's C core: UNAVAILABLE). The
                // server's count says why.
                assert_ne!(e.code(), Code::Unauthenticated, "{reason}: {e:?}");
                format!("{e:?}")
            }
        };
        let metrics = http_get(&server.metrics).await;
        let series = format!(
            r#"facegate_tls_handshake_failures_total{{listener="ports",reason="{reason}"}}"#
        );
        // At least once: a tonic channel dials again after a failure.
        assert!(sample(&metrics, &series) >= 1.0, "{refused}");
    }
    // Plain text on a TLS listener gets nowhere.
    let plain = MatcherClient::connect(format!("http://{}", server.addr)).await;
    if let Ok(mut plain) = plain {
        plain
            .identify(identify(probe(), 3, "plain"))
            .await
            .unwrap_err();
    }

    // The back office: a port's certificate may not call it; an enrolment
    // office changes the gallery but may not stage manifests; an operator
    // may.
    let admin = |id: Issued| {
        let (addr, cas) = (server.admin_addr.clone(), cas.clone());
        async move { tls_channel(&addr, &cas, Some(&id)).await.unwrap() }
    };
    let remove = RemoveRequest {
        subject_id: f.engine.gallery().subject_id(3).unwrap().to_string(),
        request_id: "rm".into(),
    };
    let denied = GalleryAdminClient::new(admin(jfk.clone()).await)
        .remove(remove.clone())
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
    let office = admin(agency.client("enrolment", "LHR-office")).await;
    GalleryAdminClient::new(office.clone())
        .remove(remove)
        .await
        .unwrap();
    let manifest = GetManifestRequest {
        manifest_id: "BA117".into(),
        ..Default::default()
    };
    let denied = ManifestsClient::new(office)
        .get(manifest.clone())
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
    let operator = admin(agency.client("operator", "ops-1")).await;
    let unknown = ManifestsClient::new(operator)
        .get(manifest)
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound, "{unknown:?}");

    // Audit names the certificate's holder; refusals at the gate never
    // reach it, a refused port claim does.
    let mut seen = Vec::new();
    read_dir(&data.join("audit"), &mut |r| {
        let e = &r.event;
        seen.push((
            e.request_id.clone(),
            e.principal.clone(),
            e.port_id.clone(),
            e.code.clone(),
        ))
    })
    .unwrap();
    let seen: Vec<(&str, &str, &str, &str)> = seen
        .iter()
        .map(|(a, b, c, d)| (a.as_str(), b.as_str(), c.as_str(), d.as_str()))
        .filter(|(rid, ..)| ["own", "unnamed", "other", "rm"].contains(rid))
        .collect();
    assert_eq!(
        seen,
        [
            ("own", "JFK-T4", "JFK-T4", "OK"),
            ("unnamed", "JFK-T4", "", "OK"),
            ("other", "JFK-T4", "SEA-1", "PERMISSION_DENIED"),
            ("rm", "LHR-office", "", "OK"),
        ]
    );
}

/// Writes `text` to `path` atomically (as a deployment tool would), so a
/// reload never reads half a file.
fn replace(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn sighup(server: &Server) {
    let ok = std::process::Command::new("kill")
        .args(["-HUP", &server.child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

/// Identify in a loop until `stop`, on one long-lived connection and on a
/// new connection for every call, counting answers and failures.
async fn steady_load(
    addr: String,
    cas: Vec<String>,
    id: Issued,
    probe: Vec<f32>,
    stop: Arc<AtomicBool>,
    answered: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
) {
    let mut kept = MatcherClient::new(tls_channel(&addr, &cas, Some(&id)).await.unwrap());
    while !stop.load(Ordering::Relaxed) {
        let fresh = async {
            let ch = tls_channel(&addr, &cas, Some(&id))
                .await
                .map_err(|e| e.to_string())?;
            MatcherClient::new(ch)
                .identify(identify(probe.clone(), 3, "fresh"))
                .await
                .map_err(|e| e.to_string())
        };
        let long = kept.identify(identify(probe.clone(), 3, "kept"));
        let (a, b) = tokio::join!(fresh, long);
        for r in [a.map(drop), b.map(drop).map_err(|e| e.to_string())] {
            match r {
                Ok(()) => answered.fetch_add(1, Ordering::Relaxed),
                Err(e) => {
                    eprintln!("failed under rotation: {e}");
                    failed.fetch_add(1, Ordering::Relaxed)
                }
            };
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_rotates_certificates_under_load_and_keeps_the_old_on_a_bad_file() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let old_ca = TestCa::new(dir.path(), "old");
    let new_ca = TestCa::new(dir.path(), "new");
    let bundle = dir.path().join("clients.pem");
    replace(&bundle, &old_ca.pem());
    let served = old_ca.server("served");
    let server = start_tls(&f, &dir.path().join("data"), &served, &bundle, &[]);
    let both = vec![old_ca.pem(), new_ca.pem()];
    let newcomer = new_ca.client("port", "DOV-2");
    // Before rotation the new CA's port is a stranger.
    assert!(
        matcher(&server, &both, Some(&newcomer))
            .await
            .identify(identify(f.synth.probe(1).vector.clone(), 3, "early"))
            .await
            .is_err()
    );

    let (stop, answered, failed) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let load: Vec<_> = (0..4)
        .map(|i| {
            tokio::spawn(steady_load(
                server.addr.clone(),
                both.clone(),
                old_ca.client("port", &format!("P{i}")),
                f.synth.probe(i).vector.clone(),
                stop.clone(),
                answered.clone(),
                failed.clone(),
            ))
        })
        .collect();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    // Rotate: the server's certificate now from the new CA, and clients of
    // both CAs trusted (the overlap a migration needs).
    let rotated = new_ca.server("rotated");
    replace(&served.cert_path, &rotated.cert_pem);
    replace(&served.key_path, &rotated.key_pem);
    replace(&bundle, &both.concat());
    sighup(&server);
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;

    // A client trusting only the new CA, holding a new CA certificate, is
    // served: the new server certificate and the new bundle are both in.
    let mut after = matcher(&server, &[new_ca.pem()], Some(&newcomer)).await;
    after
        .identify(identify(f.synth.probe(1).vector.clone(), 3, "after"))
        .await
        .unwrap();

    // A bad new key is refused, logged and counted; the old config serves.
    replace(&served.key_path, "not a key\n");
    sighup(&server);
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    for l in load {
        l.await.unwrap();
    }
    let metrics = http_get(&server.metrics).await;
    assert_eq!(
        sample(
            &metrics,
            r#"facegate_credential_reloads_total{result="failed"}"#
        ),
        2.0,
        "both listeners refused the bad key"
    );
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "no request failed under rotation"
    );
    assert!(answered.load(Ordering::Relaxed) >= 8);
    let mut fresh = matcher(&server, &[new_ca.pem()], Some(&newcomer)).await;
    fresh
        .identify(identify(f.synth.probe(1).vector.clone(), 3, "kept"))
        .await
        .unwrap();

    // The Reload RPC re-reads them too, and names what it refused.
    let ops = new_ca.client("operator", "ops-1");
    let ch = tls_channel(&server.admin_addr, &[new_ca.pem()], Some(&ops))
        .await
        .unwrap();
    let reload = GalleryAdminClient::new(ch)
        .reload(ReloadRequest {
            request_id: "r".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        reload.credential_errors.len(),
        2,
        "{:?}",
        reload.credential_errors
    );
    assert!(
        reload.credential_errors[0].contains("private key")
            && reload.credential_errors[0].contains("served.key"),
        "{:?}",
        reload.credential_errors
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_revoked_port_certificate_is_refused_once_the_list_is_reloaded() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let agency = TestCa::new(dir.path(), "agency");
    let crl = dir.path().join("revoked.pem");
    replace(&crl, &agency.crl(&[]));
    let cert = agency.server("server");
    let flag = std::path::PathBuf::from("--client-crl");
    let data = dir.path().join("data");
    let server = start_tls(&f, &data, &cert, &agency.pem_path, &[&flag, &crl]);
    let cas = [agency.pem()];
    let (lost, kept) = (
        agency.client("port", "JFK-T4"),
        agency.client("port", "JFK-T5"),
    );
    let probe = || identify(f.synth.probe(0).vector.clone(), 3, "p");
    matcher(&server, &cas, Some(&lost))
        .await
        .identify(probe())
        .await
        .unwrap();

    // JFK-T4's device is lost: its certificate is revoked.
    replace(&crl, &agency.crl(&[&lost]));
    sighup(&server);
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let refused = match tls_channel(&server.addr, &cas, Some(&lost)).await {
        Err(e) => format!("{e:?}"),
        Ok(ch) => format!(
            "{:?}",
            MatcherClient::new(ch).identify(probe()).await.unwrap_err()
        ),
    };
    let metrics = http_get(&server.metrics).await;
    assert!(
        sample(
            &metrics,
            r#"facegate_tls_handshake_failures_total{listener="ports",reason="revoked"}"#
        ) >= 1.0,
        "{refused}"
    );
    matcher(&server, &cas, Some(&kept))
        .await
        .identify(probe())
        .await
        .unwrap();
}
