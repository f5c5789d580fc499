//! The gallery resident in GPU storage buffers, and host <-> GPU transfers.

use facegate_core::Gallery;
use facegate_core::format::ScanRows;
use wgpu::util::DeviceExt;

use crate::GpuError;

/// One chunk of consecutive gallery rows in its own storage buffers (one
/// binding may be as small as 128 MiB, so a gallery is split).
pub struct Chunk {
    /// First gallery row in the chunk.
    pub first_row: u32,
    /// Rows in the chunk.
    pub rows: u32,
    /// The rows, stride as in the file.
    pub data: wgpu::Buffer,
    /// int8 scales (a 4-byte placeholder for f16/f32 galleries).
    pub scales: wgpu::Buffer,
}

/// The whole scan section of a gallery, chunked and uploaded.
pub struct ResidentGallery {
    /// The chunks, in row order.
    pub chunks: Vec<Chunk>,
    /// Bytes of GPU memory the chunks occupy.
    pub bytes: u64,
}

fn storage(device: &wgpu::Device, label: &str, contents: &[u8]) -> wgpu::Buffer {
    // Storage bindings need a non-zero size that is a multiple of 4.
    let mut padded;
    let bytes = if contents.is_empty() || !contents.len().is_multiple_of(4) {
        padded = contents.to_vec();
        padded.resize(contents.len().div_ceil(4).max(1) * 4, 0);
        &padded[..]
    } else {
        contents
    };
    device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: Some(label),
        contents: bytes,
        usage: wgpu::BufferUsages::STORAGE,
    })
}

/// Creates a storage buffer from bytes.
pub fn upload(device: &wgpu::Device, label: &str, contents: &[u8]) -> wgpu::Buffer {
    storage(device, label, contents)
}

/// Creates an uninitialised storage buffer the shaders write and the host may copy from.
pub fn scratch(device: &wgpu::Device, label: &str, bytes: u64) -> wgpu::Buffer {
    device.create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size: bytes.max(4).div_ceil(4) * 4,
        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    })
}

/// Creates a uniform buffer holding `value`.
pub fn uniform<T: bytemuck::Pod>(device: &wgpu::Device, label: &str, value: &T) -> wgpu::Buffer {
    device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: Some(label),
        contents: bytemuck::bytes_of(value),
        usage: wgpu::BufferUsages::UNIFORM,
    })
}

impl ResidentGallery {
    /// Uploads the scan rows in chunks of at most `chunk_rows` rows, refusing
    /// galleries larger than `budget_bytes`.
    pub fn upload(
        device: &wgpu::Device,
        gallery: &Gallery,
        chunk_rows: usize,
        budget_bytes: u64,
    ) -> Result<ResidentGallery, GpuError> {
        let (bytes, scales, stride_bytes): (&[u8], Option<&[f32]>, usize) =
            match gallery.scan_rows() {
                ScanRows::Int8 {
                    data,
                    scales,
                    stride,
                } => (bytemuck::cast_slice(data), Some(scales), stride),
                ScanRows::F16 { data, stride } => (bytemuck::cast_slice(data), None, stride * 2),
                ScanRows::F32 { data, stride } => (bytemuck::cast_slice(data), None, stride * 4),
            };
        let total = bytes.len() as u64 + scales.map_or(0, |s| s.len() as u64 * 4);
        if total > budget_bytes {
            return Err(GpuError::Unsupported(format!(
                "gallery scan rows need {total} bytes of GPU memory, budget is {budget_bytes} \
                 (streaming from host memory is not implemented yet)"
            )));
        }
        let n = gallery.rows();
        let mut chunks = Vec::new();
        let mut first = 0usize;
        while first < n {
            let rows = chunk_rows.min(n - first);
            let data = storage(
                device,
                "gallery rows",
                &bytes[first * stride_bytes..(first + rows) * stride_bytes],
            );
            let scales = match scales {
                Some(s) => storage(
                    device,
                    "row scales",
                    bytemuck::cast_slice(&s[first..first + rows]),
                ),
                None => storage(device, "no scales", &[0; 4]),
            };
            chunks.push(Chunk {
                first_row: first as u32,
                rows: rows as u32,
                data,
                scales,
            });
            first += rows;
        }
        Ok(ResidentGallery {
            chunks,
            bytes: total,
        })
    }
}

/// Copies `src` into a mappable buffer, waits, and returns its contents.
pub fn read_back(
    device: &wgpu::Device,
    queue: &wgpu::Queue,
    src: &wgpu::Buffer,
    bytes: u64,
) -> Result<Vec<u8>, GpuError> {
    let staging = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("read back"),
        size: bytes,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let mut enc = device.create_command_encoder(&wgpu::CommandEncoderDescriptor {
        label: Some("read back"),
    });
    enc.copy_buffer_to_buffer(src, 0, &staging, 0, bytes);
    queue.submit([enc.finish()]);
    let (tx, rx) = std::sync::mpsc::channel();
    staging.map_async(wgpu::MapMode::Read, .., move |r| {
        let _ = tx.send(r);
    });
    device
        .poll(wgpu::PollType::wait_indefinitely())
        .map_err(|e| GpuError::Operation(format!("waiting for the GPU: {e}")))?;
    rx.recv()
        .map_err(|_| GpuError::Operation("buffer map callback never ran".into()))?
        .map_err(|e| GpuError::Operation(format!("mapping results: {e}")))?;
    let view = staging
        .get_mapped_range(..)
        .map_err(|e| GpuError::Operation(format!("reading results: {e}")))?;
    let out = view.to_vec();
    drop(view);
    staging.unmap();
    Ok(out)
}
