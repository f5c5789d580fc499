//! `facegate-index audit-key`: makes the Ed25519 key pair that signs the
//! audit trail's checkpoints (`facegate serve --audit-signing-key`), in the
//! PEM formats `openssl pkey` reads, and prints its key id.

use std::path::PathBuf;

use anyhow::Context;
use facegate_core::audit::signing::write_new_pair;

/// Arguments of `audit-key`.
#[derive(clap::Args)]
pub struct Args {
    /// Directory to write `audit-signing.key.pem` (mode 0600; the server's
    /// only) and `audit-signing.pub.pem` (for verifiers) into; an existing
    /// key there is never replaced.
    #[arg(long)]
    pub out_dir: PathBuf,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let (key, private, public) = write_new_pair(&a.out_dir)
        .with_context(|| format!("writing an audit signing key into {}", a.out_dir.display()))?;
    eprintln!(
        "{}: private key (give it to the server with --audit-signing-key; keep it off backups \
         verifiers can read)\n{}: public key (give it to verifiers: facegate-index audit DIR \
         --public-key FILE)",
        private.display(),
        public.display()
    );
    println!("{}", key.id());
    Ok(())
}
