//! The probe templates a load run cycles through: read from a `.npy` file, or
//! synthesised from the same population as the server's demo gallery so that
//! mated probes find their subject, as a real port's captures would.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use facegate_core::npy::NpyRows;
use facegate_core::synth::{Synth, SynthConfig};

/// Probe templates, shared (cheaply cloned) by every request task.
#[derive(Clone, Debug)]
pub struct Probes {
    vectors: Arc<[Vec<f32>]>,
    dim: usize,
}

impl Probes {
    /// Probes from a float32 `[n, d]` `.npy` file (as `facegate-index synth` writes).
    pub fn from_npy(path: &Path) -> anyhow::Result<Probes> {
        let (data, dim) = NpyRows::open(path)
            .and_then(|r| r.read_all())
            .with_context(|| format!("reading probes from {}", path.display()))?;
        Ok(Probes {
            vectors: data.chunks_exact(dim).map(<[f32]>::to_vec).collect(),
            dim,
        })
    }

    /// `cfg.probes` probes of the synthetic population `cfg` (mated and
    /// non-mated, in the generator's proportion).
    pub fn synthesise(cfg: SynthConfig) -> anyhow::Result<Probes> {
        let dim = cfg.dim;
        let n = cfg.probes;
        anyhow::ensure!(n > 0, "at least one probe is needed");
        let synth = Synth::new(cfg).context("synthetic probe population")?;
        Ok(Probes {
            vectors: (0..n).map(|j| synth.probe(j).vector).collect(),
            dim,
        })
    }

    /// Probes given as vectors of `dim` floats each (at least one).
    pub fn from_vectors(vectors: Vec<Vec<f32>>, dim: usize) -> anyhow::Result<Probes> {
        anyhow::ensure!(!vectors.is_empty(), "at least one probe is needed");
        anyhow::ensure!(
            vectors.iter().all(|v| v.len() == dim),
            "every probe must have {dim} floats"
        );
        Ok(Probes {
            vectors: vectors.into(),
            dim,
        })
    }

    /// Floats per probe.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Number of distinct probes.
    pub fn len(&self) -> usize {
        self.vectors.len()
    }

    /// Whether there are none (never true for a constructed set).
    pub fn is_empty(&self) -> bool {
        self.vectors.is_empty()
    }

    /// The probe for request number `i`: requests cycle through the set.
    pub fn cycle(&self, i: u64) -> &[f32] {
        &self.vectors[(i % self.vectors.len() as u64) as usize]
    }
}
