//! `facegate-index audit`: checks a server's audit trail and answers the
//! auditor's questions (who searched at this port, who learnt of this
//! subject) by printing the matching records.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use facegate_core::audit::{AuditEvent, AuditRecord, read_dir};

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
    for (path, bytes) in &summary.incomplete_tails {
        eprintln!(
            "{}: ends in an incomplete record of {bytes} bytes (a crash during a write; its request was not answered)",
            path.display()
        );
    }
    let span = match (summary.first_time_unix_ms, summary.last_time_unix_ms) {
        (Some(a), Some(b)) => format!(", unix ms {a} to {b}"),
        _ => String::new(),
    };
    eprintln!(
        "{}: OK ({} records in {} files, numbered 1..={} without gaps, chain intact{span}); {printed} printed",
        a.dir.display(),
        summary.records,
        summary.files,
        summary.last_seq,
    );
    Ok(())
}
