//! Partitioning a gallery by subject, for a gallery larger than one server:
//! every template of a subject is in one shard, the shard a stable hash of
//! its id names, so that a 1:1 Verify or an enrolment goes to one shard and
//! a 1:N Identify fans out to all of them and merges their top-k.
//!
//! The hash: `xxh3_64(subject id as UTF-8 bytes, seed 0) mod N`. xxh3's
//! output is fixed by its specification, so the assignment does not change
//! between builds or machines; changing N moves most subjects (resharding
//! is an offline rebuild, docs/scale.md).
//!
//! `facegate-index shard` writes the N shard galleries and a shard map
//! ([`ShardMap`], JSON) naming them; a shard server is told which shard it
//! is (`--shard K/N`) and refuses what is not its own.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use xxhash_rust::xxh3::xxh3_64;

use crate::error::GalleryError;
use crate::format::BuildReport;
use crate::format::Gallery;
use crate::live::{write_merged, write_subset};

/// The hash a [`ShardMap`] names, so that a reader can refuse another.
pub const HASH: &str = "xxh3_64(subject_id) mod count";

/// The shard map's format version.
pub const MAP_FORMAT: u32 = 1;

/// Which shard of how many: `K/N`, K from 0; written so in flags, the
/// settings file and JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ShardSpec {
    /// This shard, `0..count`.
    pub index: u32,
    /// Shards in all, at least 1.
    pub count: u32,
}

/// Why a `K/N` was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("shard {text:?}: {reason}")]
pub struct ShardSpecError {
    text: String,
    reason: &'static str,
}

impl std::str::FromStr for ShardSpec {
    type Err = ShardSpecError;

    /// `K/N`, with N at least 1 and K below N.
    fn from_str(text: &str) -> Result<ShardSpec, ShardSpecError> {
        let fail = |reason| ShardSpecError {
            text: text.to_string(),
            reason,
        };
        let (k, n) = text.split_once('/').ok_or(fail("expected K/N, e.g. 0/3"))?;
        let index: u32 = k.trim().parse().map_err(|_| fail("K is not a number"))?;
        let count: u32 = n.trim().parse().map_err(|_| fail("N is not a number"))?;
        if count == 0 {
            return Err(fail("N must be at least 1"));
        }
        if index >= count {
            return Err(fail("K must be below N (shards are numbered from 0)"));
        }
        Ok(ShardSpec { index, count })
    }
}

impl TryFrom<String> for ShardSpec {
    type Error = ShardSpecError;

    fn try_from(text: String) -> Result<ShardSpec, ShardSpecError> {
        text.parse()
    }
}

impl From<ShardSpec> for String {
    fn from(spec: ShardSpec) -> String {
        spec.to_string()
    }
}

impl std::fmt::Display for ShardSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// The shard of `count` that holds `subject_id`.
pub fn shard_of(subject_id: &str, count: u32) -> u32 {
    (xxh3_64(subject_id.as_bytes()) % u64::from(count.max(1))) as u32
}

impl ShardSpec {
    /// Whether this shard holds `subject_id`.
    pub fn owns(&self, subject_id: &str) -> bool {
        shard_of(subject_id, self.count) == self.index
    }

    /// How many of `gallery`'s subjects belong to another shard (a server
    /// given the wrong file or the wrong `--shard` finds them at start-up).
    pub fn strangers(&self, gallery: &Gallery) -> Result<u64, GalleryError> {
        let mut strangers = 0;
        for s in 0..gallery.subjects() as u32 {
            if !self.owns(gallery.subject_id(s)?) {
                strangers += 1;
            }
        }
        Ok(strangers)
    }
}

/// One generation for an answer (or GalleryInfo) made of the shards'
/// `(shard, generation)`: a hash of all of them in shard order, so it
/// changes whenever any shard's does and equal sets give equal values.
pub fn combined_generation(generations: &[(u32, u64)]) -> u64 {
    let mut sorted = generations.to_vec();
    sorted.sort_unstable();
    let bytes: Vec<u8> = sorted
        .iter()
        .flat_map(|(s, g)| s.to_le_bytes().into_iter().chain(g.to_le_bytes()))
        .collect();
    xxh3_64(&bytes)
}

/// One shard's gallery, as the map lists it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ShardEntry {
    /// Its index, `0..count`.
    pub index: u32,
    /// Its gallery file, relative to the map's directory.
    pub file: PathBuf,
    /// Its generation (hex), to tell a rebuilt shard from the listed one.
    pub generation: String,
    /// Templates in it.
    pub rows: u64,
    /// Subjects in it.
    pub subjects: u64,
}

/// What `facegate-index shard` wrote: the hash, the shard count, the
/// source gallery and each shard's file and generation.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ShardMap {
    /// [`MAP_FORMAT`].
    pub format: u32,
    /// [`HASH`].
    pub hash: String,
    /// Shards in all.
    pub count: u32,
    /// The gallery split (hex generation).
    pub source_generation: String,
    /// Templates of the source.
    pub source_rows: u64,
    /// One entry per shard, by index.
    pub shards: Vec<ShardEntry>,
}

