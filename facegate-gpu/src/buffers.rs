//! The gallery's scan rows on the GPU (resident or streamed), and host <-> GPU transfers.

use facegate_core::Gallery;
use facegate_core::format::ScanRows;
use wgpu::util::DeviceExt;

use crate::GpuError;

/// Where one chunk of consecutive gallery rows lies.
#[derive(Debug, Clone, Copy)]
pub struct ChunkRange {
    /// First gallery row in the chunk.
    pub first_row: u32,
    /// Rows in the chunk.
    pub rows: u32,
}

/// A chunk's rows and int8 scales (a 4-byte placeholder for f16/f32) on the GPU.
struct ChunkBuffers {
    data: wgpu::Buffer,
    scales: wgpu::Buffer,
}

/// The scan rows of a gallery on the GPU: resident when they fit the memory
/// budget, else streamed from the host map through two chunk-sized buffers
/// that successive chunks take turns in.
pub struct GpuGallery {
    /// The chunks, in row order (one binding may be as small as 128 MiB).
    pub chunks: Vec<ChunkRange>,
    /// GPU memory held for the rows.
    pub bytes: u64,
    resident: Vec<ChunkBuffers>,
    slots: Vec<ChunkBuffers>,
    stride_bytes: usize,
}

/// The scan rows as bytes, their scales, and the row stride in bytes.
fn scan_bytes(gallery: &Gallery) -> (&[u8], Option<&[f32]>, usize) {
    match gallery.scan_rows() {
        ScanRows::Int8 {
            data,
            scales,
            stride,
        } => (bytemuck::cast_slice(data), Some(scales), stride),
        ScanRows::F16 { data, stride } => (bytemuck::cast_slice(data), None, stride * 2),
        ScanRows::F32 { data, stride } => (bytemuck::cast_slice(data), None, stride * 4),
    }
}

impl GpuGallery {
    /// Splits the gallery into chunks of at most `chunk_rows` rows and uploads
    /// them all if they fit `budget_bytes`, else allocates two streaming slots.
    pub fn new(
        device: &wgpu::Device,
        gallery: &Gallery,
        chunk_rows: usize,
        budget_bytes: u64,
    ) -> Result<GpuGallery, GpuError> {
        let (bytes, scales, stride_bytes) = scan_bytes(gallery);
        let per_row = stride_bytes as u64 + if scales.is_some() { 4 } else { 0 };
        let n = gallery.rows();
        let chunks: Vec<ChunkRange> = (0..n)
            .step_by(chunk_rows)
            .map(|first| ChunkRange {
                first_row: first as u32,
                rows: chunk_rows.min(n - first) as u32,
            })
            .collect();
        let total = per_row * n as u64;
        let mut g = GpuGallery {
            chunks,
            bytes: 0,
            resident: Vec::new(),
            slots: Vec::new(),
            stride_bytes,
        };
        if total <= budget_bytes {
            for c in &g.chunks {
                let (first, rows) = (c.first_row as usize, c.rows as usize);
                g.resident.push(ChunkBuffers {
                    data: storage(
                        device,
                        "gallery rows",
                        &bytes[first * stride_bytes..(first + rows) * stride_bytes],
                    ),
                    scales: match scales {
                        Some(s) => storage(
                            device,
                            "row scales",
                            bytemuck::cast_slice(&s[first..first + rows]),
                        ),
                        None => storage(device, "no scales", &[0; 4]),
                    },
                });
            }
            g.bytes = total;
        } else {
            let slot_bytes = per_row * chunk_rows.min(n) as u64;
            if 2 * slot_bytes > budget_bytes {
                return Err(GpuError::Unsupported(format!(
                    "GPU memory budget {budget_bytes} bytes is below two {slot_bytes}-byte streaming chunks"
                )));
            }
            for _ in 0..2 {
                g.slots.push(ChunkBuffers {
                    data: slot(
                        device,
                        "streamed rows",
                        stride_bytes as u64 * chunk_rows.min(n) as u64,
                    ),
                    scales: slot(
                        device,
                        "streamed scales",
                        if scales.is_some() {
                            4 * chunk_rows.min(n) as u64
                        } else {
                            4
                        },
                    ),
                });
            }
            g.bytes = 2 * slot_bytes;
        }
        Ok(g)
    }

    /// Whether chunks are streamed from host memory for every search.
    pub fn is_streamed(&self) -> bool {
        !self.slots.is_empty()
    }

    /// The buffers holding chunk `c`, staging it into a slot first when
    /// streaming. The caller must submit chunk `c`'s work before asking for
    /// chunk `c + 2`: queue writes run at the start of the next submission, in
    /// queue order, so a slot is never overwritten while still being read.
    pub fn chunk(
        &self,
        queue: &wgpu::Queue,
        gallery: &Gallery,
        c: usize,
    ) -> (&wgpu::Buffer, &wgpu::Buffer) {
        if let Some(r) = self.resident.get(c) {
            return (&r.data, &r.scales);
        }
        let slot = &self.slots[c % 2];
        let range = self.chunks[c];
        let (first, rows) = (range.first_row as usize, range.rows as usize);
        let (bytes, scales, _) = scan_bytes(gallery);
        queue.write_buffer(
            &slot.data,
            0,
            &bytes[first * self.stride_bytes..(first + rows) * self.stride_bytes],
        );
        if let Some(s) = scales {
            queue.write_buffer(
                &slot.scales,
                0,
                bytemuck::cast_slice(&s[first..first + rows]),
            );
        }
        (&slot.data, &slot.scales)
    }
}

fn slot(device: &wgpu::Device, label: &str, bytes: u64) -> wgpu::Buffer {
    device.create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size: bytes.max(4).div_ceil(4) * 4,
        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    })
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
    map_read(device, &staging, |bytes| bytes.to_vec())
}

/// Maps `staging` (whose copies are submitted), waits for the GPU, hands
/// its bytes to `read` and unmaps it: the one wait of a read-back.
pub fn map_read<T>(
    device: &wgpu::Device,
    staging: &wgpu::Buffer,
    read: impl FnOnce(&[u8]) -> T,
) -> Result<T, GpuError> {
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
    let out = {
        let view = staging
            .get_mapped_range(..)
            .map_err(|e| GpuError::Operation(format!("reading results: {e}")))?;
        read(&view)
    };
    staging.unmap();
    Ok(out)
}
