//! Adapter selection and device creation.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::GpuError;

/// What the coop scan kernel needs of a device: f16 and cooperative matrices.
const COOP_FEATURES: wgpu::Features =
    wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX.union(wgpu::Features::SHADER_F16);

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
    /// With `cooperative_matrix`, the device is asked for f16 and
    /// cooperative matrices where the adapter offers both (for
    /// [`crate::shared::ScanKernel::Coop`]; see [`GpuDevice::coop_tile`]).
    pub fn open(opts: DeviceOptions, cooperative_matrix: bool) -> Result<GpuDevice, GpuError> {
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
        let coop = if cooperative_matrix && features.contains(COOP_FEATURES) {
            COOP_FEATURES
        } else {
            wgpu::Features::empty()
        };
        let experimental = if coop.is_empty() {
            wgpu::ExperimentalFeatures::disabled()
        } else {
            // SAFETY: wgpu marks cooperative matrices experimental (its
            // implementation may have bugs). They are asked for only when
            // the caller chose the coop kernel, which is checked against
            // the CPU engine on every device it has run on (tests, the
            // benchmark's "same as CPU" column) before it is used.
            unsafe { wgpu::ExperimentalFeatures::enabled() }
        };
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("facegate"),
            // Timestamps where offered (the stage clock uses them), and
            // cooperative matrices when asked for.
            required_features: (features & wgpu::Features::TIMESTAMP_QUERY) | coop,
            required_limits: limits.clone(),
            experimental_features: experimental,
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

    /// The side of the square f16 x f16 -> f32 cooperative matrices the
    /// coop scan kernel can use here: the first of
    /// [`crate::shared::COOP_TILES`] the device offers, when it was opened
    /// with them and its subgroups hold at most 32 invocations (the kernel
    /// gives each 32 invocations their own matrices); `None` otherwise.
    pub fn coop_tile(&self) -> Option<u32> {
        if !self.device.features().contains(COOP_FEATURES) {
            return None;
        }
        coop_tile_of(&self.cooperative_matrices, self.info.subgroup_max_size)
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

/// The side of the square f16 x f16 -> f32 cooperative matrices among
/// `offered`, the first of [`crate::shared::COOP_TILES`] found, where
/// subgroups hold at most 32 invocations (`subgroup_max`); see
/// [`GpuDevice::coop_tile`].
fn coop_tile_of(offered: &[wgpu::CooperativeMatrixProperties], subgroup_max: u32) -> Option<u32> {
    if subgroup_max > 32 {
        return None;
    }
    let has = |t: u32| {
        offered.iter().any(|p| {
            (p.m_size, p.n_size, p.k_size) == (t, t, t)
                && p.ab_type == wgpu::CooperativeScalarType::F16
                && p.cr_type == wgpu::CooperativeScalarType::F32
        })
    };
    crate::shared::COOP_TILES.into_iter().find(|&t| has(t))
}

#[cfg(test)]
mod tests {
    use super::coop_tile_of;
    use wgpu::CooperativeScalarType::{F16, F32};

    fn offer(
        m: u32,
        n: u32,
        k: u32,
        cr: wgpu::CooperativeScalarType,
    ) -> wgpu::CooperativeMatrixProperties {
        wgpu::CooperativeMatrixProperties {
            m_size: m,
            n_size: n,
            k_size: k,
            ab_type: F16,
            cr_type: cr,
            saturating_accumulation: false,
        }
    }

    #[test]
    fn the_tile_is_the_largest_square_f16_to_f32_one_offered_with_small_subgroups() {
        // What the H200 offered through wgpu 30 (run 3's adapter report).
        let h200: Vec<_> = [(16, 16, 16), (16, 8, 16), (16, 8, 8)]
            .into_iter()
            .flat_map(|(m, n, k)| [offer(m, n, k, F16), offer(m, n, k, F32)])
            .collect();
        assert_eq!(coop_tile_of(&h200, 32), Some(16));
        // Mesa 26.1's lavapipe.
        let lavapipe = [offer(8, 8, 8, F16), offer(8, 8, 8, F32)];
        assert_eq!(coop_tile_of(&lavapipe, 8), Some(8));
        // f16 results only (not exact for int8 sums), rectangles only, none.
        assert_eq!(coop_tile_of(&[offer(16, 16, 16, F16)], 32), None);
        assert_eq!(coop_tile_of(&h200[2..], 32), None);
        assert_eq!(coop_tile_of(&[], 32), None);
        // Subgroups of 64 would span two of the kernel's 32-invocation warps.
        assert_eq!(coop_tile_of(&h200, 64), None);
    }
}
