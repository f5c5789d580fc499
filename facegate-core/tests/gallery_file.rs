//! The gallery file: round trip, atomic writes, and refusal of damaged files.

mod common;

use common::*;
use facegate_core::format::{
    BuildOptions, SectionKind, SliceRows, build_gallery, remove_stale_temp_files,
};
use facegate_core::{ElementType, Gallery, GalleryError};
use rand::{Rng, SeedableRng};

fn small() -> (Vec<f32>, Vec<String>, usize) {
    let s = synth(40, 0, 100, 1);
    let (data, ids) = population(&s);
    (data, ids, 100)
}

#[test]
fn round_trip_keeps_rows_subjects_and_header() {
    let dir = tempfile::tempdir().unwrap();
    let (data, ids, dim) = small();
    for ty in [ElementType::Int8, ElementType::F16, ElementType::F32] {
        let p = build(dir.path(), &format!("g-{ty}.fgal"), &data, dim, &ids, ty);
        let g = Gallery::open(&p).unwrap();
        let h = g.header();
        assert_eq!(
            (g.rows(), g.dim(), h.scan_type, h.model_tag.as_str()),
            (ids.len(), dim, ty, "synthetic-v1")
        );
        assert_eq!(h.has_rescore, ty == ElementType::Int8);
        let mut distinct = ids.clone();
        distinct.sort();
        distinct.dedup();
        assert_eq!(g.subjects(), distinct.len());
        assert_eq!(h.max_templates_per_subject as usize, {
            distinct
                .iter()
                .map(|d| ids.iter().filter(|i| *i == d).count())
                .max()
                .unwrap()
        });
        for (row, id) in ids.iter().enumerate() {
            let s = g.row_subject(row).unwrap();
            assert_eq!(g.subject_id(s).unwrap(), id);
            assert_eq!(g.find_subject(id).unwrap(), Some(s));
            assert!(g.subject_rows(s).unwrap().contains(&(row as u32)));
        }
        assert_eq!(g.find_subject("nobody").unwrap(), None);
        g.verify(&mut |_| {}).unwrap();
        // Stored rows are the normalised input, to the type's precision.
        let engine =
            facegate_core::CpuEngine::new(facegate_core::ScanTarget::whole(std::sync::Arc::new(g)));
        for row in [0, ids.len() / 2, ids.len() - 1] {
            let probe =
                facegate_core::ProbeBatch::single(dim, &data[row * dim..(row + 1) * dim]).unwrap();
            let subject = engine.gallery().row_subject(row).unwrap();
            let c = engine.refiner().score_subject(&probe, 0, subject).unwrap();
            assert!((c.score - 1.0).abs() < 2e-3, "{ty}: self-score {}", c.score);
        }
    }
}

#[test]
fn existing_output_is_kept_without_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let (data, ids, dim) = small();
    let p = build(dir.path(), "g.fgal", &data, dim, &ids, ElementType::F32);
    let before = std::fs::read(&p).unwrap();
    let mut src = SliceRows::new(&data, dim, "again").unwrap();
    let opts = BuildOptions {
        scan_type: ElementType::Int8,
        model_tag: "m".into(),
        overwrite: false,
    };
    let err = build_gallery(&p, &mut src, &ids, "ids", &opts, &mut |_| {}).unwrap_err();
    assert!(matches!(err, GalleryError::OutputExists(_)), "{err}");
    assert_eq!(std::fs::read(&p).unwrap(), before);
    let mut src = SliceRows::new(&data, dim, "again").unwrap();
    build_gallery(
        &p,
        &mut src,
        &ids,
        "ids",
        &BuildOptions {
            overwrite: true,
            ..opts
        },
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(
        Gallery::open(&p).unwrap().header().scan_type,
        ElementType::Int8
    );
    // No temporary files left behind.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn a_crashed_writers_temporary_file_is_removed_by_the_next_write() {
    let dir = tempfile::tempdir().unwrap();
    let (data, ids, dim) = small();
    let at = |name: &str| dir.path().join(name);
    // A crashed writer's file (nobody holds it locked), even under this
    // process's own PID (a restarted container's server has the crashed
    // one's): a whole gallery left behind.
    let dead = at(".g.fgal.tmp-4194305-1f");
    let same_pid = at(&format!(".g.fgal.tmp-{}-2e", std::process::id()));
    // A writer at work holds its file locked.
    let running = at(".g.fgal.tmp-77-3d");
    // Not a temporary file of g.fgal.
    let other = at(".h.fgal.tmp-4194305-4c");
    let unlike = at(".g.fgal.tmp-12-notes");
    for p in [&dead, &same_pid, &running, &other, &unlike] {
        std::fs::write(p, b"templates").unwrap();
    }
    let held = std::fs::File::open(&running).unwrap();
    held.lock().unwrap();
    build(dir.path(), "g.fgal", &data, dim, &ids, ElementType::Int8);
    assert!(!dead.exists(), "the crashed writer's file stayed");
    assert!(!same_pid.exists(), "a file under this PID stayed");
    assert!(running.exists(), "a running writer's file was removed");
    assert!(
        other.exists() && unlike.exists(),
        "another file was touched"
    );
    drop(held);
    let removed = remove_stale_temp_files(&at("g.fgal")).unwrap();
    assert_eq!(removed, vec![running.clone()], "its writer has stopped");
    let removed = remove_stale_temp_files(&at("h.fgal")).unwrap();
    assert_eq!(removed, vec![other.clone()]);
    assert!(unlike.exists());
}

