//! TLS to the shared store, against real servers that admit TCP clients
//! only over TLS (plain text refused in `pg_hba.conf`): a node given the
//! CA records and reads over a verified connection; a server the CA did
//! not sign, a certificate for another host, a server without TLS, and a
//! missing client certificate are all refused, never used in plain text;
//! a rotated client certificate is taken on reload, without a restart.
//! Certificates are made per run (rcgen), never committed.

use std::path::{Path, PathBuf};

use facegate_core::encounter::{EncounterError, EncounterStore};
use facegate_core::manifest::Direction;
use facegate_postgres::local::LocalTls;
use facegate_postgres::{LocalPostgres, PgEncounters, StoreTls};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};

#[path = "../../facegate-core/tests/store_contract/mod.rs"]
#[allow(unused_macros)]
mod store_contract;
use store_contract::{at, crossing};

/// The name the database's certificate is for; the tests reach it at
/// 127.0.0.1 through `hostaddr`.
const DB_HOST: &str = "db.facegate.test";

/// A test CA, its certificate written to a file.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
    path: PathBuf,
}

/// A certificate and key issued by a [`Ca`], as PEM and as files.
struct Issued {
    cert_pem: String,
    key_pem: String,
    cert: PathBuf,
    key: PathBuf,
}

impl Ca {
    fn new(dir: &Path, name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} test CA"));
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let path = dir.join(format!("{name}-ca.pem"));
        std::fs::write(&path, issuer.pem()).unwrap();
        Ca { issuer, path }
    }

    /// A certificate for `names` (DNS names), or with common name
    /// `common_name` for a client.
    fn issue(&self, dir: &Path, file: &str, names: &[&str], common_name: &str) -> Issued {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let (cert_path, key_path) = (
            dir.join(format!("{file}.pem")),
            dir.join(format!("{file}.key")),
        );
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            cert: cert_path,
            key: key_path,
        }
    }
}

/// The run's certificates: the agency's CA and another, a server
/// certificate of each, and a client certificate for the role.
struct Pki {
    _dir: tempfile::TempDir,
    ca: Ca,
    other_ca: Ca,
    server: Issued,
    client: Issued,
}

/// A test's own certificates, in a directory removed with them.
fn pki() -> Pki {
    let dir = tempfile::tempdir().unwrap();
    let (ca, other_ca) = (Ca::new(dir.path(), "agency"), Ca::new(dir.path(), "other"));
    let server = ca.issue(dir.path(), "server", &[DB_HOST], DB_HOST);
    let role = facegate_postgres::local::ROLE;
    let client = ca.issue(dir.path(), "client", &[], role);
    Pki {
        _dir: dir,
        ca,
        other_ca,
        server,
        client,
    }
}

/// The connection string of `server`'s database `name` under the
/// certificate's host name.
fn url(server: &LocalPostgres, name: &str) -> String {
    let (port, role) = (server.port(), facegate_postgres::local::ROLE);
    format!("host={DB_HOST} hostaddr=127.0.0.1 port={port} user={role} dbname={name}")
}

fn trusting(ca: &Ca) -> StoreTls {
    StoreTls {
        ca: Some(ca.path.clone()),
        ..StoreTls::default()
    }
}

/// The reason of a refused open, which must not be transient: retrying
/// cannot make an unverified server trusted.
fn refusal(result: Result<std::sync::Arc<PgEncounters>, EncounterError>) -> String {
    match result {
        Err(EncounterError::Remote {
            reason, transient, ..
        }) => {
            assert!(!transient, "a TLS refusal is no outage: {reason}");
            reason
        }
        Err(e) => panic!("expected a refusal from the database, got {e}"),
        Ok(_) => panic!("the store opened where it must have been refused"),
    }
}

