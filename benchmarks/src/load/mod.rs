//! `facegate-load`'s machinery as a library, so that integration tests can
//! run a load step against a real server and check what it measured.
//!
//! [`target`] connects to the server, [`driver`] sends the requests,
//! [`stats`] records and reduces them, [`probes`] supplies the templates,
//! [`manifest`] chooses and stages the manifest that scoped requests search,
//! and [`report`] presents the results.

pub mod driver;
pub mod manifest;
pub mod probes;
pub mod report;
pub mod stats;
pub mod target;

pub use driver::{
    Bound, Load, National, ScopedRequests, ScopedStepStats, Spread, StepOptions, port_id,
    run_scoped_step, run_step, run_sweep,
};
pub use manifest::{ManifestPlan, Staged, Travellers, stage_manifest};
pub use probes::Probes;
pub use report::{markdown, write_svg};
pub use stats::{Class, LatencyMs, Outcome, RunStats};
pub use target::{Target, TlsFiles};
