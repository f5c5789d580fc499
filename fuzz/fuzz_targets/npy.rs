//! The .npy reader (embeddings and probes handed to index-tools): the
//! bytes as a file, opened and read through `NpyRows`.
#![no_main]

use facegate_core::format::RowSource;
use facegate_core::npy::NpyRows;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = facegate_fuzz::scratch_file("npy", data);
    if let Ok(mut rows) = NpyRows::open(&path) {
        // Stream the first row as the builder does, then read everything
        // as the probe loader does.
        let mut row = vec![0f32; rows.dim()];
        if rows.next_row(&mut row).is_ok()
            && let Ok(again) = NpyRows::open(&path)
        {
            let _ = again.read_all();
        }
    }
});
