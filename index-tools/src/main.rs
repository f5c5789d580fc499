//! `facegate-index`: the offline tools a data engineer uses to make, inspect,
//! verify and query facegate gallery files.
//!
//! The command-line interface is stable (scripts call it): see
//! docs/index-tools.md.

mod cmd;
mod progress;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "facegate-index",
    version,
    about = "Build, inspect, verify and search facegate gallery files; report on encounters"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate a synthetic population (.npy embeddings, ids, probes, ground truth).
    Synth(cmd::synth::Args),
    /// Build a gallery file from embeddings (.npy float32 [N, d]) and an ids file.
    Build(cmd::build::Args),
    /// Print a gallery's header and sections.
    Info(cmd::info::Args),
    /// Verify every checksum and table of a gallery; exits non-zero on any corruption.
    Check(cmd::check::Args),
    /// Search a gallery with probes from a .npy file and write ranked candidates as CSV.
    Search(cmd::search::Args),
    /// Fold a gallery's change log (online enrolments and removals) into a new gallery generation.
    Compact(cmd::compact::Args),
    /// Split a gallery into N shard galleries by subject (a stable hash of the id), with a
    /// shard map naming each file and generation.
    Shard(cmd::shard::Args),
    /// Synthesise a population, build its gallery, search it and report error rates per group.
    Demo(cmd::demo::Args),
    /// Measure accuracy on probes with known truth: FNIR at target FPIRs, CMC, DET and EER,
    /// per-group rates with bootstrap intervals; writes report.json, report.md, scores.csv and plots.
    Eval(cmd::eval::Args),
    /// Find the threshold meeting a target FPIR on a gallery (and on manifests of several
    /// sizes) and write it beside the gallery as GALLERY.calibration.json for the server.
    Calibrate(cmd::calibrate::Args),
    /// Verify a server's audit trail (numbering, chain) and print the records of a port, subject or RPC; expire old files.
    Audit(cmd::audit::Args),
    /// Make the Ed25519 key pair that signs the audit trail's checkpoints (PKCS#8 and SPKI PEM);
    /// prints its key id.
    AuditKey(cmd::audit_key::Args),
    /// Per store and category, the oldest item and whether everything is
    /// inside the retention policy (exit status 1 when anything is overdue).
    RetentionReport(cmd::retention::Args),
    /// Reports over a server's encounter store (history, stay, overstays, irregular movements) and synthetic stores.
    Encounters(cmd::encounters::Args),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Synth(a) => cmd::synth::run(a),
        Command::Build(a) => cmd::build::run(a),
        Command::Info(a) => cmd::info::run(a),
        Command::Check(a) => cmd::check::run(a),
        Command::Search(a) => cmd::search::run(a),
        Command::Demo(a) => cmd::demo::run(a),
        Command::Eval(a) => cmd::eval::run(a),
        Command::Compact(a) => cmd::compact::run(a),
        Command::Shard(a) => cmd::shard::run(a),
        Command::Calibrate(a) => cmd::calibrate::run(a),
        Command::Audit(a) => cmd::audit::run(a),
        Command::AuditKey(a) => cmd::audit_key::run(a),
        Command::RetentionReport(a) => cmd::retention::run(a),
        Command::Encounters(a) => cmd::encounters::run(a),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
