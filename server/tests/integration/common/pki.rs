//! A small test PKI made in the test (rcgen), never committed: CAs, the
//! server's certificate for `localhost`, and client certificates carrying
//! a facegate identity (`spiffe://test.example/facegate/ROLE/NAME`), with
//! tonic clients that present them.

use std::path::{Path, PathBuf};

use std::sync::atomic::{AtomicU64, Ordering};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CertifiedIssuer, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyIdMethod, KeyPair, KeyUsagePurpose, RevokedCertParams,
    SanType, SerialNumber,
};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

/// A CA whose certificate is written to `DIR/NAME-ca.pem`.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
    /// Its certificate's file.
    pub pem_path: PathBuf,
    dir: PathBuf,
    name: String,
}

/// A certificate and its key, as PEM text and as files.
#[derive(Clone)]
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    /// Its serial number, by which a revocation list names it.
    pub serial: u64,
}

impl Issued {
    /// The tonic identity a client presents.
    pub fn identity(&self) -> Identity {
        Identity::from_pem(&self.cert_pem, &self.key_pem)
    }
}

impl TestCa {
    pub fn new(dir: &Path, name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} test CA"));
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let pem_path = dir.join(format!("{name}-ca.pem"));
        std::fs::write(&pem_path, issuer.pem()).unwrap();
        TestCa {
            issuer,
            pem_path,
            dir: dir.to_path_buf(),
            name: name.to_string(),
        }
    }

    /// The CA's certificate, PEM.
    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    fn issue(&self, file: &str, mut params: CertificateParams) -> Issued {
        static SERIALS: AtomicU64 = AtomicU64::new(1000);
        let serial = SERIALS.fetch_add(1, Ordering::Relaxed);
        let key = KeyPair::generate().unwrap();
        params.serial_number = Some(SerialNumber::from(serial));
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let base = self.dir.join(format!("{}-{file}", self.name));
        let (cert_path, key_path) = (base.with_extension("pem"), base.with_extension("key"));
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            cert_path,
            key_path,
            serial,
        }
    }

    /// A revocation list (PEM) of this CA revoking `revoked`.
    pub fn crl(&self, revoked: &[&Issued]) -> String {
        let now = time::OffsetDateTime::now_utc();
        let params = CertificateRevocationListParams {
            this_update: now - time::Duration::hours(1),
            next_update: now + time::Duration::days(7),
            crl_number: SerialNumber::from(now.unix_timestamp() as u64),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .map(|c| RevokedCertParams {
                    serial_number: SerialNumber::from(c.serial),
                    revocation_time: now - time::Duration::minutes(1),
                    reason_code: None,
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        params.signed_by(&self.issuer).unwrap().pem().unwrap()
    }

    /// The server's certificate: `localhost` and 127.0.0.1.
    pub fn server(&self, file: &str) -> Issued {
        let mut params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.issue(file, params)
    }

    /// A client certificate naming `role`/`name`, valid from a day ago for
    /// `valid_days` days (negative: expired).
    pub fn client_valid(&self, role: &str, name: &str, valid_days: i64) -> Issued {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        let uri = format!("spiffe://test.example/facegate/{role}/{name}");
        params
            .subject_alt_names
            .push(SanType::URI(uri.as_str().try_into().unwrap()));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let now = time::OffsetDateTime::now_utc();
        let (from, to) = if valid_days >= 0 {
            (
                now - time::Duration::days(1),
                now + time::Duration::days(valid_days),
            )
        } else {
            (
                now - time::Duration::days(30),
                now + time::Duration::days(valid_days),
            )
        };
        params.not_before = from;
        params.not_after = to;
        self.issue(&format!("{role}-{name}-{valid_days}"), params)
    }

    /// A client certificate naming `role`/`name`, valid for a year.
    pub fn client(&self, role: &str, name: &str) -> Issued {
        self.client_valid(role, name, 365)
    }
}

/// A channel to `addr` over TLS, trusting `ca_pems` (concatenated),
/// presenting `identity` if given.
pub async fn tls_channel(
    addr: &str,
    ca_pems: &[String],
    identity: Option<&Issued>,
) -> Result<Channel, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca_pems.concat()))
        .domain_name("localhost");
    if let Some(id) = identity {
        tls = tls.identity(id.identity());
    }
    Channel::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(tls)?
        .connect()
        .await
}