#[test]
fn bad_rows_and_ids_are_named_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (mut data, ids, dim) = small();
    let out = dir.path().join("bad.fgal");
    let opts = BuildOptions {
        scan_type: ElementType::Int8,
        model_tag: "m".into(),
        overwrite: false,
    };
    let try_build = |data: &[f32], ids: &[String]| {
        let mut src = SliceRows::new(data, dim, "E.npy").unwrap();
        build_gallery(&out, &mut src, ids, "IDS.txt", &opts, &mut |_| {})
            .unwrap_err()
            .to_string()
    };
    data[7 * dim + 3] = f32::NAN;
    assert!(try_build(&data, &ids).contains("E.npy row 7: element 3 is not finite"));
    data[7 * dim + 3] = 0.0;
    data[9 * dim..10 * dim].fill(0.0);
    assert!(try_build(&data, &ids).contains("E.npy row 9: vector has zero norm"));
    data[9 * dim] = 1.0;
    assert!(try_build(&data, &ids[1..]).contains(&format!(
        "IDS.txt: {} ids for {} embedding rows",
        ids.len() - 1,
        ids.len()
    )));
    let mut bad_ids = ids.clone();
    bad_ids[4] = "a\tb".into();
    assert!(try_build(&data, &bad_ids).contains("IDS.txt line 5: invalid subject id"));
    assert!(try_build(&[], &[]).contains("no rows"));
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "nothing written"
    );
}

/// The writer encodes rows in blocks on every core: rows on either side of
/// a block's edge hold what the quantiser makes of them, and the first bad
/// row of a later block, with another bad row after it, is the one named.
#[test]
fn the_first_bad_row_of_a_later_block_is_named() {
    let dir = tempfile::tempdir().unwrap();
    // 4,096 dimensions: blocks of 1,024 rows.
    let (dim, rows) = (4096, 2500);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
    let mut data: Vec<f32> = (0..rows * dim)
        .map(|_| rng.random_range(-1.0..1.0))
        .collect();
    let ids: Vec<String> = (0..rows).map(|r| format!("p{r}")).collect();
    let opts = BuildOptions {
        scan_type: ElementType::Int8,
        model_tag: "m".into(),
        overwrite: true,
    };
    let out = dir.path().join("g.fgal");
    let mut src = SliceRows::new(&data, dim, "E.npy").unwrap();
    build_gallery(&out, &mut src, &ids, "IDS.txt", &opts, &mut |_| {}).unwrap();
    let g = Gallery::open(&out).unwrap();
    let facegate_core::format::ScanRows::Int8 {
        data: q, stride, ..
    } = g.scan_rows()
    else {
        panic!("int8 gallery");
    };
    let mut want = vec![0i8; dim];
    let mut unit = vec![0f32; dim];
    for r in [0, 1023, 1024, 2047, 2048, 2499] {
        facegate_core::quantize::normalize_into(
            &data[r * dim..(r + 1) * dim],
            &mut unit,
            &String::new,
        )
        .unwrap();
        facegate_core::quantize::quantize_i8(&unit, &mut want);
        assert_eq!(&q[r * stride..r * stride + dim], &want[..], "row {r}");
    }
    data[1500 * dim + 9] = f32::INFINITY;
    data[1900 * dim..1901 * dim].fill(0.0);
    let mut src = SliceRows::new(&data, dim, "E.npy").unwrap();
    let err = build_gallery(&out, &mut src, &ids, "IDS.txt", &opts, &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("E.npy row 1500: element 9 is not finite"),
        "{err}"
    );
}