#[test]
fn a_node_given_the_ca_records_over_verified_tls_and_other_servers_are_refused() {
    let pki = pki();
    let server = LocalPostgres::start_tls(&LocalTls {
        cert_pem: pki.server.cert_pem.clone(),
        key_pem: pki.server.key_pem.clone(),
        client_ca_pem: None,
    })
    .unwrap();
    server.create_database("records").unwrap();
    let db = url(&server, "records");

    let store = PgEncounters::open_tls(&db, &trusting(&pki.ca)).unwrap();
    let recorded = store
        .record(crossing("e1", Some("S1"), Direction::Entry, at(1, 1)))
        .unwrap();
    assert!(recorded.newly_recorded);
    let read = store.get(recorded.stored.record_id).unwrap();
    assert_eq!(read, Some(recorded.stored), "read back over TLS");
    store.close();

    // The fixture itself: this server admits no TCP client without TLS, so
    // the records above went over TLS.
    let plain = refusal(PgEncounters::open(&server.url("records")));
    assert!(plain.contains("pg_hba.conf"), "{plain}");
    // A CA that did not sign the server's certificate.
    let unknown = refusal(PgEncounters::open_tls(&db, &trusting(&pki.other_ca)));
    assert!(unknown.contains("UnknownIssuer"), "{unknown}");
    // The right CA, but the URL names a host the certificate is not for.
    let by_address = server.url("records");
    let wrong_host = refusal(PgEncounters::open_tls(&by_address, &trusting(&pki.ca)));
    assert!(wrong_host.contains("not valid for name"), "{wrong_host}");
}

#[test]
fn with_a_ca_a_server_without_tls_is_refused_not_used_in_plain_text() {
    let server = LocalPostgres::start().unwrap();
    let db = url(&server, "postgres");
    let reason = refusal(PgEncounters::open_tls(&db, &trusting(&pki().ca)));
    assert!(reason.starts_with("TLS refused"), "{reason}");
    assert!(reason.contains("does not support TLS"), "{reason}");
}

/// A server that authenticates nodes by certificates of the agency's CA,
/// and the connection string of its new database `name`.
fn by_certificate(pki: &Pki, name: &str) -> (LocalPostgres, String) {
    let server = LocalPostgres::start_tls(&LocalTls {
        cert_pem: pki.server.cert_pem.clone(),
        key_pem: pki.server.key_pem.clone(),
        client_ca_pem: Some(pki.ca.issuer.pem()),
    })
    .unwrap();
    server.create_database(name).unwrap();
    let db = url(&server, name);
    (server, db)
}

#[test]
fn a_server_that_authenticates_nodes_by_certificate_admits_the_node_that_has_one() {
    let pki = pki();
    let (_server, db) = by_certificate(&pki, "by_cert");
    let with_cert = StoreTls {
        client_cert: Some(pki.client.cert.clone()),
        client_key: Some(pki.client.key.clone()),
        ..trusting(&pki.ca)
    };
    let store = PgEncounters::open_tls(&db, &with_cert).unwrap();
    let recorded = store
        .record(crossing("e1", Some("S1"), Direction::Exit, at(2, 1)))
        .unwrap();
    assert!(recorded.newly_recorded);
    store.close();

    let without = refusal(PgEncounters::open_tls(&db, &trusting(&pki.ca)));
    assert!(
        without.contains("requires a valid client certificate"),
        "{without}"
    );
}

