//! Regenerates the seed corpora of the fuzz targets (fuzz/corpus/) with
//! facegate's own writers, so the seeds are files facegate really writes:
//!
//! `cargo test -p facegate-core --test fuzz_seeds -- --ignored`
//!
//! Ignored in the normal run: it writes into the source tree.

use std::path::{Path, PathBuf};

use facegate_core::ElementType;
use facegate_core::audit::{AuditEvent, Checkpoint, Expiry, checkpoint, record};
use facegate_core::format::{BuildOptions, SliceRows, build_gallery};
use facegate_core::npy::write_matrix;
use facegate_core::wal::{Change, ChangeLog, CommitMode};

fn corpus(target: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
#[ignore = "writes the fuzz seed corpora into the source tree"]
fn write_fuzz_seeds() {
    let tmp = tempfile::tempdir().unwrap();

    // Galleries: two subjects (one with two templates) of dimension 4,
    // one per scan type.
    let data: Vec<f32> = (0..12).map(|i| (i as f32 * 0.37).sin()).collect();
    let ids: Vec<String> = ["P-000001", "P-000002", "P-000002"]
        .map(String::from)
        .to_vec();
    for ty in [ElementType::Int8, ElementType::F16, ElementType::F32] {
        let out = corpus("gallery").join(format!("seed-{}.fgal", ty.name()));
        let mut rows = SliceRows::new(&data, 4, "seed").unwrap();
        let opts = BuildOptions {
            scan_type: ty,
            model_tag: "seed-model".into(),
            overwrite: true,
        };
        build_gallery(&out, &mut rows, &ids, "seed ids", &opts, &mut |_| {}).unwrap();
    }

    // A change log of dimension 4: enrolments and a removal. The targets'
    // first byte chooses the mode: even bytes read the rest raw.
    let log_path = tmp.path().join("changes.log");
    let (log, _) = ChangeLog::open(&log_path, 4, 0x0123_4567_89ab_cdef, CommitMode::Group).unwrap();
    for i in 0..3 {
        log.append(&Change::Enroll {
            subject_id: format!("subject-{i}"),
            templates: (0..4 * (1 + i)).map(|j| j as f32 * 0.25).collect(),
        })
        .unwrap();
    }
    log.append(&Change::Remove {
        subject_id: "subject-1".into(),
    })
    .unwrap();
    drop(log);
    let bytes = std::fs::read(&log_path).unwrap();
    let mut raw = vec![0u8];
    raw.extend_from_slice(&bytes);
    std::fs::write(corpus("wal").join("seed-raw.bin"), &raw).unwrap();
    // Framed mode (odd first byte, dimension 1 + (b >> 1) % 8 = 4): the
    // payloads of those frames, each after a one-byte length.
    let mut framed = vec![1u8 | (3 << 1)];
    let mut at = 32; // the log header
    while at < bytes.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        if len <= 255 {
            framed.push(len as u8);
            framed.extend_from_slice(&bytes[at + 12..at + 12 + len]);
        }
        at += 12 + len;
    }
    std::fs::write(corpus("wal").join("seed-framed.bin"), &framed).unwrap();

    // Audit: chained record lines as the trail writes them, and a checkpoint.
    let mut lines = vec![b'L'];
    let mut chain = 0;
    for seq in 1..=3 {
        let event = AuditEvent {
            time_unix_ms: 1_700_000_000_000 + seq,
            rpc: "Identify".into(),
            code: "OK".into(),
            peer: "10.0.0.7:51234".into(),
            principal: "JFK-T4".into(),
            request_id: format!("req-{seq}"),
            port_id: "JFK-T4".into(),
            lane: "3".into(),
            direction: "entry".into(),
            captured_at_unix_ms: 1_700_000_000_000,
            matched: Some(seq % 2 == 0),
            subjects: vec!["P-000001".into()],
            generation: 7,
            latency_us: 900,
            manifest_id: (seq == 3).then(|| "M-1".into()),
        };
        chain = record::encode_line(seq, &event, chain, &mut lines);
    }
    std::fs::write(corpus("audit").join("seed-lines.jsonl"), &lines).unwrap();
    let one = Checkpoint::after(
        None,
        Expiry {
            at_unix_ms: 5_000,
            cutoff_unix_ms: 4_000,
            first_seq: 1,
            last_seq: 10,
            chain: 0xab,
            newest_record_unix_ms: 3_999,
            files: vec!["audit-a.jsonl".into()],
        },
    );
    checkpoint::write(tmp.path(), &one).unwrap();
    let mut cp = vec![b'C'];
    cp.extend(std::fs::read(checkpoint::path(tmp.path())).unwrap());
    std::fs::write(corpus("audit").join("seed-checkpoint.json"), &cp).unwrap();

    // .npy: a [3, 4] float32 matrix.
    write_matrix(corpus("npy").join("seed.npy"), &data, 4).unwrap();
}
