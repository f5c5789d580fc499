//! Plain Rust kernels: the reference for the SIMD ones and the fallback.

use half::f16;

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