#[test]
fn truncated_files_are_refused_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let (data, ids, dim) = small();
    let p = build(dir.path(), "g.fgal", &data, dim, &ids, ElementType::Int8);
    let bytes = std::fs::read(&p).unwrap();
    for cut in [0, 7, 100, 4095, 4096, 5000, bytes.len() - 1] {
        let t = dir.path().join(format!("cut-{cut}.fgal"));
        std::fs::write(&t, &bytes[..cut]).unwrap();
        let err = Gallery::open(&t)
            .err()
            .unwrap_or_else(|| panic!("cut at {cut} accepted"));
        let msg = err.to_string();
        assert!(
            msg.contains(&t.display().to_string()),
            "error does not name the file: {msg}"
        );
        match cut {
            0 | 7 => assert!(matches!(err, GalleryError::NotAGallery { .. }), "{msg}"),
            _ => assert!(
                msg.contains("corrupt gallery") && msg.contains("truncated"),
                "{msg}"
            ),
        }
    }
}

#[test]
fn a_flipped_bit_in_any_section_is_detected_by_verify() {
    let dir = tempfile::tempdir().unwrap();
    let (data, ids, dim) = small();
    let p = build(dir.path(), "g.fgal", &data, dim, &ids, ElementType::Int8);
    let g = Gallery::open(&p).unwrap();
    let sections = g.header().sections.clone();
    drop(g);
    let bytes = std::fs::read(&p).unwrap();
    for s in &sections {
        for pos in [s.offset, s.offset + s.length / 2, s.offset + s.length - 1] {
            let mut b = bytes.clone();
            b[pos as usize] ^= 0x04;
            let t = dir.path().join("flipped.fgal");
            std::fs::write(&t, &b).unwrap();
            // Opening may already refuse it (offset tables are checked at open);
            // if not, full verification must.
            let err = match Gallery::open(&t) {
                Err(e) => e.to_string(),
                Ok(g) => g.verify(&mut |_| {}).unwrap_err().to_string(),
            };
            assert!(
                err.contains("corrupt gallery"),
                "{} at {pos}: {err}",
                s.kind.name()
            );
            if s.kind == SectionKind::ScanRows {
                assert!(err.contains("scan_rows checksum mismatch"), "{err}");
            }
        }
    }
    // And in the header.
    let mut b = bytes.clone();
    b[30] ^= 1;
    std::fs::write(dir.path().join("h.fgal"), &b).unwrap();
    let err = Gallery::open(dir.path().join("h.fgal"))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("header checksum mismatch"), "{err}");
}

#[test]
fn damaged_tables_never_panic_the_reader() {
    // Overwrite subject tables with garbage but fix the checksums' absence by
    // using open() only (no verify): accessors must return errors, not panic.
    let dir = tempfile::tempdir().unwrap();
    let (data, ids, dim) = small();
    let p = build(dir.path(), "g.fgal", &data, dim, &ids, ElementType::Int8);
    let g = Gallery::open(&p).unwrap();
    let sections = g.header().sections.clone();
    drop(g);
    let mut bytes = std::fs::read(&p).unwrap();
    for s in sections.iter().filter(|s| {
        matches!(
            s.kind,
            SectionKind::RowSubjects | SectionKind::SubjectRows | SectionKind::SubjectIdBytes
        )
    }) {
        for b in &mut bytes[s.offset as usize..(s.offset + s.length) as usize] {
            *b = 0xff;
        }
    }
    let t = dir.path().join("garbage.fgal");
    std::fs::write(&t, &bytes).unwrap();
    let g = std::sync::Arc::new(Gallery::open(&t).unwrap());
    assert!(g.row_subject(0).is_err());
    assert!(g.subject_rows(0).is_err());
    assert!(g.subject_id(0).is_err());
    let engine = facegate_core::CpuEngine::new(facegate_core::ScanTarget::whole(g));
    let probe = facegate_core::ProbeBatch::single(dim, &data[..dim]).unwrap();
    use facegate_core::SearchEngine;
    let err = engine.search(&probe, 5).unwrap_err().to_string();
    assert!(err.contains("corrupt gallery"), "{err}");
}
