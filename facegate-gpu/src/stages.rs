//! GPU time per stage of the second design's batch, from timestamp queries
//! written at the start and end of each stage's compute pass. Asked for by
//! the benchmark (`ScanOptions::profile`), so that a run on a real device
//! says where a batch's time goes (pilot, scan, selection) rather than only
//! its total. The timestamps travel in the batch's one read-back (after
//! its answers), so profiling adds a resolve and a small copy, not a map.

use std::sync::Mutex;

use crate::device::GpuDevice;

/// The stages of one batch, in the order they run.
pub const STAGES: [&str; 4] = ["pilot scan", "pilot select", "scan", "select"];

const QUERIES: u32 = 2 * STAGES.len() as u32;

/// Bytes of the timestamps in a read-back buffer (where the scan puts them
/// after its answers, at an offset that is a multiple of 8).
pub(crate) const STAMP_BYTES: u64 = QUERIES as u64 * 8;

/// GPU seconds spent in each stage over some batches.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StageTimes {
    /// Batches measured.
    pub batches: u64,
    /// Seconds in each of [`STAGES`], summed over the batches.
    pub seconds: [f64; STAGES.len()],
}

/// The query set, its resolve buffer, and the sums so far.
pub(crate) struct StageClock {
    set: wgpu::QuerySet,
    resolved: wgpu::Buffer,
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
        use wgpu::BufferUsages as U;
        Some(StageClock {
            set: d.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("stage timestamps"),
                ty: wgpu::QueryType::Timestamp,
                count: QUERIES,
            }),
            resolved: d.create_buffer(&wgpu::BufferDescriptor {
                label: Some("stage timestamps"),
                size: STAMP_BYTES,
                usage: U::QUERY_RESOLVE | U::COPY_SRC,
                mapped_at_creation: false,
            }),
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
    /// batch wrote) into `read_back` at `offset`.
    pub(crate) fn resolve(
        &self,
        enc: &mut wgpu::CommandEncoder,
        stages: usize,
        read_back: &wgpu::Buffer,
        offset: u64,
    ) {
        let queries = 2 * stages as u32;
        enc.resolve_query_set(&self.set, 0..queries, &self.resolved, 0);
        enc.copy_buffer_to_buffer(&self.resolved, 0, read_back, offset, u64::from(queries) * 8);
    }

    /// Adds the first `stages` stages of the batch just finished to the
    /// sums, from the read-back's bytes where [`StageClock::resolve`] put
    /// them.
    pub(crate) fn collect(&self, stamps: &[u8], stages: usize) {
        let ticks: Vec<u64> = stamps
            .chunks_exact(8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap_or_default()))
            .collect();
        let mut totals = self.totals.lock().unwrap_or_else(|p| p.into_inner());
        totals.batches += 1;
        for (i, pair) in ticks.chunks_exact(2).take(stages).enumerate() {
            let elapsed = pair[1].saturating_sub(pair[0]) as f64 * self.tick_ns;
            totals.seconds[i] += elapsed * 1e-9;
        }
    }

    /// The sums since the last call, which start again from zero.
    pub(crate) fn take(&self) -> StageTimes {
        std::mem::take(&mut *self.totals.lock().unwrap_or_else(|p| p.into_inner()))
    }
}
