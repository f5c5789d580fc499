//! The change-log frame reader (`ChangeLog::read_bytes`, what open and
//! replay decode): raw bytes, or payloads framed with valid lengths and
//! checksums so that the record decoding behind them is reached.
#![no_main]

use facegate_core::wal::ChangeLog;
use facegate_core::wal::record::{decode_header, encode_header};
use libfuzzer_sys::fuzz_target;
use std::path::Path;

const GENERATION: u64 = 0x0123_4567_89ab_cdef;

fuzz_target!(|data: &[u8]| {
    let path = Path::new("fuzz.wal");
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        // Raw bytes: take the header's dimension and generation when it
        // has them, so the frames are read.
        let (dim, generation) = decode_header(rest)
            .map(|(d, g)| (d as usize, g))
            .unwrap_or((4, GENERATION));
        let _ = ChangeLog::read_bytes(path, rest, dim, generation);
        return;
    }
    // Framed: a valid header for a small dimension, then each chunk
    // (a one-byte length, then that many payload bytes) framed as the
    // writer frames it: u32 length, xxh3 of length and payload, payload.
    let dim = 1 + (mode >> 1) as usize % 8;
    let mut log = encode_header(dim as u32, GENERATION).to_vec();
    let mut at = rest;
    while let Some((&n, tail)) = at.split_first() {
        let take = (n as usize).min(tail.len());
        let (payload, next) = tail.split_at(take);
        let len = (payload.len() as u32).to_le_bytes();
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        h.update(&len);
        h.update(payload);
        log.extend_from_slice(&len);
        log.extend_from_slice(&h.digest().to_le_bytes());
        log.extend_from_slice(payload);
        at = next;
    }
    let _ = ChangeLog::read_bytes(path, &log, dim, GENERATION);
});
