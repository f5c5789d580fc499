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
}

/// The role the server is initialised with (trust authentication on
/// loopback and its socket: a test server only).
pub const ROLE: &str = "facegate";

impl LocalPostgres {
    /// Initialises a cluster in a fresh temporary directory and starts it;
    /// it accepts connections when this returns.
    pub fn start() -> Result<LocalPostgres, LocalError> {
        let bin = binaries().ok_or(LocalError::NoBinaries)?;
        let as_postgres = is_root();
        let dir = make_dir(as_postgres)?;
        let port = free_port()?;
        let server = LocalPostgres {
            dir,
            bin,
            port,
            as_postgres,
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
        server.pg_ctl_start()?;
        server.watch()?;
        Ok(server)
    }

    /// The connection URL of database `name`.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://{ROLE}@127.0.0.1:{}/{name}", self.port)
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
        let mut admin =
            postgres::Client::connect(&self.url("postgres"), postgres::NoTls).map_err(|e| {
                LocalError::Step {
                    step: "connect",
                    reason: e.to_string(),
                }
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
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=300",
            self.port,
            self.dir.display()
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