/// Errors of splitting a gallery or reading a map.
#[derive(Debug, thiserror::Error)]
pub enum ShardError {
    /// A gallery could not be read or written.
    #[error(transparent)]
    Gallery(#[from] GalleryError),
    /// The map file could not be read or written.
    #[error("shard map {path}: {reason}")]
    Map {
        /// The map file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// Splits `source` into `count` galleries `DIR/STEM-K-of-N.fgal` and
/// writes the map `DIR/STEM.shards.json` (atomically), returning it.
/// `progress` gets rows written, across all shards.
pub fn split(
    source: Arc<Gallery>,
    count: u32,
    dir: &Path,
    stem: &str,
    overwrite: bool,
    progress: &mut dyn FnMut(u64),
) -> Result<ShardMap, ShardError> {
    let mut shards = Vec::with_capacity(count as usize);
    let mut written = 0;
    for index in 0..count {
        let spec = ShardSpec { index, count };
        let file = PathBuf::from(format!("{stem}-{index}-of-{count}.fgal"));
        let report = write_subset(
            &source,
            &|id| spec.owns(id),
            &dir.join(&file),
            overwrite,
            &mut |rows| progress(written + rows),
        )?;
        let h = &report.header;
        written += h.rows;
        shards.push(ShardEntry {
            index,
            file,
            generation: format!("{:016x}", h.generation),
            rows: h.rows,
            subjects: h.subjects,
        });
    }
    let map = ShardMap {
        format: MAP_FORMAT,
        hash: HASH.to_string(),
        count,
        source_generation: format!("{:016x}", source.header().generation),
        source_rows: source.rows() as u64,
        shards,
    };
    write_map(&map, &dir.join(format!("{stem}.shards.json")))?;
    Ok(map)
}

/// The shard galleries `map_path` lists (beside it) merged back into one
/// gallery at `out`: the first step of resharding from the shards
/// themselves, without the source. Each shard's file must hold only its own
/// subjects (checked: a file of another split is refused) and should be
/// compacted first, so that the enrolments of its change log are in it.
/// The shards' files may be newer generations than the map names.
pub fn merge_map(
    map_path: &Path,
    out: &Path,
    overwrite: bool,
    progress: &mut dyn FnMut(u64),
) -> Result<BuildReport, ShardError> {
    let map = read_map(map_path)?;
    let dir = map_path.parent().unwrap_or(Path::new("."));
    let mut sources = Vec::with_capacity(map.shards.len());
    for entry in &map.shards {
        let path = dir.join(&entry.file);
        let gallery = Arc::new(Gallery::open(&path)?);
        let spec = ShardSpec {
            index: entry.index,
            count: map.count,
        };
        let strangers = spec.strangers(&gallery)?;
        if strangers > 0 {
            return Err(ShardError::Map {
                path: map_path.to_path_buf(),
                reason: format!(
                    "{}: {strangers} subjects belong to other shards: not shard {spec}",
                    path.display()
                ),
            });
        }
        sources.push(gallery);
    }
    Ok(write_merged(&sources, out, overwrite, progress)?)
}

/// Writes `map` to `path` atomically (aside, fsync, rename).
pub fn write_map(map: &ShardMap, path: &Path) -> Result<(), ShardError> {
    let fail = |e: &dyn std::fmt::Display| ShardError::Map {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let text = serde_json::to_string_pretty(map).map_err(|e| fail(&e))?;
    let tmp = path.with_extension("json.tmp");
    let write = || -> std::io::Result<()> {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.write_all(b"\n")?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| fail(&e))
}

/// Reads a shard map, refusing another format or hash.
pub fn read_map(path: &Path) -> Result<ShardMap, ShardError> {
    let fail = |reason: String| ShardError::Map {
        path: path.to_path_buf(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
    let map: ShardMap = serde_json::from_str(&text).map_err(|e| fail(e.to_string()))?;
    if map.format != MAP_FORMAT || map.hash != HASH {
        return Err(fail(format!(
            "format {} with hash {:?}: this build reads format {MAP_FORMAT}, {HASH:?}",
            map.format, map.hash
        )));
    }
    let indexes_ok = map
        .shards
        .iter()
        .enumerate()
        .all(|(i, s)| s.index as usize == i);
    if map.count == 0 || map.shards.len() != map.count as usize || !indexes_ok {
        return Err(fail(format!(
            "{} entries for {} shards, or out of order",
            map.shards.len(),
            map.count
        )));
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn shard_specs_parse_and_refuse_with_the_reason() {
        assert_eq!("1/3".parse(), Ok(ShardSpec { index: 1, count: 3 }));
        assert_eq!(ShardSpec { index: 0, count: 1 }.to_string(), "0/1");
        for (bad, why) in [
            ("3/3", "below N"),
            ("1", "K/N"),
            ("a/3", "K is"),
            ("0/0", "at least 1"),
        ] {
            let err = bad.parse::<ShardSpec>().unwrap_err().to_string();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn the_hash_is_the_documented_one() {
        // Pinned: a change here would move subjects between shards of
        // galleries already built.
        assert_eq!(shard_of("P-0000001", 3), (xxh3_64(b"P-0000001") % 3) as u32);
        assert_eq!(shard_of("anyone", 1), 0);
    }

    #[test]
    fn a_combined_generation_names_every_shard() {
        let g = combined_generation(&[(0, 1), (1, 2)]);
        assert_eq!(g, combined_generation(&[(1, 2), (0, 1)]));
        assert_ne!(g, combined_generation(&[(0, 1), (1, 3)]));
        assert_ne!(g, combined_generation(&[(0, 2), (1, 1)]));
    }

    proptest! {
        #[test]
        fn every_subject_has_exactly_one_owner(id in "\\PC{1,40}", count in 1u32..50) {
            let owners = (0..count).filter(|&index| ShardSpec { index, count }.owns(&id)).count();
            prop_assert_eq!(owners, 1);
        }
    }
}
