//! `facegate-index info`: header and sections of a gallery.

use std::path::PathBuf;

use facegate_core::Gallery;

/// Arguments of `info`.
#[derive(clap::Args)]
pub struct Args {
    /// Gallery file.
    pub gallery: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(serde::Serialize)]
struct Info<'a> {
    path: String,
    format_version: u32,
    dim: u32,
    rows: u64,
    subjects: u64,
    scan_type: &'a str,
    rescore_f16: bool,
    model_tag: &'a str,
    generation: String,
    /// Set for a compacted gallery: the parent generation and the last change folded in.
    compacted_from: Option<String>,
    compacted_through_change: Option<u64>,
    created_unix: u64,
    max_templates_per_subject: u32,
    file_bytes: u64,
    sections: Vec<Section>,
}

#[derive(serde::Serialize)]
struct Section {
    kind: &'static str,
    offset: u64,
    length: u64,
    xxh3: String,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let g = Gallery::open(&a.gallery)?;
    let h = g.header();
    let info = Info {
        path: a.gallery.display().to_string(),
        format_version: 1,
        dim: h.dim,
        rows: h.rows,
        subjects: h.subjects,
        scan_type: h.scan_type.name(),
        rescore_f16: h.has_rescore,
        model_tag: &h.model_tag,
        generation: format!("{:016x}", h.generation),
        compacted_from: h.lineage.map(|l| format!("{:016x}", l.parent_generation)),
        compacted_through_change: h.lineage.map(|l| l.through_sequence),
        created_unix: h.created_unix,
        max_templates_per_subject: h.max_templates_per_subject,
        file_bytes: g.file_bytes(),
        sections: h
            .sections
            .iter()
            .map(|s| Section {
                kind: s.kind.name(),
                offset: s.offset,
                length: s.length,
                xxh3: format!("{:016x}", s.checksum),
            })
            .collect(),
    };
    if a.json {
        println!("{}", serde_json::to_string_pretty(&info)?);
        return Ok(());
    }
    println!("gallery      {}", info.path);
    println!("format       v{}", info.format_version);
    println!("model tag    {}", info.model_tag);
    println!("rows         {}", info.rows);
    println!(
        "subjects     {} (at most {} templates each)",
        info.subjects, info.max_templates_per_subject
    );
    println!("dimension    {}", info.dim);
    println!(
        "scan rows    {}{}",
        info.scan_type,
        if info.rescore_f16 {
            " + f16 re-score rows"
        } else {
            ""
        }
    );
    println!("generation   {}", info.generation);
    if let (Some(parent), Some(seq)) = (&info.compacted_from, info.compacted_through_change) {
        println!("compacted    from {parent} through change {seq}");
    }
    println!("created      {} (unix seconds)", info.created_unix);
    println!("file bytes   {}", info.file_bytes);
    println!("sections:");
    for s in &info.sections {
        println!(
            "  {:<20} offset {:>14} length {:>14} xxh3 {}",
            s.kind, s.offset, s.length, s.xxh3
        );
    }
    Ok(())
}
