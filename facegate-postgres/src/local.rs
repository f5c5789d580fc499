//! A private PostgreSQL server from the machine's own packages (Debian's
//! `postgresql`), started in a temporary directory on a free loopback port:
//! what the tests and benchmarks of the shared store run against, since a
//! real server is the only honest stand-in for the agency's.
//!
//! PostgreSQL refuses to run as root, so as root the server runs as the
//! `postgres` user (`runuser`), on a directory it owns. A watchdog process,
//! in a session of its own, stops the server and removes the directory
//! when the process that started it is gone, however it ended (a failed
//! test, SIGKILL), so no test run leaves a server behind.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Why the local server could not be started or used.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    /// No PostgreSQL server binaries were found.
    #[error(
        "no PostgreSQL server binaries (initdb, pg_ctl) under /usr/lib/postgresql/*/bin or \
         $FACEGATE_PG_BIN: install Debian's `postgresql` package"
    )]
    NoBinaries,
    /// A step failed.
    #[error("{step}: {reason}")]
    Step {
        /// What was being done.
        step: &'static str,
        /// What went wrong (the command's output, or the OS error).
        reason: String,
    },
}

/// A running private PostgreSQL server; stopped and removed when dropped.
#[derive(Debug)]
pub struct LocalPostgres {
    dir: PathBuf,
    bin: PathBuf,
    port: u16,
    as_postgres: bool,
    /// Server options beyond the port and socket (TLS's files).
    options: String,
}

/// What a TLS test server presents and demands, as PEM text.
#[derive(Debug, Clone)]
pub struct LocalTls {
    /// The server's certificate chain.
    pub cert_pem: String,
    /// Its private key.
    pub key_pem: String,
    /// The CA client certificates must chain to: with it, a TCP client is
    /// let in only by a certificate naming the role ([`ROLE`]); without
    /// it, by TLS alone.
    pub client_ca_pem: Option<String>,
}

/// The role the server is initialised with (trust authentication on
/// loopback and its socket: a test server only).
pub const ROLE: &str = "facegate";

impl LocalPostgres {
    /// Initialises a cluster in a fresh temporary directory and starts it;
    /// it accepts connections when this returns.
    pub fn start() -> Result<LocalPostgres, LocalError> {
        LocalPostgres::start_with(None)
    }

    /// A server whose TCP clients must use TLS (plain-text TCP is
    /// refused), with `tls`'s certificate; administration goes through
    /// its Unix socket.
    pub fn start_tls(tls: &LocalTls) -> Result<LocalPostgres, LocalError> {
        LocalPostgres::start_with(Some(tls))
    }

    fn start_with(tls: Option<&LocalTls>) -> Result<LocalPostgres, LocalError> {
        let bin = binaries().ok_or(LocalError::NoBinaries)?;
        let as_postgres = is_root();
        let dir = make_dir(as_postgres)?;
        let port = free_port()?;
        let mut server = LocalPostgres {
            dir,
            bin,
            port,
            as_postgres,
            options: String::new(),
        };
        let data = server.data_dir();
        let data = data.to_string_lossy();
        server.run(
            "initdb",
            &[
                "-D",
                &data,
                "-A",
                "trust",
                "-U",
                ROLE,
                "--no-sync",
                "-E",
                "UTF8",
            ],
        )?;
        if let Some(tls) = tls {
            server.options = server.require_tls(tls)?;
        }
        server.pg_ctl_start()?;
        server.watch()?;
        Ok(server)
    }

    /// Writes `tls`'s files into the cluster and a `pg_hba.conf` that
    /// admits TCP clients only over TLS; returns the server options that
    /// name the files.
    fn require_tls(&self, tls: &LocalTls) -> Result<String, LocalError> {
        let step = |reason: String| LocalError::Step {
            step: "TLS files",
            reason,
        };
        let data = self.data_dir();
        let mut options = String::from(" -c ssl=on");
        let files = [
            ("server.crt", Some(&tls.cert_pem), "ssl_cert_file"),
            ("server.key", Some(&tls.key_pem), "ssl_key_file"),
            ("client_ca.crt", tls.client_ca_pem.as_ref(), "ssl_ca_file"),
        ];
        for (name, pem, option) in files {
            let Some(pem) = pem else { continue };
            let path = data.join(name);
            write_private(&path, pem, self.as_postgres).map_err(step)?;
            options.push_str(&format!(" -c {option}={}", path.display()));
        }
        let tcp = match tls.client_ca_pem {
            Some(_) => "cert",
            None => "trust",
        };
        let hba = format!(
            "local all all trust\n\
             hostssl all all 127.0.0.1/32 {tcp}\n\
             hostnossl all all 127.0.0.1/32 reject\n"
        );
        std::fs::write(data.join("pg_hba.conf"), hba).map_err(|e| step(e.to_string()))?;
        Ok(options)
    }

    /// The connection URL of database `name` (over TCP on loopback).
    pub fn url(&self, name: &str) -> String {
        format!("postgres://{ROLE}@127.0.0.1:{}/{name}", self.port)
    }

