//! One module per subcommand.

pub mod audit;
pub mod audit_key;
pub mod audit_seals;
pub mod build;
pub mod calibrate;
pub mod check;
pub mod compact;
pub mod demo;
pub mod encounters;
pub mod engine;
pub mod eval;
pub mod info;
pub mod retention;
pub mod search;
pub mod shard;
pub mod synth;

use std::path::Path;

/// Refuses to replace an existing file unless `force` is given.
pub fn refuse_existing(path: &Path, force: bool) -> anyhow::Result<()> {
    if !force && path.exists() {
        anyhow::bail!(
            "{}: output exists; pass --force to replace it",
            path.display()
        );
    }
    Ok(())
}
