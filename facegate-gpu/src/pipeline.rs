//! Compute pipelines for one gallery element type.

use facegate_core::ElementType;

use crate::shaders;

/// The score pipeline for the gallery's element type and the top-k pipeline.
pub struct Pipelines {
    /// Scores a probe batch against a chunk of rows.
    pub score: wgpu::ComputePipeline,
    /// Selects and merges the best candidates.
    pub topk: wgpu::ComputePipeline,
}

fn pipeline(device: &wgpu::Device, label: &str, source: &str) -> wgpu::ComputePipeline {
    let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some(label),
        source: wgpu::ShaderSource::Wgsl(source.into()),
    });
    device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some(label),
        layout: None,
        module: &module,
        entry_point: Some("main"),
        compilation_options: Default::default(),
        cache: None,
    })
}

impl Pipelines {
    /// Compiles the pipelines (validation errors surface through the caller's error scope).
    pub fn new(device: &wgpu::Device, ty: ElementType) -> Pipelines {
        let (label, source) = match ty {
            ElementType::Int8 => ("score_int8", shaders::SCORE_INT8),
            ElementType::F16 => ("score_f16", shaders::SCORE_F16),
            ElementType::F32 => ("score_f32", shaders::SCORE_F32),
        };
        Pipelines {
            score: pipeline(device, label, source),
            topk: pipeline(device, "topk", shaders::TOPK),
        }
    }
}
