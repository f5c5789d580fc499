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
    /// cooperative matrices...); the engine asks for none of it.
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
            required_features: wgpu::Features::empty(),
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

    /// Device-to-device copy bandwidth, bytes read plus written per second:
    /// `copies` copies of a `bytes` buffer, timed from submission to
    /// completion after one warm-up. The physical limit the benchmark puts
    /// beside the scan, measured in the same run.
    pub fn copy_bandwidth(&self, bytes: u64, copies: u32) -> Result<f64, crate::GpuError> {
        let buffer = |label| {
            self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: bytes,
                usage: wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        };
        let (a, b) = (buffer("copy source"), buffer("copy target"));
        let run = |n: u32| -> Result<f64, crate::GpuError> {
            let mut enc = self.device.create_command_encoder(&Default::default());
            for _ in 0..n {
                enc.copy_buffer_to_buffer(&a, 0, &b, 0, bytes);
            }
            let t = std::time::Instant::now();
            self.queue.submit([enc.finish()]);
            self.device
                .poll(wgpu::PollType::wait_indefinitely())
                .map_err(|e| crate::GpuError::Operation(format!("waiting for copies: {e}")))?;
            Ok(t.elapsed().as_secs_f64())
        };
        run(1)?;
        let secs = run(copies)?;
        Ok(2.0 * bytes as f64 * f64::from(copies) / secs)
    }

    /// "name (driver, type)" for logs and `GalleryInfo`.
    pub fn describe(&self) -> String {
        format!(
            "{} ({}, {:?})",
            self.info.name, self.info.driver, self.info.device_type
        )
    }
}
