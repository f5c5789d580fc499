//! facegate-core: the parts of facegate that the server, the offline index
//! tools and the benchmarks share.
//!
//! - [`format`](mod@format): the gallery file, an immutable memory-mapped set of templates;
//! - [`search`]: the engines that answer 1:N and 1:1 queries over it;
//! - [`kernels`]: the SIMD dot products the CPU engine is built on;
//! - [`npy`] and [`ids`]: the interchange files data engineers hand us;
//! - [`synth`]: a synthetic population for demos, tests and benchmarks;
//! - [`wal`]: the write-ahead log of online enrolments and removals;
//! - [`live`]: the base gallery plus those changes, as searches see it;
//! - [`audit`]: the durable trail of who searched and changed what;
//! - [`keys`]: the API keys files that say who may call a listener;
//! - [`clock`]: the injectable time that expiry and retention read;
//! - [`manifest`]: manifest galleries, staged, stored and expiring;
//! - [`shard`]: a gallery split by subject across servers, and the shard map;
//! - [`accuracy`]: FPIR, FNIR, CMC, DET and per-group rates of searches whose truth is known.

pub mod accuracy;
pub mod audit;
pub mod clock;
pub mod dirlock;
pub mod durable_dir;
pub mod encounter;
pub mod error;
pub mod format;
pub mod ids;
pub mod kernels;
pub mod keys;
pub mod live;
pub mod manifest;
pub mod npy;
pub mod pem;
pub mod quantize;
pub mod retention;
pub mod search;
pub mod shard;
pub mod sqlite;
pub mod synth;
pub mod text;
pub mod wal;

pub use error::{GalleryError, InputError};
pub use format::{ElementType, Gallery};
pub use search::{Candidate, CpuEngine, ProbeBatch, ScanTarget, SearchEngine, SearchError};
