//! `facegate-load`'s machinery as a library, so that integration tests can
//! run a load step against a real server and check what it measured.
//!
//! [`target`] connects to the server, [`driver`] sends the requests,
//! [`stats`] records and reduces them, [`probes`] supplies the templates and
//! [`report`] presents the results.

pub mod driver;
pub mod probes;
pub mod report;
pub mod stats;
pub mod target;

pub use driver::{Bound, Load, Spread, StepOptions, port_id, run_step, run_sweep};
pub use probes::Probes;
pub use report::{markdown, write_svg};
pub use stats::{LatencyMs, Outcome, RunStats};
pub use target::Target;