/// Records `e` until it is taken or `tries` attempts have failed: the
/// first write after a server restart may meet the connection the restart
/// broke (a transient failure; the writer reconnects at the next).
fn record_within(
    store: &PgEncounters,
    id: &str,
    tries: usize,
) -> Result<facegate_core::encounter::Recorded, EncounterError> {
    let mut last = None;
    for _ in 0..tries {
        match store.record(crossing(id, Some("S1"), Direction::Entry, at(3, 1))) {
            Ok(r) => return Ok(r),
            Err(e) => last = Some(e),
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    Err(last.expect("at least one try"))
}

#[test]
fn a_rotated_client_certificate_is_used_by_the_connections_made_after_a_reload() {
    let pki = pki();
    let (server, db) = by_certificate(&pki, "rotation");
    // The files the node is given, rewritten in place as a rotation does.
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("node.pem"), dir.path().join("node.key"));
    let install = |issued: &Issued| {
        std::fs::write(&cert, &issued.cert_pem).unwrap();
        std::fs::write(&key, &issued.key_pem).unwrap();
    };
    install(&pki.client);
    let files = StoreTls {
        client_cert: Some(cert.clone()),
        client_key: Some(key.clone()),
        ..trusting(&pki.ca)
    };
    let store = PgEncounters::open_tls(&db, &files).unwrap();
    record_within(&store, "before", 1).unwrap();

    // A certificate the database does not trust, installed and reloaded:
    // once the restart has closed the connections, no new one is admitted.
    let role = facegate_postgres::local::ROLE;
    install(&pki.other_ca.issue(dir.path(), "untrusted", &[], role));
    store.reload_tls().unwrap();
    server.crash().unwrap();
    server.restart().unwrap();
    let refused = record_within(&store, "refused", 5).unwrap_err();
    // The database's answer to a certificate from a CA it does not trust.
    assert!(refused.to_string().contains("UnknownCA"), "{refused}");

    // A fresh certificate from the agency's CA: recording resumes, with
    // no restart of the node.
    install(&pki.ca.issue(dir.path(), "rotated", &[], role));
    store.reload_tls().unwrap();
    assert!(record_within(&store, "after", 5).unwrap().newly_recorded);

    // A reload that cannot read its files is refused, naming the file,
    // and the certificate in force stays in force.
    std::fs::write(&key, "not a key").unwrap();
    let bad = store.reload_tls().unwrap_err().to_string();
    assert!(
        bad.contains("client key") && bad.contains("node.key"),
        "{bad}"
    );
    server.crash().unwrap();
    server.restart().unwrap();
    assert!(record_within(&store, "kept", 5).unwrap().newly_recorded);
    store.close();
}

#[test]
fn settings_that_would_weaken_or_cannot_work_are_refused_before_connecting() {
    let pki = pki();
    // Nothing listens here: each refusal must come before any connection.
    let db = "postgres://facegate@127.0.0.1:1/none";
    let cases = [
        (
            format!("{db}?sslmode=require"),
            StoreTls::default(),
            "give the CA",
        ),
        (
            format!("{db}?sslmode=disable"),
            trusting(&pki.ca),
            "every connection is TLS",
        ),
        (
            db.to_string(),
            StoreTls {
                client_cert: Some(pki.client.cert.clone()),
                ..trusting(&pki.ca)
            },
            "give both",
        ),
        (
            db.to_string(),
            StoreTls {
                client_cert: Some(pki.client.cert.clone()),
                client_key: Some(pki.client.key.clone()),
                ca: None,
            },
            "only sent over TLS",
        ),
        (
            db.to_string(),
            StoreTls {
                ca: Some(PathBuf::from("/nonexistent/ca.pem")),
                ..StoreTls::default()
            },
            "CA bundle /nonexistent/ca.pem",
        ),
        (
            db.to_string(),
            StoreTls {
                ca: Some(pki.client.key.clone()),
                ..StoreTls::default()
            },
            "no CERTIFICATE block",
        ),
        (
            "host=/run/postgresql port=5432 user=facegate dbname=f".to_string(),
            trusting(&pki.ca),
            "a Unix socket is never encrypted",
        ),
        (
            "hostaddr=127.0.0.1 port=1 user=facegate dbname=f".to_string(),
            trusting(&pki.ca),
            "must name the host its certificate is for",
        ),
        (
            format!("{db}?sslmode=verify-full"),
            trusting(&pki.ca),
            "invalid value for option `sslmode`",
        ),
    ];
    for (url, tls, expected) in cases {
        let reason = refusal(PgEncounters::open_tls(&url, &tls));
        assert!(reason.contains(expected), "{url} {tls:?}: {reason}");
    }
}
