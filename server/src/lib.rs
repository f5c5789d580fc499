//! The facegate gRPC matching server, as a library so that integration tests
//! (and the in-process load test in benchmarks/) can start it. The API types
//! and clients are in the facegate-api crate, which clients use directly.
//!
//! Layers, from the wire inwards (docs/architecture.md, "Life of an
//! Identify", follows one request through them): [`matcher`] and [`admin`]
//! (the tonic services: check with [`request`], answer, audit, map errors
//! with [`status`]) call [`served::ServedGallery`], which holds the generation
//! served ([`reload::Generations`]) and queues 1:N searches with the
//! batching [`dispatch::Dispatcher`]; its thread runs each batch on the
//! generation's [`engines::FailoverEngine`] (GPU or exact CPU, over
//! `facegate_core::live::LiveGallery::search`). Online changes commit
//! through [`changes::GalleryChanges`]: the change log under `--data-dir`
//! and the live gallery (base + delta + tombstones) that searches read.
//! Who may call what is decided before any of that: [`routes`] puts each
//! service behind an [`auth::gate::Gate`] that reads the caller's client
//! certificate ([`tls`]) or API key, as held by [`credentials`].

pub mod admin;
pub mod answered;
pub mod audit;
pub mod auth;
pub mod changes;
pub mod compaction;
pub mod config;
pub mod credentials;
pub mod deadline;
pub mod demo;
pub mod dispatch;
pub mod encounters;
pub mod engines;
pub mod generation;
pub mod manifests;
pub mod matcher;
pub mod metrics;
pub mod privacy;
pub mod reload;
pub mod request;
pub mod retention;
pub mod route_error;
pub mod router;
pub mod routes;
pub mod scoped;
pub mod serve;
pub mod served;
pub mod served_encounters;
pub mod status;
pub mod stream;
pub mod thresholds;
pub mod tls;

/// The generated API (facegate-api's `v1`), under the name the server's
/// modules have always used (`crate::proto::X`), so that moving the
/// generated code into its own crate changed no path inside the server.
pub use facegate_api::v1 as proto;
