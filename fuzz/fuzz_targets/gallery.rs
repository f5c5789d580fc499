//! The gallery reader: header and section table (`Gallery::open`, through
//! the real memory-mapped path), then the id and row tables and the full
//! `verify` a corrupt or hostile gallery file reaches.
#![no_main]

use facegate_core::Gallery;
use libfuzzer_sys::fuzz_target;

/// The header page: `FGATEGAL`, then fields, its xxh3 checksum in the last
/// 8 bytes (format/layout.rs).
const HEADER_LEN: usize = 4096;
const MAGIC: &[u8; 8] = b"FGATEGAL";
/// The section table: 32-byte entries (kind, pad, offset, length,
/// checksum) from byte 128, up to the lineage fields before the checksum.
const SECTION_TABLE_OFFSET: usize = 128;
const SECTION_ENTRY_LEN: usize = 32;
const MAX_ENTRIES: usize = (HEADER_LEN - 8 - 16 - SECTION_TABLE_OFFSET) / SECTION_ENTRY_LEN;

fuzz_target!(|data: &[u8]| {
    let mut bytes = data.to_vec();
    // Recompute the section and header checksums, as a writer would, so
    // that mutations of the fields and tables reach the checks behind them
    // (a wrong checksum is refused first and tells nothing more).
    if bytes.len() >= HEADER_LEN && bytes.starts_with(MAGIC) {
        let count = u32::from_le_bytes(bytes[60..64].try_into().expect("4 bytes")) as usize;
        for i in 0..count.min(MAX_ENTRIES) {
            let o = SECTION_TABLE_OFFSET + i * SECTION_ENTRY_LEN;
            let at = |k: usize| u64::from_le_bytes(bytes[k..k + 8].try_into().expect("8 bytes"));
            let (offset, length) = (at(o + 8), at(o + 16));
            let Some(end) = offset.checked_add(length) else {
                continue;
            };
            if end <= bytes.len() as u64 {
                let sum = xxhash_rust::xxh3::xxh3_64(&bytes[offset as usize..end as usize]);
                bytes[o + 24..o + 32].copy_from_slice(&sum.to_le_bytes());
            }
        }
        let sum = xxhash_rust::xxh3::xxh3_64(&bytes[..HEADER_LEN - 8]);
        bytes[HEADER_LEN - 8..HEADER_LEN].copy_from_slice(&sum.to_le_bytes());
    }
    let path = facegate_fuzz::scratch_file("gallery", &bytes);
    let Ok(g) = Gallery::open(&path) else {
        return;
    };
    let _ = g.scan_rows();
    let _ = g.rescore_rows();
    for row in [0, g.rows().saturating_sub(1), g.rows()] {
        let _ = g.row_subject(row);
    }
    let subjects = u32::try_from(g.subjects()).unwrap_or(u32::MAX);
    for s in [0, subjects / 2, subjects.saturating_sub(1), subjects] {
        if let Ok(id) = g.subject_id(s) {
            let id = id.to_owned();
            let _ = g.find_subject(&id);
        }
        let _ = g.subject_rows(s);
    }
    let _ = g.find_subject("P-000001");
    let _ = g.verify(&mut |_| {});
});
