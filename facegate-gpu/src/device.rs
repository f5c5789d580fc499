//! Adapter selection and device creation.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::GpuError;

/// How to choose an adapter.
#[derive(Debug, Clone, Copy, Default)]
pub struct DeviceOptions {
    /// Accept a software adapter (lavapipe) when no hardware one exists.
    /// Tests do; servers only when asked (`--allow-software-gpu`).
    pub allow_software: bool,
}

/// An open device with the facts the engine sizes itself from.
pub struct GpuDevice {
    /// The device.
    pub device: wgpu::Device,
    /// Its queue.
    pub queue: wgpu::Queue,
    /// The adapter (name, driver, type).
    pub info: wgpu::AdapterInfo,
    /// The limits the device was created with (the adapter's own).
    pub limits: wgpu::Limits,
    /// What the adapter offers beyond the baseline (subgroups, f16,
    /// cooperative matrices...); the engine asks only for timestamps.
    pub features: wgpu::Features,
    /// The cooperative-matrix shapes and types the adapter offers (empty
    /// where it offers none), reported so a design that would use them is
    /// chosen from what a real device has.
    pub cooperative_matrices: Vec<wgpu::CooperativeMatrixProperties>,
    lost: Arc<AtomicBool>,
}

impl GpuDevice {
    /// Opens the best Vulkan adapter: discrete, then integrated, then
    /// virtual GPUs, and a software one only if `opts.allow_software`.
    pub fn open(opts: DeviceOptions) -> Result<GpuDevice, GpuError> {
        let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
        desc.backends = wgpu::Backends::VULKAN;
        let instance = wgpu::Instance::new(desc);
        let adapters = pollster::block_on(instance.enumerate_adapters(wgpu::Backends::VULKAN));
        let rank = |t: wgpu::DeviceType| match t {
            wgpu::DeviceType::DiscreteGpu => 0,
            wgpu::DeviceType::IntegratedGpu => 1,
            wgpu::DeviceType::VirtualGpu => 2,
            wgpu::DeviceType::Other => 3,
            wgpu::DeviceType::Cpu => 4,
        };
        let names: Vec<String> = adapters
            .iter()
            .map(|a| {
                let i = a.get_info();
                format!("{} ({:?})", i.name, i.device_type)
            })
            .collect();
        let adapter = adapters
            .into_iter()
            .filter(|a| opts.allow_software || a.get_info().device_type != wgpu::DeviceType::Cpu)
            .min_by_key(|a| rank(a.get_info().device_type))
            .ok_or_else(|| {
                GpuError::NoAdapter(if names.is_empty() {
                    "no Vulkan adapter found (is a Vulkan driver installed?)".into()
                } else {
                    format!(
                        "only software adapters found ({}); allow them explicitly to use one",
                        names.join(", ")
                    )
                })
            })?;
        let info = adapter.get_info();
        let limits = adapter.limits();
        let features = adapter.features();
        let cooperative_matrices = adapter.cooperative_matrix_properties();
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("facegate"),
            // Timestamps only: the stage clock uses them where offered.
            required_features: features & wgpu::Features::TIMESTAMP_QUERY,
            required_limits: limits.clone(),
            experimental_features: wgpu::ExperimentalFeatures::disabled(),
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        }))
        .map_err(|e| GpuError::Device(e.to_string()))?;
        let lost = Arc::new(AtomicBool::new(false));
        let flag = lost.clone();
        device.set_device_lost_callback(move |reason, msg| {
            tracing::error!(?reason, %msg, "GPU device lost");
            flag.store(true, Ordering::SeqCst);
        });
        Ok(GpuDevice {
            device,
            queue,
            info,
            limits,
            features,
            cooperative_matrices,
            lost,
        })
    }

    /// Whether the adapter is a software rasteriser.
    pub fn is_software(&self) -> bool {
        self.info.device_type == wgpu::DeviceType::Cpu
    }

    /// Whether the device has been lost; a lost device answers nothing more.
    pub fn is_lost(&self) -> bool {
        self.lost.load(Ordering::SeqCst)
    }

    /// "name (driver, type)" for logs and `GalleryInfo`.
    pub fn describe(&self) -> String {
        format!(
            "{} ({}, {:?})",
            self.info.name, self.info.driver, self.info.device_type
        )
    }
}
