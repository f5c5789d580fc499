//! `facegate-manifest-bench`: what manifest (1:few) search gives a port and
//! what it costs the server (issue 15), each part in one run:
//!
//! * `speed`: engine time of a manifest search against the national 1:N
//!   search on the same gallery and probes;
//! * `memory`: memory and disk per manifest with thousands live, staging
//!   and restart times;
//! * `accuracy`: false-positive identification rate at a fixed threshold
//!   for manifests of 420 and 42,000 and for the whole gallery, with a figure.
//!
//! See docs/benchmarks.md, "Manifest (1:few) against national 1:N".

use clap::{Parser, Subcommand};

mod accuracy;
mod memory;
mod speed;

#[derive(Parser)]
#[command(
    name = "facegate-manifest-bench",
    about = "Manifest (1:few) search against national 1:N: speed, memory, accuracy"
)]
struct Cli {
    #[command(subcommand)]
    part: Part,
}

#[derive(Subcommand)]
enum Part {
    /// Engine time of a manifest search against the national search.
    Speed(speed::Args),
    /// Memory, disk, staging and restart with many manifests live.
    Memory(memory::Args),
    /// FPIR against the number of people searched (figure with --svg).
    Accuracy(accuracy::Args),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().part {
        Part::Speed(a) => speed::run(a),
        Part::Memory(a) => memory::run(a),
        Part::Accuracy(a) => accuracy::run(a),
    }
}
