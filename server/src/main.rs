//! `facegate`: the biometric matching server.

use std::io::IsTerminal;

use anyhow::Context;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use facegate_server::config::Settings;
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    name = "facegate",
    version,
    about = "GPU-accelerated biometric matching server"
)]
struct Cli {
    /// Log as JSON lines instead of text.
    #[arg(long, global = true, env = "FACEGATE_LOG_JSON")]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve a gallery over gRPC (a built-in demo gallery when none is given).
    Serve(Box<Settings>),
    /// Route the ports' API to a gallery split into shards: each shard's
    /// replicas are `facegate serve --shard K/N` servers (docs/scale.md).
    Route(Box<facegate_server::router::settings::RouteSettings>),
    /// Make an API key for a port (or a back-office user): prints the token,
    /// to give to the caller, and the line to add to the keys file.
    Keygen {
        /// The caller's name: the port id for --port-keys.
        name: String,
    },
}

fn keygen(name: &str) -> anyhow::Result<()> {
    if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c == '#') {
        anyhow::bail!("a key name must be non-empty, without spaces or '#'");
    }
    let (token, line) = facegate_server::auth::new_key(name);
    println!("token: {token}");
    println!("keys file line: {line}");
    eprintln!(
        "Give the token to {name} over a secure channel; it is not shown again. Add the line to the keys file."
    );
    Ok(())
}

/// A private directory made for this process, removed when dropped.
struct RuntimeDir(std::path::PathBuf);

impl Drop for RuntimeDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Gives the GPU driver a valid `XDG_RUNTIME_DIR` where the environment has
/// none: a new private directory (mode 0700, as the XDG specification asks
/// of a runtime directory), removed at exit. Mesa's Vulkan drivers probe
/// for a Wayland display while wgpu looks for adapters, and libwayland
/// prints "error: XDG_RUNTIME_DIR is invalid or not set in the environment"
/// at each probe (twice at start-up) when the variable is unset or not an
/// absolute path, as on a server or in a container without a login
/// session: noise that reads like a failure on a newcomer's first run.
/// Must run before any other thread starts: setting a variable races with
/// any thread that reads the environment.
#[cfg(unix)]
fn runtime_dir_for_the_gpu_driver() -> Option<RuntimeDir> {
    use std::os::unix::fs::DirBuilderExt;
    let given = std::env::var_os("XDG_RUNTIME_DIR").map(std::path::PathBuf::from);
    if given.is_some_and(|d| d.is_absolute() && d.is_dir()) {
        return None;
    }
    let name = format!(
        "facegate-runtime-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    );
    let dir = std::env::temp_dir().join(name);
    if let Err(e) = std::fs::DirBuilder::new().mode(0o700).create(&dir) {
        tracing::debug!(error = %e, dir = %dir.display(), "no runtime directory for the GPU driver");
        return None;
    }
    // SAFETY: no other thread exists yet (see above), so none reads the
    // environment while it changes.
    unsafe { std::env::set_var("XDG_RUNTIME_DIR", &dir) };
    Some(RuntimeDir(dir))
}

/// Only Unix GPU drivers look for a runtime directory.
#[cfg(not(unix))]
fn runtime_dir_for_the_gpu_driver() -> Option<RuntimeDir> {
    None
}

/// `facegate serve`'s settings, from its subcommand's matches.
fn serve_settings(matches: &clap::ArgMatches) -> anyhow::Result<Settings> {
    let serve = matches
        .subcommand_matches("serve")
        .context("the serve subcommand was parsed")?;
    Settings::from_matches(serve)
}

/// Says once why the process stops, with its causes: as a log event when
/// the log is JSON lines (a plain line would break them) and error events
/// are logged, else as a plain `error:` line, which RUST_LOG cannot hide.
fn report(e: &anyhow::Error, log_json: bool) {
    if log_json && tracing::enabled!(tracing::Level::ERROR) {
        tracing::error!("{e:#}");
    } else {
        eprintln!("error: {e:#}");
    }
}

fn main() -> std::process::ExitCode {
    // The matches are kept: settings merge by where each value came from.
    let matches = Cli::command().get_matches();
    let cli =
        Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.format(&mut Cli::command()).exit());
    // Level from RUST_LOG (e.g. RUST_LOG=facegate=debug); info by default.
    // Nothing at info level names a subject or carries a template.
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // A log line that cannot be written (stderr on a full disk) is dropped:
    // tracing's fallback would report it with `eprintln!`, which panics on
    // the same failure, and logging must never stop a search or the server.
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .log_internal_errors(false);
    // Colours only for a person at a terminal: `facegate serve 2>log`, a
    // pipe or a journal would get escape codes as text. (On a terminal,
    // tracing's default stands, which honours NO_COLOR.)
    let fmt = if std::io::stderr().is_terminal() {
        fmt
    } else {
        fmt.with_ansi(false)
    };
    if cli.log_json {
        fmt.json().init();
    } else {
        fmt.init();
    }
    let result = match cli.command {
        Command::Keygen { name } => keygen(&name),
        Command::Route(settings) => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(anyhow::Error::from)
            .and_then(|rt| {
                rt.block_on(facegate_server::router::run(
                    *settings,
                    std::sync::Arc::new(facegate_core::clock::SystemClock),
                ))
            }),
        Command::Serve(_) => serve_settings(&matches).and_then(|s| {
            // Here, before the runtime's threads: it changes the environment.
            let _runtime_dir = runtime_dir_for_the_gpu_driver();
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?
                .block_on(facegate_server::serve::run(
                    s,
                    std::sync::Arc::new(facegate_core::clock::SystemClock),
                ))
        }),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            report(&e, cli.log_json);
            std::process::ExitCode::FAILURE
        }
    }
}
