//! `facegate-index audit`: checks a server's audit trail and answers the
//! auditor's questions (who searched at this port, who learnt of this
//! subject) by printing the matching records; with `--expire-before`, first
//! expires the old files under the retention policy (the server stopped);
//! with `--public-key`, also verifies the signed checkpoints
//! ([`super::audit_seals`]).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use facegate_core::audit::{
    AuditError, AuditEvent, AuditRecord, CHECKPOINT_FILE, SEALS_FILE, TrailSummary, expire_dir,
    read_dir,
};
use facegate_core::clock::{SystemClock, UnixMillis};
use facegate_core::encounter::Day;

/// A record as printed: the file's fields in the file's order, without the
/// chain (which only means something next to the line before it).
#[derive(serde::Serialize)]
struct Printed<'a> {
    seq: u64,
    #[serde(flatten)]
    event: &'a AuditEvent,
}

/// Arguments of `audit`.
#[derive(clap::Args)]
pub struct Args {
    /// The server's audit directory (`--audit-dir`).
    pub dir: PathBuf,
    /// Print the records of this port: those naming it in `capture.port_id`
    /// or made with its API key (`principal`).
    #[arg(long)]
    pub port: Option<String>,
    /// Print the records that named or disclosed this subject.
    #[arg(long)]
    pub subject: Option<String>,
    /// Print the records of this RPC (Identify, IdentifyStream, Verify, Enroll, Remove, Reload).
    #[arg(long)]
    pub rpc: Option<String>,
    /// Print every record (the filters above imply it for what they match).
    #[arg(long)]
    pub all: bool,
    /// Before checking, expire under the retention policy the files whose
    /// records are all older than this day (00:00 UTC): a checkpoint of
    /// what is dropped is made durable first, so the rest still verifies.
    /// Only while the server is stopped (it holds the trail's lock).
    #[arg(long, value_name = "YYYY-MM-DD")]
    pub expire_before: Option<Day>,
    /// As --expire-before, with the cutoff as an instant (Unix ms).
    #[arg(long, value_name = "MS", conflicts_with = "expire_before")]
    pub expire_before_unix_ms: Option<i64>,
    /// Also verify the signed checkpoints with this public key (SPKI PEM,
    /// `audit-signing.pub.pem`); repeat it for keys used before a rotation.
    /// Any failing checkpoint makes the command fail.
    #[arg(long, value_name = "FILE")]
    pub public_key: Vec<PathBuf>,
}

impl Args {
    fn wants(&self, r: &AuditRecord) -> bool {
        let e = &r.event;
        let filtered = self.port.is_some() || self.subject.is_some() || self.rpc.is_some();
        (self.all || filtered)
            && self
                .port
                .as_ref()
                .is_none_or(|p| &e.port_id == p || &e.principal == p)
            && self.rpc.as_ref().is_none_or(|p| &e.rpc == p)
            && self
                .subject
                .as_ref()
                .is_none_or(|s| e.subjects.iter().any(|x| x == s))
    }
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let cutoff = a
        .expire_before
        .map(Day::start)
        .or(a.expire_before_unix_ms.map(UnixMillis));
    if let Some(cutoff) = cutoff {
        expire(&a.dir, cutoff)?;
    }
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut printed = 0u64;
    let mut write_error = None;
    let summary = read_dir(&a.dir, &mut |r| {
        if write_error.is_none() && a.wants(r) {
            printed += 1;
            let printed = Printed {
                seq: r.seq,
                event: &r.event,
            };
            let written = serde_json::to_writer(&mut out, &printed)
                .map_err(std::io::Error::from)
                .and_then(|()| writeln!(out));
            if let Err(e) = written {
                write_error = Some(e);
            }
        }
    })?;
    if let Some(e) = write_error {
        return Err(e).context("writing records");
    }
    out.flush().context("writing records")?;
    print_summary(&a.dir, &summary, printed);
    if !a.public_key.is_empty() {
        super::audit_seals::check(&a.dir, &a.public_key)?;
    } else if a.dir.join(SEALS_FILE).exists() {
        eprintln!(
            "{}: signatures were not checked: the trail has signed checkpoints ({SEALS_FILE}); \
             give --public-key to verify them",
            a.dir.display()
        );
    }
    Ok(())
}

/// Expires the trail in `dir` before `cutoff` and says what went.
fn expire(dir: &Path, cutoff: UnixMillis) -> anyhow::Result<()> {
    let report = match expire_dir(dir, cutoff, &SystemClock) {
        Err(AuditError::Locked(_)) => bail!(
            "{}: a running server holds this audit trail (its LOCK); nothing was expired. \
             Stop the server first, or let the server expire its own trail",
            dir.display()
        ),
        result => result.with_context(|| {
            format!(
                "expiring the audit trail in {} before unix ms {}; nothing more was deleted",
                dir.display(),
                cutoff.0
            )
        })?,
    };
    for path in &report.finished {
        eprintln!(
            "{}: deleted (an earlier expiry covered it in the checkpoint, then stopped)",
            path.display()
        );
    }
    match &report.expiry {
        Some(e) => eprintln!(
            "{}: expired records {}..={} in {} files (newest record at unix ms {}, before the cutoff unix ms {}); what was expired is in {}",
            dir.display(),
            e.first_seq,
            e.last_seq,
            e.files.len(),
            e.newest_record_unix_ms,
            e.cutoff_unix_ms,
            dir.join(CHECKPOINT_FILE).display()
        ),
        None => eprintln!(
            "{}: no file is old enough to expire before unix ms {}",
            dir.display(),
            cutoff.0
        ),
    }
    Ok(())
}

/// The check's outcome on stderr: damage aside (an error), what was read,
/// what the retention policy expired, and what a crash left.
fn print_summary(dir: &Path, summary: &TrailSummary, printed: u64) {
    for (path, bytes) in &summary.incomplete_tails {
        eprintln!(
            "{}: ends in an incomplete record of {bytes} bytes (a crash during a write; its request was not answered)",
            path.display()
        );
    }
    for (path, records) in &summary.expired_files_left {
        eprintln!(
            "{}: {records} records expired by the checkpoint but not deleted (an expiry stopped; the next --expire-before deletes them)",
            path.display()
        );
    }
    let span = match (summary.first_time_unix_ms, summary.last_time_unix_ms) {
        (Some(a), Some(b)) => format!(", unix ms {a} to {b}"),
        _ => String::new(),
    };
    let (first, expired) = match &summary.checkpoint {
        Some(c) => (
            c.last_seq + 1,
            format!(
                "; records 1..={} were expired under the retention policy ({} expiries, the last at unix ms {})",
                c.last_seq,
                c.expiries.len(),
                c.expiries.last().map_or(0, |e| e.at_unix_ms)
            ),
        ),
        None => (1, String::new()),
    };
    eprintln!(
        "{}: OK ({} records in {} files, numbered {first}..={} without gaps, chain intact{span}{expired}); {printed} printed",
        dir.display(),
        summary.records,
        summary.files,
        summary.last_seq,
    );
}
