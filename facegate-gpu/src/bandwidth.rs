//! The device's memory bandwidth, measured: the physical limit the
//! benchmark puts beside the scan in the same run. Two measures, since
//! they differ on real devices: a buffer copy (`vkCmdCopyBuffer`, which a
//! driver may hand to a copy engine slower than the shader cores' path to
//! memory), and a compute kernel that reads a buffer once, which is what
//! the scan does.

use std::time::Instant;

use crate::GpuError;
use crate::device::GpuDevice;
use crate::pipeline::bind;
use crate::shared::BANDWIDTH_WORKGROUP;

/// Workgroups of one read-bandwidth dispatch: enough invocations
/// (524,288) to keep every core's loads in flight on a large device.
const READ_WORKGROUPS: u32 = 2048;

fn buffer(dev: &GpuDevice, label: &str, size: u64, usage: wgpu::BufferUsages) -> wgpu::Buffer {
    dev.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size,
        usage,
        mapped_at_creation: false,
    })
}

/// Submits `enc` and waits for it; the seconds from submission to completion.
fn timed(dev: &GpuDevice, enc: wgpu::CommandEncoder) -> Result<f64, GpuError> {
    let t = Instant::now();
    dev.queue.submit([enc.finish()]);
    dev.device
        .poll(wgpu::PollType::wait_indefinitely())
        .map_err(|e| GpuError::Operation(format!("waiting for the GPU: {e}")))?;
    Ok(t.elapsed().as_secs_f64())
}

/// Device-to-device copy bandwidth, bytes read plus written per second:
/// `copies` copies of a `bytes` buffer in one submission, after one warm-up.
pub fn copy_bandwidth(dev: &GpuDevice, bytes: u64, copies: u32) -> Result<f64, GpuError> {
    use wgpu::BufferUsages as U;
    let a = buffer(dev, "copy source", bytes, U::COPY_SRC | U::COPY_DST);
    let b = buffer(dev, "copy target", bytes, U::COPY_SRC | U::COPY_DST);
    let run = |n: u32| {
        let mut enc = dev.device.create_command_encoder(&Default::default());
        for _ in 0..n {
            enc.copy_buffer_to_buffer(&a, 0, &b, 0, bytes);
        }
        timed(dev, enc)
    };
    run(1)?;
    Ok(2.0 * bytes as f64 * f64::from(copies) / run(copies)?)
}

/// Read bandwidth of the shader cores, bytes per second: a kernel reads a
/// `bytes` buffer (at most one binding's limit, rounded down to 16-byte
/// units) `reads` times in one submission, after warm-up submissions that
/// keep the device busy for `warm_up_secs` (so its clocks have risen
/// before the timed one).
pub fn read_bandwidth(
    dev: &GpuDevice,
    bytes: u64,
    reads: u32,
    warm_up_secs: f64,
) -> Result<f64, GpuError> {
    use wgpu::BufferUsages as U;
    // One binding holds the buffer the kernel reads: at most the limit
    // (128 MiB on Mesa 26's lavapipe; 2 GiB on an H200).
    let bytes = bytes.min(dev.limits.max_storage_buffer_binding_size) / 16 * 16;
    let src = buffer(dev, "bandwidth source", bytes, U::STORAGE);
    let sink_bytes = u64::from(READ_WORKGROUPS * BANDWIDTH_WORKGROUP) * 4;
    let sink = buffer(dev, "bandwidth sink", sink_bytes, U::STORAGE);
    let pipeline = crate::pipeline::read_bandwidth(&dev.device);
    let group = bind(&dev.device, &pipeline, &[&src, &sink]);
    let run = |n: u32| {
        let mut enc = dev.device.create_command_encoder(&Default::default());
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            pass.set_pipeline(&pipeline);
            pass.set_bind_group(0, &group, &[]);
            for _ in 0..n {
                pass.dispatch_workgroups(READ_WORKGROUPS, 1, 1);
            }
        }
        timed(dev, enc)
    };
    let warm = Instant::now();
    run(1)?;
    while warm.elapsed().as_secs_f64() < warm_up_secs {
        run(reads)?;
    }
    Ok(bytes as f64 * f64::from(reads) / run(reads)?)
}
