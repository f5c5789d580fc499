//! Compute pipelines for one gallery element type.

use facegate_core::ElementType;

use crate::shaders::Kernel;

/// The score pipeline for the gallery's element type and the top-k pipeline.
pub struct Pipelines {
    /// Scores a probe batch against a chunk of rows.
    pub score: wgpu::ComputePipeline,
    /// Selects and merges the best candidates.
    pub topk: wgpu::ComputePipeline,
}

/// Compiles `kernel` (the shared prelude, then its file) into a pipeline whose
/// bind group layout is derived from the shader.
fn pipeline(device: &wgpu::Device, kernel: Kernel) -> wgpu::ComputePipeline {
    let label = kernel.file_name();
    let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some(label),
        source: wgpu::ShaderSource::Wgsl(kernel.source().into()),
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
        Pipelines {
            score: pipeline(device, Kernel::score(ty)),
            topk: pipeline(device, Kernel::Topk),
        }
    }
}
