//! Normalisation and quantisation of templates and probes.
//!
//! Every template and probe is L2-normalised so that an inner product is a
//! cosine similarity; int8 rows use a symmetric per-row scale so that the
//! scan reads one byte per element and a single multiply restores the score.

use crate::error::InputError;

/// Largest magnitude of a quantised element; -128 is never used so that
/// `|q| <= 127` holds and the int8 kernels cannot overflow their 16-bit pairs.
pub const I8_MAX: f32 = 127.0;

/// Checks `v` (finite, non-zero) and writes its unit-length copy to `out`.
///
/// `what` names the vector in errors (a file and row, or "probe").
pub fn normalize_into(
    v: &[f32],
    out: &mut [f32],
    what: &dyn Fn() -> String,
) -> Result<(), InputError> {
    debug_assert_eq!(v.len(), out.len());
    let mut sum = 0.0f64;
    for (i, &x) in v.iter().enumerate() {
        if !x.is_finite() {
            return Err(InputError::NotFinite {
                what: what(),
                index: i,
                value: x,
            });
        }
        sum += f64::from(x) * f64::from(x);
    }
    if sum <= 0.0 || !sum.is_finite() {
        return Err(InputError::ZeroVector { what: what() });
    }
    let inv = 1.0 / sum.sqrt();
    for (o, &x) in out.iter_mut().zip(v) {
        *o = (f64::from(x) * inv) as f32;
    }
    Ok(())
}

/// Quantises a (normalised) vector to int8 with a symmetric scale; returns the scale.
///
/// `v[i] ~= q[i] * scale`. A zero vector yields all zeros and scale 0.
pub fn quantize_i8(v: &[f32], out: &mut [i8]) -> f32 {
    debug_assert!(out.len() >= v.len());
    let max = v.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    if max == 0.0 {
        out.fill(0);
        return 0.0;
    }
    let scale = max / I8_MAX;
    let inv = I8_MAX / max;
    for (o, &x) in out.iter_mut().zip(v) {
        *o = (x * inv).round().clamp(-I8_MAX, I8_MAX) as i8;
    }
    scale
}

/// Converts to half precision, rounding to nearest.
pub fn to_f16(v: &[f32], out: &mut [half::f16]) {
    for (o, &x) in out.iter_mut().zip(v) {
        *o = half::f16::from_f32(x);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_rejects_nan_inf_and_zero() {
        let mut out = [0.0; 3];
        let what = || "row 7".to_string();
        assert!(matches!(
            normalize_into(&[1.0, f32::NAN, 0.0], &mut out, &what),
            Err(InputError::NotFinite { index: 1, .. })
        ));
        assert!(matches!(
            normalize_into(&[f32::INFINITY, 0.0, 0.0], &mut out, &what),
            Err(InputError::NotFinite { index: 0, .. })
        ));
        assert_eq!(
            normalize_into(&[0.0, 0.0, 0.0], &mut out, &what),
            Err(InputError::ZeroVector {
                what: "row 7".into()
            })
        );
    }

    #[test]
    fn normalize_survives_huge_values() {
        let mut out = [0.0; 2];
        normalize_into(&[3e38, 2.5e38], &mut out, &|| String::new()).unwrap();
        let n: f32 = out.iter().map(|x| x * x).sum();
        assert!((n - 1.0).abs() < 1e-6);
    }

    #[test]
    fn quantize_round_trips_within_half_a_step() {
        let v = [0.5, -0.25, 0.125, -0.5, 0.0];
        let mut q = [0i8; 5];
        let s = quantize_i8(&v, &mut q);
        assert_eq!(q[0], 127);
        assert_eq!(q[3], -127);
        for (x, &qi) in v.iter().zip(&q) {
            assert!((x - f32::from(qi) * s).abs() <= s / 2.0 + 1e-7);
        }
    }
}
