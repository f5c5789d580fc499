//! `facegate-index check`: full verification of a gallery.

use std::path::PathBuf;

use facegate_core::Gallery;

use crate::progress;

/// Arguments of `check`.
#[derive(clap::Args)]
pub struct Args {
    /// Gallery file.
    pub gallery: PathBuf,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let g = Gallery::open(&a.gallery)?;
    let pb = progress::bar(g.file_bytes(), "verifying", true);
    let report = g.verify(&mut |done| pb.set_position(done))?;
    pb.finish_and_clear();
    println!(
        "{}: OK ({} sections, {} bytes verified; {} rows, {} subjects)",
        a.gallery.display(),
        report.sections_checked,
        report.bytes_checked,
        g.rows(),
        g.subjects()
    );
    Ok(())
}