    /// The loopback port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The connection string of database `name` through the server's
    /// Unix socket, which a TLS server admits without TLS.
    fn socket_url(&self, name: &str) -> String {
        format!(
            "host={} port={} user={ROLE} dbname={name}",
            self.dir.display(),
            self.port
        )
    }

    /// Creates an empty database `name` (letters, digits and `_`) and
    /// returns its URL. Blocking: not on an async runtime's thread.
    pub fn create_database(&self, name: &str) -> Result<String, LocalError> {
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(LocalError::Step {
                step: "create database",
                reason: format!("{name:?} is not a plain database name"),
            });
        }
        let mut admin = postgres::Client::connect(&self.socket_url("postgres"), postgres::NoTls)
            .map_err(|e| LocalError::Step {
                step: "connect",
                reason: e.to_string(),
            })?;
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .map_err(|e| LocalError::Step {
                step: "create database",
                reason: e.to_string(),
            })?;
        Ok(self.url(name))
    }

    /// Kills the server at once, as a crash or a pulled plug would
    /// (`pg_ctl stop -m immediate`: no checkpoint, recovery from the WAL
    /// at the next start).
    pub fn crash(&self) -> Result<(), LocalError> {
        self.pg_ctl(&["stop", "-m", "immediate", "-w"])
    }

    /// Starts the server again after [`LocalPostgres::crash`], on the same
    /// port and files.
    pub fn restart(&self) -> Result<(), LocalError> {
        self.pg_ctl_start()
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn pg_ctl_start(&self) -> Result<(), LocalError> {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=300{}",
            self.port,
            self.dir.display(),
            self.options
        );
        let log = self.dir.join("log");
        self.pg_ctl(&[
            "start",
            "-w",
            "-t",
            "60",
            "-o",
            &options,
            "-l",
            &log.to_string_lossy(),
        ])
    }

    fn pg_ctl(&self, args: &[&str]) -> Result<(), LocalError> {
        let data = self.data_dir();
        let mut all = vec!["-D", data.to_str().unwrap_or_default()];
        all.extend_from_slice(args);
        self.run("pg_ctl", &all)
    }

    /// Runs one of the server's programs (as `postgres` when root).
    fn run(&self, program: &'static str, args: &[&str]) -> Result<(), LocalError> {
        let out = self
            .command(program)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| LocalError::Step {
                step: program,
                reason: e.to_string(),
            })?;
        if out.status.success() {
            return Ok(());
        }
        Err(LocalError::Step {
            step: program,
            reason: format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        })
    }

    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        }
    }

    /// Starts the watchdog: in its own session, it waits for this process
    /// to end, then stops the server and removes its directory.
    fn watch(&self) -> Result<(), LocalError> {
        let stop = format!(
            "{} -D {} stop -m immediate",
            self.bin.join("pg_ctl").display(),
            self.data_dir().display()
        );
        let stop = if self.as_postgres {
            format!("runuser -u postgres -- {stop}")
        } else {
            stop
        };
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; {stop} >/dev/null 2>&1; rm -rf {dir}",
            pid = std::process::id(),
            dir = self.dir.display()
        );
        Command::new("setsid")
            .args(["sh", "-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map(drop)
            .map_err(|e| LocalError::Step {
                step: "watchdog",
                reason: e.to_string(),
            })
    }
}

impl Drop for LocalPostgres {
    fn drop(&mut self) {
        // Best effort: the watchdog does the same if this fails.
        let _ = self.pg_ctl(&["stop", "-m", "fast", "-w"]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The newest installed server's binaries, or `$FACEGATE_PG_BIN`.
fn binaries() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("FACEGATE_PG_BIN") {
        return Some(PathBuf::from(dir));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

/// A fresh directory under the system's temporary directory, owned by
/// `postgres` when the server will run as that user.
fn make_dir(as_postgres: bool) -> Result<PathBuf, LocalError> {
    let step = |reason: String| LocalError::Step {
        step: "temporary directory",
        reason,
    };
    let dir = tempfile::Builder::new()
        .prefix("facegate-pg-")
        .tempdir()
        .map_err(|e| step(e.to_string()))?
        .keep();
    if as_postgres {
        chown_postgres(&dir).map_err(step)?;
    }
    Ok(dir)
}

/// Writes `text` to `path`, readable by its owner only (PostgreSQL
/// refuses a key file others can read), owned by `postgres` when the
/// server runs as that user.
fn write_private(path: &Path, text: &str, as_postgres: bool) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    match as_postgres {
        true => chown_postgres(path),
        false => Ok(()),
    }
}

fn chown_postgres(dir: &Path) -> Result<(), String> {
    let out = Command::new("chown")
        .args(["postgres:postgres"])
        .arg(dir)
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// A loopback port free now (the kernel's choice; the server takes it a
/// moment later).
fn free_port() -> Result<u16, LocalError> {
    let started = Instant::now();
    loop {
        match TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()) {
            Ok(a) => return Ok(a.port()),
            Err(e) if started.elapsed() > Duration::from_secs(5) => {
                return Err(LocalError::Step {
                    step: "free port",
                    reason: e.to_string(),
                });
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}
