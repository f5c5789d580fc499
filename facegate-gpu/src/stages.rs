//! GPU time per stage of the second design's batch, from timestamp queries
//! written at the start and end of each stage's compute pass. Asked for by
//! the benchmark (`ScanOptions::profile`), so that a run on a real device
//! says where a batch's time goes (pilot, scan, selection) rather than only
//! its total; off by default, since it adds a read-back per batch.

use std::sync::Mutex;

use crate::GpuError;
use crate::buffers::map_read;
use crate::device::GpuDevice;

/// The stages of one batch, in the order they run.
pub const STAGES: [&str; 4] = ["pilot scan", "pilot select", "scan", "select"];

const QUERIES: u32 = 2 * STAGES.len() as u32;

/// GPU seconds spent in each stage over some batches.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StageTimes {
    /// Batches measured.
    pub batches: u64,
    /// Seconds in each of [`STAGES`], summed over the batches.
    pub seconds: [f64; STAGES.len()],
}

/// The query set, its resolve and read-back buffers, and the sums so far.
pub(crate) struct StageClock {
    set: wgpu::QuerySet,
    resolved: wgpu::Buffer,
    staging: wgpu::Buffer,
    tick_ns: f64,
    totals: Mutex<StageTimes>,
}

impl StageClock {
    /// A clock on `dev`, or `None` where the device cannot write timestamps.
    pub(crate) fn new(dev: &GpuDevice) -> Option<StageClock> {
        let d = &dev.device;
        if !d.features().contains(wgpu::Features::TIMESTAMP_QUERY) {
            return None;
        }
        let bytes = u64::from(QUERIES) * 8;
        let buffer = |label, usage| {
            d.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: bytes,
                usage,
                mapped_at_creation: false,
            })
        };
        use wgpu::BufferUsages as U;
        Some(StageClock {
            set: d.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("stage timestamps"),
                ty: wgpu::QueryType::Timestamp,
                count: QUERIES,
            }),
            resolved: buffer("stage timestamps", U::QUERY_RESOLVE | U::COPY_SRC),
            staging: buffer("stage timestamps read-back", U::MAP_READ | U::COPY_DST),
            tick_ns: f64::from(dev.queue.get_timestamp_period()),
            totals: Mutex::new(StageTimes::default()),
        })
    }

    /// Where stage `i`'s pass writes its start and end.
    pub(crate) fn writes(&self, i: usize) -> wgpu::ComputePassTimestampWrites<'_> {
        wgpu::ComputePassTimestampWrites {
            query_set: &self.set,
            beginning_of_pass_write_index: Some(2 * i as u32),
            end_of_pass_write_index: Some(2 * i as u32 + 1),
        }
    }

    /// Records the copy of the first `stages` stages' timestamps (those the
    /// batch wrote) into the read-back buffer.
    pub(crate) fn resolve(&self, enc: &mut wgpu::CommandEncoder, stages: usize) {
        let queries = 2 * stages as u32;
        enc.resolve_query_set(&self.set, 0..queries, &self.resolved, 0);
        enc.copy_buffer_to_buffer(&self.resolved, 0, &self.staging, 0, u64::from(queries) * 8);
    }

    /// Adds the first `stages` stages of the batch just finished to the sums.
    pub(crate) fn collect(&self, device: &wgpu::Device, stages: usize) -> Result<(), GpuError> {
        let ticks: Vec<u64> = map_read(device, &self.staging, |view| {
            bytemuck::cast_slice::<u8, u64>(view).to_vec()
        })?;
        let mut totals = self.totals.lock().unwrap_or_else(|p| p.into_inner());
        totals.batches += 1;
        for (i, pair) in ticks.chunks_exact(2).take(stages).enumerate() {
            let elapsed = pair[1].saturating_sub(pair[0]) as f64 * self.tick_ns;
            totals.seconds[i] += elapsed * 1e-9;
        }
        Ok(())
    }

    /// The sums since the last call, which start again from zero.
    pub(crate) fn take(&self) -> StageTimes {
        std::mem::take(&mut *self.totals.lock().unwrap_or_else(|p| p.into_inner()))
    }
}
