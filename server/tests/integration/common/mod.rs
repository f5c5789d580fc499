//! Helpers shared by the server's integration tests: the real `facegate`
//! binary on an ephemeral port, and a small synthetic gallery.
#![allow(dead_code)]

pub mod pki;
pub mod prometheus;
pub mod stall;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use facegate_api::v1::IdentifyRequest;
use facegate_api::v1::gallery_admin_client::GalleryAdminClient;
use facegate_api::v1::matcher_client::MatcherClient;
use facegate_core::format::{BuildOptions, SliceRows, build_gallery};
use facegate_core::synth::{Synth, SynthConfig};
use facegate_core::{CpuEngine, ElementType, Gallery, ScanTarget};
use tonic::transport::Channel;

pub const DIM: usize = 64;
pub const TAG: &str = "test-model@1";

/// `serve` on ephemeral ports (the ports', admin and metrics listeners)
/// for `gallery`: the arguments every test server starts with.
pub fn serve_args(gallery: &Path) -> Vec<std::ffi::OsString> {
    let mut args: Vec<std::ffi::OsString> = [
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--metrics-listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
        "--gallery",
    ]
    .iter()
    .map(Into::into)
    .collect();
    args.push(gallery.into());
    args
}

pub struct Server {
    pub child: Child,
    /// The data directory (change logs, audit trail) when the test gave
    /// none: each server its own, so that concurrent tests never share one.
    pub data_dir: Option<tempfile::TempDir>,
    /// The ports' listener (Matcher).
    pub addr: String,
    /// The back office's listener (GalleryAdmin).
    pub admin_addr: String,
    pub metrics: String,
}

impl Server {
    pub fn start(gallery: &Path, extra: &[&str]) -> Server {
        Self::start_with_env(gallery, &[], extra)
    }

    pub fn start_with_env(gallery: &Path, env: &[(&str, &str)], extra: &[&str]) -> Server {
        Self::start_with_limit(gallery, env, extra, None)
    }

    /// Starts the server with regular files limited to `file_blocks`
    /// blocks (`ulimit -f`, SIGXFSZ ignored), so that a write past the
    /// limit fails with EFBIG as a write to a full disk would fail.
    pub fn start_with_limit(
        gallery: &Path,
        env: &[(&str, &str)],
        extra: &[&str],
        file_blocks: Option<u64>,
    ) -> Server {
        let bin = env!("CARGO_BIN_EXE_facegate");
        let mut cmd = match file_blocks {
            None => Command::new(bin),
            Some(blocks) => {
                let mut c = Command::new("sh");
                c.arg("-c")
                    .arg(format!(
                        "ulimit -f {blocks} && trap '' XFSZ && exec \"$0\" \"$@\""
                    ))
                    .arg(bin);
                c
            }
        };
        let data_dir = (!extra.contains(&"--data-dir")).then(|| tempfile::tempdir().unwrap());
        let data_args: Vec<&std::ffi::OsStr> = match &data_dir {
            Some(d) => vec!["--data-dir".as_ref(), d.path().as_os_str()],
            None => Vec::new(),
        };
        // A listener the test places itself (`extra`) replaces the default.
        let mut defaults = serve_args(gallery);
        for flag in ["--listen", "--admin-listen"] {
            if extra.contains(&flag)
                && let Some(i) = defaults.iter().position(|a| a == flag)
            {
                defaults.drain(i..i + 2);
            }
        }
        let mut child = cmd
            .args(defaults)
            .args(extra)
            .args(data_args)
            .envs(env.iter().copied())
            .env(
                "RUST_LOG",
                std::env::var("FACEGATE_TEST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("facegate starts");
        // "facegate metrics on URL" and "facegate admin listening on ADDR"
        // come first, "facegate listening on ADDR" when ready.
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let (mut addr, mut admin_addr, mut metrics) = (String::new(), String::new(), String::new());
        while addr.is_empty() {
            let mut line = String::new();
            assert!(
                out.read_line(&mut line).unwrap() > 0,
                "facegate exited before listening"
            );
            if let Some(m) = line.trim().strip_prefix("facegate metrics on ") {
                metrics = m.to_string();
            } else if let Some(a) = line.trim().strip_prefix("facegate admin listening on ") {
                admin_addr = a.to_string();
            } else if let Some(a) = line.trim().strip_prefix("facegate listening on ") {
                addr = a.to_string();
            }
        }
        assert!(!admin_addr.is_empty(), "admin address printed before ready");
        Server {
            child,
            data_dir,
            addr,
            admin_addr,
            metrics,
        }
    }

    pub async fn admin(&self) -> GalleryAdminClient<Channel> {
        GalleryAdminClient::connect(format!("http://{}", self.admin_addr))
            .await
            .unwrap()
    }

    pub async fn client(&self) -> MatcherClient<Channel> {
        MatcherClient::connect(format!("http://{}", self.addr))
            .await
            .unwrap()
    }

    pub fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct Fixture {
    pub _dir: tempfile::TempDir,
    pub path: PathBuf,
    pub synth: Synth,
    pub engine: CpuEngine,
}

pub fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let synth = Synth::new(SynthConfig {
        subjects: 400,
        probes: 100,
        dim: DIM,
        mated_fraction: 0.8,
        seed: 4,
    })
    .unwrap();
    let ids = synth.gallery_ids();
    let mut rows = synth.gallery_rows();
    let mut data = Vec::new();
    while let Some((_, r)) = rows.next_with_id() {
        data.extend_from_slice(r);
    }
    let path = dir.path().join("g.fgal");
    let opts = BuildOptions {
        scan_type: ElementType::Int8,
        model_tag: TAG.into(),
        overwrite: false,
    };
    build_gallery(
        &path,
        &mut SliceRows::new(&data, DIM, "t").unwrap(),
        &ids,
        "ids",
        &opts,
        &mut |_| {},
    )
    .unwrap();
    let engine = CpuEngine::new(ScanTarget::whole(Arc::new(Gallery::open(&path).unwrap())));
    Fixture {
        _dir: dir,
        path,
        synth,
        engine,
    }
}

pub fn identify(probe: Vec<f32>, k: u32, id: &str) -> IdentifyRequest {
    IdentifyRequest {
        probe,
        top_k: k,
        request_id: id.into(),
        model_tag: TAG.into(),
        ..Default::default()
    }
}

/// GET over plain HTTP/1.1; the body of a 200.
pub async fn http_get(url: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_once('/').unwrap();
    let mut s = tokio::net::TcpStream::connect(host).await.unwrap();
    let req = format!("GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).await.unwrap();
    assert!(
        buf.starts_with("HTTP/1.1 200"),
        "{}",
        &buf[..buf.len().min(200)]
    );
    buf.split_once("\r\n\r\n").unwrap().1.to_string()
}

/// The value of one series in a text exposition (absent: 0).
pub fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0.0)
}

/// `facegate keygen NAME`: the token and the keys-file line.
pub fn keygen(name: &str) -> (String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_facegate"))
        .args(["keygen", name])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let field = |prefix: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap()
            .to_string()
    };
    (field("token: "), field("keys file line: "))
}

