//! Plain Rust kernels: the reference for the SIMD ones and the fallback.

use half::f16;

use super::NarrowProbes;

pub fn i8_block(probe: &[i8], rows: &[i8], stride: usize, out: &mut [i32]) {
    super::check_block(probe, rows, stride, out);
    for (j, o) in out.iter_mut().enumerate() {
        let row = &rows[j * stride..j * stride + probe.len()];
        *o = probe
            .iter()
            .zip(row)
            .map(|(&a, &b)| i32::from(a) * i32::from(b))
            .sum();
    }
}

/// The batch contract computed directly: `dot(q, r)`, no offset.
pub fn i8_batch_block(probes: &NarrowProbes, rows: &[i8], stride: usize, out: &mut [i32]) {
    let n = super::check_batch(probes, rows, stride, out);
    if n == 0 {
        return;
    }
    for (b, out) in out.chunks_exact_mut(n).enumerate() {
        i8_block(probes.probe(b), rows, stride, out);
    }
}

pub fn f16_block(probe: &[f32], rows: &[f16], stride: usize, out: &mut [f32]) {
    super::check_block(probe, rows, stride, out);
    for (j, o) in out.iter_mut().enumerate() {
        let row = &rows[j * stride..j * stride + probe.len()];
        *o = probe.iter().zip(row).map(|(&a, &b)| a * b.to_f32()).sum();
    }
}

pub fn f32_block(probe: &[f32], rows: &[f32], stride: usize, out: &mut [f32]) {
    super::check_block(probe, rows, stride, out);
    for (j, o) in out.iter_mut().enumerate() {
        let row = &rows[j * stride..j * stride + probe.len()];
        *o = probe.iter().zip(row).map(|(&a, &b)| a * b).sum();
    }
}
