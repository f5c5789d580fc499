//! `facegate-index shard` through the binary: a gallery split into shard
//! galleries that each pass `check`, a map naming them, every template kept
//! once, and the refusals (existing files without --force, zero shards).

mod common;

use std::path::Path;

use common::*;

/// `shard` of `gallery` into `shards` under `out`, with `extra` flags.
fn shard(gallery: &Path, shards: &str, out: &Path, extra: &[&str]) -> Vec<String> {
    let mut args = vec![
        "shard",
        "--gallery",
        p(gallery),
        "--shards",
        shards,
        "--out-dir",
        p(out),
    ];
    args.extend_from_slice(extra);
    args.into_iter().map(String::from).collect()
}

/// `args` as the helpers take them.
fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

#[test]
fn shard_writes_checked_galleries_and_a_map_that_accounts_for_every_template() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    population(
        d,
        &[
            "--subjects",
            "300",
            "--probes",
            "5",
            "--dim",
            "32",
            "--seed",
            "9",
        ],
    );
    let out = d.join("shards");
    let gallery = d.join("g.fgal");
    let printed = ok(&strs(&shard(&gallery, "3", &out, &[])));
    assert!(printed.contains("shard 2/3"), "{printed}");
    let map: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("g.shards.json")).unwrap()).unwrap();
    assert_eq!(map["count"], 3);
    assert_eq!(map["hash"], "xxh3_64(subject_id) mod count");
    let shards = map["shards"].as_array().unwrap();
    let (mut rows, mut subjects) = (0, 0);
    for (k, s) in shards.iter().enumerate() {
        assert_eq!(s["index"], k);
        let file = out.join(s["file"].as_str().unwrap());
        ok(&["check", p(&file)]);
        rows += s["rows"].as_u64().unwrap();
        subjects += s["subjects"].as_u64().unwrap();
    }
    assert_eq!(rows, map["source_rows"].as_u64().unwrap());
    let info = ok(&["info", p(&gallery)]);
    assert!(
        info.contains(&format!("{subjects}")),
        "{subjects} subjects: {info}"
    );

    let again = fails(&strs(&shard(&gallery, "3", &out, &[])));
    assert!(again.contains("exists"), "{again}");
    ok(&strs(&shard(&gallery, "3", &out, &["--force"])));
    let zero = fails(&strs(&shard(&gallery, "0", &out, &[])));
    assert!(zero.contains("--shards"), "{zero}");

    // Resharding 3 -> 2 from the shards themselves: every template again,
    // no merged file left behind.
    let two = d.join("two");
    let old_map = out.join("g.shards.json");
    let from_map = ["shard", "--from-map", p(&old_map), "--shards", "2"];
    let printed = ok(&[&from_map[..], &["--out-dir", p(&two)]].concat());
    assert!(printed.contains("shard 1/2"), "{printed}");
    let map2: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(two.join("g.shards.json")).unwrap()).unwrap();
    assert_eq!(map2["source_rows"], map["source_rows"]);
    assert!(!two.join("g.merged.fgal").exists());
    let both = fails(&strs(&shard(
        &gallery,
        "2",
        &two,
        &["--from-map", p(&old_map)],
    )));
    assert!(both.contains("cannot be used with"), "{both}");
}
