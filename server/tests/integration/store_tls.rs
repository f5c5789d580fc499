//! The shared encounter store over TLS, through the real server: a
//! PostgreSQL that admits TCP clients only over TLS (started by the test,
//! its certificate from a test CA); `facegate serve` given that CA in its
//! environment records a port's crossing there and reads it back; its
//! client certificate's expiry is shown, and a renewed one is taken by
//! Reload (a refused one is named and leaves the old in force); the same
//! server without the CA does not start, and says why.

use crate::common::pki::{self, TestCa};
use crate::common::*;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use facegate_api::v1::{CaptureContext, Direction, IdentifyRequest, ReloadRequest};
use facegate_postgres::LocalPostgres;
use facegate_postgres::local::LocalTls;

/// The server's stderr when it exits within `limit`; `None` if it is
/// still running then (and killed). Stderr is read while it runs, so a
/// long one cannot fill the pipe and hold the server up.
fn exit_message(mut cmd: Command, limit: Duration) -> Option<String> {
    let mut child = cmd
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().expect("stderr is piped");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        stderr.read_to_string(&mut text).map(|_| text)
    });
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    reader.join().ok()?.ok()
}

/// A port's crossing recorded through `server`, then read back from the
/// back office's travel history.
async fn records_and_reads_back(server: &Server, f: &Fixture) {
    let capture = CaptureContext {
        port_id: "JFK-T4".into(),
        lane: "3".into(),
        direction: Direction::Entry.into(),
        captured_at_unix_ms: 1_790_000_000_000,
        encounter_id: "tls-1".into(),
        record: true,
        ..Default::default()
    };
    let answer = server
        .client()
        .await
        .identify(IdentifyRequest {
            capture: Some(capture),
            ..identify(f.synth.subject(7).templates[0].clone(), 3, "tls")
        })
        .await
        .unwrap()
        .into_inner();
    let recorded = answer.encounter.expect("recorded, with its record");
    let subject = &answer.candidates[0].subject_id;
    let history = travel_history(&server.admin_addr, subject).await;
    let ids: Vec<_> = history.iter().map(|(record, _)| *record).collect();
    assert_eq!(ids, [recorded.record_id], "read back over TLS");
}

/// Days from now until the node's store client certificate expires, as
/// the server's metric shows it.
async fn days_left(server: &Server) -> f64 {
    let series = "facegate_tls_certificate_expiry_timestamp_seconds{listener=\"encounter_store\"}";
    let expiry = sample(&http_get(&server.metrics).await, series);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    (expiry - now.as_secs_f64()) / 86_400.0
}

/// The client certificate's expiry is shown; Reload takes a renewed one
/// and refuses a broken one, naming it, with the renewed one kept.
async fn client_certificate_renewals(
    server: &Server,
    install: &dyn Fn(&pki::Issued),
    node_key: &std::path::Path,
    ca: &TestCa,
) {
    let shown = days_left(server).await;
    assert!((29.9..30.1).contains(&shown), "{shown} days left");
    let mut admin = server.admin().await;
    install(&ca.client_valid("router", "r1", 90));
    let reloaded = admin.reload(ReloadRequest::default()).await.unwrap();
    assert!(
        reloaded.get_ref().credential_errors.is_empty(),
        "{reloaded:?}"
    );
    let renewed = days_left(server).await;
    assert!((89.9..90.1).contains(&renewed), "{renewed} days left");

    std::fs::write(node_key, "not a key").unwrap();
    let refused = admin.reload(ReloadRequest::default()).await.unwrap();
    let errors = &refused.get_ref().credential_errors;
    assert!(
        errors.len() == 1 && errors[0].contains("client key"),
        "{errors:?}"
    );
    let kept = days_left(server).await;
    assert!((89.9..90.1).contains(&kept), "{kept} days left");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_given_the_ca_records_into_a_tls_only_database_and_without_it_does_not_start() {
    let pki_dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(pki_dir.path(), "db");
    let cert = ca.server("db-server");
    let (_pg, url) = tokio::task::spawn_blocking(move || {
        let pg = LocalPostgres::start_tls(&LocalTls {
            cert_pem: cert.cert_pem,
            key_pem: cert.key_pem,
            client_ca_pem: None,
        })
        .expect("starting PostgreSQL with TLS");
        let url = pg.create_database("crossings").unwrap();
        (pg, url)
    })
    .await
    .unwrap();
    let f = fixture();
    let ca_path = ca.pem_path.to_str().unwrap();
    // The node's client certificate, in files renewed in place below.
    let (node_cert, node_key) = (
        pki_dir.path().join("node.pem"),
        pki_dir.path().join("node.key"),
    );
    let install = |issued: &pki::Issued| {
        std::fs::write(&node_cert, &issued.cert_pem).unwrap();
        std::fs::write(&node_key, &issued.key_pem).unwrap();
    };
    install(&ca.client_valid("router", "r1", 30));
    let server = Server::start_with_env(
        &f.path,
        &[
            ("FACEGATE_ENCOUNTER_STORE_CA", ca_path),
            ("FACEGATE_ENCOUNTER_STORE_CERT", node_cert.to_str().unwrap()),
            ("FACEGATE_ENCOUNTER_STORE_KEY", node_key.to_str().unwrap()),
        ],
        &["--encounter-store", &url],
    );

    records_and_reads_back(&server, &f).await;
    client_certificate_renewals(&server, &install, &node_key, &ca).await;
    drop(server);

    // Without the CA the node would speak plain text, which this database
    // refuses: the server stops at start-up, naming why.
    let mut plain = Command::new(env!("CARGO_BIN_EXE_facegate"));
    let data = tempfile::tempdir().unwrap();
    plain
        .args(serve_args(&f.path))
        .args(["--encounter-store", &url, "--data-dir"])
        .arg(data.path())
        .env_remove("FACEGATE_ENCOUNTER_STORE_CA");
    let said = exit_message(plain, Duration::from_secs(60)).expect("the server exits");
    assert!(said.contains("no encryption"), "{said}");
}