/// `msg` with the API key `token` in its `authorization` header.
pub fn with_key<T>(msg: T, token: &str) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    let value: tonic::metadata::MetadataValue<_> = format!("Bearer {token}").parse().unwrap();
    req.metadata_mut().insert("authorization", value);
    req
}

/// A server run in this process (so that the test can give it a clock it
/// moves), stopped when dropped.
pub struct InProcess {
    pub addr: String,
    pub admin_addr: String,
    pub metrics: String,
    pub task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Drop for InProcess {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `serve::run` in this process on `f`'s gallery with `data` as its data
/// directory, the CPU engine, ephemeral ports and `clock`; `tweak` changes
/// any other setting. Returns once both listeners accept connections.
pub async fn serve_in_process(
    f: &Fixture,
    data: &std::path::Path,
    clock: Arc<facegate_core::clock::ManualClock>,
    tweak: impl FnOnce(&mut facegate_server::config::Settings),
) -> InProcess {
    use facegate_server::config::{EngineChoice, Settings};
    use std::time::{Duration, Instant};
    let (port, admin, metrics) = (free_port(), free_port(), free_port());
    let mut settings = Settings {
        gallery: Some(f.path.clone()),
        listen: ([127, 0, 0, 1], port).into(),
        admin_listen: ([127, 0, 0, 1], admin).into(),
        metrics_listen: ([127, 0, 0, 1], metrics).into(),
        engine: EngineChoice::Cpu,
        data_dir: data.to_path_buf(),
        ..Settings::defaults()
    };
    tweak(&mut settings);
    let server = InProcess {
        addr: format!("127.0.0.1:{port}"),
        admin_addr: format!("127.0.0.1:{admin}"),
        metrics: format!("http://127.0.0.1:{metrics}/metrics"),
        task: tokio::spawn(facegate_server::serve::run(settings, clock)),
    };
    let ready_by = Instant::now() + Duration::from_secs(15);
    while Instant::now() < ready_by {
        assert!(!server.task.is_finished(), "the server stopped");
        if tokio::net::TcpStream::connect(&server.admin_addr)
            .await
            .is_ok()
            && tokio::net::TcpStream::connect(&server.addr).await.is_ok()
        {
            return server;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the server did not start");
}

/// A subject's travel history from the back office at `admin`: each
/// record's id and encounter id, in capture order.
pub async fn travel_history(admin: &str, subject: &str) -> Vec<(u64, String)> {
    use facegate_api::v1::TravelHistoryRequest;
    use facegate_api::v1::encounters_client::EncountersClient;
    let mut office = EncountersClient::connect(format!("http://{admin}"))
        .await
        .unwrap();
    let history = office
        .travel_history(TravelHistoryRequest {
            subject_id: subject.into(),
        })
        .await
        .unwrap()
        .into_inner();
    history
        .encounters
        .iter()
        .map(|e| {
            (
                e.record_id,
                e.capture.as_ref().unwrap().encounter_id.clone(),
            )
        })
        .collect()
}
