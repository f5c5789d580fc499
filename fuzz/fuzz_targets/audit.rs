//! The audit trail: record lines (`decode_line`, `stated`) and the
//! checkpoint file (`checkpoint::parse`).
#![no_main]

use facegate_core::audit::{checkpoint, record};
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode == b'C' {
        let _ = checkpoint::parse(Path::new("checkpoint.json"), rest);
        return;
    }
    // Lines as a trail file holds them, each chained from the one before.
    let mut chain = 0u64;
    for line in rest.split(|&b| b == b'\n') {
        let _ = record::stated(line);
        match record::decode_line(line, chain) {
            Ok((_, next)) => chain = next,
            Err(_) => {
                if let Ok((_, stated)) = record::stated(line) {
                    chain = stated;
                }
            }
        }
    }
});
