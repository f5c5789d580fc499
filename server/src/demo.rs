//! The built-in demo gallery, so that `facegate serve` with no gallery gives a
//! newcomer a working server in one step. It is synthesised on first run into
//! the data directory and reused after.

use std::path::{Path, PathBuf};

use anyhow::Context;
use facegate_core::ElementType;
use facegate_core::format::{BuildOptions, build_gallery};
use facegate_core::synth::{DEMO_SUBJECTS, Synth, SynthConfig};

/// Model tag of the demo gallery; probes must carry it.
pub const DEMO_MODEL_TAG: &str = "synthetic-v1";

/// The demo population's generator. Its definition
/// ([`SynthConfig::demo`]) lives in facegate-core, so that clients draw
/// probes from the same population without linking the server.
pub fn demo_synth() -> anyhow::Result<Synth> {
    Ok(Synth::new(SynthConfig::demo())?)
}

/// Returns the demo gallery's path under `data_dir`, building it if missing.
pub fn ensure_demo_gallery(data_dir: &Path) -> anyhow::Result<PathBuf> {
    let dir = data_dir.join("demo");
    let path = dir.join("gallery.fgal");
    if path.exists() {
        return Ok(path);
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    tracing::info!(path = %path.display(), subjects = DEMO_SUBJECTS, "synthesising the demo gallery (first run only)");
    let synth = demo_synth()?;
    let ids = synth.gallery_ids();
    let mut rows = synth.gallery_rows();
    let built = build_gallery(
        &path,
        &mut rows,
        &ids,
        "demo ids",
        &BuildOptions {
            scan_type: ElementType::Int8,
            model_tag: DEMO_MODEL_TAG.into(),
            overwrite: false,
        },
        &mut |_| {},
    );
    match built {
        // OutputExists: another process built it at the same moment; use theirs.
        Ok(_) | Err(facegate_core::GalleryError::OutputExists(_)) => Ok(path),
        Err(e) => Err(e).with_context(|| format!("building the demo gallery {}", path.display())),
    }
}
