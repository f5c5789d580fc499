//! Probes checked, normalised and quantised once per request.

use crate::error::InputError;
use crate::quantize::{normalize_into, quantize_i8};

/// A batch of probes ready for any engine: unit-length f32 vectors plus their
/// int8 quantisation (used by int8 scans).
#[derive(Debug, Clone)]
pub struct ProbeBatch {
    dim: usize,
    unit: Vec<f32>,
    quant: Vec<i8>,
    scales: Vec<f32>,
}

impl ProbeBatch {
    /// Checks and normalises `raw` (`count * dim` floats, row-major).
    ///
    /// Errors name the probe by its index in the batch.
    pub fn new(dim: usize, raw: &[f32]) -> Result<ProbeBatch, InputError> {
        if dim == 0 || raw.is_empty() || !raw.len().is_multiple_of(dim) {
            return Err(InputError::Dimension {
                what: "probe".into(),
                expected: dim,
                actual: raw.len(),
            });
        }
        let count = raw.len() / dim;
        let mut unit = vec![0f32; raw.len()];
        let mut quant = vec![0i8; raw.len()];
        let mut scales = Vec::with_capacity(count);
        for (i, (src, dst)) in raw
            .chunks_exact(dim)
            .zip(unit.chunks_exact_mut(dim))
            .enumerate()
        {
            let what = || {
                if count == 1 {
                    "probe".to_string()
                } else {
                    format!("probe {i}")
                }
            };
            normalize_into(src, dst, &what)?;
            scales.push(quantize_i8(dst, &mut quant[i * dim..(i + 1) * dim]));
        }
        Ok(ProbeBatch {
            dim,
            unit,
            quant,
            scales,
        })
    }

    /// Checks one probe against the expected dimension and prepares it.
    pub fn single(dim: usize, probe: &[f32]) -> Result<ProbeBatch, InputError> {
        if probe.len() != dim {
            return Err(InputError::Dimension {
                what: "probe".into(),
                expected: dim,
                actual: probe.len(),
            });
        }
        ProbeBatch::new(dim, probe)
    }

    /// Joins prepared batches into one, in order, without normalising or
    /// quantising again: the server prepares each request's probe on arrival
    /// and the dispatcher then batches probes from many requests.
    ///
    /// Errors when `parts` is empty or the parts differ in dimension.
    pub fn gather<'a>(
        parts: impl IntoIterator<Item = &'a ProbeBatch>,
    ) -> Result<ProbeBatch, InputError> {
        let mut out: Option<ProbeBatch> = None;
        for p in parts {
            match &mut out {
                None => out = Some(p.clone()),
                Some(o) => {
                    if o.dim != p.dim {
                        return Err(InputError::Dimension {
                            what: "probe".into(),
                            expected: o.dim,
                            actual: p.dim,
                        });
                    }
                    o.unit.extend_from_slice(&p.unit);
                    o.quant.extend_from_slice(&p.quant);
                    o.scales.extend_from_slice(&p.scales);
                }
            }
        }
        out.ok_or_else(|| InputError::BadParameter("no probes to gather".into()))
    }

    /// Number of probes.
    pub fn len(&self) -> usize {
        self.scales.len()
    }

    /// Whether the batch is empty (never, once constructed).
    pub fn is_empty(&self) -> bool {
        self.scales.is_empty()
    }

    /// Elements per probe.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Probe `i`, unit length.
    pub fn unit(&self, i: usize) -> &[f32] {
        &self.unit[i * self.dim..(i + 1) * self.dim]
    }

    /// Probe `i` quantised to int8, and its scale.
    pub fn quantized(&self, i: usize) -> (&[i8], f32) {
        (
            &self.quant[i * self.dim..(i + 1) * self.dim],
            self.scales[i],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gather_equals_preparing_the_batch_at_once() {
        let raw: Vec<f32> = (0..12).map(|i| (i as f32 * 0.7).sin()).collect();
        let whole = ProbeBatch::new(4, &raw).unwrap();
        let parts: Vec<ProbeBatch> = raw
            .chunks(4)
            .map(|c| ProbeBatch::single(4, c).unwrap())
            .collect();
        let joined = ProbeBatch::gather(&parts).unwrap();
        assert_eq!(joined.len(), 3);
        for i in 0..3 {
            assert_eq!(joined.unit(i), whole.unit(i));
            assert_eq!(joined.quantized(i), whole.quantized(i));
        }
        assert!(ProbeBatch::gather([]).is_err());
        let other = ProbeBatch::single(3, &[1.0, 0.0, 0.0]).unwrap();
        assert!(ProbeBatch::gather([&parts[0], &other]).is_err());
    }
}
